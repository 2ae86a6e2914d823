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

/// The longest phone number id accepted. Meta's ids are 15 to 16 digits today; the bound only
/// keeps hostile input short.
pub const MAX_PHONE_NUMBER_ID_LEN: usize = 32;

/// Whether `value` can be a Meta phone number id: 1 to [`MAX_PHONE_NUMBER_ID_LEN`] ASCII
/// digits. Anything else (a path, a query, an empty string) is refused before it reaches a URL
/// or a store query.
pub fn is_phone_number_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_PHONE_NUMBER_ID_LEN
        && value.bytes().all(|b| b.is_ascii_digit())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_number_ids_are_short_runs_of_digits() {
        assert!(is_phone_number_id("106540352242922"));
        for bad in ["", "12a", "1/2", "123?x=1", "１２３", &"9".repeat(33)] {
            assert!(!is_phone_number_id(bad), "{bad}");
        }
    }
}
