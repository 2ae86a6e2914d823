//! The sync engine: one consumer group per CRM connection.
//!
//! A batch (up to the connection's `max_batch`, gathered for up to `linger_ms`) is synced in
//! three steps, each in CRM-sized calls: contacts first (from the link table, else found or
//! created by the adapter, then linked), then messages (skipping what the ledger says is
//! synced, reconciling what it says may be), then statuses (merged per message, written only
//! when they move forward). The runner commits the batch's offsets only after all of it was
//! accepted by the CRM — or dead-lettered, for inputs the CRM refused as invalid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use wacrm_bus::cloudevents::decode_event;
use wacrm_bus::runner::{Handled, Handler, HandlerError, RunnerConfig};
use wacrm_bus::{Record, Topics};
use wacrm_core::event::EventPayload;
use wacrm_core::message::MessageContent;
use wacrm_core::redact::scrub;
use wacrm_core::{ContactIdentity, DeliveryState, Message, MessageStatus, StatusUpdate};
use wacrm_store::{sync as ledger, Db, StoreError};

use crate::adapter::{
    ContactProtocol, ContactSync, CrmAdapter, CrmError, ItemResult, MessageSync, StatusSync,
};
use crate::config::{ConnectionConfig, Minimisation};
use crate::minimise::{timeline_body, without_own_number};

/// CRM batch calls of one engine batch in flight at once (the rate limiter still decides when
/// each may go).
const CONCURRENT_CALLS: usize = 4;

/// The sync engine of one connection.
pub struct SyncEngine {
    config: ConnectionConfig,
    adapter: Arc<dyn CrmAdapter>,
    db: Db,
    /// The connection's pseudonym secret, read (or created) on first need.
    secret: tokio::sync::OnceCell<Vec<u8>>,
    /// Parts and progress of the batch in hand (see `batch_budget_ms`).
    progress: BatchProgress,
    /// Erased people, whose late events are not synced (loaded on first need).
    erased: tokio::sync::OnceCell<wacrm_store::erasure::ErasedSubjects>,
}

enum Failure {
    Crm(CrmError),
    Store(StoreError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<CrmError> for Failure {
    fn from(e: CrmError) -> Self {
        Failure::Crm(e)
    }
}

/// Every identity key of a contact (`phone:+55…` or `wa:…`, then `bsuid:…`), as links are keyed.
fn identity_keys(identity: &ContactIdentity) -> Vec<String> {
    identity.keys().iter().map(ToString::to_string).collect()
}

/// The new identity a `user_changed_number` notice announces (the BSUID, when known, stays).
fn changed_number(m: &Message) -> Option<ContactIdentity> {
    let MessageContent::System {
        system_type,
        new_wa_id: Some(new_wa_id),
        ..
    } = &m.content
    else {
        return None;
    };
    if system_type != "user_changed_number" {
        return None;
    }
    let new = ContactIdentity::from_webhook(Some(new_wa_id), m.contact.identity.bsuid.as_deref());
    (!new.is_empty()).then_some(new)
}

/// `wa-` and 128 bits of HMAC-SHA256(secret, number), hex: stable per connection, unreadable
/// without the secret.
fn pseudonym(secret: &[u8], number: &str) -> Result<String, Failure> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| Failure::Crm(CrmError::Fatal(format!("pseudonym key: {e}"))))?;
    mac.update(number.as_bytes());
    let digest = mac.finalize().into_bytes();
    Ok(format!("wa-{}", hex::encode(&digest[..16])))
}

