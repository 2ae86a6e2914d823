//! `wacrm erase`: a data subject's erasure from the command line (docs/privacy.md).

use clap::Args;
use wacrm_core::E164;
use wacrm_store::erasure::{StepState, SubjectRef};

use crate::erasure::{adapters_of, Eraser};
use crate::settings::Settings;

/// Whom to erase.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct EraseArgs {
    /// wacrm's contact id.
    #[arg(long)]
    contact: Option<String>,
    /// A phone number, any spelling (`+55 11 98765-4321`, `5511987654321`).
    #[arg(long)]
    phone: Option<String>,
    /// WhatsApp's business-scoped user id.
    #[arg(long)]
    bsuid: Option<String>,
    /// Resume an erasure by id (one a crash or a pending CRM left running).
    #[arg(long)]
    resume: Option<String>,
}

/// Files the erasure (or finds the one running for the same person), audits it, and runs every
/// step this process can: with the embedded bus held by a running service, the bus step is left
/// to that service's erasure worker. Exits non-zero while steps remain (a CRM down, a manual
/// step to do), naming them.
pub async fn run(
    settings: Settings,
    registry: &wacrm_crm::Registry,
    args: EraseArgs,
) -> anyhow::Result<()> {
    let db = wacrm_store::connect(&settings.store).await?;
    wacrm_store::migrate(&db).await?;
    crate::shared::install(&db);
    let bus = match wacrm_bus::open(&settings.bus).await {
        Ok(bus) => Some(bus),
        Err(wacrm_bus::BusError::Unavailable(reason)) => {
            eprintln!("bus: {reason} — the running service finishes the bus step");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let eraser = Eraser::new(
        db.clone(),
        bus.clone(),
        settings.bus.topics(),
        adapters_of(&settings, registry)?,
    )
    .await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let erasure = if let Some(id) = &args.resume {
        wacrm_store::erasure::get(&db, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no erasure {id}"))?
    } else {
        let by = if let Some(id) = args.contact {
            SubjectRef::Contact(id)
        } else if let Some(phone) = args.phone {
            SubjectRef::Phone(E164::parse(&phone).map_err(|e| anyhow::anyhow!("--phone: {e}"))?)
        } else if let Some(id) = args.bsuid {
            SubjectRef::Bsuid(id)
        } else {
            anyhow::bail!("name the person: --contact, --phone or --bsuid");
        };
        let Some(prepared) = wacrm_store::erasure::prepare(&db, &by).await? else {
            crate::audit::outcome(&db, "contacts.erase", "no such contact", None, "not_found")
                .await?;
            anyhow::bail!("no such contact");
        };
        // Audited before anything is filed or erased: who asked, and the person by keyed
        // hash only.
        crate::audit::intent(
            &db,
            "contacts.erase",
            &format!("subject {}", prepared.hash),
            None,
        )
        .await?;
        eraser.begin(prepared, &actor).await?
    };
    let target = format!("erasure {} subject {}", erasure.id, erasure.subject);
    println!("erasure {} ({} steps)", erasure.id, erasure.steps.len());
    let bar = indicatif::ProgressBar::new(erasure.steps.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.inc(erasure.steps.values().filter(|s| s.is_settled()).count() as u64);
    let finished = eraser
        .run(&erasure, |step, state| {
            if state.is_settled() {
                bar.inc(1);
            }
            bar.println(format!("{step}: {}", describe(state)));
        })
        .await?;
    bar.finish_and_clear();
    let outcome = if finished.state == wacrm_store::erasure::FINISHED {
        "ok"
    } else {
        "pending"
    };
    crate::audit::outcome(&db, "contacts.erase", &target, None, outcome).await?;
    if let Some(bus) = bus {
        let _ = bus.close(std::time::Duration::from_secs(5)).await;
    }
    let manual: Vec<String> = finished
        .steps
        .iter()
        .filter_map(|(name, s)| match s {
            StepState::Manual { instruction } => Some(format!("{name}: {instruction}")),
            _ => None,
        })
        .collect();
    for line in &manual {
        println!("to do by hand — {line}");
    }
    if finished.state == wacrm_store::erasure::FINISHED {
        println!("erasure {} finished", finished.id);
        Ok(())
    } else {
        anyhow::bail!(
            "erasure {} not finished: run `wacrm erase --resume {}` later (the service's worker also retries)",
            finished.id,
            finished.id
        )
    }
}

/// A step's state in words.
pub fn describe(state: &StepState) -> String {
    match state {
        StepState::Pending {
            attempts,
            last_error,
        } => format!(
            "pending after {attempts} attempt(s){}",
            last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        StepState::Done { detail, .. } => format!("done — {detail}"),
        StepState::Manual { instruction } => format!("manual — {instruction}"),
    }
}
