//! A headless Chromium driven over WebDriver (chromedriver, through `fantoccini`), for the
//! console's end-to-end tests against the real binary.
//!
//! [`Browser::start`] runs chromedriver on a free loopback port and opens one Chromium session
//! with a profile of its own in a temporary directory. chromedriver is found through
//! `WACRM_CHROMEDRIVER`, `PATH` or `/usr/bin/chromedriver`; Chromium through `WACRM_CHROMIUM`,
//! `PATH` (`chromium`, `chromium-browser`) or `/usr/bin/chromium`. When either is missing the
//! browser suites skip with a message, except under CI (`CI` or `WACRM_REQUIRE_BROWSER` set),
//! where they fail; `.ci/chromium.sh` installs Debian's `chromium` and `chromium-driver`.
//!
//! Every helper panics on failure with the page's URL and the start of its text, so a failed
//! console test says where the browser was and what it showed. Pages are found by CSS
//! selectors on the console's stable ids, never by their (pt-BR) words.
#![allow(dead_code, clippy::unwrap_used)]

use std::fmt::Display;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use super::broker::{find_program, free_port};

/// How long chromedriver has to answer on its port once started.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// WebDriver's page-load timeout: a `goto` or a navigating click fails past it.
const PAGE_LOAD: Duration = Duration::from_secs(30);
/// How long [`Browser::submit`] waits for the page the form leads to.
const NAVIGATION: Duration = Duration::from_secs(15);
/// How often the waits look again.
const POLL: Duration = Duration::from_millis(50);
/// How many characters of the page's text a failure shows.
const SNIPPET_CHARS: usize = 600;
/// How many entries of chromedriver's log, and lines of its (and Chromium's) output, a
/// failure to start shows.
const LOG_LINES: usize = 15;
/// How much of one chromedriver log entry a failure to start shows (an entry can be a page
/// of JSON).
const ENTRY_CHARS: usize = 300;
/// Tries at a free port: another process can take the one found before chromedriver binds it.
const PORT_TRIES: usize = 3;

/// The signature every PNG file starts with.
pub const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// One headless Chromium session and the chromedriver serving it. Dropping it kills
/// chromedriver and its Chromium (their whole process group).
pub struct Browser {
    client: Option<Client>,
    driver: Child,
    /// The Chromium profile and chromedriver's log; removed on drop.
    dir: tempfile::TempDir,
    port: u16,
}

/// A cookie as the browser stores it: what the console's session cookie is checked on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieInfo {
    /// The cookie's name.
    pub name: String,
    /// Its value (to tell a session id renewed at sign-in from the one before).
    pub value: String,
    /// Its `Path`.
    pub path: Option<String>,
    /// `HttpOnly`: out of the page's scripts' reach.
    pub http_only: bool,
    /// `Secure`. Chromium keeps a `Secure` cookie from `http://127.0.0.1` (a trustworthy
    /// origin), so the flag can be checked on the tests' plain-HTTP service.
    pub secure: bool,
    /// `Strict`, `Lax` or `None`. Chromium reports a cookie set without the attribute as
    /// `Lax` (its default), so this cannot tell the two apart: assert on the `Set-Cookie`
    /// header (through `reqwest`) where that matters.
    pub same_site: Option<String>,
    /// Whether it has an expiry (a persistent cookie) rather than ending with the browser.
    pub persistent: bool,
}

/// Whether a missing browser fails the run instead of skipping (the Kafka suites' rule).
fn browser_required() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("WACRM_REQUIRE_BROWSER").is_some()
}

/// The end of chromedriver's log (the first line of each entry, cut short) and of its and
/// Chromium's output (where Chromium says why it would not start), for a failure to start.
fn driver_logs(dir: &Path) -> String {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| format!("({name} unreadable: {e})"))
    };
    let log = read("chromedriver.log");
    let entries: Vec<String> = log
        .lines()
        .filter(|line| line.starts_with('['))
        .map(|line| line.chars().take(ENTRY_CHARS).collect())
        .collect();
    let output = read("chromedriver.out");
    let lines: Vec<&str> = output.lines().collect();
    format!(
        "--- chromedriver.log (last entries) ---\n{}\n--- chromedriver and Chromium output (end) ---\n{}",
        entries[entries.len().saturating_sub(LOG_LINES)..].join("\n"),
        lines[lines.len().saturating_sub(LOG_LINES)..].join("\n"),
    )
}

/// A PNG's width and height, from its header.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    if png.len() < 24 || !png.starts_with(PNG_SIGNATURE) || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    Some((width, height))
}