/// Links every key of `group` not linked yet to `crm_id`.
fn link_missing(
    group: &Group,
    crm_id: &str,
    linked: &mut HashMap<String, String>,
    new_links: &mut Vec<(String, String, &'static str)>,
) {
    for key in &group.keys {
        if !linked.contains_key(key) {
            linked.insert(key.clone(), crm_id.to_owned());
            new_links.push((key.clone(), crm_id.to_owned(), "adapter"));
        }
    }
}

/// One person of a batch: every key seen for them, their messages, and what the batch says
/// about them (the first message's identity filled in by later ones).
#[derive(Debug, Default, Clone)]
struct Group {
    keys: Vec<String>,
    indices: Vec<usize>,
    identity: ContactIdentity,
    profile_name: Option<String>,
    phone_number_id: String,
}

/// The batch's people: a union-find over identity keys (messages sharing a key are one person).
#[derive(Default)]
struct People {
    parent: Vec<usize>,
    by_key: HashMap<String, usize>,
    /// Keys in the order first seen, with their node.
    order: Vec<(String, usize)>,
    data: HashMap<usize, Group>,
}

impl People {
    fn root(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    fn node(&mut self, key: &str) -> usize {
        if let Some(node) = self.by_key.get(key) {
            return *node;
        }
        let node = self.parent.len();
        self.parent.push(node);
        self.by_key.insert(key.to_owned(), node);
        self.order.push((key.to_owned(), node));
        node
    }

    /// Puts `keys` in one group; returns its root.
    fn join(&mut self, keys: &[String]) -> usize {
        let first = self.node(&keys[0]);
        let root = self.root(first);
        self.merge(root, &keys[1..])
    }

    fn merge(&mut self, root: usize, keys: &[String]) -> usize {
        let mut root = self.root(root);
        for key in keys {
            let node = self.node(key);
            let other = self.root(node);
            if other != root {
                // The earlier group absorbs the later one.
                let (keep, gone) = if root < other {
                    (root, other)
                } else {
                    (other, root)
                };
                self.parent[gone] = keep;
                if let Some(g) = self.data.remove(&gone) {
                    let kept = self.data.entry(keep).or_default();
                    kept.indices.extend(g.indices);
                    fill(kept, &g.identity, g.profile_name, &g.phone_number_id);
                }
                root = keep;
            }
        }
        root
    }

    fn add_message(&mut self, keys: &[String], index: usize, m: &Message, policy: &Minimisation) {
        let node = self.node(&keys[0]);
        let root = self.root(node);
        let group = self.data.entry(root).or_default();
        group.indices.push(index);
        let name = (m.direction == wacrm_core::Direction::Inbound && policy.send_name)
            .then(|| m.contact.name.clone())
            .flatten()
            // A profile name that spells the number would send it: no name then.
            .filter(|n| {
                policy.send_phone || without_own_number(n.clone(), &m.contact.identity) == *n
            });
        fill(
            group,
            &m.contact.identity,
            name,
            &m.business.phone_number_id,
        );
    }

    /// The groups, each with its keys in the order first seen (the first one names it).
    fn groups(mut self) -> Vec<Group> {
        let order = std::mem::take(&mut self.order);
        let mut out: BTreeMap<usize, Group> = BTreeMap::new();
        for (key, node) in order {
            let root = self.root(node);
            let group = out
                .entry(root)
                .or_insert_with(|| self.data.remove(&root).unwrap_or_default());
            group.keys.push(key);
        }
        // Groups of keys only a number change named (no message of their own) are skipped.
        out.into_values()
            .filter(|g| !g.indices.is_empty())
            .collect()
    }
}

/// Fills what `group` does not know yet from another message's identity.
fn fill(group: &mut Group, identity: &ContactIdentity, name: Option<String>, number: &str) {
    let known = &mut group.identity;
    if known.wa_id.is_none() && known.phone.is_none() {
        known.wa_id.clone_from(&identity.wa_id);
        known.phone.clone_from(&identity.phone);
    }
    if known.bsuid.is_none() {
        known.bsuid.clone_from(&identity.bsuid);
    }
    if group.profile_name.is_none() {
        group.profile_name = name;
    }
    if group.phone_number_id.is_empty() {
        group.phone_number_id = number.to_owned();
    }
}

/// The records a batch asks to sync, by index.
struct Work {
    messages: Vec<(usize, Message)>,
    statuses: Vec<(usize, StatusUpdate)>,
    dead: Vec<(usize, String)>,
}

impl SyncEngine {
    /// An engine for a connection.
    pub fn new(config: ConnectionConfig, adapter: Arc<dyn CrmAdapter>, db: Db) -> Self {
        SyncEngine {
            config,
            adapter,
            db,
            secret: tokio::sync::OnceCell::new(),
            progress: BatchProgress::default(),
            erased: tokio::sync::OnceCell::new(),
        }
    }

    /// The topics the engine consumes.
    pub fn topics(topics: &Topics) -> Vec<String> {
        vec![topics.conversations.clone()]
    }

    /// How the runner should batch for this connection.
    pub fn runner_config(&self) -> RunnerConfig {
        let mut c = RunnerConfig::new(self.config.group());
        c.max_batch = self.config.max_batch.max(1);
        c.linger = Duration::from_millis(self.config.linger_ms);
        // A lingering batch is handled as soon as it fills one CRM call.
        c.linger_target = self.adapter.limits().messages_per_batch.max(1);
        c
    }

    fn sort(&self, records: &[Record], erased: &wacrm_store::erasure::ErasedSubjects) -> Work {
        let mut work = Work {
            messages: Vec::new(),
            statuses: Vec::new(),
            dead: Vec::new(),
        };
        for (index, record) in records.iter().enumerate() {
            let event = match decode_event(record) {
                Ok(e) => e,
                Err(e) => {
                    work.dead.push((index, e.to_string()));
                    continue;
                }
            };
            // A late delivery of an erased person's past: never to the CRM (docs/privacy.md).
            if erased.is_event_erased(&event) {
                metrics::counter!("wacrm_erased_events_dropped_total", "consumer" => self.config.name.clone())
                    .increment(1);
                continue;
            }
            match event.payload {
                EventPayload::MessageReceived(m) | EventPayload::MessageSent(m)
                    if self.config.routes(&m.business.phone_number_id) =>
                {
                    work.messages.push((index, m));
                }
                EventPayload::StatusChanged(s)
                    if self.config.routes(&s.business.phone_number_id) =>
                {
                    work.statuses.push((index, s));
                }
                _ => {}
            }
        }
        work
    }

    /// The value of the CRM's unique WhatsApp id for an identity. With `send_phone`, the
    /// `wa_id` (the phone digits, what WhatsApp users and salespeople recognise); without it,
    /// nothing that reveals the phone: the BSUID when known, else a keyed pseudonym of the
    /// number (HMAC-SHA256 under the connection's random secret — a plain hash of a phone
    /// number is brute-forced in minutes).
    async fn whatsapp_id(&self, identity: &ContactIdentity) -> Result<Option<String>, Failure> {
        if self.config.minimisation.send_phone {
            return Ok(identity
                .wa_id
                .clone()
                .or_else(|| identity.phone.as_ref().map(|p| p.digits().to_owned()))
                .or_else(|| identity.bsuid.clone()));
        }
        if let Some(bsuid) = &identity.bsuid {
            return Ok(Some(bsuid.clone()));
        }
        // The canonical phone first, so both spellings of a Brazilian mobile agree.
        let Some(number) = identity
            .phone
            .as_ref()
            .map(|p| p.digits().to_owned())
            .or_else(|| identity.wa_id.clone())
        else {
            return Ok(None);
        };
        let secret = self
            .secret
            .get_or_try_init(|| ledger::connection_secret(&self.db, &self.config.name))
            .await?;
        Ok(Some(pseudonym(secret, &number)?))
    }

    /// Contacts of the batch's messages, linked (found or created) as needed: identity key →
    /// CRM id, for every key of every message (a phone, a BSUID, a raw `wa_id`). Contacts the
    /// CRM refused are returned as dead letters for their records.
    ///
    /// Messages sharing any key are one person (a phone + BSUID message and a BSUID-only one;
    /// an old number and the new one it changed to): a person already linked under any key is
    /// linked under all of them; one unknown under every key is looked up through the store's
    /// sibling identities (the same store contact) before the CRM is asked.
    async fn contacts(
        &self,
        work: &Work,
    ) -> Result<(HashMap<String, String>, Vec<(usize, String)>), Failure> {
        let mut dead = Vec::new();
        let mut people = People::default();
        let mut changes: Vec<(ContactIdentity, ContactIdentity)> = Vec::new();
        for (index, m) in &work.messages {
            let identity = &m.contact.identity;
            let keys = identity_keys(identity);
            if keys.is_empty() {
                dead.push((*index, "message has no contact identity".to_owned()));
                continue;
            }
            let person = people.join(&keys);
            if let Some(new) = changed_number(m) {
                people.merge(person, &identity_keys(&new));
                changes.push((identity.clone(), new));
            }
            people.add_message(&keys, *index, m, &self.config.minimisation);
        }
        let groups = people.groups();
        let all_keys: Vec<String> = groups.iter().flat_map(|g| g.keys.clone()).collect();
        let mut linked = ledger::links(&self.db, &self.config.name, &all_keys).await?;
        let mut new_links: Vec<(String, String, &str)> = Vec::new();
        let mut unknown: Vec<&Group> = Vec::new();
        for group in &groups {
            let mut crm_id = group.keys.iter().find_map(|k| linked.get(k).cloned());
            if crm_id.is_none() {
                // Another identity of the same store contact may be linked already.
                let siblings = ledger::sibling_keys(&self.db, &group.keys).await?;
                let found = ledger::links(&self.db, &self.config.name, &siblings).await?;
                crm_id = siblings.iter().find_map(|k| found.get(k).cloned());
            }
            match crm_id {
                Some(id) => link_missing(group, &id, &mut linked, &mut new_links),
                None => unknown.push(group),
            }
        }
        let mut wanted: Vec<(ContactSync, &Group)> = Vec::new();
        for group in unknown {
            let Some(whatsapp_id) = self.whatsapp_id(&group.identity).await? else {
                dead.extend(
                    group
                        .indices
                        .iter()
                        .map(|i| (*i, "message has no contact identity".to_owned())),
                );
                continue;
            };
            let policy = &self.config.minimisation;
            wanted.push((
                ContactSync {
                    contact_key: group.keys[0].clone(),
                    whatsapp_id,
                    phone: group.identity.phone.clone().filter(|_| policy.send_phone),
                    profile_name: group.profile_name.clone().filter(|_| policy.send_name),
                    phone_number_id: group.phone_number_id.clone(),
                },
                group,
            ));
        }
        let inputs: Vec<ContactSync> = wanted.iter().map(|(c, _)| c.clone()).collect();
        let results = match self.adapter.contact_protocol() {
            ContactProtocol::Upsert => self.upsert_contacts(&inputs).await?,
            ContactProtocol::FindThenCreate => self.find_then_create(&inputs).await?,
        };
        for ((_, group), result) in wanted.iter().zip(results) {
            match result {
                Ok(crm_id) => link_missing(group, &crm_id, &mut linked, &mut new_links),
                Err(e) if e.class() == wacrm_core::ErrorClass::DeadLetter => {
                    dead.extend(
                        group
                            .indices
                            .iter()
                            .map(|i| (*i, scrub(&format!("contact refused by the CRM: {e}")))),
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        ledger::put_links(&self.db, &self.config.name, &new_links).await?;
        self.number_changes(&changes, &mut linked).await?;
        Ok((linked, dead))
    }

    /// [`ContactProtocol::Upsert`]: the adapter's upsert, a batch at a time.
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, Failure> {
        let mut out = Vec::with_capacity(contacts.len());
        for chunk in contacts.chunks(self.adapter.limits().contacts_per_batch.max(1)) {
            out.extend(
                self.isolating(chunk, |part| self.adapter.upsert_contacts(part))
                    .await?,
            );
        }
        Ok(out)
    }

    /// [`ContactProtocol::FindThenCreate`]: finds, then creates what is missing through the
    /// ledger (`contact:<key>` rows), so a create whose outcome was lost is found, not made
    /// again.
    async fn find_then_create(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, Failure> {
        let batch = self.adapter.limits().contacts_per_batch.max(1);
        let key = |c: &ContactSync| format!("contact:{}", c.contact_key);
        let keys: Vec<String> = contacts.iter().map(key).collect();
        let entries = ledger::ledger(&self.db, &self.config.name, &keys).await?;
        // Created before (a batch that failed after the create): the ledger knows it.
        let known = |c: &ContactSync| {
            entries
                .get(&key(c))
                .filter(|e| e.state == "synced")
                .and_then(|e| e.crm_id.clone())
        };
        // A create sent shortly before may not be searchable yet.
        let youngest = keys
            .iter()
            .filter_map(|k| entries.get(k))
            .filter(|e| e.state == "pending")
            .map(|e| e.pending_since)
            .max();
        if let Some(youngest) = youngest {
            let age = (Utc::now() - youngest).to_std().unwrap_or_default();
            let reconcile_after = Duration::from_millis(self.config.reconcile_after_ms);
            if age < reconcile_after {
                tokio::time::sleep(reconcile_after - age).await;
            }
        }
        let mut found: Vec<Option<String>> = contacts.iter().map(known).collect();
        let unknown: Vec<ContactSync> = contacts
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let mut answers: HashMap<String, String> = HashMap::new();
        for chunk in unknown.chunks(batch) {
            let answer = self.adapter.find_contacts(chunk).await?;
            if answer.len() != chunk.len() {
                return Err(CrmError::Fatal(format!(
                    "adapter found {} answers for {} contacts",
                    answer.len(),
                    chunk.len()
                ))
                .into());
            }
            for (c, id) in chunk.iter().zip(answer) {
                if let Some(id) = id {
                    answers.insert(key(c), id);
                }
            }
        }
        for (c, f) in contacts.iter().zip(found.iter_mut()) {
            if f.is_none() {
                *f = answers.get(&key(c)).cloned();
            }
        }
        let reconciled: Vec<(String, String)> = contacts
            .iter()
            .zip(&found)
            .filter(|(c, _)| entries.get(&key(c)).is_some_and(|e| e.state == "pending"))
            .filter_map(|(c, f)| f.clone().map(|id| (key(c), id)))
            .collect();
        metrics::counter!("wacrm_sync_reconciled_total", "connection" => self.config.name.clone())
            .increment(reconciled.len() as u64);
        ledger::mark_synced(&self.db, &self.config.name, &reconciled).await?;

        let missing: Vec<ContactSync> = contacts
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(c, _)| c.clone())
            .collect();
        let missing_keys: Vec<String> = missing.iter().map(key).collect();
        ledger::mark_pending(&self.db, &self.config.name, &missing_keys).await?;
        let mut created: HashMap<String, ItemResult<String>> = HashMap::new();
        let mut failure = None;
        for chunk in missing.chunks(batch) {
            match self
                .isolating(chunk, |part| self.adapter.create_contacts(part))
                .await
            {
                Ok(results) => {
                    for (c, result) in chunk.iter().zip(results) {
                        created.insert(key(c), result);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        let synced: Vec<(String, String)> = created
            .iter()
            .filter_map(|(k, r)| r.as_ref().ok().map(|id| (k.clone(), id.clone())))
            .collect();
        // What the CRM created is recorded even when another chunk failed.
        ledger::mark_synced(&self.db, &self.config.name, &synced).await?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok(contacts
            .iter()
            .zip(found)
            .map(|(c, f)| match f {
                Some(id) => Ok(id),
                None => created
                    .remove(&key(c))
                    .unwrap_or_else(|| Err(CrmError::Transient("contact not created".into()))),
            })
            .collect())
    }

    /// A contact changed their number: the new number's keys point at the old number's CRM
    /// contact from now on (replacing any link they had), and the CRM contact is given the new
    /// WhatsApp id when the adapter can write it (best effort: the link is what routes).
    async fn number_changes(
        &self,
        changes: &[(ContactIdentity, ContactIdentity)],
        linked: &mut HashMap<String, String>,
    ) -> Result<(), Failure> {
        let mut relinks: Vec<(String, String, &str)> = Vec::new();
        let mut renames: Vec<(String, String)> = Vec::new();
        for (old, new) in changes {
            let Some(crm_id) = identity_keys(old)
                .iter()
                .find_map(|k| linked.get(k).cloned())
            else {
                continue; // its contact was dead-lettered
            };
            for key in identity_keys(new) {
                linked.insert(key.clone(), crm_id.clone());
                relinks.push((key, crm_id.clone(), "number_change"));
            }
            let (before, after) = (self.whatsapp_id(old).await?, self.whatsapp_id(new).await?);
            if let Some(after) = after.filter(|a| before.as_ref() != Some(a)) {
                renames.push((crm_id, after));
            }
        }
        ledger::put_links(&self.db, &self.config.name, &relinks).await?;
        if renames.is_empty() {
            return Ok(());
        }
        match self.adapter.update_whatsapp_ids(&renames).await {
            Ok(()) => Ok(()),
            Err(e @ CrmError::Fatal(_)) => Err(e.into()),
            Err(e) => {
                tracing::warn!(connection = %self.config.name, error = %e, "new WhatsApp id not written onto the CRM contact; the link routes its messages all the same");
                Ok(())
            }
        }
    }

    /// Calls a batch method; when the CRM refuses the whole batch as invalid, calls again input
    /// by input so only the bad inputs are refused.
    async fn isolating<'a, I, T, F, Fut>(
        &self,
        inputs: &'a [I],
        call: F,
    ) -> Result<Vec<ItemResult<T>>, CrmError>
    where
        F: Fn(&'a [I]) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<ItemResult<T>>, CrmError>>,
    {
        match call(inputs).await {
            Ok(results) if results.len() == inputs.len() => Ok(results),
            Ok(results) => Err(CrmError::Fatal(format!(
                "adapter answered {} results for {} inputs",
                results.len(),
                inputs.len()
            ))),
            Err(CrmError::Invalid(_)) if inputs.len() > 1 => {
                let mut out = Vec::with_capacity(inputs.len());
                for i in 0..inputs.len() {
                    match call(&inputs[i..=i]).await {
                        Ok(mut r) if r.len() == 1 => out.push(r.remove(0)),
                        Ok(_) => {
                            return Err(CrmError::Fatal(
                                "adapter answered a wrong number of results".into(),
                            ))
                        }
                        Err(e @ CrmError::Invalid(_)) => out.push(Err(e)),
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            }
            Err(CrmError::Invalid(reason)) => Ok(vec![Err(CrmError::Invalid(reason))]),
            Err(e) => Err(e),
        }
    }

    /// Logs the batch's messages that the CRM does not hold yet. Returns wamid → CRM id for
    /// every message of the batch the CRM holds, and dead letters.
    async fn messages(
        &self,
        work: &Work,
        contacts: &HashMap<String, String>,
        statuses: &HashMap<String, MessageStatus>,
    ) -> Result<(HashMap<String, String>, Vec<(usize, String)>), Failure> {
        let mut dead = Vec::new();
        let wamids: Vec<String> = work.messages.iter().map(|(_, m)| m.wamid.clone()).collect();
        let entries = ledger::ledger(&self.db, &self.config.name, &wamids).await?;
        let mut held: HashMap<String, String> = entries
            .iter()
            .filter_map(|(w, e)| {
                e.crm_id
                    .clone()
                    .filter(|_| e.state == "synced")
                    .map(|id| (w.clone(), id))
            })
            .collect();

        // Reconcile: a pending row means a create may have reached the CRM before a crash.
        let pending: Vec<(String, chrono::DateTime<Utc>)> = entries
            .iter()
            .filter(|(_, e)| e.state == "pending")
            .map(|(w, e)| (w.clone(), e.pending_since))
            .collect();
        if !pending.is_empty() {
            let youngest = pending
                .iter()
                .map(|(_, t)| *t)
                .max()
                .unwrap_or_else(Utc::now);
            let age = (Utc::now() - youngest).to_std().unwrap_or_default();
            // A search too soon after a create could miss it: CRM search indexes lag writes.
            let reconcile_after = Duration::from_millis(self.config.reconcile_after_ms);
            if age < reconcile_after {
                // Short (`reconcile_after_ms`, 10 s by default): within the shutdown bound and
                // far within Kafka's `max.poll.interval.ms`, so a plain wait.
                tokio::time::sleep(reconcile_after - age).await;
            }
            let names: Vec<String> = pending.into_iter().map(|(w, _)| w).collect();
            let found = self.adapter.find_messages(&names).await?;
            metrics::counter!("wacrm_sync_reconciled_total", "connection" => self.config.name.clone())
                .increment(found.len() as u64);
            ledger::mark_synced(&self.db, &self.config.name, &found).await?;
            held.extend(found);
        }

        let mut to_log: Vec<(usize, MessageSync)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (index, m) in &work.messages {
            if held.contains_key(&m.wamid) || !seen.insert(m.wamid.clone()) {
                continue;
            }
            let key = m
                .contact
                .identity
                .primary_key()
                .map(|k| k.to_string())
                .unwrap_or_default();
            let Some(crm_contact_id) = contacts.get(&key) else {
                continue; // its contact was dead-lettered
            };
            to_log.push((
                *index,
                MessageSync {
                    wamid: m.wamid.clone(),
                    crm_contact_id: crm_contact_id.clone(),
                    direction: m.direction,
                    timestamp: m.timestamp,
                    body: timeline_body(m, &self.config.minimisation),
                    kind: m.content.kind().to_owned(),
                    phone_number_id: m.business.phone_number_id.clone(),
                    status: statuses.get(&m.wamid).map(|s| s.state),
                },
            ));
        }
        let batch = self.adapter.limits().messages_per_batch.max(1);
        // The intent for the whole batch in one write, then the CRM calls for its chunks a few
        // at a time (CrmHttp keeps them within the rate limit), then the outcome in one write:
        // the crash protocol is unchanged (pending before any call, synced after), and with a
        // slow CRM the calls overlap instead of queueing.
        let wamids: Vec<String> = to_log.iter().map(|(_, m)| m.wamid.clone()).collect();
        ledger::mark_pending(&self.db, &self.config.name, &wamids).await?;
        let mut calls = Vec::new();
        for chunk in to_log.chunks(batch) {
            let inputs: Vec<MessageSync> = chunk.iter().map(|(_, m)| m.clone()).collect();
            calls.push(async move {
                let results = self
                    .isolating(&inputs, |part| self.adapter.log_messages(part))
                    .await;
                (chunk, results)
            });
        }
        let outcomes: Vec<_> = futures::stream::iter(calls)
            .buffered(CONCURRENT_CALLS)
            .collect()
            .await;
        let mut synced = Vec::new();
        let mut failure = None;
        for (chunk, results) in outcomes {
            let results = match results {
                Ok(r) => r,
                Err(e) => {
                    failure.get_or_insert(e);
                    continue;
                }
            };
            for ((index, m), result) in chunk.iter().zip(results) {
                match result {
                    Ok(crm_id) => {
                        synced.push((m.wamid.clone(), crm_id.clone()));
                        held.insert(m.wamid.clone(), crm_id);
                    }
                    Err(e) if e.class() == wacrm_core::ErrorClass::DeadLetter => {
                        dead.push((*index, scrub(&format!("message refused by the CRM: {e}"))));
                    }
                    Err(e) => {
                        failure.get_or_insert(e);
                    }
                }
            }
        }
        // What the CRM accepted is recorded even when another chunk failed: the retry then
        // skips it instead of reconciling it.
        ledger::mark_synced(&self.db, &self.config.name, &synced).await?;
        // Statuses sent with the create are recorded as written.
        let written: Vec<(String, String)> = synced
            .iter()
            .filter_map(|(wamid, _)| {
                statuses
                    .get(wamid)
                    .map(|s| (wamid.clone(), s.state.as_str().to_owned()))
            })
            .collect();
        ledger::mark_statuses(&self.db, &self.config.name, &written).await?;
        metrics::counter!("wacrm_sync_messages_total", "connection" => self.config.name.clone())
            .increment(synced.len() as u64);
        if let Some(e) = failure {
            return Err(e.into());
        }
        Ok((held, dead))
    }

    /// Writes statuses that move a logged message forward.
    async fn statuses(
        &self,
        merged: &HashMap<String, (Vec<usize>, MessageStatus)>,
    ) -> Result<Vec<(usize, String)>, Failure> {
        let mut dead = Vec::new();
        let wamids: Vec<String> = merged.keys().cloned().collect();
        let entries = ledger::ledger(&self.db, &self.config.name, &wamids).await?;
        let mut updates: Vec<(Vec<usize>, StatusSync)> = Vec::new();
        for (wamid, (indices, status)) in merged {
            let Some(entry) = entries.get(wamid) else {
                // Not a message this connection logged (sent before wacrm, or another route).
                metrics::counter!("wacrm_sync_statuses_without_message_total", "connection" => self.config.name.clone())
                    .increment(1);
                continue;
            };
            let Some(crm_id) = entry.crm_id.clone() else {
                continue;
            };
            let current = entry
                .status
                .as_deref()
                .and_then(DeliveryState::parse)
                .map(|s| MessageStatus::from_report(s, &[]))
                .unwrap_or_else(|| MessageStatus::from_report(DeliveryState::Accepted, &[]));
            let next = current.merge(status);
            if Some(next.state.as_str()) == entry.status.as_deref() {
                continue;
            }
            updates.push((
                indices.clone(),
                StatusSync {
                    crm_id,
                    wamid: wamid.clone(),
                    state: next.state,
                    failure: next.error.as_ref().map(|e| match &e.title {
                        Some(t) => format!("{} ({})", t, e.code),
                        None => e.code.to_string(),
                    }),
                },
            ));
        }
        let batch = self.adapter.limits().statuses_per_batch.max(1);
        for chunk in updates.chunks(batch) {
            let inputs: Vec<StatusSync> = chunk.iter().map(|(_, s)| s.clone()).collect();
            let results = self
                .isolating(&inputs, |part| self.adapter.update_statuses(part))
                .await?;
            for ((indices, s), result) in chunk.iter().zip(results) {
                match result {
                    Ok(()) => {
                        ledger::mark_status(&self.db, &self.config.name, &s.wamid, s.state.as_str())
                            .await?
                    }
                    Err(e) if e.class() == wacrm_core::ErrorClass::DeadLetter => {
                        dead.extend(
                            indices
                                .iter()
                                .map(|i| (*i, scrub(&format!("status refused by the CRM: {e}")))),
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(dead)
    }

    async fn sync(&self, records: &[Record]) -> Result<Handled, Failure> {
        let erased = self
            .erased
            .get_or_try_init(|| wacrm_store::erasure::ErasedSubjects::load(&self.db))
            .await?;
        erased.refresh(&self.db).await?;
        let mut work = self.sort(records, erased);
        let mut dead = std::mem::take(&mut work.dead);
        let mut merged: HashMap<String, (Vec<usize>, MessageStatus)> = HashMap::new();
        for (index, s) in &work.statuses {
            let report = MessageStatus::from_report(s.state, &s.errors);
            let entry = merged
                .entry(s.wamid.clone())
                .or_insert_with(|| (Vec::new(), report.clone()));
            entry.0.push(*index);
            entry.1 = entry.1.merge(&report);
        }
        let (contacts, refused) = self.contacts(&work).await?;
        dead.extend(refused);
        let current: HashMap<String, MessageStatus> = merged
            .iter()
            .map(|(w, (_, s))| (w.clone(), s.clone()))
            .collect();
        let (_, refused) = self.messages(&work, &contacts, &current).await?;
        dead.extend(refused);
        dead.extend(self.statuses(&merged).await?);
        dead.sort();
        dead.dedup_by_key(|(i, _)| *i);
        if !dead.is_empty() {
            metrics::counter!("wacrm_sync_dead_letters_total", "connection" => self.config.name.clone())
                .increment(dead.len() as u64);
        }
        Ok(Handled { dead_letters: dead })
    }
}

/// A record's place on the bus: what identifies it when its batch is offered again.
type RecordId = (String, i32, i64);

fn record_id(record: &Record) -> RecordId {
    (record.topic.clone(), record.partition, record.offset)
}

/// How the engine keeps a batch within `batch_budget_ms`.
#[derive(Default)]
struct BatchProgress {
    /// Records per part: the whole batch at first, halved each time a part outran the budget,
    /// doubled again after a batch that took under a quarter of it.
    part: Option<usize>,
    /// Records an earlier pass of a batch that was handed back synced in full, with their
    /// dead-letter reasons: skipped when the batch comes again, forgotten once one completes.
    done: HashMap<RecordId, Option<String>>,
}

/// How long the runner waits before it offers a batch that was handed back again.
const HAND_BACK_WAIT: Duration = Duration::from_millis(10);

impl SyncEngine {
    /// The batch handed back to the runner, which keeps polling and offers it again.
    fn hand_back(&self, reason: &str) -> HandlerError {
        tracing::info!(connection = %self.config.name, reason, "batch handed back to stay within the poll interval");
        metrics::counter!("wacrm_sync_parked_total", "connection" => self.config.name.clone())
            .increment(1);
        HandlerError::Park {
            wait: HAND_BACK_WAIT,
            reason: reason.to_owned(),
        }
    }

    /// What the runner should do about a failed pass. Its reasons are scrubbed: they reach the
    /// log, the consumer's status and, for data errors, a dead letter.
    fn handler_error(&self, failure: Failure) -> HandlerError {
        match failure {
            Failure::Store(e) if e.is_data_error() => HandlerError::Data(scrub(&e.to_string())),
            Failure::Store(e) => HandlerError::Retryable(scrub(&e.to_string())),
            Failure::Crm(CrmError::QuotaExhausted { until }) => {
                // Parked by the runner, which keeps polling meanwhile: a daily quota resets in
                // hours, far past Kafka's `max.poll.interval.ms`.
                let wait = (until - Utc::now()).to_std().unwrap_or_default();
                tracing::warn!(connection = %self.config.name, %until, "CRM quota exhausted; connection parked");
                metrics::counter!("wacrm_sync_parked_total", "connection" => self.config.name.clone()).increment(1);
                HandlerError::Park {
                    wait,
                    reason: format!("CRM quota exhausted until {until}"),
                }
            }
            Failure::Crm(e @ CrmError::Fatal(_)) => HandlerError::Fatal(scrub(&e.to_string())),
            Failure::Crm(e) => {
                metrics::counter!("wacrm_sync_retries_total", "connection" => self.config.name.clone()).increment(1);
                HandlerError::Retryable(scrub(&e.to_string()))
            }
        }
    }

    /// Syncs a batch in parts within the batch budget. A part still running when the budget
    /// ends is dropped at its next wait — as if the process had stopped there, which the
    /// ledger already makes safe: a create whose answer was not kept stays `pending` and is
    /// reconciled, never made twice — and the batch is handed back with smaller parts; parts
    /// that finished are remembered and skipped when it comes again.
    async fn sync_within_budget(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let budget = Duration::from_millis(self.config.batch_budget_ms.max(1));
        let began = tokio::time::Instant::now();
        let budget_ends = began + budget;
        let part = self.progress.part.unwrap_or(records.len()).max(1);
        let todo: Vec<usize> = (0..records.len())
            .filter(|i| !self.progress.done.contains_key(&record_id(&records[*i])))
            .collect();
        for indices in todo.chunks(part) {
            if tokio::time::Instant::now() >= budget_ends {
                return Err(self.hand_back("batch budget spent between parts"));
            }
            let contiguous = indices.len() == records.len();
            let owned: Vec<Record>;
            let batch: &[Record] = if contiguous {
                records
            } else {
                owned = indices.iter().map(|i| records[*i].clone()).collect();
                &owned
            };
            // A part of one record runs to its end: the least work that moves the batch on
            // (a few calls, each bounded by `request_timeout_ms`), or no pass would finish.
            let outcome = if part == 1 {
                Ok(self.sync(batch).await)
            } else {
                tokio::time::timeout_at(budget_ends, self.sync(batch)).await
            };
            let handled = match outcome {
                Ok(Ok(handled)) => handled,
                Ok(Err(failure)) => return Err(self.handler_error(failure)),
                Err(_) => {
                    self.progress.part = Some((part / 2).max(1));
                    return Err(self.hand_back("batch budget spent within a part"));
                }
            };
            let mut reasons: HashMap<usize, String> = handled.dead_letters.into_iter().collect();
            for (position, index) in indices.iter().enumerate() {
                self.progress
                    .done
                    .insert(record_id(&records[*index]), reasons.remove(&position));
            }
        }
        let dead_letters = records
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                self.progress
                    .done
                    .get(&record_id(r))
                    .cloned()
                    .flatten()
                    .map(|reason| (i, reason))
            })
            .collect();
        self.progress.done.clear();
        if began.elapsed() < budget / 4 {
            self.progress.part = self
                .progress
                .part
                .map(|p| p.saturating_mul(2))
                .filter(|p| *p < records.len());
        }
        Ok(Handled { dead_letters })
    }
}

#[async_trait]
impl Handler for SyncEngine {
    async fn handle(&mut self, records: &[Record]) -> Result<Handled, HandlerError> {
        let started = std::time::Instant::now();
        let result = self.sync_within_budget(records).await;
        metrics::histogram!("wacrm_sync_batch_seconds", "connection" => self.config.name.clone())
            .record(started.elapsed());
        result
    }
}
