//! The console's cookies, its session lookup and its CSRF check.
//!
//! - `wacrm_session` holds the session token: `HttpOnly`, `SameSite=Strict`, `Path=/console`,
//!   and `Secure` unless `server.console.secure_cookies` is off (plain-HTTP development).
//! - `wacrm_login` holds the sign-in form's CSRF token before there is a session (a
//!   double-submit token: the form and the cookie must agree).
//! - Every form of a session carries the session's CSRF token, compared in constant time.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{Duration, Utc};
use sha2::{Digest, Sha256};
use wacrm_store::accounts::{self, Account};
use wacrm_store::console_sessions::{self, Session};

use crate::config::ConsoleConfig;
use crate::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "wacrm_session";
/// The sign-in form's CSRF cookie.
pub const LOGIN_COOKIE: &str = "wacrm_login";

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A `Set-Cookie` value for the console (`max_age` in seconds; 0 deletes it).
pub fn set_cookie(config: &ConsoleConfig, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The idle timeout.
pub fn idle(config: &ConsoleConfig) -> Duration {
    Duration::minutes(i64::from(config.idle_timeout_minutes.max(1)))
}

/// The absolute timeout.
pub fn absolute(config: &ConsoleConfig) -> Duration {
    Duration::hours(i64::from(config.absolute_timeout_hours.max(1)))
}

/// Whether two tokens are equal and not empty, in constant time (hashes compared, so lengths
/// leak nothing). Empty never matches: a form without a token and a request without the cookie
/// must not agree with each other.
pub fn same_token(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(a.as_slice().ct_eq(b.as_slice()))
}

/// Where a request stands with the console.
pub enum Standing {
    /// No usable session (none, expired, ended, or its account is disabled).
    Anonymous,
    /// Signed in with the password; the second factor is still owed. Grants nothing else.
    SecondFactorOwed(Session, Box<Account>),
    /// Signed in.
    SignedIn(Session, Box<Account>),
}

/// The request's session and account.
pub async fn standing(
    state: &Arc<AppState>,
    config: &ConsoleConfig,
    headers: &HeaderMap,
) -> Standing {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Standing::Anonymous;
    };
    let session = match console_sessions::find(&state.db, &token, Utc::now(), idle(config)).await {
        Ok(Some(session)) => session,
        Ok(None) => return Standing::Anonymous,
        Err(e) => {
            tracing::error!(error = %e, "console session lookup failed");
            return Standing::Anonymous;
        }
    };
    let account = match accounts::get(&state.db, &session.account_id).await {
        Ok(Some(account)) if account.disabled_at.is_none() => account,
        _ => return Standing::Anonymous,
    };
    if session.mfa_passed {
        Standing::SignedIn(session, Box::new(account))
    } else {
        Standing::SecondFactorOwed(session, Box::new(account))
    }
}

/// The answer to a form without its CSRF token, or with a wrong one: nothing was done.
pub fn csrf_refused() -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        axum::http::StatusCode::FORBIDDEN,
        "CSRF token missing or wrong",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_equal_non_empty_tokens_match() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("", ""), "no token and no cookie must not pass");
        assert!(!same_token("abc", ""));
        assert!(!same_token("", "abc"));
    }
}
