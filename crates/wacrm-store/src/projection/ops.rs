//! What the projection asks of the database, one method per statement shape.
//!
//! The projection's logic ([`super::BatchWriter`]) is written once against [`Ops`]; it runs
//! over sea-orm ([`super::sea::SeaOps`], PostgreSQL and any connection or transaction) and over
//! a SQLite connection of the projection's own ([`super::lite::LiteOps`]), which does a whole
//! batch on the projection's thread, without a hand-off to a driver thread per statement.
//! Multi-row methods are handed at most [`crate::MAX_ROWS_PER_STATEMENT`] rows, in the fixed
//! shapes of [`crate::fixed_shape_chunks`].
//!
//! Every insert is keyed and leaves an existing row alone, and every update is guarded by what
//! the batch read or by the stored row's own time: that is what makes applying an event twice
//! a no-op, whichever implementation runs.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use wacrm_core::contact::IdentityKey;

use crate::entities::{
    contact, contact_identity, conversation, dead_letter, message, message_status, platform_error,
    preference,
};
use crate::StoreError;

/// A message's current status as stored: state and error, and whether the row is a
/// placeholder of a message known only from its statuses.
pub(crate) type StoredStatus = (Option<String>, Option<serde_json::Value>, bool);

/// The statements of the projection, inside the caller's transaction.
#[async_trait]
pub(crate) trait Ops: Sync {
    /// The stored owners of these identities: (kind, value, contact id).
    async fn identity_owners(
        &self,
        keys: &[IdentityKey],
    ) -> Result<Vec<(String, String, String)>, StoreError>;
    /// These contacts, those that exist.
    async fn contacts(&self, ids: &[String]) -> Result<Vec<contact::Model>, StoreError>;
    /// Inserts a contact unless its id exists; the number of rows inserted.
    async fn insert_contact(&self, row: contact::Model) -> Result<u64, StoreError>;
    /// Inserts an identity unless its (kind, value) exists.
    async fn insert_identity(&self, row: contact_identity::Model) -> Result<(), StoreError>;
    /// Writes a profile report at `at` when it is at least as new as the stored one and
    /// changes something (`name` or `username` is given).
    async fn update_profile(
        &self,
        contact_id: &str,
        name: Option<&str>,
        username: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// These conversations (business number, contact), those that exist.
    async fn conversations(
        &self,
        keys: &[&(String, String)],
    ) -> Result<Vec<conversation::Model>, StoreError>;
    /// Inserts these conversations, or replaces the times of those that exist.
    async fn upsert_conversations(&self, rows: &[conversation::Model]) -> Result<(), StoreError>;

    /// Which of these messages are stored → whether the stored row is a placeholder (kind
    /// [`crate::queries::STATUS_ONLY_KIND`]).
    async fn stored_wamids(&self, wamids: &[&str]) -> Result<HashMap<String, bool>, StoreError>;
    /// Inserts these messages, leaving any that exist alone.
    async fn insert_messages(&self, rows: &[&message::Model]) -> Result<(), StoreError>;
    /// Deletes the placeholders of these messages (their real rows replace them).
    async fn delete_placeholders(&self, wamids: &[&str]) -> Result<(), StoreError>;
    /// Moves a placeholder's time back to `at` when `at` is earlier (a placeholder is dated by
    /// its earliest status, whatever order the statuses came in).
    async fn date_placeholder(&self, wamid: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// A message's current status, if the message is stored.
    async fn message_status(&self, wamid: &str) -> Result<Option<StoredStatus>, StoreError>;
    /// Sets a message's status and error.
    async fn write_status(
        &self,
        wamid: &str,
        state: &str,
        error: Option<serde_json::Value>,
    ) -> Result<(), StoreError>;
    /// The status history of these messages.
    async fn status_histories(
        &self,
        wamids: &[String],
    ) -> Result<Vec<message_status::Model>, StoreError>;
    /// Inserts a status report unless the same (wamid, state, time) exists; rows inserted.
    async fn insert_status(&self, row: message_status::Model) -> Result<u64, StoreError>;

    /// A contact's preference in a category on a business number.
    async fn preference(
        &self,
        contact_id: &str,
        phone_number_id: &str,
        category: &str,
    ) -> Result<Option<preference::Model>, StoreError>;
    /// Inserts a preference, or replaces the stored one (`exists`).
    async fn put_preference(&self, row: preference::Model, exists: bool) -> Result<(), StoreError>;
    /// Inserts a consent decision unless its id is stored (see `crate::consent`).
    async fn insert_consent(&self, row: crate::consent::ConsentRow) -> Result<(), StoreError>;

    /// Inserts a platform error unless its event is stored.
    async fn insert_platform_error(&self, row: platform_error::Model) -> Result<(), StoreError>;
    /// Inserts a dead letter unless its id is stored.
    async fn insert_dead_letter(&self, row: dead_letter::Model) -> Result<(), StoreError>;

    /// Merging `from` into `into`: its identities and messages go to `into`, and its
    /// conversations and preferences are returned and deleted (the caller writes them to
    /// `into` as the later of both), and `from` is marked merged.
    async fn merge_contact(
        &self,
        from: &str,
        into: &str,
    ) -> Result<(Vec<conversation::Model>, Vec<preference::Model>), StoreError>;
}
