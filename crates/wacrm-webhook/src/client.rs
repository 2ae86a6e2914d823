//! [`WebhookSink`]: the engine's calls as signed POSTs of event batches.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::Value;
use wacrm_crm::http::{default_classifier, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactSync, CrmAdapter, CrmError, Erasure, ItemResult,
    MessageSync, StatusSync,
};

use crate::config::WebhookConfig;
use crate::mapping::{self, SIGNATURE_HEADER};

/// The webhook sink of one connection.
pub struct WebhookSink {
    http: CrmHttp,
    config: WebhookConfig,
}

impl WebhookSink {
    /// A sink for a connection; settings that cannot work are [`CrmError::Fatal`].
    pub fn new(config: WebhookConfig) -> Result<Self, CrmError> {
        if let Some(problem) = config.problem() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{}]: {problem}",
                config.sync.name
            )));
        }
        let mut http = CrmHttp::new(
            &config.sync.name,
            HttpSettings {
                base_url: config.url.clone(),
                // The signature authenticates each request; the URL is all the receiver needs.
                auth: Auth::None,
                limit: Window::new(config.requests_per_s, Duration::from_secs(1)),
                search_limit: None,
                timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
            },
            Arc::new(default_classifier),
        )?;
        http.max_attempts = config.attempts;
        http.min_backoff = Duration::from_millis(config.retry_backoff_ms);
        http.max_backoff = Duration::from_millis(config.max_retry_backoff_ms.max(1));
        Ok(WebhookSink { http, config })
    }

    /// POSTs one signed batch. Every event carries its id, so a request whose answer was lost
    /// is safe to send again ([`Retry::Safe`]): the receiver drops repeats.
    async fn post(&self, events: Vec<Value>) -> Result<(), CrmError> {
        let body = mapping::batch(&self.config.sync.name, events);
        let secret = self.config.secret.as_bytes();
        // Signed at each attempt: a retry carries a fresh timestamp.
        let sign = |body: &[u8]| {
            vec![(
                SIGNATURE_HEADER,
                mapping::signature(secret, chrono::Utc::now().timestamp(), body),
            )]
        };
        self.http
            .send_raw(
                Method::POST,
                "",
                Some(&body),
                &sign,
                Budget::General,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// Delivers `events`, one result per event: `Ok(id)` when the receiver took the batch; a
    /// batch that still failed (5xx, timeouts, refused connections) after every attempt is
    /// dead-lettered event by event (re-driven later with `wacrm dead-letters retry`). A 429
    /// is the receiver asking to slow down, not failing: the engine retries the batch with
    /// backoff and never dead-letters it for that. A refused credential (401/403) stops the
    /// connection.
    async fn deliver<T: Clone>(
        &self,
        events: Vec<Value>,
        ids: Vec<T>,
    ) -> Result<Vec<ItemResult<T>>, CrmError> {
        match self.post(events).await {
            Ok(()) => Ok(ids.into_iter().map(Ok).collect()),
            Err(
                e @ (CrmError::Fatal(_)
                | CrmError::Invalid(_)
                | CrmError::RateLimited { .. }
                | CrmError::QuotaExhausted { .. }),
            ) => Err(e),
            Err(e) => {
                let reason = format!(
                    "webhook receiver did not take the batch in {} attempts: {e}",
                    self.config.attempts
                );
                Ok(ids
                    .iter()
                    .map(|_| Err(CrmError::Invalid(reason.clone())))
                    .collect())
            }
        }
    }
}

#[async_trait]
impl CrmAdapter for WebhookSink {
    fn limits(&self) -> AdapterLimits {
        let n = self.config.events_per_request;
        AdapterLimits {
            contacts_per_batch: n,
            messages_per_batch: n,
            statuses_per_batch: n,
        }
    }

    /// Sends a signed empty batch: the receiver is reachable and takes the signature.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        self.post(Vec::new()).await?;
        Ok(vec!["the receiver took a signed empty batch".into()])
    }

    /// A sink's contact is its WhatsApp id; the receiver gets a `contact` event the first time.
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let events = contacts.iter().map(mapping::contact_event).collect();
        let ids = contacts.iter().map(|c| c.whatsapp_id.clone()).collect();
        self.deliver(events, ids).await
    }

    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let events = messages.iter().map(mapping::message_event).collect();
        let ids = messages.iter().map(|m| m.wamid.clone()).collect();
        self.deliver(events, ids).await
    }

    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let events = statuses.iter().map(mapping::status_event).collect();
        self.deliver(events, vec![(); statuses.len()]).await
    }

    /// A signed batch of one `contact.erased` event (the contact, its messages by wamid): the
    /// receiver deletes what it holds of them (docs/adapters/webhook.md). `Erased` once the
    /// receiver took the delivery; a delivery that still fails after every attempt is an error,
    /// never dead-lettered, so the erasure is tried again. Sent again after a lost answer like
    /// every delivery: applying an erasure twice is harmless.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        self.post(vec![mapping::erased_event(contact)]).await?;
        Ok(Erasure::Erased)
    }

    /// A sink cannot be asked what it holds: after a crash the engine sends the message again
    /// and the receiver drops the repeat by its id (at least once, by design).
    async fn find_messages(&self, _wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        Ok(Vec::new())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "webhook"` in the registry.
    WebhookKind,
    "webhook",
    WebhookConfig,
    WebhookSink::new
);
