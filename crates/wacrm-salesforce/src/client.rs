//! [`Salesforce`]: the engine's calls as Salesforce REST API requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use wacrm_crm::adapter::{noting_error_answers, with_error_answer};
use wacrm_crm::http::{scrub_error, Auth, Budget, CrmHttp, HttpSettings, Retry, Window};
use wacrm_crm::oauth::{Grant, JwtBearer, OAuth2};
use wacrm_crm::{
    AdapterLimits, ContactErasure, ContactSync, CrmAdapter, CrmError, Erasure, ItemResult,
    MessageSync, StatusSync,
};

use crate::config::SalesforceConfig;
use crate::mapping::{
    self, contact_record, literals, message_record, phone_spellings, truncate, ApiUsage,
    LimitPolicy, UsageCell,
};

/// A per-record result of a write, its error scrubbed: Salesforce's message may quote a field's
/// value (`data value too large: …`), and this text comes from a successful answer, past
/// `CrmHttp`'s own scrubbing.
fn record_result(item: &Value) -> ItemResult<String> {
    mapping::record_result(item).map_err(scrub_error)
}

/// Records per sObject Collections request (Salesforce's limit).
const RECORDS_PER_CALL: usize = 200;
/// The longest query URL wacrm sends. Salesforce refuses over-long request URIs; 12,000
/// characters stays well below the ~16 KB that servers commonly take (the exact limit is not
/// in the sources).
const MAX_QUERY_URL: usize = 12_000;

/// The Salesforce adapter of one connection.
pub struct Salesforce {
    http: CrmHttp,
    config: SalesforceConfig,
    usage: UsageCell,
    /// Requests in flight at once (the org's concurrent-request limit is shared).
    permits: Semaphore,
    /// `/services/data/vXX.X`: a query's `nextRecordsUrl` starts with it.
    data_path: String,
}

/// The configured API version, checked: `vXX.X`, at least `v46.0`.
fn api_version(config: &SalesforceConfig) -> Result<String, CrmError> {
    let version = config.api_version.trim();
    let number = version
        .strip_prefix('v')
        .filter(|n| n.contains('.'))
        .and_then(|n| n.parse::<f64>().ok());
    match number {
        Some(n) if n >= 46.0 => Ok(version.to_owned()),
        _ => Err(CrmError::Fatal(format!(
            "[crm.connections.{}] api_version {version:?}: write it vXX.X, at least v46.0 \
             (upserts answer a body from 46.0)",
            config.sync.name
        ))),
    }
}

/// The OAuth grant the configuration selects: the JWT bearer grant when a subject and a key
/// are set, else client credentials.
fn grant(config: &SalesforceConfig) -> Result<Grant, CrmError> {
    let name = &config.sync.name;
    let Some(subject) = config.jwt_subject.clone().filter(|s| !s.is_empty()) else {
        if config.client_secret.is_empty() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] needs client_secret (client credentials), or \
                 jwt_subject and a private key (JWT bearer)"
            )));
        }
        return Ok(Grant::ClientCredentials);
    };
    let pem = match (&config.jwt_private_key_pem, &config.jwt_private_key_file) {
        (Some(pem), _) if !pem.trim().is_empty() => pem.clone(),
        (_, Some(file)) if !file.is_empty() => std::fs::read_to_string(file).map_err(|e| {
            CrmError::Fatal(format!(
                "[crm.connections.{name}] jwt_private_key_file cannot be read: {}",
                e.kind()
            ))
        })?,
        _ => {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] jwt_subject needs jwt_private_key_pem or \
                 jwt_private_key_file"
            )))
        }
    };
    let audience = config.jwt_audience.clone().unwrap_or_else(|| {
        if config.login_url.contains("test.salesforce.com") {
            "https://test.salesforce.com".into()
        } else {
            "https://login.salesforce.com".into()
        }
    });
    Ok(Grant::JwtBearer(JwtBearer {
        subject,
        audience,
        private_key_pem: pem,
    }))
}

