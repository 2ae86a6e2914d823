//! `POST /crm/v8/coql`: a small parser for the queries a CRM adapter sends, and their answers.
//!
//! The grammar (keywords case-insensitive, `\'` and `\\` escapes in quoted values):
//!
//! ```text
//! query     := SELECT field (',' field)* FROM module WHERE condition
//!              [LIMIT n [OFFSET m] | LIMIT m ',' n] [';']
//! condition := term (OR term)*
//! term      := factor (AND factor)*
//! factor    := '(' condition ')' | field IN '(' value (',' value)* ')' | field '=' value
//! value     := '…' (quoted text)
//! ```
//!
//! Anything else (other operators, `order by`, joins, aggregates) is a violation: the fake
//! does not know the answer, so the adapter must not rely on it.

use axum::http::StatusCode;
use serde_json::{json, Map, Value};

use super::server::{Call, Reply};
use super::state::{State, CONTACTS};

/// The most values one `in` takes.
pub(super) const MAX_IN_VALUES: usize = 100;
/// The most conditions one `where` takes.
const MAX_CONDITIONS: usize = 25;
/// The most fields one `select` takes.
const MAX_SELECT: usize = 50;
/// The largest `limit`, and the default one.
const MAX_LIMIT: u64 = 2000;
const DEFAULT_LIMIT: u64 = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Number(u64),
    Open,
    Close,
    Comma,
    Equals,
    Semicolon,
}

/// A `where` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Condition {
    /// `field in (values)`, or `field = value` (one value).
    In(String, Vec<String>),
    Or(Vec<Condition>),
    And(Vec<Condition>),
}

impl Condition {
    /// How many `in`/`=` conditions it holds.
    fn count(&self) -> usize {
        match self {
            Condition::In(..) => 1,
            Condition::Or(parts) | Condition::And(parts) => parts.iter().map(Self::count).sum(),
        }
    }

    /// Every `(field, values)` it holds.
    fn leaves(&self) -> Vec<(&str, &[String])> {
        match self {
            Condition::In(field, values) => vec![(field.as_str(), values.as_slice())],
            Condition::Or(parts) | Condition::And(parts) => {
                parts.iter().flat_map(Self::leaves).collect()
            }
        }
    }

    /// Whether a record matches; `value` reads a field's stored text.
    fn matches(&self, value: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Condition::In(field, values) => {
                value(field).is_some_and(|stored| values.contains(&stored))
            }
            Condition::Or(parts) => parts.iter().any(|p| p.matches(value)),
            Condition::And(parts) => parts.iter().all(|p| p.matches(value)),
        }
    }
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Query {
    pub fields: Vec<String>,
    pub module: String,
    pub condition: Condition,
    pub limit: u64,
    pub offset: u64,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' | '=' | ';' => {
                chars.next();
                tokens.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    ',' => Token::Comma,
                    '=' => Token::Equals,
                    _ => Token::Semicolon,
                });
            }
            '\'' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        None => return Err("an unterminated quoted value".to_owned()),
                        Some('\\') => match chars.next() {
                            Some(escaped) => value.push(escaped),
                            None => return Err("an unterminated quoted value".to_owned()),
                        },
                        Some('\'') => break,
                        Some(other) => value.push(other),
                    }
                }
                tokens.push(Token::Text(value));
            }
            c if c.is_ascii_digit() => {
                let mut digits = String::new();
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                let number = digits
                    .parse()
                    .map_err(|_| format!("the number {digits} is too large"))?;
                tokens.push(Token::Number(number));
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let mut word = String::new();
                while let Some(&w) = chars
                    .peek()
                    .filter(|w| w.is_ascii_alphanumeric() || **w == '_' || **w == '$')
                {
                    word.push(w);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => {
                return Err(format!(
                    "{other:?} is not part of the query shapes the fake understands \
                     (only `in` and `=` on quoted values)"
                ))
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    fn keyword(&mut self, keyword: &str) -> Result<(), String> {
        if self.is_keyword(keyword) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected `{keyword}`, found {}", self.found()))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the query".to_owned(),
            Some(Token::Word(w)) => format!("`{w}`"),
            Some(Token::Text(t)) => format!("'{t}'"),
            Some(Token::Number(n)) => n.to_string(),
            Some(Token::Open) => "`(`".to_owned(),
            Some(Token::Close) => "`)`".to_owned(),
            Some(Token::Comma) => "`,`".to_owned(),
            Some(Token::Equals) => "`=`".to_owned(),
            Some(Token::Semicolon) => "`;`".to_owned(),
        }
    }

    fn expect(&mut self, token: &Token, what: &str) -> Result<(), String> {
        if self.peek() == Some(token) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected {what}, found {}", self.found()))
        }
    }

    fn name(&mut self, what: &str) -> Result<String, String> {
        const KEYWORDS: &[&str] = &[
            "select", "from", "where", "in", "or", "and", "limit", "offset", "not", "like",
            "order", "by", "is", "null",
        ];
        match self.peek() {
            Some(Token::Word(w)) if !KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                let w = w.clone();
                self.at += 1;
                Ok(w)
            }
            _ => Err(format!("expected {what}, found {}", self.found())),
        }
    }

    fn number(&mut self, what: &str) -> Result<u64, String> {
        match self.next() {
            Some(Token::Number(n)) => Ok(n),
            _ => {
                self.at -= 1;
                Err(format!("expected {what}, found {}", self.found()))
            }
        }
    }

    fn value(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Token::Text(t)) => Ok(t),
            _ => {
                self.at -= 1;
                Err(format!(
                    "expected a quoted value, found {} (the fake compares quoted text only)",
                    self.found()
                ))
            }
        }
    }

    fn condition(&mut self) -> Result<Condition, String> {
        let mut parts = vec![self.term()?];
        while self.is_keyword("or") {
            self.at += 1;
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::Or(parts)
        })
    }

    fn term(&mut self) -> Result<Condition, String> {
        let mut parts = vec![self.factor()?];
        while self.is_keyword("and") {
            self.at += 1;
            parts.push(self.factor()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Condition::And(parts)
        })
    }

    fn factor(&mut self) -> Result<Condition, String> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let inner = self.condition()?;
            self.expect(&Token::Close, "`)`")?;
            return Ok(inner);
        }
        let field = self.name("a field name")?;
        if self.peek() == Some(&Token::Equals) {
            self.at += 1;
            return Ok(Condition::In(field, vec![self.value()?]));
        }
        if !self.is_keyword("in") {
            return Err(format!(
                "expected `in` or `=` after {field}, found {} (the fake understands no other \
                 operator)",
                self.found()
            ));
        }
        self.at += 1;
        self.expect(&Token::Open, "`(` after `in`")?;
        let mut values = vec![self.value()?];
        while self.peek() == Some(&Token::Comma) {
            self.at += 1;
            values.push(self.value()?);
        }
        self.expect(&Token::Close, "`)` closing the `in` list")?;
        Ok(Condition::In(field, values))
    }
}

