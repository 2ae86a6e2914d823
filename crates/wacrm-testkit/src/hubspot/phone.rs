//! HubSpot's formatting-free calculated phone properties.
//!
//! HubSpot keeps `phone` and `mobilephone` exactly as typed and derives, for search:
//!
//! | property | HubSpot's label | value |
//! |---|---|---|
//! | `hs_searchable_calculated_phone_number` | Calculated Phone Number without country code | national digits |
//! | `hs_searchable_calculated_international_phone_number` | Calculated Phone Number with country code | country code + national digits |
//! | `hs_calculated_phone_number` | Calculated Phone Number in International Format | `+` country code + national digits |
//!
//! and the same three for `mobilephone` (`…_mobile_number`). Values seen in HubSpot answers:
//! `+5511999999999` → `11999999999`, `+33655555555` → `655555555`, `513-227-1572` →
//! `5132271572`, `(877) 829-06966777` → `87782906966777`, `08180854296` → `8180854296`.
//!
//! The fake reproduces that: a number typed with a leading `+` is parsed (libphonenumber's
//! metadata, through the `phonenumber` crate) and split into country code and national
//! significant number; any other number is reduced to its digits without leading zeros (HubSpot
//! uses the portal's or contact's country there, which the fake does not know, so the
//! international variants stay unset).

use std::collections::BTreeMap;

/// The calculated properties the fake maintains, as `(typed property, calculated property)`.
pub const CALCULATED_PHONE_PROPERTIES: &[(&str, &str)] = &[
    ("phone", "hs_searchable_calculated_phone_number"),
    (
        "phone",
        "hs_searchable_calculated_international_phone_number",
    ),
    ("phone", "hs_calculated_phone_number"),
    ("mobilephone", "hs_searchable_calculated_mobile_number"),
    (
        "mobilephone",
        "hs_searchable_calculated_international_mobile_number",
    ),
    ("mobilephone", "hs_calculated_mobile_number"),
];

/// What HubSpot derives from one typed phone number.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Derived {
    national: Option<String>,
    international: Option<String>,
    e164: Option<String>,
}

fn derive(typed: &str) -> Derived {
    let trimmed = typed.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Derived::default();
    }
    if trimmed.starts_with('+') {
        if let Ok(number) = phonenumber::parse(None, trimmed) {
            let national = number.national().to_string();
            let code = number.code().value();
            return Derived {
                international: Some(format!("{code}{national}")),
                e164: Some(format!("+{code}{national}")),
                national: Some(national),
            };
        }
    }
    let national = digits.trim_start_matches('0');
    Derived {
        national: (!national.is_empty()).then(|| national.to_owned()),
        international: None,
        e164: None,
    }
}

/// The calculated phone properties HubSpot would derive from a contact's `phone` and
/// `mobilephone` (absent ones are simply not in the map).
#[must_use]
pub fn calculated_phone_properties(
    phone: Option<&str>,
    mobilephone: Option<&str>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut put = |typed: Option<&str>, names: [&str; 3]| {
        let derived = typed.map(derive).unwrap_or_default();
        for (name, value) in
            names
                .into_iter()
                .zip([derived.national, derived.international, derived.e164])
        {
            if let Some(value) = value {
                out.insert(name.to_owned(), value);
            }
        }
    };
    put(
        phone,
        [
            "hs_searchable_calculated_phone_number",
            "hs_searchable_calculated_international_phone_number",
            "hs_calculated_phone_number",
        ],
    );
    put(
        mobilephone,
        [
            "hs_searchable_calculated_mobile_number",
            "hs_searchable_calculated_international_mobile_number",
            "hs_calculated_mobile_number",
        ],
    );
    out
}

/// Whether `name` is one of the calculated phone properties (read-only for clients).
pub(super) fn is_calculated(name: &str) -> bool {
    CALCULATED_PHONE_PROPERTIES.iter().any(|(_, c)| *c == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone(typed: &str) -> BTreeMap<String, String> {
        calculated_phone_properties(Some(typed), None)
    }

    #[test]
    fn international_numbers_lose_their_country_code_and_punctuation() {
        let p = phone("+55 (11) 98765-4321");
        assert_eq!(p["hs_searchable_calculated_phone_number"], "11987654321");
        assert_eq!(
            p["hs_searchable_calculated_international_phone_number"],
            "5511987654321"
        );
        assert_eq!(p["hs_calculated_phone_number"], "+5511987654321");
        assert_eq!(
            phone("+33655555555")["hs_searchable_calculated_phone_number"],
            "655555555"
        );
        assert_eq!(
            phone("+1 513-227-1572")["hs_searchable_calculated_phone_number"],
            "5132271572"
        );
    }

    #[test]
    fn national_numbers_keep_their_digits_without_leading_zeros() {
        let p = phone("513-227-1572");
        assert_eq!(p["hs_searchable_calculated_phone_number"], "5132271572");
        assert!(!p.contains_key("hs_searchable_calculated_international_phone_number"));
        assert_eq!(
            phone("08180854296")["hs_searchable_calculated_phone_number"],
            "8180854296"
        );
        assert_eq!(
            phone("(877) 829-06966777")["hs_searchable_calculated_phone_number"],
            "87782906966777"
        );
    }

    #[test]
    fn mobile_numbers_fill_the_mobile_properties() {
        let p = calculated_phone_properties(None, Some("+33 6 44 44 44 44"));
        assert_eq!(p["hs_searchable_calculated_mobile_number"], "644444444");
        assert_eq!(
            p["hs_searchable_calculated_international_mobile_number"],
            "33644444444"
        );
        assert!(!p.contains_key("hs_searchable_calculated_phone_number"));
    }

    #[test]
    fn text_without_digits_derives_nothing() {
        assert!(phone("n/a").is_empty());
        assert!(phone("").is_empty());
        assert!(is_calculated("hs_calculated_mobile_number"));
        assert!(!is_calculated("phone"));
    }
}
