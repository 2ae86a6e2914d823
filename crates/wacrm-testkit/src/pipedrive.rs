//! A stateful fake of Pipedrive's API, for adapter and end-to-end tests.
//!
//! [`PipedriveFake::start`] runs an axum server on `127.0.0.1:<free port>`; its base URL stands
//! for a company domain (`https://<company>.pipedrive.com`). It answers the subset of Pipedrive's
//! API the CRM adapter uses, the way Pipedrive documents it:
//!
//! | Operation | Path | Document, path |
//! |---|---|---|
//! | the token's user | `GET /api/v1/users/me` | v1 `/users/me` |
//! | list person fields | `GET /api/v1/personFields` | v1 `/personFields` |
//! | create a person field | `POST /api/v1/personFields` | v1 `/personFields` |
//! | one person field | `GET /api/v1/personFields/{id}` | v1 `/personFields/{id}` |
//! | list persons | `GET /api/v2/persons` | v2 `/persons` |
//! | create a person | `POST /api/v2/persons` | v2 `/persons` |
//! | update a person | `PATCH /api/v2/persons/{id}` | v2 `/persons/{id}` |
//! | delete a person (its notes stay) | `DELETE /api/v2/persons/{id}` | v2 `/persons/{id}` |
//! | list notes | `GET /api/v1/notes` | v1 `/notes` |
//! | add a note | `POST /api/v1/notes` | v1 `/notes` |
//! | one note | `GET /api/v1/notes/{id}` | v1 `/notes/{id}` |
//! | update a note | `PUT /api/v1/notes/{id}` | v1 `/notes/{id}` |
//! | delete a note | `DELETE /api/v1/notes/{id}` | v1 `/notes/{id}` |
//!
//! `/api/v1/<path>` is validated against `<path>` of `pipedrive/openapi-v1.yaml` (whose server
//! lacks `/api`), `/api/v2/<path>` against `<path>` of `pipedrive/openapi-v2.yaml`. Any other
//! method or path is answered `404` and recorded as a violation ("the adapter called an
//! endpoint the fake does not implement").
//!
//! Every request is checked in this order, each step able to answer on its own:
//!
//! 1. the `x-api-token` header must carry [`FakeConfig::token`], else `401
//!    {"success":false,"error":"unauthorized access","errorCode":401}` (not rate-limited, no
//!    tokens charged, not counted by [`PipedriveFake::max_requests_in_any_window`]);
//! 2. the burst limit: at most [`FakeConfig::requests_per_2s`] requests admitted in any rolling
//!    2-second window, else `429`; such a request came while `x-ratelimit-remaining` was `0`
//!    and is counted in [`PipedriveFake::burst_violations`]. Rejected requests do not fill the
//!    window;
//! 3. the daily token budget: once [`PipedriveFake::tokens_spent`] reaches
//!    [`FakeConfig::daily_tokens`], every request is answered `429 {"success":false,"error":
//!    "Request over limit"}` (the fake's budget never resets). A request admitted while some
//!    budget is left is charged in full, so the spend may end above the budget;
//! 4. routing (unknown: `404` and a violation, no tokens);
//! 5. the operation's token cost, its `x-token-cost` in the document (a table of the same
//!    costs when the documents are absent), is charged — also when the request then fails;
//! 6. the JSON body and the query string are validated against the operation in the
//!    document, with the patches of [`SPEC_PATCHES`]; then the fake's own checks of what the
//!    documents state only in prose (`limit` ≤ 500, `ids` ≤ 100, `custom_fields` ≤ 15 keys,
//!    RFC 3339 / `YYYY-MM-DD HH:MM:SS` formats, custom field keys that exist, one primary
//!    phone, a note's single parent). Every failure is recorded in
//!    [`PipedriveFake::violations`] and answered `400` in Pipedrive's error shape;
//! 7. the operation itself, against the fake's store.
//!
//! Every answer carries `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`
//! (whole seconds until the oldest request leaves the window) and
//! `x-daily-ratelimit-token-limit`, `x-daily-ratelimit-token-remaining`. Successes are
//! `{"success":true,"data":…,"additional_data":…}`; errors `{"success":false,"error":…,
//! "error_info":…,"data":null,"additional_data":null}` (`404`: `"Entity was not found"`).
//! Every request is recorded ([`PipedriveFake::requests`]), including rejected ones.
//!
//! Shapes the adapter meets:
//!
//! - v2 persons: `{id, name, first_name, last_name, owner_id, org_id, add_time, update_time,
//!   emails, phones: [{value, label, primary}], is_deleted, visible_to, label_ids, picture_id,
//!   custom_fields}`, times RFC 3339 in whole seconds (`2025-01-01T10:20:00Z`). `custom_fields`
//!   lists every custom person field (`null` when the person has no value), or only the keys of
//!   the `custom_fields` query parameter. Lists page with `cursor`/`limit` (default 100) and
//!   `additional_data.next_cursor` (`null` on the last page); the cursor is opaque and tied to
//!   `sort_by`/`sort_direction`. `updated_since` is inclusive (`>=`), `updated_until`
//!   exclusive. A write without a primary phone makes the first one primary; labels default to
//!   `"work"`. `PATCH` replaces `phones`/`emails` and merges `custom_fields` (`null` clears).
//! - v1 lists (`/notes`, `/personFields`) page with `start`/`limit` (default 100) and
//!   `additional_data.pagination.{start, limit, more_items_in_collection, next_start}`; an
//!   empty page answers `data: null`, as Pipedrive's v1 lists do.
//! - notes: `{id, content, person_id, deal_id, org_id, lead_id, project_id, user_id, add_time,
//!   update_time, active_flag, pinned_to_*_flag, person: {name}, user: {…}}`, times
//!   `YYYY-MM-DD HH:MM:SS` (UTC). The author is always the token's user ([`FakeConfig::user_id`]);
//!   another `user_id` is a `400`. A note on a person that does not exist is a `404`. `sort`
//!   defaults to `id ASC`; `start_date`/`end_date` filter on `add_time`'s date.
//! - person fields: the system fields `name`, `phone`, `email`, `owner_id`, `org_id`
//!   (`edit_flag: false`), then custom ones (`edit_flag: true`, 40-hex `key`,
//!   `searchable_flag: false`).

