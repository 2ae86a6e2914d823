//! An integrator's own CRM adapter, run by wacrm's sync engine.
//!
//! The adapter only speaks to its CRM (here: an in-memory "CRM" that prints what it receives).
//! The engine does the rest: consuming the bus as its own consumer group, batching, linking
//! contacts, the idempotency ledger, rate limits (through `wacrm_sync::http::CrmHttp` for a real
//! HTTP CRM), retries and dead letters.
//!
//! `cargo run -p wacrm-sync --example custom_adapter` runs it against the embedded bus and a
//! SQLite store under a temporary directory, with one published message.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use wacrm_bus::cloudevents::event_record;
use wacrm_bus::config::EmbeddedConfig;
use wacrm_bus::embedded::EmbeddedBus;
use wacrm_bus::runner::ConsumerRunner;
use wacrm_bus::{EventBus, Topics};
use wacrm_core::{
    BusinessNumber, ContactIdentity, ContactProfile, Direction, Event, Message, MessageContent,
};
use wacrm_sync::{
    AdapterLimits, ConnectionConfig, ContactSync, CrmAdapter, CrmError, ItemResult, MessageSync,
    StatusSync, SyncEngine,
};

/// A CRM that keeps what it is sent.
#[derive(Default)]
struct NotebookCrm {
    timeline: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl CrmAdapter for NotebookCrm {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: 50,
            messages_per_batch: 50,
            statuses_per_batch: 50,
        }
    }

    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        Ok(contacts
            .iter()
            .map(|c| Ok(format!("person-{}", c.whatsapp_id)))
            .collect())
    }

    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let mut timeline = self
            .timeline
            .lock()
            .map_err(|_| CrmError::Fatal("poisoned".into()))?;
        Ok(messages
            .iter()
            .map(|m| {
                println!("{} on {}: {}", m.wamid, m.crm_contact_id, m.body);
                timeline.push((m.crm_contact_id.clone(), m.body.clone()));
                Ok(format!("entry-{}", m.wamid))
            })
            .collect())
    }

    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        Ok(statuses.iter().map(|_| Ok(())).collect())
    }

    async fn find_messages(&self, _wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        Ok(Vec::new())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("wacrm-custom-adapter-{}", std::process::id()));
    let bus: Arc<dyn EventBus> = Arc::new(EmbeddedBus::open(&EmbeddedConfig {
        path: dir.join("bus.db"),
        max_batch: 1024,
    })?);
    let store = wacrm_store::StoreConfig {
        url: format!("sqlite://{}?mode=rwc", dir.join("store.db").display()),
        max_connections: 2,
        ..Default::default()
    };
    let db = wacrm_store::connect(&store).await?;
    wacrm_store::migrate(&db).await?;
    let topics = Topics::default();

    let message = Event::message(Message {
        wamid: "wamid.example".into(),
        direction: Direction::Inbound,
        business: BusinessNumber::new("106540352242922"),
        contact: ContactProfile {
            identity: ContactIdentity::from_webhook(Some("5511987654321"), None),
            name: Some("Maria".into()),
            username: None,
        },
        timestamp: chrono::Utc::now(),
        context: None,
        referral: None,
        content: MessageContent::Text {
            body: "Quero um orçamento".into(),
            preview_url: false,
        },
        sent_by: None,
    })
    .ok_or("no conversation key")?;
    bus.publish(vec![event_record(&topics, "/example", &message)?])
        .await?;

    let crm = Arc::new(NotebookCrm::default());
    let config = ConnectionConfig {
        name: "notebook".into(),
        ..ConnectionConfig::default()
    };
    let shutdown = CancellationToken::new();
    let engine = SyncEngine::new(config, crm.clone(), db);
    let runner_config = engine.runner_config();
    let subscription = bus
        .subscribe(&runner_config.group, &SyncEngine::topics(&topics))
        .await?;
    let task = tokio::spawn(
        ConsumerRunner::new(bus.clone(), topics, runner_config, engine)
            .run(subscription, shutdown.clone()),
    );
    while crm.timeline.lock().map(|t| t.is_empty()).unwrap_or(false) {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await??;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
