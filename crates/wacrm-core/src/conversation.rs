//! Conversations: one business number talking with one contact.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contact::IdentityKey;

/// A business phone number on the WhatsApp Business Platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BusinessNumber {
    /// Meta's phone number id (`metadata.phone_number_id`), the number's stable identity.
    pub phone_number_id: String,
    /// The number as displayed (`metadata.display_phone_number`), if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_phone_number: Option<String>,
}

impl BusinessNumber {
    /// A business number known by its phone number id only.
    pub fn new(phone_number_id: impl Into<String>) -> Self {
        BusinessNumber {
            phone_number_id: phone_number_id.into(),
            display_phone_number: None,
        }
    }
}

/// The key of a conversation: business number + contact. Events of one conversation share it,
/// so on a partitioned bus they stay in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConversationKey {
    /// The business number's phone number id.
    pub phone_number_id: String,
    /// The contact's primary identity.
    pub contact: IdentityKey,
}

impl ConversationKey {
    /// The key's text form, `<phone_number_id>/<kind>:<value>`, used as the bus record key.
    pub fn as_record_key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.phone_number_id, self.contact)
    }
}
