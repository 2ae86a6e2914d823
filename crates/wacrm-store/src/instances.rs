//! The wacrm instances running on one store, so that one instance can tell whether work another
//! claimed is still in hand or was left behind by an instance that died.
//!
//! Each instance registers a random id when it starts, says it is alive every
//! [`HEARTBEAT_EVERY`] and removes itself when it stops cleanly. An instance not seen for
//! [`ALIVE_WITHIN`] is taken for dead: its claims were interrupted. The times are the
//! instances' own clocks, so instances on different hosts need clocks that agree to well
//! within `ALIVE_WITHIN` (NTP does).

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};

use crate::entities::instance;
use crate::StoreError;

/// How often a running instance says it is alive.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// An instance not seen for this long is taken for dead. Several heartbeats, so that a slow
/// database (an fsync stall) does not make a live instance look dead.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(15);

/// Rows of instances gone this long are removed when another instance starts.
const FORGET_AFTER: chrono::Duration = chrono::Duration::days(1);

/// A fresh instance id (a random UUID), unique to one run of one process.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Records that instance `id` is running, and forgets instances gone for a day.
pub async fn register(db: &DatabaseConnection, id: &str) -> Result<(), StoreError> {
    let now = Utc::now();
    instance::Entity::delete_many()
        .filter(instance::Column::SeenAt.lt(now - FORGET_AFTER))
        .exec(db)
        .await?;
    instance::Entity::insert(instance::ActiveModel {
        id: Set(id.to_owned()),
        started_at: Set(now),
        seen_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(instance::Column::Id)
            .update_column(instance::Column::SeenAt)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// Says instance `id` is alive now (registering it again if its row was removed).
pub async fn beat(db: &DatabaseConnection, id: &str) -> Result<(), StoreError> {
    let updated = instance::Entity::update_many()
        .col_expr(instance::Column::SeenAt, Expr::value(Utc::now()))
        .filter(instance::Column::Id.eq(id))
        .exec(db)
        .await?;
    if updated.rows_affected == 0 {
        register(db, id).await?;
    }
    Ok(())
}

/// Removes instance `id`: it stopped cleanly and holds nothing.
pub async fn retire(db: &DatabaseConnection, id: &str) -> Result<(), StoreError> {
    instance::Entity::delete_by_id(id.to_owned())
        .exec(db)
        .await?;
    Ok(())
}

/// Whether instance `id` was seen within [`ALIVE_WITHIN`].
pub async fn is_alive(db: &DatabaseConnection, id: &str) -> Result<bool, StoreError> {
    let since = Utc::now() - chrono::Duration::from_std(ALIVE_WITHIN).unwrap_or_default();
    Ok(instance::Entity::find_by_id(id.to_owned())
        .filter(instance::Column::SeenAt.gt(since))
        .one(db)
        .await?
        .is_some())
}

/// The instances seen within [`ALIVE_WITHIN`], oldest first.
pub async fn alive(db: &DatabaseConnection) -> Result<Vec<instance::Model>, StoreError> {
    use sea_orm::QueryOrder;
    let since = Utc::now() - chrono::Duration::from_std(ALIVE_WITHIN).unwrap_or_default();
    Ok(instance::Entity::find()
        .filter(instance::Column::SeenAt.gt(since))
        .order_by_asc(instance::Column::StartedAt)
        .all(db)
        .await?)
}
