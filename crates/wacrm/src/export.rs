//! `wacrm export`: everything wacrm holds on one contact, as JSON (LGPD's right of access), from
//! the host — the same document as `GET /v1/contacts/{id}/export` for a key of every number.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use wacrm_core::contact::IdentityKey;
use wacrm_core::E164;
use wacrm_store::export::{self, WriterSink};
use wacrm_store::queries::{self, ContactView};

use crate::settings::Settings;

/// `wacrm export --contact ID | --phone E164 [--out FILE]`.
#[derive(Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["contact", "phone"])))]
pub struct ExportArgs {
    /// The contact id.
    #[arg(long)]
    pub contact: Option<String>,
    /// The contact's phone number with country code, in any punctuation
    /// (`+55 (11) 98765-4321`, `5511987654321`; a Brazilian mobile with or without its 9th
    /// digit).
    #[arg(long)]
    pub phone: Option<String>,
    /// Write the document to this file (default: standard output). It is written next to it
    /// under `FILE.partial` and renamed when complete, so a failed export leaves no
    /// plausible-looking file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The audit action of an export (as the API's).
const ACTION: &str = "contacts.export";

pub async fn run(settings: Settings, args: ExportArgs) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    let contact = find(&db, &args).await?;
    // Audited before anything is read; an unwritable audit log stops the command here.
    entry(&db, &contact.id, "intent")
        .await
        .context("the audit log cannot be written; nothing was exported")?;
    let result = write(&db, &contact, args.out.as_deref()).await;
    let outcome = if result.is_ok() { "ok" } else { "error" };
    entry(&db, &contact.id, outcome).await?;
    let stats = result?;
    eprintln!(
        "exported contact {}: {} messages, {} statuses, {} requests, {} dead letters, {} audit \
         entries ({} bytes){}",
        contact.id,
        stats.messages,
        stats.statuses,
        stats.requests,
        stats.dead_letters,
        stats.audit_entries,
        stats.bytes,
        args.out
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// The contact named by `--contact` or `--phone` (merges followed).
async fn find(db: &wacrm_store::Db, args: &ExportArgs) -> anyhow::Result<ContactView> {
    if let Some(id) = &args.contact {
        return queries::get_contact(db, id)
            .await?
            .with_context(|| format!("no contact {id}"));
    }
    let Some(raw) = &args.phone else {
        bail!("give --contact ID or --phone E164");
    };
    let phone =
        E164::parse(raw).with_context(|| format!("--phone {raw:?} is not a phone number"))?;
    let mut found = queries::find_contacts(db, &[IdentityKey::Phone(phone)], None).await?;
    match found.len() {
        0 => bail!("no contact with that phone number"),
        1 => Ok(found.remove(0)),
        _ => bail!(
            "several contacts have that phone number: {}; export each with --contact",
            found
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

async fn write(
    db: &wacrm_store::Db,
    contact: &ContactView,
    out: Option<&std::path::Path>,
) -> anyhow::Result<export::ExportStats> {
    let Some(path) = out else {
        let mut sink = WriterSink(std::io::BufWriter::new(std::io::stdout()));
        let stats = export::export(db, contact, None, &mut sink).await?;
        sink.0.flush()?;
        return Ok(stats);
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut sink = WriterSink(std::io::BufWriter::new(file));
    let stats = match export::export(db, contact, None, &mut sink).await {
        Ok(stats) => stats,
        Err(e) => {
            drop(sink);
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
    };
    let file = sink.0.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    Ok(stats)
}

/// An audit entry of this command, as the command line's user, about the contact.
async fn entry(db: &wacrm_store::Db, contact_id: &str, outcome: &str) -> anyhow::Result<()> {
    let actor = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut new = wacrm_store::audit::NewEntry::new("cli", format!("cli:{actor}"), ACTION, outcome);
    new.contact_id = Some(contact_id.to_owned());
    new.target = Some(contact_id.to_owned());
    wacrm_store::audit::AuditLog::new(db.clone())
        .append(new)
        .await?;
    Ok(())
}
