//! Phone numbers in E.164, with Brazil's mobile "9th digit" rule.
//!
//! WhatsApp reports numbers as bare digits (`wa_id`), people type them with punctuation
//! ("+55 (11) 98765-4321"), and Brazilian mobiles may reach us with or without the 9th digit that
//! Brazil added to every mobile number (55 DD 8765-4321 vs 55 DD 9 8765-4321). [`E164`] is the one
//! canonical form all of them resolve to, so one person is one contact.

use std::fmt;
use std::sync::LazyLock;

use phonenumber::Mode;
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

/// Why a text could not be read as a phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// The text holds too few or too many digits to be an international number.
    #[error("a phone number has 8 to 15 digits, this one has {0}")]
    Length(usize),
    /// The digits do not form a number of any known country.
    #[error("not a phone number: {0}")]
    Unparseable(String),
}

/// Brazil's country calling code.
const BRAZIL: u16 = 55;

/// How many numbers [`E164::parse`] remembers (about 100 bytes each).
const PARSED_CAPACITY: usize = 16_384;

/// What [`E164::parse`] made of the digits it saw recently. Reading a number against the
/// numbering plan costs about 10 µs, a tenth of a webhook's whole cost, and a business hears
/// from the same customers all day; the answer depends on the digits alone.
static PARSED: LazyLock<Cache<String, Result<E164, PhoneError>>> =
    LazyLock::new(|| Cache::new(PARSED_CAPACITY));

/// The longest text [`E164::parse`] reads: a number typed with every punctuation a person uses
/// fits many times over; anything longer is refused before it is copied or remembered.
pub const MAX_PHONE_INPUT: usize = 64;

fn parse_digits(digits: &str) -> Result<E164, PhoneError> {
    // Checked before the memo: only strings that can be numbers are ever remembered, so a
    // hostile input can neither grow its keys nor evict real numbers with junk lengths.
    if !(8..=15).contains(&digits.len()) {
        return Err(PhoneError::Length(digits.len()));
    }
    if let Some(known) = PARSED.get(digits) {
        return known;
    }
    let parsed = parse_uncached(digits);
    PARSED.insert(digits.to_owned(), parsed.clone());
    parsed
}

fn parse_uncached(digits: &str) -> Result<E164, PhoneError> {
    if !(8..=15).contains(&digits.len()) {
        return Err(PhoneError::Length(digits.len()));
    }
    let parsed = phonenumber::parse(None, format!("+{digits}"))
        .map_err(|_| PhoneError::Unparseable(crate::redact::phone(digits)))?;
    let code = parsed.code().value();
    let national = parsed.national().to_string();
    let national = if code == BRAZIL {
        brazil_with_ninth_digit(&national)
    } else {
        national
    };
    Ok(E164(format!("+{code}{national}")))
}

/// A phone number in canonical E.164 form (`+` and digits only), Brazilian mobiles always with
/// their 9th digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct E164(String);

impl E164 {
    /// Reads an international number as WhatsApp (`5511987654321`) or a person
    /// (`+55 (11) 98765-4321`) writes it; punctuation and spaces are ignored, the country code is
    /// required (with or without `+`).
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        if input.len() > MAX_PHONE_INPUT {
            return Err(PhoneError::Length(input.len()));
        }
        if input.bytes().all(|b| b.is_ascii_digit()) {
            return parse_digits(input);
        }
        let digits: String = input.chars().filter(char::is_ascii_digit).collect();
        parse_digits(&digits)
    }

    /// The number as `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits alone, as WhatsApp writes a `wa_id`.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The country calling code (55 for Brazil).
    pub fn country_code(&self) -> u16 {
        phonenumber::parse(None, &self.0)
            .map(|n| n.code().value())
            .unwrap_or_default()
    }

    /// For a Brazilian mobile, the legacy form without the 9th digit (`+551187654321`), which
    /// WhatsApp still reports for some accounts and which people may have typed into a CRM.
    pub fn brazil_legacy_form(&self) -> Option<E164> {
        let national = self.0.strip_prefix("+55")?;
        let is_mobile_with_ninth = national.len() == 11 && national.as_bytes()[2] == b'9';
        is_mobile_with_ninth.then(|| E164(format!("+55{}{}", &national[..2], &national[3..])))
    }

    /// The number in international format, e.g. `+55 11 98765-4321`.
    pub fn international_format(&self) -> String {
        phonenumber::parse(None, &self.0)
            .map(|n| n.format().mode(Mode::International).to_string())
            .unwrap_or_else(|_| self.0.clone())
    }

    /// The number as people in its country write it, e.g. `(11) 98765-4321`.
    pub fn national_format(&self) -> String {
        phonenumber::parse(None, &self.0)
            .map(|n| n.format().mode(Mode::National).to_string())
            .unwrap_or_else(|_| self.digits().to_owned())
    }

    /// Every spelling under which this number may have been stored elsewhere: E.164, digits only,
    /// national format and national digits, and for Brazilian mobiles the same without the 9th
    /// digit. Used to find contacts that people created by hand.
    pub fn search_variants(&self) -> Vec<String> {
        let mut forms = vec![self.clone()];
        forms.extend(self.brazil_legacy_form());
        let mut out = Vec::new();
        for form in forms {
            let national = form.national_format();
            let national_digits: String = national.chars().filter(char::is_ascii_digit).collect();
            for candidate in [
                form.as_str().to_owned(),
                form.digits().to_owned(),
                national,
                national_digits,
            ] {
                if !out.contains(&candidate) {
                    out.push(candidate);
                }
            }
        }
        out
    }
}

