//! A stateful fake of Kommo's (amoCRM's) API v4, for adapter and end-to-end tests.
//!
//! [`KommoFake::start`] runs an axum server on `127.0.0.1:<free port>`; its base URL stands for
//! an account's address (`https://<subdomain>.kommo.com`). It answers the subset of API v4 the
//! Kommo adapter uses. Kommo publishes no machine-readable spec: every rule below names the
//! document it comes from, and where the documents are silent the fake's choice is said.
//!
//! Sources: `shared/specs/CRMS.md` §5 ("CRMS"), which cites
//! <https://kommo.com/developers/content/api_v4/contacts-api> ("contacts page"),
//! <https://developers.kommo.com/reference/notes-types> and
//! <https://developers.kommo.com/docs/limitations> ("limitations"); the notes reference pages
//! <https://developers.kommo.com/reference/notes-by-entity-id> and the "list/edit notes by
//! entity type" pages ("notes pages"); and the official PHP SDK `amocrm/amocrm-api-php`
//! (`AmoCRMApiRequest`: 204 is an empty answer, a 400 carries `validation-errors`;
//! `NoteModel::toApi`: `created_at`, `request_id`; `ContactsFilter`/`NotesFilter`: the filters)
//! ("SDK").
//!
//! | Operation | Path | Source |
//! |---|---|---|
//! | the account | `GET /api/v4/account` | CRMS §5 (`check`) |
//! | list contact fields | `GET /api/v4/contacts/custom_fields` | CRMS §5, SDK `CustomFields` |
//! | add contact fields | `POST /api/v4/contacts/custom_fields` | CRMS §5 (unverified shape) |
//! | list contacts | `GET /api/v4/contacts` | contacts page |
//! | add contacts | `POST /api/v4/contacts` | contacts page |
//! | edit contacts | `PATCH /api/v4/contacts` | contacts page ("Updating contacts") |
//! | list contact notes | `GET /api/v4/contacts/notes` | notes pages |
//! | add contact notes | `POST /api/v4/contacts/notes` | CRMS §5, notes-types |
//! | edit contact notes | `PATCH /api/v4/contacts/notes` | notes pages (unverified path) |
//!
//! Every request goes through, in order:
//!
//! 0. `POST /oauth2/access_token` (OAuth 2, refresh-token grant, rotating the refresh token)
//!    is answered first, outside the rate limit;
//! 1. `Authorization: Bearer <FakeConfig::token>` or an access token the fake issued (CRMS §5:
//!    tokens are sent as Bearer), else `401` `application/problem+json` (not rate-limited, not
//!    counted in the window);
//! 2. when the account is blocked ([`KommoFake::block`]): `403` with nginx's HTML page, as users
//!    report a blocked account (research §4.5, unverified);
//! 3. the rate limit: at most [`FakeConfig::requests_per_second`] (Kommo's 7, limitations)
//!    admitted in any rolling second, else `429` and a count in [`KommoFake::rate_violations`]
//!    (the status is expected, unverified; the test fails on any);
//! 4. routing: another method or path is a violation answered `404`;
//! 5. validation of the query and the body against the documented shapes; each failure is
//!    recorded in [`KommoFake::violations`] and answered `400` in Kommo's problem shape;
//! 6. the operation. A write Kommo would refuse for its data — an item containing
//!    [`KommoFake::reject_text`]'s text, a contact or note that does not exist — is answered
//!    `400` with `validation-errors: [{request_id, errors: [{code, path, detail}]}]`, and
//!    nothing of the call is applied (research §4.4: one bad item rejects the whole batch,
//!    unverified). These are not violations: the adapter met a refusal.
//!
//! Answers: `application/hal+json` with `_links.self`, lists with `_page`,
//! `_links.next` (when a next page exists) and `_embedded.<entities>`; an empty list is `204`
//! with no body (SDK: `204 No Content`). Errors: `application/problem+json` `{title, type,
//! status, detail}` (CRMS §5; field list unverified). Every request is recorded
//! ([`KommoFake::requests`]).

mod server;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

pub use crate::loopback::FakeRequest;

use store::State;

/// How a [`KommoFake`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The long-lived token every request must carry as `Authorization: Bearer`.
    pub token: String,
    /// Requests admitted per rolling second (Kommo documents 7).
    pub requests_per_second: u32,
    /// Most entities in one add or edit call. Kommo's maximum is not documented where we looked
    /// (50 is what it documents for complex leads): the fake's choice, so a larger call fails.
    pub max_batch: usize,
    /// The OAuth integration's id, secret and first refresh token (`POST /oauth2/access_token`);
    /// the endpoint refuses everything while `refresh_token` is empty.
    pub client_id: String,
    /// The integration's secret key.
    pub client_secret: String,
    /// The refresh token of the authorisation; each use retires it for a new one.
    pub refresh_token: String,
}

