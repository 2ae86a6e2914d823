//! A stateful fake of the WhatsApp Cloud API's send endpoint, for the sender's tests.
//!
//! [`GraphFake::start`] runs an axum server on `127.0.0.1:<free port>`; give the sender
//! [`GraphFake::base_url`] as its Graph base URL. It answers
//! `POST /{version}/{phone_number_id}/messages` the way Meta does, for both bodies Meta accepts
//! there: a message send and a mark-as-read.
//!
//! Every request is handled in this order, each step able to answer on its own:
//!
//! 1. [`GraphConfig::latency`] is waited out;
//! 2. `Authorization: Bearer <token>` must carry [`GraphConfig::access_token`], else `401` with
//!    Graph's OAuth error, code `190` ("Invalid OAuth access token", as in the document's
//!    `Unauthorized` response) — for a missing token too, though that example gives code `104`
//!    for it: either way the sender must treat it as a token failure;
//! 3. the path must be `/{version}/{phone_number_id}/messages` with the configured
//!    [`GraphConfig::version`] and method `POST`, else `400` (a violation: the sender built a
//!    wrong URL);
//! 4. the body must be JSON and valid against [`crate::openapi::meta_send_validator`] (Meta's
//!    document with exactly the send defects of `shared/README.md` patched, mark-as-read
//!    included), plus the few reference-page rules the document does not express
//!    ([`REFERENCE_CHECKS`]); a violation is answered `400` with code `100` (Meta's "Invalid
//!    parameter") and recorded in [`GraphFake::violations`];
//! 5. a mark-as-read is answered `{"success": true}` and recorded in [`GraphFake::mark_read`];
//! 6. a send first plays the oldest error queued with [`GraphFake::fail_next`] for its phone
//!    number id (or for any), in Meta's error shape;
//! 7. otherwise the send is answered `200` with a fresh, unique `wamid` and recorded in
//!    [`GraphFake::sent`];
//! 8. [`GraphConfig::answer_delay`] is waited out before the answer goes (the request was
//!    already handled and recorded: a client that gives up meanwhile does not undo it).
//!
//! Every request is recorded ([`GraphFake::requests`]), rejected ones included, and every
//! authenticated send attempt counts in [`GraphFake::max_rate`] / [`GraphFake::max_pair_rate`],
//! whatever it was answered.
//!
//! # What the fake's answers are based on
//!
//! Checked against Meta's pages (titles as published):
//!
//! - Error shape — "WhatsApp Business Platform › Error codes" (Cloud API, built on the Graph API):
//!   `{"error": {"message", "type", "code", "error_data": {"messaging_product": "whatsapp",
//!   "details"}, "error_subcode", "fbtrace_id"}}`. `message` combines code and title, e.g.
//!   `"(#130429) Rate limit hit"`; `details` describes the cause; `error_subcode` is deprecated
//!   and not returned from v16.0 on (the fake omits it unless a [`GraphError::Code`] carries
//!   one); Meta recommends handling errors by `code` and `details`, not titles or HTTP status.
//!   The same page's sample uses `"type": "OAuthException"`, as do all the fake's errors.
//! - Send success — Meta's "Text Messages" page and the document's `MessageResponsePayload` and
//!   response examples: `{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}],
//!   "messages": [{"id": "wamid.…"}]}`; `messages[].message_status` (`accepted`, …) is optional
//!   in the document and the fake sends `"accepted"` for template messages only.
//! - Mark-as-read — Meta's "Mark messages as read" guide: `POST /<PHONE_NUMBER_ID>/messages`
//!   with `{"messaging_product": "whatsapp", "status": "read", "message_id": "<WAMID>"}`,
//!   answered `{"success": true}`; the document's example "Send typing indicator and read
//!   receipt" adds `"typing_indicator": {"type": "text"}`.
//! - Each error code's HTTP status and title: see [`KNOWN_ERRORS`], which names the source of
//!   each row.

mod checks;
mod errors;
mod server;
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

pub use checks::{ReferenceCheck, REFERENCE_CHECKS};
pub use errors::{GraphError, KnownError, KNOWN_ERRORS};

use state::State;

/// The Graph API version Meta's document describes, and the fake's default.
pub const GRAPH_API_VERSION: &str = "v23.0";

/// How a [`GraphFake`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphConfig {
    /// The access token every request must carry as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// The Graph API version of the path, e.g. `"v23.0"`: `/{version}/{phone_number_id}/messages`.
    pub version: String,
    /// Time waited before each request is handled.
    pub latency: Duration,
    /// Time waited after a request was handled (a message accepted and recorded in
    /// [`GraphFake::sent`]) before it is answered: Meta sent the message, but its answer is
    /// slow — longer than the client's timeout, it is an outcome the client cannot know.
    pub answer_delay: Duration,
}

impl Default for GraphConfig {
    /// Token `"graph-fake-token"`, version [`GRAPH_API_VERSION`], no latency, no answer delay.
    fn default() -> Self {
        Self {
            access_token: "graph-fake-token".to_owned(),
            version: GRAPH_API_VERSION.to_owned(),
            latency: Duration::ZERO,
            answer_delay: Duration::ZERO,
        }
    }
}

