//! An in-memory CRM adapter.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactProtocol, ContactSync, CrmAdapter, CrmError, Erasure,
    ItemResult, MessageSync, StatusSync,
};

/// What the in-memory CRM holds, and the faults it plays.
#[derive(Default)]
pub struct MemoryState {
    /// WhatsApp id → CRM id.
    pub contacts: BTreeMap<String, String>,
    /// CRM id → (wamid, contact, body, status).
    pub messages: BTreeMap<String, (String, String, String, Option<String>)>,
    /// Calls made.
    pub calls: usize,
    /// Fail the next log_messages *after* writing (a crash between the CRM write and the ledger).
    pub crash_after_write: usize,
    /// The next log_messages writes every input but answers only the first half of them (the
    /// rest `Ambiguous`, as an adapter does for inputs missing from a batch answer).
    pub answer_half: bool,
    /// Bodies containing this are refused as invalid.
    pub refuse: Option<String>,
    /// The next call answers that the daily quota is used up until this time.
    pub quota_until: Option<chrono::DateTime<chrono::Utc>>,
    /// Behave as a CRM without an upsert ([`ContactProtocol::FindThenCreate`]): every create
    /// makes a new contact, duplicates included.
    pub without_upsert: bool,
    /// Every contact created, in order, as (WhatsApp id, CRM id): a duplicate shows twice.
    pub created: Vec<(String, String)>,
    /// The next N contact creates are applied and then answered `Ambiguous` (the answer lost).
    pub lose_create_answers: usize,
    /// Time every call takes before it does anything (a slow or rate-limited CRM).
    pub call_delay: std::time::Duration,
    /// Every erasure asked for, in order.
    pub erasures: Vec<ContactErasure>,
    /// The next N erasures fail as [`CrmError::Transient`] before doing anything.
    pub fail_erasures: usize,
    /// The next N erasures are applied and then answered `Ambiguous` (the answer lost).
    pub lose_erasure_answers: usize,
    /// Erasures answer this [`Erasure::Manual`] text instead of deleting (a CRM that cannot
    /// erase through its API).
    pub manual_erasure: Option<String>,
}

/// An in-memory CRM with upsert on the WhatsApp id: for engine tests and integrators' unit
/// tests (no HTTP; the conformance suite drives HTTP adapters through their fakes).
#[derive(Clone, Default)]
pub struct MemoryCrm(pub Arc<Mutex<MemoryState>>);

#[async_trait]
impl CrmAdapter for MemoryCrm {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: 100,
            messages_per_batch: 100,
            statuses_per_batch: 100,
        }
    }
    fn contact_protocol(&self) -> ContactProtocol {
        if self.state().without_upsert {
            ContactProtocol::FindThenCreate
        } else {
            ContactProtocol::Upsert
        }
    }

    async fn find_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<Option<String>>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        Ok(contacts
            .iter()
            .map(|c| crm.contacts.get(&c.whatsapp_id).cloned())
            .collect())
    }

    async fn create_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        let mut out = Vec::new();
        for c in contacts {
            let id = format!("c{}", crm.created.len() + 1);
            crm.created.push((c.whatsapp_id.clone(), id.clone()));
            crm.contacts.insert(c.whatsapp_id.clone(), id.clone());
            out.push(Ok(id));
        }
        if crm.lose_create_answers > 0 {
            crm.lose_create_answers -= 1;
            return Err(CrmError::Ambiguous("answer lost after the create".into()));
        }
        Ok(out)
    }

    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        if let Some(until) = crm.quota_until.take() {
            return Err(CrmError::QuotaExhausted { until });
        }
        Ok(contacts
            .iter()
            .map(|c| {
                let next = format!("c{}", crm.contacts.len() + 1);
                Ok(crm
                    .contacts
                    .entry(c.whatsapp_id.clone())
                    .or_insert(next)
                    .clone())
            })
            .collect())
    }
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        if let Some(bad) = crm.refuse.clone() {
            if messages.iter().any(|m| m.body.contains(&bad)) {
                return Err(CrmError::Invalid(format!("body contains {bad}")));
            }
        }
        let mut out = Vec::new();
        for m in messages {
            let id = format!("m{}", crm.messages.len() + 1);
            crm.messages.insert(
                id.clone(),
                (
                    m.wamid.clone(),
                    m.crm_contact_id.clone(),
                    m.body.clone(),
                    m.status.map(|s| s.as_str().to_owned()),
                ),
            );
            out.push(Ok(id));
        }
        if std::mem::take(&mut crm.answer_half) {
            let half = out.len() / 2;
            for r in &mut out[half..] {
                *r = Err(CrmError::Ambiguous("not in the answer".into()));
            }
        }
        if crm.crash_after_write > 0 {
            crm.crash_after_write -= 1;
            return Err(CrmError::Ambiguous(
                "connection reset after the write".into(),
            ));
        }
        Ok(out)
    }
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        for s in statuses {
            if let Some(m) = crm.messages.get_mut(&s.crm_id) {
                m.3 = Some(s.state.as_str().to_owned());
            }
        }
        Ok(statuses.iter().map(|_| Ok(())).collect())
    }
    /// Deletes the contact (by its CRM id, else its WhatsApp id) and every message logged on
    /// it or named in `message_crm_ids`; `NotFound` when there was nothing to delete.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        crm.erasures.push(contact.clone());
        if crm.fail_erasures > 0 {
            crm.fail_erasures -= 1;
            return Err(CrmError::Transient("CRM unavailable".into()));
        }
        if let Some(steps) = crm.manual_erasure.clone() {
            return Ok(Erasure::Manual(steps));
        }
        let crm_id = contact
            .crm_contact_id
            .clone()
            .or_else(|| crm.contacts.get(&contact.whatsapp_id).cloned());
        let before = (crm.contacts.len(), crm.messages.len());
        crm.contacts.retain(|whatsapp_id, id| {
            whatsapp_id != &contact.whatsapp_id && Some(&*id) != crm_id.as_ref()
        });
        crm.messages
            .retain(|id, m| !contact.message_crm_ids.contains(id) && Some(&m.1) != crm_id.as_ref());
        let erased = before != (crm.contacts.len(), crm.messages.len());
        if crm.lose_erasure_answers > 0 {
            crm.lose_erasure_answers -= 1;
            return Err(CrmError::Ambiguous(
                "connection reset after the delete".into(),
            ));
        }
        Ok(if erased {
            Erasure::Erased
        } else {
            Erasure::NotFound
        })
    }

    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        self.pace().await;
        let mut crm = self.state();
        crm.calls += 1;
        Ok(crm
            .messages
            .iter()
            .filter(|(_, m)| wamids.contains(&m.0))
            .map(|(id, m)| (m.0.clone(), id.clone()))
            .collect())
    }
}

impl MemoryCrm {
    /// Waits the configured [`MemoryState::call_delay`].
    async fn pace(&self) {
        let delay = self.state().call_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        match self.0.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
