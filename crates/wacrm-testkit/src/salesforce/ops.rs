//! The operations: SOQL queries, describe, limits, sObject Collections upsert, update and
//! delete, a record's delete, and the Tooling API's custom object and custom field creation.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::server::{Call, Reply};
use super::soql;
use super::state::{looks_like_id, Field, SObject, State};

/// Records per sObject Collections request ("The list can contain up to 200 objects":
/// resources-composite-sobjects-collections-upsert.html, -update.html).
pub(super) const MAX_COLLECTION: usize = 200;
/// Rows per query page: the default batch size of a query is 2,000 records (REST API
/// Developer Guide, "Execute a SOQL Query": `nextRecordsUrl` when more remain).
const QUERY_PAGE: usize = 2000;
/// The longest query URL the fake takes. Salesforce refuses long URIs (HTTP 414); the exact
/// limit is not in the sources — 16,384 characters is the fake's own choice (unverified).
pub(super) const MAX_URL: usize = 16_384;

/// A per-record error inside a collection answer: `{"statusCode", "message", "fields"}`
/// (resources-composite-sobjects-collections-create.html, response example).
fn record_error(code: &str, message: &str, fields: &[&str]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

/// How a delete of one id ends.
enum Deleted {
    /// It was there, and is gone (in the Recycle Bin).
    Now,
    /// Deleted before (`ENTITY_IS_DELETED`).
    Before,
    /// No record of the object has this id.
    Unknown,
}

impl State {
    /// Deletes a record of `object` by id: its values are gone, its id is remembered as
    /// deleted, and lookups to it are cleared (the adapter's `Contact__c` is created with
    /// `deleteConstraint: SetNull`, "clear the value of this field": the messages stay).
    fn delete_record(&mut self, object: &str, id: &str) -> Deleted {
        let key = id.get(..15).unwrap_or(id).to_owned();
        let Some(name) = self.object(object).map(|o| o.name.clone()) else {
            return Deleted::Unknown;
        };
        let found = self.object_mut(&name).and_then(|o| {
            let full = o
                .records
                .keys()
                .find(|k| k.get(..15) == Some(key.as_str()))?;
            let full = full.clone();
            o.records.remove(&full).map(|_| full)
        });
        let Some(full) = found else {
            return if self.deleted.contains(&key) {
                Deleted::Before
            } else {
                Deleted::Unknown
            };
        };
        self.deleted.insert(key);
        for other in self.objects.values_mut() {
            let lookups: Vec<String> = other
                .fields
                .iter()
                .filter(|f| {
                    f.reference_to
                        .as_deref()
                        .is_some_and(|t| t.eq_ignore_ascii_case(&name))
                })
                .map(|f| f.name.clone())
                .collect();
            for record in other.records.values_mut() {
                for lookup in &lookups {
                    let points_here = record
                        .get(lookup)
                        .and_then(Value::as_str)
                        .is_some_and(|v| v.get(..15) == full.get(..15));
                    if points_here {
                        record.remove(lookup);
                    }
                }
            }
        }
        Deleted::Now
    }

    /// `DELETE /sobjects/{object}/{id}`: `204` and no body; a record deleted before is `404
    /// ENTITY_IS_DELETED`, an unknown one `404 NOT_FOUND` (REST API Developer Guide, "Delete a
    /// Record"; "Status Codes and Error Responses").
    pub(super) fn record_delete(&mut self, call: &Call<'_>, object: &str, id: &str) -> Reply {
        if !call.query.is_empty() || !call.body.is_null() {
            return self.violation(
                call,
                "INVALID_QUERY_FILTER_OPERATOR",
                "a record delete takes no query parameters and no body",
            );
        }
        if self.object(object).is_none() {
            return Reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        }
        if !looks_like_id(id) {
            return Reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("Provided external ID field does not exist or is not accessible: {id}"),
            );
        }
        match self.delete_record(object, id) {
            Deleted::Now => Reply::json(StatusCode::NO_CONTENT, Value::Null),
            Deleted::Before => Reply::error(
                StatusCode::NOT_FOUND,
                "ENTITY_IS_DELETED",
                "entity is deleted",
            ),
            Deleted::Unknown => Reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ),
        }
    }

    /// `DELETE /composite/sobjects?ids=…&allOrNone=…`: up to 200 ids of any objects, a result
    /// per id in order (`{"id", "success": true, "errors": []}`, or a per-record error:
    /// `MALFORMED_ID`, `ENTITY_IS_DELETED`, `INVALID_CROSS_REFERENCE_KEY`); with `allOrNone=true`
    /// one failure rolls back every delete (REST API Developer Guide, "Delete Records Using
    /// sObject Collections").
    pub(super) fn collections_delete(&mut self, call: &Call<'_>) -> Reply {
        if !call.body.is_null() {
            return self.violation(
                call,
                "JSON_PARSER_ERROR",
                "the delete takes its ids in the query, no body",
            );
        }
        let mut ids: Option<Vec<String>> = None;
        let mut all_or_none = false;
        for (name, value) in call.query {
            match name.as_str() {
                "ids" => {
                    ids = Some(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|v| !v.is_empty())
                            .map(str::to_owned)
                            .collect(),
                    )
                }
                "allOrNone" => match value.as_str() {
                    "true" => all_or_none = true,
                    "false" => all_or_none = false,
                    other => {
                        return self.violation(
                            call,
                            "INVALID_QUERY_FILTER_OPERATOR",
                            format!("?allOrNone: {other:?} is not true or false"),
                        )
                    }
                },
                other => {
                    return self.violation(
                        call,
                        "INVALID_QUERY_FILTER_OPERATOR",
                        format!("?{other}: the delete takes ids and allOrNone"),
                    )
                }
            }
        }
        let ids = ids.unwrap_or_default();
        if ids.is_empty() || ids.len() > MAX_COLLECTION {
            return self.violation(
                call,
                "INVALID_FIELD",
                format!("?ids: 1 to {MAX_COLLECTION} record ids, not {}", ids.len()),
            );
        }
        // Which object each id belongs to, by its key prefix.
        let owner = |state: &State, id: &str| -> Option<String> {
            state
                .objects
                .values()
                .find(|o| id.starts_with(o.prefix.as_str()))
                .map(|o| o.name.clone())
        };
        let mut plan = Vec::new();
        for id in &ids {
            let object = if looks_like_id(id) {
                owner(self, id)
            } else {
                None
            };
            plan.push((id.clone(), object));
        }
        if all_or_none {
            let fails = plan.iter().any(|(id, object)| {
                let key = id.get(..15).unwrap_or(id);
                object.as_ref().is_none_or(|o| {
                    self.object(o)
                        .is_none_or(|o| !o.records.keys().any(|k| k.get(..15) == Some(key)))
                })
            });
            if fails {
                let results = plan
                    .iter()
                    .map(|_| {
                        record_error(
                            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                            "Record rolled back because not all records were valid and the \
                             request was using AllOrNone header",
                            &[],
                        )
                    })
                    .collect();
                return Reply::json(StatusCode::OK, Value::Array(results));
            }
        }
        let mut results = Vec::new();
        for (id, object) in plan {
            if !looks_like_id(&id) {
                results.push(record_error(
                    "MALFORMED_ID",
                    &format!("malformed id {id}"),
                    &[],
                ));
                continue;
            }
            let outcome = match &object {
                Some(object) => self.delete_record(object, &id),
                None => Deleted::Unknown,
            };
            results.push(match outcome {
                Deleted::Now => json!({"id": id, "success": true, "errors": []}),
                Deleted::Before => record_error("ENTITY_IS_DELETED", "entity is deleted", &[]),
                Deleted::Unknown => record_error(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[],
                ),
            });
        }
        Reply::json(StatusCode::OK, Value::Array(results))
    }

    /// `GET /query?q=SOQL`: `{"totalSize", "done", "records": [{"attributes": {"type",
    /// "url"}, …}], "nextRecordsUrl"?}` (REST API Developer Guide, "Execute a SOQL Query").
    pub(super) fn query_op(&mut self, call: &Call<'_>) -> Reply {
        for (name, _) in call.query {
            if name != "q" {
                return self.violation(
                    call,
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!("?{name}: the query resource takes only q"),
                );
            }
        }
        let Some(q) = call.query("q") else {
            return self.violation(call, "MALFORMED_QUERY", "?q: required");
        };
        let encoded_len = call.path.len() + q.len() * 3 / 2;
        if encoded_len > MAX_URL {
            return self.violation(
                call,
                "URI_TOO_LONG",
                format!(
                    "the query URL is about {encoded_len} characters; the fake takes {MAX_URL}"
                ),
            );
        }
        let query = match soql::parse(q) {
            Ok(query) => query,
            Err(why) => return self.violation(call, "MALFORMED_QUERY", format!("SOQL: {why}")),
        };
        let Some(object) = self.object(&query.object).cloned() else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALID_TYPE",
                &format!("sObject type '{}' is not supported.", query.object),
            );
        };
        // Every field named must exist (Salesforce answers INVALID_FIELD "No such column").
        let mut named: Vec<&str> = query.fields.iter().map(String::as_str).collect();
        named.extend(query.condition.iter().flatten().map(|t| t.field.as_str()));
        for field in named {
            if object.field(field).is_none() {
                return self.violation(
                    call,
                    "INVALID_FIELD",
                    format!("No such column '{field}' on entity '{}'", object.name),
                );
            }
        }
        // The fake's own bound on an IN list (Salesforce documents the query length, not the
        // list's; 1,000 keeps lists sane).
        if query.longest_in > 1000 {
            return self.violation(
                call,
                "MALFORMED_QUERY",
                "an IN list of more than 1,000 values",
            );
        }
        let matches = |record: &Map<String, Value>| -> bool {
            query.condition.is_empty()
                || query.condition.iter().any(|all| {
                    all.iter().all(|term| {
                        let Some(field) = object.field(&term.field) else {
                            return false;
                        };
                        let Some(stored) = record.get(&field.name).and_then(Value::as_str) else {
                            return false;
                        };
                        term.values.iter().any(|v| field.same(stored, v))
                    })
                })
        };
        let mut rows: Vec<Value> = object
            .records
            .values()
            .filter(|r| matches(r))
            .map(|r| {
                let mut row = Map::new();
                let id = r.get("Id").and_then(Value::as_str).unwrap_or_default();
                row.insert(
                    "attributes".into(),
                    json!({"type": object.name, "url": format!("/services/data/{}/sobjects/{}/{id}", call.version, object.name)}),
                );
                for f in &query.fields {
                    let name = object.field(f).map(|d| d.name.clone()).unwrap_or_default();
                    row.insert(name.clone(), r.get(&name).cloned().unwrap_or(Value::Null));
                }
                Value::Object(row)
            })
            .collect();
        if let Some(limit) = query.limit {
            rows.truncate(limit);
        }
        self.page(call.version, rows)
    }

    fn page(&mut self, version: &str, mut rows: Vec<Value>) -> Reply {
        let total = rows.len();
        if rows.len() <= QUERY_PAGE {
            return Reply::json(
                StatusCode::OK,
                json!({"totalSize": total, "done": true, "records": rows}),
            );
        }
        let rest = rows.split_off(QUERY_PAGE);
        let locator = format!("01gFAKE{:08}-{QUERY_PAGE}", self.cursors.len() + 1);
        self.cursors
            .insert(locator.clone(), (version.to_owned(), rest));
        Reply::json(
            StatusCode::OK,
            json!({"totalSize": total, "done": false, "records": rows,
                   "nextRecordsUrl": format!("/services/data/{version}/query/{locator}")}),
        )
    }

    /// `GET /query/{locator}`: the next page of a query.
    pub(super) fn query_more(&mut self, call: &Call<'_>, locator: &str) -> Reply {
        match self.cursors.remove(locator) {
            Some((version, rows)) => self.page(&version, rows),
            None => self.violation(
                call,
                "INVALID_QUERY_LOCATOR",
                format!("no query locator {locator}"),
            ),
        }
    }

    /// `GET /limits`: `{"DailyApiRequests": {"Max", "Remaining"}, …}` (REST API Developer
    /// Guide, "Limits").
    pub(super) fn limits(&mut self, call: &Call<'_>) -> Reply {
        if !call.query.is_empty() {
            return self.violation(
                call,
                "INVALID_QUERY_FILTER_OPERATOR",
                "/limits takes no parameters",
            );
        }
        let max = self.config.daily_api_requests;
        Reply::json(
            StatusCode::OK,
            json!({"DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(self.api_used)}}),
        )
    }

    /// `GET /sobjects/{object}/describe` (REST API Developer Guide, "sObject Describe"): the
    /// object and its fields; `404 NOT_FOUND` for an object the org does not have.
    pub(super) fn describe(&mut self, object: &str) -> Reply {
        match self.object(object) {
            Some(o) => Reply::json(
                StatusCode::OK,
                json!({
                    "name": o.name,
                    "label": o.label,
                    "custom": o.custom,
                    "keyPrefix": o.prefix,
                    "createable": true,
                    "updateable": true,
                    "fields": o.fields.iter().map(Field::to_json).collect::<Vec<_>>(),
                }),
            ),
            None => Reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            ),
        }
    }

    /// The `records` of a collection request, checked: an object with `records` (1–200) and
    /// optionally `allOrNone` (a boolean), nothing else.
    fn collection<'b>(&mut self, call: &Call<'b>) -> Result<(&'b Vec<Value>, bool), Reply> {
        let Some(body) = call.body.as_object() else {
            return Err(self.violation(
                call,
                "JSON_PARSER_ERROR",
                "the body is a JSON object with records",
            ));
        };
        for key in body.keys() {
            if key != "records" && key != "allOrNone" {
                return Err(self.violation(
                    call,
                    "JSON_PARSER_ERROR",
                    format!("/{key}: not a parameter of sObject Collections (allOrNone, records)"),
                ));
            }
        }
        let all_or_none = match body.get("allOrNone") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(self.violation(call, "JSON_PARSER_ERROR", "/allOrNone: a boolean"))
            }
        };
        let Some(records) = body.get("records").and_then(Value::as_array) else {
            return Err(self.violation(call, "JSON_PARSER_ERROR", "/records: required, an array"));
        };
        if records.is_empty() || records.len() > MAX_COLLECTION {
            return Err(self.violation(
                call,
                "EXCEEDED_ID_LIMIT",
                format!(
                    "/records: {} records; sObject Collections take 1 to {MAX_COLLECTION}",
                    records.len()
                ),
            ));
        }
        Ok((records, all_or_none))
    }

    /// Checks a record's shape: an object with `attributes.type` equal to `object`
    /// ("Each object in the request body must contain an attributes map. The map must contain
    /// a value for type"), every other key a field of the object, writable, of the right JSON
    /// type. Errors that are the adapter's mistakes are violations; the returned per-record
    /// error is what Salesforce answers for a value it refuses.
    fn check_record(
        &mut self,
        call: &Call<'_>,
        object: &SObject,
        record: &Value,
        creating: bool,
    ) -> Result<Option<Value>, Reply> {
        let Some(map) = record.as_object() else {
            return Err(self.violation(call, "JSON_PARSER_ERROR", "a record is a JSON object"));
        };
        let typed = map
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        if !typed.is_some_and(|t| t.eq_ignore_ascii_case(&object.name)) {
            return Err(self.violation(
                call,
                "INVALID_TYPE",
                format!(
                    "attributes.type {typed:?}: each record must carry attributes.type = {}",
                    object.name
                ),
            ));
        }
        for (key, value) in map {
            if key == "attributes" || key == "id" || key == "Id" {
                continue;
            }
            let Some(field) = object.field(key) else {
                return Err(self.violation(
                    call,
                    "INVALID_FIELD",
                    format!("No such column '{key}' on sobject of type {}", object.name),
                ));
            };
            let writable = if creating {
                field.createable
            } else {
                field.updateable
            };
            if !writable {
                return Err(self.violation(
                    call,
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    format!("{key}: not writable"),
                ));
            }
            if value.is_null() {
                continue;
            }
            let Some(text) = value.as_str() else {
                return Err(self.violation(
                    call,
                    "JSON_PARSER_ERROR",
                    format!("{key}: the fake's fields take strings"),
                ));
            };
            match field.kind {
                "datetime" => {
                    if chrono::DateTime::parse_from_rfc3339(text).is_err() {
                        return Err(self.violation(
                            call,
                            "INVALID_TYPE_ON_FIELD_IN_RECORD",
                            format!("{key}: {text:?} is not an ISO 8601 date-time"),
                        ));
                    }
                }
                "reference" => {
                    if !looks_like_id(text) {
                        return Ok(Some(record_error(
                            "MALFORMED_ID",
                            &format!("{}: id value of incorrect type: {text}", field.label),
                            &[&field.name],
                        )));
                    }
                    let target = field.reference_to.clone().unwrap_or_default();
                    let exists = self
                        .object(&target)
                        .is_some_and(|o| o.records.keys().any(|id| id[..15] == text[..15]));
                    if !exists {
                        return Ok(Some(record_error(
                            "INVALID_CROSS_REFERENCE_KEY",
                            "invalid cross reference id",
                            &[&field.name],
                        )));
                    }
                }
                _ => {
                    if field.length > 0 && text.chars().count() > field.length {
                        return Ok(Some(record_error(
                            "STRING_TOO_LONG",
                            &format!(
                                "{}: data value too large (max length={})",
                                field.label, field.length
                            ),
                            &[&field.name],
                        )));
                    }
                }
            }
        }
        Ok(None)
    }

    /// `PATCH /composite/sobjects/{object}/{externalIdField}` (resources-composite-sobjects-
    /// collections-upsert.html): up to 200 records of the object, each matched on the External
    /// ID field; answers `200` and one UpsertResult per record in order: `{"id", "success",
    /// "errors", "created"}`. No match: created (required fields enforced:
    /// `REQUIRED_FIELD_MISSING`); one: updated; several: `DUPLICATE_EXTERNAL_ID` naming the ids
    /// ("more than one record found for external id field: [ids]", as Salesforce words it in
    /// reports; unverified); the same key twice in one request: `DUPLICATE_VALUE` on each.
    pub(super) fn collections_upsert(
        &mut self,
        call: &Call<'_>,
        object: &str,
        field: &str,
    ) -> Reply {
        if !call.query.is_empty() {
            return self.violation(
                call,
                "INVALID_QUERY_FILTER_OPERATOR",
                "the upsert takes no query parameters",
            );
        }
        let Some(sobject) = self.object(object).cloned() else {
            return Reply::error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "The requested resource does not exist",
            );
        };
        let key = match sobject.field(field) {
            Some(f) if f.external_id => f.clone(),
            Some(_) => {
                return self.violation(
                    call,
                    "INVALID_FIELD",
                    format!("{field} is not an External ID field of {object}"),
                )
            }
            None => {
                return Reply::error(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    &format!(
                        "Provided external ID field does not exist or is not accessible: {field}"
                    ),
                )
            }
        };
        let (records, all_or_none) = match self.collection(call) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let snapshot = self.object(object).cloned();
        let keys: Vec<Option<String>> = records
            .iter()
            .map(|r| r.get(&key.name).and_then(Value::as_str).map(str::to_owned))
            .collect();
        let mut results = Vec::new();
        for (n, record) in records.iter().enumerate() {
            if record.get("id").is_some() || record.get("Id").is_some() {
                return self.violation(
                    call,
                    "INVALID_FIELD",
                    "records[]: \"Don't set the id field for any object\" in an upsert",
                );
            }
            let Some(value) = keys[n].clone().filter(|v| !v.is_empty()) else {
                return self.violation(
                    call,
                    "MISSING_ARGUMENT",
                    format!(
                        "records[{n}]: no value for the External ID field {}",
                        key.name
                    ),
                );
            };
            let twice = keys
                .iter()
                .enumerate()
                .any(|(m, k)| m != n && k.as_deref().is_some_and(|k| key.same(k, &value)));
            if twice {
                results.push(record_error(
                    "DUPLICATE_VALUE",
                    &format!("Duplicate external id specified: {value}"),
                    &[&key.name],
                ));
                continue;
            }
            let matched: Vec<String> = self
                .object(object)
                .map(|o| {
                    o.records
                        .iter()
                        .filter(|(_, r)| {
                            r.get(&key.name)
                                .and_then(Value::as_str)
                                .is_some_and(|s| key.same(s, &value))
                        })
                        .map(|(id, _)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            let creating = matched.is_empty();
            match self.check_record(call, &sobject, record, creating) {
                Err(reply) => return reply,
                Ok(Some(error)) => {
                    results.push(error);
                    continue;
                }
                Ok(None) => {}
            }
            let mut values: Map<String, Value> = record
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| *k != "attributes")
                        .map(|(k, v)| (canonical(&sobject, k), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            match matched.as_slice() {
                [] => {
                    let missing: Vec<&str> = sobject
                        .fields
                        .iter()
                        .filter(|f| {
                            f.required
                                && values
                                    .get(&f.name)
                                    .and_then(Value::as_str)
                                    .is_none_or(str::is_empty)
                        })
                        .map(|f| f.name.as_str())
                        .collect();
                    if !missing.is_empty() {
                        results.push(record_error(
                            "REQUIRED_FIELD_MISSING",
                            &format!("Required fields are missing: [{}]", missing.join(", ")),
                            &missing,
                        ));
                        continue;
                    }
                    values.retain(|_, v| !v.is_null());
                    let id = self.insert(&sobject.name, values);
                    results.push(json!({"id": id, "success": true, "errors": [], "created": true}));
                }
                [id] => {
                    if let Some(stored) =
                        self.object_mut(object).and_then(|o| o.records.get_mut(id))
                    {
                        for (k, v) in values {
                            if v.is_null() {
                                stored.remove(&k);
                            } else {
                                stored.insert(k, v);
                            }
                        }
                    }
                    results
                        .push(json!({"id": id, "success": true, "errors": [], "created": false}));
                }
                ids => {
                    results.push(record_error(
                        "DUPLICATE_EXTERNAL_ID",
                        &format!(
                            "{}: more than one record found for external id field: [{}]",
                            key.label,
                            ids.join(", ")
                        ),
                        &[&key.name],
                    ));
                }
            }
        }
        self.roll_back_if_needed(object, snapshot, all_or_none, results)
    }

    /// `allOrNone: true`: one failure rolls every record back, and the others answer
    /// `ALL_OR_NONE_OPERATION_ROLLED_BACK` (resources-composite-sobjects-collections-create.html).
    fn roll_back_if_needed(
        &mut self,
        object: &str,
        snapshot: Option<SObject>,
        all_or_none: bool,
        mut results: Vec<Value>,
    ) -> Reply {
        if all_or_none && results.iter().any(|r| r["success"] == false) {
            if let (Some(snapshot), Some(o)) = (snapshot, self.object_mut(object)) {
                *o = snapshot;
            }
            for r in results.iter_mut().filter(|r| r["success"] == true) {
                *r = record_error("ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back because not all records were valid and the request was using AllOrNone header", &[]);
            }
        }
        Reply::json(StatusCode::OK, Value::Array(results))
    }

    /// `PATCH /composite/sobjects` (resources-composite-sobjects-collections-update.html): up
    /// to 200 records, each with `attributes.type` and `id`, updated; one SaveResult per
    /// record in order. An id of no record answers `INVALID_CROSS_REFERENCE_KEY` (chosen: the
    /// page does not list the code), a malformed one `MALFORMED_ID`. The fake holds the
    /// records of one object type per request (the adapter sends one).
    pub(super) fn collections_update(&mut self, call: &Call<'_>) -> Reply {
        if !call.query.is_empty() {
            return self.violation(
                call,
                "INVALID_QUERY_FILTER_OPERATOR",
                "the update takes no query parameters",
            );
        }
        let (records, all_or_none) = match self.collection(call) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let Some(object) = records
            .first()
            .and_then(|r| r["attributes"]["type"].as_str())
            .and_then(|t| self.object(t))
            .cloned()
        else {
            return self.violation(
                call,
                "INVALID_TYPE",
                "records[0].attributes.type: not an object of the org",
            );
        };
        let snapshot = Some(object.clone());
        let mut results = Vec::new();
        for record in records {
            let Some(id) = record
                .get("id")
                .or_else(|| record.get("Id"))
                .and_then(Value::as_str)
            else {
                return self.violation(
                    call,
                    "MISSING_ARGUMENT",
                    "records[]: an update names each record's id",
                );
            };
            match self.check_record(call, &object, record, false) {
                Err(reply) => return reply,
                Ok(Some(error)) => {
                    results.push(error);
                    continue;
                }
                Ok(None) => {}
            }
            if !looks_like_id(id) {
                results.push(record_error(
                    "MALFORMED_ID",
                    &format!("malformed id {id}"),
                    &["Id"],
                ));
                continue;
            }
            let name = object.name.clone();
            let Some(stored) = self.object_mut(&name).and_then(|o| {
                o.records
                    .iter_mut()
                    .find(|(k, _)| k[..15] == id[..15])
                    .map(|(_, v)| v)
            }) else {
                results.push(record_error(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[],
                ));
                continue;
            };
            let full_id = stored.get("Id").cloned().unwrap_or(Value::Null);
            if let Some(map) = record.as_object() {
                for (k, v) in map {
                    if k == "attributes" || k == "id" || k == "Id" {
                        continue;
                    }
                    let k = canonical(&object, k);
                    if v.is_null() {
                        stored.remove(&k);
                    } else {
                        stored.insert(k, v.clone());
                    }
                }
            }
            results.push(json!({"id": full_id, "success": true, "errors": []}));
        }
        let name = object.name.clone();
        self.roll_back_if_needed(&name, snapshot, all_or_none, results)
    }

    /// `POST /tooling/sobjects/CustomObject` with `{"FullName", "Metadata": {label,
    /// pluralLabel, nameField {type, label, displayFormat?}, deploymentStatus, sharingModel}}`
    /// (Tooling API, "CustomObject", and Metadata API, "CustomObject"; the shape as the fake
    /// models it from those references — unverified against an org). Answers `201 {"id",
    /// "success": true, "errors": []}`; a name in use `400 DUPLICATE_DEVELOPER_NAME`.
    pub(super) fn create_custom_object(&mut self, call: &Call<'_>) -> Reply {
        let full_name = call.body["FullName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let meta = &call.body["Metadata"];
        if !full_name.ends_with("__c") || full_name.len() < 4 {
            return self.violation(
                call,
                "INVALID_INPUT",
                "FullName: a custom object's API name ends in __c",
            );
        }
        for key in ["label", "pluralLabel", "deploymentStatus", "sharingModel"] {
            if !meta[key].is_string() {
                return self.violation(
                    call,
                    "INVALID_INPUT",
                    format!("Metadata.{key}: required, a string"),
                );
            }
        }
        let name_type = meta["nameField"]["type"].as_str().unwrap_or_default();
        if !matches!(name_type, "AutoNumber" | "Text") || !meta["nameField"]["label"].is_string() {
            return self.violation(
                call,
                "INVALID_INPUT",
                "Metadata.nameField: {type: AutoNumber|Text, label}",
            );
        }
        if name_type == "AutoNumber" && !meta["nameField"]["displayFormat"].is_string() {
            return self.violation(
                call,
                "INVALID_INPUT",
                "Metadata.nameField.displayFormat: required for AutoNumber",
            );
        }
        if self.object(&full_name).is_some() {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "DUPLICATE_DEVELOPER_NAME",
                &format!("There is already an object named {full_name}"),
            );
        }
        let prefix = format!("a0{}", (b'A' + (self.objects.len() as u8 % 26)) as char);
        let mut name_field = Field::system("Name", "string", 80);
        name_field.label = meta["nameField"]["label"]
            .as_str()
            .unwrap_or("Name")
            .to_owned();
        if name_type == "AutoNumber" {
            name_field.auto_number = true;
            name_field.createable = false;
            name_field.updateable = false;
        } else {
            name_field.required = true;
        }
        let mut id = Field::system("Id", "id", 18);
        id.createable = false;
        id.updateable = false;
        let mut created = Field::system("CreatedDate", "datetime", 0);
        created.createable = false;
        created.updateable = false;
        self.objects.insert(
            full_name.clone(),
            SObject {
                name: full_name.clone(),
                label: meta["label"].as_str().unwrap_or_default().to_owned(),
                prefix,
                custom: true,
                fields: vec![id, name_field, created],
                records: Default::default(),
            },
        );
        let id = self.new_id("01I");
        Reply::json(
            StatusCode::CREATED,
            json!({"id": id, "success": true, "errors": [], "warnings": [], "infos": []}),
        )
    }

    /// `POST /tooling/sobjects/CustomField` with `{"FullName": "Object.Field__c", "Metadata":
    /// {label, type, …}}` (Tooling API, "CustomField"; unverified against an org). Types the
    /// fake takes: `Text` (length ≤ 255), `LongTextArea` (length ≤ 131,072, visibleLines),
    /// `DateTime`, `Lookup` (referenceTo, relationshipName), with `externalId`, `unique`,
    /// `caseSensitive` on Text.
    pub(super) fn create_custom_field(&mut self, call: &Call<'_>) -> Reply {
        let full_name = call.body["FullName"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let meta = call.body["Metadata"].clone();
        let Some((object, field)) = full_name.split_once('.') else {
            return self.violation(call, "INVALID_INPUT", "FullName: Object.Field__c");
        };
        if !field.ends_with("__c") {
            return self.violation(
                call,
                "INVALID_INPUT",
                "FullName: a custom field's API name ends in __c",
            );
        }
        let Some(label) = meta["label"].as_str() else {
            return self.violation(call, "INVALID_INPUT", "Metadata.label: required");
        };
        let kind_name = meta["type"].as_str().unwrap_or_default();
        let length = meta["length"].as_u64().unwrap_or(0) as usize;
        let mut def = Field::system(field, "string", length);
        def.label = label.to_owned();
        def.custom = true;
        match kind_name {
            "Text" => {
                if !(1..=255).contains(&length) {
                    return self.violation(
                        call,
                        "INVALID_INPUT",
                        "Metadata.length: a Text field is 1 to 255 long",
                    );
                }
            }
            "LongTextArea" => {
                if !(256..=131_072).contains(&length) || !meta["visibleLines"].is_u64() {
                    return self.violation(
                        call,
                        "INVALID_INPUT",
                        "Metadata: a LongTextArea takes length (256–131,072) and visibleLines",
                    );
                }
                def.kind = "textarea";
            }
            "DateTime" => {
                def.kind = "datetime";
                def.length = 0;
            }
            "Lookup" => {
                let Some(to) = meta["referenceTo"].as_str() else {
                    return self.violation(
                        call,
                        "INVALID_INPUT",
                        "Metadata.referenceTo: required for a Lookup",
                    );
                };
                if !meta["relationshipName"].is_string() {
                    return self.violation(
                        call,
                        "INVALID_INPUT",
                        "Metadata.relationshipName: required for a Lookup",
                    );
                }
                if self.object(to).is_none() {
                    return Reply::error(
                        StatusCode::BAD_REQUEST,
                        "FIELD_INTEGRITY_EXCEPTION",
                        &format!("referenceTo: no object {to}"),
                    );
                }
                def.kind = "reference";
                def.length = 18;
                def.reference_to = Some(to.to_owned());
            }
            other => {
                return self.violation(
                    call,
                    "INVALID_INPUT",
                    format!(
                    "Metadata.type {other:?}: the fake takes Text, LongTextArea, DateTime, Lookup"
                ),
                )
            }
        }
        for flag in ["externalId", "unique", "caseSensitive", "required"] {
            if !meta[flag].is_null() && !meta[flag].is_boolean() {
                return self.violation(
                    call,
                    "INVALID_INPUT",
                    format!("Metadata.{flag}: a boolean"),
                );
            }
        }
        def.external_id = meta["externalId"] == true;
        def.unique = meta["unique"] == true;
        def.case_sensitive = meta["caseSensitive"] == true;
        def.required = meta["required"] == true;
        if def.external_id && kind_name != "Text" {
            return self.violation(
                call,
                "INVALID_INPUT",
                "Metadata.externalId: only Text (and number, email) fields are External IDs",
            );
        }
        let Some(sobject) = self.object_mut(object) else {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "INVALID_INPUT",
                &format!("no object {object}"),
            );
        };
        if sobject.field(field).is_some() {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                "DUPLICATE_DEVELOPER_NAME",
                &format!("There is already a field named {field} on {object}"),
            );
        }
        sobject.fields.push(def);
        let id = self.new_id("00N");
        Reply::json(
            StatusCode::CREATED,
            json!({"id": id, "success": true, "errors": [], "warnings": [], "infos": []}),
        )
    }
}

/// The field's API name as the object spells it (keys are case-insensitive in requests).
fn canonical(object: &SObject, key: &str) -> String {
    object
        .field(key)
        .map(|f| f.name.clone())
        .unwrap_or_else(|| key.to_owned())
}