/// Parses a `select_query` of the shape the fake understands.
pub(super) fn parse(text: &str) -> Result<Query, String> {
    let mut p = Parser {
        tokens: tokenize(text)?,
        at: 0,
    };
    p.keyword("select")?;
    let mut fields = vec![p.name("a field name")?];
    while p.peek() == Some(&Token::Comma) {
        p.at += 1;
        fields.push(p.name("a field name")?);
    }
    p.keyword("from")?;
    let module = p.name("a module name")?;
    p.keyword("where")
        .map_err(|e| format!("{e} (Zoho requires a `where` clause)"))?;
    let condition = p.condition()?;
    let mut limit = DEFAULT_LIMIT;
    let mut offset = 0;
    if p.is_keyword("limit") {
        p.at += 1;
        limit = p.number("a number after `limit`")?;
        if p.peek() == Some(&Token::Comma) {
            p.at += 1;
            offset = limit;
            limit = p.number("a number after `limit m,`")?;
        } else if p.is_keyword("offset") {
            p.at += 1;
            offset = p.number("a number after `offset`")?;
        }
    }
    if p.peek() == Some(&Token::Semicolon) {
        p.at += 1;
    }
    if p.peek().is_some() {
        return Err(format!(
            "unexpected {} (the fake understands `select … from … where … [limit …]` only)",
            p.found()
        ));
    }
    Ok(Query {
        fields,
        module,
        condition,
        limit,
        offset,
    })
}

impl State {
    /// What the query breaks of Zoho's limits or the fake's store; `None` when it can run.
    fn check_query(&self, query: &Query) -> Option<String> {
        if query.module != CONTACTS {
            return Some(format!(
                "module {:?}: the fake implements the Contacts module only",
                query.module
            ));
        }
        let known = |name: &str| name == "id" || self.field(name).is_some();
        if query.fields.len() > MAX_SELECT {
            return Some(format!(
                "{} fields selected; Zoho takes at most {MAX_SELECT}",
                query.fields.len()
            ));
        }
        for (n, field) in query.fields.iter().enumerate() {
            if !known(field) {
                return Some(format!("select: {field:?} is not a field of Contacts"));
            }
            if query.fields[..n].contains(field) {
                return Some(format!("select: {field:?} is selected twice"));
            }
        }
        let count = query.condition.count();
        if count > MAX_CONDITIONS {
            return Some(format!(
                "{count} conditions; Zoho takes at most {MAX_CONDITIONS} in a `where`"
            ));
        }
        for (field, values) in query.condition.leaves() {
            if !known(field) {
                return Some(format!("where: {field:?} is not a field of Contacts"));
            }
            if values.len() > MAX_IN_VALUES {
                return Some(format!(
                    "where: {field} in (…) has {} values; Zoho takes at most {MAX_IN_VALUES}",
                    values.len()
                ));
            }
        }
        if !(1..=MAX_LIMIT).contains(&query.limit) {
            return Some(format!(
                "limit {}: Zoho takes 1 to {MAX_LIMIT}",
                query.limit
            ));
        }
        None
    }

