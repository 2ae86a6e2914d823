//! [`Zoho`]: the engine's calls as Zoho CRM v8 requests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::OnceCell;
use wacrm_crm::adapter::{noting_error_answers, with_error_answer};
use wacrm_crm::http::{scrub_error, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{Grant, OAuth2};
use wacrm_crm::transcript;
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactSync, CrmAdapter, CrmError, Erasure, ItemResult,
    MessageSync, StatusSync,
};

use crate::config::ZohoConfig;
use crate::mapping::{self, contact_record, contacts_query, phone_spellings};

/// A per-record result of a write, its error scrubbed: Zoho's message may quote the record's
/// values, and this text comes from a successful answer, past `CrmHttp`'s own scrubbing.
fn record_result(item: &Value) -> ItemResult<String> {
    mapping::record_result(item).map_err(scrub_error)
}

/// Records per write call (Zoho's limit).
const RECORDS_PER_CALL: usize = 100;
/// Contacts per COQL lookup: each brings up to ten spellings into the `in` lists (≤ 100 values).
const CONTACTS_PER_QUERY: usize = 10;
/// Pages of the newest notes searched for pending wamids (200 each).
const NOTE_PAGES: usize = 10;

/// The Zoho CRM adapter of one connection.
pub struct Zoho {
    http: CrmHttp,
    config: ZohoConfig,
    /// The API name of the WhatsApp-id field (read once).
    field: OnceCell<String>,
}

/// Zoho's API as `CrmHttp` needs it: OAuth 2 with the refresh token, the data centre's API
/// domain, and a request rate of the connection's own.
pub fn http_settings(config: &ZohoConfig) -> HttpSettings {
    HttpSettings {
        base_url: config.api_domain.clone(),
        auth: Auth::OAuth2(Box::new(
            OAuth2::new(
                format!(
                    "{}/oauth/v2/token",
                    config.accounts_url.trim_end_matches('/')
                ),
                config.client_id.clone(),
                config.client_secret.clone(),
                Grant::RefreshToken(config.refresh_token.clone()),
            )
            .with_scheme("Zoho-oauthtoken"),
        )),
        limit: Window::new(config.requests_per_s, Duration::from_secs(1)),
        search_limit: None,
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    }
}

fn rows(answer: &Value) -> Vec<Value> {
    answer["data"].as_array().cloned().unwrap_or_default()
}

