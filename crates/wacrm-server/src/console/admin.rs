//! The admin screen: console accounts (create, disable, reset MFA) and API keys (create,
//! revoke). For accounts with `keys:manage` and every business number (an admin limited to
//! some numbers could otherwise hand out others). Each change is audited before it is made
//! (intent) and after (outcome), under the same action names as `wacrm accounts` and
//! `wacrm keys`; a new account's first password and a new key are shown once.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use wacrm_store::accounts::{self, Account, NewAccount};
use wacrm_store::console_sessions::{self, Session};
use wacrm_store::keys::{self, scope, NewKey, Role};

use super::conversations::{signed_in, signed_in_form};
use super::page::{page, post_button, respond, Locale, Nav, Text};
use crate::auth::Caller;
use crate::config::ConsoleConfig;
use crate::AppState;

/// What the screen shows above its lists after a change.
enum Shown {
    Nothing,
    Done(String),
    Failed(String),
    /// A secret shown once: its label and value.
    Secret(&'static str, String),
}

fn may_administer(account: &Account) -> bool {
    account.business_numbers.is_none() && account.scopes.iter().any(|s| s == scope::KEYS_MANAGE)
}

fn forbidden(locale: Locale, session: &Session, account: &Account) -> Response {
    respond(
        StatusCode::FORBIDDEN,
        page(
            locale,
            locale.t(Text::Admin),
            Some(Nav {
                name: &account.name,
                csrf: &session.csrf,
                account,
            }),
            html! { div.card { p #error .error { (locale.t(Text::Forbidden)) } } },
        ),
    )
}

fn role_select(locale: Locale) -> Markup {
    html! {
        label for="role" { (locale.t(Text::Role)) }
        select #role name="role" {
            @for role in ["agent", "auditor", "dpo", "admin"] { option value=(role) { (role) } }
        }
        label for="numbers" { (locale.t(Text::Numbers)) }
        input #numbers type="text" name="numbers" placeholder="106540352242922, …";
        label.check { input type="checkbox" name="all_numbers" value="on"; " " (locale.t(Text::AllNumbers)) }
    }
}

async fn screen_response(
    state: &AppState,
    session: &Session,
    account: &Account,
    shown: Shown,
) -> Response {
    let locale = Locale::parse(&account.locale);
    let (Ok(list), Ok(key_list)) = (accounts::list(&state.db).await, keys::list(&state.db).await)
    else {
        return (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response();
    };
    let now = chrono::Utc::now();
    let body = html! {
        @match &shown {
            Shown::Done(text) => p #notice .notice { (text) },
            Shown::Failed(text) => p #error .error { (text) },
            Shown::Secret(label, secret) => div #notice .notice {
                (label) ": " span #new-secret .secret { (secret) }
                p.help { (locale.t(Text::ShownOnce)) }
            },
            Shown::Nothing => {},
        }
        div.card {
            h1 { (locale.t(Text::Admin)) }
            h2 { (locale.t(Text::Accounts)) }
            div.scroll { table #accounts {
                thead { tr { th { (locale.t(Text::Username)) } th { (locale.t(Text::Name)) } th { (locale.t(Text::Role)) } th { (locale.t(Text::Numbers)) } th { (locale.t(Text::State)) } th {} } }
                tbody {
                    @for a in &list {
                        tr.account data-username=(a.username) {
                            td { (a.username) } td { (a.name) } td { (a.role.as_str()) }
                            td { (a.business_numbers.as_ref().map(|n| n.join(", ")).unwrap_or_else(|| "*".into())) }
                            td {
                                @if a.disabled_at.is_some() { span.bad { (locale.t(Text::DisabledState)) } }
                                @else if a.locked_until.is_some_and(|u| u > now) { span.bad { (locale.t(Text::LockedState)) } }
                                @else if !a.mfa_enrolled { (locale.t(Text::MfaPending)) }
                                @else { span.ok { "ok" } }
                            }
                            td {
                                @if a.disabled_at.is_none() && a.id != account.id {
                                    (post_button("inline disable", &format!("/console/admin/accounts/{}/disable", a.id), &session.csrf, locale.t(Text::Disable)))
                                    (post_button("inline reset-mfa", &format!("/console/admin/accounts/{}/reset-mfa", a.id), &session.csrf, locale.t(Text::ResetMfa)))
                                }
                            }
                        }
                    }
                }
            } }
            h2 { (locale.t(Text::NewAccount)) }
            form #new-account method="post" action="/console/admin/accounts" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="username" { (locale.t(Text::Username)) }
                input #username type="text" name="username" required;
                label for="name" { (locale.t(Text::Name)) }
                input #name type="text" name="name" required;
                (role_select(locale))
                label for="locale" { (locale.t(Text::Language)) }
                select #locale name="locale" { option value="pt-BR" { "Português (Brasil)" } option value="en" { "English" } }
                button type="submit" { (locale.t(Text::Create)) }
            }
        }
        div.card {
            h2 { (locale.t(Text::ApiKeys)) }
            div.scroll { table #keys {
                thead { tr { th { "id" } th { (locale.t(Text::Name)) } th { (locale.t(Text::Role)) } th { (locale.t(Text::Numbers)) } th { (locale.t(Text::State)) } th {} } }
                tbody {
                    @for k in &key_list {
                        tr.key data-id=(k.id) {
                            td { (k.id) } td { (k.name) } td { (k.role.as_str()) }
                            td { (k.business_numbers.as_ref().map(|n| n.join(", ")).unwrap_or_else(|| "*".into())) }
                            td {
                                @if k.revoked_at.is_some() { span.bad { (locale.t(Text::Revoked)) } }
                                @else if k.expires_at.is_some_and(|e| e <= now) { span.bad { (locale.t(Text::Expired)) } }
                                @else { span.ok { "ok" } }
                            }
                            td {
                                @if k.revoked_at.is_none() {
                                    (post_button("inline revoke", &format!("/console/admin/keys/{}/revoke", k.id), &session.csrf, locale.t(Text::Revoke)))
                                }
                            }
                        }
                    }
                }
            } }
            h2 { (locale.t(Text::NewKey)) }
            form #new-key method="post" action="/console/admin/keys" {
                input type="hidden" name="csrf" value=(session.csrf);
                label for="key-name" { (locale.t(Text::Name)) }
                input #key-name type="text" name="name" required;
                (role_select(locale))
                label for="expires" { (locale.t(Text::Expires)) }
                input #expires type="date" name="expires";
                button type="submit" { (locale.t(Text::Create)) }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(
            locale,
            locale.t(Text::Admin),
            Some(Nav {
                name: &account.name,
                csrf: &session.csrf,
                account,
            }),
            body,
        ),
    )
}