    /// `POST /coql`.
    pub(super) fn coql(&mut self, call: &Call<'_>) -> Reply {
        let text = call
            .body
            .get("select_query")
            .and_then(Value::as_str)
            .unwrap_or("");
        let query = match parse(text) {
            Ok(query) => query,
            Err(e) => return self.violation(call, format!("/select_query: {e}: {text:?}")),
        };
        if let Some(line) = self.check_query(&query) {
            return self.violation(call, format!("/select_query: {line}: {text:?}"));
        }
        let matching: Vec<&super::state::Contact> = self
            .contacts
            .values()
            .filter(|c| {
                query.condition.matches(&|field| {
                    State::contact_value(c, field).and_then(|v| v.as_str().map(str::to_owned))
                })
            })
            .collect();
        let total = matching.len() as u64;
        let rows: Vec<Value> = matching
            .iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .map(|c| {
                let mut row = Map::new();
                row.insert("id".to_owned(), Value::from(c.id.to_string()));
                for field in &query.fields {
                    let value = State::contact_value(c, field).unwrap_or(Value::Null);
                    row.insert(field.clone(), value);
                }
                Value::Object(row)
            })
            .collect();
        if rows.is_empty() {
            return Reply::no_content();
        }
        let more = total > query.offset.saturating_add(query.limit);
        Reply::json(
            StatusCode::OK,
            json!({
                "data": rows,
                "info": {"count": rows.len(), "more_records": more},
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(field: &str, values: &[&str]) -> Condition {
        Condition::In(
            field.to_owned(),
            values.iter().map(|v| (*v).to_owned()).collect(),
        )
    }

    #[test]
    fn the_adapter_shape_parses() {
        let query = parse(
            "select id, WhatsApp_ID, Phone, Mobile from Contacts where WhatsApp_ID in ('a', \
             'b') or Phone in ('x') or Mobile in ('y') limit 200",
        )
        .unwrap();
        assert_eq!(query.fields, ["id", "WhatsApp_ID", "Phone", "Mobile"]);
        assert_eq!(query.module, "Contacts");
        assert_eq!(
            query.condition,
            Condition::Or(vec![
                leaf("WhatsApp_ID", &["a", "b"]),
                leaf("Phone", &["x"]),
                leaf("Mobile", &["y"]),
            ])
        );
        assert_eq!((query.limit, query.offset), (200, 0));
    }

    #[test]
    fn grouping_equals_escapes_and_offsets_parse() {
        let query = parse(
            "SELECT id FROM Contacts WHERE ((Phone = '+55 (11) 98765-4321') OR (Mobile IN \
             ('O\\'Brien'))) AND Last_Name = 'x' LIMIT 10 OFFSET 20;",
        )
        .unwrap();
        assert_eq!(
            query.condition,
            Condition::And(vec![
                Condition::Or(vec![
                    leaf("Phone", &["+55 (11) 98765-4321"]),
                    leaf("Mobile", &["O'Brien"]),
                ]),
                leaf("Last_Name", &["x"]),
            ])
        );
        assert_eq!((query.limit, query.offset), (10, 20));
        let query = parse("select id from Contacts where id = '1' limit 5, 7").unwrap();
        assert_eq!((query.limit, query.offset), (7, 5));
        assert_eq!(
            parse("select id from Contacts where id = '1'")
                .unwrap()
                .limit,
            DEFAULT_LIMIT
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        for text in [
            "",
            "select id from Contacts",
            "select from Contacts where id = '1'",
            "select id from Contacts where Phone like '%1'",
            "select id from Contacts where Phone in ()",
            "select id from Contacts where Phone in ('1'",
            "select id from Contacts where Phone = 1",
            "select id from Contacts where Phone != '1'",
            "select id from Contacts where Phone = '1' order by id",
            "select id from Contacts where Phone = 'unterminated",
            "select id from Contacts where (Phone = '1'",
            "select id, from Contacts where Phone = '1'",
            "select id from Contacts where Phone = '1' limit x",
        ] {
            assert!(parse(text).is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn conditions_match_exact_text() {
        let condition = Condition::Or(vec![
            leaf("Phone", &["+55 (11) 98765-4321"]),
            Condition::And(vec![leaf("Mobile", &["1"]), leaf("Email", &["a@b"])]),
        ]);
        let record = |phone: &'static str, mobile: &'static str| {
            move |field: &str| match field {
                "Phone" => Some(phone.to_owned()),
                "Mobile" => Some(mobile.to_owned()),
                _ => None,
            }
        };
        assert!(condition.matches(&record("+55 (11) 98765-4321", "")));
        assert!(!condition.matches(&record("5511987654321", "")));
        assert!(!condition.matches(&record("", "1")));
        assert_eq!(condition.count(), 3);
    }
}
