//! A stateful fake of Zoho CRM's API (v8), for adapter and end-to-end tests.
//!
//! [`ZohoFake::start`] runs an axum server on `127.0.0.1:<free port>`. Its one base URL plays
//! both Zoho servers: the accounts server (`https://accounts.zoho.<dc>`, the token endpoint) and
//! the `api_domain` the token answer names (`https://www.zohoapis.<dc>`). It answers the subset
//! of Zoho's API the CRM adapter uses, the way Zoho documents it:
//!
//! | Operation | Path | Document, operation |
//! |---|---|---|
//! | refresh an access token | `POST /oauth/v2/token` | (none: Zoho Accounts) |
//! | list the contact fields | `GET /crm/v8/settings/fields?module=Contacts` | `fields.json` "Get Fields" |
//! | create a contact field | `POST /crm/v8/settings/fields?module=Contacts` | `fields.json` "Create Field" |
//! | query contacts | `POST /crm/v8/coql` | `coql.json` "Get Records" |
//! | upsert contacts | `POST /crm/v8/Contacts/upsert` | `record.json` "Upsert Records" |
//! | update contacts | `PUT /crm/v8/Contacts` | `record.json` "Update Records" |
//! | delete contacts (their notes stay) | `DELETE /crm/v8/Contacts?ids=…` | `record.json` "Delete Records" |
//! | list notes | `GET /crm/v8/Notes` | `notes.json` "Get Notes" |
//! | create notes | `POST /crm/v8/Notes` | `notes.json` "Create Notes" |
//! | update notes | `PUT /crm/v8/Notes` | `notes.json` "Update Notes" |
//! | delete notes | `DELETE /crm/v8/Notes?ids=…` | `notes.json` "Delete Notes" |
//!
//! The documents are `zoho/v8.0/*.json` under [`crate::openapi::specs_dir`]; each of the four
//! above is loaded with the documents it `$ref`s bundled in (Zoho's files refer to one another)
//! and with the patches of [`SPEC_PATCHES`]. Any other method or path is answered `404
//! {"code":"INVALID_URL_PATTERN",…}` and recorded as a violation ("the adapter called an endpoint
//! the fake does not implement"), including real Zoho operations the fake does not serve (other
//! modules than `Contacts`, `GET /crm/v8/Notes/{id}`, `/search`, …).
//!
//! # The token endpoint
//!
//! `POST /oauth/v2/token` takes `grant_type=refresh_token`, `client_id`, `client_secret` and
//! `refresh_token`, form-encoded in the body (as `wacrm_crm`'s OAuth client sends them) or in the
//! query string (as Zoho's own examples write them). Equal to [`FakeConfig`]'s, it answers `200
//! {"access_token": "1000.<hex>.<hex>", "api_domain": <base URL>, "token_type": "Bearer",
//! "expires_in": 3600}` with a new token each time; no `refresh_token` (Zoho does not rotate
//! refresh tokens). A wrong client id or secret answers `400 {"error":"invalid_client"}`, a
//! wrong refresh token `400 {"error":"invalid_code"}`. A missing parameter or another grant type
//! is also a violation (another grant answers `400 {"error":"unsupported_grant_type"}`).
//! Issued tokens stay valid until [`ZohoFake::expire_tokens`]. The endpoint is free, is counted
//! by [`ZohoFake::token_requests`] and is not in [`ZohoFake::requests`].
//!
//! # Every other request
//!
//! Each is recorded ([`ZohoFake::requests`], rejected ones included) and checked in this order,
//! each step able to answer on its own:
//!
//! 1. paths outside `/crm/v8/`: `404` and a violation (no credit);
//! 2. `Authorization: Zoho-oauthtoken <token>` must carry a token the fake issued and has not
//!    expired, else `401 {"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token",
//!    "status":"error"}` (no credit). A header with another scheme (`Bearer …`) is also a
//!    violation: Zoho wants its own scheme;
//! 3. one API credit is charged ([`ZohoFake::credits_used`]), whatever the answer;
//! 4. routing (unknown: `404` and a violation);
//! 5. the JSON body against the operation's request schema and the query string against its
//!    declared parameters (unknown names, `required`, types, enumerations), with the patches of
//!    [`SPEC_PATCHES`]; then the fake's own checks of what Zoho states only in prose: at most 100
//!    records per write, `data` present and not empty, `module=Contacts`, `duplicate_check_fields`
//!    naming Email or a unique field, the COQL shape and limits, and the `Get Notes` paging
//!    parameters. Every failure is recorded in [`ZohoFake::violations`] and answered `400
//!    {"code":"INVALID_DATA","details":{},"message":"invalid data","status":"error"}`;
//! 6. the operation itself, against the fake's store.
//!
//! # What the operations answer
//!
//! - Writes answer one result per input item, in input order, under `data` (`fields` for field
//!   creation): `{"code":"SUCCESS","details":{"id",…},"message",…,"status":"success"}` or
//!   `{"code":<error>,"details":{"api_name","json_path",…},"message","status":"error"}`. The HTTP
//!   status is the operation's success status when every item succeeded (`200`; `201` for
//!   field and note creation), `207` when some failed and `400` when all failed — a `400` whose
//!   body is a `data` array of per-item errors, not a request error.
//! - Upsert: each record is matched against the stored contacts on `duplicate_check_fields` in
//!   the order given (default: `Email`, then every unique custom field), comparing the stored
//!   text exactly (case-insensitively for a field whose `unique.casesensitive` is not
//!   `"true"`, and for `Email`). A match is updated (`"action":"update"`, `"duplicate_field":
//!   <field>`, `"message":"record updated"`), otherwise the record is inserted (`"action":
//!   "insert"`, `"duplicate_field":null`, `"message":"record added"`), which needs a non-empty
//!   `Last_Name` (`MANDATORY_NOT_FOUND`). A value of a unique field that another contact holds is
//!   `DUPLICATE_DATA` (`details.duplicate_record.id`); a field name the module does not have, a
//!   read-only field (`Created_Time`, …), a value that is not a string (or `null`, which clears),
//!   an e-mail address without `@`, or a value longer than the field's `length` is
//!   `INVALID_DATA` with `details.api_name`. Records of one request are applied one after the
//!   other, so a later record matches one inserted earlier in the same request.
//! - `PUT /crm/v8/Contacts` updates by `id` (`MANDATORY_NOT_FOUND` without one, `INVALID_DATA`
//!   `"the id given seems to be invalid"` for an unknown one), with the same value checks.
//! - COQL: `select <fields> from Contacts where <condition> [limit N [offset M]]`, conditions
//!   being `<field> in ('v', …)` or `<field> = 'v'`, combined with `or`/`and` and parentheses;
//!   keywords are case-insensitive, `\'` escapes a quote. Values are compared with the stored
//!   text exactly: no phone normalisation, so every spelling must be sent. At most 100 values per
//!   `in`, 25 conditions, 50 selected fields, `limit` 1–2,000 (default 200). Answers `{"data":
//!   [{"id", <each selected field, null when empty>}], "info":{"count","more_records"}}` by
//!   ascending id (`id` is always included), or `204` with an empty body when nothing matches.
//! - Notes: `Parent_Id` `{"module":{"api_name":"Contacts"},"id":<contact id>}` must name a
//!   stored contact (`INVALID_DATA` on `Parent_Id` otherwise); a note needs a `Note_Title` or a
//!   `Note_Content` (`EXPECTED_FIELD_MISSING`, as Zoho's newer documents word it); `Note_Title`
//!   ≤ 120 characters, `Note_Content` ≤ 65,535. `PUT` updates by `id`. `GET` requires `fields`
//!   (among `id`, `Note_Title`, `Note_Content`, `Parent_Id`, `Created_Time`, `Modified_Time`,
//!   `Owner`, `Created_By`, `Modified_By`) and answers only `id` and the fields named, sorted
//!   by `sort_by` (`id`, `Created_Time`, `Modified_Time`; default `id`) and `sort_order`
//!   (default `desc`), ties broken by id in the same direction, paged by `page` and `per_page`
//!   (≤ 200, and `page × per_page` ≤ 2,000), filtered by `ids` (≤ 100); `info` carries `page`,
//!   `per_page`, `count`, `sort_by`, `sort_order`, `more_records`; `204` when the page is empty.
//! - Fields: the system fields `Last_Name` (`system_mandatory`), `First_Name`, `Email`,
//!   `Secondary_Email`, `Phone`, `Mobile`, `Home_Phone`, `Other_Phone`, `Description`, and the
//!   read-only `Created_Time`/`Modified_Time`, then custom ones. A non-unique field has
//!   `"unique":{}`, a unique one the object it was created with. Creation takes `text`,
//!   `phone`, `email` or `textarea` fields; the `api_name` is the label with each run of other
//!   characters than letters and digits turned into `_` (`"WhatsApp ID"` → `WhatsApp_ID`); a
//!   label or `api_name` already in use (case-insensitively) is `DUPLICATE_DATA`.
//!
//! The fake's answers follow the snapshot's response schemas (a unit test checks the record
//! answers against `Success_Response` and `API_Exception`) except in two places, where Zoho's
//! answers themselves depart from it: `"duplicate_field": null` on an upsert insert (typed
//! `string`), and a numeric `details.maximum_length` (typed `string`; Zoho's newer document
//! types it an integer).
//!
//! Ids are 19-digit numeric strings, times ISO 8601 in whole seconds with an offset
//! (`2025-01-01T10:20:00+00:00`). Records are owned and made by the token's user,
//! `{"name": "Fake Admin", "id": …}` (`Owner`, `Created_By`, `Modified_By`).

