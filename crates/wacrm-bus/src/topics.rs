//! Topic names: one configurable prefix, fixed suffixes.

use serde::{Deserialize, Serialize};
use wacrm_core::event::Stream;

/// The topics wacrm uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    /// Messages in and out, statuses, reactions; keyed by conversation.
    pub conversations: String,
    /// Contact profiles and identities; keyed by contact (compacted on Kafka).
    pub contacts: String,
    /// Outbound commands (messages to send).
    pub commands: String,
    /// Audit entries.
    pub audit: String,
    /// Dead letters: bad input and records consumers could not process.
    pub dead_letters: String,
}

impl Topics {
    /// The topics under a prefix such as `wacrm.`.
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            conversations: format!("{prefix}conversations"),
            contacts: format!("{prefix}contacts"),
            commands: format!("{prefix}commands"),
            audit: format!("{prefix}audit"),
            dead_letters: format!("{prefix}dead-letters"),
        }
    }

    /// The topic of an event stream.
    pub fn for_stream(&self, stream: Stream) -> &str {
        match stream {
            Stream::Conversations => &self.conversations,
            Stream::Contacts => &self.contacts,
            Stream::Commands => &self.commands,
            Stream::Audit => &self.audit,
        }
    }
}

/// The topic prefix of a deployment that sets none.
pub const DEFAULT_PREFIX: &str = "wacrm.";

impl Default for Topics {
    fn default() -> Self {
        Topics::with_prefix(DEFAULT_PREFIX)
    }
}
