//! `wacrm audit`: the audit log's key and anchors, and `audit verify`.
//!
//! The key of the chain: `[audit] key` (`WACRM_AUDIT__KEY`, hex) or `key_file`; with neither,
//! `audit.key` in the data directory (the SQLite store's directory, or `data/` beside a
//! PostgreSQL store), which `serve` creates (0600) on its first start so a service without
//! configuration still keys its log. Every command installs the key for its own audit entries;
//! only `serve` creates one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use wacrm_store::audit::{self, AuditKey, AuditKeys};

use crate::settings::Settings;

/// `wacrm audit`: the audit log.
#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify every entry's MAC (or hash) and link, and the table against the newest anchor;
    /// fails naming the first edited, rewritten or missing entry.
    Verify {
        /// The anchor file to check against (default: `[audit] anchor_file`, or
        /// `audit-anchors.jsonl` in the data directory).
        #[arg(long)]
        anchors: Option<PathBuf>,
        /// Also check against the anchors published on the bus's audit topic (on the embedded
        /// bus, stop `wacrm serve` first: it owns the log).
        #[arg(long)]
        anchors_from_bus: bool,
    },
}

/// Where the key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySource {
    /// `[audit] key` / `WACRM_AUDIT__KEY`.
    Inline,
    /// `[audit] key_file`.
    File(PathBuf),
    /// The data directory's `audit.key`, found.
    DataDir(PathBuf),
    /// The data directory's `audit.key`, created now.
    Created(PathBuf),
    /// None: entries are unkeyed (only a log never keyed accepts them).
    Missing,
}

/// The SQLite store's directory (`None` on PostgreSQL).
fn sqlite_dir(settings: &Settings) -> Option<PathBuf> {
    let url = &settings.store.url;
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))?;
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Some(dir.to_path_buf()),
        _ => Some(PathBuf::from(".")),
    }
}

/// The data directory: the SQLite store's directory, else `data` (as the embedded bus's).
pub(crate) fn data_dir(settings: &Settings) -> PathBuf {
    sqlite_dir(settings).unwrap_or_else(|| PathBuf::from("data"))
}

/// The anchor file.
pub(crate) fn anchor_file(settings: &Settings) -> PathBuf {
    settings
        .audit
        .anchor_file
        .clone()
        .unwrap_or_else(|| data_dir(settings).join("audit-anchors.jsonl"))
}

/// The keys configured (the current one from `[audit]`, else the data directory's file, made
/// when `create`), and where the current one came from.
pub(crate) fn keys(settings: &Settings, create: bool) -> anyhow::Result<(AuditKeys, KeySource)> {
    let config = &settings.audit;
    let previous = config.previous_keys()?;
    if let Some(key) = config.configured_key()? {
        let source = match &config.key_file {
            Some(path) if config.key.is_none() => KeySource::File(path.clone()),
            _ => KeySource::Inline,
        };
        return Ok((AuditKeys::new(Some(key), previous), source));
    }
    let path = data_dir(settings).join("audit.key");
    if path.exists() {
        let key = AuditKey::read(&path)?;
        return Ok((
            AuditKeys::new(Some(key), previous),
            KeySource::DataDir(path),
        ));
    }
    if !create {
        return Ok((AuditKeys::new(None, previous), KeySource::Missing));
    }
    let (key, source) = match AuditKey::create_file(&path) {
        Ok(key) => (key, KeySource::Created(path)),
        // Another process made it first: use theirs.
        Err(_) if path.exists() => (AuditKey::read(&path)?, KeySource::DataDir(path)),
        Err(e) => return Err(e.into()),
    };
    Ok((AuditKeys::new(Some(key), previous), source))
}

/// A command other than `serve`: its audit entries are signed with the configured key (never
/// created here). A configuration that does not give one is logged; the entries then fail
/// closed on a keyed log.
pub(crate) fn install_for_command(settings: &Settings) {
    match keys(settings, false) {
        Ok((keys, _)) => audit::install_key(keys.current().cloned()),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "the audit key cannot be read"),
    }
}

