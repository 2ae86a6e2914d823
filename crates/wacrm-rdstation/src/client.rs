//! [`RdStation`]: the engine's calls as RD Station CRM v2 requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::{Mutex, OnceCell};
use wacrm_crm::adapter::{noting_error_answers, unless_gone};
use wacrm_crm::http::{Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{FileTokenStore, Grant, OAuth2};
use wacrm_crm::{batch, transcript};
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactProtocol, ContactSync, CrmAdapter, CrmError, Erasure,
    ItemResult, MessageSync, StatusSync,
};

use crate::config::{LogTo, RdStationConfig};
use crate::mapping::{self, digits, encode, phone_spellings, rdql_in};

/// Requests in flight at once (the limiter still spaces them).
const CONCURRENT: usize = 4;
/// Contacts per lookup: each brings about ten phone spellings into the filter, which stays a
/// URL of a few kilobytes.
const CONTACTS_PER_QUERY: usize = 10;
/// Contacts per deal lookup (24-hex ids in one `contact_id:(…)`).
const CONTACTS_PER_DEAL_QUERY: usize = 50;
/// The largest page RD Station's n8n node asks for.
const PAGE: usize = 200;
/// Pages of a lookup read at most (a filter matching more is a sign of a wrong filter).
const MAX_PAGES: usize = 5;
/// Pages of the newest WhatsApp tasks searched for pending wamids.
const TASK_PAGES: usize = 5;
/// Contact names kept in memory, for naming the deals wacrm creates.
const NAMES_KEPT: usize = 10_000;

/// The RD Station CRM adapter of one connection.
pub struct RdStation {
    http: CrmHttp,
    config: RdStationConfig,
    /// The user wacrm acts as (read once).
    user: OnceCell<String>,
    /// The WhatsApp-id custom field was seen (checked once).
    field: OnceCell<()>,
    /// Contacts' names as RD Station holds them, for the deals wacrm names after them.
    names: Mutex<HashMap<String, String>>,
}

/// RD Station's API as `CrmHttp` needs it: OAuth 2 with the rotating refresh token kept in
/// `token_file`, `Authorization: Bearer`, 120 requests a minute.
pub fn http_settings(config: &RdStationConfig) -> HttpSettings {
    let oauth = OAuth2::new(
        config.token_url.clone(),
        config.client_id.clone(),
        config.client_secret.clone(),
        Grant::RefreshToken(config.refresh_token.clone()),
    )
    .with_refresh_token_store(Arc::new(FileTokenStore::new(config.token_path())));
    HttpSettings {
        base_url: config.base_url.clone(),
        auth: Auth::OAuth2(Box::new(oauth)),
        limit: Window::new(config.requests_per_minute.max(2), Duration::from_secs(60)),
        search_limit: None,
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    }
}

/// The rows of a list answer: `data` (crm-v2-introduction), or the resource's own key, which
/// RD Station's n8n node also reads for users and custom fields.
fn rows(answer: &Value, key: &str) -> Vec<Value> {
    answer["data"]
        .as_array()
        .or_else(|| answer[key].as_array())
        .cloned()
        .unwrap_or_default()
}

fn id_of(answer: &Value) -> Result<String, CrmError> {
    answer["data"]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CrmError::Transient("RD Station answered without an id".into()))
}

