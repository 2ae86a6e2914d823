//! A stateful fake of HubSpot's CRM API, for adapter and end-to-end tests.
//!
//! [`HubSpotFake::start`] runs an axum server on `127.0.0.1:<free port>` that answers the subset
//! of HubSpot's API the CRM adapter uses, the way HubSpot does:
//!
//! | Operation | Path |
//! |---|---|
//! | upsert contacts by a unique property | `POST /crm/v3/objects/contacts/batch/upsert` |
//! | update contacts by id or unique property | `POST /crm/v3/objects/contacts/batch/update` |
//! | search contacts | `POST /crm/v3/objects/contacts/search` |
//! | read contacts by id or unique property | `POST /crm/v3/objects/contacts/batch/read` |
//! | permanently delete a contact (GDPR) | `POST /crm/v3/objects/contacts/gdpr-delete` |
//! | log WhatsApp messages | `POST /crm/v3/objects/communications/batch/create` |
//! | update logged messages | `POST /crm/v3/objects/communications/batch/update` |
//! | search logged messages | `POST /crm/v3/objects/communications/search` |
//! | delete logged messages | `POST /crm/v3/objects/communications/batch/archive` |
//! | create notes | `POST /crm/v3/objects/notes/batch/create` |
//! | associate two records | `PUT /crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}/{toObjectId}` |
//! | associate with the default type | `PUT /crm/v4/objects/{fromObjectType}/{fromObjectId}/associations/default/{toObjectType}/{toObjectId}` |
//! | associate in bulk | `POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/create` |
//! | list a record's associations | `GET /crm/v4/objects/{objectType}/{objectId}/associations/{toObjectType}` |
//! | contact and communication properties | `GET`/`POST /crm/v3/properties/{contacts,communications}`, `GET /crm/v3/properties/{contacts,communications}/{propertyName}` |
//! | owners | `GET /crm/v3/owners` |
//!
//! Every request is checked in this order, each step able to answer on its own:
//!
//! 1. latency ([`FakeConfig::latency`] plus any [`Fault::Latency`]) is waited out;
//! 2. `Authorization: Bearer <token>` must carry [`FakeConfig::token`], else `401`;
//! 3. injected faults ([`HubSpotFake::inject`]): counted ones ([`Fault::ServerErrors`],
//!    [`Fault::RateLimited`], [`Fault::AppliedThenDelay`]) first, in the order injected, then
//!    [`Fault::ServerErrorRate`], then [`Fault::ValidationErrorFor`];
//! 4. rate limits: the daily limit, then the search endpoints' per-second limit or the rolling
//!    ten-second limit (HubSpot's documents exempt search and the v4 association batch
//!    endpoints from the ten-second limit, and so does the fake);
//! 5. the body (or, for `GET`, the query string) is validated against the operation in HubSpot's
//!    own OpenAPI document (see [`crate::openapi`]); a violation is answered `400
//!    VALIDATION_ERROR` and recorded in [`HubSpotFake::violations`];
//! 6. the operation itself, against the fake's store;
//! 7. faults that play *after* the operation was applied: a successful answer may be replaced
//!    by a server error ([`Fault::AppliedThenServerErrorRate`]), and an answer may be held past
//!    the client's timeout ([`Fault::AppliedThenDelay`]) — the write happened, the client cannot
//!    know it. These are what a client must not answer by sending a create again.
//!
//! Every answer carries `X-HubSpot-RateLimit-*` headers and an `X-HubSpot-Correlation-Id`.
//! Every request is recorded ([`HubSpotFake::requests`]), including rejected ones.
//!
//! Contacts and communications keep property definitions (HubSpot's built-in ones, plus those
//! created through the properties API or [`HubSpotFake::insert_contact_property`] /
//! [`HubSpotFake::insert_communication_property`]): a write or search naming any other property
//! is a `400`. Notes keep none (their properties API answers `501`) and accept any property.
//! `hasUniqueValue` is enforced on contacts only.
//!
//! Phone numbers follow `shared/README.md`: `phone` and `mobilephone` keep the text as typed and
//! an `EQ` filter compares that text, while the fake maintains HubSpot's formatting-free
//! calculated properties (see [`CALCULATED_PHONE_PROPERTIES`]) for search.