/// What an operator should know about where the key and anchors are (`serve` logs them at
/// start).
pub(crate) fn warnings(settings: &Settings, source: &KeySource) -> Vec<String> {
    let mut out = Vec::new();
    let database = sqlite_dir(settings);
    let beside = |p: &Path| {
        database
            .as_deref()
            .is_some_and(|db| p.parent().is_some_and(|d| same_dir(d, db)))
    };
    if let KeySource::File(path) | KeySource::DataDir(path) | KeySource::Created(path) = source {
        if beside(path) {
            out.push(format!(
                "the audit key {} is beside the database: whoever can copy both can rewrite \
                 the audit log undetected; keep [audit] key_file on storage the database's \
                 admin cannot read",
                path.display()
            ));
        }
        if readable_by_others(path) {
            out.push(format!(
                "the audit key {} is readable by other users: chmod 600 it",
                path.display()
            ));
        }
    }
    if database.is_none() && matches!(source, KeySource::Created(_) | KeySource::DataDir(_)) {
        out.push(
            "the audit key is this instance's own (in its data directory): instances sharing \
             the store must share one key ([audit] key_file), or verifying needs each one's"
                .to_owned(),
        );
    }
    if beside(&anchor_file(settings)) {
        out.push(format!(
            "the audit anchors {} are beside the database: a deleted tail shows only against \
             anchors its admin cannot rewrite; set [audit] anchor_file to storage elsewhere \
             (the bus keeps a copy too)",
            anchor_file(settings).display()
        ));
    }
    out
}

