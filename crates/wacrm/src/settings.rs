//! Configuration: defaults → optional `wacrm.toml` (or `--config PATH`) → `WACRM_…` environment
//! variables, with `__` between levels (`WACRM_WHATSAPP__APP_SECRET`).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use wacrm_bus::BusConfig;
use wacrm_crm::{Built, Registry};
use wacrm_server::ServerConfig;
use wacrm_store::StoreConfig;
use wacrm_whatsapp::WhatsAppConfig;

/// Everything wacrm can be told.
#[derive(Debug, Clone, Default, Deserialize)]
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
    /// `[audit]`: the audit log's key and anchors.
    pub audit: wacrm_store::audit::AuditConfig,
    /// `[retention]`: how long each class of data is kept (docs/configuration.md).
    pub retention: wacrm_store::retention::RetentionConfig,
}

/// `[crm]`: the CRM connections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CrmSettings {
    /// `[crm.connections.<name>]`.
    pub connections: BTreeMap<String, ConnectionSettings>,
}

/// One connection's table, as configuration gave it: its `kind` picks the adapter kind in the
/// registry, which reads the rest (with the configuration's conversions, so environment values
/// such as `…__MAX_BATCH=190` become numbers where the kind wants numbers).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ConnectionSettings(config::Value);

impl ConnectionSettings {
    /// The `kind` it names (empty when it names none).
    pub fn kind(&self) -> String {
        self.0
            .clone()
            .into_table()
            .ok()
            .and_then(|t| t.get("kind").cloned())
            .and_then(|k| k.into_string().ok())
            .unwrap_or_default()
    }
}

impl std::fmt::Debug for ConnectionSettings {
    // The table holds credentials: only the kind is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConnectionSettings(kind = {:?})", self.kind())
    }
}

/// The adapter kinds this binary knows: the one place a CRM is added.
pub fn adapters() -> Registry {
    Registry::new()
        .with(wacrm_hubspot::HubSpotKind)
        .with(wacrm_kommo::KommoKind)
        .with(wacrm_pipedrive::PipedriveKind)
        .with(wacrm_rdstation::RdStationKind)
        .with(wacrm_salesforce::SalesforceKind)
        .with(wacrm_webhook::WebhookKind)
        .with(wacrm_zoho::ZohoKind)
}

impl CrmSettings {
    /// The connection `name`'s kind.
    pub fn kind(&self, name: &str) -> anyhow::Result<String> {
        match self.connections.get(name) {
            Some(c) => Ok(c.kind()),
            None => anyhow::bail!("no CRM connection named {name} ([crm.connections.{name}])"),
        }
    }

    /// The engine configuration and adapter of a connection, built by its kind in `registry`.
    pub fn build(&self, name: &str, registry: &Registry) -> anyhow::Result<Built> {
        let Some(connection) = self.connections.get(name) else {
            anyhow::bail!("no CRM connection named {name} ([crm.connections.{name}])");
        };
        let kind = connection.kind();
        if kind.is_empty() {
            anyhow::bail!(
                "[crm.connections.{name}] names no kind (one of: {})",
                registry.kinds().join(", ")
            );
        }
        let mut settings = <dyn erased_serde::Deserializer>::erase(connection.0.clone());
        Ok(registry.build(name, &kind, &mut settings)?)
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
                // Numbers and flags are parsed here: a CRM kind reads its table through serde
                // buffering, which does not turn text into numbers on demand.
                .try_parsing(true)
                .source(env.clone()),
        );
        // …but a value whose parsed form reads differently (`00123` → 123, `1e3` → 1000,
        // `TRUE` → true) is put back as written: it was text, a token or a password most
        // likely, and must reach its reader unchanged.
        let vars: Vec<(String, String)> = match env {
            Some(env) => env.into_iter().collect(),
            None => std::env::vars().collect(),
        };
        for (name, raw) in vars {
            let Some(path) = name.strip_prefix("WACRM_") else {
                continue;
            };
            if parsing_rewrites(&raw) {
                let key = path
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".");
                builder = builder
                    .set_override(key, raw)
                    .context("reading configuration")?;
            }
        }
        let loaded = builder.build().context("reading configuration")?;
        let mut settings: Settings = loaded
            .try_deserialize()
            .context("configuration has an invalid value")?;
        settings.retention.validate()?;
        // The bus has one retention whichever the backend: the embedded log is trimmed to it,
        // and Kafka topics are created (and checked) with it.
        settings.bus.kafka.topic_retention_ms = settings.retention.bus_log_ms();
        Ok(settings)
    }
}