impl Zoho {
    /// An adapter for a connection.
    pub fn new(config: ZohoConfig) -> Result<Self, CrmError> {
        let name = &config.sync.name;
        if config.client_id.is_empty()
            || config.client_secret.is_empty()
            || config.refresh_token.is_empty()
        {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] needs client_id, client_secret and refresh_token"
            )));
        }
        // Erasure reads the per-record results of a refused delete.
        let http = CrmHttp::new(
            name,
            http_settings(&config),
            noting_error_answers(Arc::new(mapping::classify)),
        )?;
        Ok(Zoho {
            http,
            config,
            field: OnceCell::new(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Value, CrmError> {
        self.http
            .send(method, path, body, Budget::General, retry)
            .await
    }

    /// The contact fields, as Zoho lists them.
    async fn fields(&self) -> Result<Vec<Value>, CrmError> {
        let answer = self
            .send(
                Method::GET,
                "/crm/v8/settings/fields?module=Contacts",
                None,
                Retry::Safe,
            )
            .await?;
        Ok(answer["fields"].as_array().cloned().unwrap_or_default())
    }

    async fn whatsapp_field(&self) -> Result<Option<Value>, CrmError> {
        Ok(self
            .fields()
            .await?
            .into_iter()
            .find(|f| f["field_label"].as_str() == Some(self.config.whatsapp_field.as_str())))
    }

    /// The WhatsApp-id field's API name.
    async fn field(&self) -> Result<String, CrmError> {
        self.field
            .get_or_try_init(|| async {
                self.whatsapp_field()
                    .await?
                    .and_then(|f| f["api_name"].as_str().map(str::to_owned))
                    .ok_or_else(|| {
                        CrmError::Fatal(format!(
                            "Zoho has no contact field \"{}\": run wacrm crm setup --connection {}",
                            self.config.whatsapp_field, self.config.sync.name
                        ))
                    })
            })
            .await
            .cloned()
    }

    /// Contacts already in Zoho for these inputs: by the WhatsApp-id field, else by the phone
    /// in any spelling (made by hand). `(index, id, by phone)`.
    async fn existing(
        &self,
        contacts: &[ContactSync],
        field: &str,
    ) -> Result<Vec<(usize, String, bool)>, CrmError> {
        let mut found = Vec::new();
        for (chunk_index, chunk) in contacts.chunks(CONTACTS_PER_QUERY).enumerate() {
            let ids: Vec<String> = chunk.iter().map(|c| c.whatsapp_id.clone()).collect();
            let phones: Vec<String> = chunk
                .iter()
                .flat_map(|c| phone_spellings(&c.whatsapp_id))
                .collect();
            let query = json!({"select_query": contacts_query(field, &ids, &phones)});
            let answer = self
                .send(Method::POST, "/crm/v8/coql", Some(&query), Retry::Safe)
                .await?;
            let rows = rows(&answer);
            for (offset, contact) in chunk.iter().enumerate() {
                let by_id = rows
                    .iter()
                    .find(|r| r[field].as_str() == Some(contact.whatsapp_id.as_str()));
                let spellings = phone_spellings(&contact.whatsapp_id);
                let by_phone = || {
                    rows.iter()
                        .filter(|r| {
                            ["Phone", "Mobile"].iter().any(|f| {
                                r[*f]
                                    .as_str()
                                    .is_some_and(|p| spellings.iter().any(|s| s == p))
                            })
                        })
                        .min_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned())
                };
                let index = chunk_index * CONTACTS_PER_QUERY + offset;
                if let Some(id) = by_id.and_then(|r| r["id"].as_str()) {
                    found.push((index, id.to_owned(), false));
                } else if let Some(id) = by_phone().and_then(|r| r["id"].as_str()) {
                    found.push((index, id.to_owned(), true));
                }
            }
        }
        Ok(found)
    }

    /// Deletes records of `module` (`Contacts`, `Notes`), 100 a call: whether any was there.
    /// A record that is not (`INVALID_DATA`: deleted by a person, or by an earlier attempt whose
    /// answer was lost) counts as gone; any other per-record refusal is an error.
    async fn delete(&self, module: &str, ids: &[String]) -> Result<bool, CrmError> {
        let mut any = false;
        for chunk in ids.chunks(RECORDS_PER_CALL) {
            let path = format!("/crm/v8/{module}?ids={}", chunk.join(","));
            // A delete whose every id is refused may come back as an error answer carrying the
            // same per-record results: read them either way.
            let answer = match with_error_answer(self.send(
                Method::DELETE,
                &path,
                None,
                Retry::Safe,
            ))
            .await
            {
                (Ok(answer), _) => answer,
                (Err(_), Some((400, body))) if body["data"].is_array() => body,
                (Err(e), _) => return Err(e),
            };
            for item in rows(&answer) {
                match item["code"].as_str() {
                    Some("SUCCESS") => any = true,
                    Some("INVALID_DATA") => {}
                    other => {
                        return Err(CrmError::Invalid(format!(
                            "Zoho refused to delete a record of {module}: {}",
                            other.unwrap_or("no code")
                        )))
                    }
                }
            }
        }
        Ok(any)
    }

    /// Creates notes (`(contact, lines)` each), up to 100 a call: one result per line of each
    /// note. A call refused whole as invalid is sent again note by note, and a refused note of
    /// several lines line by line, so only what Zoho refuses is dead-lettered.
    async fn create_notes(
        &self,
        notes: &[(String, Vec<&MessageSync>)],
    ) -> Vec<Vec<ItemResult<String>>> {
        let mut out = Vec::with_capacity(notes.len());
        for chunk in notes.chunks(RECORDS_PER_CALL) {
            match self.post_notes(chunk).await {
                Err(CrmError::Invalid(_)) if chunk.len() > 1 => {
                    for (contact, lines) in chunk {
                        out.push(self.one_note(contact, lines).await);
                    }
                }
                Ok(results) => {
                    for ((contact, lines), result) in chunk.iter().zip(results) {
                        match result {
                            Err(CrmError::Invalid(_)) if lines.len() > 1 => {
                                out.push(self.one_note(contact, lines).await);
                            }
                            result => out.push(vec![result; lines.len()]),
                        }
                    }
                }
                Err(e) => {
                    for (contact, lines) in chunk {
                        if chunk.len() == 1 && matches!(e, CrmError::Invalid(_)) {
                            out.push(self.one_note(contact, lines).await);
                        } else {
                            out.push(vec![Err(e.clone()); lines.len()]);
                        }
                    }
                }
            }
        }
        out
    }

    /// One note alone; when Zoho refuses it and it has several lines, each line alone.
    async fn one_note(&self, contact: &str, lines: &[&MessageSync]) -> Vec<ItemResult<String>> {
        let single = |r: Result<Vec<ItemResult<String>>, CrmError>| match r {
            Ok(mut results) if results.len() == 1 => results.remove(0),
            Ok(_) => Err(CrmError::Ambiguous("Zoho answered no result".into())),
            Err(e) => Err(e),
        };
        let note = [(contact.to_owned(), lines.to_vec())];
        match single(self.post_notes(&note).await) {
            Err(CrmError::Invalid(_)) if lines.len() > 1 => {
                let mut per_line = Vec::with_capacity(lines.len());
                for line in lines {
                    let alone = [(contact.to_owned(), vec![*line])];
                    per_line.push(single(self.post_notes(&alone).await));
                }
                per_line
            }
            result => vec![result; lines.len()],
        }
    }

    /// One `POST /crm/v8/Notes` (a create: never sent twice blindly); a result per note.
    async fn post_notes(
        &self,
        notes: &[(String, Vec<&MessageSync>)],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let data: Vec<Value> = notes
            .iter()
            .map(|(contact, lines)| {
                json!({
                    "Note_Title": "WhatsApp",
                    "Note_Content": transcript::content(lines),
                    "Parent_Id": {"module": {"api_name": "Contacts"}, "id": contact},
                })
            })
            .collect();
        let answer = self
            .send(
                Method::POST,
                "/crm/v8/Notes",
                Some(&json!({"data": data})),
                Retry::Once,
            )
            .await?;
        let results: Vec<ItemResult<String>> = rows(&answer).iter().map(record_result).collect();
        if results.len() != notes.len() {
            return Err(CrmError::Ambiguous(format!(
                "Zoho answered {} results for {} notes",
                results.len(),
                notes.len()
            )));
        }
        Ok(results)
    }
}

#[async_trait]
impl CrmAdapter for Zoho {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: RECORDS_PER_CALL,
            // A batch's messages in one call, so a contact's messages share notes.
            messages_per_batch: 2000,
            statuses_per_batch: RECORDS_PER_CALL,
        }
    }

    /// Creates the WhatsApp-id contact field (text, unique) if it is missing.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        if self.whatsapp_field().await?.is_some() {
            return Ok(Vec::new());
        }
        let body = json!({"fields": [{
            "field_label": self.config.whatsapp_field,
            "data_type": "text",
            "length": 64,
            "unique": {"casesensitive": "false"},
        }]});
        let answer = self
            .send(
                Method::POST,
                "/crm/v8/settings/fields?module=Contacts",
                Some(&body),
                Retry::Once,
            )
            .await?;
        if let Some(item) = answer["fields"].as_array().and_then(|f| f.first()) {
            record_result(item)?;
        }
        Ok(vec![format!(
            "contact field \"{}\" (unique)",
            self.config.whatsapp_field
        )])
    }

    /// The token is accepted and the WhatsApp-id field is there.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        match self.whatsapp_field().await? {
            Some(f) => Ok(vec![format!(
                "contact field \"{}\" ({})",
                self.config.whatsapp_field,
                f["api_name"].as_str().unwrap_or_default()
            )]),
            None => Err(CrmError::Fatal(format!(
                "contact field \"{}\" missing: run wacrm crm setup --connection {}",
                self.config.whatsapp_field, self.config.sync.name
            ))),
        }
    }

    /// Hand-made contacts found by phone get the WhatsApp id; the rest are upserted on the
    /// unique field (safe to repeat).
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let field = self.field().await?;
        let mut out: Vec<Option<ItemResult<String>>> = vec![None; contacts.len()];
        let existing = self.existing(contacts, &field).await?;
        let hand_made: Vec<Value> = existing
            .iter()
            .filter(|(_, _, by_phone)| *by_phone)
            .map(|(i, id, _)| json!({"id": id, field.as_str(): contacts[*i].whatsapp_id}))
            .collect();
        if !hand_made.is_empty() {
            self.send(
                Method::PUT,
                "/crm/v8/Contacts",
                Some(&json!({"data": hand_made})),
                Retry::Safe,
            )
            .await?;
        }
        for (i, id, _) in existing {
            out[i] = Some(Ok(id));
        }
        let rest: Vec<usize> = (0..contacts.len()).filter(|i| out[*i].is_none()).collect();
        for chunk in rest.chunks(RECORDS_PER_CALL) {
            let data: Vec<Value> = chunk
                .iter()
                .map(|i| contact_record(&contacts[*i], &field))
                .collect();
            let body = json!({"data": data, "duplicate_check_fields": [field]});
            let answer = self
                .send(
                    Method::POST,
                    "/crm/v8/Contacts/upsert",
                    Some(&body),
                    Retry::Safe,
                )
                .await?;
            let results = rows(&answer);
            for (n, i) in chunk.iter().enumerate() {
                out[*i] = Some(match results.get(n) {
                    Some(item) => record_result(item),
                    None => Err(CrmError::Transient("Zoho answered fewer results".into())),
                });
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(CrmError::Transient("not sent".into()))))
            .collect())
    }

    /// One note per contact (per `messages_per_note` of its messages); every message answers
    /// its note's id.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let mut notes: Vec<(String, Vec<&MessageSync>)> = Vec::new();
        let mut indices: Vec<Vec<usize>> = Vec::new();
        for (contact, note) in transcript::notes_of(messages, self.config.messages_per_note) {
            notes.push((contact, note.iter().map(|i| &messages[*i]).collect()));
            indices.push(note);
        }
        let results = self.create_notes(&notes).await;
        let mut out: Vec<ItemResult<String>> = messages
            .iter()
            .map(|_| Err(CrmError::Transient("not sent".into())))
            .collect();
        for (note_indices, note_results) in indices.into_iter().zip(results) {
            for (i, result) in note_indices.into_iter().zip(note_results) {
                out[i] = result;
            }
        }
        Ok(out)
    }

    /// The notes read (up to 100 a call), their lines' statuses set, written back in one call.
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let mut ids: Vec<&str> = statuses.iter().map(|s| s.crm_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out: Vec<ItemResult<()>> = statuses.iter().map(|_| Ok(())).collect();
        for chunk in ids.chunks(RECORDS_PER_CALL) {
            let answer = self
                .send(
                    Method::GET,
                    &format!("/crm/v8/Notes?ids={}&fields=Note_Content", chunk.join(",")),
                    None,
                    Retry::Safe,
                )
                .await?;
            let mut updates = Vec::new();
            for note in rows(&answer) {
                let (Some(id), Some(content)) =
                    (note["id"].as_str(), note["Note_Content"].as_str())
                else {
                    continue;
                };
                let mut content = content.to_owned();
                for (i, s) in statuses.iter().enumerate().filter(|(_, s)| s.crm_id == id) {
                    match transcript::with_status(&content, &s.wamid, s.state, s.failure.as_deref())
                    {
                        Some(updated) => content = updated,
                        None => {
                            out[i] = Err(CrmError::Invalid(format!(
                                "note {id} has no line of {}",
                                s.wamid
                            )))
                        }
                    }
                }
                updates.push(json!({"id": id, "Note_Content": content}));
            }
            for (i, s) in statuses.iter().enumerate() {
                if chunk.contains(&s.crm_id.as_str())
                    && !updates
                        .iter()
                        .any(|u| u["id"].as_str() == Some(s.crm_id.as_str()))
                {
                    out[i] = Err(CrmError::Invalid(format!("note {} not found", s.crm_id)));
                }
            }
            if !updates.is_empty() {
                self.send(
                    Method::PUT,
                    "/crm/v8/Notes",
                    Some(&json!({"data": updates})),
                    Retry::Safe,
                )
                .await?;
            }
        }
        Ok(out)
    }

    /// The notes holding these wamids, among the newest notes.
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let mut found: Vec<(String, String)> = Vec::new();
        for page in 1..=NOTE_PAGES {
            let answer = self
                .send(
                    Method::GET,
                    &format!(
                        "/crm/v8/Notes?fields=Note_Content,Parent_Id&sort_by=Created_Time&sort_order=desc&per_page=200&page={page}"
                    ),
                    None,
                    Retry::Safe,
                )
                .await?;
            for note in rows(&answer) {
                let (Some(id), Some(content)) =
                    (note["id"].as_str(), note["Note_Content"].as_str())
                else {
                    continue;
                };
                for wamid in transcript::wamids_in(content) {
                    if wamids.contains(&wamid) && !found.iter().any(|(w, _)| *w == wamid) {
                        found.push((wamid, id.to_owned()));
                    }
                }
            }
            if found.len() == wamids.len() || answer["info"]["more_records"] != true {
                break;
            }
        }
        Ok(found)
    }

    /// Deletes the notes wacrm logged (`DELETE /crm/v8/Notes?ids=…`), then the contact
    /// (`DELETE /crm/v8/Contacts?ids=…`). Zoho moves deleted records to its Recycle Bin, which
    /// it empties after 60 days. Notes first: Zoho's documents do not say that a record's notes
    /// go with it, and a crash in between leaves the contact, so the next attempt finds them
    /// again. Without a link, the contact is the one holding the WhatsApp id in the unique
    /// field (COQL, which sees a contact the moment it is written).
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let id = match &contact.crm_contact_id {
            Some(id) => Some(id.clone()),
            None => {
                let field = self.field().await?;
                let query = json!({
                    "select_query": contacts_query(
                        &field,
                        std::slice::from_ref(&contact.whatsapp_id),
                        &[],
                    )
                });
                let answer = self
                    .send(Method::POST, "/crm/v8/coql", Some(&query), Retry::Safe)
                    .await?;
                rows(&answer)
                    .iter()
                    .find(|r| r[field.as_str()].as_str() == Some(contact.whatsapp_id.as_str()))
                    .and_then(|r| r["id"].as_str().map(str::to_owned))
            }
        };
        let mut notes: Vec<String> = Vec::new();
        for note in &contact.message_crm_ids {
            if !notes.contains(note) {
                notes.push(note.clone());
            }
        }
        let mut erased = self.delete("Notes", &notes).await?;
        if let Some(id) = id {
            erased |= self.delete("Contacts", &[id]).await?;
        }
        Ok(if erased {
            Erasure::Erased
        } else {
            Erasure::NotFound
        })
    }

    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        let field = self.field().await?;
        for chunk in updates.chunks(RECORDS_PER_CALL) {
            let data: Vec<Value> = chunk
                .iter()
                .map(|(id, whatsapp_id)| json!({"id": id, field.as_str(): whatsapp_id}))
                .collect();
            self.send(
                Method::PUT,
                "/crm/v8/Contacts",
                Some(&json!({"data": data})),
                Retry::Safe,
            )
            .await?;
        }
        Ok(())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "zoho"` in the registry.
    ZohoKind,
    "zoho",
    ZohoConfig,
    Zoho::new
);