mod ops;
mod phone;
mod routes;
mod search;
mod server;
mod specs;
mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::oneshot;

pub use phone::{calculated_phone_properties, CALCULATED_PHONE_PROPERTIES};

use state::State;

/// HubSpot's limit on the `inputs` of a CRM object batch request (upsert, read, create, update).
pub const BATCH_LIMIT: usize = 100;
/// HubSpot's limit on the `inputs` of a batch read that asks for `propertiesWithHistory`.
pub const BATCH_READ_WITH_HISTORY_LIMIT: usize = 50;
/// HubSpot's limit on the `inputs` of a v4 association batch request.
pub const ASSOCIATION_BATCH_LIMIT: usize = 2000;
/// At most this many `filterGroups` in one search (HubSpot's CRM search guide).
pub const MAX_FILTER_GROUPS: usize = 5;
/// At most this many `filters` in one filter group.
pub const MAX_FILTERS_PER_GROUP: usize = 6;
/// At most this many filters in one search, all groups together.
pub const MAX_FILTERS_TOTAL: usize = 18;
/// The largest `limit` a search accepts.
pub const SEARCH_MAX_LIMIT: u64 = 200;
/// A search pages through at most this many results; an `after` at or past it is a `400`.
pub const SEARCH_MAX_RESULTS: u64 = 10_000;
/// The portal id the fake reports in messages that name one.
pub const PORTAL_ID: u64 = 12_345_678;
/// The value of `X-HubSpot-RateLimit-Daily` when [`FakeConfig::daily_limit`] is `None`
/// (HubSpot's Professional/Enterprise daily allowance); it is reported, never enforced.
pub const NOMINAL_DAILY_LIMIT: u64 = 500_000;

/// HubSpot-defined association type: communication → contact.
pub const COMMUNICATION_TO_CONTACT: i64 = 81;
/// HubSpot-defined association type: contact → communication.
pub const CONTACT_TO_COMMUNICATION: i64 = 82;
/// HubSpot-defined association type: note → contact.
pub const NOTE_TO_CONTACT: i64 = 202;
/// HubSpot-defined association type: contact → note.
pub const CONTACT_TO_NOTE: i64 = 201;

/// How a [`HubSpotFake`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The private-app token every request must carry as `Authorization: Bearer <token>`.
    pub token: String,
    /// Requests admitted per rolling ten seconds (HubSpot's `TEN_SECONDLY_ROLLING` policy);
    /// HubSpot's documented default for private apps is 100.
    pub requests_per_10s: u32,
    /// Search requests admitted per rolling second (HubSpot's `SECONDLY` policy for the search
    /// endpoints, which the ten-second window does not count).
    pub search_requests_per_s: u32,
    /// Requests admitted in the fake's lifetime before every answer is a `429` with policy
    /// `DAILY` (HubSpot resets at midnight in the portal's time zone; the fake never resets).
    /// `None`: no daily limit, and the headers report [`NOMINAL_DAILY_LIMIT`].
    pub daily_limit: Option<u64>,
    /// Time waited before each request is answered.
    pub latency: Duration,
}

impl Default for FakeConfig {
    /// Token `"hubspot-fake-token"`, 100 requests per ten seconds, 5 searches per second, no
    /// daily limit, no latency.
    fn default() -> Self {
        Self {
            token: "hubspot-fake-token".to_owned(),
            requests_per_10s: 100,
            search_requests_per_s: 5,
            daily_limit: None,
            latency: Duration::ZERO,
        }
    }
}

