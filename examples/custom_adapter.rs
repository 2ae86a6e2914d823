//! An integrator's own binary: every `wacrm` command and the whole service, with their own CRM
//! adapter registered next to the ones wacrm ships — no fork.
//!
//! The "CRM" here is a notebook: a JSON-lines file the adapter appends to. The adapter only
//! speaks to its CRM; wacrm does the rest (webhooks, the bus, the store, consuming as the
//! connection's own consumer group, batching, linking contacts, the idempotency ledger, retries,
//! dead letters, audit). A real HTTP CRM sends its requests through `wacrm_crm::http::CrmHttp`,
//! which enforces the rate limits the adapter declares.
//!
//! ```text
//! cargo build -p wacrm --example custom_adapter
//! export WACRM_CRM__CONNECTIONS__BOOK__KIND=notebook
//! export WACRM_CRM__CONNECTIONS__BOOK__PATH=/var/lib/wacrm/notebook.jsonl
//! target/debug/examples/custom_adapter crm setup --connection book
//! target/debug/examples/custom_adapter serve
//! ```
//!
//! `crates/wacrm/tests/custom_adapter.rs` runs exactly that, end to end.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;
use wacrm_crm::registry::{read_settings, AdapterKind, Built};
use wacrm_crm::{
    AdapterLimits, ConnectionConfig, ContactSync, CrmAdapter, CrmError, ItemResult, MessageSync,
    StatusSync,
};

/// `[crm.connections.<name>]` with `kind = "notebook"`.
#[derive(Deserialize)]
#[serde(default)]
struct NotebookConfig {
    /// The notebook file.
    path: PathBuf,
    /// What the engine reads (routing, minimisation, batching).
    #[serde(flatten)]
    sync: ConnectionConfig,
}

impl Default for NotebookConfig {
    fn default() -> Self {
        NotebookConfig {
            path: PathBuf::from("notebook.jsonl"),
            sync: ConnectionConfig::default(),
        }
    }
}

/// The kind, as the registry knows it.
struct NotebookKind;

impl AdapterKind for NotebookKind {
    fn kind(&self) -> &'static str {
        "notebook"
    }

    fn build(
        &self,
        name: &str,
        settings: &mut dyn erased_serde::Deserializer<'static>,
    ) -> Result<Built, CrmError> {
        let config: NotebookConfig = read_settings(name, settings)?;
        Ok(Built {
            config: config.sync,
            adapter: Arc::new(Notebook {
                path: config.path,
                write: Mutex::new(()),
            }),
        })
    }
}

/// A CRM that writes one JSON line per contact, message and status.
struct Notebook {
    path: PathBuf,
    /// One writer at a time, so lines never interleave.
    write: Mutex<()>,
}

impl Notebook {
    fn append(&self, lines: &[serde_json::Value]) -> Result<(), CrmError> {
        let _one_writer = self
            .write
            .lock()
            .map_err(|_| CrmError::Fatal("notebook writer poisoned".into()))?;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| CrmError::Fatal(format!("notebook {}: {e}", self.path.display())))?;
        let mut text = String::new();
        for line in lines {
            text.push_str(&line.to_string());
            text.push('\n');
        }
        // A failed write may have left part of the batch: the engine reconciles through
        // `find_messages` before writing again.
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| CrmError::Ambiguous(format!("notebook write: {e}")))
    }

    fn lines(&self) -> Result<Vec<serde_json::Value>, CrmError> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| CrmError::Fatal(format!("notebook {}: {e}", self.path.display())))?;
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }
}

#[async_trait]
impl CrmAdapter for Notebook {
    fn limits(&self) -> AdapterLimits {
        AdapterLimits {
            contacts_per_batch: 100,
            messages_per_batch: 100,
            statuses_per_batch: 100,
        }
    }

    async fn setup(&self) -> Result<Vec<String>, CrmError> {
        if self.path.exists() {
            return Ok(Vec::new());
        }
        std::fs::File::create(&self.path)
            .map_err(|e| CrmError::Fatal(format!("notebook {}: {e}", self.path.display())))?;
        Ok(vec![format!("notebook {}", self.path.display())])
    }

    async fn check(&self) -> Result<Vec<String>, CrmError> {
        if !self.path.exists() {
            return Err(CrmError::Fatal(format!(
                "notebook {} missing (run wacrm crm setup)",
                self.path.display()
            )));
        }
        Ok(vec![format!("notebook {}", self.path.display())])
    }

    // The WhatsApp id is the notebook's unique key, so "upsert" needs no search.
    async fn upsert_contacts(
        &self,
        contacts: &[ContactSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let lines: Vec<_> = contacts
            .iter()
            .map(|c| serde_json::json!({"contact": c.whatsapp_id, "name": c.profile_name}))
            .collect();
        self.append(&lines)?;
        Ok(contacts
            .iter()
            .map(|c| Ok(format!("person-{}", c.whatsapp_id)))
            .collect())
    }

    async fn log_messages(
        &self,
        messages: &[MessageSync],
    ) -> Result<Vec<ItemResult<String>>, CrmError> {
        let lines: Vec<_> = messages
            .iter()
            .map(|m| {
                serde_json::json!({
                    "wamid": m.wamid,
                    "on": m.crm_contact_id,
                    "at": m.timestamp,
                    "body": m.body,
                })
            })
            .collect();
        self.append(&lines)?;
        Ok(messages
            .iter()
            .map(|m| Ok(format!("entry-{}", m.wamid)))
            .collect())
    }

    async fn update_statuses(
        &self,
        statuses: &[StatusSync],
    ) -> Result<Vec<ItemResult<()>>, CrmError> {
        let lines: Vec<_> = statuses
            .iter()
            .map(|s| serde_json::json!({"status": s.state, "of": s.crm_id}))
            .collect();
        self.append(&lines)?;
        Ok(statuses.iter().map(|_| Ok(())).collect())
    }

    async fn find_messages(&self, wamids: &[String]) -> Result<Vec<(String, String)>, CrmError> {
        Ok(self
            .lines()?
            .iter()
            .filter_map(|l| l.get("wamid").and_then(|w| w.as_str()))
            .filter(|w| wamids.iter().any(|x| x == w))
            .map(|w| (w.to_owned(), format!("entry-{w}")))
            .collect())
    }
}

fn main() -> anyhow::Result<()> {
    wacrm::main_with(wacrm::adapters().with(NotebookKind))
}
