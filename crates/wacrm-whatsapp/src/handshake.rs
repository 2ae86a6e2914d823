//! The webhook subscription handshake: Meta calls
//! `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` and expects the challenge back.

use subtle::ConstantTimeEq;

/// Why a handshake was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// No verify token is configured.
    #[error("no verify token is configured")]
    NotConfigured,
    /// `hub.mode` is not `subscribe`.
    #[error("hub.mode must be subscribe")]
    WrongMode,
    /// The token does not match.
    #[error("hub.verify_token does not match")]
    WrongToken,
    /// No challenge to echo.
    #[error("hub.challenge is missing")]
    MissingChallenge,
}

/// Checks a handshake and returns the challenge to echo.
pub fn answer(
    expected_token: Option<&str>,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
) -> Result<String, HandshakeError> {
    let expected = expected_token
        .filter(|t| !t.is_empty())
        .ok_or(HandshakeError::NotConfigured)?;
    if mode != Some("subscribe") {
        return Err(HandshakeError::WrongMode);
    }
    let token = token.unwrap_or_default();
    if !bool::from(token.as_bytes().ct_eq(expected.as_bytes())) {
        return Err(HandshakeError::WrongToken);
    }
    challenge
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .ok_or(HandshakeError::MissingChallenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_challenge_for_right_token() {
        assert_eq!(
            answer(
                Some("tok"),
                Some("subscribe"),
                Some("tok"),
                Some("1158201444")
            ),
            Ok("1158201444".into())
        );
    }

    #[test]
    fn refuses_everything_else() {
        assert_eq!(
            answer(Some("tok"), Some("subscribe"), Some("bad"), Some("1")),
            Err(HandshakeError::WrongToken)
        );
        assert_eq!(
            answer(Some("tok"), Some("unsubscribe"), Some("tok"), Some("1")),
            Err(HandshakeError::WrongMode)
        );
        assert_eq!(
            answer(Some("tok"), Some("subscribe"), Some("tok"), None),
            Err(HandshakeError::MissingChallenge)
        );
        assert_eq!(
            answer(None, Some("subscribe"), Some(""), Some("1")),
            Err(HandshakeError::NotConfigured)
        );
    }
}
