//! The adapter interface an integrator implements for their CRM.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use wacrm_core::{DeliveryState, Direction, ErrorClass, E164};

use crate::http::Classifier;

/// What a CRM allows, declared by its adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdapterLimits {
    /// Most contacts per `upsert_contacts` call.
    pub contacts_per_batch: usize,
    /// Most messages per `log_messages` call.
    pub messages_per_batch: usize,
    /// Most status updates per `update_statuses` call.
    pub statuses_per_batch: usize,
}

/// A contact to find or create in the CRM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSync {
    /// wacrm's key of the contact (`phone:+55…`, `bsuid:…`); the link table is keyed by it.
    pub contact_key: String,
    /// The WhatsApp id, the value of the CRM's unique WhatsApp property.
    pub whatsapp_id: String,
    /// The phone, when the data policy allows sending it.
    pub phone: Option<E164>,
    /// The WhatsApp profile name, when the policy allows: use it only when creating.
    pub profile_name: Option<String>,
    /// The business number the contact wrote to (for owner assignment).
    pub phone_number_id: String,
}

/// A message to log on a contact's timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageSync {
    /// The wamid (the adapter should store it in the CRM so [`CrmAdapter::find_messages`] works).
    pub wamid: String,
    /// The CRM contact.
    pub crm_contact_id: String,
    /// In or out.
    pub direction: Direction,
    /// WhatsApp's time.
    pub timestamp: DateTime<Utc>,
    /// The text to show, after data minimisation (direction and sender included).
    pub body: String,
    /// The content kind (`text`, `image`, …).
    pub kind: String,
    /// The business number.
    pub phone_number_id: String,
    /// The current delivery status, for outbound messages.
    pub status: Option<DeliveryState>,
}

/// A status change of a logged message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSync {
    /// The CRM object of the message.
    pub crm_id: String,
    /// The wamid.
    pub wamid: String,
    /// The new state.
    pub state: DeliveryState,
    /// Why it failed, for `failed`.
    pub failure: Option<String>,
}

/// What a CRM did with an erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Erasure {
    /// The CRM deleted the contact and what hangs on it (or will, irreversibly).
    Erased,
    /// The CRM had no such contact (already deleted, by a person or an earlier attempt).
    NotFound,
    /// This CRM cannot erase through its API (or the adapter does not): what a person must do,
    /// in words for the status page (e.g. "delete person 123 in Kommo: Contacts › … › Delete").
    Manual(String),
}

/// A contact to erase: what wacrm's link table knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactErasure {
    /// wacrm's contact key (`phone:+55…`, `bsuid:…`).
    pub contact_key: String,
    /// The CRM contact id from the link table, when linked.
    pub crm_contact_id: Option<String>,
    /// The WhatsApp id (for CRMs that can find the contact by it when no link is known).
    pub whatsapp_id: String,
    /// The CRM objects of the contact's messages (the ledger), for CRMs where deleting the
    /// contact leaves them behind.
    pub message_crm_ids: Vec<String>,
}

/// Why a CRM call failed, classified by what the engine should do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CrmError {
    /// Rate limited; wait (as long as the CRM said, when it said) and try again.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited {
        /// The CRM's `Retry-After` or equivalent.
        retry_after: Option<Duration>,
    },
    /// A daily (or other long) quota is used up: park the connection until it resets.
    #[error("quota exhausted until {until}")]
    QuotaExhausted {
        /// When it resets.
        until: DateTime<Utc>,
    },
    /// Timeouts, connection failures, 5xx: retry with backoff.
    #[error("transient CRM failure: {0}")]
    Transient(String),
    /// A create may or may not have been applied: it was sent, and then the answer was a
    /// server error, a timeout or broke off. Never sent again blindly: the engine retries the
    /// batch later and its ledger reconciles (finds what the CRM holds) before creating.
    #[error("CRM outcome unknown (may have been applied): {0}")]
    Ambiguous(String),
    /// The CRM refused the input as invalid (4xx validation): dead-letter it.
    #[error("CRM rejected the input: {0}")]
    Invalid(String),
    /// Credentials or configuration are wrong: stop the connection.
    #[error("CRM connection unusable: {0}")]
    Fatal(String),
}

