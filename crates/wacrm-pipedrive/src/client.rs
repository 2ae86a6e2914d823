//! [`Pipedrive`]: the engine's calls as Pipedrive requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use wacrm_crm::adapter::{noting_error_answers, unless_gone};
use wacrm_crm::http::{Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::{batch, transcript};
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactProtocol, ContactSync, CrmAdapter, CrmError, Erasure,
    ItemResult, MessageSync, StatusSync,
};

use crate::config::PipedriveConfig;
use crate::mapping::{self, digits, spellings};

/// Requests in flight at once (the limiter still spaces them).
const CONCURRENT: usize = 4;
/// Notes read back per page when reconciling (Pipedrive's largest page).
const NOTES_PAGE: usize = 500;
/// Pages of the newest notes searched for pending wamids: a crash leaves them among the
/// connection user's latest notes.
const NOTES_PAGES: usize = 4;

/// What the adapter learns from Pipedrive and keeps: the WhatsApp-id field's key, the user the
/// token acts as, and an index of persons by WhatsApp id and by phone digits.
#[derive(Default)]
struct Known {
    field_key: Option<String>,
    user_id: Option<i64>,
    by_whatsapp_id: HashMap<String, i64>,
    by_phone: HashMap<String, Vec<i64>>,
    /// The latest `update_time` seen: the next refresh asks for persons updated since.
    watermark: Option<String>,
}

