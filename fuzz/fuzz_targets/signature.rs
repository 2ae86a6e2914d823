//! Signature verification on arbitrary bodies and headers: never a panic; a header that is not
//! `sha256=` + the right HMAC is always refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wacrm_whatsapp::signature::sign;
use wacrm_whatsapp::WebhookSecrets;

fuzz_target!(|input: (&[u8], &str)| {
    let (body, header) = input;
    let secrets = WebhookSecrets::new(Some("fuzz-secret"), Some("fuzz-next"));
    let good = sign(b"fuzz-secret", body);
    let next = sign(b"fuzz-next", body);
    let accepted = secrets.verify(body, Some(header)).is_ok();
    // The one rule: `sha256=` then the hex HMAC of either secret (either case), spaces around.
    let expected = header.trim().strip_prefix("sha256=").is_some_and(|hex| {
        [&good, &next].iter().any(|s| {
            s.strip_prefix("sha256=")
                .is_some_and(|h| h.eq_ignore_ascii_case(hex))
        })
    });
    assert_eq!(accepted, expected);
    assert!(secrets.verify(body, Some(&good)).is_ok());
    assert!(secrets.verify(body, None).is_err());
});
