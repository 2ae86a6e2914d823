//! `POST /crm/v3/objects/{contacts,communications}/search`: filter groups (OR) of filters
//! (AND), HubSpot's limits, sorting and paging, against the records and property definitions of
//! the searched type.
//!
//! Comparisons follow HubSpot's CRM search guide: text compares without regard to case, numbers
//! and dates (ISO 8601 or epoch milliseconds) compare as numbers. An `EQ` compares the stored
//! text exactly (so `phone` matches only the text as typed; the calculated phone properties hold
//! digits only).

use std::cmp::Ordering;

use axum::http::StatusCode;
use chrono::DateTime;
use serde_json::{json, Value};

use super::ops::{COMMUNICATION_DEFAULT_PROPERTIES, CONTACT_DEFAULT_PROPERTIES};
use super::server::Reply;
use super::state::{Kind, Record, State};
use super::{
    MAX_FILTERS_PER_GROUP, MAX_FILTERS_TOTAL, MAX_FILTER_GROUPS, SEARCH_MAX_LIMIT,
    SEARCH_MAX_RESULTS,
};

/// Properties a free-text `query` looks in, for contacts.
const CONTACT_QUERY_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "company",
    "hs_object_id",
];

/// Properties a free-text `query` looks in, for communications.
const COMMUNICATION_QUERY_PROPERTIES: &[&str] = &["hs_communication_body", "hs_object_id"];