/// The signed-in administrator of a request (for a form, once its CSRF token matched), or the
/// answer: to the sign-in, 403 for a wrong token, or 403 for an account that may not administer
/// (audited as a denied `action`).
async fn administrator(
    state: &Arc<AppState>,
    config: &ConsoleConfig,
    headers: &HeaderMap,
    csrf: Option<&str>,
    action: &str,
) -> Result<(Session, Box<Account>, Locale), Response> {
    let (session, account) = match csrf {
        Some(csrf) => signed_in_form(state, config, headers, csrf).await?,
        None => signed_in(state, config, headers).await?,
    };
    let locale = Locale::parse(&account.locale);
    if !may_administer(&account) {
        // Refused either way; an audit log that cannot be written changes nothing here.
        let _ = Caller(account.principal())
            .audit(state, action, None, None, "denied")
            .await;
        return Err(forbidden(locale, &session, &account));
    }
    Ok((session, account, locale))
}

/// `GET /console/admin`.
pub async fn screen(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
) -> Response {
    let (session, account, _) =
        match administrator(&state, &config, &headers, None, "admin.read").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    screen_response(&state, &session, &account, Shown::Nothing).await
}

/// Whom a new account or key may reach: the numbers listed in the form's field (commas,
/// spaces or lines between them), or every number when asked (`keys::number_limit`).
fn numbers_of(numbers: &str, all: bool) -> Result<Option<Vec<String>>, String> {
    let listed: Vec<String> = numbers
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .collect();
    if !listed.iter().all(|n| n.chars().all(|c| c.is_ascii_digit())) {
        return Err("a business number is its phone number id: digits only".into());
    }
    keys::number_limit(listed, all).map_err(|e| e.to_string())
}

/// The new-account form.
#[derive(Deserialize)]
pub struct AccountForm {
    #[serde(default)]
    csrf: String,
    username: String,
    name: String,
    role: String,
    #[serde(default)]
    numbers: String,
    all_numbers: Option<String>,
    locale: Option<String>,
}

/// Runs a change: audits the intent (refusing when that fails), applies it, audits the
/// outcome, and shows the screen with what happened.
async fn audited_change<F>(
    state: &AppState,
    session: &Session,
    account: &Account,
    action: &str,
    target: &str,
    change: F,
) -> Response
where
    F: std::future::Future<Output = Result<Shown, String>>,
{
    let caller = Caller(account.principal());
    if let Err(r) = caller
        .audit(state, action, None, Some(target), "intent")
        .await
    {
        return r;
    }
    let shown = match change.await {
        Ok(shown) => shown,
        Err(reason) => Shown::Failed(reason),
    };
    let outcome = if matches!(shown, Shown::Failed(_)) {
        "rejected"
    } else {
        "ok"
    };
    if let Err(r) = caller
        .audit(state, action, None, Some(target), outcome)
        .await
    {
        return r;
    }
    screen_response(state, session, account, shown).await
}

