//! A stateful fake of RD Station CRM's API v2, for adapter and end-to-end tests.
//!
//! RD Station publishes no machine-readable spec (CRMS.md §3), so every rule here names the
//! page it comes from: the v2 introduction (<https://developers.rdstation.com/reference/crm-v2-introduction>:
//! the `data` envelope, `{"errors": [...]}`, statuses, paging, 120 requests a minute with `429`
//! and `Retry-After`), the RDQL page (`crm-v2-rdql-filtering`), the authentication pages
//! (`crm-v2-authentication-step3`/`-step4`: `POST /oauth2/token`, 7,200 s access tokens, a
//! refresh token that rotates on every use), and the request bodies of RD Station's own n8n
//! node (`ResultadosDigitais/n8n-nodes-rd`, `nodes/RdStationCrm/…`). Where they are silent the
//! fake's choice is marked so in a comment.
//!
//! [`RdStationFake::start`] runs on `127.0.0.1:<free port>`; its base URL plays both
//! `https://api.rd.services` (token endpoint `POST /oauth2/token`) and the API under
//! `/crm/v2`:
//!
//! | Operation | Path | Source |
//! |---|---|---|
//! | refresh a token | `POST /oauth2/token` | crm-v2-authentication-step4 |
//! | users | `GET /crm/v2/users` | node credential test, `MetadataResource.ts` |
//! | custom fields | `GET /crm/v2/custom_fields` | `MetadataResource.ts` |
//! | pipelines | `GET /crm/v2/pipelines` | `DealsResource.ts` |
//! | list / create contacts | `GET`, `POST /crm/v2/contacts` | `ContactsResource.ts` |
//! | one / update a contact | `GET`, `PUT /crm/v2/contacts/{id}` | `ContactsResource.ts` |
//! | list / create deals | `GET`, `POST /crm/v2/deals` | `DealsResource.ts` |
//! | list / create tasks | `GET`, `POST /crm/v2/tasks` | `TasksResource.ts` |
//! | one / update a task | `GET`, `PUT /crm/v2/tasks/{id}` | `TasksResource.ts` |
//!
//! Every API request is checked in order: the path under `/crm/v2`; `Authorization: Bearer`
//! with an access token the fake issued (else `401`); the rate limit ([`FakeConfig::
//! requests_per_minute`] in any rolling minute, else `429` + `Retry-After`, counted in
//! [`RdStationFake::rate_violations`]); the route (else `404` and a violation); the body and
//! query against the documented shapes (else `400` and a violation); then the operation.
//! Lists filter with RDQL as stored text — no phone normalisation is documented, so none is
//! done: a phone is found only by the spelling it was typed in.

mod rdql;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

pub use crate::loopback::FakeRequest;

use state::{Kind, State};

/// The token endpoint's path (crm-v2-authentication-step3: `https://api.rd.services/oauth2/token`).
pub const TOKEN_PATH: &str = "/oauth2/token";

/// How an [`RdStationFake`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeConfig {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
    /// The refresh token the authorisation gave (the first in its chain).
    pub refresh_token: String,
    /// Requests admitted in any rolling minute (120 on Basic, Pro and Advanced).
    pub requests_per_minute: u32,
    /// The account's users `(name, email)`.
    pub users: Vec<(String, String)>,
    /// Contact custom fields `(label, slug)` an admin created.
    pub contact_fields: Vec<(String, String)>,
}

impl Default for FakeConfig {
    /// One user, the `whatsapp_id` contact field, 120 requests a minute.
    fn default() -> Self {
        FakeConfig {
            client_id: "rd-client-id".into(),
            client_secret: "rd-client-secret".into(),
            refresh_token: "rd-refresh-0".into(),
            requests_per_minute: 120,
            users: vec![(
                "Atendimento WhatsApp".into(),
                "atendimento@example.com".into(),
            )],
            contact_fields: vec![("WhatsApp ID".into(), "whatsapp_id".into())],
        }
    }
}

