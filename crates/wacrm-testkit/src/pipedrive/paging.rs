//! Reading `limit`/`start` and answering v1's offset-paginated lists.

use serde_json::{json, Value};

use super::server::{Call, Reply};
use super::state::State;

/// The documented largest `limit` of every list the fake serves.
pub(super) const MAX_LIMIT: usize = 500;
/// `limit` when the request gives none.
pub(super) const DEFAULT_LIMIT: usize = 100;

impl State {
    /// The `limit` query parameter: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
    pub(super) fn limit(&mut self, call: &Call<'_>) -> Result<usize, Reply> {
        let Some(text) = call.query("limit") else {
            return Ok(DEFAULT_LIMIT);
        };
        match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(self.violation(
                call,
                format!("?limit: {text:?} is not between 1 and the documented maximum {MAX_LIMIT}"),
            )),
        }
    }

    /// The `start` query parameter of v1 lists, 0 when absent.
    pub(super) fn start(&mut self, call: &Call<'_>) -> Result<usize, Reply> {
        let Some(text) = call.query("start") else {
            return Ok(0);
        };
        text.parse::<usize>()
            .map_err(|_| self.violation(call, format!("?start: {text:?} is not an offset")))
    }
}

/// One page of a v1 list: `additional_data.pagination.{start, limit, more_items_in_collection,
/// next_start}` (`next_start` only when there are more). An empty page has `data: null`, as
/// Pipedrive's v1 lists answer (clients must accept both `null` and `[]`).
pub(super) fn offset_page(items: Vec<Value>, start: usize, limit: usize) -> Reply {
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let more = start.saturating_add(limit) < total;
    let mut pagination = json!({
        "start": start,
        "limit": limit,
        "more_items_in_collection": more,
    });
    if more {
        pagination["next_start"] = json!(start + limit);
    }
    let data = if page.is_empty() {
        Value::Null
    } else {
        Value::Array(page)
    };
    Reply::success(data, json!({ "pagination": pagination }))
}
