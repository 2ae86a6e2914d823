//! Redaction for logs: phone numbers and message bodies never reach a log line in clear.

use std::fmt;

/// Masks a phone number or WhatsApp id for logs, keeping only the last two digits
/// (`+55*********21`), enough to tell two numbers apart while reading a log.
pub fn phone(value: &str) -> String {
    let count = value.chars().count();
    value
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if c.is_ascii_digit() && i + 2 < count && i >= 3 {
                '*'
            } else {
                c
            }
        })
        .collect()
}

/// A value that prints as `[redacted N chars]` in `Display` and `Debug`, for bodies and other
/// personal data that must be carried through code that might log it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[redacted {} chars]", self.0.chars().count())
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_keeps_prefix_and_last_two_digits() {
        assert_eq!(phone("+5511987654321"), "+55*********21");
        assert_eq!(phone("5511987654321"), "551********21");
    }

    #[test]
    fn redacted_hides_content() {
        assert_eq!(Redacted("olá mundo").to_string(), "[redacted 9 chars]");
    }
}