impl CrmError {
    /// The engine's action.
    pub fn class(&self) -> ErrorClass {
        match self {
            CrmError::RateLimited { .. }
            | CrmError::QuotaExhausted { .. }
            | CrmError::Transient(_)
            | CrmError::Ambiguous(_) => ErrorClass::Retry,
            CrmError::Invalid(_) => ErrorClass::DeadLetter,
            CrmError::Fatal(_) => ErrorClass::Fatal,
        }
    }
}

/// How a CRM keeps one contact per WhatsApp user, declared by its adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContactProtocol {
    /// The CRM upserts on a unique field (HubSpot's `whatsapp_id` property):
    /// [`CrmAdapter::upsert_contacts`] is idempotent, and the engine calls it again after any
    /// failure.
    #[default]
    Upsert,
    /// The CRM has no upsert on a unique field (Pipedrive, RD Station CRM, Kommo). The engine
    /// asks [`CrmAdapter::find_contacts`] first (the WhatsApp-id field, then every phone
    /// spelling); for the contacts not found it writes its intent (`pending`) in the ledger,
    /// then calls [`CrmAdapter::create_contacts`]. A create whose outcome is unknown is never
    /// sent again blindly: the next attempt finds again (after `reconcile_after_ms`, as CRM
    /// search indexes lag) and creates only what is still missing, so a crash never makes a
    /// second person.
    FindThenCreate,
}

/// Per input of a batch call: the CRM id, or why this one input was refused (the rest of the
/// batch went through).
pub type ItemResult<T> = Result<T, CrmError>;

/// A CRM, as the sync engine drives it. Every method handles one batch (at most the declared
/// batch size) and returns one result per input, in order. A whole-call `Err` means nothing can
/// be assumed written. Adapters send requests through [`crate::http::CrmHttp`], which enforces
/// the connection's rate limits.
#[async_trait]
pub trait CrmAdapter: Send + Sync {
    /// Batch sizes.
    fn limits(&self) -> AdapterLimits;

    /// How the CRM keeps one contact per WhatsApp user (the default: it upserts).
    fn contact_protocol(&self) -> ContactProtocol {
        ContactProtocol::Upsert
    }

    /// [`ContactProtocol::Upsert`]: finds or creates contacts; returns each one's CRM id.
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError>;

    /// [`ContactProtocol::FindThenCreate`]: the CRM contact of each input, if the CRM has one —
    /// by the WhatsApp-id field, then (for contacts people created by hand) by every spelling
    /// of the phone. One answer per input, in order. Must see what `create_contacts` wrote,
    /// a crash ago included.
    async fn find_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<Option<String>>, CrmError> {
        let _ = contacts;
        Err(CrmError::Fatal(
            "the adapter declares FindThenCreate but does not find contacts".into(),
        ))
    }

