//! Re-driving dead letters once their cause is fixed.
//!
//! A webhook dead letter is a complete webhook body (a rejected part is kept as a one-part
//! payload), so it goes through normalisation again and its events are published; if it still
//! cannot be understood it stays dead with the new reason. A consumer dead letter is published
//! again to its original topic with its original key and headers, so every consumer group
//! sees it again (they are idempotent). Either way the outcome is recorded on the dead letter.

use wacrm_bus::cloudevents::{event_record, redrive_record};
use wacrm_bus::{EventBus, OutboundRecord, Topics};
use wacrm_core::optout::OptOutKeywords;
use wacrm_store::queries::{self, DeadLetterView};
use wacrm_store::{Db, StoreError};

/// The records that re-drive a dead letter, or why it cannot be re-driven.
pub fn records_for(
    topics: &Topics,
    source: &str,
    keywords: &OptOutKeywords,
    dead: &DeadLetterView,
) -> Result<Vec<OutboundRecord>, String> {
    if dead.source == "webhook" {
        let normalised = crate::webhook::webhook_events(dead.payload.as_bytes(), keywords)
            .map_err(|e| e.to_string())?;
        if let Some(still) = normalised.rejected.first() {
            return Err(still.reason.clone());
        }
        return normalised
            .events
            .iter()
            .map(|e| event_record(topics, source, e).map_err(|e| e.to_string()))
            .collect();
    }
    let headers: Vec<(String, String)> = dead
        .headers
        .as_object()
        .map(|h| {
            h.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    redrive_record(&headers, dead.payload.as_bytes())
        .map(|r| vec![r])
        .ok_or_else(|| "the dead letter does not name its original topic".to_owned())
}

/// Re-drives one dead letter and records the outcome. `Ok(Err(reason))`: still dead.
pub async fn redrive(
    db: &Db,
    bus: &dyn EventBus,
    topics: &Topics,
    source: &str,
    keywords: &OptOutKeywords,
    dead: &DeadLetterView,
) -> Result<Result<(), String>, StoreError> {
    let outcome = match records_for(topics, source, keywords, dead) {
        Ok(records) => bus.publish(records).await.map_err(|e| e.to_string()),
        Err(reason) => Err(reason),
    };
    queries::record_redrive(db, &dead.id, outcome.clone()).await?;
    Ok(outcome)
}
