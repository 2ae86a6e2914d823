//! A stateful fake of Salesforce's REST API, for the Salesforce adapter's tests.
//!
//! Salesforce publishes no machine-readable spec of its REST API (CRMS §2), so every rule
//! here is taken from the REST API Developer Guide pages (and the OAuth pages of Salesforce
//! Help) that `shared/specs/CRMS.md` §2 and `docs/notes/crm-adapters-research.md` §1 cite;
//! each check names its page in a comment, and where the pages are silent the behaviour is
//! the fake's own choice and says so.
//!
//! [`SalesforceFake::start`] runs an axum server on `127.0.0.1:<free port>`. Its one base URL
//! plays the login host (the token endpoint) and the org's `instance_url`:
//!
//! | Operation | Path |
//! |---|---|
//! | token (client credentials, JWT bearer) | `POST /services/oauth2/token` |
//! | SOQL query, next page | `GET /services/data/vXX.X/query?q=…`, `GET …/query/{locator}` |
//! | limits | `GET /services/data/vXX.X/limits` |
//! | describe an object | `GET /services/data/vXX.X/sobjects/{object}/describe` |
//! | sObject Collections upsert on an External ID | `PATCH /services/data/vXX.X/composite/sobjects/{object}/{field}` |
//! | sObject Collections update | `PATCH /services/data/vXX.X/composite/sobjects` |
//! | sObject Collections delete | `DELETE /services/data/vXX.X/composite/sobjects?ids=…&allOrNone=…` |
//! | delete a record | `DELETE /services/data/vXX.X/sobjects/{object}/{id}` |
//! | create a custom object / field (Tooling API) | `POST /services/data/vXX.X/tooling/sobjects/CustomObject`, `…/CustomField` |
//!
//! Anything else is answered `404 [{"errorCode":"NOT_FOUND",…}]` and recorded as a violation.
//!
//! Every data request is checked in order: the version (`vXX.X`, at least 46.0), `Authorization:
//! Bearer <token>` with a token the fake issued and has not expired (else `401
//! [{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]`), the org's API
//! allocation ([`FakeConfig::daily_api_requests`]; spent: `403 REQUEST_LIMIT_EXCEEDED`), the
//! body (JSON, `Content-Type: application/json`), then the operation's own rules. Every data
//! answer carries `Sforce-Limit-Info: api-usage=<used>/<allowed>`. Requests in flight at once
//! are counted; more than [`FakeConfig::max_concurrent_requests`] is a violation.
//!
//! The fake holds `Contact` (`Id`, `FirstName`, `LastName` (required), `Name` (read-only),
//! `Phone`, `MobilePhone`, `Email`, `Description`, `CreatedDate`) and whatever custom objects
//! and fields the Tooling API creates. SOQL is the subset in `soql.rs`; string comparisons
//! are case-insensitive except on case-sensitive unique fields.

mod ops;
mod server;
mod soql;
mod state;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use crate::loopback::FakeRequest;

use server::Shared;
use state::State;

/// What the fake accepts and how it limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The external client app's consumer key.
    pub client_id: String,
    /// Its consumer secret.
    pub client_secret: String,
    /// The username the JWT-bearer grant may act as (`sub`).
    pub jwt_subject: String,
    /// The audience the JWT-bearer assertion must name (`aud`).
    pub jwt_audience: String,
    /// The `instance_url` the token answer names; `None`: the fake's own base URL.
    pub instance_url: Option<String>,
    /// The org's API allocation (rolling 24 h in Salesforce; never resets in the fake, see
    /// [`SalesforceFake::set_api_used`]).
    pub daily_api_requests: u64,
    /// The most requests in flight at once before the fake records a violation.
    pub max_concurrent_requests: usize,
    /// How long each data request is held before it is answered, in milliseconds (to make
    /// concurrency visible).
    pub latency_ms: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            client_id: "3MVG9fake.consumer.key".into(),
            client_secret: "fake-consumer-secret-0123".into(),
            jwt_subject: "integration@example.com".into(),
            jwt_audience: "https://login.salesforce.com".into(),
            instance_url: None,
            daily_api_requests: 100_000,
            max_concurrent_requests: 25,
            latency_ms: 0,
        }
    }
}