/// Salesforce's API as `CrmHttp` needs it: OAuth 2 at the login host, requests to the token
/// answer's `instance_url` (or the configured one) under `/services/data/vXX.X`, and a
/// request rate of the connection's own.
pub fn http_settings(config: &SalesforceConfig) -> Result<HttpSettings, CrmError> {
    let version = api_version(config)?;
    let login = config.login_url.trim_end_matches('/');
    let mut oauth = OAuth2::new(
        format!("{login}/services/oauth2/token"),
        config.client_id.clone(),
        config.client_secret.clone(),
        grant(config)?,
    );
    let host = match config.instance_url.as_deref().filter(|u| !u.is_empty()) {
        Some(fixed) => fixed.trim_end_matches('/').to_owned(),
        None => {
            oauth = oauth.with_instance_url_from("instance_url");
            login.to_owned()
        }
    };
    Ok(HttpSettings {
        base_url: format!("{host}/services/data/{version}"),
        auth: Auth::OAuth2(Box::new(oauth)),
        limit: Window::new(config.requests_per_s.max(1), Duration::from_secs(1)),
        search_limit: None,
        timeout: Duration::from_millis(config.sync.request_timeout_ms.max(1)),
    })
}

/// Percent-encodes a query parameter's value (everything but the unreserved characters).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits `items` into runs whose query (`make(run)`), encoded, stays within
/// [`MAX_QUERY_URL`]; an item too long alone is still sent alone.
fn query_chunks<T>(items: &[T], make: impl Fn(&[T]) -> String) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start + 1;
        while end < items.len() && encode(&make(&items[start..=end])).len() <= MAX_QUERY_URL {
            end += 1;
        }
        out.push(start..end);
        start = end;
    }
    out
}

/// One custom field `setup` creates: its name and Tooling API metadata.
fn message_fields(object: &str) -> Vec<(&'static str, Value)> {
    vec![
        (
            mapping::WAMID,
            json!({"label": "WhatsApp Message ID", "type": "Text", "length": 255,
                   "externalId": true, "unique": true, "caseSensitive": true}),
        ),
        (
            mapping::CONTACT,
            json!({"label": "Contact", "type": "Lookup", "referenceTo": "Contact",
                   "relationshipName": relationship_name(object),
                   "relationshipLabel": "WhatsApp Messages", "deleteConstraint": "SetNull"}),
        ),
        (
            mapping::DIRECTION,
            json!({"label": "Direction", "type": "Text", "length": 16}),
        ),
        (
            mapping::BODY,
            json!({"label": "Body", "type": "LongTextArea", "length": mapping::BODY_LENGTH,
                   "visibleLines": 5}),
        ),
        (
            mapping::SENT_AT,
            json!({"label": "Sent At", "type": "DateTime"}),
        ),
        (
            mapping::STATUS,
            json!({"label": "Status", "type": "Text", "length": 16}),
        ),
        (
            mapping::STATUS_DETAIL,
            json!({"label": "Status Detail", "type": "Text", "length": 255}),
        ),
        (
            mapping::KIND,
            json!({"label": "Kind", "type": "Text", "length": 40}),
        ),
        (
            mapping::BUSINESS_NUMBER,
            json!({"label": "Business Number", "type": "Text", "length": 40}),
        ),
    ]
}

/// The contact's related list of messages: `WhatsApp_Messages` for `WhatsApp_Message__c`.
fn relationship_name(object: &str) -> String {
    format!("{}s", object.trim_end_matches("__c"))
}