/// A fault the fake plays before handling requests normally ([`HubSpotFake::inject`]).
///
/// Faulted requests are recorded ([`HubSpotFake::requests`]) and count in
/// [`HubSpotFake::max_requests_in_any_window`], but not against the fake's own rate limits: they
/// are answered before the rate limiter sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next N requests are answered with server errors, cycling `502`, `503`, `500`, each
    /// with a HubSpot-style JSON error body.
    ServerErrors(u32),
    /// The next `count` requests are answered `429` with HubSpot's rate-limit body for `policy`
    /// and a `Retry-After: <retry_after_secs>` header.
    RateLimited {
        /// How many requests are rejected.
        count: u32,
        /// The `Retry-After` header, in seconds.
        retry_after_secs: u64,
        /// `"TEN_SECONDLY_ROLLING"`, `"SECONDLY"` or `"DAILY"` (the `policyName` of the body).
        policy: &'static str,
    },
    /// Every later request is answered with a server error (as [`Fault::ServerErrors`]) with
    /// this probability in percent, before it is applied (until [`HubSpotFake::reset_faults`]).
    ServerErrorRate(u8),
    /// Every later request waits this much longer before it is answered (until
    /// [`HubSpotFake::reset_faults`]); latencies add up.
    Latency(Duration),
    /// Every later request whose body contains this text is answered `400 VALIDATION_ERROR`
    /// naming the input that contains it (until [`HubSpotFake::reset_faults`]).
    ValidationErrorFor(String),
    /// Every later request that succeeds is, with this probability in percent, *applied* to the
    /// fake's store and then answered with a server error (cycling `502`, `503`, `500` with
    /// [`Fault::ServerErrors`]) instead of its result: the write happened, the answer was lost,
    /// as when a proxy in front of HubSpot fails after HubSpot did the work. Until
    /// [`HubSpotFake::reset_faults`]; each one is counted in [`HubSpotFake::lost_answers`].
    AppliedThenServerErrorRate(u8),
    /// The next request is handled normally (applied, when it succeeds) and its answer is then
    /// held this long before it is sent: longer than the client's timeout, the client sees a
    /// timeout after the write. A counted fault of one request, played in the order injected
    /// with the other counted ones; inject it again for more requests.
    AppliedThenDelay(Duration),
}

/// A CRM record held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeObject {
    /// HubSpot's record id (`hs_object_id`).
    pub id: String,
    /// Every property the record has, including HubSpot's system and calculated ones.
    pub properties: BTreeMap<String, String>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When the record was last changed.
    pub updated_at: DateTime<Utc>,
}

/// One association of a record, seen from that record.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FakeAssociation {
    /// The other record's object type, plural (`"contacts"`, `"communications"`, `"notes"`).
    pub to_type: String,
    /// The other record's id.
    pub to_id: String,
    /// The association type id in this direction (e.g. [`COMMUNICATION_TO_CONTACT`]).
    pub type_id: i64,
    /// `"HUBSPOT_DEFINED"`, `"USER_DEFINED"` or `"INTEGRATOR_DEFINED"`.
    pub category: String,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeRequest {
    /// The HTTP method, upper case.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The status the fake answered.
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The body as JSON; `Null` when empty, a JSON string when it was not JSON.
    pub body: Value,
}

