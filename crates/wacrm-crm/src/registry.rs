//! The one list of adapter kinds a build of wacrm knows.
//!
//! Configuration names a connection's kind (`[crm.connections.<name>] kind = "hubspot"`); the
//! registry finds the [`AdapterKind`] of that name and lets it read the rest of the table into
//! its own settings and build the adapter. `wacrm serve`, `wacrm crm setup`, `wacrm doctor`,
//! `wacrm replay` and `/v1/status` all go through it, so adding a CRM is one line where the
//! registry is made — in wacrm's own binary, or in an integrator's binary with their adapter.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{ConnectionConfig, CrmAdapter, CrmError};

/// Re-exported for [`adapter_kind!`](crate::adapter_kind) and [`AdapterKind`] implementors.
pub use erased_serde;

/// A connection, built: what the engine needs, and the adapter.
pub struct Built {
    /// Routing, minimisation, batching and limits (with the connection's name set).
    pub config: ConnectionConfig,
    /// The adapter.
    pub adapter: Arc<dyn CrmAdapter>,
}

/// One kind of CRM adapter.
pub trait AdapterKind: Send + Sync {
    /// The kind's name in configuration (`hubspot`).
    fn kind(&self) -> &'static str;

    /// Builds the connection `name` from its settings table (everything under
    /// `[crm.connections.<name>]`, `kind` included). A table that does not fit, or a missing
    /// credential, is [`CrmError::Fatal`] naming the connection.
    fn build(
        &self,
        name: &str,
        settings: &mut dyn erased_serde::Deserializer<'static>,
    ) -> Result<Built, CrmError>;
}

/// Reads a kind's settings from the erased table (for [`AdapterKind::build`]).
pub fn read_settings<T: serde::de::DeserializeOwned>(
    name: &str,
    settings: &mut dyn erased_serde::Deserializer<'static>,
) -> Result<T, CrmError> {
    erased_serde::deserialize(settings).map_err(|e| {
        CrmError::Fatal(format!(
            "[crm.connections.{name}] has an invalid value: {e}"
        ))
    })
}

/// [`AdapterKind::build`] for the usual kind, whose settings embed the engine's
/// [`ConnectionConfig`] (reached through `sync`) and whose adapter is made from its settings
/// by `make`: reads the table, names the connection, makes the adapter.
pub fn build_from<T, A>(
    name: &str,
    settings: &mut dyn erased_serde::Deserializer<'static>,
    sync: impl Fn(&mut T) -> &mut ConnectionConfig,
    make: impl FnOnce(T) -> Result<A, CrmError>,
) -> Result<Built, CrmError>
where
    T: serde::de::DeserializeOwned,
    A: CrmAdapter + 'static,
{
    let mut kind_settings: T = read_settings(name, settings)?;
    sync(&mut kind_settings).name = name.to_owned();
    let config = sync(&mut kind_settings).clone();
    Ok(Built {
        config,
        adapter: Arc::new(make(kind_settings)?),
    })
}

/// Declares the usual [`AdapterKind`]: a unit struct named `$kind`, known in configuration as
/// `$name`, whose settings `$config` embed the engine's [`ConnectionConfig`] in a `sync` field
/// and whose adapter `$make` builds from them (see [`build_from`]).
///
/// ```ignore
/// wacrm_crm::adapter_kind!(
///     /// `kind = "mycrm"` in the registry.
///     MyCrmKind, "mycrm", MyCrmConfig, MyCrm::new
/// );
/// ```
#[macro_export]
macro_rules! adapter_kind {
    ($(#[$meta:meta])* $kind:ident, $name:literal, $config:ty, $make:path) => {
        $(#[$meta])*
        pub struct $kind;

        impl $crate::registry::AdapterKind for $kind {
            fn kind(&self) -> &'static str {
                $name
            }

            fn build(
                &self,
                name: &str,
                settings: &mut dyn $crate::registry::erased_serde::Deserializer<'static>,
            ) -> Result<$crate::registry::Built, $crate::CrmError> {
                $crate::registry::build_from(name, settings, |c: &mut $config| &mut c.sync, $make)
            }
        }
    };
}

/// The adapter kinds of a build, by name.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn AdapterKind>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// The registry with `kind` added (replacing a kind of the same name).
    pub fn with(mut self, kind: impl AdapterKind + 'static) -> Self {
        self.kinds.insert(kind.kind(), Arc::new(kind));
        self
    }

    /// The names of the kinds, sorted.
    pub fn kinds(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// The kind of that name.
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn AdapterKind>> {
        self.kinds.get(kind)
    }

    /// Builds the connection `name` of kind `kind` from its settings.
    pub fn build(
        &self,
        name: &str,
        kind: &str,
        settings: &mut dyn erased_serde::Deserializer<'static>,
    ) -> Result<Built, CrmError> {
        let Some(adapter_kind) = self.kinds.get(kind) else {
            return Err(CrmError::Fatal(format!(
                "[crm.connections.{name}] has kind \"{kind}\", which this build does not know \
                 (known: {})",
                self.kinds().join(", ")
            )));
        };
        let mut built = adapter_kind.build(name, settings)?;
        built.config.name = name.to_owned();
        Ok(built)
    }
}