mod fields;
mod limits;
mod notes;
mod paging;
mod persons;
mod routes;
mod server;
mod specs;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use specs::{SpecPatch, SPEC_PATCHES};

use state::State;

/// How a [`PipedriveFake`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The API token every request must carry in the `x-api-token` header.
    pub token: String,
    /// The id of the token's user (`GET /users/me`), the author of every note.
    pub user_id: i64,
    /// Requests admitted per rolling 2 seconds (Pipedrive's burst limit per API token: Lite 20,
    /// Growth 40, Premium 100, Ultimate 120).
    pub requests_per_2s: u32,
    /// The company's daily token budget (30,000 × plan multiplier × seats); the fake's never
    /// resets.
    pub daily_tokens: u64,
}

impl Default for FakeConfig {
    /// Token `"pd-test-token-0123"`, user 4242, 20 requests per 2 seconds and 30,000 tokens
    /// (Lite, one seat).
    fn default() -> Self {
        Self {
            token: "pd-test-token-0123".to_owned(),
            user_id: 4242,
            requests_per_2s: 20,
            daily_tokens: 30_000,
        }
    }
}

/// A person held by the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct FakePerson {
    /// The person's id.
    pub id: i64,
    /// The person's name.
    pub name: String,
    /// The phone numbers' values, as written, primary or not, in order.
    pub phones: Vec<String>,
    /// Custom field values by field key (only the fields that have a value).
    pub custom_fields: Map<String, Value>,
    /// When the person was last changed.
    pub update_time: DateTime<Utc>,
}

/// A note held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNote {
    /// The note's id.
    pub id: i64,
    /// The person it is attached to.
    pub person_id: Option<i64>,
    /// Its author.
    pub user_id: i64,
    /// The HTML content, as sent.
    pub content: String,
    /// `YYYY-MM-DD HH:MM:SS` (UTC), as sent or the time of creation.
    pub add_time: String,
}

pub use crate::loopback::FakeRequest;

