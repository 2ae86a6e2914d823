//! Signing in to the console: the password, then the second factor (enrolled at the first
//! sign-in: QR code and key shown once, confirmed with a code, recovery codes shown once), and
//! signing out. No session grants anything before the second factor; every sign-in, failure,
//! enrolment and sign-out is audited (an audit log that cannot be written refuses the step).

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped};
use serde::Deserialize;
use wacrm_store::accounts::{self, Account, Verdict};
use wacrm_store::console_sessions::{self, random_token, Session};

use super::page::{page, respond, Locale, Nav, Text};
use super::session::{
    absolute, cookie, csrf_refused, same_token, set_cookie, standing, Standing, LOGIN_COOKIE,
    SESSION_COOKIE,
};
use crate::config::ConsoleConfig;
use crate::AppState;

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

/// A form with a code.
#[derive(Deserialize)]
pub struct CodeForm {
    code: String,
    #[serde(default)]
    csrf: String,
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Writes an audit entry for a sign-in step, which has no principal yet (the account's id and
/// name stand for it); `Err` is the 503 to answer (fail closed).
pub(crate) async fn audit(
    state: &AppState,
    key_id: &str,
    actor: &str,
    action: &str,
    target: Option<&str>,
    outcome: &str,
) -> Result<(), Response> {
    crate::auth::append_audit(
        state,
        wacrm_store::audit::NewEntry {
            key_id: key_id.to_owned(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            contact_id: None,
            target: target.map(str::to_owned),
            outcome: outcome.to_owned(),
            phone_number_id: None,
            detail: None,
        },
    )
    .await
}

fn account_key(username: &str) -> String {
    format!("account:{username}")
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
}

/// A redirect that also sets a cookie.
fn redirect_with_cookie(to: &str, cookie: axum::http::HeaderValue) -> Response {
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

fn login_form(locale: Locale, csrf: &str, error: Option<String>) -> Markup {
    page(
        locale,
        locale.t(Text::SignIn),
        None,
        html! {
            div.card.narrow {
                h1 { (locale.t(Text::SignIn)) }
                @if let Some(error) = error { p #error .error { (error) } }
                form #login method="post" action="/console/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="username" { (locale.t(Text::Username)) }
                    input #username type="text" name="username" autocomplete="username" required autofocus;
                    label for="password" { (locale.t(Text::Password)) }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    button type="submit" { (locale.t(Text::SignIn)) }
                }
            }
        },
    )
}

/// The sign-in page, with a fresh CSRF token in a cookie and in the form.
fn login_response(config: &ConsoleConfig, status: StatusCode, error: Option<String>) -> Response {
    let csrf = random_token();
    let mut response = respond(status, login_form(Locale::PtBr, &csrf, error));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(config, LOGIN_COOKIE, &csrf, 3600),
    );
    response
}

/// `GET /console/login`.
pub async fn login_page(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
) -> Response {
    match standing(&state, &config, &headers).await {
        Standing::SignedIn(..) => Redirect::to("/console/conversations").into_response(),
        Standing::SecondFactorOwed(..) => Redirect::to("/console/mfa").into_response(),
        Standing::Anonymous => login_response(&config, StatusCode::OK, None),
    }
}

fn locked_text(locale: Locale, until: DateTime<Utc>) -> String {
    format!("{} {} UTC.", locale.t(Text::Locked), until.format("%H:%M"))
}

/// `POST /console/login`: the password step.
pub async fn login(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !same_token(&form.csrf, &expected) {
        return csrf_refused();
    }
    let username = accounts::normalise_username(&form.username).unwrap_or_default();
    let verdict =
        match accounts::check_password(&state.db, &form.username, &form.password, Utc::now()).await
        {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "console sign-in failed");
                return unavailable();
            }
        };
    let locale = Locale::PtBr;
    let (outcome, response) = match verdict {
        Verdict::Accepted(account) => {
            let token = match console_sessions::start(
                &state.db,
                &account.id,
                Utc::now(),
                absolute(&config),
            )
            .await
            {
                Ok(t) => t,
                Err(_) => return unavailable(),
            };
            let cookie = set_cookie(
                &config,
                SESSION_COOKIE,
                &token,
                absolute(&config).num_seconds(),
            );
            ("password_ok", redirect_with_cookie("/console/mfa", cookie))
        }
        Verdict::Refused => (
            "denied",
            login_response(
                &config,
                StatusCode::UNAUTHORIZED,
                Some(locale.t(Text::WrongCredentials).to_owned()),
            ),
        ),
        Verdict::Locked(until) => (
            "locked",
            login_response(
                &config,
                StatusCode::FORBIDDEN,
                Some(locked_text(locale, until)),
            ),
        ),
        Verdict::Disabled => (
            "disabled",
            login_response(
                &config,
                StatusCode::FORBIDDEN,
                Some(locale.t(Text::Disabled).to_owned()),
            ),
        ),
    };
    if let Err(r) = audit(
        &state,
        &account_key(&username),
        &username,
        "console.login",
        None,
        outcome,
    )
    .await
    {
        return r;
    }
    response
}

fn code_form(locale: Locale, csrf: &str, error: Option<String>) -> Markup {
    html! {
        @if let Some(error) = error { p #error .error { (error) } }
        form #mfa method="post" action="/console/mfa" {
            input type="hidden" name="csrf" value=(csrf);
            label for="code" { (locale.t(Text::Code)) }
            input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required autofocus;
            p.help { (locale.t(Text::CodeHelp)) }
            button type="submit" { (locale.t(Text::Verify)) }
        }
    }
}

/// The QR code of an `otpauth://` URL as inline SVG.
fn qr_svg(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .build();
    // Inline in HTML: from the `<svg` element on (no XML declaration).
    svg.find("<svg").map(|at| svg[at..].to_owned())
}

fn mfa_page_markup(
    locale: Locale,
    session: &Session,
    account: &Account,
    secret: Option<&str>,
    error: Option<String>,
) -> Markup {
    let body = match secret {
        None => html! {
            div.card.narrow {
                h1 { (locale.t(Text::SecondFactor)) }
                (code_form(locale, &session.csrf, error))
            }
        },
        Some(secret) => {
            let url = accounts::otpauth_url(secret, &account.username).unwrap_or_default();
            let svg = qr_svg(&url).unwrap_or_default();
            html! {
                div.card.narrow {
                    h1 { (locale.t(Text::EnrolTitle)) }
                    p.help { (locale.t(Text::EnrolHelp)) }
                    div #totp-qr .qr { (PreEscaped(svg)) }
                    p { (locale.t(Text::SecretLabel)) ": " span #totp-secret .secret { (secret) } }
                    (code_form(locale, &session.csrf, error))
                }
            }
        }
    };
    page(locale, locale.t(Text::SecondFactor), None, body)
}

/// The secret to enrol: the one already shown in this session, or a new one remembered there.
async fn pending_secret(state: &AppState, session: &Session) -> Result<String, Response> {
    if let Some(secret) = &session.pending_totp_secret {
        return Ok(secret.clone());
    }
    let secret = accounts::new_totp_secret();
    console_sessions::set_pending_secret(&state.db, session, &secret)
        .await
        .map_err(|_| unavailable())?;
    Ok(secret)
}

/// `GET /console/mfa`: the second factor, or its enrolment.
pub async fn mfa_page(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
) -> Response {
    let (session, account) = match standing(&state, &config, &headers).await {
        Standing::SecondFactorOwed(s, a) => (s, a),
        Standing::SignedIn(..) => return Redirect::to("/console/conversations").into_response(),
        Standing::Anonymous => return Redirect::to("/console/login").into_response(),
    };
    let locale = Locale::parse(&account.locale);
    let secret = if account.mfa_enrolled {
        None
    } else {
        match pending_secret(&state, &session).await {
            Ok(s) => Some(s),
            Err(r) => return r,
        }
    };
    respond(
        StatusCode::OK,
        mfa_page_markup(locale, &session, &account, secret.as_deref(), None),
    )
}

/// `POST /console/mfa`: checks the code; passed, the session is replaced by a signed-in one.
pub async fn mfa(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Form(form): Form<CodeForm>,
) -> Response {
    let (session, account) = match standing(&state, &config, &headers).await {
        Standing::SecondFactorOwed(s, a) => (s, a),
        Standing::SignedIn(..) => return Redirect::to("/console/conversations").into_response(),
        Standing::Anonymous => return Redirect::to("/console/login").into_response(),
    };
    if !same_token(&form.csrf, &session.csrf) {
        return csrf_refused();
    }
    let locale = Locale::parse(&account.locale);
    let key = account_key(&account.username);
    let now = Utc::now();
    if !account.mfa_enrolled {
        let Some(secret) = session.pending_totp_secret.clone() else {
            return Redirect::to("/console/mfa").into_response();
        };
        let enrolled =
            match accounts::enrol_totp(&state.db, &account.id, &secret, &form.code, now).await {
                Ok(e) => e,
                Err(_) => return unavailable(),
            };
        return match enrolled {
            Ok(codes) => {
                // Enrolment completes the sign-in.
                for action in ["console.mfa_enrol", "console.login"] {
                    if let Err(r) = audit(&state, &key, &account.name, action, None, "ok").await {
                        return r;
                    }
                }
                let token = match console_sessions::pass_mfa(&state.db, &session, now).await {
                    Ok(t) => t,
                    Err(_) => return unavailable(),
                };
                let passed = match console_sessions::find(
                    &state.db,
                    &token,
                    now,
                    super::session::idle(&config),
                )
                .await
                {
                    Ok(Some(s)) => s,
                    _ => return unavailable(),
                };
                let mut response = respond(
                    StatusCode::OK,
                    recovery_page(locale, &account, &passed, &codes),
                );
                response.headers_mut().append(
                    header::SET_COOKIE,
                    set_cookie(
                        &config,
                        SESSION_COOKIE,
                        &token,
                        absolute(&config).num_seconds(),
                    ),
                );
                response
            }
            Err(verdict) => {
                let (outcome, error) = refusal(locale, &verdict);
                if let Err(r) = audit(
                    &state,
                    &key,
                    &account.name,
                    "console.mfa_enrol",
                    None,
                    outcome,
                )
                .await
                {
                    return r;
                }
                respond(
                    StatusCode::UNAUTHORIZED,
                    mfa_page_markup(locale, &session, &account, Some(&secret), Some(error)),
                )
            }
        };
    }
    let verdict = match accounts::check_second_factor(&state.db, &account.id, &form.code, now).await
    {
        Ok(v) => v,
        Err(_) => return unavailable(),
    };
    match verdict {
        Verdict::Accepted(_) => {
            if let Err(r) = audit(&state, &key, &account.name, "console.login", None, "ok").await {
                return r;
            }
            let token = match console_sessions::pass_mfa(&state.db, &session, now).await {
                Ok(t) => t,
                Err(_) => return unavailable(),
            };
            redirect_with_cookie(
                "/console/conversations",
                set_cookie(
                    &config,
                    SESSION_COOKIE,
                    &token,
                    absolute(&config).num_seconds(),
                ),
            )
        }
        verdict => {
            let (outcome, error) = refusal(locale, &verdict);
            if let Err(r) = audit(&state, &key, &account.name, "console.mfa", None, outcome).await {
                return r;
            }
            respond(
                StatusCode::UNAUTHORIZED,
                mfa_page_markup(locale, &session, &account, None, Some(error)),
            )
        }
    }
}

/// The audit outcome and the words for a refused step.
fn refusal(locale: Locale, verdict: &Verdict) -> (&'static str, String) {
    match verdict {
        Verdict::Locked(until) => ("locked", locked_text(locale, *until)),
        Verdict::Disabled => ("disabled", locale.t(Text::Disabled).to_owned()),
        _ => ("denied", locale.t(Text::WrongCode).to_owned()),
    }
}

fn recovery_page(locale: Locale, account: &Account, session: &Session, codes: &[String]) -> Markup {
    page(
        locale,
        locale.t(Text::RecoveryTitle),
        Some(Nav {
            name: &account.name,
            csrf: &session.csrf,
            account,
        }),
        html! {
            div.card.narrow {
                h1 { (locale.t(Text::RecoveryTitle)) }
                p.help { (locale.t(Text::RecoveryHelp)) }
                ul #recovery-codes .codes {
                    @for code in codes { li { (code) } }
                }
                a #continue href="/console/conversations" { (locale.t(Text::Continue)) }
            }
        },
    )
}

/// `POST /console/logout`: ends the session server-side and clears its cookie.
pub async fn logout(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let (session, account) = match standing(&state, &config, &headers).await {
        Standing::SignedIn(s, a) | Standing::SecondFactorOwed(s, a) => (s, a),
        Standing::Anonymous => return Redirect::to("/console/login").into_response(),
    };
    if !same_token(&form.csrf, &session.csrf) {
        return csrf_refused();
    }
    if let Err(r) = audit(
        &state,
        &account_key(&account.username),
        &account.name,
        "console.logout",
        None,
        "ok",
    )
    .await
    {
        return r;
    }
    if console_sessions::end(&state.db, &session).await.is_err() {
        return unavailable();
    }
    redirect_with_cookie("/console/login", set_cookie(&config, SESSION_COOKIE, "", 0))
}