impl RdStation {
    /// An adapter for a connection.
    pub fn new(config: RdStationConfig) -> Result<Self, CrmError> {
        let name = &config.sync.name;
        if config.client_id.is_empty()
            || config.client_secret.is_empty()
            || config.refresh_token.is_empty()
        {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] needs client_id, client_secret and refresh_token"
            )));
        }
        if config.log_to == LogTo::WhatsappDeal && config.pipeline_id.is_empty() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] log_to = \"whatsapp_deal\" needs pipeline_id"
            )));
        }
        // Erasure tells a 404 (deleted already) from other refusals.
        let http = CrmHttp::new(
            name,
            http_settings(&config),
            noting_error_answers(Arc::new(mapping::classify)),
        )?;
        Ok(RdStation {
            http,
            config,
            user: OnceCell::new(),
            field: OnceCell::new(),
            names: Mutex::new(HashMap::new()),
        })
    }

    async fn get(&self, path: &str) -> Result<Value, CrmError> {
        self.http
            .send(Method::GET, path, None, Budget::General, Retry::Safe)
            .await
    }

    async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        retry: Retry,
    ) -> Result<Value, CrmError> {
        self.http
            .send(method, path, Some(body), Budget::General, retry)
            .await
    }

    /// Every row of a filtered list, page by page (`page[number]`, `page[size]`, until
    /// `links.next` is gone).
    async fn list(&self, resource: &str, query: &str) -> Result<Vec<Value>, CrmError> {
        let mut out = Vec::new();
        for number in 1..=MAX_PAGES {
            let answer = self
                .get(&format!(
                    "/{resource}?{query}&page%5Bnumber%5D={number}&page%5Bsize%5D={PAGE}"
                ))
                .await?;
            let page = rows(&answer, resource);
            let more = answer["links"]["next"].is_string() && page.len() == PAGE;
            out.extend(page);
            if !more {
                break;
            }
        }
        Ok(out)
    }

    /// The account's users (`GET /users`, the n8n node's credential test).
    async fn users(&self) -> Result<Vec<Value>, CrmError> {
        Ok(rows(&self.get("/users").await?, "users"))
    }

    /// The user wacrm acts as: `user_id`, or the user of `user_email`, or the only user.
    async fn user_id(&self) -> Result<String, CrmError> {
        self.user
            .get_or_try_init(|| async {
                let users = self.users().await?;
                let name = &self.config.sync.name;
                let id_of = |u: &Value| u["id"].as_str().map(str::to_owned);
                let found = if !self.config.user_id.is_empty() {
                    users
                        .iter()
                        .find(|u| u["id"].as_str() == Some(self.config.user_id.as_str()))
                        .and_then(id_of)
                } else if !self.config.user_email.is_empty() {
                    users
                        .iter()
                        .find(|u| {
                            u["email"]
                                .as_str()
                                .is_some_and(|e| e.eq_ignore_ascii_case(&self.config.user_email))
                        })
                        .and_then(id_of)
                } else if users.len() == 1 {
                    users.first().and_then(id_of)
                } else {
                    return Err(CrmError::Fatal(format!(
                        "RD Station has {} users: set user_email (or user_id) of \
                         [crm.connections.{name}] to the one wacrm acts as",
                        users.len()
                    )));
                };
                found.ok_or_else(|| {
                    CrmError::Fatal(format!(
                        "the user_id or user_email of [crm.connections.{name}] is not a user \
                         of this RD Station account"
                    ))
                })
            })
            .await
            .cloned()
    }

    /// The WhatsApp-id contact field as RD Station lists it (`GET /custom_fields`).
    async fn whatsapp_field(&self) -> Result<Option<Value>, CrmError> {
        let fields = rows(&self.get("/custom_fields").await?, "custom_fields");
        Ok(fields.into_iter().find(|f| {
            f["slug"].as_str() == Some(self.config.whatsapp_field.as_str())
                && f["entity"].as_str().is_none_or(|e| e == "contact")
        }))
    }

    fn missing_field(&self) -> CrmError {
        CrmError::Fatal(format!(
            "RD Station has no contact custom field with slug \"{}\": an admin creates it \
             (Configurações → Campos personalizados → Contatos, a text field \"WhatsApp ID\"), \
             then sets whatsapp_field to its slug and runs wacrm crm setup --connection {}",
            self.config.whatsapp_field, self.config.sync.name
        ))
    }

    /// Fails at once, and clearly, when the field is missing (checked once a process).
    async fn ensure_field(&self) -> Result<(), CrmError> {
        self.field
            .get_or_try_init(|| async {
                match self.whatsapp_field().await? {
                    Some(_) => Ok(()),
                    None => Err(self.missing_field()),
                }
            })
            .await
            .map(|_| ())
    }

    async fn remember(&self, contact: &Value) {
        if let (Some(id), Some(name)) = (contact["id"].as_str(), contact["name"].as_str()) {
            let mut names = self.names.lock().await;
            // A cache, not a copy of the CRM: a name forgotten is read again when needed.
            if names.len() >= NAMES_KEPT {
                names.clear();
            }
            names.insert(id.to_owned(), name.to_owned());
        }
    }

    /// Contacts holding one of these WhatsApp ids in the field, or one of the phones in any
    /// spelling: one request per ten contacts, `@<slug>:(…) or phone:(…)` (RDQL's "in" on a
    /// custom field is the RDQL page's own example, `@prioridade:(alta,media)`).
    async fn lookup(&self, chunk: &[ContactSync]) -> Result<Vec<Value>, CrmError> {
        let slug = &self.config.whatsapp_field;
        let ids: Vec<String> = chunk.iter().map(|c| c.whatsapp_id.clone()).collect();
        let phones: Vec<String> = chunk
            .iter()
            .flat_map(|c| phone_spellings(&c.whatsapp_id))
            .collect();
        let mut filter = rdql_in(&format!("@{slug}"), &ids);
        if !phones.is_empty() {
            filter = format!("{filter} or {}", rdql_in("phone", &phones));
        }
        self.list("contacts", &format!("filter={}", encode(&filter)))
            .await
    }

    /// Writes the WhatsApp id onto a contact, sending back its phones, e-mails and custom
    /// fields (the update replaces what it is sent).
    async fn link(&self, contact: &Value, whatsapp_id: &str) -> Result<(), CrmError> {
        let id = contact["id"].as_str().unwrap_or_default();
        let body = mapping::link_body(contact, &self.config.whatsapp_field, whatsapp_id);
        self.write(Method::PUT, &format!("/contacts/{id}"), &body, Retry::Safe)
            .await
            .map(|_| ())
    }

    async fn create_contact(&self, body: Value) -> ItemResult<String> {
        let answer = self
            .write(Method::POST, "/contacts", &body, Retry::Once)
            .await?;
        self.remember(&answer["data"]).await;
        id_of(&answer)
    }

    /// A contact's name as RD Station holds it (remembered, else read).
    async fn name_of(&self, contact: &str) -> Result<String, CrmError> {
        if let Some(name) = self.names.lock().await.get(contact) {
            return Ok(name.clone());
        }
        let answer = self.get(&format!("/contacts/{contact}")).await?;
        self.remember(&answer["data"]).await;
        Ok(answer["data"]["name"]
            .as_str()
            .unwrap_or("Contato do WhatsApp")
            .to_owned())
    }

    /// The deal each contact's messages go on: found (one request per fifty contacts), else
    /// created. A create whose answer is lost is found by the next lookup.
    async fn deals_for(&self, contacts: &[String]) -> HashMap<String, Result<String, CrmError>> {
        let mut out: HashMap<String, Result<String, CrmError>> = HashMap::new();
        for chunk in contacts.chunks(CONTACTS_PER_DEAL_QUERY) {
            let (filter, sort) = match self.config.log_to {
                LogTo::Deal => (
                    format!("{} status:ongoing", rdql_in("contact_id", chunk)),
                    "sort%5Bupdated_at%5D=desc",
                ),
                LogTo::WhatsappDeal => (
                    format!(
                        "{} pipeline_id:{}",
                        rdql_in("contact_id", chunk),
                        mapping::rdql_value(&self.config.pipeline_id)
                    ),
                    "sort%5Bcreated_at%5D=asc",
                ),
            };
            let found = match self
                .list("deals", &format!("filter={}&{sort}", encode(&filter)))
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    for c in chunk {
                        out.insert(c.clone(), Err(e.clone()));
                    }
                    continue;
                }
            };
            for deal in &found {
                let Some(id) = deal["id"].as_str() else {
                    continue;
                };
                for c in deal["contact_ids"].as_array().into_iter().flatten() {
                    if let Some(c) = c.as_str().filter(|c| chunk.iter().any(|x| x == c)) {
                        out.entry(c.to_owned()).or_insert_with(|| Ok(id.to_owned()));
                    }
                }
            }
        }
        let missing: Vec<String> = contacts
            .iter()
            .filter(|c| !out.contains_key(*c))
            .cloned()
            .collect();
        let creates: Vec<_> = missing.iter().map(|c| self.create_deal(c)).collect();
        let created: Vec<Result<String, CrmError>> = futures::stream::iter(creates)
            .buffered(CONCURRENT)
            .collect()
            .await;
        out.extend(missing.into_iter().zip(created));
        out
    }

    /// `POST /deals` named after the contact, owned by wacrm's user, in the configured
    /// pipeline and stage (DealsResource.ts: `name`, `owner_id`, `status: "ongoing"`,
    /// `contact_ids`, `pipeline_id`, `stage_id`).
    async fn create_deal(&self, contact: &str) -> Result<String, CrmError> {
        let owner = self.user_id().await?;
        let name = self.name_of(contact).await?;
        let mut data = json!({
            "name": format!("{} — {name}", self.config.deal_name),
            "owner_id": owner,
            "status": "ongoing",
            "contact_ids": [contact],
        });
        if !self.config.pipeline_id.is_empty() {
            data["pipeline_id"] = json!(self.config.pipeline_id);
            if !self.config.stage_id.is_empty() {
                data["stage_id"] = json!(self.config.stage_id);
            }
        }
        let answer = self
            .write(Method::POST, "/deals", &json!({"data": data}), Retry::Once)
            .await?;
        id_of(&answer)
    }

    /// One task of `lines` on `deal`: one result per line. When RD Station refuses it as
    /// invalid, each line gets a task of its own, so only the line it refuses is
    /// dead-lettered.
    async fn task_of(
        &self,
        deal: Result<String, CrmError>,
        indices: Vec<usize>,
        lines: Vec<MessageSync>,
    ) -> (Vec<usize>, Vec<ItemResult<String>>) {
        let deal = match deal {
            Ok(deal) => deal,
            Err(e) => return (indices, vec![Err(e); lines.len()]),
        };
        let all: Vec<&MessageSync> = lines.iter().collect();
        let results = match self.create_task(&deal, &all).await {
            Err(CrmError::Invalid(_)) if lines.len() > 1 => {
                let mut one_by_one = Vec::with_capacity(lines.len());
                for line in &lines {
                    one_by_one.push(self.create_task(&deal, &[line]).await);
                }
                one_by_one
            }
            outcome => vec![outcome; lines.len()],
        };
        (indices, results)
    }

    /// `POST /tasks` of type `whatsapp` (TasksResource.ts: `name`, `deal_id`, `created_by_id`,
    /// `description`, `type`, `due_date`), due at the first message's time; then, with
    /// `complete_tasks`, `PUT {status: "completed"}` (status is set by update in the node).
    async fn create_task(&self, deal: &str, lines: &[&MessageSync]) -> Result<String, CrmError> {
        let user = self.user_id().await?;
        let first = lines.iter().map(|m| m.timestamp).min().unwrap_or_default();
        let body = json!({"data": {
            "name": mapping::task_name(lines.len()),
            "deal_id": deal,
            "created_by_id": user,
            "type": "whatsapp",
            "description": mapping::description(lines),
            "due_date": mapping::iso_time(first),
        }});
        let answer = self
            .write(Method::POST, "/tasks", &body, Retry::Once)
            .await?;
        let id = id_of(&answer)?;
        if self.config.complete_tasks {
            self.complete(&id).await?;
        }
        Ok(id)
    }

    /// `PUT /tasks/{id} {status: "completed"}`. Only a fatal error is returned: the messages
    /// are logged whatever happens here, and the task only stays open in the salesperson's
    /// list — not worth logging them twice.
    async fn complete(&self, task: &str) -> Result<(), CrmError> {
        let done = json!({"data": {"status": "completed"}});
        match self
            .write(Method::PUT, &format!("/tasks/{task}"), &done, Retry::Safe)
            .await
        {
            Err(e) if e.class() == wacrm_core::ErrorClass::Fatal => Err(e),
            Err(e) => {
                tracing::warn!(connection = %self.config.sync.name, error = %e, "an RD Station task was logged but could not be marked completed");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// Rewrites one task's description with new statuses of its lines.
    async fn update_task(&self, task: &str, statuses: &[&StatusSync]) -> Result<(), CrmError> {
        let current = self.get(&format!("/tasks/{task}")).await?;
        let Some(mut text) = current["data"]["description"].as_str().map(str::to_owned) else {
            return Err(CrmError::Invalid(format!("task {task} has no description")));
        };
        for s in statuses {
            match mapping::with_status(&text, &s.wamid, s.state, s.failure.as_deref()) {
                Some(updated) => text = updated,
                None => {
                    return Err(CrmError::Invalid(format!(
                        "task {task} has no line of {}",
                        s.wamid
                    )))
                }
            }
        }
        let body = json!({"data": {"description": text}});
        self.write(Method::PUT, &format!("/tasks/{task}"), &body, Retry::Safe)
            .await
            .map(|_| ())
    }

    async fn statuses_of(
        &self,
        task: String,
        indices: Vec<usize>,
        statuses: Vec<StatusSync>,
    ) -> (Vec<usize>, Result<(), CrmError>) {
        let statuses: Vec<&StatusSync> = statuses.iter().collect();
        (indices, self.update_task(&task, &statuses).await)
    }
}

#[async_trait]
impl CrmAdapter for RdStation {
    fn limits(&self) -> AdapterLimits {
        // A batch's messages come in one call so a contact's messages share a task.
        AdapterLimits {
            contacts_per_batch: 500,
            messages_per_batch: 2000,
            statuses_per_batch: 500,
        }
    }

    fn contact_protocol(&self) -> ContactProtocol {
        ContactProtocol::FindThenCreate
    }

    /// RD Station documents no way to create a custom field through the API: `setup` checks
    /// the user and the WhatsApp-id field, and says what an admin must create when it is
    /// missing. It creates nothing.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        self.user_id().await?;
        match self.whatsapp_field().await? {
            Some(_) => Ok(Vec::new()),
            None => Err(self.missing_field()),
        }
    }

    /// The token is accepted, the user resolves, the WhatsApp-id field (and the configured
    /// pipeline) exist.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        let user = self.user_id().await?;
        let mut out = vec![format!("token accepted; acting as user {user}")];
        let Some(field) = self.whatsapp_field().await? else {
            return Err(self.missing_field());
        };
        out.push(format!(
            "contact field \"{}\" ({})",
            field["name"]
                .as_str()
                .or_else(|| field["label"].as_str())
                .unwrap_or_default(),
            self.config.whatsapp_field
        ));
        if !self.config.pipeline_id.is_empty() {
            let pipelines = rows(&self.get("/pipelines").await?, "pipelines");
            if !pipelines
                .iter()
                .any(|p| p["id"].as_str() == Some(self.config.pipeline_id.as_str()))
            {
                return Err(CrmError::Fatal(format!(
                    "pipeline_id {} of [crm.connections.{}] is not a pipeline of this account",
                    self.config.pipeline_id, self.config.sync.name
                )));
            }
            out.push(format!("pipeline {}", self.config.pipeline_id));
        }
        Ok(out)
    }

    async fn upsert_contacts(
        &self,
        _contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Err(CrmError::Fatal(
            "RD Station CRM has no upsert: contacts go through find_contacts and create_contacts"
                .into(),
        ))
    }

    /// By the WhatsApp-id field, else by every phone spelling (a contact made by hand, which
    /// then gets the WhatsApp id written on; the oldest when several match).
    async fn find_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<Option<String>>, CrmError> {
        self.ensure_field().await?;
        let slug = self.config.whatsapp_field.clone();
        let mut out = Vec::with_capacity(contacts.len());
        for chunk in contacts.chunks(CONTACTS_PER_QUERY) {
            let found = self.lookup(chunk).await?;
            for c in chunk {
                let by_id = found
                    .iter()
                    .find(|r| r["custom_fields"][&slug].as_str() == Some(c.whatsapp_id.as_str()));
                if let Some(contact) = by_id {
                    self.remember(contact).await;
                    out.push(contact["id"].as_str().map(str::to_owned));
                    continue;
                }
                let spellings: Vec<String> = phone_spellings(&c.whatsapp_id);
                let wanted: Vec<String> = spellings.iter().map(|s| digits(s)).collect();
                // RD's ids are 24-hex object ids, which grow with time: the smallest is the
                // oldest contact.
                let by_phone = found
                    .iter()
                    .filter(|r| {
                        r["custom_fields"][&slug].as_str().is_none_or(str::is_empty)
                            && r["phones"].as_array().into_iter().flatten().any(|p| {
                                p["phone"].as_str().is_some_and(|typed| {
                                    spellings.iter().any(|s| s == typed)
                                        || wanted.contains(&digits(typed))
                                })
                            })
                    })
                    .min_by_key(|r| r["id"].as_str().unwrap_or_default().to_owned());
                match by_phone {
                    Some(contact) => {
                        self.link(contact, &c.whatsapp_id).await?;
                        self.remember(contact).await;
                        out.push(contact["id"].as_str().map(str::to_owned));
                    }
                    None => out.push(None),
                }
            }
        }
        Ok(out)
    }

    async fn create_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        self.ensure_field().await?;
        let creates: Vec<_> = contacts
            .iter()
            .map(|c| self.create_contact(mapping::contact_body(c, &self.config.whatsapp_field)))
            .collect();
        Ok(futures::stream::iter(creates)
            .buffered(CONCURRENT)
            .collect()
            .await)
    }

    /// One task per contact per batch (up to `messages_per_task` messages), on the contact's
    /// deal; every message answers its task's id.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let tasks = transcript::notes_of(messages, self.config.messages_per_task);
        let mut contacts: Vec<String> = Vec::new();
        for (contact, _) in &tasks {
            if !contacts.contains(contact) {
                contacts.push(contact.clone());
            }
        }
        let deals = self.deals_for(&contacts).await;
        if let Some(Err(e)) = deals
            .values()
            .find(|d| matches!(d, Err(e) if e.class() == wacrm_core::ErrorClass::Fatal))
        {
            return Err(e.clone());
        }
        let calls: Vec<_> = tasks
            .into_iter()
            .map(|(contact, indices)| {
                let lines: Vec<MessageSync> =
                    indices.iter().map(|i| messages[*i].clone()).collect();
                let deal = deals
                    .get(&contact)
                    .cloned()
                    .unwrap_or_else(|| Err(CrmError::Transient("no deal".into())));
                self.task_of(deal, indices, lines)
            })
            .collect();
        Ok(batch::per_position(messages.len(), calls, CONCURRENT).await)
    }

    /// Each task once: read, its lines' statuses set, written back.
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let calls: Vec<_> = batch::positions_by(statuses, |s| s.crm_id.as_str())
            .into_iter()
            .map(|(task, indices)| {
                let mine: Vec<StatusSync> = indices.iter().map(|i| statuses[*i].clone()).collect();
                self.statuses_of(task.to_owned(), indices, mine)
            })
            .collect();
        batch::per_group(statuses.len(), calls, CONCURRENT).await
    }

    /// The tasks holding these wamids, among the account's most recently changed WhatsApp
    /// tasks (`filter=type:whatsapp`, `sort[updated_at]=desc`; no text filter exists, so the
    /// descriptions are read).
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let mut found: Vec<(String, String)> = Vec::new();
        for number in 1..=TASK_PAGES {
            let answer = self
                .get(&format!(
                    "/tasks?filter=type%3Awhatsapp&sort%5Bupdated_at%5D=desc\
                     &page%5Bnumber%5D={number}&page%5Bsize%5D={PAGE}"
                ))
                .await?;
            let page = rows(&answer, "tasks");
            for task in &page {
                let (Some(id), Some(text)) = (task["id"].as_str(), task["description"].as_str())
                else {
                    continue;
                };
                let mut holds_pending = false;
                for wamid in mapping::wamids_in(text) {
                    if wamids.contains(&wamid) && !found.iter().any(|(w, _)| *w == wamid) {
                        found.push((wamid, id.to_owned()));
                        holds_pending = true;
                    }
                }
                // A task whose create answer was lost never got its completion: complete it
                // now that it is found (best effort: it only tidies the salesperson's list).
                if holds_pending && self.config.complete_tasks && task["status"] == "open" {
                    self.complete(id).await?;
                }
            }
            if found.len() == wamids.len() || !answer["links"]["next"].is_string() {
                break;
            }
        }
        Ok(found)
    }

    /// RD Station CRM's API v2 documents no delete (RD's own n8n node lists, reads, creates and
    /// updates contacts, deals and tasks; nothing deletes), so the contact is a
    /// [`Erasure::Manual`] step. What wacrm wrote goes now: the description of each of its tasks
    /// (the ledger's) is replaced by [`mapping::ERASED_TASK`] (`PUT /tasks/{id}`, safe to
    /// repeat; a task a person deleted answers 404 and is skipped). Once a person deleted the
    /// contact (`GET /contacts/{id}` answers 404), the erasure answers `NotFound`.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let mut tasks: Vec<&String> = Vec::new();
        for task in &contact.message_crm_ids {
            if !tasks.contains(&task) {
                tasks.push(task);
            }
        }
        let erased = json!({"data": {"description": mapping::ERASED_TASK}});
        let mut blanked = 0;
        for task in &tasks {
            let path = format!("/tasks/{}", encode(task));
            if unless_gone(self.write(Method::PUT, &path, &erased, Retry::Safe))
                .await?
                .is_some()
            {
                blanked += 1;
            }
        }
        let id = match &contact.crm_contact_id {
            Some(id) => Some(id.clone()),
            None => {
                self.ensure_field().await?;
                let slug = &self.config.whatsapp_field;
                let probe = ContactSync {
                    contact_key: contact.contact_key.clone(),
                    whatsapp_id: contact.whatsapp_id.clone(),
                    phone: None,
                    profile_name: None,
                    phone_number_id: String::new(),
                };
                self.lookup(std::slice::from_ref(&probe))
                    .await?
                    .iter()
                    .find(|r| r["custom_fields"][slug].as_str() == Some(probe.whatsapp_id.as_str()))
                    .and_then(|r| r["id"].as_str().map(str::to_owned))
            }
        };
        let Some(id) = id else {
            return Ok(Erasure::NotFound);
        };
        if unless_gone(self.get(&format!("/contacts/{}", encode(&id))))
            .await?
            .is_none()
        {
            return Ok(Erasure::NotFound);
        }
        self.names.lock().await.remove(&id);
        Ok(Erasure::Manual(format!(
            "RD Station CRM's API cannot delete contacts: delete contact {id} by hand in RD \
             Station CRM (Contatos, open the contact, Excluir), and the deals wacrm opened for it \
             (\"WhatsApp — …\"). wacrm already blanked the text of its {blanked} task(s)."
        )))
    }

    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        for (contact, whatsapp_id) in updates {
            let answer = self.get(&format!("/contacts/{contact}")).await?;
            self.link(&answer["data"], whatsapp_id).await?;
        }
        Ok(())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "rdstation"` in the registry.
    RdStationKind,
    "rdstation",
    RdStationConfig,
    RdStation::new
);