mod coql;
mod fields;
mod notes;
mod records;
mod routes;
mod server;
mod specs;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::oneshot;

pub use specs::{SpecPatch, SPEC_PATCHES};

use state::State;

/// The credentials a [`ZohoFake`] accepts at its token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The OAuth client id of the app.
    pub client_id: String,
    /// The OAuth client secret of the app.
    pub client_secret: String,
    /// The refresh token of the one authorisation the fake knows.
    pub refresh_token: String,
}

impl Default for FakeConfig {
    /// Client `"zoho-client-1"`, secret `"zoho-secret-0123"`, refresh token
    /// `"1000.refresh.0123"`.
    fn default() -> Self {
        Self {
            client_id: "zoho-client-1".to_owned(),
            client_secret: "zoho-secret-0123".to_owned(),
            refresh_token: "1000.refresh.0123".to_owned(),
        }
    }
}

/// A contact held by the fake.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContact {
    /// The contact's id (a 19-digit numeric string).
    pub id: String,
    /// The field values written, by field API name; only fields that have a value (`null` and
    /// `""` clear a field). The system times are not included.
    pub fields: Map<String, Value>,
}

/// A note held by the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeNote {
    /// The note's id.
    pub id: String,
    /// The id of the contact it is attached to.
    pub parent_id: String,
    /// `Note_Title` (`""` when it has none).
    pub title: String,
    /// `Note_Content` (`""` when it has none).
    pub content: String,
}

