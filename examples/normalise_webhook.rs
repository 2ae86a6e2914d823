//! Library use: verify and normalise a WhatsApp webhook body without running the service.
//!
//! `cargo run -p wacrm-whatsapp --example normalise_webhook -- BODY.json APP_SECRET`
//! prints each event's type and id (no personal data).

use wacrm_whatsapp::normalise::parse_and_normalise;
use wacrm_whatsapp::signature::sign;
use wacrm_whatsapp::WebhookSecrets;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: normalise_webhook BODY.json APP_SECRET")?;
    let secret = args.next().unwrap_or_else(|| "example-secret".into());
    let body = std::fs::read(path)?;

    // Meta signs the raw bytes; here we sign them ourselves to show the check.
    let header = sign(secret.as_bytes(), &body);
    WebhookSecrets::new(Some(&secret), None).verify(&body, Some(&header))?;

    let normalised = parse_and_normalise(&body, chrono::Utc::now())?;
    for event in &normalised.events {
        println!("{}\t{}", event.payload.type_name(), event.id);
    }
    for rejected in &normalised.rejected {
        println!("rejected: {}", rejected.reason);
    }
    Ok(())
}