/// A running Pipedrive fake; the server stops when this is dropped.
pub struct PipedriveFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl PipedriveFake {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// Pipedrive's OpenAPI documents are loaded from [`crate::openapi::specs_dir`] and patched
    /// ([`SPEC_PATCHES`]) once per process. Where they are absent (a user's own clone, or a CI
    /// with `WACRM_SPECS_OPTIONAL`) the fake runs without request validation, charging its own
    /// table of the same token costs, and says so on stderr; in CI `specs_dir` fails instead.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, when a present document cannot be loaded or a patch
    /// no longer finds its defect, and as [`crate::openapi::specs_dir`] does.
    pub async fn start(config: FakeConfig) -> PipedriveFake {
        let specs = specs::shared_specs();
        if specs.is_none() {
            eprintln!(
                "Pipedrive fake: Pipedrive's OpenAPI documents were not found; running WITHOUT \
                 request validation"
            );
        }
        let state = Arc::new(Mutex::new(State::new(config, specs)));
        let (addr, shutdown) =
            crate::loopback::serve("Pipedrive fake", server::router(Arc::clone(&state))).await;
        PipedriveFake {
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// `http://127.0.0.1:PORT`, the base URL (company domain) to give the client under test.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the fake runs with.
    #[must_use]
    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    /// All persons, by ascending id.
    #[must_use]
    pub fn persons(&self) -> Vec<FakePerson> {
        self.lock().fake_persons()
    }

    /// All notes, by ascending id.
    #[must_use]
    pub fn notes(&self) -> Vec<FakeNote> {
        self.lock().fake_notes()
    }

    /// Whether any person (as the API shows it) or note holds `text`: after an erasure, neither
    /// the phone nor a body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        let state = self.lock();
        state
            .persons
            .values()
            .any(|p| state.person_json(p, None).to_string().contains(text))
            || state.notes.values().any(|n| n.content.contains(text))
    }

    /// The key of the first custom person field named `name` (system fields are not
    /// searched).
    #[must_use]
    pub fn person_field_key(&self, name: &str) -> Option<String> {
        self.lock()
            .fields
            .iter()
            .find(|f| f.edit_flag && f.name == name)
            .map(|f| f.key.clone())
    }

    /// Creates a person as a salesperson would in Pipedrive's UI (no request recorded, no
    /// tokens, no rate limit): `phone` becomes its primary phone labelled `"work"` (none when
    /// empty). Returns its id.
    pub fn insert_person(&self, name: &str, phone: &str) -> i64 {
        let mut guard = self.lock();
        let person = guard.new_person(name);
        if !phone.is_empty() {
            person.phones.push(state::Contact {
                value: phone.to_owned(),
                label: state::DEFAULT_LABEL.to_owned(),
                primary: true,
            });
        }
        person.id
    }

    /// Every request received so far, in arrival order, including rejected ones.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.request.clone())
            .collect()
    }

    /// Forgets the recorded requests (not the records, violations, rate-limit window or
    /// tokens spent).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Violations found in requests, one line each: `METHOD path: <where>: <what>`. Each such
    /// request was answered `400` (or `404`, for an endpoint the fake does not implement).
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// How many requests arrived while the burst window was full (`x-ratelimit-remaining: 0`)
    /// and were answered `429`: each is the client exceeding Pipedrive's burst limit.
    #[must_use]
    pub fn burst_violations(&self) -> usize {
        self.lock().burst_violations
    }

    /// The largest number of recorded requests that arrived within any `window` (a half-open
    /// interval starting at some request), counting every request except those answered `401`
    /// — rate-limited ones included — so a test can prove a client never exceeded a rate.
    #[must_use]
    pub fn max_requests_in_any_window(&self, window: Duration) -> usize {
        if window.is_zero() {
            return 0;
        }
        let mut times: Vec<Instant> = self
            .lock()
            .requests
            .iter()
            .filter(|r| r.request.status != 401)
            .map(|r| r.at)
            .collect();
        times.sort();
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

    /// Tokens charged so far against the daily budget.
    #[must_use]
    pub fn tokens_spent(&self) -> u64 {
        self.lock().tokens_spent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for PipedriveFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipedriveFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for PipedriveFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may be gone already (its runtime ended); nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
