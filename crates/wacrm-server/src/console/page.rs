//! The console's page shell, its words in Portuguese (Brazil, the default) and English, and the
//! response headers every console page carries.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

/// The console's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locale {
    /// Português (Brasil), the default.
    PtBr,
    /// English.
    En,
}

impl Locale {
    /// An account's `locale` setting (anything unknown is the default).
    pub fn parse(value: &str) -> Self {
        if value.eq_ignore_ascii_case("en") {
            Locale::En
        } else {
            Locale::PtBr
        }
    }

    /// The `lang` attribute.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::PtBr => "pt-BR",
            Locale::En => "en",
        }
    }

    /// The words for `text` in this language.
    pub fn t(self, text: Text) -> &'static str {
        let (pt, en) = text.words();
        match self {
            Locale::PtBr => pt,
            Locale::En => en,
        }
    }
}

/// Every text the console shows, with its two translations side by side so neither can be
/// forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Text {
    SignIn,
    Username,
    Password,
    WrongCredentials,
    Locked,
    Disabled,
    SecondFactor,
    Code,
    CodeHelp,
    WrongCode,
    Verify,
    EnrolTitle,
    EnrolHelp,
    SecretLabel,
    RecoveryTitle,
    RecoveryHelp,
    Continue,
    SignOut,
    Conversations,
    Search,
    SearchHelp,
    NoContacts,
    History,
    NoMessages,
    SentBy,
    Reply,
    Send,
    Sent,
    Refused,
    NotFound,
    Forbidden,
    Audit,
    Actor,
    Action,
    Contact,
    From,
    Until,
    Filter,
    Export,
    NoEntries,
    When,
    Target,
    Outcome,
    Next,
    Operations,
    Sending,
    SendingOff,
    Number,
    State,
    Since,
    Reason,
    CrmSync,
    Connection,
    LastCommit,
    Restarts,
    LastError,
    Consumers,
    Group,
    Running,
    Stopped,
    DeadLetters,
    Source,
    Attempts,
    Retry,
    Retried,
    Admin,
    Accounts,
    Name,
    Role,
    Numbers,
    AllNumbers,
    Language,
    Create,
    NewAccount,
    ApiKeys,
    NewKey,
    Expires,
    Disable,
    ResetMfa,
    Revoke,
    Revoked,
    Expired,
    DisabledState,
    LockedState,
    MfaPending,
    ShownOnce,
    FirstPassword,
    NewKeyShown,
    Saved,
}

