//! The projection's statements over sea-orm: PostgreSQL, and any connection or transaction.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QuerySelect,
};
use wacrm_core::contact::IdentityKey;

use super::ops::{Ops, StoredStatus};
use crate::entities::{
    contact, contact_identity, conversation, dead_letter, message, message_status, platform_error,
    preference,
};
use crate::queries::STATUS_ONLY_KIND;
use crate::StoreError;

/// [`Ops`] over a sea-orm connection or transaction.
pub(crate) struct SeaOps<'c, C> {
    db: &'c C,
}

impl<'c, C> SeaOps<'c, C> {
    pub(crate) fn new(db: &'c C) -> Self {
        SeaOps { db }
    }
}

/// A row's active model with every column set (an update writes every column).
fn set_all<M: IntoActiveModel<A>, A: ActiveModelTrait>(model: M) -> A {
    model.into_active_model().reset_all()
}

/// Inserts a row unless one with the same key exists; the number of rows inserted (0 or 1).
async fn insert_or_ignore<C, A, K, Col>(db: &C, row: A, key: K) -> Result<u64, sea_orm::DbErr>
where
    C: ConnectionTrait,
    A: sea_orm::ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
    K: IntoIterator<Item = Col>,
    Col: sea_orm::sea_query::IntoIden,
{
    <A::Entity as EntityTrait>::insert(row)
        .on_conflict(OnConflict::columns(key).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
}

#[async_trait]
impl<C: ConnectionTrait> Ops for SeaOps<'_, C> {
    async fn identity_owners(
        &self,
        keys: &[IdentityKey],
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(contact_identity::Entity::find()
            .filter(crate::queries::identity_condition(keys))
            .all(self.db)
            .await?
            .into_iter()
            .map(|r| (r.kind, r.value, r.contact_id))
            .collect())
    }

    async fn contacts(&self, ids: &[String]) -> Result<Vec<contact::Model>, StoreError> {
        Ok(contact::Entity::find()
            .filter(contact::Column::Id.is_in(ids.iter().cloned()))
            .all(self.db)
            .await?)
    }

    async fn insert_contact(&self, row: contact::Model) -> Result<u64, StoreError> {
        Ok(insert_or_ignore(self.db, set_all(row), [contact::Column::Id]).await?)
    }

    async fn insert_identity(&self, row: contact_identity::Model) -> Result<(), StoreError> {
        insert_or_ignore(
            self.db,
            set_all(row),
            [
                contact_identity::Column::Kind,
                contact_identity::Column::Value,
            ],
        )
        .await?;
        Ok(())
    }

    async fn update_profile(
        &self,
        contact_id: &str,
        name: Option<&str>,
        username: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut changed = Condition::any();
        let mut update = contact::Entity::update_many()
            .col_expr(contact::Column::UpdatedAt, Expr::value(at))
            .filter(contact::Column::Id.eq(contact_id))
            .filter(contact::Column::UpdatedAt.lte(at));
        if let Some(name) = name {
            update = update.col_expr(contact::Column::DisplayName, Expr::value(name));
            changed = changed
                .add(contact::Column::DisplayName.ne(name))
                .add(contact::Column::DisplayName.is_null());
        }
        if let Some(username) = username {
            update = update.col_expr(contact::Column::Username, Expr::value(username));
            changed = changed
                .add(contact::Column::Username.ne(username))
                .add(contact::Column::Username.is_null());
        }
        update.filter(changed).exec(self.db).await?;
        Ok(())
    }

    async fn conversations(
        &self,
        keys: &[&(String, String)],
    ) -> Result<Vec<conversation::Model>, StoreError> {
        let mut wanted = Condition::any();
        for (phone_number_id, contact_id) in keys {
            wanted = wanted.add(
                Condition::all()
                    .add(conversation::Column::PhoneNumberId.eq(phone_number_id.as_str()))
                    .add(conversation::Column::ContactId.eq(contact_id.as_str())),
            );
        }
        Ok(conversation::Entity::find()
            .filter(wanted)
            .all(self.db)
            .await?)
    }

    async fn upsert_conversations(&self, rows: &[conversation::Model]) -> Result<(), StoreError> {
        conversation::Entity::insert_many(rows.iter().cloned().map(set_all))
            .on_conflict(
                OnConflict::columns([
                    conversation::Column::PhoneNumberId,
                    conversation::Column::ContactId,
                ])
                .update_columns([
                    conversation::Column::LastMessageAt,
                    conversation::Column::LastInboundAt,
                ])
                .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        Ok(())
    }

    async fn stored_wamids(&self, wamids: &[&str]) -> Result<HashMap<String, bool>, StoreError> {
        Ok(message::Entity::find()
            .select_only()
            .column(message::Column::Wamid)
            .column(message::Column::Kind)
            .filter(message::Column::Wamid.is_in(wamids.iter().copied()))
            .into_tuple::<(String, String)>()
            .all(self.db)
            .await?
            .into_iter()
            .map(|(wamid, kind)| (wamid, kind == STATUS_ONLY_KIND))
            .collect())
    }

    async fn delete_placeholders(&self, wamids: &[&str]) -> Result<(), StoreError> {
        message::Entity::delete_many()
            .filter(message::Column::Wamid.is_in(wamids.iter().copied()))
            .filter(message::Column::Kind.eq(STATUS_ONLY_KIND))
            .exec(self.db)
            .await?;
        Ok(())
    }

    async fn date_placeholder(&self, wamid: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        message::Entity::update_many()
            .col_expr(message::Column::Timestamp, Expr::value(at))
            .filter(message::Column::Wamid.eq(wamid))
            .filter(message::Column::Kind.eq(STATUS_ONLY_KIND))
            .filter(message::Column::Timestamp.gt(at))
            .exec(self.db)
            .await?;
        Ok(())
    }

    async fn insert_messages(&self, rows: &[&message::Model]) -> Result<(), StoreError> {
        message::Entity::insert_many(rows.iter().map(|r| set_all((*r).clone())))
            .on_conflict(
                OnConflict::column(message::Column::Wamid)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.db)
            .await?;
        Ok(())
    }

    async fn message_status(&self, wamid: &str) -> Result<Option<StoredStatus>, StoreError> {
        Ok(message::Entity::find_by_id(wamid.to_owned())
            .one(self.db)
            .await?
            .map(|m| (m.status, m.status_error, m.kind == STATUS_ONLY_KIND)))
    }

    async fn write_status(
        &self,
        wamid: &str,
        state: &str,
        error: Option<serde_json::Value>,
    ) -> Result<(), StoreError> {
        message::Entity::update_many()
            .col_expr(message::Column::Status, Expr::value(state))
            .col_expr(message::Column::StatusError, Expr::value(error))
            .filter(message::Column::Wamid.eq(wamid))
            .exec(self.db)
            .await?;
        Ok(())
    }

    async fn status_histories(
        &self,
        wamids: &[String],
    ) -> Result<Vec<message_status::Model>, StoreError> {
        Ok(message_status::Entity::find()
            .filter(message_status::Column::Wamid.is_in(wamids.iter().cloned()))
            .all(self.db)
            .await?)
    }

    async fn insert_status(&self, row: message_status::Model) -> Result<u64, StoreError> {
        Ok(insert_or_ignore(
            self.db,
            set_all(row),
            [
                message_status::Column::Wamid,
                message_status::Column::State,
                message_status::Column::Timestamp,
            ],
        )
        .await?)
    }

    async fn preference(
        &self,
        contact_id: &str,
        phone_number_id: &str,
        category: &str,
    ) -> Result<Option<preference::Model>, StoreError> {
        Ok(preference::Entity::find_by_id((
            contact_id.to_owned(),
            phone_number_id.to_owned(),
            category.to_owned(),
        ))
        .one(self.db)
        .await?)
    }

    async fn put_preference(&self, row: preference::Model, exists: bool) -> Result<(), StoreError> {
        let row = set_all(row);
        if exists {
            preference::Entity::update(row).exec(self.db).await?;
        } else {
            preference::Entity::insert(row)
                .exec_without_returning(self.db)
                .await?;
        }
        Ok(())
    }

    async fn insert_consent(&self, row: crate::consent::ConsentRow) -> Result<(), StoreError> {
        use crate::entities::consent_record;
        insert_or_ignore(self.db, set_all(row), [consent_record::Column::Id]).await?;
        Ok(())
    }

    async fn insert_platform_error(&self, row: platform_error::Model) -> Result<(), StoreError> {
        insert_or_ignore(self.db, set_all(row), [platform_error::Column::EventId]).await?;
        Ok(())
    }

    async fn insert_dead_letter(&self, row: dead_letter::Model) -> Result<(), StoreError> {
        insert_or_ignore(self.db, set_all(row), [dead_letter::Column::Id]).await?;
        Ok(())
    }

    async fn merge_contact(
        &self,
        from: &str,
        into: &str,
    ) -> Result<(Vec<conversation::Model>, Vec<preference::Model>), StoreError> {
        let db = self.db;
        contact_identity::Entity::update_many()
            .col_expr(contact_identity::Column::ContactId, Expr::value(into))
            .filter(contact_identity::Column::ContactId.eq(from))
            .exec(db)
            .await?;
        message::Entity::update_many()
            .col_expr(message::Column::ContactId, Expr::value(into))
            .filter(message::Column::ContactId.eq(from))
            .exec(db)
            .await?;
        let conversations = conversation::Entity::find()
            .filter(conversation::Column::ContactId.eq(from))
            .all(db)
            .await?;
        conversation::Entity::delete_many()
            .filter(conversation::Column::ContactId.eq(from))
            .exec(db)
            .await?;
        let preferences = preference::Entity::find()
            .filter(preference::Column::ContactId.eq(from))
            .all(db)
            .await?;
        preference::Entity::delete_many()
            .filter(preference::Column::ContactId.eq(from))
            .exec(db)
            .await?;
        contact::Entity::update_many()
            .col_expr(contact::Column::MergedInto, Expr::value(into))
            .filter(contact::Column::Id.eq(from))
            .exec(db)
            .await?;
        Ok((conversations, preferences))
    }
}
