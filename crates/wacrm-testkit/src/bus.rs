//! Events as the bus delivers them, for consumer tests that call a handler directly.

use wacrm_bus::cloudevents::{event_record, RecordError};
use wacrm_bus::{Record, Topics};
use wacrm_core::Event;

/// The records a consumer of the default topics would receive for these events, with offsets
/// 0, 1, 2… in order (as one partition delivers them).
pub fn records(events: &[Event]) -> Result<Vec<Record>, RecordError> {
    let topics = Topics::default();
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let r = event_record(&topics, "/test", e)?;
            Ok(Record {
                topic: r.topic,
                partition: 0,
                offset: i as i64,
                key: r.key,
                headers: r.headers,
                payload: r.payload,
                timestamp_ms: 0,
            })
        })
        .collect()
}
