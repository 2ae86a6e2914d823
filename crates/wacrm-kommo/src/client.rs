//! [`Kommo`]: the engine's calls as Kommo (amoCRM) API v4 requests.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use wacrm_crm::http::{Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{FileTokenStore, Grant, OAuth2};
use wacrm_crm::transcript;
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactProtocol, ContactSync, CrmAdapter, CrmError, Erasure,
    ItemResult, MessageSync, StatusSync,
};

use crate::config::KommoConfig;
use crate::mapping::{self, refused_request_ids, spellings};

/// Kommo's largest page (`limit` ≤ 250 on every list).
const PAGE: usize = 250;
/// Pages of the newest notes searched for pending wamids: a crash leaves them among the
/// account's latest common notes.
const NOTES_PAGES: usize = 4;
/// `[`, `]` in query keys (`filter[id][]`), percent-encoded.
const L: &str = "%5B";
const R: &str = "%5D";

/// What the adapter learns from Kommo and keeps: the WhatsApp-id field's id, and an index of
/// contacts by WhatsApp id and by phone digits.
#[derive(Default)]
struct Known {
    field_id: Option<i64>,
    by_whatsapp_id: HashMap<String, i64>,
    by_phone: HashMap<String, Vec<i64>>,
    /// Contacts holding a WhatsApp id (a phone match never takes one of them).
    claimed: HashSet<i64>,
    /// The latest `updated_at` seen: the next refresh asks for contacts updated since.
    watermark: Option<i64>,
}

impl Known {
    fn add(&mut self, contact: &Value, field_id: i64) {
        let Some(id) = contact["id"].as_i64() else {
            return;
        };
        let (whatsapp_id, phones) = mapping::contact_keys(contact, field_id);
        if let Some(w) = whatsapp_id {
            self.link(id, &w);
        }
        for d in phones {
            self.add_phone(id, d);
        }
        if let Some(t) = contact["updated_at"].as_i64() {
            if self.watermark.is_none_or(|w| t > w) {
                self.watermark = Some(t);
            }
        }
    }

    fn link(&mut self, id: i64, whatsapp_id: &str) {
        self.by_whatsapp_id.insert(whatsapp_id.to_owned(), id);
        self.claimed.insert(id);
    }

    fn add_phone(&mut self, id: i64, digits: String) {
        let ids = self.by_phone.entry(digits).or_default();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }

    /// Drops a contact from the index (an erased one: no later batch is logged on it).
    fn forget(&mut self, id: i64) {
        self.by_whatsapp_id.retain(|_, contact| *contact != id);
        for ids in self.by_phone.values_mut() {
            ids.retain(|contact| *contact != id);
        }
        self.by_phone.retain(|_, ids| !ids.is_empty());
        self.claimed.remove(&id);
    }

    /// The contact of a WhatsApp id: by the field, else the oldest contact without a WhatsApp
    /// id that has the phone in any spelling (and whether it came by phone).
    fn find(&self, whatsapp_id: &str) -> Option<(i64, bool)> {
        if let Some(id) = self.by_whatsapp_id.get(whatsapp_id) {
            return Some((*id, false));
        }
        spellings(whatsapp_id)
            .iter()
            .filter_map(|s| self.by_phone.get(s))
            .flatten()
            .filter(|id| !self.claimed.contains(id))
            .min()
            .map(|id| (*id, true))
    }
}

/// The Kommo adapter of one connection.
pub struct Kommo {
    http: CrmHttp,
    config: KommoConfig,
    known: Mutex<Known>,
}

