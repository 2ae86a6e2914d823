//! The HTTP client every adapter sends through: rate limits, retries and error classification
//! written once.
//!
//! - Rate limits (`governor`): a GCRA limiter per connection, shaped so that no rolling window
//!   ever holds more than the configured number of requests (burst + rate × window ≤ limit, with
//!   a 5 % margin), and a second, lower one for search requests. Instances that share a
//!   PostgreSQL store share these limits: the service installs the store's limiter
//!   ([`share_limits`]) and every client then reserves its slots there, so a connection's calls
//!   stay within the CRM's limit whichever instance makes them (docs/scaling.md).
//! - 429: wait what the CRM said (`Retry-After`, or the adapter's reading of its headers) and
//!   send again (the CRM did nothing); a daily quota is returned as
//!   [`CrmError::QuotaExhausted`] at once, so the engine parks the connection instead of
//!   spinning.
//! - A connection that could not be opened (the request never left): exponential backoff with
//!   jitter, a few attempts, then [`CrmError::Transient`].
//! - 5xx, timeouts and broken answers *after the request was written*: the CRM may have applied
//!   it. An idempotent request ([`Retry::Safe`]: reads, searches, upserts on a unique property,
//!   updates) is sent again like a connection failure; a create ([`Retry::Once`]) never is: it
//!   returns [`CrmError::Ambiguous`] at once and the engine reconciles through its ledger
//!   (finds what the CRM holds) before creating again. The adapter says which is which; this
//!   module knows no CRM.
//! - Other 4xx: [`CrmError::Invalid`] (401/403: [`CrmError::Fatal`]).
//!
//! What differs between CRMs is declared by the adapter in [`HttpSettings`]: the base URL, how
//! requests authenticate ([`Auth`]), the rolling windows of its rate limits ([`Window`]), the
//! time a request may take, and the classifier that reads its error answers. Error texts never
//! carry the request's URL (a query token would be in it), nor a phone number, e-mail address or
//! content value the CRM quoted back ([`scrub_error`]).

use std::num::NonZeroU32;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;
use wacrm_core::rate::{Rate, SharedLimiter};

use crate::adapter::CrmError;

/// The limiter clients made from now on share with other instances (see [`share_limits`]).
static SHARED_LIMITER: RwLock<Option<Arc<dyn SharedLimiter>>> = RwLock::new(None);

/// Makes every [`CrmHttp`] created from now on in this process reserve its rate-limit slots
/// through `limiter` (`None`: in-process limits again). The service installs its PostgreSQL
/// store's limiter before it builds the adapters, so integrators' adapters share their limits
/// across instances without doing anything; [`CrmHttp::with_shared_limiter`] sets one client's.
pub fn share_limits(limiter: Option<Arc<dyn SharedLimiter>>) {
    *SHARED_LIMITER
        .write()
        .unwrap_or_else(PoisonError::into_inner) = limiter;
}

fn installed_limiter() -> Option<Arc<dyn SharedLimiter>> {
    SHARED_LIMITER
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Which rate budget a request draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Ordinary API calls.
    General,
    /// Search calls (they also count against the general budget).
    Search,
}

/// Whether a request may be sent again after an outcome that may have been applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Idempotent: sending it twice leaves the CRM as sending it once (reads, searches, upserts
    /// on a unique property, updates). Sent again after any transient failure.
    Safe,
    /// Not idempotent (creates). Sent again only when it certainly did nothing: the connection
    /// could not be opened, or the CRM answered 429. A timeout, a broken answer or a 5xx after
    /// the request was written is returned at once as [`CrmError::Ambiguous`].
    Once,
}

/// Headers made for one attempt from the body it sends (name, value).
pub type HeadersFor<'a> = dyn Fn(&[u8]) -> Vec<(&'static str, String)> + Send + Sync + 'a;

/// Reads an error response: status, headers, JSON body (or `Null`).
pub type Classifier = Arc<dyn Fn(u16, &HeaderMap, &Value) -> CrmError + Send + Sync>;

/// Sees every answer's status and headers, successes included: for the headers in which a CRM
/// reports how much of its allocation is used (Salesforce's `Sforce-Limit-Info`).
pub type ResponseObserver = Arc<dyn Fn(u16, &HeaderMap) + Send + Sync>;