/// A message the fake accepted (answered `200`).
#[derive(Debug, Clone, PartialEq)]
pub struct SentMessage {
    /// The business phone number id of the path.
    pub phone_number_id: String,
    /// The body's `to`, as sent.
    pub to: String,
    /// The whole request body.
    pub body: Value,
    /// The message id the fake answered (`messages[0].id`), unique per fake.
    pub wamid: String,
    /// When the request arrived.
    pub at: Instant,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphRequest {
    /// The HTTP method, upper case.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The status the fake answered (for a [`GraphError::Timeout`], the status it answers once
    /// the hold is over, whether or not the client still listens).
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
    /// The body as JSON; `Null` when empty, a JSON string when it was not JSON.
    pub body: Value,
}

/// A running fake of the Cloud API's send endpoint; the server stops when this is dropped.
pub struct GraphFake {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl GraphFake {
    /// Starts the fake on `127.0.0.1` with a free port.
    ///
    /// Meta's document is loaded from [`crate::openapi::specs_dir`] and patched with
    /// [`crate::openapi::patch_meta_send`] (once per process). Where the specs are absent (a
    /// user's own clone) the fake runs without schema validation, applying only
    /// [`REFERENCE_CHECKS`], and says so on stderr; in CI `specs_dir` fails instead.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, when a present document cannot be loaded or patched,
    /// and as [`crate::openapi::specs_dir`] does.
    pub async fn start(config: GraphConfig) -> GraphFake {
        let spec = checks::shared_spec();
        if spec.is_none() {
            eprintln!(
                "Graph fake: Meta's OpenAPI document was not found; running WITHOUT schema \
                 validation (reference checks only)"
            );
        }
        let state = Arc::new(Mutex::new(State::new(config, spec)));
        let (addr, shutdown) =
            crate::loopback::serve("Graph fake", server::router(Arc::clone(&state))).await;
        GraphFake {
            addr,
            state,
            shutdown: Some(shutdown),
        }
    }

    /// `http://127.0.0.1:PORT`, the Graph base URL to give the sender (it appends
    /// `/{version}/{phone_number_id}/messages`).
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The configuration the fake runs with.
    #[must_use]
    pub fn config(&self) -> GraphConfig {
        self.lock().config.clone()
    }

    /// The messages accepted so far (answered `200`), in arrival order.
    #[must_use]
    pub fn sent(&self) -> Vec<SentMessage> {
        self.lock().sent.clone()
    }

    /// The accepted mark-as-read requests, `(phone_number_id, message_id)`, in arrival order.
    #[must_use]
    pub fn mark_read(&self) -> Vec<(String, String)> {
        self.lock().mark_read.clone()
    }

    /// Every request received so far, in arrival order, rejected ones included.
    #[must_use]
    pub fn requests(&self) -> Vec<GraphRequest> {
        let mut requests = self.lock().requests.clone();
        requests.sort_by_key(|r| r.at);
        requests
    }

    /// Violations found in requests, one line each: `METHOD path: <instance path>: <keyword>:
    /// <message>`. Each such request was answered `400`. Schema violations are those of
    /// [`crate::openapi::meta_send_validator`]; the others name their rule (a wrong path or
    /// version, a body that is not JSON, a [`REFERENCE_CHECKS`] rule).
    #[must_use]
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Queues an error: the next valid send for `number` (a phone number id; `None`: for any)
    /// is answered with it instead of `200`, and is not recorded in [`GraphFake::sent`]. Queued
    /// errors play in the order queued, one per send; mark-as-read requests and requests that
    /// fail validation do not consume them.
    pub fn fail_next(&self, number: Option<&str>, error: GraphError) {
        self.lock()
            .queued
            .push_back((number.map(str::to_owned), error));
    }

    /// How many queued errors have not been played yet.
    #[must_use]
    pub fn queued_errors(&self) -> usize {
        self.lock().queued.len()
    }

    /// The most send attempts for `phone_number_id` that arrived within any `window` (a
    /// half-open interval `[t, t + window)`), for throttling tests. Every authenticated `POST`
    /// of a send body to that number's `/messages` counts, whatever it was answered
    /// (mark-as-read does not). `0` for a zero window.
    #[must_use]
    pub fn max_rate(&self, phone_number_id: &str, window: Duration) -> usize {
        self.lock().max_rate(phone_number_id, None, window)
    }

    /// As [`GraphFake::max_rate`], counting only sends to `to` (compared by digits, so
    /// `"+55 11 98765-4321"` and `"5511987654321"` are the same recipient), for Meta's pair rate
    /// limit (error `131056`).
    #[must_use]
    pub fn max_pair_rate(&self, phone_number_id: &str, to: &str, window: Duration) -> usize {
        self.lock().max_rate(phone_number_id, Some(to), window)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for GraphFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphFake")
            .field("base_url", &self.base_url())
            .finish_non_exhaustive()
    }
}

impl Drop for GraphFake {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server may be gone already (its runtime ended); nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