/// Kommo's API as `CrmHttp` needs it: the account's address, the long-lived token (or OAuth 2
/// with the rotating refresh token kept in a file), and Kommo's 7 requests a second.
pub fn http_settings(config: &KommoConfig) -> Result<HttpSettings, CrmError> {
    let name = &config.sync.name;
    let Some(base_url) = config.account_url() else {
        return Err(CrmError::Fatal(format!(
            "[crm.connections.{name}] needs subdomain (acme for https://acme.kommo.com) or base_url"
        )));
    };
    let auth = if config.uses_oauth() {
        if config.client_secret.is_empty() || config.refresh_token.is_empty() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] uses OAuth (client_id): it needs client_secret and \
                 refresh_token too"
            )));
        }
        let token_url = if config.token_url.is_empty() {
            format!("{base_url}/oauth2/access_token")
        } else {
            config.token_url.clone()
        };
        let file = if config.token_file.is_empty() {
            std::path::Path::new("data/crm").join(format!("{name}.oauth.json"))
        } else {
            PathBuf::from(&config.token_file)
        };
        let mut oauth = OAuth2::new(
            token_url,
            config.client_id.clone(),
            config.client_secret.clone(),
            Grant::RefreshToken(config.refresh_token.clone()),
        )
        .with_refresh_token_store(Arc::new(FileTokenStore::new(file)));
        if !config.redirect_uri.is_empty() {
            oauth = oauth.with_form_field("redirect_uri", config.redirect_uri.clone());
        }
        Auth::OAuth2(Box::new(oauth))
    } else if config.token.is_empty() {
        return Err(CrmError::Fatal(format!(
            "[crm.connections.{name}] needs token (a private integration's long-lived token) \
             or client_id, client_secret and refresh_token (OAuth)"
        )));
    } else {
        Auth::Bearer(config.token.clone())
    };
    Ok(HttpSettings {
        base_url,
        auth,
        limit: Window::new(config.requests_per_second.max(1), Duration::from_secs(1)),
        search_limit: None,
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    })
}