/// The default reading of error responses.
pub fn default_classifier(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    match status {
        429 => CrmError::RateLimited {
            retry_after: retry_after(headers),
        },
        401 | 403 => CrmError::Fatal(message),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

/// `Retry-After` in seconds, if present.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A limiter that never lets more than `limit` requests into any rolling `window`.
fn window_limiter(limit: u32, window: Duration) -> DefaultDirectRateLimiter {
    RateLimiter::direct(window_quota(limit, window))
}

/// The GCRA quota behind [`window_limiter`] (see [`window_rate`]).
fn window_quota(limit: u32, window: Duration) -> Quota {
    let rate = window_rate(limit, window);
    Quota::with_period(rate.interval)
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN))
}

/// The GCRA rate that never lets more than `limit` requests into any rolling `window`: a 5 %
/// margin below `limit`, and a small burst — a burst is paid for with a lower steady rate
/// (burst + rate × window ≤ limit), and under load the steady rate is what moves messages.
fn window_rate(limit: u32, window: Duration) -> Rate {
    let limit = limit.max(2);
    let effective = limit - (limit / 20).max(1);
    let burst = (effective / 50).max(1);
    let steady = effective.saturating_sub(burst).max(1);
    // One more cell can land on the window's closing edge: leave room for it.
    let steady = if burst + steady + 1 > limit {
        steady.saturating_sub(1).max(1)
    } else {
        steady
    };
    Rate {
        interval: window / steady,
        burst,
    }
}

/// How requests to a CRM authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <token>` (HubSpot's private apps, OAuth 2 access tokens).
    Bearer(String),
    /// A header of the CRM's own: Pipedrive's `x-api-token`, or Zoho's
    /// `Authorization: Zoho-oauthtoken <token>`.
    Header {
        /// The header's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// A query parameter on every request (Pipedrive's `api_token`, RD Station CRM's `token`).
    Query {
        /// The parameter's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// OAuth 2: an access token from the CRM's token endpoint (client credentials, or a
    /// refresh token), renewed before it expires and after the CRM refuses it.
    OAuth2(Box<crate::oauth::OAuth2>),
    /// Nothing (a CRM reached through an authenticating proxy, or a test).
    None,
}

impl std::fmt::Debug for Auth {
    // Secrets never reach a log, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Bearer(_) => f.write_str("Bearer(…)"),
            Auth::Header { name, .. } => write!(f, "Header({name}: …)"),
            Auth::Query { name, .. } => write!(f, "Query({name}=…)"),
            Auth::OAuth2(o) => write!(f, "{o:?}"),
            Auth::None => f.write_str("None"),
        }
    }
}

/// A CRM's rate limit: at most `limit` requests in any rolling window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window.
    pub per: Duration,
}

impl Window {
    /// `limit` requests per `per`.
    pub fn new(limit: u32, per: Duration) -> Window {
        Window { limit, per }
    }
}

/// What an adapter declares about its CRM's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The API's base URL (paths are appended to it). With an OAuth token that names the
    /// account's host ([`crate::oauth::OAuth2::with_instance_url_from`]), only its path is kept.
    pub base_url: String,
    /// How requests authenticate.
    pub auth: Auth,
    /// The general rate limit, which every request counts against.
    pub limit: Window,
    /// A stricter limit for search requests ([`Budget::Search`]), when the CRM has one.
    pub search_limit: Option<Window>,
    /// How long a request may take, connection included. A request that outlives it may still
    /// be applied by the CRM: see [`Retry`].
    pub timeout: Duration,
}

/// A connection's limits as keys and rates of a [`SharedLimiter`].
struct SharedLimits {
    limiter: Arc<dyn SharedLimiter>,
    general: (String, Rate),
    search: Option<(String, Rate)>,
}

impl SharedLimits {
    fn new(limiter: Arc<dyn SharedLimiter>, connection: &str, settings: &Limits) -> Self {
        SharedLimits {
            limiter,
            general: (format!("crm:{connection}:general"), settings.general),
            search: settings
                .search
                .map(|rate| (format!("crm:{connection}:search"), rate)),
        }
    }
}

/// A connection's limits as GCRA rates.
#[derive(Clone, Copy)]
struct Limits {
    general: Rate,
    search: Option<Rate>,
}

/// An HTTP client bound to one CRM connection.
pub struct CrmHttp {
    client: reqwest::Client,
    base_url: String,
    /// The base URL's path (`/services/data/v62.0`), kept when an OAuth token names the
    /// account's host.
    base_path: String,
    auth: Auth,
    connection: String,
    general: DefaultDirectRateLimiter,
    search: Option<DefaultDirectRateLimiter>,
    /// The same limits as slots of a limiter shared with other instances, when there is one.
    shared: Option<SharedLimits>,
    limits: Limits,
    classify: Classifier,
    oauth: crate::oauth::TokenCache,
    observe: Option<ResponseObserver>,
    /// Attempts per request for 429s and transient failures.
    pub max_attempts: u32,
    /// First delay between attempts (doubling, with jitter, up to `max_backoff`).
    pub min_backoff: Duration,
    /// Longest delay between attempts.
    pub max_backoff: Duration,
}

