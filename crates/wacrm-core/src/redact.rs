//! Redaction for logs: phone numbers and message bodies never reach a log line in clear.
//!
//! [`phone`] and [`Redacted`] are for values wacrm itself logs. [`scrub`] is for text that comes
//! from elsewhere — a CRM's or the Graph API's error answer, which often quotes the input back
//! ("Property values were not valid: … 5511987654321 …") — before it becomes an error string,
//! a log line or a dead-letter reason.

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

/// The longest text [`scrub`] returns, in characters: enough for an error's code and
/// explanation, short enough that a CRM's whole answer (an HTML page, an echo of the batch)
/// never lands in a log line or a dead-letter reason.
pub const SCRUB_MAX_CHARS: usize = 500;

/// How much of a text [`scrub_within`] reads at all (bytes). What lies past it could never be
/// shown within any sensible bound, and the scan stays linear in a bounded input.
const SCRUB_INPUT_BYTES: usize = 64 * 1024;

/// Digits that make a phone-like run a phone: the shortest Brazilian subscriber number
/// without its area code (`8765-4321`) has eight.
const PHONE_DIGITS: usize = 8;

/// JSON keys whose string values are content rather than explanation, compared without case.
///
/// `body`, `text`, `caption` and `content` are where messages carry what a person wrote
/// (WhatsApp's own shapes, the webhook sink's payload, Pipedrive's note `content`);
/// `hs_communication_body`, `hs_note_body`, `description`, `note`, `notes` and `note_content`
/// are where the adapters write a conversation into a CRM (HubSpot, Salesforce, RD Station,
/// Zoho), so a CRM echoing its input back echoes them; `value` is where a validation error
/// names the value it refused. `message` is on the list too: inside an error's JSON (HubSpot's
/// `Property values were not valid: [{"message": …}]`) it is the sentence that quotes the input,
/// while the code (`error`, `category`, `code`) and the property's `name` stay, which is what an
/// operator acts on. A `message` that is the whole text — the usual case — is not a JSON value
/// and is kept, scrubbed of phones and e-mails like the rest.
const CONTENT_KEYS: &[&str] = &[
    "body",
    "text",
    "caption",
    "content",
    "message",
    "value",
    "description",
    "note",
    "notes",
    "note_content",
    "hs_communication_body",
    "hs_note_body",
];

/// What a redacted value begins with (see [`Redacted`]).
const REDACTED_PREFIX: &str = "[redacted ";

/// Third-party text made safe for logs and dead-letter reasons: at most [`SCRUB_MAX_CHARS`]
/// characters (see [`scrub_within`]).
pub fn scrub(text: &str) -> String {
    scrub_within(text, SCRUB_MAX_CHARS)
}