    /// [`ContactProtocol::FindThenCreate`]: creates contacts the engine did not find, with the
    /// WhatsApp id in the CRM's WhatsApp-id field; returns each one's CRM id. Sent through
    /// `CrmHttp` as a create ([`crate::http::Retry::Once`]): an answer lost after the request
    /// left is [`CrmError::Ambiguous`].
    async fn create_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let _ = contacts;
        Err(CrmError::Fatal(
            "the adapter declares FindThenCreate but does not create contacts".into(),
        ))
    }

    /// Logs messages on their contacts' timelines; returns each one's CRM object id.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError>;

    /// Updates logged messages with delivery statuses.
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError>;

    /// The CRM objects already holding these wamids (after a crash left them `pending`).
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError>;

    /// Creates, if missing, what the CRM needs before wacrm writes to it (custom fields,
    /// properties); returns what it created. Run by `wacrm crm setup --connection NAME`, which
    /// audits it first. The default needs nothing.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        Ok(Vec::new())
    }

    /// Checks, without changing anything, that the connection can work: the credential is
    /// accepted and what `setup` creates is there. Returns what was checked; an error says what
    /// is wrong. Run by `wacrm doctor` for every connection. The default checks nothing.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        Ok(Vec::new())
    }

    /// Writes new WhatsApp ids `(CRM contact id, WhatsApp id)` onto linked contacts, after a
    /// contact changed their number. Best effort: the engine's link table already routes the
    /// new number to the contact, and an error other than [`CrmError::Fatal`] is only logged.
    /// The default does nothing (a CRM without a WhatsApp id field needs nothing).
    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        let _ = updates;
        Ok(())
    }

    /// Erases a contact and what wacrm wrote about them (LGPD/GDPR erasure). Idempotent: called
    /// again after a crash or an ambiguous answer, an erased contact answers `NotFound` or
    /// `Erased`. The default: `Manual("…this adapter cannot erase…")`.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        // CRM ids only: the WhatsApp id is a phone number, and this text is shown on a status
        // page.
        let what = match &contact.crm_contact_id {
            Some(id) => format!("the CRM contact {id}"),
            None => "the contact's record (wacrm knows no link to it)".to_owned(),
        };
        Ok(Erasure::Manual(format!(
            "this adapter cannot erase through the CRM's API: delete {what} and the messages \
             logged on it in the CRM by hand"
        )))
    }
}

tokio::task_local! {
    /// The status and body of the last error answer a request got, while it runs inside
    /// [`with_error_answer`].
    static ERROR_ANSWER: RefCell<Option<(u16, Value)>>;
}

/// Wraps an adapter's classifier so that [`with_error_answer`] (and [`unless_gone`]) can see the
/// status and body of the error answer a request ended with: a delete must tell "it is not
/// there" (a 404 after an earlier attempt whose answer was lost) from a refusal, which the
/// error classes alone do not. The classification itself is unchanged, and outside
/// [`with_error_answer`] the wrapper only classifies.
pub fn noting_error_answers(classify: Classifier) -> Classifier {
    Arc::new(move |status, headers, body| {
        // Outside a `with_error_answer` scope there is nowhere to note it: nothing to do.
        let _ = ERROR_ANSWER.try_with(|answer| {
            *answer.borrow_mut() = Some((status, body.clone()));
        });
        classify(status, headers, body)
    })
}

/// Runs `request` (a call of a [`crate::http::CrmHttp`] whose classifier went through
/// [`noting_error_answers`]) and returns its result with the status and JSON body of the last
/// error answer it got, if any (`None` also when the classifier was not wrapped). The answer
/// stays in memory: it may echo personal data, so it is for deciding, not for logging.
pub async fn with_error_answer<T, F>(request: F) -> (Result<T, CrmError>, Option<(u16, Value)>)
where
    F: Future<Output = Result<T, CrmError>>,
{
    ERROR_ANSWER
        .scope(RefCell::new(None), async move {
            let result = request.await;
            let answer = ERROR_ANSWER.with(|answer| answer.borrow_mut().take());
            (result, answer)
        })
        .await
}

/// Runs one request of an erasure: its answer, or `None` when the CRM answered 404 or 410 (the
/// record is not there: a person deleted it, or an earlier attempt did and its answer was lost).
/// A delete may be sent as [`crate::http::Retry::Safe`]: a repeat after a lost answer lands
/// here as `None`. Needs the classifier wrapped by [`noting_error_answers`].
pub async fn unless_gone<T, F>(request: F) -> Result<Option<T>, CrmError>
where
    F: Future<Output = Result<T, CrmError>>,
{
    match with_error_answer(request).await {
        (Ok(answer), _) => Ok(Some(answer)),
        (Err(_), Some((404 | 410, _))) => Ok(None),
        (Err(e), _) => Err(e),
    }
}