/// The entities of a HAL answer (`_embedded.<key>`); none for a `204` (an empty list).
fn embedded(answer: &Value, key: &str) -> Vec<Value> {
    answer["_embedded"][key]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A `request_id` as text (Kommo echoes what it was sent; numbers are accepted too).
fn request_id(item: &Value) -> Option<String> {
    match &item["request_id"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(id: &str, what: &str) -> Result<i64, CrmError> {
    id.parse()
        .map_err(|_| CrmError::Invalid(format!("{what} id {id:?} is not a number")))
}

impl Kommo {
    /// An adapter for a connection.
    pub fn new(config: KommoConfig) -> Result<Self, CrmError> {
        let http = CrmHttp::new(
            &config.sync.name,
            http_settings(&config)?,
            Arc::new(mapping::classify),
        )?;
        Ok(Kommo {
            http,
            config,
            known: Mutex::new(Known::default()),
        })
    }

    fn per_request(&self) -> usize {
        self.config.writes_per_request.clamp(1, PAGE)
    }

    async fn get(&self, path: &str) -> Result<Value, CrmError> {
        self.http
            .send(Method::GET, path, None, Budget::General, Retry::Safe)
            .await
    }

    /// Every entity of a list (`path` has its query, without `page`/`limit`), page by page:
    /// until a `204`, a short page or a page without `_links.next`.
    async fn list(&self, path: &str, key: &str) -> Result<Vec<Value>, CrmError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        for page in 1.. {
            let answer = self
                .get(&format!("{path}{sep}limit={PAGE}&page={page}"))
                .await?;
            let items = embedded(&answer, key);
            let more = items.len() >= PAGE && !answer["_links"]["next"]["href"].is_null();
            out.extend(items);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// The token's account (`GET /api/v4/account`): proves the token is accepted.
    async fn account(&self) -> Result<String, CrmError> {
        let account = self.get("/api/v4/account").await?;
        let id = account["id"].as_i64().unwrap_or_default();
        let sub = account["subdomain"].as_str().unwrap_or_default();
        Ok(format!("account {id} ({sub})"))
    }

    /// The WhatsApp-id contact field, by code first, then by name.
    async fn whatsapp_field(&self) -> Result<Option<Value>, CrmError> {
        let fields = self
            .list("/api/v4/contacts/custom_fields", "custom_fields")
            .await?;
        let code = &self.config.whatsapp_field_code;
        let by_code = fields.iter().find(|f| {
            !code.is_empty()
                && f["code"]
                    .as_str()
                    .is_some_and(|c| c.eq_ignore_ascii_case(code))
        });
        let by_name = || {
            fields
                .iter()
                .find(|f| f["name"].as_str() == Some(self.config.whatsapp_field.as_str()))
        };
        Ok(by_code.or_else(by_name).cloned())
    }

    async fn field_id(&self) -> Result<i64, CrmError> {
        if let Some(id) = self.known.lock().await.field_id {
            return Ok(id);
        }
        let Some(id) = self.whatsapp_field().await?.and_then(|f| f["id"].as_i64()) else {
            return Err(self.missing_field());
        };
        self.known.lock().await.field_id = Some(id);
        Ok(id)
    }

    fn missing_field(&self) -> CrmError {
        CrmError::Fatal(format!(
            "Kommo has no contact field \"{}\" ({}): run wacrm crm setup --connection {}",
            self.config.whatsapp_field, self.config.whatsapp_field_code, self.config.sync.name
        ))
    }

    /// Brings the contact index up to date: every contact the first time, then those updated
    /// since the last look (`filter[updated_at][from]`, one call when little changed).
    async fn refresh_contacts(&self, field_id: i64) -> Result<(), CrmError> {
        let since = self.known.lock().await.watermark;
        let mut path = format!("/api/v4/contacts?order{L}id{R}=asc");
        if let Some(since) = since {
            // A second earlier: whether `from` is inclusive is not documented, and reading a
            // contact twice is harmless.
            path.push_str(&format!(
                "&filter{L}updated_at{R}{L}from{R}={}",
                since.saturating_sub(1)
            ));
        }
        let contacts = self.list(&path, "contacts").await?;
        // The watermark is Kommo's own `updated_at`, never this machine's clock: an empty
        // account is listed whole again (one call answering 204) until it has a contact.
        let mut known = self.known.lock().await;
        for contact in &contacts {
            known.add(contact, field_id);
        }
        Ok(())
    }

    /// Sends `items` (each with a `request_id`) to `path` with `method`, `per_request()` at a
    /// time; one result per item, in order: the entity Kommo answered for it, or why it was
    /// refused. Kommo refuses a whole call for one invalid item (400 with `validation-errors`
    /// naming its `request_id`): the named items are refused and the rest sent again; a refusal
    /// naming none of them is split in halves until the refused item is alone.
    async fn write_all(
        &self,
        method: Method,
        path: &str,
        key: &str,
        items: &[Value],
        retry: Retry,
    ) -> Vec<ItemResult<Value>> {
        let mut out: Vec<Option<ItemResult<Value>>> = vec![None; items.len()];
        let indices: Vec<usize> = (0..items.len()).collect();
        let mut work: Vec<Vec<usize>> = indices
            .chunks(self.per_request())
            .rev()
            .map(<[usize]>::to_vec)
            .collect();
        let rid = |i: usize| request_id(&items[i]).unwrap_or_default();
        while let Some(group) = work.pop() {
            let body = Value::Array(group.iter().map(|i| items[*i].clone()).collect());
            match self
                .http
                .send(method.clone(), path, Some(&body), Budget::General, retry)
                .await
            {
                Ok(answer) => {
                    let returned = embedded(&answer, key);
                    for (position, i) in group.iter().enumerate() {
                        let mine = returned
                            .iter()
                            .find(|e| request_id(e).is_some_and(|r| r == rid(*i)))
                            .or_else(|| {
                                // Without request ids, answers come in the order sent.
                                returned.get(position).filter(|e| request_id(e).is_none())
                            });
                        out[*i] = Some(mine.cloned().ok_or_else(|| {
                            CrmError::Transient(format!(
                                "Kommo's answer to {path} lacks request {}",
                                rid(*i)
                            ))
                        }));
                    }
                }
                Err(e @ CrmError::Invalid(_)) => {
                    let refused = refused_request_ids(&e);
                    let (named, rest): (Vec<usize>, Vec<usize>) =
                        group.iter().partition(|i| refused.contains(&rid(**i)));
                    if !named.is_empty() {
                        for i in named {
                            out[i] = Some(Err(e.clone()));
                        }
                        if !rest.is_empty() {
                            work.push(rest);
                        }
                    } else if group.len() > 1 {
                        let (a, b) = group.split_at(group.len() / 2);
                        work.push(b.to_vec());
                        work.push(a.to_vec());
                    } else {
                        out[group[0]] = Some(Err(e));
                    }
                }
                // The rest may still go through (another group's answer was lost).
                Err(e @ (CrmError::Transient(_) | CrmError::Ambiguous(_))) => {
                    for i in group {
                        out[i] = Some(Err(e.clone()));
                    }
                }
                // The token, the account or the rate: nothing more goes through now.
                Err(e) => {
                    for i in group.into_iter().chain(work.drain(..).flatten()) {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(CrmError::Transient("not sent".into()))))
            .collect()
    }

    /// Writes WhatsApp ids onto contacts (`PATCH /api/v4/contacts`, array form); the index
    /// learns them. Returns the ids of the contacts written.
    async fn set_whatsapp_ids(
        &self,
        updates: &[(i64, String)],
        field_id: i64,
    ) -> Result<Vec<i64>, CrmError> {
        let items: Vec<Value> = updates
            .iter()
            .enumerate()
            .map(|(n, (id, w))| {
                json!({
                    "id": id,
                    "custom_fields_values": [mapping::whatsapp_field(field_id, w)],
                    "request_id": (n + 1).to_string(),
                })
            })
            .collect();
        let results = self
            .write_all(
                Method::PATCH,
                "/api/v4/contacts",
                "contacts",
                &items,
                Retry::Safe,
            )
            .await;
        let mut written = Vec::new();
        let mut known = self.known.lock().await;
        for ((id, w), result) in updates.iter().zip(results) {
            match result {
                Ok(_) => {
                    known.link(*id, w);
                    written.push(*id);
                }
                // The contact is still the one: the link table routes its messages; only the
                // exact lookup by field is lost for it.
                Err(e @ CrmError::Invalid(_)) => {
                    tracing::warn!(connection = %self.config.sync.name, contact = id, error = %e, "Kommo refused writing the WhatsApp id onto a contact");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Notes of `messages` (one contact's lines each, at most `messages_per_note`), written
    /// in batches; one result per message. A note Kommo refuses is written again line by line,
    /// so only the line it refuses is refused.
    async fn write_notes(&self, messages: &[MessageSync]) -> Vec<ItemResult<String>> {
        let mut out: Vec<ItemResult<String>> = messages
            .iter()
            .map(|_| Err(CrmError::Transient("not sent".into())))
            .collect();
        let mut notes: Vec<Vec<usize>> = Vec::new();
        for (contact, indices) in transcript::notes_of(messages, self.config.messages_per_note) {
            match number(&contact, "contact") {
                Ok(_) => notes.push(indices),
                Err(e) => {
                    for i in indices {
                        out[i] = Err(e.clone());
                    }
                }
            }
        }
        let mut retry_alone: Vec<usize> = Vec::new();
        for results in [false, true] {
            let groups: Vec<Vec<usize>> = if results {
                retry_alone.iter().map(|i| vec![*i]).collect()
            } else {
                std::mem::take(&mut notes)
            };
            if groups.is_empty() {
                continue;
            }
            let items: Vec<Value> = groups
                .iter()
                .enumerate()
                .map(|(n, indices)| self.note_item(messages, indices, n + 1))
                .collect();
            let answers = self
                .write_all(
                    Method::POST,
                    "/api/v4/contacts/notes",
                    "notes",
                    &items,
                    Retry::Once,
                )
                .await;
            for (indices, answer) in groups.iter().zip(answers) {
                match answer {
                    Ok(note) => {
                        let id = note["id"].as_i64().map(|id| id.to_string()).ok_or_else(|| {
                            CrmError::Transient("Kommo answered a note without an id".into())
                        });
                        for i in indices {
                            out[*i] = id.clone();
                        }
                    }
                    Err(CrmError::Invalid(_)) if !results && indices.len() > 1 => {
                        retry_alone.extend(indices);
                    }
                    Err(e) => {
                        for i in indices {
                            out[*i] = Err(e.clone());
                        }
                    }
                }
            }
        }
        out
    }

    /// One note of `POST /api/v4/contacts/notes`: a `common` note on the contact with the lines
    /// of these messages, dated at the first message's WhatsApp time.
    fn note_item(&self, messages: &[MessageSync], indices: &[usize], request: usize) -> Value {
        let lines: Vec<&MessageSync> = indices.iter().map(|i| &messages[*i]).collect();
        let contact = lines
            .first()
            .and_then(|m| m.crm_contact_id.parse::<i64>().ok())
            .unwrap_or_default();
        let first = lines.iter().map(|m| m.timestamp).min().unwrap_or_default();
        json!({
            "entity_id": contact,
            "note_type": "common",
            "params": {"text": mapping::note_text(&lines)},
            "created_at": first.timestamp(),
            "request_id": request.to_string(),
        })
    }

    /// The notes of these ids (`GET /api/v4/contacts/notes?filter[id][]=…`), by id.
    async fn notes_by_id(&self, ids: &[i64]) -> Result<HashMap<i64, Value>, CrmError> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(self.per_request()) {
            let filter: String = chunk
                .iter()
                .map(|id| format!("&filter{L}id{R}{L}{R}={id}"))
                .collect();
            let path = format!("/api/v4/contacts/notes?limit={PAGE}{filter}");
            for note in embedded(&self.get(&path).await?, "notes") {
                if let Some(id) = note["id"].as_i64() {
                    out.insert(id, note);
                }
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl CrmAdapter for Kommo {
    fn limits(&self) -> AdapterLimits {
        // One find per 250 contacts (a page of the index refresh); writes go in arrays of
        // `writes_per_request` inside each call, so a batch's messages come in one call and a
        // contact's messages share notes.
        AdapterLimits {
            contacts_per_batch: PAGE,
            messages_per_batch: 2000,
            statuses_per_batch: PAGE,
        }
    }

    fn contact_protocol(&self) -> ContactProtocol {
        ContactProtocol::FindThenCreate
    }

    /// Creates the WhatsApp-id contact field (`text`, code `WHATSAPP_ID`) if it is missing.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        self.account().await?;
        if self.whatsapp_field().await?.is_some() {
            return Ok(Vec::new());
        }
        let body = json!([{
            "name": self.config.whatsapp_field,
            "type": "text",
            "code": self.config.whatsapp_field_code,
            "request_id": "1",
        }]);
        let answer = self
            .http
            .send(
                Method::POST,
                "/api/v4/contacts/custom_fields",
                Some(&body),
                Budget::General,
                Retry::Once,
            )
            .await?;
        let id = embedded(&answer, "custom_fields")
            .first()
            .and_then(|f| f["id"].as_i64())
            .unwrap_or_default();
        Ok(vec![format!(
            "contact field \"{}\" (code {}, id {id})",
            self.config.whatsapp_field, self.config.whatsapp_field_code
        )])
    }

    /// The token is accepted and the WhatsApp-id field is there.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        let account = self.account().await?;
        match self.whatsapp_field().await? {
            Some(field) => Ok(vec![
                format!("token accepted: {account}"),
                format!(
                    "contact field \"{}\" (id {})",
                    field["name"].as_str().unwrap_or_default(),
                    field["id"].as_i64().unwrap_or_default()
                ),
            ]),
            None => Err(self.missing_field()),
        }
    }

    async fn upsert_contacts(
        &self,
        _contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Err(CrmError::Fatal(
            "Kommo has no upsert: contacts go through find_contacts and create_contacts".into(),
        ))
    }

    /// By the WhatsApp-id field, else by every phone spelling (a contact made by hand, which
    /// then gets the WhatsApp id written on), from the index.
    async fn find_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<Option<String>>, CrmError> {
        let field_id = self.field_id().await?;
        self.refresh_contacts(field_id).await?;
        let mut found = Vec::with_capacity(contacts.len());
        let mut links: Vec<(i64, String)> = Vec::new();
        {
            let known = self.known.lock().await;
            for c in contacts {
                let mut hit = known.find(&c.whatsapp_id);
                if let Some((id, true)) = hit {
                    // Two WhatsApp ids of one batch never take the same hand-made contact.
                    if links.iter().any(|(l, _)| *l == id) {
                        hit = None;
                    } else {
                        links.push((id, c.whatsapp_id.clone()));
                    }
                }
                found.push(hit.map(|(id, _)| id.to_string()));
            }
        }
        if !links.is_empty() {
            self.set_whatsapp_ids(&links, field_id).await?;
        }
        Ok(found)
    }

    /// `POST /api/v4/contacts`, `writes_per_request` a call, matched by `request_id`.
    async fn create_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let field_id = self.field_id().await?;
        let items: Vec<Value> = contacts
            .iter()
            .enumerate()
            .map(|(n, c)| mapping::contact_body(c, field_id, &(n + 1).to_string()))
            .collect();
        let results = self
            .write_all(
                Method::POST,
                "/api/v4/contacts",
                "contacts",
                &items,
                Retry::Once,
            )
            .await;
        let mut known = self.known.lock().await;
        Ok(contacts
            .iter()
            .zip(results)
            .map(|(c, result)| {
                let id = result?["id"].as_i64().ok_or_else(|| {
                    CrmError::Ambiguous("Kommo answered a contact without an id".into())
                })?;
                known.link(id, &c.whatsapp_id);
                if let Some(phone) = &c.phone {
                    known.add_phone(id, mapping::digits(&phone.to_string()));
                }
                Ok(id.to_string())
            })
            .collect())
    }

    /// One note per contact (per `messages_per_note` of its messages); every message answers
    /// its note's id.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Ok(self.write_notes(messages).await)
    }

    /// Each note once: read (`GET …/notes?filter[id][]=…`), its lines' statuses set, written
    /// back (`PATCH /api/v4/contacts/notes`, array form).
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let mut out: Vec<ItemResult<()>> = statuses.iter().map(|_| Ok(())).collect();
        let mut by_note: Vec<(i64, Vec<usize>)> = Vec::new();
        for (i, s) in statuses.iter().enumerate() {
            match number(&s.crm_id, "note") {
                Ok(note) => match by_note.iter_mut().find(|(n, _)| *n == note) {
                    Some((_, indices)) => indices.push(i),
                    None => by_note.push((note, vec![i])),
                },
                Err(e) => out[i] = Err(e),
            }
        }
        let ids: Vec<i64> = by_note.iter().map(|(n, _)| *n).collect();
        let current = self.notes_by_id(&ids).await?;
        let mut items: Vec<Value> = Vec::new();
        let mut written: Vec<Vec<usize>> = Vec::new();
        for (note, indices) in by_note {
            let Some(found) = current.get(&note) else {
                for i in indices {
                    out[i] = Err(CrmError::Invalid(format!("Kommo has no note {note}")));
                }
                continue;
            };
            let mut text = found["params"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut changed = Vec::new();
            for i in indices {
                let s = &statuses[i];
                match mapping::with_status(&text, &s.wamid, s.state, s.failure.as_deref()) {
                    Some(updated) => {
                        text = updated;
                        changed.push(i);
                    }
                    None => {
                        out[i] = Err(CrmError::Invalid(format!(
                            "note {note} has no line of {}",
                            s.wamid
                        )))
                    }
                }
            }
            if changed.is_empty() {
                continue;
            }
            items.push(json!({
                "id": note,
                "entity_id": found["entity_id"],
                "note_type": "common",
                "params": {"text": text},
                "request_id": (items.len() + 1).to_string(),
            }));
            written.push(changed);
        }
        let results = self
            .write_all(
                Method::PATCH,
                "/api/v4/contacts/notes",
                "notes",
                &items,
                Retry::Safe,
            )
            .await;
        for (indices, result) in written.into_iter().zip(results) {
            match result {
                Ok(_) => {}
                Err(e @ CrmError::Invalid(_)) => {
                    for i in indices {
                        out[i] = Err(e.clone());
                    }
                }
                // Rewriting a note is safe to repeat: the engine sends the batch again.
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The notes holding these wamids, among the account's newest common contact notes.
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let mut found: Vec<(String, String)> = Vec::new();
        for page in 1..=NOTES_PAGES {
            let answer = self
                .get(&format!(
                    "/api/v4/contacts/notes?filter{L}note_type{R}{L}{R}=common&order{L}id{R}=desc&limit={PAGE}&page={page}"
                ))
                .await?;
            let notes = embedded(&answer, "notes");
            for note in &notes {
                let (Some(id), Some(text)) = (note["id"].as_i64(), note["params"]["text"].as_str())
                else {
                    continue;
                };
                for wamid in mapping::wamids_in(text) {
                    if wamids.contains(&wamid) && !found.iter().any(|(w, _)| *w == wamid) {
                        found.push((wamid, id.to_string()));
                    }
                }
            }
            if found.len() == wamids.len() || notes.len() < PAGE {
                break;
            }
        }
        Ok(found)
    }

    /// Kommo's API v4 deletes no contacts (its contacts API lists, adds and edits; no delete),
    /// so the contact is a [`Erasure::Manual`] step. What wacrm wrote goes now: the text of its
    /// notes (the ledger's) is replaced by [`mapping::ERASED_NOTE`] (`PATCH
    /// /api/v4/contacts/notes`, safe to repeat), and the contact leaves the adapter's index, so
    /// nothing more is logged on it. `NotFound` when there is neither a contact nor a note.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let id = match &contact.crm_contact_id {
            Some(id) => Some(number(id, "contact")?),
            None => {
                let field_id = self.field_id().await?;
                self.refresh_contacts(field_id).await?;
                self.known
                    .lock()
                    .await
                    .by_whatsapp_id
                    .get(&contact.whatsapp_id)
                    .copied()
            }
        };
        let mut ids: Vec<i64> = Vec::new();
        for note in &contact.message_crm_ids {
            let note = number(note, "note")?;
            if !ids.contains(&note) {
                ids.push(note);
            }
        }
        let current = self.notes_by_id(&ids).await?;
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|note| current.get(note).map(|found| (note, found)))
            .filter(|(_, found)| found["params"]["text"].as_str() != Some(mapping::ERASED_NOTE))
            .enumerate()
            .map(|(i, (note, found))| {
                json!({
                    "id": note,
                    "entity_id": found["entity_id"],
                    "note_type": "common",
                    "params": {"text": mapping::ERASED_NOTE},
                    "request_id": (i + 1).to_string(),
                })
            })
            .collect();
        let results = self
            .write_all(
                Method::PATCH,
                "/api/v4/contacts/notes",
                "notes",
                &items,
                Retry::Safe,
            )
            .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(e);
        }
        let Some(id) = id else {
            return Ok(if current.is_empty() {
                Erasure::NotFound
            } else {
                Erasure::Manual(
                    "Kommo's API cannot delete contacts: wacrm blanked its notes; delete the \
                     contact they were on by hand in Kommo"
                        .into(),
                )
            });
        };
        self.known.lock().await.forget(id);
        let address = self.config.account_url().unwrap_or_default();
        Ok(Erasure::Manual(format!(
            "Kommo's API cannot delete contacts: delete contact {id} by hand in Kommo (its page, \
             {address}/contacts/detail/{id}: ⋯ › Delete), with any lead that is only about this \
             person. wacrm already blanked the text of its {} note(s) on it.",
            current.len()
        )))
    }

    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        let field_id = self.field_id().await?;
        let mut parsed = Vec::with_capacity(updates.len());
        for (contact, whatsapp_id) in updates {
            parsed.push((number(contact, "contact")?, whatsapp_id.clone()));
        }
        self.set_whatsapp_ids(&parsed, field_id).await.map(|_| ())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "kommo"` in the registry.
    KommoKind,
    "kommo",
    KommoConfig,
    Kommo::new
);
