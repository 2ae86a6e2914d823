//! [`HubSpot`]: the CRM adapter, and the one-time setup of the properties it relies on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{Days, Utc};
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use wacrm_crm::adapter::{noting_error_answers, unless_gone};
use wacrm_crm::http::{retry_after, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactSync, CrmAdapter, CrmError, Erasure, ItemResult,
    MessageSync, StatusSync,
};

use crate::config::HubSpotConfig;
use crate::mapping::{self, FoundContact};

/// Contacts per search request (each brings up to a dozen spellings into the `IN` filters).
const CONTACTS_PER_SEARCH: usize = 8;

/// Reads HubSpot's error answers: a 429's `policyName` tells a daily quota (park until it
/// resets) from the rolling and per-second limits (wait and retry). The text is the answer's
/// `category` (`VALIDATION_ERROR`, `OBJECT_NOT_FOUND`: what an operator acts on) and its
/// `message`, which quotes the refused input and is scrubbed by `CrmHttp` before it goes
/// further.
pub fn classify(status: u16, headers: &HeaderMap, body: &Value) -> CrmError {
    let message = match (body["category"].as_str(), body["message"].as_str()) {
        (Some(category), Some(message)) => format!("{category}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(category), None) => format!("HTTP {status} {category}"),
        (None, None) => format!("HTTP {status}"),
    };
    match status {
        429 => match body["policyName"].as_str() {
            Some("DAILY") => CrmError::QuotaExhausted {
                // HubSpot resets daily limits at midnight of the account's time zone; the
                // next UTC midnight plus a margin is never early for the Americas.
                until: Utc::now()
                    .date_naive()
                    .checked_add_days(Days::new(1))
                    .and_then(|d| d.and_hms_opt(4, 0, 0))
                    .map(|t| t.and_utc())
                    .unwrap_or_else(|| Utc::now() + chrono::Duration::hours(24)),
            },
            Some("SECONDLY") => CrmError::RateLimited {
                retry_after: retry_after(headers).or(Some(Duration::from_secs(1))),
            },
            _ => CrmError::RateLimited {
                retry_after: retry_after(headers).or_else(|| {
                    headers
                        .get("x-hubspot-ratelimit-interval-milliseconds")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|ms| Duration::from_millis(ms / 10))
                }),
            },
        },
        401 | 403 => CrmError::Fatal(message),
        408 | 500..=599 => CrmError::Transient(message),
        _ => CrmError::Invalid(message),
    }
}

/// The HubSpot adapter of one connection.
pub struct HubSpot {
    http: CrmHttp,
    config: HubSpotConfig,
}

/// HubSpot's API as `CrmHttp` needs it: a private app's bearer token, the account's limit per
/// rolling 10 s (100, or 190 on Professional / Enterprise), and the search API's own per-second
/// limit (docs/adapters/hubspot.md).
pub fn http_settings(config: &HubSpotConfig) -> HttpSettings {
    HttpSettings {
        base_url: config.base_url.clone(),
        auth: Auth::Bearer(config.token.clone()),
        limit: Window::new(config.requests_per_10s, Duration::from_secs(10)),
        search_limit: Some(Window::new(
            config.search_requests_per_s,
            Duration::from_secs(1),
        )),
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    }
}

impl HubSpot {
    /// An adapter for a connection.
    pub fn new(config: HubSpotConfig) -> Result<Self, CrmError> {
        if config.token.is_empty() {
            return Err(CrmError::Fatal(format!(
                "connection {} has no HubSpot token (WACRM_CRM__CONNECTIONS__{}__TOKEN)",
                config.sync.name,
                config.sync.name.to_uppercase()
            )));
        }
        // Erasure tells a 404 (already deleted) from other refusals.
        let http = CrmHttp::new(
            &config.sync.name,
            http_settings(&config),
            noting_error_answers(Arc::new(classify)),
        )?;
        Ok(HubSpot { http, config })
    }

    fn owner(&self, phone_number_id: &str) -> Option<&str> {
        self.config.owners.get(phone_number_id).map(String::as_str)
    }