fn client(timeout: Duration) -> Result<reqwest::Client, CrmError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5).min(timeout))
        .build()
        .map_err(|e| CrmError::Fatal(format!("HTTP client: {e}")))
}

impl CrmHttp {
    /// A client for the connection named `connection`, as its adapter declares the CRM's API.
    /// Its limits are shared through the limiter installed by [`share_limits`], if any.
    pub fn new(
        connection: &str,
        settings: HttpSettings,
        classify: Classifier,
    ) -> Result<Self, CrmError> {
        let base_url = settings.base_url.trim_end_matches('/').to_owned();
        let base_path = reqwest::Url::parse(&base_url)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        let limits = Limits {
            general: window_rate(settings.limit.limit, settings.limit.per),
            search: settings.search_limit.map(|w| window_rate(w.limit, w.per)),
        };
        Ok(CrmHttp {
            client: client(settings.timeout)?,
            base_url,
            base_path,
            auth: settings.auth,
            connection: connection.to_owned(),
            general: window_limiter(settings.limit.limit, settings.limit.per),
            search: settings
                .search_limit
                .map(|w| window_limiter(w.limit, w.per)),
            shared: installed_limiter().map(|l| SharedLimits::new(l, connection, &limits)),
            limits,
            classify,
            oauth: crate::oauth::TokenCache::default(),
            observe: None,
            max_attempts: 6,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        })
    }

    /// The same client with another time limit per request. A request that outlives it may
    /// still be applied by the CRM: see [`Retry`].
    pub fn with_timeout(mut self, timeout: Duration) -> Result<Self, CrmError> {
        self.client = client(timeout)?;
        Ok(self)
    }

    /// The same client, showing `observer` every answer's status and headers.
    pub fn with_response_observer(mut self, observer: ResponseObserver) -> Self {
        self.observe = Some(observer);
        self
    }

    /// The same client with its limits shared through `limiter` (`None`: in process), whatever
    /// [`share_limits`] installed.
    pub fn with_shared_limiter(mut self, limiter: Option<Arc<dyn SharedLimiter>>) -> Self {
        self.shared = limiter.map(|l| SharedLimits::new(l, &self.connection, &self.limits));
        self
    }

    /// Whether this client's limits are shared with other instances.
    pub fn shares_limits(&self) -> bool {
        self.shared.is_some()
    }

    async fn wait_for_budget(&self, budget: Budget) -> Result<(), CrmError> {
        let started = Instant::now();
        if let Some(shared) = &self.shared {
            // A slot taken and then not used (the wait was cut short) is lost: the limit errs
            // toward fewer calls. A limiter that cannot be asked grants nothing.
            let unavailable =
                |e: wacrm_core::rate::LimiterUnavailable| CrmError::Transient(e.to_string());
            if let (Budget::Search, Some((key, rate))) = (budget, &shared.search) {
                let wait = shared
                    .limiter
                    .reserve(key, *rate)
                    .await
                    .map_err(unavailable)?;
                tokio::time::sleep(wait).await;
            }
            let (key, rate) = &shared.general;
            let wait = shared
                .limiter
                .reserve(key, *rate)
                .await
                .map_err(unavailable)?;
            tokio::time::sleep(wait).await;
        } else {
            if let (Budget::Search, Some(search)) = (budget, &self.search) {
                search.until_ready().await;
            }
            self.general.until_ready().await;
        }
        metrics::histogram!("wacrm_crm_rate_limit_wait_seconds", "connection" => self.connection.clone())
            .record(started.elapsed());
        Ok(())
    }