impl Known {
    fn add(&mut self, person: &Value, field_key: &str) {
        let Some(id) = person["id"].as_i64() else {
            return;
        };
        if let Some(w) = person["custom_fields"][field_key].as_str() {
            self.by_whatsapp_id.insert(w.to_owned(), id);
        }
        for phone in person["phones"].as_array().into_iter().flatten() {
            let typed = phone["value"].as_str().or_else(|| phone.as_str());
            if let Some(d) = typed.map(digits).filter(|d| !d.is_empty()) {
                let ids = self.by_phone.entry(d).or_default();
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
        if let Some(t) = person["update_time"].as_str() {
            if self.watermark.as_deref().is_none_or(|w| t > w) {
                self.watermark = Some(t.to_owned());
            }
        }
    }

    /// Drops a deleted person from the index, so no later batch is logged on it.
    fn forget(&mut self, id: i64) {
        self.by_whatsapp_id.retain(|_, person| *person != id);
        for ids in self.by_phone.values_mut() {
            ids.retain(|person| *person != id);
        }
        self.by_phone.retain(|_, ids| !ids.is_empty());
    }

    /// The person of a WhatsApp id: by the field, else the oldest person with the phone in
    /// any spelling (and whether it came by phone).
    fn find(&self, whatsapp_id: &str) -> Option<(i64, bool)> {
        if let Some(id) = self.by_whatsapp_id.get(whatsapp_id) {
            return Some((*id, false));
        }
        spellings(whatsapp_id)
            .iter()
            .filter_map(|s| self.by_phone.get(s))
            .flatten()
            .min()
            .map(|id| (*id, true))
    }
}

/// The Pipedrive adapter of one connection.
pub struct Pipedrive {
    http: CrmHttp,
    config: PipedriveConfig,
    known: Mutex<Known>,
}

/// Pipedrive's API as `CrmHttp` needs it: the `x-api-token` header, the token's rolling
/// 2-second limit, and the search API's own 10 per 2 seconds.
pub fn http_settings(config: &PipedriveConfig) -> HttpSettings {
    HttpSettings {
        base_url: config.base_url.clone(),
        auth: Auth::Header {
            name: "x-api-token".into(),
            value: config.token.clone(),
        },
        limit: Window::new(config.requests_per_2s, Duration::from_secs(2)),
        search_limit: Some(Window::new(10, Duration::from_secs(2))),
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    }
}

fn data(mut answer: Value) -> Value {
    answer["data"].take()
}

fn id_of(answer: &Value) -> Result<i64, CrmError> {
    answer["data"]["id"]
        .as_i64()
        .ok_or_else(|| CrmError::Transient("Pipedrive answered without an id".into()))
}

impl Pipedrive {
    /// An adapter for a connection.
    pub fn new(config: PipedriveConfig) -> Result<Self, CrmError> {
        let name = &config.sync.name;
        if config.token.is_empty() || config.base_url.is_empty() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] needs token and base_url (https://<company>.pipedrive.com)"
            )));
        }
        // Erasure tells a 404 (already deleted) from other refusals.
        let http = CrmHttp::new(
            name,
            http_settings(&config),
            noting_error_answers(Arc::new(mapping::classify)),
        )?;
        Ok(Pipedrive {
            http,
            config,
            known: Mutex::new(Known::default()),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, CrmError> {
        self.http
            .send(Method::GET, path, None, Budget::General, Retry::Safe)
            .await
    }

    /// The user the token acts as (the author of the notes wacrm writes).
    async fn user_id(&self) -> Result<i64, CrmError> {
        if let Some(id) = self.known.lock().await.user_id {
            return Ok(id);
        }
        let me = self.get("/api/v1/users/me").await?;
        let id = me["data"]["id"]
            .as_i64()
            .ok_or_else(|| CrmError::Fatal("users/me answered without an id".into()))?;
        self.known.lock().await.user_id = Some(id);
        Ok(id)
    }

    /// Every person field (`GET /api/v1/personFields`, offset pages).
    async fn person_fields(&self) -> Result<Vec<Value>, CrmError> {
        let mut fields = Vec::new();
        let mut start = 0;
        loop {
            let page = self
                .get(&format!("/api/v1/personFields?start={start}&limit=500"))
                .await?;
            fields.extend(page["data"].as_array().cloned().unwrap_or_default());
            let pagination = &page["additional_data"]["pagination"];
            match pagination["next_start"].as_i64() {
                Some(next) if pagination["more_items_in_collection"] == true => start = next,
                _ => return Ok(fields),
            }
        }
    }

    /// The WhatsApp-id field, as Pipedrive lists it.
    async fn whatsapp_field(&self) -> Result<Option<Value>, CrmError> {
        Ok(self
            .person_fields()
            .await?
            .into_iter()
            .find(|f| f["name"].as_str() == Some(self.config.whatsapp_field.as_str())))
    }

    async fn field_key(&self) -> Result<String, CrmError> {
        if let Some(key) = self.known.lock().await.field_key.clone() {
            return Ok(key);
        }
        let Some(key) = self
            .whatsapp_field()
            .await?
            .and_then(|f| f["key"].as_str().map(str::to_owned))
        else {
            return Err(CrmError::Fatal(format!(
                "Pipedrive has no person field \"{}\": run wacrm crm setup --connection {}",
                self.config.whatsapp_field, self.config.sync.name
            )));
        };
        self.known.lock().await.field_key = Some(key.clone());
        Ok(key)
    }

    /// Brings the person index up to date: every person the first time, then those updated
    /// since the last look (one call when little changed).
    async fn refresh_persons(&self, field_key: &str) -> Result<(), CrmError> {
        let since = self.known.lock().await.watermark.clone();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = format!(
                "/api/v2/persons?limit=500&sort_by=update_time&sort_direction=asc&custom_fields={field_key}"
            );
            if let Some(since) = &since {
                query.push_str(&format!("&updated_since={}", encode(since)));
            }
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={}", encode(cursor)));
            }
            let page = self.get(&query).await?;
            {
                let mut known = self.known.lock().await;
                for person in page["data"].as_array().into_iter().flatten() {
                    known.add(person, field_key);
                }
            }
            match page["additional_data"]["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = Some(next.to_owned()),
                _ => return Ok(()),
            }
        }
    }

    /// Writes the WhatsApp id onto a person (one found by phone, or after a number change).
    async fn set_whatsapp_id(
        &self,
        person: i64,
        whatsapp_id: &str,
        field_key: &str,
    ) -> Result<(), CrmError> {
        let body = json!({"custom_fields": {field_key: whatsapp_id}});
        let answer = self
            .http
            .send(
                Method::PATCH,
                &format!("/api/v2/persons/{person}"),
                Some(&body),
                Budget::General,
                Retry::Safe,
            )
            .await?;
        self.known.lock().await.add(&answer["data"], field_key);
        Ok(())
    }

    /// Creates one person (a create: never sent twice blindly) and indexes it.
    async fn create_person(&self, body: Value, field_key: String) -> ItemResult<String> {
        let answer = self
            .http
            .send(
                Method::POST,
                "/api/v2/persons",
                Some(&body),
                Budget::General,
                Retry::Once,
            )
            .await?;
        self.known.lock().await.add(&answer["data"], &field_key);
        Ok(id_of(&answer)?.to_string())
    }

    /// One note of `lines` on `person`: one result per line, in order. When Pipedrive refuses
    /// the note as invalid, each line goes in a note of its own, so only the line it refuses is
    /// dead-lettered.
    async fn note_of(
        &self,
        person: String,
        indices: Vec<usize>,
        lines: Vec<MessageSync>,
    ) -> (Vec<usize>, Vec<ItemResult<String>>) {
        let all: Vec<&MessageSync> = lines.iter().collect();
        let results = match self.create_note(&person, &all).await {
            Err(CrmError::Invalid(_)) if lines.len() > 1 => {
                let mut one_by_one = Vec::with_capacity(lines.len());
                for line in &lines {
                    one_by_one.push(self.create_note(&person, &[line]).await);
                }
                one_by_one
            }
            outcome => vec![outcome; lines.len()],
        };
        (indices, results)
    }

    /// The statuses of one note's lines written, with their indices.
    async fn statuses_of(
        &self,
        note: String,
        indices: Vec<usize>,
        statuses: Vec<StatusSync>,
    ) -> (Vec<usize>, Result<(), CrmError>) {
        let statuses: Vec<&StatusSync> = statuses.iter().collect();
        (indices, self.update_note(&note, &statuses).await)
    }

    /// Creates one note (a create: never sent twice blindly).
    async fn create_note(&self, person: &str, lines: &[&MessageSync]) -> Result<String, CrmError> {
        let person: i64 = person
            .parse()
            .map_err(|_| CrmError::Invalid(format!("person id {person:?} is not a number")))?;
        let first = lines.iter().map(|m| m.timestamp).min().unwrap_or_default();
        let body = json!({
            "content": transcript::content(lines),
            "person_id": person,
            "add_time": mapping::v1_time(first),
        });
        let answer = self
            .http
            .send(
                Method::POST,
                "/api/v1/notes",
                Some(&body),
                Budget::General,
                Retry::Once,
            )
            .await?;
        Ok(id_of(&answer)?.to_string())
    }

    /// Rewrites one note with new statuses of its lines.
    async fn update_note(&self, note: &str, statuses: &[&StatusSync]) -> Result<(), CrmError> {
        let current = data(self.get(&format!("/api/v1/notes/{note}")).await?);
        let Some(mut content) = current["content"].as_str().map(str::to_owned) else {
            return Err(CrmError::Invalid(format!("note {note} has no content")));
        };
        for s in statuses {
            match transcript::with_status(&content, &s.wamid, s.state, s.failure.as_deref()) {
                Some(updated) => content = updated,
                None => {
                    return Err(CrmError::Invalid(format!(
                        "note {note} has no line of {}",
                        s.wamid
                    )))
                }
            }
        }
        self.http
            .send(
                Method::PUT,
                &format!("/api/v1/notes/{note}"),
                Some(&json!({"content": content})),
                Budget::General,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }
}