/// What `doctor` and `audit verify` say about the key and the anchors: where they are weaker
/// than they could be, or why the key cannot be read. Creates nothing.
pub(crate) fn notes(settings: &Settings) -> Vec<String> {
    match keys(settings, false) {
        Ok((_, KeySource::Missing)) => vec![
            "no audit key yet: entries are unkeyed until `wacrm serve` creates one in the data \
             directory, or set [audit] key_file"
                .to_owned(),
        ],
        Ok((_, source)) => warnings(settings, &source),
        Err(e) => vec![format!("the audit key cannot be read: {e:#}")],
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

/// `serve`'s key and anchoring: the configured key, or the data directory's (created on the
/// first start and logged, without the key). Installs it for every audit entry of the process.
pub(crate) async fn for_serve(
    settings: &Settings,
    db: &wacrm_store::Db,
) -> anyhow::Result<wacrm_server::audit_relay::Anchoring> {
    let (keys, source) = keys(settings, true).context("the audit key")?;
    let Some(key) = keys.current().cloned() else {
        anyhow::bail!("no audit key");
    };
    if let KeySource::Created(path) = &source {
        // A warning, not news: without this file the entries it signs cannot be verified, so
        // it belongs in the backups (apart from the database's).
        tracing::warn!(path = %path.display(), key_id = key.id(), "created the audit key: it signs the audit log from now on; back it up apart from the database");
    }
    for warning in warnings(settings, &source) {
        tracing::warn!("{warning}");
    }
    // An instance with another key than the log's newest entry: the log stays a chain, but
    // verifying it needs every instance's key.
    if let Some(newest) = audit::newest(db).await?.and_then(|e| e.mac_key) {
        if keys.get(&newest).is_none() {
            tracing::warn!(
                newest_key_id = %newest,
                key_id = key.id(),
                "the audit log was last signed with another key: give every instance the same [audit] key_file (or list the old one in previous_key_files)"
            );
        }
    }
    audit::install_key(Some(key));
    Ok(wacrm_server::audit_relay::Anchoring {
        keys,
        file: anchor_file(settings),
        every: Duration::from_secs(settings.audit.anchor_every_secs.max(1)),
    })
}

pub async fn run(settings: Settings, command: AuditCommand) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    match command {
        AuditCommand::Verify {
            anchors,
            anchors_from_bus,
        } => verify(&settings, &db, anchors, anchors_from_bus).await,
    }
}

async fn verify(
    settings: &Settings,
    db: &wacrm_store::Db,
    anchors_path: Option<PathBuf>,
    from_bus: bool,
) -> anyhow::Result<()> {
    let (keys, _) = keys(settings, false).context("the audit key")?;
    for note in notes(settings) {
        println!("note: {note}");
    }
    let mut anchors = Vec::new();
    let explicit = anchors_path.is_some();
    let path = anchors_path.unwrap_or_else(|| anchor_file(settings));
    match audit::read_anchor_file(&path)? {
        Some(file) => {
            println!("anchors: {} in {}", file.anchors.len(), path.display());
            if !file.unreadable.is_empty() {
                println!(
                    "anchors: {} unreadable line(s) in {} skipped (lines {:?})",
                    file.unreadable.len(),
                    path.display(),
                    file.unreadable
                );
            }
            anchors.extend(file.anchors);
        }
        None if explicit => anyhow::bail!("no anchor file at {}", path.display()),
        None => println!(
            "anchors: no anchor file at {}: a deleted tail is found only against anchors",
            path.display()
        ),
    }
    if from_bus {
        let bus = wacrm_bus::open(&settings.bus)
            .await
            .context("opening the event bus (on the embedded bus, stop `wacrm serve` first)")?;
        let found = wacrm_server::audit_relay::anchors_from_bus(
            bus.as_ref(),
            &settings.bus.topics(),
            Duration::from_secs(15),
        )
        .await?;
        println!("anchors: {} on the bus's audit topic", found.len());
        anchors.extend(found);
        let _ = bus.close(Duration::from_secs(5)).await;
    }
    let v = audit::verify_with(db, &keys, &anchors).await?;
    if let (Some(first), Some(last)) = (v.first_seq, v.last_seq) {
        println!(
            "entries: seq {first} to {last}: {} keyed (key {}), {} unkeyed",
            v.keyed,
            if v.keys_used.is_empty() {
                "none".to_owned()
            } else {
                v.keys_used.iter().cloned().collect::<Vec<_>>().join(", ")
            },
            v.checked - v.keyed
        );
    }
    if let Some(n) = v.purged_before {
        match v.purge_audited_at {
            Some(at) => println!(
                "entries before seq {n} were purged by retention (audited at entry {at}); the \
                 chain is checked from entry {n}'s stored link"
            ),
            None => println!("entries before seq {n} are gone"),
        }
    }
    if v.anchors_rejected > 0 {
        println!(
            "anchors: {} not signed by a configured key (forged, or of a key not in \
             previous_key_files), ignored",
            v.anchors_rejected
        );
    }
    match &v.newest_anchor {
        Some(a) => println!(
            "newest anchor: seq {} on {} ({} authentic)",
            a.seq,
            a.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            v.anchors_authentic
        ),
        None if v.keyed > 0 => {
            println!("no authentic anchor: the chain is checked, but a deleted tail cannot be seen")
        }
        None => {}
    }
    if let Some(broken) = v.broken {
        let missing = if broken.missing > 0 {
            format!(" ({} entries missing)", broken.missing)
        } else {
            String::new()
        };
        anyhow::bail!(
            "audit log broken at entry {}: {}{missing}",
            broken.seq,
            broken.reason
        );
    }
    println!("audit log intact: {} entries verified", v.checked);
    Ok(())
}

/// Audits a command-line read (keys are managed from the host, not through an API key).
pub async fn cli(db: &wacrm_store::Db, action: &str, target: &str) -> anyhow::Result<()> {
    entry(db, action, target, None, "ok").await
}

/// Before a command changes anything: records the intent (outcome `intent`). An error means the
/// audit log cannot be written and the command must do nothing (it fails closed); otherwise act,
/// then record the outcome with [`outcome`].
pub async fn intent(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
) -> anyhow::Result<()> {
    entry(db, action, target, phone_number_id, "intent")
        .await
        .map_err(|e| e.context("the audit log cannot be written; nothing was done"))
}

/// After a command acted: its outcome (`ok`, `not_found`, `error`, …), the second entry after
/// [`intent`].
pub async fn outcome(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
    outcome: &str,
) -> anyhow::Result<()> {
    entry(db, action, target, phone_number_id, outcome).await
}

async fn entry(
    db: &wacrm_store::Db,
    action: &str,
    target: &str,
    phone_number_id: Option<&str>,
    outcome: &str,
) -> anyhow::Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut new = wacrm_store::audit::NewEntry::new("cli", format!("cli:{actor}"), action, outcome);
    new.target = Some(target.into());
    new.phone_number_id = phone_number_id.map(str::to_owned);
    wacrm_store::audit::AuditLog::new(db.clone())
        .append(new)
        .await?;
    Ok(())
}
