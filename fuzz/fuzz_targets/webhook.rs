//! Webhook parsing and normalisation on arbitrary bytes: never a panic, never a hang, and every
//! part of a payload it reads is either an event or a rejected part carrying the raw JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wacrm_core::optout::OptOutKeywords;

fuzz_target!(|data: &[u8]| {
    let Ok(out) = wacrm_whatsapp::normalise::parse_and_normalise(data, chrono::Utc::now()) else {
        return;
    };
    // What the webhook handler does next must not panic either.
    let _ = OptOutKeywords::default().derive(&out.events);
    for event in &out.events {
        let data = event.payload.data_json().expect("events always encode");
        wacrm_core::EventPayload::from_data(event.payload.type_name(), &data)
            .expect("an encoded event decodes back");
    }
    for rejected in &out.rejected {
        // A rejected part is a complete webhook again (it can be re-driven).
        let _ = wacrm_whatsapp::normalise::parse_and_normalise(
            rejected.raw.as_bytes(),
            chrono::Utc::now(),
        );
    }
});