/// What a search of one type looks in, and answers when no properties are asked for.
fn query_and_default_properties(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::Contact => (CONTACT_QUERY_PROPERTIES, CONTACT_DEFAULT_PROPERTIES),
        Kind::Communication | Kind::Note => (
            COMMUNICATION_QUERY_PROPERTIES,
            COMMUNICATION_DEFAULT_PROPERTIES,
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    fn parse(text: &str) -> Option<Operator> {
        Some(match text {
            "EQ" => Operator::Eq,
            "NEQ" => Operator::Neq,
            "LT" => Operator::Lt,
            "LTE" => Operator::Lte,
            "GT" => Operator::Gt,
            "GTE" => Operator::Gte,
            "BETWEEN" => Operator::Between,
            "IN" => Operator::In,
            "NOT_IN" => Operator::NotIn,
            "HAS_PROPERTY" => Operator::HasProperty,
            "NOT_HAS_PROPERTY" => Operator::NotHasProperty,
            "CONTAINS_TOKEN" => Operator::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Operator::NotContainsToken,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone)]
struct Filter {
    property: String,
    operator: Operator,
    value: String,
    values: Vec<String>,
    high: String,
}

/// A number for comparisons: a decimal number, or a date as epoch milliseconds.
fn number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().or_else(|| {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|d| d.timestamp_millis() as f64)
    })
}

fn compare(stored: &str, given: &str) -> Ordering {
    match (number(stored), number(given)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => stored.to_lowercase().cmp(&given.to_lowercase()),
    }
}

fn same(stored: &str, given: &str) -> bool {
    stored.to_lowercase() == given.to_lowercase()
}

/// `*` matches any run of characters; everything else matches itself, case-insensitively.
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != '*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some(p);
            mark = t;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn contains_token(stored: &str, pattern: &str) -> bool {
    glob(pattern, stored)
        || stored
            .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
            .any(|token| glob(pattern, token))
}

impl Filter {
    fn matches(&self, record: &Record) -> bool {
        let stored = record
            .props
            .get(&self.property)
            .map(String::as_str)
            .filter(|v| !v.is_empty());
        match (self.operator, stored) {
            (Operator::HasProperty, found) => found.is_some(),
            (Operator::NotHasProperty, found) => found.is_none(),
            (Operator::Neq, None)
            | (Operator::NotIn, None)
            | (Operator::NotContainsToken, None) => true,
            (_, None) => false,
            (Operator::Eq, Some(v)) => same(v, &self.value),
            (Operator::Neq, Some(v)) => !same(v, &self.value),
            (Operator::In, Some(v)) => self.values.iter().any(|x| same(v, x)),
            (Operator::NotIn, Some(v)) => !self.values.iter().any(|x| same(v, x)),
            (Operator::Lt, Some(v)) => compare(v, &self.value) == Ordering::Less,
            (Operator::Lte, Some(v)) => compare(v, &self.value) != Ordering::Greater,
            (Operator::Gt, Some(v)) => compare(v, &self.value) == Ordering::Greater,
            (Operator::Gte, Some(v)) => compare(v, &self.value) != Ordering::Less,
            (Operator::Between, Some(v)) => {
                compare(v, &self.value) != Ordering::Less
                    && compare(v, &self.high) != Ordering::Greater
            }
            (Operator::ContainsToken, Some(v)) => contains_token(v, &self.value),
            (Operator::NotContainsToken, Some(v)) => !contains_token(v, &self.value),
        }
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl State {
    fn parse_filter(
        &self,
        kind: Kind,
        group: usize,
        index: usize,
        raw: &Value,
    ) -> Result<Filter, Reply> {
        let at = format!("filterGroups[{group}].filters[{index}]");
        let property = raw
            .get("propertyName")
            .and_then(Value::as_str)
            .ok_or_else(|| Reply::validation(format!("{at}.propertyName is required")))?;
        let operator_text = raw.get("operator").and_then(Value::as_str).unwrap_or("");
        let operator = Operator::parse(operator_text).ok_or_else(|| {
            Reply::validation(format!("{at}: unknown operator {operator_text:?}"))
        })?;
        if !self.is_defined(kind, property) {
            return Err(Reply::validation(format!(
                "{at}: there is no {} property {property:?}",
                kind.singular()
            )));
        }
        let value = text(raw.get("value"));
        let high = text(raw.get("highValue"));
        let values: Vec<String> = raw
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| vs.iter().filter_map(|v| text(Some(v))).collect())
            .unwrap_or_default();
        let needs = match operator {
            Operator::HasProperty | Operator::NotHasProperty => None,
            Operator::In | Operator::NotIn => {
                (values.is_empty()).then_some("`values` (a non-empty array)")
            }
            Operator::Between => {
                (value.is_none() || high.is_none()).then_some("`value` and `highValue`")
            }
            _ => value.is_none().then_some("`value`"),
        };
        if let Some(needs) = needs {
            return Err(Reply::validation(format!(
                "{at}: operator {operator_text} requires {needs}"
            )));
        }
        Ok(Filter {
            property: property.to_owned(),
            operator,
            value: value.unwrap_or_default(),
            values,
            high: high.unwrap_or_default(),
        })
    }

    /// A search of `kind` (contacts or communications).
    pub(super) fn search(&mut self, kind: Kind, body: &Value) -> Result<Reply, Reply> {
        let groups = body
            .get("filterGroups")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if groups.len() > MAX_FILTER_GROUPS {
            return Err(Reply::validation(format!(
                "Too many filter groups: {} (at most {MAX_FILTER_GROUPS})",
                groups.len()
            )));
        }
        let mut parsed = Vec::new();
        let mut total_filters = 0;
        for (g, group) in groups.iter().enumerate() {
            let filters = group
                .get("filters")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if filters.len() > MAX_FILTERS_PER_GROUP {
                return Err(Reply::validation(format!(
                    "Too many filters in filterGroups[{g}]: {} (at most {MAX_FILTERS_PER_GROUP} \
                     per group)",
                    filters.len()
                )));
            }
            total_filters += filters.len();
            let filters = filters
                .iter()
                .enumerate()
                .map(|(i, f)| self.parse_filter(kind, g, i, f))
                .collect::<Result<Vec<_>, _>>()?;
            parsed.push(filters);
        }
        if total_filters > MAX_FILTERS_TOTAL {
            return Err(Reply::validation(format!(
                "Too many filters: {total_filters} (at most {MAX_FILTERS_TOTAL} in all groups)"
            )));
        }

        let limit = match body.get("limit") {
            None | Some(Value::Null) => 10,
            Some(v) => v
                .as_u64()
                .ok_or_else(|| Reply::validation("limit must be a non-negative integer"))?,
        };
        if limit > SEARCH_MAX_LIMIT {
            return Err(Reply::validation(format!(
                "limit {limit} is too large (at most {SEARCH_MAX_LIMIT})"
            )));
        }
        let after = match body.get("after").and_then(Value::as_str) {
            None | Some("") => 0,
            Some(a) => a.parse::<u64>().map_err(|_| {
                Reply::validation(format!("after {a:?} is not a paging cursor of this search"))
            })?,
        };
        if after >= SEARCH_MAX_RESULTS {
            return Err(Reply::validation(format!(
                "Search results are limited to {SEARCH_MAX_RESULTS}; after {after} is past them"
            )));
        }
        let sorts: Vec<String> = body
            .get("sorts")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if sorts.len() > 1 {
            return Err(Reply::validation(
                "Only one sort is allowed per search request",
            ));
        }
        let sort = match sorts.first() {
            Some(s) => {
                let (property, descending) = match s.strip_prefix('-') {
                    Some(p) => (p, true),
                    None => (s.as_str(), false),
                };
                if !self.is_defined(kind, property) {
                    return Err(Reply::validation(format!(
                        "sorts: there is no {} property {property:?}",
                        kind.singular()
                    )));
                }
                Some((property.to_owned(), descending))
            }
            None => None,
        };
        let query = body
            .get("query")
            .and_then(Value::as_str)
            .map(str::to_lowercase)
            .filter(|q| !q.is_empty());
        let properties: Vec<String> = body
            .get("properties")
            .and_then(Value::as_array)
            .map(|p| {
                p.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();

        let (query_properties, default_properties) = query_and_default_properties(kind);
        let mut hits: Vec<(&u64, &Record)> = self
            .table(kind)
            .iter()
            .filter(|(_, r)| {
                parsed.is_empty() || parsed.iter().any(|g| g.iter().all(|f| f.matches(r)))
            })
            .filter(|(_, r)| {
                query.as_ref().is_none_or(|q| {
                    query_properties.iter().any(|p| {
                        r.props
                            .get(*p)
                            .is_some_and(|v| v.to_lowercase().contains(q.as_str()))
                    })
                })
            })
            .collect();
        if let Some((property, descending)) = &sort {
            hits.sort_by(|(a_id, a), (b_id, b)| {
                let order = match (a.props.get(property), b.props.get(property)) {
                    (Some(x), Some(y)) => compare(x, y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                let order = if *descending { order.reverse() } else { order };
                order.then(a_id.cmp(b_id))
            });
        }
        let total = hits.len();
        let defined = |name: &str| self.is_defined(kind, name);
        let start = usize::try_from(after).unwrap_or(usize::MAX);
        let take = usize::try_from(limit).unwrap_or(usize::MAX);
        let results: Vec<Value> = hits
            .iter()
            .skip(start)
            .take(take)
            .map(|(id, r)| r.to_json(**id, &properties, default_properties, &defined))
            .collect();
        let mut out = json!({"total": total, "results": results});
        let next = start.saturating_add(take);
        if take > 0 && next < total && (next as u64) < SEARCH_MAX_RESULTS {
            out["paging"] = json!({"next": {"after": next.to_string()}});
        }
        Ok(Reply::json(StatusCode::OK, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_and_tokens() {
        assert!(glob("*4321", "11987654321"));
        assert!(glob("a*c", "ABC"));
        assert!(!glob("a*d", "abc"));
        assert!(contains_token("Ana Maria", "maria"));
        assert!(!contains_token("Ana Maria", "mar"));
        assert!(contains_token("ana@example.com", "*@example.com"));
    }

    #[test]
    fn numbers_and_dates_compare_as_numbers() {
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(
            compare("2024-01-01T00:00:00.000Z", "1704067200001"),
            Ordering::Less
        );
        assert_eq!(compare("b", "A"), Ordering::Greater);
    }
}
