//! Configuration: defaults → optional `wacrm.toml` (or `--config PATH`) → `WACRM_…` environment
//! variables, with `__` between levels (`WACRM_WHATSAPP__APP_SECRET`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    /// `[crm]`.
    pub crm: CrmSettings,
}

/// `[crm]`: the CRM connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CrmSettings {
    /// `[crm.connections.<name>]`.
    pub connections: BTreeMap<String, CrmConnection>,
}

/// One CRM connection, by `kind`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CrmConnection {
    /// HubSpot.
    Hubspot(wacrm_hubspot::HubSpotConfig),
}

impl CrmConnection {
    /// The kind's name, as written in configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            CrmConnection::Hubspot(_) => "hubspot",
        }
    }
}

impl CrmSettings {
    /// The engine configuration and adapter of a connection.
    pub fn build(
        &self,
        name: &str,
    ) -> anyhow::Result<(
        wacrm_sync::ConnectionConfig,
        Arc<dyn wacrm_sync::CrmAdapter>,
    )> {
        match self.connections.get(name) {
            Some(CrmConnection::Hubspot(config)) => {
                let mut config = config.clone();
                config.sync.name = name.to_owned();
                let sync = config.sync.clone();
                Ok((sync, Arc::new(wacrm_hubspot::HubSpot::new(config)?)))
            }
            None => anyhow::bail!("no CRM connection named {name} ([crm.connections.{name}])"),
        }
    }

    /// The HubSpot adapter of a connection (for `crm setup hubspot`).
    pub fn hubspot(&self, name: &str) -> anyhow::Result<wacrm_hubspot::HubSpot> {
        match self.connections.get(name) {
            Some(CrmConnection::Hubspot(config)) => {
                let mut config = config.clone();
                config.sync.name = name.to_owned();
                Ok(wacrm_hubspot::HubSpot::new(config)?)
            }
            None => anyhow::bail!("no HubSpot connection named {name}"),
        }
    }
}

impl Settings {
    /// Loads settings. A missing `wacrm.toml` is fine; a missing `--config` file is an error.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_with(path, None)
    }

    /// As [`Settings::load`], with the environment given (tests) instead of read.
    pub fn load_with(
        path: Option<&Path>,
        env: Option<std::collections::HashMap<String, String>>,
    ) -> anyhow::Result<Self> {
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
                .try_parsing(true)
                .source(env),
        );
        let loaded = builder.build().context("reading configuration")?;
        loaded
            .try_deserialize()
            .context("configuration has an invalid value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hubspot_connection_from_the_environment() {
        let env = [
            ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot"),
            ("WACRM_CRM__CONNECTIONS__MAIN__TOKEN", "pat-na1-secret"),
            (
                "WACRM_CRM__CONNECTIONS__MAIN__BASE_URL",
                "http://127.0.0.1:9",
            ),
            ("WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_10S", "190"),
            ("WACRM_BUS__BACKEND", "kafka"),
            ("WACRM_WHATSAPP__APP_SECRET", "s3cret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::load_with(Some(Path::new("/nonexistent/wacrm.toml")), Some(env));
        assert!(
            settings.is_err(),
            "an explicit missing config file is an error"
        );
        let env = [
            ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot"),
            ("WACRM_CRM__CONNECTIONS__MAIN__TOKEN", "pat-na1-secret"),
            ("WACRM_CRM__CONNECTIONS__MAIN__REQUESTS_PER_10S", "190"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::load_with(None, Some(env)).unwrap();
        let CrmConnection::Hubspot(hubspot) = &settings.crm.connections["main"];
        assert_eq!(hubspot.token, "pat-na1-secret");
        assert_eq!(hubspot.sync.requests_per_10s, 190);
        assert_eq!(hubspot.base_url, "https://api.hubapi.com");
        assert!(
            !format!("{settings:?}").contains("pat-na1-secret"),
            "secrets never in Debug"
        );
        let (sync, _) = settings.crm.build("main").unwrap();
        assert_eq!(sync.group(), "wacrm-sync-main");
    }
}