pub use crate::loopback::FakeRequest;

/// A running Zoho CRM fake; the server stops when this is dropped.
pub struct ZohoFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl ZohoFake {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// Zoho's OpenAPI documents are loaded from [`crate::openapi::specs_dir`], bundled and
    /// patched ([`SPEC_PATCHES`]) once per process. Where they are absent (a user's own clone,
    /// or a CI with `WACRM_SPECS_OPTIONAL`) the fake runs without schema validation (its own
    /// checks still apply) and says so on stderr; in CI `specs_dir` fails instead.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, when a present document cannot be loaded or a patch
    /// no longer finds its defect, and as [`crate::openapi::specs_dir`] does.
    pub async fn start(config: FakeConfig) -> ZohoFake {
        let specs = specs::shared_specs();
        if specs.is_none() {
            eprintln!(
                "Zoho fake: Zoho's OpenAPI documents were not found; running WITHOUT request \
                 schema validation"
            );
        }
        let state = Arc::new(Mutex::new(State::new(config, specs)));
        let (addr, shutdown) =
            crate::loopback::serve("Zoho fake", server::router(Arc::clone(&state))).await;
        let fake = ZohoFake {
            addr,
            state,
            shutdown: Some(shutdown),
        };
        fake.lock().base_url = fake.base_url();
        fake
    }

    /// `http://127.0.0.1:PORT`: the accounts server (token endpoint `<base>/oauth/v2/token`) and
    /// the `api_domain` (`<base>/crm/v8/…`) to give the client under test.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The credentials the fake accepts.
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

    /// Whether any contact (a field value) or note (title or content) holds `text`: after an
    /// erasure, neither the phone nor a body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        let state = self.lock();
        state
            .contacts
            .values()
            .any(|c| c.fields.values().any(|v| v.to_string().contains(text)))
            || state.notes.values().any(|n| {
                [&n.title, &n.content]
                    .iter()
                    .any(|t| t.as_deref().is_some_and(|t| t.contains(text)))
            })
    }

    /// The API name of the contact field labelled `label` (exactly), system or custom.
    #[must_use]
    pub fn field_api_name(&self, label: &str) -> Option<String> {
        self.lock()
            .fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.api_name.clone())
    }

    /// Creates a contact as a salesperson would in Zoho's UI (no request recorded, no credits):
    /// `(field API name, value)` pairs, pairs with an empty value skipped. Neither `Last_Name`
    /// nor uniqueness is enforced, so a test can build any state. Returns the contact's id.
    ///
    /// # Panics
    ///
    /// When a name is not the API name of a writable contact field (a typo in the test).
    pub fn insert_contact(&self, fields: &[(&str, &str)]) -> String {
        let mut guard = self.lock();
        for (name, _) in fields {
            if guard.field(name).is_none_or(|f| f.read_only) {
                panic!("Zoho fake: insert_contact: {name:?} is not a writable contact field");
            }
        }
        let values: Map<String, Value> = fields
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
            .collect();
        let id = guard.insert_contact(values);
        id.to_string()
    }

    /// Makes every access token issued so far invalid: the next API call with one is answered
    /// `401 INVALID_TOKEN`, and the client must fetch a new one.
    pub fn expire_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// Every request received so far except the token endpoint's, in arrival order, including
    /// rejected ones.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock().requests.clone()
    }

    /// How many requests reached the token endpoint, refused ones included.
    #[must_use]
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Forgets the recorded requests (not the records, the violations, the token count or the
    /// credits used).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Violations found in requests, one line each: `METHOD path: <where>: <what>`. Each such
    /// request was answered `400` (or `404`, for an endpoint the fake does not implement).
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// API credits charged so far: one per authenticated `/crm/v8` call, whatever its answer
    /// (`401`s and the token endpoint are free).
    #[must_use]
    pub fn credits_used(&self) -> u64 {
        self.lock().credits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for ZohoFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZohoFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for ZohoFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may be gone already (its runtime ended); nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