impl Default for FakeConfig {
    /// Token `"kommo-long-lived-token-0123"`, 7 requests a second, 50 entities a call, the
    /// integration `kommo-integration-id` / `kommo-integration-secret` without a refresh token.
    fn default() -> Self {
        FakeConfig {
            token: "kommo-long-lived-token-0123".into(),
            requests_per_second: 7,
            max_batch: 50,
            client_id: "kommo-integration-id".into(),
            client_secret: "kommo-integration-secret".into(),
            refresh_token: String::new(),
        }
    }
}

/// A contact held by the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContact {
    /// The contact's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// The values of its `PHONE` field, as written.
    pub phones: Vec<String>,
    /// Its custom field values (`[{field_id, field_code, values}]`), as Kommo lists them.
    pub custom_fields_values: Vec<Value>,
}

impl FakeContact {
    /// The first value of the custom field `field_id`, as text.
    pub fn field(&self, field_id: i64) -> Option<String> {
        self.custom_fields_values
            .iter()
            .find(|f| f["field_id"].as_i64() == Some(field_id))
            .and_then(|f| f["values"][0]["value"].as_str().map(str::to_owned))
    }
}

/// A note held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNote {
    /// The note's id.
    pub id: i64,
    /// The contact it is on.
    pub entity_id: i64,
    /// `common` (the only type the fake implements).
    pub note_type: String,
    /// `params.text`.
    pub text: String,
    /// Unix seconds, as sent or the time of creation.
    pub created_at: i64,
}

/// A running Kommo fake; the server stops when this is dropped.
pub struct KommoFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl KommoFake {
    /// Starts the fake on `127.0.0.1` with a free port. The account has Kommo's system contact
    /// fields (`PHONE`, `EMAIL`, `POSITION`) and no contacts.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound.
    pub async fn start(config: FakeConfig) -> KommoFake {
        let state = Arc::new(Mutex::new(State::new(config)));
        let (addr, shutdown) =
            crate::loopback::serve("Kommo fake", server::router(Arc::clone(&state))).await;
        KommoFake {
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// `http://127.0.0.1:PORT`, the account's address to give the client under test.
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
    pub fn contacts(&self) -> Vec<FakeContact> {
        self.lock().fake_contacts()
    }

    /// All notes, by ascending id.
    #[must_use]
    pub fn notes(&self) -> Vec<FakeNote> {
        self.lock().fake_notes()
    }

    /// Whether any contact (name or field value) or note holds `text`: after an erasure, no
    /// body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        let state = self.lock();
        state
            .contacts
            .values()
            .any(|c| c.name.contains(text) || c.fields.iter().any(|f| f.to_string().contains(text)))
            || state.notes.values().any(|n| n.text.contains(text))
    }

    /// The id of the contact field with this code (case-insensitive), if any.
    #[must_use]
    pub fn field_id(&self, code: &str) -> Option<i64> {
        self.lock()
            .fields
            .iter()
            .find(|f| {
                f.code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(code))
            })
            .map(|f| f.id)
    }

    /// Creates a contact as a salesperson would in Kommo's UI (no request recorded, no rate
    /// limit): `phone` becomes its `PHONE` value (`WORK`). Returns its id.
    pub fn insert_contact(&self, name: &str, phone: &str) -> i64 {
        self.lock().insert_contact(name, phone)
    }

    /// While `blocked`, every request is answered `403` with an HTML page, as Kommo answers for
    /// an account it has blocked.
    pub fn block(&self, blocked: bool) {
        self.lock().blocked = blocked;
    }

    /// From now on, a written item whose JSON contains `text` is refused as Kommo refuses
    /// invalid data (`400` naming its `request_id`); `None` stops it.
    pub fn reject_text(&self, text: Option<&str>) {
        self.lock().reject_text = text.map(str::to_owned);
    }

    /// Forgets every access token issued (as when they expire): the next request with one is
    /// answered `401`.
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// The refresh token the token endpoint accepts now.
    #[must_use]
    pub fn current_refresh_token(&self) -> String {
        self.lock().refresh_token.clone()
    }

    /// How many times the token endpoint was called.
    #[must_use]
    pub fn token_calls(&self) -> usize {
        self.lock().token_calls
    }

    /// Every request received so far, in arrival order, including rejected ones.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock()
            .requests
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Forgets the recorded requests (not the records, violations or rate window).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Requests off the documented shapes, one line each (`METHOD path: what`).
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// How many requests arrived while the rolling second was full and were answered `429`:
    /// each is the client exceeding Kommo's documented rate.
    #[must_use]
    pub fn rate_violations(&self) -> usize {
        self.lock().rate_violations
    }

    /// The largest number of recorded requests (except those answered `401`) within any
    /// `window` starting at a request.
    #[must_use]
    pub fn max_requests_in_any_window(&self, window: Duration) -> usize {
        let mut times: Vec<Instant> = self
            .lock()
            .requests
            .iter()
            .filter(|(_, r)| r.status != 401)
            .map(|(at, _)| *at)
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

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for KommoFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KommoFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for KommoFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may be gone already (its runtime ended); nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
