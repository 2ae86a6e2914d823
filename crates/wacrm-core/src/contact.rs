//! Who a customer is: the identities WhatsApp gives us and how they resolve to one contact.
//!
//! A WhatsApp user reaches us under up to three identities: the `wa_id` (today, their phone
//! digits), the business-scoped user id (BSUID, `user_id` in webhooks; once WhatsApp usernames
//! exist it may be the only one), and their phone number. Each becomes an [`IdentityKey`]; a
//! contact is found by any of them, and a new one learned later is linked to the same contact.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::phone::E164;

/// One way of recognising a contact. Its text form (`phone:+55…`, `bsuid:…`, `wa:…`) is what
/// the store indexes and what conversation keys are made of.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum IdentityKey {
    /// A canonical phone number (Brazilian mobiles with the 9th digit).
    Phone(E164),
    /// WhatsApp's business-scoped user id.
    Bsuid(String),
    /// A `wa_id` that is not a phone number we can read.
    WaId(String),
}

impl IdentityKey {
    /// The kind as stored: `phone`, `bsuid` or `wa`.
    pub fn kind(&self) -> &'static str {
        match self {
            IdentityKey::Phone(_) => "phone",
            IdentityKey::Bsuid(_) => "bsuid",
            IdentityKey::WaId(_) => "wa",
        }
    }

    /// The value as stored.
    pub fn value(&self) -> &str {
        match self {
            IdentityKey::Phone(p) => p.as_str(),
            IdentityKey::Bsuid(v) | IdentityKey::WaId(v) => v,
        }
    }

    /// Rebuilds a key from its stored kind and value.
    pub fn from_parts(kind: &str, value: &str) -> Option<Self> {
        match kind {
            "phone" => E164::parse(value).ok().map(IdentityKey::Phone),
            "bsuid" => Some(IdentityKey::Bsuid(value.to_owned())),
            "wa" => Some(IdentityKey::WaId(value.to_owned())),
            _ => None,
        }
    }
}

/// The namespace of contact ids: a contact's id is the UUID v5 of its first identity, written
/// as [`IdentityKey`]'s `Display` (`phone:+5511987654321`), under this namespace. Published in
/// docs/events.md so consumers can find a contact named by id (an erasure names people so).
pub const CONTACT_ID_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x2b8e_6f61_3c1d_4e8a_8f0b_636f_6e74_6163);

impl IdentityKey {
    /// The contact id a contact first seen under this identity gets.
    pub fn contact_id(&self) -> String {
        uuid::Uuid::new_v5(&CONTACT_ID_NAMESPACE, self.to_string().as_bytes()).to_string()
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind(), self.value())
    }
}

/// The identities a webhook reported for one person. At least one of the fields is present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContactIdentity {
    /// WhatsApp id as reported (digits), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wa_id: Option<String>,
    /// Business-scoped user id (BSUID), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bsuid: Option<String>,
    /// The canonical phone number, when the `wa_id` (or a reported phone) reads as one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<E164>,
}

impl ContactIdentity {
    /// Builds an identity from what a webhook carries: a `wa_id` (phone digits, normally) and a
    /// BSUID. A `wa_id` that reads as a phone number gives the phone too.
    pub fn from_webhook(wa_id: Option<&str>, bsuid: Option<&str>) -> Self {
        let wa_id = wa_id.map(str::trim).filter(|s| !s.is_empty());
        let bsuid = bsuid.map(str::trim).filter(|s| !s.is_empty());
        ContactIdentity {
            wa_id: wa_id.map(str::to_owned),
            bsuid: bsuid.map(str::to_owned),
            phone: wa_id.and_then(|w| E164::parse(w).ok()),
        }
    }

    /// True when no identity at all is known.
    pub fn is_empty(&self) -> bool {
        self.wa_id.is_none() && self.bsuid.is_none() && self.phone.is_none()
    }

    /// Every key this person can be found by, most stable first.
    pub fn keys(&self) -> Vec<IdentityKey> {
        let mut keys = Vec::with_capacity(2);
        if let Some(phone) = &self.phone {
            keys.push(IdentityKey::Phone(phone.clone()));
        } else if let Some(wa) = &self.wa_id {
            keys.push(IdentityKey::WaId(wa.clone()));
        }
        if let Some(bsuid) = &self.bsuid {
            keys.push(IdentityKey::Bsuid(bsuid.clone()));
        }
        keys
    }

    /// The key conversations are keyed by: the phone when known (it is what every system shares),
    /// otherwise the BSUID, otherwise the raw `wa_id`.
    pub fn primary_key(&self) -> Option<IdentityKey> {
        self.keys().into_iter().next()
    }
}

/// What a contact says about themselves in WhatsApp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ContactProfile {
    /// The identities of the person.
    pub identity: ContactIdentity,
    /// Their WhatsApp profile name, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their WhatsApp username, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brazilian_wa_ids_without_ninth_digit_share_the_primary_key() {
        let a = ContactIdentity::from_webhook(Some("5511987654321"), None);
        let b = ContactIdentity::from_webhook(Some("551187654321"), None);
        assert_eq!(a.primary_key(), b.primary_key());
        assert_ne!(a.wa_id, b.wa_id, "the reported wa_id is kept as reported");
    }

    #[test]
    fn bsuid_only_contact_is_keyed_by_bsuid() {
        let id = ContactIdentity::from_webhook(None, Some("BR.13491208655302741918"));
        assert_eq!(
            id.primary_key(),
            Some(IdentityKey::Bsuid("BR.13491208655302741918".into()))
        );
        assert_eq!(id.keys().len(), 1);
    }

    #[test]
    fn identity_key_round_trips_through_parts() {
        let key = IdentityKey::Phone(E164::parse("5511987654321").unwrap());
        assert_eq!(key.to_string(), "phone:+5511987654321");
        assert_eq!(IdentityKey::from_parts(key.kind(), key.value()), Some(key));
    }
}