/// A running RD Station fake; the server stops when this is dropped.
pub struct RdStationFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _stop: oneshot::Sender<()>,
}

impl RdStationFake {
    /// Starts the fake on a free loopback port.
    pub async fn start(config: FakeConfig) -> RdStationFake {
        let state = Arc::new(Mutex::new(State::new(config)));
        let (addr, stop) =
            crate::loopback::serve("RD Station fake", server::router(Arc::clone(&state))).await;
        RdStationFake {
            addr,
            state,
            _stop: stop,
        }
    }

    /// `http://127.0.0.1:PORT` (the host; the API is under `/crm/v2`).
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint's URL.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base_url())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> FakeConfig {
        self.lock().config.clone()
    }

    /// Every contact, as the API shows it.
    #[must_use]
    pub fn contacts(&self) -> Vec<Value> {
        self.lock().list(Kind::Contact).to_vec()
    }

    /// Every deal.
    #[must_use]
    pub fn deals(&self) -> Vec<Value> {
        self.lock().list(Kind::Deal).to_vec()
    }

    /// Every task.
    #[must_use]
    pub fn tasks(&self) -> Vec<Value> {
        self.lock().list(Kind::Task).to_vec()
    }

    /// Whether any contact, deal or task (as the API shows it) holds `text`: after an erasure,
    /// no body may be left.
    #[must_use]
    pub fn holds(&self, text: &str) -> bool {
        let state = self.lock();
        [Kind::Contact, Kind::Deal, Kind::Task]
            .iter()
            .any(|k| state.list(*k).iter().any(|r| r.to_string().contains(text)))
    }

    /// The users' ids, in order.
    #[must_use]
    pub fn user_ids(&self) -> Vec<String> {
        self.lock()
            .users
            .iter()
            .filter_map(|u| u["id"].as_str().map(str::to_owned))
            .collect()
    }

    /// The id of the pipeline named `name` ("Funil de vendas", the default, or "WhatsApp").
    #[must_use]
    pub fn pipeline_id(&self, name: &str) -> String {
        self.lock()
            .pipelines
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["id"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// A contact made by hand (no request, no rate limit), with `phone` typed as given
    /// (`type: "work"`); its id.
    pub fn insert_contact(&self, name: &str, phone: &str) -> String {
        self.lock().insert_contact(name, phone)
    }

    /// A deal made by hand on `contact` (no request, no rate limit), owned by the first user,
    /// with `status` (`ongoing`, `won`, `lost`, `paused`); its id.
    pub fn insert_deal(&self, name: &str, contact: &str, status: &str) -> String {
        self.lock().insert_deal(name, contact, status)
    }

    /// An admin creates a contact custom field in RD Station's settings.
    pub fn add_contact_field(&self, label: &str, slug: &str) {
        self.lock().add_custom_field(label, slug);
    }

    /// The refresh token the fake accepts now (the last one it issued).
    #[must_use]
    pub fn current_refresh_token(&self) -> String {
        self.lock().refresh_token.clone()
    }

    /// Refresh tokens used once and no longer accepted.
    #[must_use]
    pub fn retired_refresh_tokens(&self) -> Vec<String> {
        self.lock().retired_refresh_tokens.clone()
    }

    /// Calls to the token endpoint (not in [`RdStationFake::requests`]).
    #[must_use]
    pub fn token_requests(&self) -> usize {
        self.lock().token_requests
    }

    /// Every access token issued stops working (as after 7,200 s).
    pub fn expire_access_tokens(&self) {
        self.lock().access_tokens.clear();
    }

    /// Every API request so far, rejected ones included.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.request.clone())
            .collect()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Requests that broke the documented contract, one line each.
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Requests that arrived while the minute's budget was spent (answered `429`).
    #[must_use]
    pub fn rate_violations(&self) -> usize {
        self.lock().rate_violations
    }

    /// The most requests (except `401`s) that arrived within any `window`.
    #[must_use]
    pub fn max_requests_in_any_window(&self, window: Duration) -> usize {
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
}

impl std::fmt::Debug for RdStationFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdStationFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}