/// Polls chromedriver's `/status` until it says it is ready; an error when it exited or did
/// not answer in [`DRIVER_READY`].
async fn wait_driver_ready(driver: &mut Child, port: u16) -> Result<(), String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let status = format!("http://127.0.0.1:{port}/status");
    let deadline = Instant::now() + DRIVER_READY;
    loop {
        if let Some(exit) = driver.try_wait().unwrap() {
            return Err(format!("chromedriver exited ({exit})"));
        }
        if let Ok(response) = http.get(&status).send().await {
            if let Ok(body) = response.json::<Value>().await {
                if body["value"]["ready"] == Value::Bool(true) {
                    return Ok(());
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("no ready answer within {DRIVER_READY:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Kills chromedriver's whole process group — chromedriver, Chromium and its helper
/// processes (Chromium's crash handler, in a session of its own, ends when Chromium does) —
/// and reaps chromedriver.
fn kill_group(driver: &mut Child) {
    let group = format!("-{}", driver.id());
    let killed = Command::new("kill")
        .args(["-KILL", "--", &group])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !killed {
        let _ = driver.kill();
    }
    let _ = driver.wait();
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session, or `None` (after saying why)
    /// when either program is missing outside CI. An installed browser that fails to start
    /// always panics, with chromedriver's log.
    pub async fn start() -> Option<Browser> {
        let driver = find_program(
            "WACRM_CHROMEDRIVER",
            &["chromedriver"],
            &[PathBuf::from("/usr/bin/chromedriver")],
        );
        let chromium = find_program(
            "WACRM_CHROMIUM",
            &["chromium", "chromium-browser"],
            &[PathBuf::from("/usr/bin/chromium")],
        );
        let (Some(driver), Some(chromium)) = (driver, chromium) else {
            assert!(
                !browser_required(),
                "Chromium or chromedriver is missing but the browser suites are required here \
                 (run `bash .ci/chromium.sh`, or set WACRM_CHROMEDRIVER and WACRM_CHROMIUM)"
            );
            eprintln!(
                "skipping: no headless Chromium (install Debian's chromium and chromium-driver: \
                 bash .ci/chromium.sh)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut browser = Browser::spawn_driver(&driver, dir).await;
        browser.open_session(&chromium).await;
        Some(browser)
    }

    /// Runs chromedriver on a free loopback port and waits until it answers.
    async fn spawn_driver(driver: &Path, dir: tempfile::TempDir) -> Browser {
        let log = dir.path().join("chromedriver.log");
        let output = std::fs::File::create(dir.path().join("chromedriver.out")).unwrap();
        let mut failures = Vec::new();
        for _ in 0..PORT_TRIES {
            let port = free_port();
            let mut child = Command::new(driver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(output.try_clone().unwrap())
                .stderr(output.try_clone().unwrap())
                // A group of its own: Chromium and its helpers join it, and the drop kills
                // them all with chromedriver (killing chromedriver alone orphans Chromium).
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("could not run {}: {e}", driver.display()));
            match wait_driver_ready(&mut child, port).await {
                Ok(()) => {
                    return Browser {
                        client: None,
                        driver: child,
                        dir,
                        port,
                    }
                }
                Err(why) => {
                    kill_group(&mut child);
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        panic!(
            "chromedriver ({}) did not start:\n{}\n{}",
            driver.display(),
            failures.join("\n"),
            driver_logs(dir.path())
        );
    }

    /// Opens the Chromium session: headless, no sandbox (CI runs as root, where Chromium's
    /// sandbox refuses to start), no GPU, a 1280×900 window, a throwaway profile.
    async fn open_session(&mut self, chromium: &Path) {
        let profile = self.dir.path().join("profile");
        let options = json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                // Containers give /dev/shm 64 MB, which Chromium outgrows and crashes on.
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
                "--no-first-run",
                "--no-default-browser-check",
            ],
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), options);
        capabilities.insert(
            "timeouts".into(),
            json!({"pageLoad": PAGE_LOAD.as_millis() as u64, "script": 10_000, "implicit": 0}),
        );
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        match builder
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
        {
            Ok(client) => self.client = Some(client),
            Err(e) => panic!(
                "chromedriver could not open a Chromium session ({}): {e}\n{}",
                chromium.display(),
                driver_logs(self.dir.path())
            ),
        }
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the browser session is open until close()")
    }

    /// The page's URL and the start of its text, for a failure's message.
    pub async fn context(&self) -> String {
        let url = match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let text = match self
            .client()
            .execute(
                "return document.body ? document.body.innerText : document.documentElement.outerHTML",
                vec![],
            )
            .await
        {
            Ok(Value::String(text)) => {
                let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let mut snippet: String = flat.chars().take(SNIPPET_CHARS).collect();
                if flat.chars().count() > SNIPPET_CHARS {
                    snippet.push('…');
                }
                snippet
            }
            Ok(other) => format!("(no text: {other})"),
            Err(e) => format!("(unreadable: {e})"),
        };
        format!("\n  page: {url}\n  text: {text}")
    }

    /// Panics with `what`, the error and where the browser is.
    async fn fail(&self, what: impl Display, error: Option<CmdError>) -> ! {
        let context = self.context().await;
        match error {
            Some(e) => panic!("browser: {what}: {e}{context}"),
            None => panic!("browser: {what}{context}"),
        }
    }

    /// The element `css` matches, or a panic naming the selector.
    async fn find(&self, css: &str) -> Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) if e.is_no_such_element() => {
                self.fail(format!("no element matches `{css}`"), None).await
            }
            Err(e) => self.fail(format!("finding `{css}`"), Some(e)).await,
        }
    }

    /// Opens `url` and waits for it to load (WebDriver's page-load rule). An HTTP error page
    /// loads like any other: check the page's ids.
    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client().goto(url).await {
            self.fail(format!("opening {url}"), Some(e)).await;
        }
    }

    /// Replaces the value of the field `css` matches by typing `text` into it, as a person
    /// would (so the field must be visible and enabled). chromedriver types only characters
    /// of the Basic Multilingual Plane (accents yes, emoji no): use [`Browser::set_value`]
    /// for the rest and for hidden fields.
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        if let Err(e) = field.clear().await {
            self.fail(format!("clearing `{css}`"), Some(e)).await;
        }
        if let Err(e) = field.send_keys(text).await {
            self.fail(format!("typing into `{css}`"), Some(e)).await;
        }
    }

    /// Sets the value of the field `css` matches through the DOM, without typing: a hidden
    /// field (a tampered `csrf`), or text chromedriver cannot type.
    pub async fn set_value(&self, css: &str, value: &str) {
        let script = "const e = document.querySelector(arguments[0]);\
                      if (!e) return false; e.value = arguments[1]; return true;";
        match self
            .client()
            .execute(script, vec![json!(css), json!(value)])
            .await
        {
            Ok(Value::Bool(true)) => {}
            Ok(_) => self.fail(format!("no element matches `{css}`"), None).await,
            Err(e) => self.fail(format!("setting `{css}`"), Some(e)).await,
        }
    }

    /// Clicks the element `css` matches. A click that starts a navigation returns once the
    /// new page loaded.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.click().await {
            self.fail(format!("clicking `{css}`"), Some(e)).await;
        }
    }

    /// Submits the form `form_css` matches as a person would — by clicking its submit button
    /// (so the button's own name and value go too), or with `requestSubmit()` when it has
    /// none — and waits until the page it leads to replaced this one (within [`NAVIGATION`]).
    /// A form the browser refuses to send (a required field left empty) fails here.
    pub async fn submit(&self, form_css: &str) {
        let form = self.find(form_css).await;
        let buttons = "button[type=submit], button:not([type]), input[type=submit]";
        match form.find(Locator::Css(buttons)).await {
            Ok(button) => {
                if let Err(e) = button.click().await {
                    self.fail(
                        format!("clicking the submit button of `{form_css}`"),
                        Some(e),
                    )
                    .await;
                }
            }
            Err(e) if e.is_no_such_element() => {
                let script = "document.querySelector(arguments[0]).requestSubmit();";
                if let Err(e) = self.client().execute(script, vec![json!(form_css)]).await {
                    self.fail(format!("submitting `{form_css}`"), Some(e)).await;
                }
            }
            Err(e) => {
                self.fail(
                    format!("finding the submit button of `{form_css}`"),
                    Some(e),
                )
                .await
            }
        }
        // The old form goes stale once another document replaced it, even when the answer
        // is the same page again (a refused login shows `form#login` anew).
        let deadline = Instant::now() + NAVIGATION;
        loop {
            match form.tag_name().await {
                Err(e) if e.is_stale_element_reference() => return,
                // Chromium sometimes answers for an element of a document just replaced with
                // an inspector error rather than "stale element reference": the same news.
                Err(e) if e.to_string().contains("does not belong to the document") => return,
                Err(e) => {
                    self.fail(format!("waiting for `{form_css}` to be sent"), Some(e))
                        .await
                }
                Ok(_) if Instant::now() >= deadline => {
                    self.fail(
                        format!(
                            "`{form_css}` did not lead to another page within {NAVIGATION:?} \
                             (did the browser refuse to send it?)"
                        ),
                        None,
                    )
                    .await
                }
                Ok(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// The rendered text of the element `css` matches (empty for a hidden element).
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        match element.text().await {
            Ok(text) => text,
            Err(e) => self.fail(format!("reading `{css}`"), Some(e)).await,
        }
    }

    /// The rendered text of every element `css` matches, in document order (`#history
    /// li.message`).
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let elements = match self.client().find_all(Locator::Css(css)).await {
            Ok(elements) => elements,
            Err(e) => self.fail(format!("finding `{css}`"), Some(e)).await,
        };
        let mut out = Vec::with_capacity(elements.len());
        for element in elements {
            match element.text().await {
                Ok(text) => out.push(text),
                Err(e) => self.fail(format!("reading `{css}`"), Some(e)).await,
            }
        }
        out
    }

    /// The value of attribute `name` of the element `css` matches (`None` when it has none).
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        let element = self.find(css).await;
        match element.attr(name).await {
            Ok(value) => value,
            Err(e) => self.fail(format!("reading `{css}`[{name}]"), Some(e)).await,
        }
    }

    /// Whether anything on the page matches `css` (now, without waiting).
    pub async fn exists(&self, css: &str) -> bool {
        match self.client().find_all(Locator::Css(css)).await {
            Ok(elements) => !elements.is_empty(),
            Err(e) => self.fail(format!("looking for `{css}`"), Some(e)).await,
        }
    }

    /// Waits until something on the page matches `css`; panics after `timeout`.
    pub async fn wait_for(&self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.exists(css).await {
            if Instant::now() >= deadline {
                self.fail(format!("nothing matched `{css}` within {timeout:?}"), None)
                    .await;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The URL of the page shown.
    pub async fn current_url(&self) -> String {
        match self.client().current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => self.fail("reading the URL", Some(e)).await,
        }
    }

    /// Writes a PNG of the viewport to `path` (its directory created), and returns its size
    /// in pixels.
    pub async fn screenshot(&self, path: &Path) -> (u32, u32) {
        let png = match self.client().screenshot().await {
            Ok(png) => png,
            Err(e) => self.fail("taking a screenshot", Some(e)).await,
        };
        let Some(size) = png_size(&png) else {
            self.fail(
                format!("the screenshot is not a PNG ({} bytes)", png.len()),
                None,
            )
            .await
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("could not create {}: {e}", parent.display()));
        }
        std::fs::write(path, &png)
            .unwrap_or_else(|e| panic!("could not write {}: {e}", path.display()));
        size
    }

    /// The cookies the browser holds for the page shown, with their flags.
    pub async fn cookies(&self) -> Vec<CookieInfo> {
        let cookies = match self.client().get_all_cookies().await {
            Ok(cookies) => cookies,
            Err(e) => self.fail("reading the cookies", Some(e)).await,
        };
        cookies
            .into_iter()
            .map(|c| CookieInfo {
                name: c.name().to_owned(),
                value: c.value().to_owned(),
                path: c.path().map(str::to_owned),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
                persistent: c.expires().is_some(),
            })
            .collect()
    }

    /// The page's viewport size in CSS pixels (`innerWidth`, `innerHeight`).
    pub async fn viewport(&self) -> (i64, i64) {
        match self
            .client()
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
        {
            Ok(Value::Array(size)) if size.len() == 2 => (
                size[0].as_i64().unwrap_or_default(),
                size[1].as_i64().unwrap_or_default(),
            ),
            Ok(other) => {
                self.fail(format!("reading the viewport: {other}"), None)
                    .await
            }
            Err(e) => self.fail("reading the viewport", Some(e)).await,
        }
    }

    /// Makes the viewport (what the page lays out in, and what a screenshot shows) exactly
    /// `width` × `height` CSS pixels: a phone's, for the narrow layout. WebDriver sizes the
    /// window, which in headless Chromium is taller than its viewport, so the window is sized,
    /// measured and sized again by the difference.
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let want = (i64::from(width), i64::from(height));
        let mut window = want;
        for _ in 0..3 {
            let (w, h) = (
                u32::try_from(window.0).unwrap_or(width),
                u32::try_from(window.1).unwrap_or(height),
            );
            if let Err(e) = self.client().set_window_size(w, h).await {
                self.fail(format!("sizing the window to {w}×{h}"), Some(e))
                    .await;
            }
            let got = self.viewport().await;
            if got == want {
                return;
            }
            window = (window.0 + want.0 - got.0, window.1 + want.1 - got.1);
        }
        let got = self.viewport().await;
        self.fail(
            format!("the viewport is {}×{}, not {width}×{height}", got.0, got.1),
            None,
        )
        .await
    }

    /// Ends the session (chromedriver quits Chromium), then stops chromedriver.
    pub async fn close(mut self) {
        if let Some(client) = self.client.take() {
            if let Err(e) = client.close().await {
                // The drop below kills it all the same.
                eprintln!("browser: closing the session: {e}");
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}
