//! CRM sync state: contact links and the idempotency ledger (see docs/sync.md).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    TransactionTrait,
};

use crate::entities::{contact_identity, crm_ledger, crm_link};
use crate::StoreError;

/// The CRM ids of contacts already linked on a connection, by contact key.
pub async fn links(
    db: &DatabaseConnection,
    connection: &str,
    contact_keys: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    if contact_keys.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(crm_link::Entity::find()
        .filter(crm_link::Column::Connection.eq(connection))
        .filter(crm_link::Column::ContactKey.is_in(contact_keys.iter().cloned()))
        .all(db)
        .await?
        .into_iter()
        .map(|l| (l.contact_key, l.crm_id))
        .collect())
}

/// Records links (a later link for the same contact replaces an earlier one).
pub async fn put_links(
    db: &DatabaseConnection,
    connection: &str,
    links: &[(String, String, &str)],
) -> Result<(), StoreError> {
    // One transaction: one commit (one fsync on SQLite) per batch, not per link.
    let txn = db.begin().await?;
    for (contact_key, crm_id, linked_by) in links {
        crm_link::Entity::insert(crm_link::ActiveModel {
            connection: Set(connection.to_owned()),
            contact_key: Set(contact_key.clone()),
            crm_id: Set(crm_id.clone()),
            linked_by: Set((*linked_by).to_owned()),
            linked_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([crm_link::Column::Connection, crm_link::Column::ContactKey])
                .update_columns([
                    crm_link::Column::CrmId,
                    crm_link::Column::LinkedBy,
                    crm_link::Column::LinkedAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// A ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// `pending` or `synced`.
    pub state: String,
    /// The CRM object, once known.
    pub crm_id: Option<String>,
    /// The last status written to the CRM.
    pub status: Option<String>,
    /// Since when a create may be in flight.
    pub pending_since: DateTime<Utc>,
}

/// Ledger rows of these wamids on a connection.
pub async fn ledger(
    db: &DatabaseConnection,
    connection: &str,
    wamids: &[String],
) -> Result<HashMap<String, LedgerEntry>, StoreError> {
    if wamids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut out = HashMap::new();
    for chunk in crate::fixed_shape_chunks(wamids) {
        let rows = crm_ledger::Entity::find()
            .filter(crm_ledger::Column::Connection.eq(connection))
            .filter(crm_ledger::Column::Wamid.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        for r in rows {
            out.insert(
                r.wamid,
                LedgerEntry {
                    state: r.state,
                    crm_id: r.crm_id,
                    status: r.status,
                    pending_since: r.pending_since,
                },
            );
        }
    }
    Ok(out)
}

/// The ledger's key, for upserts.
fn ledger_key() -> OnConflict {
    OnConflict::columns([crm_ledger::Column::Connection, crm_ledger::Column::Wamid])
}

/// Writes ledger rows `(wamid, crm id)` in `state`, in one transaction of multi-row inserts
/// (one commit, one fsync on SQLite, per batch rather than per message).
async fn write_ledger(
    db: &DatabaseConnection,
    connection: &str,
    state: &str,
    rows: &[(&str, Option<&str>)],
    on_conflict: OnConflict,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let txn = db.begin().await?;
    for chunk in crate::fixed_shape_chunks(rows) {
        let models = chunk.iter().map(|(wamid, crm_id)| crm_ledger::ActiveModel {
            connection: Set(connection.to_owned()),
            wamid: Set((*wamid).to_owned()),
            state: Set(state.to_owned()),
            crm_id: Set(crm_id.map(str::to_owned)),
            status: Set(None),
            pending_since: Set(now),
            updated_at: Set(now),
        });
        crm_ledger::Entity::insert_many(models)
            .on_conflict(on_conflict.clone())
            .exec_without_returning(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Writes the intent to create these CRM objects (wamids, or `contact:<key>` for contacts of
/// a CRM without an upsert), before the CRM call: after a crash a `pending` row says
/// "reconcile before creating again". A row already `pending` gets a new `pending_since` (the
/// latest create that may be in flight is the one a search may not see yet); a `synced` row
/// is left as it is.
pub async fn mark_pending(
    db: &DatabaseConnection,
    connection: &str,
    wamids: &[String],
) -> Result<(), StoreError> {
    let rows: Vec<(&str, Option<&str>)> = wamids.iter().map(|w| (w.as_str(), None)).collect();
    let renew_pending = ledger_key()
        .update_columns([
            crm_ledger::Column::PendingSince,
            crm_ledger::Column::UpdatedAt,
        ])
        .action_and_where(Expr::col((crm_ledger::Entity, crm_ledger::Column::State)).eq("pending"))
        .to_owned();
    write_ledger(db, connection, "pending", &rows, renew_pending).await
}

/// Records the CRM objects created (or found) for wamids.
pub async fn mark_synced(
    db: &DatabaseConnection,
    connection: &str,
    synced: &[(String, String)],
) -> Result<(), StoreError> {
    let rows: Vec<(&str, Option<&str>)> = synced
        .iter()
        .map(|(w, id)| (w.as_str(), Some(id.as_str())))
        .collect();
    // The rows exist (`pending`); one written without its intent is still the truth.
    let on_conflict = ledger_key()
        .update_columns([
            crm_ledger::Column::State,
            crm_ledger::Column::CrmId,
            crm_ledger::Column::UpdatedAt,
        ])
        .to_owned();
    write_ledger(db, connection, "synced", &rows, on_conflict).await
}

/// Records the statuses last written to the CRM for wamids, in one transaction.
pub async fn mark_statuses(
    db: &DatabaseConnection,
    connection: &str,
    statuses: &[(String, String)],
) -> Result<(), StoreError> {
    if statuses.is_empty() {
        return Ok(());
    }
    let now = Utc::now();
    let txn = db.begin().await?;
    for (wamid, status) in statuses {
        crm_ledger::Entity::update_many()
            .col_expr(
                crm_ledger::Column::Status,
                Expr::value(Some(status.clone())),
            )
            .col_expr(crm_ledger::Column::UpdatedAt, Expr::value(now))
            .filter(crm_ledger::Column::Connection.eq(connection))
            .filter(crm_ledger::Column::Wamid.eq(wamid.clone()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Records the status last written to the CRM for a wamid.
pub async fn mark_status(
    db: &DatabaseConnection,
    connection: &str,
    wamid: &str,
    status: &str,
) -> Result<(), StoreError> {
    crm_ledger::Entity::update_many()
        .col_expr(
            crm_ledger::Column::Status,
            Expr::value(Some(status.to_owned())),
        )
        .col_expr(crm_ledger::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(crm_ledger::Column::Connection.eq(connection))
        .filter(crm_ledger::Column::Wamid.eq(wamid))
        .exec(db)
        .await?;
    Ok(())
}

/// The identity keys (`kind:value`, as links are keyed) of every store contact that owns one of
/// `keys`, the given ones included: the sibling identities of the same person (a phone and a
/// BSUID the projection saw together).
pub async fn sibling_keys(
    db: &DatabaseConnection,
    keys: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut owners = std::collections::BTreeSet::new();
    for key in keys {
        let Some((kind, value)) = key.split_once(':') else {
            continue;
        };
        let found = contact_identity::Entity::find()
            .filter(contact_identity::Column::Kind.eq(kind))
            .filter(contact_identity::Column::Value.eq(value))
            .one(db)
            .await?;
        if let Some(identity) = found {
            owners.insert(identity.contact_id);
        }
    }
    if owners.is_empty() {
        return Ok(Vec::new());
    }
    Ok(contact_identity::Entity::find()
        .filter(contact_identity::Column::ContactId.is_in(owners))
        .all(db)
        .await?
        .into_iter()
        .map(|i| format!("{}:{}", i.kind, i.value))
        .collect())
}

/// The connection's pseudonym secret (32 random bytes), created on first use. Two engines
/// racing to create it both end with the one stored first.
pub async fn connection_secret(
    db: &DatabaseConnection,
    connection: &str,
) -> Result<Vec<u8>, StoreError> {
    if let Some(secret) = read_secret(db, connection).await? {
        return Ok(secret);
    }
    let fresh: [u8; 32] = rand::random();
    let insert = Query::insert()
        .into_table(Alias::new("crm_secrets"))
        .columns([
            Alias::new("connection"),
            Alias::new("secret"),
            Alias::new("created_at"),
        ])
        .values([
            connection.into(),
            hex::encode(fresh).into(),
            Utc::now().into(),
        ])
        .map_err(|e| StoreError::Invalid(format!("crm_secrets insert: {e}")))?
        .on_conflict(
            OnConflict::column(Alias::new("connection"))
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    let backend = db.get_database_backend();
    db.execute(backend.build(&insert)).await?;
    read_secret(db, connection)
        .await?
        .ok_or_else(|| StoreError::Invalid("crm_secrets: the secret was not stored".into()))
}

async fn read_secret(
    db: &DatabaseConnection,
    connection: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let select = Query::select()
        .column(Alias::new("secret"))
        .from(Alias::new("crm_secrets"))
        .and_where(Expr::col(Alias::new("connection")).eq(connection))
        .to_owned();
    let backend = db.get_database_backend();
    let Some(row) = db.query_one(backend.build(&select)).await? else {
        return Ok(None);
    };
    let text: String = row.try_get("", "secret")?;
    hex::decode(text.trim())
        .map(Some)
        .map_err(|e| StoreError::Invalid(format!("crm_secrets: {e}")))
}
