//! The console's security through the real binary, over HTTP: an account made with
//! `wacrm accounts create` signs in with its password and enrols TOTP; nothing is reachable
//! before the second factor; the session is replaced after it; CSRF tokens are required on
//! every form; an agent limited to one business number never sees another number's
//! conversations; sign-out ends the session server-side; five wrong codes lock the account; and
//! every step is in the audit log. (The same flows in a real browser: console_browser.rs.)
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{create_account, totp_code_at, Bus, Service};
use reqwest::redirect::Policy;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use wacrm_testkit::graph::{GraphConfig, GraphFake};
use wacrm_testkit::webhooks;

const NUMBER: &str = "106540352242922";
const OTHER_NUMBER: &str = "106540352249999";
const PASSWORD: &str = "uma senha bem comprida 42";

/// A browser without a browser: no redirects followed, cookies kept by hand.
struct Visitor {
    client: Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Visitor {
    fn new(service: &Service) -> Visitor {
        Visitor {
            client: Client::builder()
                .redirect(Policy::none())
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
            base: service.url(""),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, response: &reqwest::Response) -> Vec<String> {
        let mut set = Vec::new();
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap().to_owned();
            let (pair, _) = text.split_once(';').unwrap_or((&text, ""));
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
            set.push(text);
        }
        set
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response.text().await.unwrap())
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(&response);
        let status = response.status();
        let location = location(&response);
        (status, location, response.text().await.unwrap())
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The value of the first `<input name="NAME" value="…">`, or the text of `<… id="ID">…<`.
fn input_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[at..].split('"').next().unwrap().to_owned()
}

fn element_text(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id} in {html}"));
    let open = html[at..].find('>').unwrap() + at + 1;
    html[open..].split('<').next().unwrap().to_owned()
}