impl Pipedrive {
    /// The notes wacrm's user wrote on a person (those holding transcript lines), offset pages.
    async fn notes_on(&self, person: i64) -> Result<Vec<i64>, CrmError> {
        let user = self.user_id().await?;
        let mut ids = Vec::new();
        let mut start = 0;
        loop {
            let page = self
                .get(&format!(
                    "/api/v1/notes?person_id={person}&user_id={user}&start={start}&limit={NOTES_PAGE}"
                ))
                .await?;
            for note in page["data"].as_array().into_iter().flatten() {
                let ours = note["content"]
                    .as_str()
                    .is_some_and(|c| !transcript::wamids_in(c).is_empty());
                if let (Some(id), true) = (note["id"].as_i64(), ours) {
                    ids.push(id);
                }
            }
            let pagination = &page["additional_data"]["pagination"];
            match pagination["next_start"].as_i64() {
                Some(next) if pagination["more_items_in_collection"] == true => start = next,
                _ => return Ok(ids),
            }
        }
    }

    /// `DELETE` of one record: whether it was there (a 404 — deleted by a person, or by an
    /// earlier attempt whose answer was lost — is `false`).
    async fn delete(&self, path: &str) -> Result<bool, CrmError> {
        let answer =
            unless_gone(
                self.http
                    .send(Method::DELETE, path, None, Budget::General, Retry::Safe),
            )
            .await?;
        Ok(answer.is_some())
    }
}