    /// Creates, if missing, the properties wacrm relies on: the unique WhatsApp id on contacts,
    /// and the wamid and status on communications. Returns what it created.
    pub async fn setup(&self) -> Result<Vec<String>, CrmError> {
        let wanted = self.required_properties();
        let mut created = Vec::new();
        for (object, name, label, group, unique) in wanted {
            let path = format!("/crm/v3/properties/{object}/{name}");
            if self.property_exists(&path).await? {
                continue;
            }
            let mut body = json!({
                "name": name,
                "label": label,
                "type": "string",
                "fieldType": "text",
                "groupName": group,
            });
            if unique {
                body["hasUniqueValue"] = json!(true);
            }
            match self
                .http
                .send(
                    Method::POST,
                    &format!("/crm/v3/properties/{object}"),
                    Some(&body),
                    Budget::General,
                    Retry::Once,
                )
                .await
            {
                Ok(_) => {}
                // The create may have gone through: look before creating again.
                Err(CrmError::Ambiguous(reason)) => {
                    if !self.property_exists(&path).await? {
                        return Err(CrmError::Ambiguous(reason));
                    }
                }
                Err(e) => return Err(e),
            }
            created.push(format!("{object}.{name}"));
        }
        Ok(created)
    }

    /// The properties wacrm relies on: (object, name, label, group, unique).
    fn required_properties(&self) -> [(&'static str, &str, &'static str, &'static str, bool); 3] {
        [
            (
                "contacts",
                self.config.whatsapp_property.as_str(),
                "WhatsApp ID",
                "contactinformation",
                true,
            ),
            (
                "communications",
                mapping::WAMID_PROPERTY,
                "WhatsApp message id",
                "communicationinformation",
                false,
            ),
            (
                "communications",
                mapping::STATUS_PROPERTY,
                "WhatsApp delivery status",
                "communicationinformation",
                false,
            ),
        ]
    }

    /// Whether the token is accepted and every property wacrm relies on exists (`wacrm
    /// doctor`); changes nothing.
    pub async fn check_properties(&self) -> Result<Vec<String>, CrmError> {
        let mut found = Vec::new();
        for (object, name, ..) in self.required_properties() {
            let path = format!("/crm/v3/properties/{object}/{name}");
            if !self.property_exists(&path).await? {
                return Err(CrmError::Fatal(format!(
                    "the {object} property `{name}` is missing: run `wacrm crm setup --connection {}`",
                    self.config.sync.name
                )));
            }
            found.push(format!("{object}.{name}"));
        }
        Ok(found)
    }

    /// Whether a property exists (`path`: `/crm/v3/properties/{object}/{name}`).
    async fn property_exists(&self, path: &str) -> Result<bool, CrmError> {
        match self
            .http
            .send(Method::GET, path, None, Budget::General, Retry::Safe)
            .await
        {
            Ok(_) => Ok(true),
            Err(CrmError::Invalid(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes the WhatsApp id onto contacts found by phone, so HubSpot users (and later
    /// upserts) see the link. Best effort: a contact another record already claims the id for
    /// (HubSpot answers 409 on the unique property) stays linked by wacrm all the same.
    async fn stamp_whatsapp_ids(&self, stamps: Vec<(String, String)>) -> Result<(), CrmError> {
        if stamps.is_empty() {
            return Ok(());
        }
        let property = &self.config.whatsapp_property;
        let inputs: Vec<Value> = stamps
            .iter()
            .map(|(id, whatsapp_id)| json!({"id": id, "properties": {property.as_str(): whatsapp_id}}))
            .collect();
        match self
            .http
            .send(
                Method::POST,
                "/crm/v3/objects/contacts/batch/update",
                Some(&json!({"inputs": inputs})),
                Budget::General,
                Retry::Safe,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(CrmError::Invalid(reason)) => {
                tracing::warn!(connection = %self.config.sync.name, %reason, "WhatsApp id not written onto a linked contact");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Contacts people already created that are these persons, by their id in `contacts`.
    async fn find_existing(
        &self,
        contacts: &[ContactSync],
    ) -> Result<HashMap<usize, String>, CrmError> {
        let mut found: HashMap<usize, FoundContact> = HashMap::new();
        let property = &self.config.whatsapp_property;
        for (chunk_index, chunk) in contacts.chunks(CONTACTS_PER_SEARCH).enumerate() {
            let mut after: Option<String> = None;
            loop {
                let body = mapping::contact_search(chunk, property, after.as_deref());
                let answer = self
                    .http
                    .send(
                        Method::POST,
                        "/crm/v3/objects/contacts/search",
                        Some(&body),
                        Budget::Search,
                        Retry::Safe,
                    )
                    .await?;
                let (results, next) = mapping::search_results(&answer);
                for result in results {
                    for (i, contact) in chunk.iter().enumerate() {
                        let index = chunk_index * CONTACTS_PER_SEARCH + i;
                        if mapping::matches(&result, contact, property) {
                            // Several hand-made duplicates: link the oldest (lowest id).
                            let better = found.get(&index).is_none_or(|f| {
                                result.id.parse::<u64>().unwrap_or(u64::MAX)
                                    < f.id.parse::<u64>().unwrap_or(u64::MAX)
                            });
                            if better {
                                found.insert(index, result.clone());
                            }
                        }
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        let stamps: Vec<(String, String)> = found
            .iter()
            .filter(|(i, f)| f.properties.get(property) != Some(&contacts[**i].whatsapp_id))
            .map(|(i, f)| (f.id.clone(), contacts[*i].whatsapp_id.clone()))
            .collect();
        self.stamp_whatsapp_ids(stamps).await?;
        Ok(found.into_iter().map(|(i, f)| (i, f.id)).collect())
    }
}

impl HubSpot {
    /// The contact holding this WhatsApp id in the unique property, if any.
    async fn contact_by_whatsapp_id(&self, whatsapp_id: &str) -> Result<Option<String>, CrmError> {
        let probe = ContactSync {
            contact_key: String::new(),
            whatsapp_id: whatsapp_id.to_owned(),
            phone: None,
            profile_name: None,
            phone_number_id: String::new(),
        };
        let property = &self.config.whatsapp_property;
        let body = mapping::contact_search(std::slice::from_ref(&probe), property, None);
        let answer = self
            .http
            .send(
                Method::POST,
                "/crm/v3/objects/contacts/search",
                Some(&body),
                Budget::Search,
                Retry::Safe,
            )
            .await?;
        let (found, _) = mapping::search_results(&answer);
        Ok(found
            .into_iter()
            .find(|f| f.properties.get(property) == Some(&probe.whatsapp_id))
            .map(|f| f.id))
    }
}

fn results(answer: &Value) -> Vec<Value> {
    answer["results"].as_array().cloned().unwrap_or_default()
}

#[async_trait]
impl CrmAdapter for HubSpot {
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        HubSpot::setup(self).await
    }

    async fn check(&self) -> Result<Vec<String>, CrmError> {
        self.check_properties().await
    }

    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: 100,
            messages_per_batch: 100,
            statuses_per_batch: 100,
        }
    }

    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let existing = self.find_existing(contacts).await?;
        let mut ids: Vec<Option<String>> = (0..contacts.len())
            .map(|i| existing.get(&i).cloned())
            .collect();
        let to_create: Vec<(usize, &ContactSync)> = contacts
            .iter()
            .enumerate()
            .filter(|(i, _)| ids[*i].is_none())
            .collect();
        if !to_create.is_empty() {
            let inputs: Vec<Value> = to_create
                .iter()
                .map(|(_, c)| {
                    mapping::contact_upsert_input(
                        c,
                        &self.config.whatsapp_property,
                        self.owner(&c.phone_number_id),
                    )
                })
                .collect();
            let answer = self
                .http
                .send(
                    Method::POST,
                    "/crm/v3/objects/contacts/batch/upsert",
                    Some(&json!({"inputs": inputs})),
                    Budget::General,
                    Retry::Safe,
                )
                .await?;
            let by_whatsapp_id: HashMap<String, String> = results(&answer)
                .iter()
                .filter_map(|r| {
                    Some((
                        r["properties"][&self.config.whatsapp_property]
                            .as_str()?
                            .to_owned(),
                        r["id"].as_str()?.to_owned(),
                    ))
                })
                .collect();
            for (i, c) in to_create {
                ids[i] = by_whatsapp_id.get(&c.whatsapp_id).cloned();
            }
        }
        Ok(ids
            .into_iter()
            .map(|id| {
                id.ok_or_else(|| CrmError::Transient("HubSpot did not return the contact".into()))
            })
            .collect())
    }

    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let inputs: Vec<Value> = messages
            .iter()
            .map(|m| mapping::communication_input(m, self.owner(&m.phone_number_id)))
            .collect();
        let answer = self
            .http
            .send(
                Method::POST,
                "/crm/v3/objects/communications/batch/create",
                Some(&json!({"inputs": inputs})),
                Budget::General,
                Retry::Once,
            )
            .await?;
        // Batch results are not in input order: match them by the wamid they carry.
        let by_wamid: HashMap<String, String> = results(&answer)
            .iter()
            .filter_map(|r| {
                Some((
                    r["properties"][mapping::WAMID_PROPERTY]
                        .as_str()?
                        .to_owned(),
                    r["id"].as_str()?.to_owned(),
                ))
            })
            .collect();
        Ok(messages
            .iter()
            .map(|m| {
                // Missing from a successful answer: it may exist all the same, so the engine
                // must reconcile it (find it by wamid), not create it again.
                by_wamid.get(&m.wamid).cloned().ok_or_else(|| {
                    CrmError::Ambiguous("HubSpot did not return the communication".into())
                })
            })
            .collect())
    }

    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let inputs: Vec<Value> = statuses.iter().map(mapping::status_input).collect();
        self.http
            .send(
                Method::POST,
                "/crm/v3/objects/communications/batch/update",
                Some(&json!({"inputs": inputs})),
                Budget::General,
                Retry::Safe,
            )
            .await?;
        Ok(statuses.iter().map(|_| Ok(())).collect())
    }

    /// A number change: `batch/update` of the unique WhatsApp id property (a 409 — another
    /// contact holds that id — is logged by `stamp_whatsapp_ids`, not fatal).
    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        for chunk in updates.chunks(100) {
            self.stamp_whatsapp_ids(chunk.to_vec()).await?;
        }
        Ok(())
    }

    /// Deletes the communications wacrm logged (`batch/archive`, 100 a call), then the contact
    /// with HubSpot's GDPR delete (`POST /crm/v3/objects/contacts/gdpr-delete`): HubSpot
    /// removes the record and its associations for good, blocklists its e-mail address, and
    /// purges within 30 days. The GDPR delete is documented to remove the contact's
    /// associations, not to delete every associated engagement, so the communications go first
    /// (HubSpot keeps archived communications restorable for 90 days, then purges them). Both
    /// are safe to repeat: an archive of a missing id answers 204, a GDPR delete of a missing
    /// contact 404, taken as `NotFound`. Without a link, the contact is the one holding the
    /// WhatsApp id in the unique property.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let mut communications: Vec<&String> = Vec::new();
        for id in &contact.message_crm_ids {
            if !communications.contains(&id) {
                communications.push(id);
            }
        }
        for chunk in communications.chunks(100) {
            let inputs: Vec<Value> = chunk.iter().map(|id| json!({"id": id})).collect();
            unless_gone(self.http.send(
                Method::POST,
                "/crm/v3/objects/communications/batch/archive",
                Some(&json!({"inputs": inputs})),
                Budget::General,
                Retry::Safe,
            ))
            .await?;
        }
        let id = match &contact.crm_contact_id {
            Some(id) => Some(id.clone()),
            None => self.contact_by_whatsapp_id(&contact.whatsapp_id).await?,
        };
        let Some(id) = id else {
            return Ok(Erasure::NotFound);
        };
        let deleted = unless_gone(self.http.send(
            Method::POST,
            "/crm/v3/objects/contacts/gdpr-delete",
            Some(&json!({"objectId": id})),
            Budget::General,
            Retry::Safe,
        ))
        .await?;
        Ok(match deleted {
            Some(_) => Erasure::Erased,
            None => Erasure::NotFound,
        })
    }

    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let mut out = Vec::new();
        for chunk in wamids.chunks(100) {
            let mut after: Option<String> = None;
            loop {
                let body = mapping::communication_search(chunk, after.as_deref());
                let answer = self
                    .http
                    .send(
                        Method::POST,
                        "/crm/v3/objects/communications/search",
                        Some(&body),
                        Budget::Search,
                        Retry::Safe,
                    )
                    .await?;
                for r in results(&answer) {
                    if let (Some(w), Some(id)) = (
                        r["properties"][mapping::WAMID_PROPERTY].as_str(),
                        r["id"].as_str(),
                    ) {
                        out.push((w.to_owned(), id.to_owned()));
                    }
                }
                match answer["paging"]["next"]["after"].as_str() {
                    Some(n) => after = Some(n.to_owned()),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "hubspot"` in the registry.
    HubSpotKind,
    "hubspot",
    HubSpotConfig,
    HubSpot::new
);
