//! Which business numbers cannot send right now (a rejected access token), for `/readyz` and
//! alerts. Shared by the sender, which records, and the server, which reports.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

/// Business numbers whose access token WhatsApp rejected, with when and why.
#[derive(Debug, Default)]
pub struct SendHealth {
    failing: Mutex<BTreeMap<String, (DateTime<Utc>, String)>>,
}

impl SendHealth {
    /// Records that a number's token was rejected. Returns true when this is news (so the
    /// caller alerts once, not once per message).
    pub fn token_rejected(&self, phone_number_id: &str, reason: &str) -> bool {
        self.lock()
            .insert(phone_number_id.to_owned(), (Utc::now(), reason.to_owned()))
            .is_none()
    }

    /// Records that a number sent successfully (its token works again). Returns true when it
    /// had been failing.
    pub fn sent_ok(&self, phone_number_id: &str) -> bool {
        self.lock().remove(phone_number_id).is_some()
    }

    /// The failing numbers: `(phone_number_id, since, reason)`.
    pub fn failing(&self) -> Vec<(String, DateTime<Utc>, String)> {
        self.lock()
            .iter()
            .map(|(n, (at, why))| (n.clone(), *at, why.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (DateTime<Utc>, String)>> {
        self.failing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