/// Third-party text (a CRM's or the Graph API's error answer) made safe for logs and
/// dead-letter reasons, at most `max_chars` characters long (a longer text is cut, ending in
/// `…`):
///
/// - the string value of a content key ([`CONTENT_KEYS`]: `body`, `text`, `message`, `value`…)
///   wherever the text holds JSON — the whole text, JSON quoted inside a sentence, JSON encoded
///   once more inside a JSON string, or JSON cut off — becomes `[redacted N chars]`;
/// - an e-mail address (a WhatsApp JID included) becomes `[e-mail]`;
/// - a phone-like run of at least eight digits (with a leading `+` or `(`, and spaces, dots,
///   dashes or parentheses between digits) is masked as [`phone`] masks a number;
/// - control characters (line breaks of an HTML page) become spaces, so a line stays a line.
///
/// Pure, no regular expressions, about linear in the input (of which the first 64 KiB are
/// read). Scrubbing a scrubbed text changes nothing unless it was cut (then a quotation whose
/// context was cut off may be redacted too). Codes survive: `VALIDATION_ERROR`, `(#131026)`,
/// `INVALID_EMAIL`.
pub fn scrub_within(text: &str, max_chars: usize) -> String {
    let text = prefix_within(text, SCRUB_INPUT_BYTES);
    let keyed = redact_content_values(text);
    let masked = mask_phones_and_emails(&keyed);
    truncate(masked, max_chars)
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn prefix_within(text: &str, bytes: usize) -> &str {
    if text.len() <= bytes {
        return text;
    }
    let mut end = bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How many backslashes stand right before `bytes[at]`, not looking before `from`.
fn backslashes_before(bytes: &[u8], at: usize, from: usize) -> usize {
    bytes[from..at]
        .iter()
        .rev()
        .take_while(|b| **b == b'\\')
        .count()
}

/// The nesting of a JSON string delimiter, from the backslashes before its `"`: plain JSON
/// (`"`, after an even count) is level 0, JSON encoded inside a JSON string (`\"`: 1, 5, …) is
/// level 1. Deeper encodings are not looked into (their phones and e-mails are still masked).
fn delimiter_level(backslashes: usize) -> Option<u8> {
    if backslashes.is_multiple_of(2) {
        Some(0)
    } else if backslashes % 4 == 1 {
        Some(1)
    } else {
        None
    }
}

/// Where the text of a string of `level` starting at `from` ends (exclusive, before its
/// closing delimiter): `Ok` when it is closed, `Err` where it was cut off — the text's end, or,
/// for a string encoded inside a JSON string, a plain `"`, which such a string cannot hold.
fn string_end(bytes: &[u8], from: usize, level: u8) -> Result<usize, usize> {
    for at in from..bytes.len() {
        if bytes[at] != b'"' {
            continue;
        }
        match delimiter_level(backslashes_before(bytes, at, from)) {
            Some(l) if l == level => return Ok(at - usize::from(level)),
            Some(0) => return Err(at),
            _ => {}
        }
    }
    Err(bytes.len())
}

/// The first byte at or after `at` that is not whitespace.
fn next_solid(bytes: &[u8], at: usize) -> Option<(usize, u8)> {
    (at..bytes.len())
        .map(|i| (i, bytes[i]))
        .find(|(_, b)| !b.is_ascii_whitespace())
}

/// Whether quoted text reads as an identifier (a property or field name, a code, a path) rather
/// than as something a person wrote: ASCII letters, digits and `_ . : / - @ + # [ ] *` only
/// (the last three so that `inputs[0]`, a masked phone and `[e-mail]` stay as they are).
fn is_identifier(text: &[u8]) -> bool {
    text.iter()
        .all(|b| b.is_ascii_alphanumeric() || b"_.:/-@+#[]*".contains(b))
}

/// What to do with one string of the text.
enum Quoted {
    /// Keep it; go on at this byte (past its closing delimiter).
    Keep(usize),
    /// Redact the text `start..end`; go on at the third byte.
    Redact(usize, usize, usize),
}

/// Decides about the string whose opening delimiter (of `level`) ends at `open`:
///
/// - a key (followed by `:`) that is a content key: its string value is redacted, even cut off;
/// - a JSON value (after `:`, `,`, `[` or `{`) or another key: kept;
/// - a quotation in prose (`cannot receive "Oi, tudo bem?"`): redacted, unless it reads as an
///   identifier (`Property "hs_note_body" does not exist`) — a validation message quotes the
///   value it refused this way.
///
/// `None`: not a string (an unmatched `"`).
fn quoted_at(bytes: &[u8], open: usize, level: u8) -> Option<Quoted> {
    let start = open + 1;
    let end = string_end(bytes, start, level).ok()?;
    let after = end + usize::from(level) + 1;
    let text = &bytes[start..end];
    if text.starts_with(REDACTED_PREFIX.as_bytes()) {
        return Some(Quoted::Keep(after));
    }
    if let Some((colon, b':')) = next_solid(bytes, after) {
        let content_key = CONTENT_KEYS
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(text));
        if !content_key {
            return Some(Quoted::Keep(after));
        }
        // The value's opening delimiter: `"` at level 0, `\"` at level 1. Anything else (a
        // number, an object) is left to the other rules, an object's keys in their turn.
        let Some((at, _)) = next_solid(bytes, colon + 1) else {
            return Some(Quoted::Keep(after));
        };
        let quote = at + usize::from(level);
        let opens = quote < bytes.len()
            && bytes[at..quote].iter().all(|b| *b == b'\\')
            && bytes[quote] == b'"'
            && delimiter_level(backslashes_before(bytes, quote, at)) == Some(level);
        if !opens {
            return Some(Quoted::Keep(after));
        }
        let value_start = quote + 1;
        let (value_end, resume) = match string_end(bytes, value_start, level) {
            Ok(end) => (end, end + usize::from(level) + 1),
            // Cut off with the text: redacted to its end.
            Err(cut) if cut == bytes.len() => (cut, cut),
            // Broken by a plain quote: not an encoded string after all.
            Err(_) => return Some(Quoted::Keep(after)),
        };
        if bytes[value_start..value_end].starts_with(REDACTED_PREFIX.as_bytes()) {
            return Some(Quoted::Keep(resume));
        }
        return Some(Quoted::Redact(value_start, value_end, resume));
    }
    let delimiter = open - usize::from(level);
    let before = bytes[..delimiter]
        .iter()
        .rev()
        .find(|b| !b.is_ascii_whitespace());
    if matches!(before, Some(b':' | b',' | b'[' | b'{')) || is_identifier(text) {
        Some(Quoted::Keep(after))
    } else {
        Some(Quoted::Redact(start, end, after))
    }
}

/// Replaces quoted content — the string values of content keys and quotations in prose — by
/// `[redacted N chars]`, looking at strings of one `level` (0: plain JSON or prose, 1: JSON
/// encoded inside a JSON string), each from its opening to its closing delimiter.
fn redact_quoted(text: &str, level: u8) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut at = 0;
    while at < bytes.len() {
        let opens =
            bytes[at] == b'"' && delimiter_level(backslashes_before(bytes, at, 0)) == Some(level);
        if !opens {
            at += 1;
            continue;
        }
        match quoted_at(bytes, at, level) {
            None => at += 1,
            Some(Quoted::Keep(next)) => at = next,
            Some(Quoted::Redact(start, end, next)) => {
                // Delimiters are ASCII, so both ends are character boundaries.
                out.push_str(&text[copied..start]);
                out.push_str(&Redacted(&text[start..end]).to_string());
                copied = end;
                at = next;
            }
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// Redacts quoted content in plain text and JSON, then in JSON encoded once more.
fn redact_content_values(text: &str) -> String {
    redact_quoted(&redact_quoted(text, 0), 1)
}

/// A character of an e-mail address's local part (the usual ones; quoted local parts are
/// not looked for).
fn is_local(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '.' | '-')
}

/// The e-mail addresses in `chars`, as sorted, disjoint `(start, end)` spans.
fn email_spans(chars: &[char]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut last_end = 0;
    for at in 0..chars.len() {
        if chars[at] != '@' || at < last_end {
            continue;
        }
        let mut start = at;
        while start > last_end && is_local(chars[start - 1]) {
            start -= 1;
        }
        while start < at && chars[start] == '.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < chars.len() && is_domain(chars[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(chars[end - 1], '.' | '-') {
            end -= 1;
        }
        let domain = &chars[at + 1..end];
        let plausible = start < at
            && domain.first().is_some_and(|c| c.is_alphanumeric())
            && domain.contains(&'.');
        if plausible {
            spans.push((start, end));
            last_end = end;
        }
    }
    spans
}

/// What may stand between the digits of a phone as people type it: `+55 (11) 98765-4321`,
/// `11.98765.4321`.
fn is_phone_separator(c: char) -> bool {
    matches!(c, ' ' | '\u{a0}' | '.' | '-' | '(' | ')')
}

/// The end of the phone-like run starting at `start` (after its last digit), if one starts
/// there: a digit, or `+` or `(` right before one. Separators join digits one or two at a time
/// (`) `); the run never reaches `limit`.
fn phone_run(chars: &[char], start: usize, limit: usize) -> Option<usize> {
    let first = chars[start];
    let opens = first.is_ascii_digit()
        || (matches!(first, '+' | '(')
            && start + 1 < limit
            && (chars[start + 1].is_ascii_digit()
                || (chars[start + 1] == '('
                    && start + 2 < limit
                    && chars[start + 2].is_ascii_digit())));
    if !opens {
        return None;
    }
    let mut at = start;
    let mut end = start;
    while at < limit {
        if chars[at].is_ascii_digit() {
            at += 1;
            end = at;
            continue;
        }
        let gap = chars[at..limit]
            .iter()
            .take(3)
            .take_while(|c| is_phone_separator(**c) || (at == start && **c == '+'))
            .count();
        if (1..=2).contains(&gap) && at + gap < limit && chars[at + gap].is_ascii_digit() {
            at += gap;
        } else {
            break;
        }
    }
    (end > start).then_some(end)
}

/// Masks phone-like runs of eight digits or more, replaces e-mail addresses and turns control
/// characters into spaces.
fn mask_phones_and_emails(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let emails = email_spans(&chars);
    let mut next_email = emails.iter().peekable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < chars.len() {
        let limit = match next_email.peek() {
            Some((start, end)) if *start == at => {
                out.push_str("[e-mail]");
                at = *end;
                next_email.next();
                continue;
            }
            Some((start, _)) => *start,
            None => chars.len(),
        };
        if let Some(end) = phone_run(&chars, at, limit) {
            let run: String = chars[at..end].iter().collect();
            if chars[at..end].iter().filter(|c| c.is_ascii_digit()).count() >= PHONE_DIGITS {
                out.push_str(&phone(&run));
            } else {
                out.push_str(&run);
            }
            at = end;
            continue;
        }
        let c = chars[at];
        out.push(if c.is_control() { ' ' } else { c });
        at += 1;
    }
    out
}

/// `text` cut to `max_chars` characters, the last of them `…` when it was cut.
fn truncate(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text,
        Some(_) if max_chars == 0 => String::new(),
        Some(_) => {
            let keep = text
                .char_indices()
                .nth(max_chars - 1)
                .map_or(text.len(), |(at, _)| at);
            let mut out = text[..keep].to_owned();
            out.push('…');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phone_keeps_prefix_and_last_two_digits() {
        assert_eq!(phone("+5511987654321"), "+55*********21");
        assert_eq!(phone("5511987654321"), "551********21");
    }

    #[test]
    fn redacted_hides_content() {
        assert_eq!(Redacted("olá mundo").to_string(), "[redacted 9 chars]");
    }

    /// Whether `text` holds `n` ASCII digits in a row.
    fn has_digit_run(text: &str, n: usize) -> bool {
        let mut run = 0;
        for c in text.chars() {
            run = if c.is_ascii_digit() { run + 1 } else { 0 };
            if run >= n {
                return true;
            }
        }
        false
    }

    #[test]
    fn phones_in_every_spelling_are_masked() {
        for (text, expected) in [
            (
                "Duplicate external id specified: 5511987654321",
                "Duplicate external id specified: 551********21",
            ),
            ("to +5511987654321.", "to +55*********21."),
            ("call +55 11 98765-4321 now", "call +55 ** *****-**21 now"),
            ("(11) 98765-4321", "(11) *****-**21"),
            ("fone 551187654321;", "fone 551*******21;"),
            ("8765-4321", "876*-**21"),
            ("id0035g0000000001AAA", "id0035g000*****01AAA"),
        ] {
            assert_eq!(scrub(text), expected, "{text}");
        }
    }

    #[test]
    fn short_numbers_and_codes_survive() {
        for text in [
            "(#131026) Message undeliverable",
            "HTTP 400 (VALIDATION_ERROR) at inputs[12]",
            "request_id 3: NotSupportedChoice at custom_fields_values.0.values.0.value",
            "retry after 1234567 ms",
            "NOT_FOUND: The requested resource does not exist",
        ] {
            assert_eq!(scrub(text), text);
        }
    }

    #[test]
    fn e_mails_are_replaced() {
        assert_eq!(
            scrub("Email address maria.silva+crm@example.com.br is invalid."),
            "Email address [e-mail] is invalid."
        );
        assert_eq!(scrub("jid 5511987654321@s.whatsapp.net"), "jid [e-mail]");
        assert_eq!(scrub("user@localhost and a@b"), "user@localhost and a@b");
    }

    #[test]
    fn content_values_in_json_are_redacted_and_codes_kept() {
        // HubSpot's validation answer, as its classifier takes `message`.
        let hubspot = r#"Property values were not valid: [{"isValid":false,"message":"Injected validation error for \"Oi, meu pedido 5511987654321?\"","error":"INVALID_VALUE","name":"hs_communication_body"}]"#;
        assert_eq!(
            scrub(hubspot),
            r#"Property values were not valid: [{"isValid":false,"message":"[redacted 63 chars]","error":"INVALID_VALUE","name":"hs_communication_body"}]"#
        );
        // The whole answer, and the answer encoded once more inside a JSON string.
        let whole =
            r#"{"category": "VALIDATION_ERROR", "text": {"body" : "segredo"}, "value": "x"}"#;
        assert_eq!(
            scrub(whole),
            r#"{"category": "VALIDATION_ERROR", "text": {"body" : "[redacted 7 chars]"}, "value": "[redacted 1 chars]"}"#
        );
        let nested = r#"{"error": "{\"body\":\"a \\\"quoted\\\" word\",\"code\":100}"}"#;
        assert_eq!(
            scrub(nested),
            r#"{"error": "{\"body\":\"[redacted 21 chars]\",\"code\":100}"}"#
        );
        // Cut off inside the value.
        assert_eq!(
            scrub(r#"{"caption":"minha foto de"#),
            r#"{"caption":"[redacted 13 chars]"#
        );
        // Keys that are not content keep their values.
        assert_eq!(
            scrub(r#"{"name":"whatsapp_id", "error": "Invalid value", "list": ["a b", "c"]}"#),
            r#"{"name":"whatsapp_id", "error": "Invalid value", "list": ["a b", "c"]}"#
        );
    }

    #[test]
    fn quotations_in_prose_are_redacted_and_identifiers_kept() {
        assert_eq!(
            scrub(r#"Recipient cannot receive "Oi, tudo bem?" today"#),
            r#"Recipient cannot receive "[redacted 13 chars]" today"#
        );
        assert_eq!(
            scrub(r#""Olá" is not a valid value for "hs_lead_status""#),
            r#""[redacted 3 chars]" is not a valid value for "hs_lead_status""#
        );
        assert_eq!(
            scrub(r#"Property "wacrm_wamid" does not exist; "abc" and "inputs[0]""#),
            r#"Property "wacrm_wamid" does not exist; "abc" and "inputs[0]""#
        );
        assert_eq!(
            scrub(r#"{"error": "say \"hello there\" again"}"#),
            r#"{"error": "say \"[redacted 11 chars]\" again"}"#
        );
        assert_eq!(
            scrub(r#"for "5511987654321" and "ana@example.com""#),
            r#"for "551********21" and "[e-mail]""#
        );
        // An unmatched quote (inches, a cut text) is left alone.
        assert_eq!(scrub(r#"a 5" screen"#), r#"a 5" screen"#);
        // Found by the property test: a plain quote inside an encoded string.
        let odd = r#"\""[redacted \""body":""#;
        assert_eq!(scrub(&scrub(odd)), scrub(odd));
    }

    #[test]
    fn long_texts_are_cut_and_lines_joined() {
        let long = "x".repeat(2_000);
        let out = scrub(&long);
        assert_eq!(out.chars().count(), SCRUB_MAX_CHARS);
        assert!(out.ends_with('…'));
        assert_eq!(
            scrub("<html>\r\n<body>Bad gateway</body>"),
            "<html>  <body>Bad gateway</body>"
        );
        assert_eq!(scrub_within("abcdef", 4), "abc…");
        assert_eq!(scrub_within("abcd", 4), "abcd");
    }

    fn arbitrary_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            "[0-9]{1,16}",
            "[ .()+-]{1,3}",
            "[a-zA-Z]{1,6}",
            Just("@".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just(":".to_owned()),
            Just("\"body\":\"".to_owned()),
            Just("\\\"message\\\":\\\"".to_owned()),
            Just("[redacted ".to_owned()),
            "\\PC{1,4}",
        ];
        proptest::collection::vec(pieces, 0..40).prop_map(|p| p.concat())
    }

    proptest! {
        #[test]
        fn no_eight_digit_run_survives(text in arbitrary_text()) {
            let out = scrub(&text);
            prop_assert!(!has_digit_run(&out, PHONE_DIGITS), "{text:?} -> {out:?}");
            prop_assert!(out.chars().count() <= SCRUB_MAX_CHARS);
            prop_assert!(!out.chars().any(char::is_control));
        }

        /// Without a cut: a cut takes away what follows a quotation, and a second pass may
        /// then redact more (never less) than the first.
        #[test]
        fn scrubbing_twice_changes_nothing(text in arbitrary_text()) {
            let once = scrub_within(&text, usize::MAX);
            prop_assert_eq!(scrub_within(&once, usize::MAX), once.clone(), "{:?}", text);
        }

        #[test]
        fn a_cut_text_scrubbed_again_hides_no_less(text in arbitrary_text(), max in 1usize..80) {
            let once = scrub_within(&text, max);
            let twice = scrub_within(&once, max);
            prop_assert!(!has_digit_run(&twice, PHONE_DIGITS));
            prop_assert!(twice.chars().count() <= max);
        }

        #[test]
        fn a_quoted_phone_is_gone(
            before in "[a-z :\"]{0,20}",
            number in "[1-9][0-9]{7,14}",
            plus in any::<bool>(),
            after in "[a-z :\"]{0,20}",
        ) {
            let quoted = if plus { format!("+{number}") } else { number.clone() };
            let out = scrub(&format!("{before}{quoted}{after}"));
            prop_assert!(!out.contains(&number), "{out}");
        }
    }
}