    /// Sends a request and returns the JSON answer (`Null` for an empty body). `retry` says
    /// whether the request may be repeated after an outcome that may have been applied.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        budget: Budget,
        retry: Retry,
    ) -> Result<Value, CrmError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| CrmError::Invalid(format!("request body: {e}")))?;
        self.send_raw(
            method,
            path,
            body.as_deref(),
            &|_: &[u8]| Vec::new(),
            budget,
            retry,
        )
        .await
    }

    /// As [`CrmHttp::send`], with the JSON body as bytes and headers made for each attempt
    /// from those bytes — a signature over the body and the attempt's time, which a retry an
    /// hour later must not reuse.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        headers: &HeadersFor<'_>,
        budget: Budget,
        retry: Retry,
    ) -> Result<Value, CrmError> {
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(self.max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempt = 0;
        let mut renewed_token = false;
        loop {
            attempt += 1;
            self.wait_for_budget(budget).await?;
            let started = Instant::now();
            // The access token this attempt carries: a 401 renews it only if it is still the
            // one in the cache (a renewal that finished meanwhile already replaced it).
            let mut sent_token: Option<String> = None;
            let mut request = match &self.auth {
                Auth::OAuth2(oauth) => {
                    let token = oauth.token(&self.client, &self.oauth).await?;
                    sent_token = Some(token.access.clone());
                    // The account's own host when the token answer named one.
                    let url = match &token.instance_url {
                        Some(host) => format!("{host}{}{path}", self.base_path),
                        None => format!("{}{path}", self.base_url),
                    };
                    self.client.request(method.clone(), url).header(
                        reqwest::header::AUTHORIZATION,
                        format!("{} {}", oauth.scheme, token.access),
                    )
                }
                _ => self
                    .client
                    .request(method.clone(), format!("{}{path}", self.base_url)),
            };
            request = match &self.auth {
                Auth::Bearer(token) => request.bearer_auth(token),
                Auth::Header { name, value } => request.header(name.as_str(), value.as_str()),
                Auth::Query { name, value } => request.query(&[(name.as_str(), value.as_str())]),
                Auth::OAuth2(_) | Auth::None => request,
            };
            for (name, value) in headers(body.unwrap_or_default()) {
                request = request.header(name, value);
            }
            if let Some(body) = body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
            }
            let result = request.send().await;
            metrics::histogram!("wacrm_crm_request_seconds", "connection" => self.connection.clone())
                .record(started.elapsed());
            let error = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    if let Some(observe) = &self.observe {
                        observe(status, &headers);
                    }
                    match response.text().await {
                        Ok(text) => {
                            let json: Value = if text.is_empty() {
                                Value::Null
                            } else {
                                serde_json::from_str(&text).unwrap_or(Value::String(text))
                            };
                            if (200..300).contains(&status) {
                                return Ok(json);
                            }
                            // An OAuth token refused (revoked, or expired early): fetch a new
                            // one and send again, once — the CRM did nothing with a 401.
                            if status == 401
                                && matches!(self.auth, Auth::OAuth2(_))
                                && !renewed_token
                            {
                                renewed_token = true;
                                self.oauth.invalidate(sent_token.as_deref()).await;
                                attempt -= 1;
                                continue;
                            }
                            match (self.classify)(status, &headers, &json) {
                                // A server error may come after the CRM did the work.
                                CrmError::Transient(m) if retry == Retry::Once => {
                                    CrmError::Ambiguous(format!("HTTP {status}: {m}"))
                                }
                                other => other,
                            }
                        }
                        // The answer broke off: whatever it said, the request was handled.
                        Err(e) => after_sending(
                            retry,
                            format!("HTTP {status}, answer lost: {}", e.without_url()),
                        ),
                    }
                }
                // The connection was never opened: the request did not leave. (Error texts
                // without the URL: a query token would be in it.)
                Err(e) if e.is_connect() => CrmError::Transient(e.without_url().to_string()),
                // Timeouts and resets after the request was written: it may have been applied.
                Err(e) => after_sending(retry, e.without_url().to_string()),
            };
            // Third-party text becomes ours here: whatever the CRM quoted back goes no further.
            let error = scrub_error(error);
            let wait = match &error {
                CrmError::RateLimited { retry_after } => {
                    metrics::counter!("wacrm_crm_rate_limited_total", "connection" => self.connection.clone())
                        .increment(1);
                    retry_after.unwrap_or(Duration::from_secs(1))
                }
                CrmError::Transient(_) => backoff.next().unwrap_or(self.max_backoff),
                CrmError::Ambiguous(reason) => {
                    tracing::warn!(connection = %self.connection, %path, %reason, "CRM may have applied a create whose answer was lost; not sending it again");
                    return Err(error);
                }
                _ => return Err(error),
            };
            if attempt >= self.max_attempts {
                return Err(error);
            }
            tracing::warn!(connection = %self.connection, %path, error = %error, ?wait, "CRM request failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The longest error text [`scrub_error`] leaves, in characters: longer than a log line's
/// [`wacrm_core::redact::SCRUB_MAX_CHARS`], because adapters read their own errors back (Kommo
/// the request ids a refusal names, one item's worth in about 80 characters); reasons and log
/// lines further on are cut to the shorter bound.
pub const CRM_ERROR_MAX_CHARS: usize = 2_000;

/// `error` with its text scrubbed ([`wacrm_core::redact::scrub_within`]): no phone number,
/// e-mail address or content value a CRM quoted back, and at most [`CRM_ERROR_MAX_CHARS`]
/// characters. Codes (`VALIDATION_ERROR`, `DUPLICATE_VALUE`) and every error's class survive.
/// [`CrmHttp`] applies it to every error it returns; an adapter applies it to errors it makes
/// from a successful answer's per-item results.
pub fn scrub_error(error: CrmError) -> CrmError {
    let scrub = |text: String| wacrm_core::redact::scrub_within(&text, CRM_ERROR_MAX_CHARS);
    match error {
        CrmError::Transient(m) => CrmError::Transient(scrub(m)),
        CrmError::Ambiguous(m) => CrmError::Ambiguous(scrub(m)),
        CrmError::Invalid(m) => CrmError::Invalid(scrub(m)),
        CrmError::Fatal(m) => CrmError::Fatal(scrub(m)),
        other @ (CrmError::RateLimited { .. } | CrmError::QuotaExhausted { .. }) => other,
    }
}

/// The error of a request that left but whose outcome is unknown.
fn after_sending(retry: Retry, reason: String) -> CrmError {
    match retry {
        Retry::Safe => CrmError::Transient(reason),
        Retry::Once => CrmError::Ambiguous(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends greedily (whenever the limiter allows, checked every millisecond of a fake clock)
    /// for `seconds`; returns the send times in milliseconds.
    fn greedy_sends(limit: u32, window: Duration, seconds: u64) -> Vec<u64> {
        let clock = governor::clock::FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(window_quota(limit, window), clock.clone());
        let mut sent = Vec::new();
        for ms in 0..seconds * 1000 {
            while limiter.check().is_ok() {
                sent.push(ms);
            }
            clock.advance(Duration::from_millis(1));
        }
        sent
    }

    fn busiest_window(sent: &[u64], window: Duration) -> usize {
        let w = window.as_millis() as u64;
        sent.iter()
            .map(|start| {
                sent.iter()
                    .filter(|t| **t >= *start && **t < start + w)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn no_rolling_window_exceeds_the_limit_and_the_limit_is_used() {
        for (limit, window) in [
            (100, Duration::from_secs(10)),
            (190, Duration::from_secs(10)),
            (10, Duration::from_secs(10)),
            (5, Duration::from_secs(1)),
        ] {
            let sent = greedy_sends(limit, window, 60);
            let busiest = busiest_window(&sent, window);
            assert!(
                busiest <= limit as usize,
                "{busiest} in a window of limit {limit}"
            );
            // Sustained, at least 85 % of the limit goes out (93 % and more from 100 up).
            let per_window = sent.len() as f64 * window.as_secs_f64() / 60.0;
            assert!(
                per_window >= 0.85 * limit as f64 || limit < 20,
                "only {per_window:.0} per window of limit {limit}"
            );
        }
    }

    #[test]
    fn errors_are_scrubbed_and_keep_their_class_and_code() {
        let quoted = CrmError::Invalid(
            r#"VALIDATION_ERROR: Property values were not valid: [{"message":"\"Oi, tudo bem?\" is too long","error":"INVALID_VALUE","name":"hs_communication_body"}] for 5511987654321 / ana@example.com"#
                .into(),
        );
        let CrmError::Invalid(text) = scrub_error(quoted) else {
            panic!("the class changed");
        };
        assert!(text.starts_with("VALIDATION_ERROR: "), "{text}");
        assert!(text.contains("INVALID_VALUE") && text.contains("hs_communication_body"));
        for secret in ["Oi, tudo bem?", "5511987654321", "ana@example.com"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let long = scrub_error(CrmError::Transient("x".repeat(10_000)));
        assert!(matches!(long, CrmError::Transient(m) if m.chars().count() == CRM_ERROR_MAX_CHARS));
        let wait = CrmError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(scrub_error(wait.clone()), wait);
    }

    #[test]
    fn default_classification() {
        let h = HeaderMap::new();
        assert!(matches!(
            default_classifier(429, &h, &Value::Null),
            CrmError::RateLimited { .. }
        ));
        assert!(matches!(
            default_classifier(503, &h, &Value::Null),
            CrmError::Transient(_)
        ));
        assert!(matches!(
            default_classifier(400, &h, &Value::Null),
            CrmError::Invalid(_)
        ));
        assert!(matches!(
            default_classifier(401, &h, &Value::Null),
            CrmError::Fatal(_)
        ));
    }
}
