//! sea-orm entities: one module per table.
#![allow(missing_docs)]

pub mod contact {
    use sea_orm::entity::prelude::*;

    /// A person the business talks to.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contacts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub display_name: Option<String>,
        pub username: Option<String>,
        /// Set when this contact turned out to be another one; its history moved there.
        pub merged_into: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod contact_identity {
    use sea_orm::entity::prelude::*;

    /// One identity (`phone`, `bsuid`, `wa`) of a contact.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_identities")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub value: String,
        pub contact_id: String,
        pub created_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod conversation {
    use sea_orm::entity::prelude::*;

    /// A business number's conversation with a contact.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "conversations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub phone_number_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        pub last_message_at: Option<ChronoDateTimeUtc>,
        /// The last message from the contact: opens WhatsApp's 24-hour service window.
        pub last_inbound_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message {
    use sea_orm::entity::prelude::*;

    /// A message, in or out.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "messages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub wamid: String,
        pub event_id: String,
        pub phone_number_id: String,
        pub contact_id: String,
        pub direction: String,
        pub kind: String,
        pub timestamp: ChronoDateTimeUtc,
        pub preview: Option<String>,
        pub content: Json,
        pub context: Option<Json>,
        pub referral: Option<Json>,
        pub status: Option<String>,
        pub status_error: Option<Json>,
        pub sent_by: Option<Json>,
        pub stored_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod message_status {
    use sea_orm::entity::prelude::*;

    /// One status report for a message.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "message_statuses")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub wamid: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub timestamp: ChronoDateTimeUtc,
        pub phone_number_id: String,
        pub errors: Option<Json>,
        pub pricing: Option<Json>,
        pub conversation: Option<Json>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod preference {
    use sea_orm::entity::prelude::*;

    /// A contact's messaging preference on a business number.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "contact_preferences")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub phone_number_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub category: String,
        pub value: String,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod platform_error {
    use sea_orm::entity::prelude::*;

    /// Errors WhatsApp reported for a whole webhook change.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "platform_errors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub event_id: String,
        pub phone_number_id: String,
        pub errors: Json,
        pub received_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod dead_letter {
    use sea_orm::entity::prelude::*;

    /// Input or records that could not be processed, kept with the reason.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub source: String,
        pub error_class: String,
        pub reason: String,
        pub headers: Json,
        #[sea_orm(column_type = "VarBinary(StringLen::None)")]
        pub payload: Vec<u8>,
        pub bus_offset: i64,
        pub created_at: ChronoDateTimeUtc,
        /// Set when a re-drive succeeded.
        pub resolved_at: Option<ChronoDateTimeUtc>,
        /// Re-drive attempts so far.
        pub attempts: i32,
        /// Why the last re-drive failed.
        pub last_error: Option<String>,
        /// The business number the dead letter concerns, when its payload names one.
        pub phone_number_id: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod api_key {
    use sea_orm::entity::prelude::*;

    /// An employee's API key. Only a hash of the secret is stored.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_keys")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub role: String,
        pub secret_sha256: String,
        pub scopes: Json,
        pub business_numbers: Option<Json>,
        pub created_at: ChronoDateTimeUtc,
        pub expires_at: Option<ChronoDateTimeUtc>,
        pub revoked_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod crm_link {
    use sea_orm::entity::prelude::*;

    /// Which CRM record a contact is, per CRM connection.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "crm_links")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub connection: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub contact_key: String,
        pub crm_id: String,
        /// `search` (found a contact people created) or `upsert` (created or keyed by wacrm).
        pub linked_by: String,
        pub linked_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod crm_ledger {
    use sea_orm::entity::prelude::*;

    /// The idempotency ledger: what a CRM connection holds for each wamid.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "crm_ledger")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub connection: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub wamid: String,
        /// `pending` (a create may have reached the CRM) or `synced`.
        pub state: String,
        pub crm_id: Option<String>,
        /// The last delivery status written to the CRM.
        pub status: Option<String>,
        pub pending_since: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod audit_log {
    use sea_orm::entity::prelude::*;

    /// One audit entry; `hash` covers the entry and the previous entry's hash.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub at: ChronoDateTimeUtc,
        pub key_id: String,
        pub actor: String,
        pub action: String,
        pub contact_id: Option<String>,
        pub target: Option<String>,
        pub outcome: String,
        pub prev_hash: String,
        pub hash: String,
        /// The business number the entry concerns, when one.
        pub phone_number_id: Option<String>,
        /// What the call was about beyond its target, as JSON text (a search's hashed query and
        /// the contacts it returned).
        #[sea_orm(column_type = "Text", nullable)]
        pub detail: Option<String>,
        /// The id of the audit key whose HMAC-SHA-256 `hash` is (`NULL`: a plain SHA-256,
        /// written before the log was keyed).
        pub mac_key: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod outbound_request {
    use sea_orm::entity::prelude::*;

    /// A request to send (or mark as read) and where it stands.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbound_requests")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        pub key_id: String,
        pub idempotency_key: Option<String>,
        pub request_hash: String,
        pub kind: String,
        pub phone_number_id: String,
        pub contact_id: Option<String>,
        pub state: String,
        pub wamid: Option<String>,
        pub errors: Option<Json>,
        pub reason: Option<String>,
        pub attempts: i32,
        pub command: Json,
        pub created_at: ChronoDateTimeUtc,
        pub updated_at: ChronoDateTimeUtc,
        /// The instance that last claimed it (`crate::instances`); `NULL` before any claim.
        pub claimed_by: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod consent_record {
    use sea_orm::entity::prelude::*;

    /// One opt-in or opt-out of a contact for a purpose; never updated (see `crate::consent`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "consent_records")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub contact_id: String,
        /// `marketing`, `service`, `surveys`, `data_sharing` or `custom:<slug>`.
        pub purpose: String,
        /// An opt-in (`true`) or an opt-out.
        pub granted: bool,
        /// `whatsapp`, `web_form`, `in_person`, `phone`, `email`, `sms`, `paper`, `other`.
        pub channel: String,
        /// Where: a form's URL, a campaign, `keyword`, …
        #[sea_orm(column_type = "Text")]
        pub source: String,
        /// The employee (the API key's name), `contact` or `whatsapp`.
        pub recorded_by: String,
        /// The API key used, when an employee recorded it.
        pub key_id: Option<String>,
        /// The business number it is limited to (`None`: every number).
        pub phone_number_id: Option<String>,
        /// When the contact decided.
        pub at: ChronoDateTimeUtc,
        /// When wacrm recorded it (WhatsApp's time for decisions made in WhatsApp).
        pub recorded_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod relay_cursor {
    use sea_orm::entity::prelude::*;

    /// How far a relay (store rows → bus) has published.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "relay_cursors")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub position: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod instance {
    use sea_orm::entity::prelude::*;

    /// A running wacrm instance on this store, and when it last said it was alive.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "instances")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub started_at: ChronoDateTimeUtc,
        pub seen_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod account {
    use sea_orm::entity::prelude::*;

    /// A person who signs in to the console (`crate::accounts`).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "accounts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub username: String,
        pub name: String,
        pub role: String,
        /// JSON array of scope names.
        pub scopes: String,
        /// JSON array of phone number ids; `NULL`: every number.
        pub business_numbers: Option<String>,
        pub locale: String,
        /// argon2id, PHC string.
        pub password_hash: String,
        /// Base32; `NULL` until enrolled.
        pub totp_secret: Option<String>,
        pub totp_enrolled_at: Option<ChronoDateTimeUtc>,
        /// The TOTP time step of the last code accepted (a code is good once).
        pub totp_last_step: Option<i64>,
        /// JSON array of the SHA-256 (hex) of the recovery codes not used yet.
        pub recovery_codes: String,
        pub failed_attempts: i32,
        pub locked_until: Option<ChronoDateTimeUtc>,
        pub disabled_at: Option<ChronoDateTimeUtc>,
        pub created_at: ChronoDateTimeUtc,
        pub created_by: String,
        pub last_login_at: Option<ChronoDateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod console_session {
    use sea_orm::entity::prelude::*;

    /// A console session (`crate::console_sessions`), stored by the SHA-256 of its cookie.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "console_sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub account_id: String,
        pub mfa_passed: bool,
        pub csrf: String,
        pub pending_totp_secret: Option<String>,
        pub created_at: ChronoDateTimeUtc,
        pub last_seen_at: ChronoDateTimeUtc,
        pub expires_at: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