/// A running Salesforce fake; the server stops when this is dropped.
pub struct SalesforceFake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl SalesforceFake {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(config: FakeConfig) -> SalesforceFake {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config)),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let (addr, shutdown) =
            crate::loopback::serve("Salesforce fake", server::router(Arc::clone(&shared))).await;
        let fake = SalesforceFake {
            addr,
            shared,
            shutdown: Some(shutdown),
        };
        fake.lock().base_url = fake.base_url();
        fake
    }

    /// `http://127.0.0.1:PORT`: the login host and the default `instance_url`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the fake accepts.
    #[must_use]
    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    /// The records of an object (by ascending id), each with its field values (`Id`
    /// included); empty for an object the org does not have.
    #[must_use]
    pub fn records(&self, object: &str) -> Vec<Map<String, Value>> {
        self.lock()
            .object(object)
            .map(|o| o.records.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether any record of any object holds `text` in a field value (deleted records keep no
    /// values): after an erasure, neither the phone nor a body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        self.lock().objects.values().any(|o| {
            o.records
                .values()
                .any(|r| r.values().any(|v| v.to_string().contains(text)))
        })
    }

    /// Creates a record as a person would in Salesforce's UI (no request, no allocation, no
    /// checks): `(field, value)` pairs, empty values skipped. Returns its id.
    ///
    /// # Panics
    ///
    /// When the object does not exist (a test's mistake).
    pub fn insert_record(&self, object: &str, fields: &[(&str, &str)]) -> String {
        let mut state = self.lock();
        if state.object(object).is_none() {
            panic!("Salesforce fake: insert_record: no object {object}");
        }
        let values: Map<String, Value> = fields
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
            .collect();
        state.insert(object, values)
    }

    /// Removes a field from an object, as an admin deleting it (or a permission set losing
    /// its field-level security, which hides it from describe the same way) would.
    pub fn remove_field(&self, object: &str, field: &str) {
        if let Some(o) = self.lock().object_mut(object) {
            o.fields.retain(|f| !f.name.eq_ignore_ascii_case(field));
        }
    }

    /// Whether the object exists.
    #[must_use]
    pub fn has_object(&self, object: &str) -> bool {
        self.lock().object(object).is_some()
    }

    /// `(externalId, unique, caseSensitive)` of a field, if it exists.
    #[must_use]
    pub fn field_flags(&self, object: &str, field: &str) -> Option<(bool, bool, bool)> {
        self.lock()
            .object(object)
            .and_then(|o| o.field(field))
            .map(|f| (f.external_id, f.unique, f.case_sensitive))
    }

    /// Makes every access token issued so far invalid: the next call with one is answered
    /// `401 INVALID_SESSION_ID`, and the client must fetch a new one.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Requests to the token endpoint, refused ones included.
    #[must_use]
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Every data request so far (not the token endpoint's), in arrival order.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock().requests.clone()
    }

    /// The `Host` header of each request of [`SalesforceFake::requests`], in the same order.
    #[must_use]
    pub fn hosts(&self) -> Vec<String> {
        self.lock().hosts.clone()
    }

    /// Forgets the recorded requests and arrival times (not the records or the violations).
    pub fn clear_requests(&self) {
        let mut state = self.lock();
        state.requests.clear();
        state.hosts.clear();
        state.arrivals.clear();
    }

    /// Violations found, one line each: `METHOD path: what`.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// API requests counted against the allocation so far.
    #[must_use]
    pub fn api_used(&self) -> u64 {
        self.lock().api_used
    }

    /// Sets the allocation's use (e.g. to the allocation, to play a spent daily quota).
    pub fn set_api_used(&self, used: u64) {
        self.lock().api_used = used;
    }

    /// The most requests in flight at once so far.
    #[must_use]
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The most data requests that arrived within any one second since the last
    /// [`SalesforceFake::clear_requests`].
    #[must_use]
    pub fn busiest_second(&self) -> usize {
        let arrivals = self.lock().arrivals.clone();
        arrivals
            .iter()
            .map(|start| {
                arrivals
                    .iter()
                    .filter(|t| **t >= *start && t.duration_since(*start).as_millis() < 1000)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        server::lock(&self.shared)
    }
}

impl std::fmt::Debug for SalesforceFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SalesforceFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for SalesforceFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    async fn token(fake: &SalesforceFake) -> String {
        let config = fake.config();
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/services/oauth2/token", fake.base_url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", config.client_id.as_str()),
                ("client_secret", config.client_secret.as_str()),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["instance_url"], json!(fake.base_url()));
        assert_eq!(answer["token_type"], "Bearer");
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(
        fake: &SalesforceFake,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", fake.base_url()))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let usage = response
            .headers()
            .get("sforce-limit-info")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, usage, response.json().await.unwrap_or(Value::Null))
    }

    const UPSERT: &str = "/services/data/v62.0/composite/sobjects/Contact/Ext__c";

    async fn with_external_field(fake: &SalesforceFake, token: &str) {
        let (status, _, _) = call(
            fake,
            token,
            reqwest::Method::POST,
            "/services/data/v62.0/tooling/sobjects/CustomField",
            Some(
                json!({"FullName": "Contact.Ext__c", "Metadata": {"label": "Ext", "type": "Text",
                "length": 20, "externalId": true, "unique": true}}),
            ),
        )
        .await;
        assert_eq!(status, 201);
    }

    fn contact(ext: &str) -> Value {
        json!({"attributes": {"type": "Contact"}, "LastName": "L", "Ext__c": ext})
    }

    #[tokio::test]
    async fn upserts_follow_the_collections_rules() {
        let fake = SalesforceFake::start(FakeConfig::default()).await;
        let token = token(&fake).await;
        with_external_field(&fake, &token).await;
        let body = json!({"allOrNone": false, "records": [contact("a"), contact("b"), contact("a"),
            {"attributes": {"type": "Contact"}, "Ext__c": "c"}]});
        let (status, usage, answer) =
            call(&fake, &token, reqwest::Method::PATCH, UPSERT, Some(body)).await;
        assert_eq!(status, 200);
        assert_eq!(usage.as_deref(), Some("api-usage=2/100000"));
        assert_eq!(answer[0]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
        assert_eq!(answer[1]["created"], true);
        assert_eq!(answer[2]["errors"][0]["statusCode"], "DUPLICATE_VALUE");
        assert_eq!(
            answer[3]["errors"][0]["statusCode"],
            "REQUIRED_FIELD_MISSING"
        );
        // Again: an update of the same record.
        let body = json!({"records": [contact("b")]});
        let (_, _, again) = call(&fake, &token, reqwest::Method::PATCH, UPSERT, Some(body)).await;
        assert_eq!(again[0]["created"], false);
        assert_eq!(again[0]["id"], answer[1]["id"]);
        // allOrNone rolls everything back.
        let body = json!({"allOrNone": true, "records": [contact("d"),
            {"attributes": {"type": "Contact"}, "Ext__c": "e"}]});
        let (_, _, rolled) = call(&fake, &token, reqwest::Method::PATCH, UPSERT, Some(body)).await;
        assert_eq!(
            rolled[0]["errors"][0]["statusCode"],
            "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        );
        assert_eq!(fake.records("Contact").len(), 1);
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn requests_off_the_documents_are_violations() {
        let fake = SalesforceFake::start(FakeConfig::default()).await;
        let token = token(&fake).await;
        with_external_field(&fake, &token).await;
        let (status, _, answer) = call(
            &fake,
            "not-a-token",
            reqwest::Method::GET,
            "/services/data/v62.0/limits",
            None,
        )
        .await;
        assert_eq!(status, 401);
        assert_eq!(answer[0]["errorCode"], "INVALID_SESSION_ID");
        let too_many: Vec<Value> = (0..201).map(|i| contact(&i.to_string())).collect();
        let bad = [
            json!({"records": too_many}),
            json!({"records": [{"LastName": "no attributes", "Ext__c": "x"}]}),
            json!({"records": [{"attributes": {"type": "Contact"}, "Ext__c": "x", "Nope__c": "1"}]}),
            json!({"records": [{"attributes": {"type": "Contact"}, "Ext__c": "x", "Id": "003000000000001"}]}),
            json!({"records": [contact("x")], "extra": 1}),
        ];
        for body in bad {
            let (status, _, _) =
                call(&fake, &token, reqwest::Method::PATCH, UPSERT, Some(body)).await;
            assert_eq!(status, 400);
        }
        let (status, _, _) = call(
            &fake,
            &token,
            reqwest::Method::GET,
            "/services/data/v45.0/limits",
            None,
        )
        .await;
        assert_eq!(status, 404);
        let (status, _, _) = call(
            &fake,
            &token,
            reqwest::Method::GET,
            "/services/data/v62.0/query?q=SELECT%20Id%20FROM%20Contact%20WHERE%20Phone%20LIKE%20%271%25%27",
            None,
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(fake.violations().len(), 7, "{:?}", fake.violations());
        assert!(fake.records("Contact").is_empty());
    }

    #[tokio::test]
    async fn updates_queries_and_the_allocation() {
        let config = FakeConfig {
            daily_api_requests: 4,
            ..FakeConfig::default()
        };
        let fake = SalesforceFake::start(config).await;
        let token = token(&fake).await;
        let id = fake.insert_record(
            "Contact",
            &[("LastName", "Souza"), ("Phone", "+55 11 8765-4321")],
        );
        let body = json!({"records": [
            {"attributes": {"type": "Contact"}, "id": id, "MobilePhone": "x"},
            {"attributes": {"type": "Contact"}, "id": "003000000000000AAA", "MobilePhone": "x"}]});
        let (_, _, answer) = call(
            &fake,
            &token,
            reqwest::Method::PATCH,
            "/services/data/v62.0/composite/sobjects",
            Some(body),
        )
        .await;
        assert_eq!(answer[0]["success"], true);
        assert_eq!(
            answer[1]["errors"][0]["statusCode"],
            "INVALID_CROSS_REFERENCE_KEY"
        );
        let q = "SELECT Id, Phone FROM Contact WHERE Phone IN ('+55 11 8765-4321') OR MobilePhone = 'y'";
        let path = format!(
            "/services/data/v62.0/query?q={}",
            q.replace(' ', "%20")
                .replace('+', "%2B")
                .replace('\'', "%27")
        );
        let (_, _, rows) = call(&fake, &token, reqwest::Method::GET, &path, None).await;
        assert_eq!(rows["totalSize"], 1);
        assert_eq!(rows["records"][0]["Id"], json!(id));
        assert_eq!(rows["records"][0]["attributes"]["type"], "Contact");
        let (_, usage, _) = call(
            &fake,
            &token,
            reqwest::Method::GET,
            "/services/data/v62.0/limits",
            None,
        )
        .await;
        assert_eq!(usage.as_deref(), Some("api-usage=3/4"));
        let (_, _, _) = call(
            &fake,
            &token,
            reqwest::Method::GET,
            "/services/data/v62.0/limits",
            None,
        )
        .await;
        let (status, usage, answer) = call(
            &fake,
            &token,
            reqwest::Method::GET,
            "/services/data/v62.0/limits",
            None,
        )
        .await;
        assert_eq!(status, 403);
        assert_eq!(answer[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
        assert_eq!(usage.as_deref(), Some("api-usage=4/4"));
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
