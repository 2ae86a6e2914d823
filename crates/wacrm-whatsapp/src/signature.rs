//! `X-Hub-Signature-256`: HMAC-SHA256 of the raw request body with the app secret.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No app secret is configured, so no webhook can be verified (and none is accepted).
    #[error("no WhatsApp app secret is configured; webhooks are rejected until one is set")]
    NotConfigured,
    /// The request had no `X-Hub-Signature-256` header.
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("the X-Hub-Signature-256 header is malformed")]
    Malformed,
    /// The signature does not match the body under any configured secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// The app secrets webhooks are verified with: the current one and, during a rotation, the
/// next one. A body signed with either is accepted.
#[derive(Clone, Default)]
pub struct WebhookSecrets {
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets({} configured)", self.secrets.len())
    }
}

impl WebhookSecrets {
    /// Secrets from configuration; empty strings are ignored.
    pub fn new(current: Option<&str>, next: Option<&str>) -> Self {
        let secrets = [current, next]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes().to_vec())
            .collect();
        WebhookSecrets { secrets }
    }

    /// Whether at least one secret is configured.
    pub fn is_configured(&self) -> bool {
        !self.secrets.is_empty()
    }

    /// Verifies `header` (`sha256=<hex>`) against `body`. The comparison is constant-time.
    pub fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        if self.secrets.is_empty() {
            return Err(SignatureError::NotConfigured);
        }
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_sig = header
            .trim()
            .strip_prefix("sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_sig, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let mut matched = false;
        for secret in &self.secrets {
            // Every secret is tried, so timing does not tell which one matched.
            matched |= mac(secret, body).verify_slice(&expected).is_ok();
        }
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

fn mac(secret: &[u8], body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac
}

/// Computes the `X-Hub-Signature-256` header value for a body, as Meta does. Used by tests, the
/// load generator and anyone replaying webhooks.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(secret, body).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_meta_style_signature() {
        let secrets = WebhookSecrets::new(Some("app-secret"), None);
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let header = sign(b"app-secret", body);
        assert_eq!(secrets.verify(body, Some(&header)), Ok(()));
    }

    #[test]
    fn rejects_missing_malformed_and_wrong() {
        let secrets = WebhookSecrets::new(Some("app-secret"), None);
        let body = b"{}";
        assert_eq!(secrets.verify(body, None), Err(SignatureError::Missing));
        assert_eq!(
            secrets.verify(body, Some("md5=abc")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            secrets.verify(body, Some("sha256=zz")),
            Err(SignatureError::Malformed)
        );
        let wrong = sign(b"other-secret", body);
        assert_eq!(
            secrets.verify(body, Some(&wrong)),
            Err(SignatureError::Mismatch)
        );
        let tampered = sign(b"app-secret", b"{ }");
        assert_eq!(
            secrets.verify(body, Some(&tampered)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn rotation_accepts_current_and_next() {
        let secrets = WebhookSecrets::new(Some("old"), Some("new"));
        let body = b"payload";
        assert!(secrets.verify(body, Some(&sign(b"old", body))).is_ok());
        assert!(secrets.verify(body, Some(&sign(b"new", body))).is_ok());
        assert!(secrets.verify(body, Some(&sign(b"third", body))).is_err());
    }

    #[test]
    fn without_secret_nothing_is_accepted() {
        let secrets = WebhookSecrets::new(None, Some(""));
        let body = b"payload";
        assert_eq!(
            secrets.verify(body, Some(&sign(b"", body))),
            Err(SignatureError::NotConfigured)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic_nor_pass(header in ".{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let secrets = WebhookSecrets::new(Some("s"), None);
            prop_assert!(secrets.verify(&body, Some(&header)).is_err() || header == sign(b"s", &body));
        }
    }
}
