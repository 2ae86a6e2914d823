//! Per-connection configuration shared by every adapter (`[crm.connections.<name>]`).

use serde::{Deserialize, Serialize};

/// How much of a message body a CRM receives (LGPD data minimisation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodyPolicy {
    /// The whole text.
    #[default]
    Full,
    /// At most `truncate_at` characters.
    Truncate,
    /// `[message]` instead of the text.
    Redact,
}

/// What a connection may send about people (LGPD data minimisation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Minimisation {
    /// Send the contact's phone number.
    pub send_phone: bool,
    /// Send the contact's WhatsApp profile name (only ever used when creating a contact).
    pub send_name: bool,
    /// Message bodies: `full`, `truncate` or `redact`.
    pub body: BodyPolicy,
    /// Characters kept by `truncate`.
    pub truncate_at: usize,
}

impl Default for Minimisation {
    fn default() -> Self {
        Minimisation {
            send_phone: true,
            send_name: true,
            body: BodyPolicy::Full,
            truncate_at: 280,
        }
    }
}

/// The part of a connection's configuration the engine reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectionConfig {
    /// The connection's name (its consumer group is `wacrm-sync-<name>`).
    #[serde(skip)]
    pub name: String,
    /// The business numbers (phone number ids) this connection syncs; empty means all.
    pub business_numbers: Vec<String>,
    /// Data minimisation.
    pub minimisation: Minimisation,
    /// How long a batch may gather records before it is synced, in milliseconds.
    pub linger_ms: u64,
    /// Most records per batch.
    pub max_batch: usize,
    /// How old a `pending` ledger row must be before it is reconciled (CRM search indexes lag
    /// behind writes), in milliseconds.
    pub reconcile_after_ms: u64,
    /// How long one CRM request may take, in milliseconds. A create that outlives it may still
    /// have been applied: it is reconciled through the ledger, never sent again blindly.
    pub request_timeout_ms: u64,
    /// How long the engine may work on one batch, in milliseconds, before it hands the rest
    /// back to be offered again (the runner keeps polling meanwhile): on Kafka a member that
    /// does not poll for `max.poll.interval.ms` (5 minutes by default) is put out of its group
    /// while still working, and another member syncs the same batch. A slow CRM limit shared
    /// by several instances is what makes batches this long.
    pub batch_budget_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            name: String::new(),
            business_numbers: Vec::new(),
            minimisation: Minimisation::default(),
            linger_ms: 250,
            max_batch: 2000,
            reconcile_after_ms: 10_000,
            request_timeout_ms: 30_000,
            batch_budget_ms: 60_000,
        }
    }
}

impl ConnectionConfig {
    /// Whether this connection syncs a business number.
    pub fn routes(&self, phone_number_id: &str) -> bool {
        self.business_numbers.is_empty()
            || self.business_numbers.iter().any(|n| n == phone_number_id)
    }

    /// The connection's consumer group.
    pub fn group(&self) -> String {
        format!("wacrm-sync-{}", self.name)
    }
}