/// A running HubSpot fake; the server stops when this is dropped.
pub struct HubSpotFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl HubSpotFake {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// HubSpot's OpenAPI documents are loaded from [`crate::openapi::specs_dir`] (once per
    /// process). Where they are absent (a user's own clone) the fake runs without request
    /// validation and says so on stderr; in CI `specs_dir` fails instead.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, when a present spec document cannot be loaded, and
    /// as [`crate::openapi::specs_dir`] does.
    pub async fn start(config: FakeConfig) -> HubSpotFake {
        let specs = specs::shared_specs();
        if specs.is_none() {
            eprintln!(
                "HubSpot fake: HubSpot's OpenAPI documents were not found; running WITHOUT \
                 request validation"
            );
        }
        let state = Arc::new(Mutex::new(State::new(config, specs)));
        let (addr, shutdown) =
            crate::loopback::serve("HubSpot fake", server::router(Arc::clone(&state))).await;
        HubSpotFake {
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL to give the client under test.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the fake runs with.
    #[must_use]
    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    /// All contacts, by ascending id.
    #[must_use]
    pub fn contacts(&self) -> Vec<FakeObject> {
        self.lock().objects(state::Kind::Contact)
    }

    /// How many communications the fake holds (cheap: for polling while the fake is under load).
    #[must_use]
    pub fn communication_count(&self) -> usize {
        self.lock().count(state::Kind::Communication)
    }

    /// All communications (logged WhatsApp/SMS/LinkedIn messages), by ascending id.
    #[must_use]
    pub fn communications(&self) -> Vec<FakeObject> {
        self.lock().objects(state::Kind::Communication)
    }

    /// All notes, by ascending id.
    #[must_use]
    pub fn notes(&self) -> Vec<FakeObject> {
        self.lock().objects(state::Kind::Note)
    }

    /// Whether any contact, communication or note holds `text` in a property value, now or in
    /// the property's history: after an erasure, neither the phone nor a body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        self.lock().holds(text)
    }

    /// The associations of one record (`object_type`: `"contacts"`/`"contact"`/`"0-1"`,
    /// `"communications"`/`"0-18"`, `"notes"`/`"0-46"`), sorted; empty for an unknown type or
    /// record.
    #[must_use]
    pub fn associations_of(&self, object_type: &str, id: &str) -> Vec<FakeAssociation> {
        self.lock().associations_of(object_type, id)
    }

    /// Creates a contact as a salesperson would in HubSpot's UI (no request, no validation, no
    /// rate limit); its calculated phone properties are maintained as for any other contact.
    /// Returns its id.
    ///
    /// # Panics
    ///
    /// When a unique property value (`email`, or a property created with `hasUniqueValue`) is
    /// already taken by another contact: HubSpot would refuse it, so the test is wrong.
    pub fn insert_contact(&self, properties: &[(&str, &str)]) -> String {
        match self.lock().insert_contact(properties) {
            Ok(id) => id,
            Err(message) => panic!("HubSpot fake: insert_contact: {message}"),
        }
    }

    /// Defines a custom contact property as if created in HubSpot's UI (no request), e.g. one
    /// the adapter expects to exist already. Does nothing when the property exists.
    pub fn insert_contact_property(&self, name: &str, has_unique_value: bool) {
        self.lock()
            .insert_property(state::Kind::Contact, name, has_unique_value);
    }

    /// Defines a custom text property of communications as if created in HubSpot's UI (no
    /// request), e.g. one the adapter expects to exist already. Does nothing when the property
    /// exists.
    pub fn insert_communication_property(&self, name: &str) {
        self.lock()
            .insert_property(state::Kind::Communication, name, false);
    }

    /// Adds a HubSpot user who can own records; returns the owner id.
    pub fn insert_owner(&self, email: &str, first_name: &str, last_name: &str) -> String {
        self.lock().insert_owner(email, first_name, last_name)
    }

    /// Every request received so far, in arrival order, including rejected ones.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests (not the records, violations or rate-limit windows).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// How many requests had `method` (case-insensitive) and a path starting with `path_prefix`.
    #[must_use]
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.starts_with(path_prefix))
            .count()
    }

    /// Spec violations found in requests, one line each: `METHOD path: <instance path>:
    /// <keyword>: <message>`. Each such request was answered `400 VALIDATION_ERROR`.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// The largest number of requests that arrived within any `window` (a half-open interval
    /// starting at some request), counting every request except those answered `401` — rate
    /// limited and faulted ones included — so a test can prove a client never exceeded a rate.
    #[must_use]
    pub fn max_requests_in_any_window(&self, window: Duration) -> usize {
        let mut times: Vec<Instant> = self
            .lock()
            .requests
            .iter()
            .filter(|r| r.status != 401)
            .map(|r| r.at)
            .collect();
        times.sort();
        if window.is_zero() {
            return 0;
        }
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while start < end && times[end].duration_since(times[start]) >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// How many successful answers [`Fault::AppliedThenServerErrorRate`] replaced with a server
    /// error (writes that happened while the client was told they failed).
    #[must_use]
    pub fn lost_answers(&self) -> usize {
        self.lock().lost_answers
    }

    /// Adds a fault; see [`Fault`] for how each plays out.
    pub fn inject(&self, fault: Fault) {
        self.lock().inject(fault);
    }

    /// Removes every fault, played or not.
    pub fn reset_faults(&self) {
        self.lock().reset_faults();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for HubSpotFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for HubSpotFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may be gone already (its runtime ended); nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