/// Percent-encodes a query value (times carry `:` and `+`; cursors are opaque).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[async_trait]
impl CrmAdapter for Pipedrive {
    fn limits(&self) -> AdapterLimits {
        // A batch's messages come in one call so a contact's messages share notes; the calls
        // it makes are the notes, spaced by the limiter.
        AdapterLimits {
            contacts_per_batch: 500,
            messages_per_batch: 2000,
            statuses_per_batch: 500,
        }
    }

    fn contact_protocol(&self) -> ContactProtocol {
        ContactProtocol::FindThenCreate
    }

    /// Creates the WhatsApp-id person field (a `varchar`) if it is missing.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        self.user_id().await?;
        if self.whatsapp_field().await?.is_some() {
            return Ok(Vec::new());
        }
        let body = json!({"name": self.config.whatsapp_field, "field_type": "varchar"});
        let answer = self
            .http
            .send(
                Method::POST,
                "/api/v1/personFields",
                Some(&body),
                Budget::General,
                Retry::Once,
            )
            .await?;
        let key = answer["data"]["key"].as_str().unwrap_or_default();
        Ok(vec![format!(
            "person field \"{}\" ({key})",
            self.config.whatsapp_field
        )])
    }

    /// The token is accepted and the WhatsApp-id field is there.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        let user = self.user_id().await?;
        match self.whatsapp_field().await? {
            Some(field) => Ok(vec![
                format!("token of user {user}"),
                format!(
                    "person field \"{}\" ({})",
                    self.config.whatsapp_field,
                    field["key"].as_str().unwrap_or_default()
                ),
            ]),
            None => Err(CrmError::Fatal(format!(
                "person field \"{}\" missing: run wacrm crm setup --connection {}",
                self.config.whatsapp_field, self.config.sync.name
            ))),
        }
    }

    async fn upsert_contacts(
        &self,
        _contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Err(CrmError::Fatal(
            "Pipedrive has no upsert: contacts go through find_contacts and create_contacts".into(),
        ))
    }

    /// By the WhatsApp-id field, else by every phone spelling (a person made by hand, who then
    /// gets the WhatsApp id written on).
    async fn find_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<Option<String>>, CrmError> {
        let field_key = self.field_key().await?;
        self.refresh_persons(&field_key).await?;
        let mut out = Vec::with_capacity(contacts.len());
        for c in contacts {
            let found = self.known.lock().await.find(&c.whatsapp_id);
            if let Some((person, true)) = found {
                self.set_whatsapp_id(person, &c.whatsapp_id, &field_key)
                    .await?;
            }
            out.push(found.map(|(id, _)| id.to_string()));
        }
        Ok(out)
    }

    async fn create_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let field_key = self.field_key().await?;
        let bodies: Vec<Value> = contacts
            .iter()
            .map(|c| mapping::person_body(c, &field_key))
            .collect();
        let creates: Vec<_> = bodies
            .into_iter()
            .map(|body| self.create_person(body, field_key.clone()))
            .collect();
        Ok(futures::stream::iter(creates)
            .buffered(CONCURRENT)
            .collect()
            .await)
    }

    /// One note per contact (per `messages_per_note` of its messages); every message answers
    /// its note's id.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let notes = transcript::notes_of(messages, self.config.messages_per_note);
        let calls: Vec<_> = notes
            .into_iter()
            .map(|(contact, indices)| {
                let lines: Vec<MessageSync> =
                    indices.iter().map(|i| messages[*i].clone()).collect();
                self.note_of(contact, indices, lines)
            })
            .collect();
        Ok(batch::per_position(messages.len(), calls, CONCURRENT).await)
    }

    /// Each note once: read, its lines' statuses set, written back.
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let calls: Vec<_> = batch::positions_by(statuses, |s| s.crm_id.as_str())
            .into_iter()
            .map(|(note, indices)| {
                let mine: Vec<StatusSync> = indices.iter().map(|i| statuses[*i].clone()).collect();
                self.statuses_of(note.to_owned(), indices, mine)
            })
            .collect();
        batch::per_group(statuses.len(), calls, CONCURRENT).await
    }

    /// The notes holding these wamids, among the connection user's newest notes.
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let user = self.user_id().await?;
        let mut found = Vec::new();
        for page in 0..NOTES_PAGES {
            let start = page * NOTES_PAGE;
            let answer = self
                .get(&format!(
                    "/api/v1/notes?user_id={user}&sort=id%20DESC&start={start}&limit={NOTES_PAGE}"
                ))
                .await?;
            for note in answer["data"].as_array().into_iter().flatten() {
                let (Some(id), Some(content)) = (note["id"].as_i64(), note["content"].as_str())
                else {
                    continue;
                };
                for wamid in transcript::wamids_in(content) {
                    if wamids.contains(&wamid) && !found.iter().any(|(w, _)| *w == wamid) {
                        found.push((wamid, id.to_string()));
                    }
                }
            }
            if found.len() == wamids.len()
                || answer["additional_data"]["pagination"]["more_items_in_collection"] != true
            {
                break;
            }
        }
        Ok(found)
    }

    /// Deletes the notes wacrm logged (the ledger's, and any other transcript note wacrm's user
    /// wrote on the person), then the person (`DELETE /api/v2/persons/{id}`: Pipedrive marks it
    /// deleted and purges it after 30 days). Notes first: Pipedrive does not document that a
    /// person's notes go with it, and a crash in between leaves the person, so the next attempt
    /// finds everything again. Every delete is idempotent (a repeat answers 404, taken as done).
    /// Without a link, the person is the one holding the WhatsApp id in wacrm's field; a person
    /// only matching the phone is someone's hand-made record, not wacrm's to delete.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let person = match &contact.crm_contact_id {
            Some(id) => Some(
                id.parse::<i64>()
                    .map_err(|_| CrmError::Invalid(format!("person id {id:?} is not a number")))?,
            ),
            None => {
                let field_key = self.field_key().await?;
                self.refresh_persons(&field_key).await?;
                self.known
                    .lock()
                    .await
                    .by_whatsapp_id
                    .get(&contact.whatsapp_id)
                    .copied()
            }
        };
        let mut notes: Vec<i64> = Vec::new();
        for id in &contact.message_crm_ids {
            match id.parse::<i64>() {
                Ok(id) if !notes.contains(&id) => notes.push(id),
                Ok(_) => {}
                Err(_) => return Err(CrmError::Invalid(format!("note id {id:?} is not a number"))),
            }
        }
        if let Some(person) = person {
            for id in self.notes_on(person).await? {
                if !notes.contains(&id) {
                    notes.push(id);
                }
            }
        }
        let mut erased = false;
        for note in notes {
            erased |= self.delete(&format!("/api/v1/notes/{note}")).await?;
        }
        if let Some(person) = person {
            erased |= self.delete(&format!("/api/v2/persons/{person}")).await?;
            self.known.lock().await.forget(person);
        }
        Ok(if erased {
            Erasure::Erased
        } else {
            Erasure::NotFound
        })
    }

    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        let field_key = self.field_key().await?;
        for (person, whatsapp_id) in updates {
            let person: i64 = person
                .parse()
                .map_err(|_| CrmError::Invalid(format!("person id {person:?} is not a number")))?;
            self.set_whatsapp_id(person, whatsapp_id, &field_key)
                .await?;
        }
        Ok(())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "pipedrive"` in the registry.
    PipedriveKind,
    "pipedrive",
    PipedriveConfig,
    Pipedrive::new
);