/// Whether the environment source's parsing turns `raw` into a number or a flag that reads
/// differently from `raw`.
fn parsing_rewrites(raw: &str) -> bool {
    if raw.eq_ignore_ascii_case("true") || raw.eq_ignore_ascii_case("false") {
        return raw != raw.to_ascii_lowercase();
    }
    if let Ok(n) = raw.parse::<i64>() {
        return n.to_string() != raw;
    }
    match raw.parse::<f64>() {
        Ok(f) => f.to_string() != raw,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment for [`Settings::load_with`].
    fn vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

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
        ];
        let settings =
            Settings::load_with(Some(Path::new("/nonexistent/wacrm.toml")), Some(vars(&env)));
        assert!(
            settings.is_err(),
            "an explicit missing config file is an error"
        );
        let env = [
            ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot"),
            ("WACRM_CRM__CONNECTIONS__MAIN__TOKEN", "pat-na1-secret"),
            ("WACRM_CRM__CONNECTIONS__MAIN__MAX_BATCH", "190"),
        ];
        let settings = Settings::load_with(None, Some(vars(&env))).unwrap();
        assert_eq!(settings.crm.kind("main").unwrap(), "hubspot");
        assert!(
            !format!("{settings:?}").contains("pat-na1-secret"),
            "secrets never in Debug"
        );
        let built = settings.crm.build("main", &adapters()).unwrap();
        assert_eq!(built.config.group(), "wacrm-sync-main");
        // The environment's "190" reached the engine's number through the kind.
        assert_eq!(built.config.max_batch, 190);
    }

    /// Kafka property names have dots, which environment variable names cannot: the
    /// environment spells them with underscores, and the client still gets the dotted name.
    #[test]
    fn kafka_properties_come_from_the_environment_with_underscores_for_dots() {
        let env = [
            ("WACRM_BUS__KAFKA__PROPERTIES__MESSAGE_MAX_BYTES", "2000000"),
            ("WACRM_BUS__KAFKA__PROPERTIES__CLIENT_RACK", "rack-a"),
        ];
        let settings = Settings::load_with(None, Some(vars(&env))).unwrap();
        let bus = wacrm_bus::kafka::KafkaBus::open(
            &settings.bus.kafka,
            std::time::Duration::from_secs(1),
        );
        assert!(bus.is_ok(), "{:?}", bus.err());
    }

    #[test]
    fn a_numeric_looking_secret_stays_a_string_and_an_unknown_kind_is_named() {
        let env = [
            ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot"),
            ("WACRM_CRM__CONNECTIONS__MAIN__TOKEN", "12345"),
            ("WACRM_CRM__CONNECTIONS__OTHER__KIND", "notacrm"),
        ];
        let settings = Settings::load_with(None, Some(vars(&env))).unwrap();
        settings.crm.build("main", &adapters()).unwrap();
        let Err(unknown) = settings.crm.build("other", &adapters()) else {
            panic!("an unknown kind was built");
        };
        let unknown = unknown.to_string();
        assert!(
            unknown.contains("notacrm") && unknown.contains("hubspot"),
            "{unknown}"
        );
    }

    #[test]
    fn secrets_that_look_like_numbers_or_flags_arrive_as_written() {
        let env = [
            ("WACRM_CRM__CONNECTIONS__MAIN__KIND", "hubspot"),
            ("WACRM_CRM__CONNECTIONS__MAIN__TOKEN", "00123"),
            ("WACRM_BUS__KAFKA__PROPERTIES__SASL_PASSWORD", "1e3"),
            ("WACRM_BUS__KAFKA__PROPERTIES__SASL_USERNAME", "TRUE"),
            // Numbers and flags are still read as such.
            ("WACRM_BUS__KAFKA__PARTITIONS", "6"),
            ("WACRM_BUS__KAFKA__CREATE_TOPICS", "true"),
        ];
        let settings = Settings::load_with(None, Some(vars(&env))).unwrap();
        let properties = &settings.bus.kafka.properties;
        let value = |name: &str| {
            properties
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(value("sasl_password").as_deref(), Some("1e3"));
        assert_eq!(value("sasl_username").as_deref(), Some("TRUE"));
        assert_eq!(settings.bus.kafka.partitions, 6);
        assert!(settings.bus.kafka.create_topics);
        let table = settings.crm.connections["main"]
            .0
            .clone()
            .into_table()
            .unwrap();
        assert_eq!(table["token"].clone().into_string().unwrap(), "00123");
    }

    #[test]
    fn the_marketing_opt_in_rule_is_off_unless_configured() {
        let settings = Settings::load_with(None, Some(vars(&[]))).unwrap();
        assert!(!settings.whatsapp.marketing_requires_opt_in);
        for on in ["true", "TRUE"] {
            let env = [("WACRM_WHATSAPP__MARKETING_REQUIRES_OPT_IN", on)];
            let settings = Settings::load_with(None, Some(vars(&env))).unwrap();
            assert!(settings.whatsapp.marketing_requires_opt_in, "{on}");
        }
    }
}
