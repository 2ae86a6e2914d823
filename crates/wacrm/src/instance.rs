//! This process as an instance on the store (`wacrm_store::instances`): registered at start,
//! kept alive by a heartbeat, removed at a clean stop. The sender's claims carry its id, so
//! another instance can tell a send in progress here from one left behind by a crash.

use tokio::task::JoinHandle;
use wacrm_store::instances::{self, HEARTBEAT_EVERY};
use wacrm_store::Db;

/// A registered instance and its heartbeat.
pub struct Instance {
    id: String,
    heartbeat: JoinHandle<()>,
}

impl Instance {
    /// Registers a fresh instance id and starts its heartbeat, which runs until [`retire`]:
    /// through shutdown too, while calls already on their way finish.
    ///
    /// [`retire`]: Instance::retire
    pub async fn start(db: &Db) -> anyhow::Result<Self> {
        let id = instances::new_id();
        instances::register(db, &id).await?;
        tracing::info!(instance = %id, "instance registered");
        let heartbeat = tokio::spawn(beat(db.clone(), id.clone()));
        Ok(Instance { id, heartbeat })
    }

    /// The instance id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the heartbeat and removes the instance: call once nothing it claimed is left.
    pub async fn retire(self, db: &Db) {
        self.heartbeat.abort();
        if let Err(e) = instances::retire(db, &self.id).await {
            // Harmless: the row ages out of `instances::ALIVE_WITHIN` on its own.
            tracing::warn!(error = %e, "could not remove this instance from the store");
        }
    }
}

async fn beat(db: Db, id: String) {
    let mut failing = false;
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        match instances::beat(&db, &id).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("instance heartbeat works again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "instance heartbeat failed; other instances may \
                    take this one for dead and report its sends in progress as unknown");
            }
            Err(_) => {}
        }
    }
}