/// `POST /console/admin/accounts`: creates an account with a generated first password, shown
/// once.
pub async fn create_account(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Form(form): Form<AccountForm>,
) -> Response {
    let (session, account, locale) = match administrator(
        &state,
        &config,
        &headers,
        Some(&form.csrf),
        "accounts.create",
    )
    .await
    {
        Ok(a) => a,
        Err(r) => return r,
    };
    let target = format!(
        "new account {}",
        form.username.trim().chars().take(64).collect::<String>()
    );
    let db = state.db.clone();
    let created_by = account.principal().key_id;
    let change = async move {
        let role = Role::parse(&form.role).ok_or("unknown role")?;
        let business_numbers = numbers_of(&form.numbers, form.all_numbers.is_some())?;
        let password = accounts::generate_password();
        accounts::create(
            &db,
            NewAccount {
                username: form.username,
                name: form.name,
                role,
                scopes: None,
                business_numbers,
                locale: form.locale,
                password: password.clone(),
                created_by,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Shown::Secret(locale.t(Text::FirstPassword), password))
    };
    audited_change(
        &state,
        &session,
        &account,
        "accounts.create",
        &target,
        change,
    )
    .await
}

/// A form with its CSRF token only.
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /console/admin/accounts/{id}/disable` and `…/reset-mfa`: the change, then the
/// account's sessions end.
async fn change_account(
    state: Arc<AppState>,
    config: Arc<ConsoleConfig>,
    headers: HeaderMap,
    id: String,
    csrf: String,
    action: &'static str,
) -> Response {
    let (session, account, locale) =
        match administrator(&state, &config, &headers, Some(&csrf), action).await {
            Ok(a) => a,
            Err(r) => return r,
        };
    // Not oneself: an admin who disables or resets their own account locks the door behind.
    if id == account.id {
        return forbidden(locale, &session, &account);
    }
    let db = state.db.clone();
    let target_name = accounts::get(&state.db, &id)
        .await
        .ok()
        .flatten()
        .map(|a| a.username)
        .unwrap_or_else(|| id.clone());
    let change = async move {
        let changed = match action {
            "accounts.disable" => accounts::disable(&db, &id).await,
            _ => accounts::reset_mfa(&db, &id).await,
        }
        .map_err(|e| e.to_string())?;
        if !changed {
            return Err("no such account".into());
        }
        console_sessions::end_all_for(&db, &id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Shown::Done(format!("{} ✓", locale.t(Text::Saved))))
    };
    audited_change(&state, &session, &account, action, &target_name, change).await
}

/// `POST /console/admin/accounts/{id}/disable`.
pub async fn disable_account(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    change_account(state, config, headers, id, form.csrf, "accounts.disable").await
}

/// `POST /console/admin/accounts/{id}/reset-mfa`.
pub async fn reset_mfa(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    change_account(state, config, headers, id, form.csrf, "accounts.reset_mfa").await
}

/// The new-key form.
#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    name: String,
    role: String,
    #[serde(default)]
    numbers: String,
    all_numbers: Option<String>,
    /// A day, `YYYY-MM-DD`: the key works until its end.
    #[serde(default)]
    expires: String,
}

/// `POST /console/admin/keys`: creates a key, shown once.
pub async fn create_key(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let (session, account, locale) =
        match administrator(&state, &config, &headers, Some(&form.csrf), "keys.create").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    let target = format!(
        "new key for {}",
        form.name.trim().chars().take(64).collect::<String>()
    );
    let db = state.db.clone();
    let change = async move {
        let role = Role::parse(&form.role).ok_or("unknown role")?;
        let business_numbers = numbers_of(&form.numbers, form.all_numbers.is_some())?;
        let expires_at = match form.expires.trim() {
            "" => None,
            day => Some(
                chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|_| "the expiry is a day, YYYY-MM-DD")?
                    .and_hms_opt(23, 59, 59)
                    .ok_or("the expiry is a day, YYYY-MM-DD")?
                    .and_utc(),
            ),
        };
        let (_, token) = keys::create(
            &db,
            NewKey {
                name: form.name,
                role,
                scopes: None,
                business_numbers,
                expires_at,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Shown::Secret(locale.t(Text::NewKeyShown), token))
    };
    audited_change(&state, &session, &account, "keys.create", &target, change).await
}

/// `POST /console/admin/keys/{id}/revoke`.
pub async fn revoke_key(
    State(state): State<Arc<AppState>>,
    Extension(config): Extension<Arc<ConsoleConfig>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let (session, account, locale) =
        match administrator(&state, &config, &headers, Some(&form.csrf), "keys.revoke").await {
            Ok(a) => a,
            Err(r) => return r,
        };
    let db = state.db.clone();
    let key_id = id.clone();
    let change = async move {
        if keys::revoke(&db, &key_id)
            .await
            .map_err(|e| e.to_string())?
        {
            Ok(Shown::Done(format!("{} ✓", locale.t(Text::Saved))))
        } else {
            Err("no such key".into())
        }
    };
    audited_change(&state, &session, &account, "keys.revoke", &id, change).await
}