impl Text {
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Text::SignIn => ("Entrar", "Sign in"),
            Text::Username => ("Usuário", "Username"),
            Text::Password => ("Senha", "Password"),
            Text::WrongCredentials => ("Usuário ou senha incorretos.", "Wrong username or password."),
            Text::Locked => (
                "Conta bloqueada por tentativas erradas. Tente de novo depois de",
                "Account locked after failed attempts. Try again after",
            ),
            Text::Disabled => ("Conta desativada.", "Account disabled."),
            Text::SecondFactor => ("Verificação em duas etapas", "Two-step verification"),
            Text::Code => ("Código", "Code"),
            Text::CodeHelp => (
                "O código de 6 dígitos do seu aplicativo autenticador, ou um código de recuperação.",
                "The 6-digit code from your authenticator app, or a recovery code.",
            ),
            Text::WrongCode => ("Código incorreto.", "Wrong code."),
            Text::Verify => ("Verificar", "Verify"),
            Text::EnrolTitle => ("Ative a verificação em duas etapas", "Set up two-step verification"),
            Text::EnrolHelp => (
                "Escaneie o código QR com um aplicativo autenticador (ou digite a chave) e informe o código que ele mostra.",
                "Scan the QR code with an authenticator app (or type the key) and enter the code it shows.",
            ),
            Text::SecretLabel => ("Chave", "Key"),
            Text::RecoveryTitle => ("Códigos de recuperação", "Recovery codes"),
            Text::RecoveryHelp => (
                "Guarde estes códigos em lugar seguro: cada um entra uma vez se você perder o celular. Eles não serão mostrados de novo.",
                "Keep these codes somewhere safe: each signs you in once if you lose your phone. They are not shown again.",
            ),
            Text::Continue => ("Continuar", "Continue"),
            Text::SignOut => ("Sair", "Sign out"),
            Text::Conversations => ("Conversas", "Conversations"),
            Text::Search => ("Buscar", "Search"),
            Text::SearchHelp => (
                "Telefone (qualquer formato), nome ou BSUID",
                "Phone (any format), name or BSUID",
            ),
            Text::NoContacts => ("Nenhum contato encontrado.", "No contact found."),
            Text::History => ("Histórico", "History"),
            Text::NoMessages => ("Nenhuma mensagem.", "No messages."),
            Text::SentBy => ("enviada por", "sent by"),
            Text::Reply => ("Responder", "Reply"),
            Text::Send => ("Enviar", "Send"),
            Text::Sent => ("Mensagem aceita para envio.", "Message accepted for sending."),
            Text::Refused => ("Envio recusado:", "Sending refused:"),
            Text::NotFound => ("Não encontrado.", "Not found."),
            Text::Forbidden => ("Sem permissão.", "Not allowed."),
            Text::Audit => ("Auditoria", "Audit"),
            Text::Actor => ("Quem", "Who"),
            Text::Action => ("Ação", "Action"),
            Text::Contact => ("Contato", "Contact"),
            Text::From => ("De", "From"),
            Text::Until => ("Até", "Until"),
            Text::Filter => ("Filtrar", "Filter"),
            Text::Export => ("Exportar CSV (registrado na auditoria)", "Export CSV (recorded in the audit log)"),
            Text::NoEntries => ("Nenhum registro.", "No entries."),
            Text::When => ("Quando", "When"),
            Text::Target => ("Objeto", "Object"),
            Text::Outcome => ("Resultado", "Outcome"),
            Text::Next => ("Próxima página", "Next page"),
            Text::Operations => ("Operação", "Operations"),
            Text::Sending => ("Envio por número", "Sending, per number"),
            Text::SendingOff => (
                "O envio não está configurado (sem token de acesso).",
                "Sending is not configured (no access token).",
            ),
            Text::Number => ("Número", "Number"),
            Text::State => ("Estado", "State"),
            Text::Since => ("Desde", "Since"),
            Text::Reason => ("Motivo", "Reason"),
            Text::CrmSync => ("Sincronização com CRMs", "CRM sync"),
            Text::Connection => ("Conexão", "Connection"),
            Text::LastCommit => ("Último avanço", "Last commit"),
            Text::Restarts => ("Reinícios", "Restarts"),
            Text::LastError => ("Último erro", "Last error"),
            Text::Consumers => ("Consumidores", "Consumers"),
            Text::Group => ("Grupo", "Group"),
            Text::Running => ("rodando", "running"),
            Text::Stopped => ("parado", "stopped"),
            Text::DeadLetters => ("Mensagens mortas (dead letters)", "Dead letters"),
            Text::Source => ("Origem", "Source"),
            Text::Attempts => ("Tentativas", "Attempts"),
            Text::Retry => ("Reenviar", "Retry"),
            Text::Retried => ("Reenvio:", "Re-driven:"),
            Text::Admin => ("Administração", "Administration"),
            Text::Accounts => ("Contas", "Accounts"),
            Text::Name => ("Nome", "Name"),
            Text::Role => ("Papel", "Role"),
            Text::Numbers => ("Números (phone number ids)", "Numbers (phone number ids)"),
            Text::AllNumbers => ("Todos os números", "Every number"),
            Text::Language => ("Idioma", "Language"),
            Text::Create => ("Criar", "Create"),
            Text::NewAccount => ("Nova conta", "New account"),
            Text::ApiKeys => ("Chaves de API", "API keys"),
            Text::NewKey => ("Nova chave", "New key"),
            Text::Expires => ("Expira em", "Expires"),
            Text::Disable => ("Desativar", "Disable"),
            Text::ResetMfa => ("Refazer 2FA", "Reset MFA"),
            Text::Revoke => ("Revogar", "Revoke"),
            Text::Revoked => ("revogada", "revoked"),
            Text::Expired => ("expirada", "expired"),
            Text::DisabledState => ("desativada", "disabled"),
            Text::LockedState => ("bloqueada", "locked"),
            Text::MfaPending => ("2FA pendente", "MFA pending"),
            Text::ShownOnce => (
                "Mostrado só esta vez: entregue por um canal seguro.",
                "Shown only this once: hand it over by a safe channel.",
            ),
            Text::FirstPassword => ("Senha inicial", "First password"),
            Text::NewKeyShown => ("Nova chave", "New key"),
            Text::Saved => ("Feito", "Done"),
        }
    }
}

/// The stylesheet, embedded in the binary.
pub const STYLESHEET: &str = include_str!("app.css");

/// `GET /console/assets/app.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// The navigation of a signed-in page: its links and the sign-out form.
pub struct Nav<'a> {
    /// The account's name.
    pub name: &'a str,
    /// The session's CSRF token (the sign-out form carries it).
    pub csrf: &'a str,
    /// The account: which screens its scopes open.
    pub account: &'a wacrm_store::accounts::Account,
}

/// A button that posts to `action` with the session's CSRF token (disable, revoke, retry, …).
pub fn post_button(class: &str, action: &str, csrf: &str, label: &str) -> Markup {
    html! {
        form class=(class) method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

/// A whole page.
pub fn page(locale: Locale, title: &str, nav: Option<Nav<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(locale.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · wacrm" }
                link rel="stylesheet" href="/console/assets/app.css";
            }
            body {
                header.top {
                    span.brand { "wacrm" }
                    @if let Some(nav) = nav {
                        nav {
                            a href="/console/conversations" { (locale.t(Text::Conversations)) }
                            @if nav.account.scopes.iter().any(|s| s == wacrm_store::keys::scope::AUDIT_READ) {
                                " " a #nav-audit href="/console/audit" { (locale.t(Text::Audit)) }
                            }
                            " " a #nav-operations href="/console/operations" { (locale.t(Text::Operations)) }
                            @if nav.account.business_numbers.is_none() && nav.account.scopes.iter().any(|s| s == wacrm_store::keys::scope::KEYS_MANAGE) {
                                " " a #nav-admin href="/console/admin" { (locale.t(Text::Admin)) }
                            }
                        }
                        span.who { (nav.name) }
                        form #logout method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button type="submit" { (locale.t(Text::SignOut)) }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page response with the console's headers: nothing cached, no framing, no referrer, and a
/// content security policy that allows only the console's own stylesheet (no script at all).
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