impl Salesforce {
    /// An adapter for a connection.
    pub fn new(config: SalesforceConfig) -> Result<Self, CrmError> {
        let name = config.sync.name.clone();
        if config.client_id.is_empty() {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] needs client_id (the app's consumer key)"
            )));
        }
        let settings = http_settings(&config)?;
        let usage = UsageCell::default();
        let policy = LimitPolicy {
            connection: name.clone(),
            usage: usage.clone(),
            backoff: Duration::from_millis(config.limit_backoff_ms),
            park: Duration::from_secs(config.quota_park_s.max(1)),
        };
        let observed = usage.clone();
        let connection = name.clone();
        // Erasure tells a 404 (already deleted) from other refusals.
        let http = CrmHttp::new(
            &name,
            settings,
            noting_error_answers(Arc::new(move |status, headers, body| {
                mapping::classify(&policy, status, headers, body)
            })),
        )?
        // Every answer, successes included, says how much of the allocation is used.
        .with_response_observer(Arc::new(move |_, headers| {
            observed.read(headers, &connection);
        }));
        let data_path = format!("/services/data/{}", api_version(&config)?);
        Ok(Salesforce {
            http,
            permits: Semaphore::new(config.max_concurrent_requests.max(1)),
            config,
            usage,
            data_path,
        })
    }

    /// The org's API use as Salesforce last reported it (`Sforce-Limit-Info` on every answer,
    /// or `/limits` read by `check`).
    pub fn api_usage(&self) -> Option<ApiUsage> {
        self.usage.get()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Value, CrmError> {
        // At most `max_concurrent_requests` in flight: the org's concurrent long-request
        // limit (25) is shared with its other integrations.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| CrmError::Fatal("the request semaphore is closed".into()))?;
        self.http
            .send(method, path, body, Budget::General, retry)
            .await
    }

    /// Every row of a SOQL query, following `nextRecordsUrl` pages.
    async fn query(&self, soql: &str) -> Result<Vec<Value>, CrmError> {
        let mut rows = Vec::new();
        let mut path = format!("/query?q={}", encode(soql));
        loop {
            let answer = self.send(Method::GET, &path, None, Retry::Safe).await?;
            rows.extend(answer["records"].as_array().cloned().unwrap_or_default());
            match answer["nextRecordsUrl"].as_str() {
                Some(next) if answer["done"] == false => {
                    path = next
                        .strip_prefix(self.data_path.as_str())
                        .ok_or_else(|| {
                            CrmError::Transient(
                                "Salesforce answered a nextRecordsUrl of another API version"
                                    .into(),
                            )
                        })?
                        .to_owned();
                }
                _ => return Ok(rows),
            }
        }
    }

    /// `GET /sobjects/{object}/describe`; `None` when the org has no such object (or the
    /// integration user cannot see it).
    async fn describe(&self, object: &str) -> Result<Option<Value>, CrmError> {
        match self
            .send(
                Method::GET,
                &format!("/sobjects/{object}/describe"),
                None,
                Retry::Safe,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer)),
            Err(CrmError::Fatal(m)) if m.starts_with("NOT_FOUND") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One sObject Collections write: an upsert on `field` of `object`, or (no field) an
    /// update by id. Idempotent either way. A result per record, in order.
    async fn collection(
        &self,
        object: &str,
        field: Option<&str>,
        records: &[Value],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let path = match field {
            Some(field) => format!("/composite/sobjects/{object}/{field}"),
            None => "/composite/sobjects".to_owned(),
        };
        let body = json!({"allOrNone": false, "records": records});
        let answer = self
            .send(Method::PATCH, &path, Some(&body), Retry::Safe)
            .await?;
        let results: Vec<ItemResult<String>> = answer
            .as_array()
            .map(|a| a.iter().map(record_result).collect())
            .unwrap_or_default();
        if results.len() != records.len() {
            return Err(CrmError::Transient(format!(
                "Salesforce answered {} results for {} records",
                results.len(),
                records.len()
            )));
        }
        Ok(results)
    }

    /// Writes `records` 200 a call. A call refused whole as invalid is split in halves until
    /// the refused record stands alone, so only it is dead-lettered (the writes are
    /// idempotent, so sending the others again is harmless).
    async fn write_all(
        &self,
        object: &str,
        field: Option<&str>,
        records: &[Value],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let mut out: Vec<Option<ItemResult<String>>> = vec![None; records.len()];
        let mut pending: Vec<std::ops::Range<usize>> = (0..records.len())
            .step_by(RECORDS_PER_CALL)
            .map(|s| s..(s + RECORDS_PER_CALL).min(records.len()))
            .rev()
            .collect();
        while let Some(range) = pending.pop() {
            match self
                .collection(object, field, &records[range.clone()])
                .await
            {
                Ok(results) => {
                    for (i, result) in range.zip(results) {
                        out[i] = Some(result);
                    }
                }
                Err(CrmError::Invalid(_)) if range.len() > 1 => {
                    let mid = range.start + range.len() / 2;
                    pending.push(mid..range.end);
                    pending.push(range.start..mid);
                }
                Err(e @ CrmError::Invalid(_)) => out[range.start] = Some(Err(e)),
                Err(e) => return Err(e),
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(CrmError::Transient("not sent".into()))))
            .collect())
    }

    /// Contacts holding these WhatsApp ids: `wa_id → ids` (several when the field is not
    /// unique and people copied a value).
    async fn by_whatsapp_id(
        &self,
        ids: &[String],
    ) -> Result<HashMap<String, Vec<String>>, CrmError> {
        let field = &self.config.whatsapp_field;
        let make = |run: &[String]| {
            format!(
                "SELECT Id, {field} FROM Contact WHERE {field} IN ({})",
                literals(run)
            )
        };
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for range in query_chunks(ids, make) {
            for row in self.query(&make(&ids[range])).await? {
                if let (Some(id), Some(wa)) = (row["Id"].as_str(), row[field.as_str()].as_str()) {
                    found.entry(wa.to_owned()).or_default().push(id.to_owned());
                }
            }
        }
        Ok(found)
    }

    /// Contacts people made by hand, by every spelling of the phone in `Phone` or
    /// `MobilePhone`, that hold no WhatsApp id yet: `index → contact id` (the lowest id of
    /// several; a contact goes to one input only).
    async fn by_phone(
        &self,
        contacts: &[(usize, &ContactSync)],
    ) -> Result<HashMap<usize, String>, CrmError> {
        let field = &self.config.whatsapp_field;
        let spellings: Vec<(usize, Vec<String>)> = contacts
            .iter()
            .map(|(i, c)| (*i, phone_spellings(&c.whatsapp_id)))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        let make = |run: &[(usize, Vec<String>)]| {
            let phones: Vec<String> = run.iter().flat_map(|(_, s)| s.clone()).collect();
            let list = literals(&phones);
            format!(
                "SELECT Id, Phone, MobilePhone, {field} FROM Contact WHERE Phone IN ({list}) \
                 OR MobilePhone IN ({list})"
            )
        };
        let mut rows = Vec::new();
        for range in query_chunks(&spellings, make) {
            rows.extend(self.query(&make(&spellings[range])).await?);
        }
        // Only contacts without a WhatsApp id: one that has one belongs to someone else.
        rows.retain(|r| r[field.as_str()].as_str().is_none_or(str::is_empty));
        rows.sort_by(|a, b| a["Id"].as_str().cmp(&b["Id"].as_str()));
        let mut taken: Vec<String> = Vec::new();
        let mut out = HashMap::new();
        for (i, forms) in &spellings {
            let hit = rows.iter().find(|r| {
                let id = r["Id"].as_str().unwrap_or_default();
                !taken.iter().any(|t| t == id)
                    && ["Phone", "MobilePhone"].iter().any(|f| {
                        r[*f]
                            .as_str()
                            .is_some_and(|p| forms.iter().any(|s| s.eq_ignore_ascii_case(p)))
                    })
            });
            if let Some(id) = hit.and_then(|r| r["Id"].as_str()) {
                taken.push(id.to_owned());
                out.insert(*i, id.to_owned());
            }
        }
        Ok(out)
    }

    /// Deletes records of any objects, 200 a call (sObject Collections delete,
    /// `allOrNone=false`); whether any was there. A record already deleted (in the Recycle Bin:
    /// `ENTITY_IS_DELETED`) or unknown (`INVALID_CROSS_REFERENCE_KEY`) counts as gone: a repeat
    /// after a lost answer lands there.
    async fn delete_records(&self, ids: &[String]) -> Result<bool, CrmError> {
        let mut any = false;
        for chunk in ids.chunks(RECORDS_PER_CALL) {
            let path = format!(
                "/composite/sobjects?ids={}&allOrNone=false",
                encode(&chunk.join(","))
            );
            let answer = self.send(Method::DELETE, &path, None, Retry::Safe).await?;
            let results = answer.as_array().cloned().unwrap_or_default();
            if results.len() != chunk.len() {
                return Err(CrmError::Transient(format!(
                    "Salesforce answered {} results for {} deletes",
                    results.len(),
                    chunk.len()
                )));
            }
            for result in &results {
                if result["success"] == true {
                    any = true;
                    continue;
                }
                let code = result["errors"][0]["statusCode"]
                    .as_str()
                    .unwrap_or("ERROR");
                if !matches!(
                    code,
                    "ENTITY_IS_DELETED" | "INVALID_CROSS_REFERENCE_KEY" | "NOT_FOUND"
                ) {
                    // The code only: Salesforce's message may echo field values.
                    return Err(CrmError::Invalid(format!(
                        "Salesforce refused to delete a record: {code}"
                    )));
                }
            }
        }
        Ok(any)
    }

    /// Deletes one Contact (`DELETE /sobjects/Contact/{id}`): whether it was there. A 404
    /// `ENTITY_IS_DELETED` or `NOT_FOUND` is an earlier delete (a person's, or an attempt whose
    /// answer was lost).
    async fn delete_contact(&self, id: &str) -> Result<bool, CrmError> {
        let path = format!("/sobjects/Contact/{}", encode(id));
        match with_error_answer(self.send(Method::DELETE, &path, None, Retry::Safe)).await {
            (Ok(_), _) => Ok(true),
            (Err(e), Some((404, body))) => {
                let first = body.as_array().and_then(|a| a.first()).unwrap_or(&body);
                match first["errorCode"].as_str() {
                    Some("ENTITY_IS_DELETED" | "NOT_FOUND") => Ok(false),
                    _ => Err(e),
                }
            }
            (Err(e), _) => Err(e),
        }
    }

    /// Describe's field of that name, if the object has it (and the user can see it).
    fn field_of<'a>(describe: &'a Value, name: &str) -> Option<&'a Value> {
        describe["fields"].as_array().and_then(|fields| {
            fields.iter().find(|f| {
                f["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        })
    }

    /// Creates a custom field through the Tooling API (unverified against an org). A name
    /// already in use means the field exists but describe does not show it: field-level
    /// security hides it from the integration user.
    async fn create_field(
        &self,
        object: &str,
        field: &str,
        metadata: Value,
    ) -> Result<(), CrmError> {
        let body = json!({"FullName": format!("{object}.{field}"), "Metadata": metadata});
        match self
            .send(
                Method::POST,
                "/tooling/sobjects/CustomField",
                Some(&body),
                Retry::Once,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(CrmError::Invalid(m)) if m.starts_with("DUPLICATE_DEVELOPER_NAME") => {
                Err(CrmError::Fatal(format!(
                    "{object}.{field} exists but the integration user cannot see it: grant it \
                     field-level security (read and edit) in the user's permission set"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// What `check` verifies on the message object; the problems found.
    fn message_object_problems(&self, describe: &Value) -> Vec<String> {
        let object = &self.config.message_object;
        let mut problems = Vec::new();
        for (name, _) in message_fields(object) {
            match Self::field_of(describe, name) {
                None => problems.push(format!("{object}.{name} is missing")),
                Some(f) if name == mapping::WAMID && f["externalId"] != true => {
                    problems.push(format!("{object}.{name} is not an External ID"))
                }
                Some(_) => {}
            }
        }
        problems
    }
}

#[async_trait]
impl CrmAdapter for Salesforce {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: RECORDS_PER_CALL,
            // Written 200 a call; a batch of 1,000 is five calls.
            messages_per_batch: 1000,
            statuses_per_batch: 1000,
        }
    }

    /// Creates, if missing: the contact field holding the WhatsApp id (Text 64, External ID,
    /// unique) and the message object with its fields (wamid as a unique, case-sensitive
    /// External ID; a lookup to the contact), through the Tooling API.
    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        let mut created = Vec::new();
        let field = &self.config.whatsapp_field;
        let contact = self.describe("Contact").await?.ok_or_else(|| {
            CrmError::Fatal("the integration user cannot describe Contact".into())
        })?;
        match Self::field_of(&contact, field) {
            Some(f) if f["externalId"] != true => {
                return Err(CrmError::Fatal(format!(
                    "Contact.{field} exists but is not an External ID: tick \"External ID\" \
                     (and \"Unique\") on it in Setup"
                )))
            }
            Some(_) => {}
            None => {
                self.create_field(
                    "Contact",
                    field,
                    json!({"label": "WhatsApp ID", "type": "Text", "length": 64,
                           "externalId": true, "unique": true, "caseSensitive": false}),
                )
                .await?;
                created.push(format!("Contact.{field} (Text 64, External ID, unique)"));
            }
        }
        let object = self.config.message_object.clone();
        let describe = match self.describe(&object).await? {
            Some(d) => d,
            None => {
                let base = object.trim_end_matches("__c").replace('_', " ");
                let body = json!({"FullName": object, "Metadata": {
                    "label": base,
                    "pluralLabel": format!("{base}s"),
                    "nameField": {"type": "AutoNumber", "label": "Message Number",
                                  "displayFormat": "WA-{000000}"},
                    "deploymentStatus": "Deployed",
                    "sharingModel": "ReadWrite",
                }});
                match self
                    .send(
                        Method::POST,
                        "/tooling/sobjects/CustomObject",
                        Some(&body),
                        Retry::Once,
                    )
                    .await
                {
                    Ok(_) => created.push(format!("object {object}")),
                    Err(CrmError::Invalid(m)) if m.starts_with("DUPLICATE_DEVELOPER_NAME") => {
                        return Err(CrmError::Fatal(format!(
                            "{object} exists but the integration user cannot see it: grant \
                             the object (read, create, edit) in the user's permission set"
                        )))
                    }
                    Err(e) => return Err(e),
                }
                json!({"fields": []})
            }
        };
        for (name, metadata) in message_fields(&object) {
            if Self::field_of(&describe, name).is_none() {
                self.create_field(&object, name, metadata).await?;
                created.push(format!("{object}.{name}"));
            }
        }
        Ok(created)
    }

    /// The token is accepted, the WhatsApp-id field and the message object's fields are there
    /// (wamid and WhatsApp id as External IDs), and the org's API use.
    async fn check(&self) -> Result<Vec<String>, CrmError> {
        let field = &self.config.whatsapp_field;
        let object = &self.config.message_object;
        let name = &self.config.sync.name;
        let contact = self.describe("Contact").await?.ok_or_else(|| {
            CrmError::Fatal("the integration user cannot describe Contact".into())
        })?;
        let mut problems = Vec::new();
        match Self::field_of(&contact, field) {
            None => problems.push(format!("Contact.{field} is missing")),
            Some(f) if f["externalId"] != true => {
                problems.push(format!("Contact.{field} is not an External ID"))
            }
            Some(_) => {}
        }
        match self.describe(object).await? {
            None => problems.push(format!("the object {object} is missing")),
            Some(describe) => problems.extend(self.message_object_problems(&describe)),
        }
        if !problems.is_empty() {
            return Err(CrmError::Fatal(format!(
                "{}: run wacrm crm setup --connection {name} (a field that exists but is \
                 hidden needs field-level security for the integration user)",
                problems.join("; ")
            )));
        }
        let mut lines = vec![
            "OAuth token accepted".to_owned(),
            format!("Contact.{field} (External ID)"),
            format!("{object} with {} (External ID)", mapping::WAMID),
        ];
        let limits = self.send(Method::GET, "/limits", None, Retry::Safe).await?;
        let daily = &limits["DailyApiRequests"];
        if let (Some(max), Some(remaining)) = (daily["Max"].as_u64(), daily["Remaining"].as_u64()) {
            let usage = ApiUsage {
                used: max.saturating_sub(remaining),
                allowed: max,
            };
            self.usage.set(usage, name);
            lines.push(format!(
                "API requests in the last 24 h: {}/{}",
                usage.used, usage.allowed
            ));
        }
        Ok(lines)
    }

    /// Contacts holding the WhatsApp id are reused (several: refused, naming them); hand-made
    /// ones found by phone get the WhatsApp id written on them; the rest are upserted on the
    /// External ID field (safe to repeat). Names are written only on contacts created here.
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let field = self.config.whatsapp_field.clone();
        let mut ids: Vec<String> = contacts.iter().map(|c| c.whatsapp_id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        let existing = self.by_whatsapp_id(&ids).await?;
        let mut out: Vec<Option<ItemResult<String>>> = vec![None; contacts.len()];
        for (i, contact) in contacts.iter().enumerate() {
            match existing.get(&contact.whatsapp_id).map(Vec::as_slice) {
                Some([id]) => out[i] = Some(Ok(id.clone())),
                Some(several) if several.len() > 1 => {
                    out[i] = Some(Err(CrmError::Invalid(format!(
                        "several contacts hold this WhatsApp id in {field}: [{}]; merge them \
                         in Salesforce",
                        several.join(", ")
                    ))))
                }
                _ => {}
            }
        }
        // The first input of each WhatsApp id not found stands for its repeats.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut missing: Vec<(usize, &ContactSync)> = Vec::new();
        for (i, contact) in contacts.iter().enumerate() {
            if out[i].is_none() && !first_of.contains_key(contact.whatsapp_id.as_str()) {
                first_of.insert(&contact.whatsapp_id, i);
                missing.push((i, contact));
            }
        }
        let hand_made = self.by_phone(&missing).await?;
        let mut links: Vec<(usize, Value)> = hand_made
            .iter()
            .map(|(i, id)| {
                (
                    *i,
                    json!({"attributes": {"type": "Contact"}, "id": id,
                           field.as_str(): contacts[*i].whatsapp_id}),
                )
            })
            .collect();
        links.sort_by_key(|(i, _)| *i);
        let records: Vec<Value> = links.iter().map(|(_, r)| r.clone()).collect();
        for ((i, _), result) in links
            .iter()
            .zip(self.write_all("Contact", None, &records).await?)
        {
            out[*i] = Some(result);
        }
        let rest: Vec<usize> = missing
            .iter()
            .map(|(i, _)| *i)
            .filter(|i| !hand_made.contains_key(i))
            .collect();
        let records: Vec<Value> = rest
            .iter()
            .map(|i| contact_record(&contacts[*i], &field))
            .collect();
        let results = self.write_all("Contact", Some(&field), &records).await?;
        for (i, result) in rest.iter().zip(results) {
            out[*i] = Some(result);
        }
        Ok(contacts
            .iter()
            .enumerate()
            .map(|(i, c)| match &out[i] {
                Some(r) => r.clone(),
                None => match first_of
                    .get(c.whatsapp_id.as_str())
                    .and_then(|f| out[*f].clone())
                {
                    Some(r) => r,
                    None => Err(CrmError::Transient("not sent".into())),
                },
            })
            .collect())
    }

    /// Each message a record of the message object, upserted on its wamid 200 a call: a
    /// message sent again (a lost answer, a crash) updates the same record.
    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let object = &self.config.message_object;
        // One record per wamid: the same key twice in one call is refused (DUPLICATE_VALUE).
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut unique = Vec::new();
        for m in messages {
            if !first_of.contains_key(m.wamid.as_str()) {
                first_of.insert(&m.wamid, unique.len());
                unique.push(message_record(m, object));
            }
        }
        let results = self
            .write_all(object, Some(mapping::WAMID), &unique)
            .await?;
        Ok(messages
            .iter()
            .map(|m| results[first_of[m.wamid.as_str()]].clone())
            .collect())
    }

    /// The message records' `Status__c` (and `Status_Detail__c` for a failure), updated by
    /// record id 200 a call: an update never creates a stray record.
    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let object = &self.config.message_object;
        // The last status of each record wins (the engine merges them forward).
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        let mut order: Vec<&str> = Vec::new();
        for (i, s) in statuses.iter().enumerate() {
            if last_of.insert(&s.crm_id, i).is_none() {
                order.push(&s.crm_id);
            }
        }
        let records: Vec<Value> = order
            .iter()
            .map(|id| {
                let s = &statuses[last_of[id]];
                let mut record = json!({"attributes": {"type": object}, "id": id,
                                        mapping::STATUS: s.state.as_str()});
                if let Some(failure) = &s.failure {
                    record[mapping::STATUS_DETAIL] = json!(truncate(failure, 255));
                }
                record
            })
            .collect();
        let results = self.write_all(object, None, &records).await?;
        let by_id: HashMap<&str, &ItemResult<String>> =
            order.iter().copied().zip(results.iter()).collect();
        Ok(statuses
            .iter()
            .map(|s| match by_id.get(s.crm_id.as_str()) {
                Some(Ok(_)) => Ok(()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(CrmError::Transient("not sent".into())),
            })
            .collect())
    }

    /// The message records holding these wamids (SOQL on the External ID).
    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        let object = &self.config.message_object;
        let make = |run: &[String]| {
            format!(
                "SELECT Id, {} FROM {object} WHERE {} IN ({})",
                mapping::WAMID,
                mapping::WAMID,
                literals(run)
            )
        };
        let mut found = Vec::new();
        for range in query_chunks(wamids, make) {
            for row in self.query(&make(&wamids[range])).await? {
                if let (Some(id), Some(wamid)) = (row["Id"].as_str(), row[mapping::WAMID].as_str())
                {
                    // SOQL compares text case-insensitively; the wamid is case-sensitive.
                    if wamids.iter().any(|w| w == wamid) {
                        found.push((wamid.to_owned(), id.to_owned()));
                    }
                }
            }
        }
        Ok(found)
    }

    /// Deletes the contact's message records (`WhatsApp_Message__c`: the ledger's, and every
    /// record whose `Contact__c` is the contact — its lookup is "clear the value" on delete, so
    /// deleting the Contact alone would leave them), then the Contact. Deleted records sit in
    /// Salesforce's Recycle Bin for 15 days and are then purged. Messages first: a crash in
    /// between leaves the Contact, so the next attempt finds them again. Without a link, every
    /// Contact holding the WhatsApp id in the External ID field.
    async fn erase_contact(&self, contact: &ContactErasure) -> Result<Erasure, CrmError> {
        let contacts = match &contact.crm_contact_id {
            Some(id) => vec![id.clone()],
            None => self
                .by_whatsapp_id(std::slice::from_ref(&contact.whatsapp_id))
                .await?
                .remove(&contact.whatsapp_id)
                .unwrap_or_default(),
        };
        let mut messages: Vec<String> = Vec::new();
        for id in &contact.message_crm_ids {
            if !messages.contains(id) {
                messages.push(id.clone());
            }
        }
        if !contacts.is_empty() {
            let object = &self.config.message_object;
            let make = |run: &[String]| {
                format!(
                    "SELECT Id FROM {object} WHERE {} IN ({})",
                    mapping::CONTACT,
                    literals(run)
                )
            };
            for range in query_chunks(&contacts, make) {
                for row in self.query(&make(&contacts[range])).await? {
                    if let Some(id) = row["Id"].as_str() {
                        if !messages.iter().any(|m| m == id) {
                            messages.push(id.to_owned());
                        }
                    }
                }
            }
        }
        let mut erased = self.delete_records(&messages).await?;
        for id in &contacts {
            erased |= self.delete_contact(id).await?;
        }
        Ok(if erased {
            Erasure::Erased
        } else {
            Erasure::NotFound
        })
    }

    async fn update_whatsapp_ids(&self, updates: &[(String, String)]) -> Result<(), CrmError> {
        let field = &self.config.whatsapp_field;
        let records: Vec<Value> = updates
            .iter()
            .map(
                |(id, wa)| json!({"attributes": {"type": "Contact"}, "id": id, field.as_str(): wa}),
            )
            .collect();
        for result in self.write_all("Contact", None, &records).await? {
            if let Err(e @ CrmError::Fatal(_)) = result {
                return Err(e);
            }
        }
        Ok(())
    }
}

wacrm_crm::adapter_kind!(
    /// `kind = "salesforce"` in the registry.
    SalesforceKind,
    "salesforce",
    SalesforceConfig,
    Salesforce::new
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_46_are_refused() {
        let mut config = SalesforceConfig {
            client_id: "id".into(),
            client_secret: "secret".into(),
            ..SalesforceConfig::default()
        };
        assert!(Salesforce::new(config.clone()).is_ok());
        config.api_version = "v45.0".into();
        assert!(matches!(
            Salesforce::new(config.clone()),
            Err(CrmError::Fatal(_))
        ));
        config.api_version = "62".into();
        assert!(matches!(Salesforce::new(config), Err(CrmError::Fatal(_))));
    }

    #[test]
    fn queries_are_split_to_fit_the_url() {
        let ids: Vec<String> = (0..2000).map(|i| format!("55119880{i:05}")).collect();
        let make =
            |run: &[String]| format!("SELECT Id FROM Contact WHERE X IN ({})", literals(run));
        let chunks = query_chunks(&ids, make);
        assert!(chunks.len() > 1);
        assert_eq!(chunks.iter().map(|r| r.len()).sum::<usize>(), 2000);
        for range in chunks {
            assert!(encode(&make(&ids[range])).len() <= MAX_QUERY_URL);
        }
        assert_eq!(encode("a b'+"), "a%20b%27%2B");
    }
}
