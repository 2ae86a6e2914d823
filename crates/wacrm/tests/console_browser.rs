//! The web console in a real browser: headless Chromium over WebDriver (`common::browser`)
//! against the real `wacrm serve`. Skips without Chromium and chromedriver, except under CI
//! (`CI` or `WACRM_REQUIRE_BROWSER`), where it fails; `.ci/chromium.sh` installs them.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::browser::{png_size, Browser};
use common::{create_account, totp_code_at, Bus, Service};

/// A phone's viewport in CSS pixels, for the narrow layout.
const PHONE: (u32, u32) = (390, 844);

/// The harness itself, on a route the service serves today without a key: a page is opened,
/// read and photographed, the viewport narrowed to a phone's, and the session closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_opens_reads_and_photographs_a_page_of_the_service() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut service = Service::new(Bus::Embedded);
    service.start().await;

    let url = service.url("/healthz");
    browser.goto(&url).await;
    browser.wait_for("body", Duration::from_secs(5)).await;
    assert_eq!(browser.current_url().await, url);
    assert_eq!(browser.text("body").await, "ok");
    assert!(browser.exists("body").await);
    assert!(!browser.exists("form#login").await);
    assert!(
        browser.cookies().await.is_empty(),
        "an unauthenticated route sets no cookie"
    );

    let shots = tempfile::tempdir().unwrap();
    let desktop = shots.path().join("healthz.png");
    let (width, height) = browser.screenshot(&desktop).await;
    assert_eq!(width, 1280, "the window starts 1280 wide");
    assert!(height > 0);
    let png = std::fs::read(&desktop).unwrap();
    assert!(png.len() > 100, "the screenshot has a picture in it");
    assert_eq!(png_size(&png), Some((width, height)));

    browser.set_viewport(PHONE.0, PHONE.1).await;
    assert_eq!(
        browser.viewport().await,
        (i64::from(PHONE.0), i64::from(PHONE.1))
    );
    let phone = shots.path().join("healthz-phone.png");
    assert_eq!(browser.screenshot(&phone).await, PHONE);
    assert_eq!(png_size(&std::fs::read(&phone).unwrap()), Some(PHONE));

    browser.close().await;
    service.terminate();
}

const NUMBER: &str = "106540352242922";
const PASSWORD: &str = "uma senha bem comprida 42";