/// A new visitor who signs in as `username` for the first time and enrolls TOTP; the key it
/// was shown.
async fn enrolled(service: &Service, username: &str) -> (Visitor, String) {
    let mut visitor = Visitor::new(service);
    sign_in_password(&mut visitor, username).await;
    let (_, _, page) = visitor.get("/console/mfa").await;
    let secret = element_text(&page, "totp-secret");
    let csrf = input_value(&page, "csrf");
    let (status, _, page) = visitor
        .post(
            "/console/mfa",
            &[("code", &totp_code_at(&secret, 0)), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{username} enrolls: {page}");
    (visitor, secret)
}

/// Signs in with the password: the visitor then holds a session that still owes the code.
async fn sign_in_password(visitor: &mut Visitor, username: &str) {
    let (status, _, page) = visitor.get("/console/login").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = input_value(&page, "csrf");
    let (status, to, _) = visitor
        .post(
            "/console/login",
            &[
                ("username", username),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/mfa")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_admits_only_after_the_second_factor_and_scopes_every_screen() {
    let graph = GraphFake::start(GraphConfig::default()).await;
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_SERVER__CONSOLE__SECURE_COOKIES", "false".to_owned()),
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
    ]);
    create_account(
        &service,
        "ana",
        PASSWORD,
        &[
            "--name",
            "Ana Agente",
            "--role",
            "agent",
            "--number",
            NUMBER,
        ],
    );
    create_account(
        &service,
        "dora",
        PASSWORD,
        &["--name", "Dora", "--role", "agent", "--number", NUMBER],
    );
    create_account(
        &service,
        "otto",
        PASSWORD,
        &[
            "--name",
            "Otto Auditor",
            "--role",
            "auditor",
            "--all-numbers",
            "--locale",
            "en",
        ],
    );
    create_account(
        &service,
        "ada",
        PASSWORD,
        &["--name", "Ada Admin", "--role", "admin", "--all-numbers"],
    );
    let admin = service.admin_key();
    service.start().await;

    // A contact on each number.
    let now = chrono::Utc::now().timestamp();
    let mine = "5511987001111";
    let theirs = "5511987002222";
    assert_eq!(
        service
            .post_webhook(webhooks::text(
                NUMBER,
                mine,
                "wamid.console.1",
                "quero um orçamento",
                now - 60
            ))
            .await,
        200
    );
    assert_eq!(
        service
            .post_webhook(webhooks::text(
                OTHER_NUMBER,
                theirs,
                "wamid.console.2",
                "outro número",
                now - 60
            ))
            .await,
        200
    );
    service
        .wait_stored(
            &admin,
            ["wamid.console.1".to_owned(), "wamid.console.2".to_owned()],
            Duration::from_secs(30),
        )
        .await;

    let mut ana = Visitor::new(&service);
    // Nothing without a session.
    let (status, to, _) = ana.get("/console/conversations").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );

    // The sign-in form needs its CSRF token; a wrong password gets no session.
    let (_, _, page) = ana.get("/console/login").await;
    let csrf = input_value(&page, "csrf");
    let (status, _, _) = ana
        .post(
            "/console/login",
            &[("username", "ana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    // Nor with no token and no cookie at all (a form posted from another site).
    let mut stranger = Visitor::new(&service);
    let (status, _, _) = stranger
        .post(
            "/console/login",
            &[("username", "ana"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token and no cookie");
    assert!(stranger.cookie("wacrm_session").is_none());
    let (status, _, page) = ana
        .post(
            "/console/login",
            &[
                ("username", "ana"),
                ("password", "senha errada 123"),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("id=\"error\""));
    assert!(
        ana.cookie("wacrm_session").is_none(),
        "a session without the password"
    );

    // The password alone: a session that reaches nothing but the second factor.
    sign_in_password(&mut ana, "ana").await;
    let before_mfa = ana.cookie("wacrm_session").unwrap();
    for path in ["/console/conversations", "/console/contacts/x", "/console"] {
        let (status, to, body) = ana.get(path).await;
        assert!(status.is_redirection(), "{path}: {status}");
        assert!(
            to == "/console/mfa" || to == "/console/conversations",
            "{path}: {to}"
        );
        assert!(!body.contains(mine));
    }
    let (status, _, page) = ana.get("/console/mfa").await;
    assert_eq!(status, StatusCode::OK);
    let secret = element_text(&page, "totp-secret");
    assert!(page.contains("id=\"totp-qr\"") && page.contains("<svg"));
    let csrf = input_value(&page, "csrf");
    // CSRF on the code form too, and a wrong code is refused.
    let code = totp_code_at(&secret, 0);
    let (status, _, _) = ana.post("/console/mfa", &[("code", &code)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = ana
        .post("/console/mfa", &[("code", "000000"), ("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, page) = ana
        .post("/console/mfa", &[("code", &code), ("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page.matches("<li>").count(),
        10,
        "ten recovery codes: {page}"
    );
    let after_mfa = ana.cookie("wacrm_session").unwrap();
    assert_ne!(
        before_mfa, after_mfa,
        "the session is replaced after the second factor"
    );

    // The cookie is HttpOnly, SameSite=Strict, limited to /console.
    let response = Client::new()
        .get(service.url("/console/login"))
        .send()
        .await
        .unwrap();
    let set = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        set.contains("HttpOnly")
            && set.contains("SameSite=Strict")
            && set.contains("Path=/console"),
        "{set}"
    );
    assert!(response.headers().get("content-security-policy").is_some());

    // The old token is worth nothing.
    let mut stale = Visitor::new(&service);
    stale.cookies.push(("wacrm_session".into(), before_mfa));
    let (status, to, _) = stale.get("/console/conversations").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );

    // Search, history: the own number's contact only.
    let (status, _, page) = ana
        .get(&format!("/console/conversations?q=%2B{mine}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let link_at = page
        .find("/console/contacts/")
        .expect("the contact is found");
    let contact_id: String = page[link_at + "/console/contacts/".len()..]
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    let (status, _, page) = ana.get(&format!("/console/contacts/{contact_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("quero um orçamento"), "{page}");
    assert!(page.contains("id=\"send\""));
    let (_, _, page) = ana.get(&format!("/console/conversations?q={theirs}")).await;
    assert!(
        page.contains("id=\"no-results\""),
        "another number's contact: {page}"
    );
    // By name, in any case: both contacts are "Cliente", only the one on Ana's number is found.
    let (_, _, page) = ana.get("/console/conversations?q=CLIENTE").await;
    assert_eq!(
        page.matches("class=\"contact\"").count(),
        1,
        "a name search sees only the account's numbers: {page}"
    );
    assert!(page.contains(&contact_id));
    let (_, found) = service
        .get_json(&format!("/v1/contacts?wa_id={theirs}"), &admin)
        .await;
    let other_id = found[0]["id"].as_str().unwrap().to_owned();
    let (status, _, page) = ana.get(&format!("/console/contacts/{other_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("outro número"));

    // A send form without its token is refused before anything is sent.
    let (status, _, _) = ana
        .post(
            &format!("/console/contacts/{contact_id}/send"),
            &[("from", NUMBER), ("nonce", "ab"), ("body", "olá")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The same form sent twice (a double click, a reload) sends once: its nonce is the
    // request's Idempotency-Key.
    let (_, _, page) = ana.get(&format!("/console/contacts/{contact_id}")).await;
    let form = [
        ("csrf", input_value(&page, "csrf")),
        ("from", input_value(&page, "from")),
        ("nonce", input_value(&page, "nonce")),
        ("body", "Segue o orçamento".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let send = format!("/console/contacts/{contact_id}/send");
    for _ in 0..2 {
        let (status, _, page) = ana.post(&send, &form).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("id=\"notice\""), "{page}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while graph.sent().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never reached WhatsApp"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(graph.sent().len(), 1, "a form sent twice sent twice");

    // Sign-out needs its token, then ends the session on the server.
    let (_, _, page) = ana.get("/console/conversations").await;
    let csrf = input_value(&page, "csrf");
    let (status, _, _) = ana.post("/console/logout", &[("csrf", "wrong")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let signed_out = ana.cookie("wacrm_session").unwrap();
    let (status, to, _) = ana.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );
    let mut replay = Visitor::new(&service);
    replay.cookies.push(("wacrm_session".into(), signed_out));
    let (status, to, _) = replay.get("/console/conversations").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/login")
    );

    // Five wrong codes lock the account: then even the right password is refused.
    let (mut dora, _) = enrolled(&service, "dora").await;
    let (_, _, page) = dora.get("/console/conversations").await;
    let csrf = input_value(&page, "csrf");
    dora.post("/console/logout", &[("csrf", &csrf)]).await;
    sign_in_password(&mut dora, "dora").await;
    let (_, _, page) = dora.get("/console/mfa").await;
    assert!(
        !page.contains("totp-secret"),
        "enrolled: no secret shown again"
    );
    let csrf = input_value(&page, "csrf");
    let mut last = String::new();
    for _ in 0..5 {
        let (status, _, page) = dora
            .post("/console/mfa", &[("code", "123456"), ("csrf", &csrf)])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        last = page;
    }
    assert!(element_text(&last, "error").contains("bloqueada"), "{last}");
    let mut again = Visitor::new(&service);
    let (_, _, page) = again.get("/console/login").await;
    let csrf = input_value(&page, "csrf");
    let (status, _, page) = again
        .post(
            "/console/login",
            &[
                ("username", "dora"),
                ("password", PASSWORD),
                ("csrf", &csrf),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "locked: {page}");
    assert!(again.cookie("wacrm_session").is_none());

    // The audit screen: not for an agent; an auditor filters by actor and exports (audited).
    let mut ana = Visitor::new(&service);
    sign_in_password(&mut ana, "ana").await;
    let (_, _, page) = ana.get("/console/mfa").await;
    let csrf = input_value(&page, "csrf");
    let (status, _, _) = ana
        .post(
            "/console/mfa",
            &[("code", &totp_code_at(&secret, 30)), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "a later code signs in");
    let (status, _, page) = ana.get("/console/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!page.contains("audit-entries"));
    let (mut otto, _) = enrolled(&service, "otto").await;
    let (status, _, page) = otto.get("/console/audit?actor=account%3Aana").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("lang=\"en\""), "the account's language");
    assert!(page.contains("id=\"audit-entries\""), "{page}");
    assert!(page.contains("console.mfa_enrol") && page.contains("messages.list"));
    assert!(!page.contains("account:dora"), "filtered by actor");
    let (status, _, csv) = otto
        .get("/console/audit.csv?actor=account%3Aana&action=console.login")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.starts_with("seq,at,key_id,actor,action"), "{csv}");
    assert!(csv.lines().count() >= 4, "{csv}");
    assert!(
        csv.lines().skip(1).all(|l| l.contains("\"console.login\"")),
        "{csv}"
    );

    // Operations: the auditor sees consumers and dead letters but cannot re-drive; an agent
    // sees no dead letters; an admin re-drives one (CSRF required), audited.
    let bad = br#"{"not":"whatsapp"}"#.to_vec();
    assert_eq!(service.post_webhook(bad).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let dead_id = loop {
        let (_, dead) = service.get_json("/v1/dead-letters", &admin).await;
        if let Some(id) = dead[0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no dead letter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, _, page) = otto.get("/console/operations").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("id=\"consumers\"") && page.contains("wacrm-store"),
        "{page}"
    );
    assert!(
        page.contains("id=\"dead-letters\"") && page.contains(&dead_id),
        "{page}"
    );
    assert!(
        !page.contains("form class=\"retry\""),
        "an auditor cannot re-drive"
    );
    let (status, _, page) = ana.get("/console/operations").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("id=\"dead-letters\"") && !page.contains(&dead_id));
    let (mut ada, _) = enrolled(&service, "ada").await;
    let (_, _, page) = ada.get("/console/operations").await;
    assert!(page.contains("form class=\"retry\""), "{page}");
    let csrf = input_value(&page, "csrf");
    let retry = format!("/console/dead-letters/{dead_id}/retry");
    let (status, _, _) = ada.post(&retry, &[("csrf", "wrong")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, to, _) = ada.post(&retry, &[("csrf", &csrf)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/console/operations?retried="), "{to}");

    // Administration: not for an auditor; an admin creates an account (its first password
    // shown once, and it signs in with it), creates and revokes a key, disables an account.
    let (status, _, _) = otto.get("/console/admin").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, page) = ada.get("/console/admin").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let csrf = input_value(&page, "csrf");
    let (status, _, _) = ada
        .post(
            "/console/admin/accounts",
            &[
                ("username", "eva"),
                ("name", "Eva"),
                ("role", "agent"),
                ("numbers", NUMBER),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token");
    let (status, _, page) = ada
        .post(
            "/console/admin/accounts",
            &[
                ("csrf", &csrf),
                ("username", "eva"),
                ("name", "Eva Nova"),
                ("role", "agent"),
                ("numbers", NUMBER),
                ("locale", "pt-BR"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let first_password = element_text(&page, "new-secret");
    assert_eq!(first_password.len(), 20, "{page}");
    let mut eva = Visitor::new(&service);
    let (_, _, login) = eva.get("/console/login").await;
    let login_csrf = input_value(&login, "csrf");
    let (status, to, _) = eva
        .post(
            "/console/login",
            &[
                ("username", "eva"),
                ("password", &first_password),
                ("csrf", &login_csrf),
            ],
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/mfa")
    );
    let (status, _, page) = ada
        .post(
            "/console/admin/keys",
            &[
                ("csrf", &csrf),
                ("name", "Integração"),
                ("role", "auditor"),
                ("all_numbers", "on"),
                ("expires", "2099-12-31"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let new_key = element_text(&page, "new-secret");
    assert!(new_key.starts_with("wacrm_"), "{page}");
    assert_eq!(service.get_json("/v1/status", &new_key).await.0, 200);
    let key_id = new_key
        .trim_start_matches("wacrm_")
        .split('_')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, _) = ada
        .post(
            &format!("/console/admin/keys/{key_id}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        service.get_json("/v1/status", &new_key).await.0,
        401,
        "a revoked key"
    );
    let (_, _, page) = ada.get("/console/admin").await;
    let row = page.find("data-username=\"eva\"").unwrap();
    let action = page[row..].find("/console/admin/accounts/").unwrap() + row;
    let eva_id = page[action + "/console/admin/accounts/".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let (status, _, _) = ada
        .post(
            &format!("/console/admin/accounts/{eva_id}/disable"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, to, _) = eva.get("/console/mfa").await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/console/login"),
        "a disabled account's session ended"
    );

    // Every step audited, under the account's id.
    let (_, audit) = service.get_json("/v1/audit?limit=500", &admin).await;
    let entries: Vec<(String, String, String)> = audit
        .as_array()
        .or_else(|| audit["entries"].as_array())
        .unwrap()
        .iter()
        .map(|e: &Value| {
            (
                e["key_id"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
                e["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("account:ana", "console.login", "denied"),
        ("account:ana", "console.login", "password_ok"),
        ("account:ana", "console.mfa_enrol", "denied"),
        ("account:ana", "console.mfa_enrol", "ok"),
        ("account:ana", "console.login", "ok"),
        ("account:ana", "contacts.search", "ok"),
        ("account:ana", "console.logout", "ok"),
        ("account:dora", "console.login", "ok"),
        ("account:dora", "console.mfa", "locked"),
        ("account:dora", "console.login", "locked"),
        ("cli", "accounts.create", "ok"),
        ("account:ana", "audit.read", "denied"),
        ("account:otto", "audit.read", "ok"),
        ("account:otto", "audit.export", "ok"),
        ("account:ada", "dead_letters.retry", "intent"),
        ("account:ada", "accounts.create", "intent"),
        ("account:ada", "accounts.create", "ok"),
        ("account:ada", "keys.create", "ok"),
        ("account:ada", "keys.revoke", "ok"),
        ("account:ada", "accounts.disable", "ok"),
        ("account:otto", "admin.read", "denied"),
    ] {
        assert!(
            entries
                .iter()
                .any(|(k, a, o)| (k.as_str(), a.as_str(), o.as_str()) == expected),
            "{expected:?} not in the audit log: {entries:?}"
        );
    }
    service.terminate();
}
