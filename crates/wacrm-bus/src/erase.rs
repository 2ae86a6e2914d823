//! Erasing a person from the bus (LGPD erasure; docs/privacy.md).
//!
//! The embedded log is wacrm's own: every record whose key, headers or payload holds one of the
//! person's identities is deleted. Kafka's logs are the broker's: records cannot be deleted one
//! by one, so wacrm publishes a tombstone (a record with no value) for each of the person's keys
//! on the compacted contacts topic, and the broker drops their earlier records there at its next
//! compaction; on the other topics their records go when the topic's `retention.ms` passes.

/// What to erase from the bus.
#[derive(Clone, PartialEq, Eq)]
pub struct BusErasure {
    /// Texts that name the person in a record (phone digits in every spelling, BSUIDs): a record
    /// holding one of them in its key, headers or payload is theirs. Each at least six
    /// characters long (shorter ones are ignored: they would match unrelated records).
    pub needles: Vec<String>,
    /// The record keys of the person's contact records on the contacts topic: the contact id
    /// of each of their identities. The keys Kafka tombstones (before the erasure's own event,
    /// keyed by the contact id, which compaction then keeps in place of their records).
    pub contact_keys: Vec<String>,
    /// The contacts topic.
    pub contacts_topic: String,
}

impl std::fmt::Debug for BusErasure {
    // The needles are the person's phone numbers: never in a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusErasure")
            .field("needles", &self.needles.len())
            .field("contact_keys", &self.contact_keys.len())
            .field("contacts_topic", &self.contacts_topic)
            .finish()
    }
}

/// What a bus erasure did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusErased {
    /// Records deleted from a log of wacrm's own.
    pub removed: u64,
    /// Tombstones published (Kafka).
    pub tombstones: u64,
}

/// The shortest needle matched: shorter texts (a 4-digit code) would match other people.
#[cfg(feature = "embedded")]
const MIN_NEEDLE: usize = 6;

/// Deletes the person's records from the embedded log at `path`, through a connection of its
/// own (SQLite serialises it with the bus's writer). Returns how many.
#[cfg(feature = "embedded")]
pub(crate) fn erase_log(
    path: &std::path::Path,
    request: &BusErasure,
) -> Result<u64, crate::BusError> {
    use crate::BusError;
    use rusqlite::{params, Connection};
    let mut conn = Connection::open(path).map_err(|e| BusError::Unavailable(e.to_string()))?;
    // Freed pages zeroed, so the deleted records do not linger in the file's free pages.
    conn.execute_batch("PRAGMA busy_timeout=5000; PRAGMA secure_delete=ON;")
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
    let tx = conn
        .transaction()
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
    let mut removed = 0u64;
    for needle in request.needles.iter().filter(|n| n.len() >= MIN_NEEDLE) {
        removed += tx
            .execute(
                "DELETE FROM records WHERE instr(key, ?1) > 0 OR instr(headers, ?1) > 0
                     OR instr(CAST(payload AS TEXT), ?1) > 0",
                params![needle],
            )
            .map_err(|e| BusError::Unavailable(e.to_string()))? as u64;
    }
    tx.commit()
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
    // The write-ahead log still holds the pages as they were; with readers active the
    // checkpoint may stop short, and SQLite's next checkpoints finish it.
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
    Ok(removed)
}