/// Where screenshots go: `WACRM_CONSOLE_SCREENSHOTS` (docs/console/ when the docs are
/// refreshed), or a temporary directory.
fn screenshot_dir() -> (std::path::PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("WACRM_CONSOLE_SCREENSHOTS") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (dir.into(), None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}

/// Signs in with the password; the browser is then on the second-factor page.
async fn sign_in(browser: &Browser, service: &Service, username: &str) {
    sign_in_with(browser, service, username, PASSWORD).await;
}

async fn sign_in_with(browser: &Browser, service: &Service, username: &str, password: &str) {
    browser.goto(&service.url("/console/login")).await;
    browser.fill("#username", username).await;
    browser.fill("#password", password).await;
    browser.submit("form#login").await;
    browser.wait_for("form#mfa", Duration::from_secs(10)).await;
}

/// The console as people use it, in headless Chromium: an admin creates an agent in the admin
/// screen; the agent (with the first password shown there) enrols TOTP at the first
/// sign-in (the test computes codes from the key the page shows) and reaches nothing before the
/// code; finds a contact by another spelling of the phone, reads the conversation, replies
/// inside the 24-hour window (WhatsApp gets it) and is refused, in words, outside it; signs out.
/// An auditor then sees the agent's actions on the audit screen. A wrong code five times locks
/// an account. Screenshots of each screen (docs/console.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_and_an_auditor_use_the_console_in_a_real_browser() {
    use wacrm_testkit::graph::{GraphConfig, GraphFake};
    use wacrm_testkit::webhooks;

    let Some(browser) = Browser::start().await else {
        return;
    };
    let graph = GraphFake::start(GraphConfig::default()).await;
    // Secure cookies as in production: Chromium keeps them from http://127.0.0.1.
    let mut service = Service::new(Bus::Embedded).with_env(&[
        ("WACRM_WHATSAPP__ACCESS_TOKEN", graph.config().access_token),
        ("WACRM_WHATSAPP__GRAPH_BASE_URL", graph.base_url()),
        ("WACRM_WHATSAPP__GRAPH_VERSION", graph.config().version),
    ]);
    create_account(
        &service,
        "ada",
        PASSWORD,
        &["--name", "Ada Admin", "--role", "admin", "--all-numbers"],
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
        ],
    );
    create_account(
        &service,
        "dora",
        PASSWORD,
        &["--name", "Dora", "--role", "agent", "--number", NUMBER],
    );
    let admin = service.admin_key();
    service.start().await;
    let (shots, _keep) = screenshot_dir();

    // Two customers: one wrote a minute ago (window open), one two days ago (closed).
    let now = chrono::Utc::now().timestamp();
    let open = "5511987003333";
    let closed = "5511987004444";
    for (from, wamid, body, at) in [
        (
            open,
            "wamid.browser.1",
            "Bom dia! Vocês entregam em Campinas?",
            now - 60,
        ),
        (
            closed,
            "wamid.browser.2",
            "Obrigada pelo atendimento",
            now - 2 * 86_400,
        ),
    ] {
        assert_eq!(
            service
                .post_webhook(webhooks::text(NUMBER, from, wamid, body, at))
                .await,
            200
        );
    }
    service
        .wait_stored(
            &admin,
            ["wamid.browser.1".to_owned(), "wamid.browser.2".to_owned()],
            Duration::from_secs(30),
        )
        .await;

    // Nothing without signing in.
    browser.goto(&service.url("/console/conversations")).await;
    browser
        .wait_for("form#login", Duration::from_secs(10))
        .await;
    assert!(browser.current_url().await.ends_with("/console/login"));
    browser.screenshot(&shots.join("login.png")).await;

    // The admin (made with the command line) creates the agent in the console.
    sign_in(&browser, &service, "ada").await;
    let ada = browser.text("#totp-secret").await;
    browser.fill("#code", &totp_code_at(&ada, 0)).await;
    browser.submit("form#mfa").await;
    browser
        .wait_for("#recovery-codes", Duration::from_secs(10))
        .await;
    browser.goto(&service.url("/console/admin")).await;
    browser.fill("#username", "bruno").await;
    browser.fill("#name", "Bruno Agente").await;
    browser.fill("#numbers", NUMBER).await;
    browser.submit("form#new-account").await;
    browser
        .wait_for("#new-secret", Duration::from_secs(10))
        .await;
    let bruno_password = browser.text("#new-secret").await;
    browser.screenshot(&shots.join("admin.png")).await;
    browser.submit("form#logout").await;
    browser
        .wait_for("form#login", Duration::from_secs(10))
        .await;

    // The password, then the enrolment page: QR code and key; nothing else reachable yet.
    sign_in_with(&browser, &service, "bruno", &bruno_password).await;
    assert!(browser.exists("#totp-qr svg").await);
    let secret = browser.text("#totp-secret").await;
    assert_eq!(secret.len(), 32, "a 160-bit key in base32: {secret}");
    browser.screenshot(&shots.join("enrol.png")).await;
    let session = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c.name == "wacrm_session")
        .expect("a session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    browser.goto(&service.url("/console/conversations")).await;
    browser.wait_for("form#mfa", Duration::from_secs(10)).await;
    assert!(browser.current_url().await.ends_with("/console/mfa"));

    browser.fill("#code", &totp_code_at(&secret, 0)).await;
    browser.submit("form#mfa").await;
    browser
        .wait_for("#recovery-codes", Duration::from_secs(10))
        .await;
    assert_eq!(browser.texts("#recovery-codes li").await.len(), 10);
    browser.screenshot(&shots.join("recovery-codes.png")).await;
    let after = browser
        .cookies()
        .await
        .into_iter()
        .find(|c| c.name == "wacrm_session")
        .unwrap();
    assert_ne!(
        after.value, session.value,
        "a new session after the second factor"
    );
    browser.click("#continue").await;

    // Search by another spelling, read, reply inside the window.
    browser
        .wait_for("form#search", Duration::from_secs(10))
        .await;
    browser.fill("#q", "+55 (11) 98700-3333").await;
    browser.submit("form#search").await;
    browser.wait_for("a.contact", Duration::from_secs(10)).await;
    browser.screenshot(&shots.join("search.png")).await;
    browser.click("a.contact").await;
    browser.wait_for("#history", Duration::from_secs(10)).await;
    let history = browser.texts("#history li.message").await;
    assert!(
        history.iter().any(|m| m.contains("entregam em Campinas")),
        "{history:?}"
    );
    browser.fill("#body", "Entregamos sim! Qual o CEP?").await;
    browser.submit("form#send").await;
    browser.wait_for("#notice", Duration::from_secs(10)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while graph.sent().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the reply never reached WhatsApp"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        graph.sent()[0].body["text"]["body"],
        "Entregamos sim! Qual o CEP?"
    );
    // Once the sender recorded it, the history shows it with its sender.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        browser
            .goto(&browser.current_url().await.replace("/send", ""))
            .await;
        let history = browser.texts("#history li.message").await;
        if history
            .iter()
            .any(|m| m.contains("Qual o CEP") && m.contains("Bruno Agente"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{history:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.screenshot(&shots.join("conversation.png")).await;
    browser.set_viewport(PHONE.0, PHONE.1).await;
    browser
        .screenshot(&shots.join("conversation-phone.png"))
        .await;
    browser.set_viewport(1280, 900).await;

    // Outside the window: refused, in words, and nothing sent.
    browser.goto(&service.url("/console/conversations")).await;
    browser.fill("#q", closed).await;
    browser.submit("form#search").await;
    browser.click("a.contact").await;
    browser.wait_for("form#send", Duration::from_secs(10)).await;
    browser.fill("#body", "Olá de novo").await;
    browser.submit("form#send").await;
    browser.wait_for("#refusal", Duration::from_secs(10)).await;
    assert!(
        browser.text("#refusal").await.contains("24 horas"),
        "{}",
        browser.text("#refusal").await
    );
    browser.screenshot(&shots.join("refused.png")).await;
    assert_eq!(graph.sent().len(), 1);

    browser.submit("form#logout").await;
    browser
        .wait_for("form#login", Duration::from_secs(10))
        .await;

    // The auditor sees the agent's actions.
    sign_in(&browser, &service, "otto").await;
    let otto = browser.text("#totp-secret").await;
    browser.fill("#code", &totp_code_at(&otto, 0)).await;
    browser.submit("form#mfa").await;
    browser
        .wait_for("#recovery-codes", Duration::from_secs(10))
        .await;
    browser
        .goto(&service.url("/console/audit?actor=account%3Abruno"))
        .await;
    browser
        .wait_for("#audit-entries", Duration::from_secs(10))
        .await;
    let rows = browser.texts("#audit-entries tr.entry").await;
    for action in [
        "console.mfa_enrol",
        "contacts.search",
        "messages.list",
        "messages.send",
        "console.logout",
    ] {
        assert!(
            rows.iter().any(|r| r.contains(action)),
            "{action} not shown: {rows:?}"
        );
    }
    browser.screenshot(&shots.join("audit.png")).await;
    browser.submit("form#logout").await;
    browser
        .wait_for("form#login", Duration::from_secs(10))
        .await;

    // Five wrong codes lock the account.
    sign_in(&browser, &service, "dora").await;
    for _ in 0..5 {
        browser.fill("#code", "000000").await;
        browser.submit("form#mfa").await;
        browser.wait_for("#error", Duration::from_secs(10)).await;
    }
    assert!(
        browser.text("#error").await.contains("bloqueada"),
        "{}",
        browser.text("#error").await
    );
    // A new visit (no session): even the right password is refused while locked.
    browser.client().delete_all_cookies().await.unwrap();
    browser.goto(&service.url("/console/login")).await;
    browser.fill("#username", "dora").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form#login").await;
    browser.wait_for("#error", Duration::from_secs(10)).await;
    assert!(browser.text("#error").await.contains("bloqueada"));
    assert!(!browser.exists("form#mfa").await);

    browser.close().await;
    service.terminate();
}
