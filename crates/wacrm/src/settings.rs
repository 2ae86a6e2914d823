//! Configuration: defaults → optional `wacrm.toml` (or `--config PATH`) → `WACRM_…` environment
//! variables, with `__` between levels (`WACRM_WHATSAPP__APP_SECRET`).

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use wacrm_bus::BusConfig;
use wacrm_server::ServerConfig;
use wacrm_store::StoreConfig;
use wacrm_whatsapp::WhatsAppConfig;

/// Everything wacrm can be told.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[whatsapp]`.
    pub whatsapp: WhatsAppConfig,
    /// `[bus]`.
    pub bus: BusConfig,
    /// `[store]`.
    pub store: StoreConfig,
}

impl Settings {
    /// Loads settings. A missing `wacrm.toml` is fine; a missing `--config` file is an error.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        match path {
            Some(p) => {
                builder = builder.add_source(config::File::from(p).required(true));
            }
            None => {
                builder = builder.add_source(config::File::with_name("wacrm.toml").required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("WACRM")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        );
        let loaded = builder.build().context("reading configuration")?;
        loaded
            .try_deserialize()
            .context("configuration has an invalid value")
    }
}