/// Inserts the 9th digit into a Brazilian national number (2-digit area code + 8 digits) whose
/// subscriber part starts with 6–9, the ranges that are mobiles; landlines (2–5) stay as they are.
fn brazil_with_ninth_digit(national: &str) -> String {
    let bytes = national.as_bytes();
    if bytes.len() == 10 && matches!(bytes[2], b'6'..=b'9') {
        format!("{}9{}", &national[..2], &national[2..])
    } else {
        national.to_owned()
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for E164 {
    type Error = PhoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        E164::parse(&value)
    }
}

impl From<E164> for String {
    fn from(value: E164) -> Self {
        value.0
    }
}

impl schemars::JsonSchema for E164 {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "E164".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A phone number in E.164 (`+` and 8 to 15 digits); Brazilian mobiles always with their 9th digit.",
            "pattern": "^\\+[1-9][0-9]{7,14}$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_inputs_are_refused_before_they_are_remembered() {
        let huge = "9".repeat(1 << 20);
        assert_eq!(E164::parse(&huge), Err(PhoneError::Length(1 << 20)));
        let digits = "1".repeat(40);
        assert_eq!(E164::parse(&digits), Err(PhoneError::Length(40)));
        let punctuated = format!("+{}", "1-".repeat(30));
        assert!(E164::parse(&punctuated).is_err());
        assert!(
            PARSED.iter().all(|(k, _)| k.len() <= 15),
            "only number-length keys are remembered"
        );
    }

    #[test]
    fn brazilian_mobile_with_and_without_ninth_digit_is_one_number() {
        let with = E164::parse("5511987654321").unwrap();
        let without = E164::parse("551187654321").unwrap();
        assert_eq!(with, without);
        assert_eq!(with.as_str(), "+5511987654321");
    }

    #[test]
    fn brazilian_landline_is_left_alone() {
        let landline = E164::parse("551133334444").unwrap();
        assert_eq!(landline.as_str(), "+551133334444");
        assert_eq!(landline.brazil_legacy_form(), None);
    }

    #[test]
    fn typed_punctuation_is_ignored() {
        let typed = E164::parse("+55 (11) 98765-4321").unwrap();
        assert_eq!(typed.as_str(), "+5511987654321");
    }

    #[test]
    fn other_countries_keep_their_digits() {
        let us = E164::parse("16505551234").unwrap();
        assert_eq!(us.as_str(), "+16505551234");
        assert_eq!(us.country_code(), 1);
    }

    #[test]
    fn search_variants_cover_typed_forms() {
        let n = E164::parse("5511987654321").unwrap();
        let variants = n.search_variants();
        for expected in [
            "+5511987654321",
            "5511987654321",
            "11987654321",
            "+551187654321",
            "1187654321",
        ] {
            assert!(
                variants.iter().any(|v| v == expected),
                "{expected} missing from {variants:?}"
            );
        }
        assert!(variants.iter().any(|v| v.contains("98765-4321")));
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(E164::parse("12"), Err(PhoneError::Length(2))));
        assert!(E164::parse("not a number").is_err());
    }

    proptest::proptest! {
        /// The remembered answer is the answer: for any spelling, asked again, in any order.
        #[test]
        fn a_remembered_number_is_the_number_parsed_afresh(
            digits in "[0-9]{6,16}",
            spaced in proptest::bool::ANY,
        ) {
            let typed = if spaced { format!("+{} {}", &digits[..2], &digits[2..]) } else { digits.clone() };
            let fresh = parse_uncached(&digits);
            proptest::prop_assert_eq!(E164::parse(&typed), fresh.clone());
            proptest::prop_assert_eq!(E164::parse(&digits), fresh);
        }
    }
}
