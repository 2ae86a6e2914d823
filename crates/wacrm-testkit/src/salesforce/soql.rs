//! The SOQL the fake understands: `SELECT <fields> FROM <object> [WHERE <condition>]
//! [LIMIT <n>]`, a condition being terms `<field> IN ('v', …)` or `<field> = 'v'` joined by
//! `OR` / `AND` (AND binding tighter; no parentheses). Keywords are case-insensitive; a string
//! literal is single-quoted with `\'` and `\\` escapes (SOQL and SOSL Reference, "Quoted String
//! Escape Sequences"). Anything else is refused as `MALFORMED_QUERY`: the adapter sends only
//! this shape, so a query outside it is a violation rather than a gap in the fake.

/// One comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Term {
    pub field: String,
    pub values: Vec<String>,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Query {
    pub fields: Vec<String>,
    pub object: String,
    /// Disjunction of conjunctions; empty: every record.
    pub condition: Vec<Vec<Term>>,
    pub limit: Option<usize>,
    /// The most values in one `IN` list.
    pub longest_in: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Text(String),
    Comma,
    Open,
    Close,
    Equals,
}

fn tokens(q: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = q.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            '=' => {
                chars.next();
                out.push(Token::Equals);
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string literal".into()),
                        Some('\\') => match chars.next() {
                            Some(e @ ('\'' | '\\' | '"')) => text.push(e),
                            Some('n') => text.push('\n'),
                            Some(other) => {
                                return Err(format!("invalid escape sequence \\{other}"))
                            }
                            None => return Err("unterminated string literal".into()),
                        },
                        Some('\'') => break,
                        Some(c) => text.push(c),
                    }
                }
                out.push(Token::Text(text));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '.' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                        word.push(c);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Token::Word(word));
            }
            other => return Err(format!("unexpected character {other:?}")),
        }
    }
    Ok(out)
}

fn keyword(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
}

/// Parses the query, or says why it is malformed.
pub(super) fn parse(q: &str) -> Result<Query, String> {
    let tokens = tokens(q)?;
    let mut at = 0;
    let next = |at: &mut usize| {
        let t = tokens.get(*at).cloned();
        *at += 1;
        t
    };
    if !keyword(tokens.first(), "SELECT") {
        return Err("a query starts with SELECT".into());
    }
    at += 1;
    let mut fields = Vec::new();
    loop {
        match next(&mut at) {
            Some(Token::Word(w)) if !w.eq_ignore_ascii_case("FROM") => fields.push(w),
            other => return Err(format!("expected a field name, found {other:?}")),
        }
        match next(&mut at) {
            Some(Token::Comma) => continue,
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("FROM") => break,
            other => return Err(format!("expected `,` or FROM, found {other:?}")),
        }
    }
    let object = match next(&mut at) {
        Some(Token::Word(w)) => w,
        other => return Err(format!("expected an object name, found {other:?}")),
    };
    let mut condition: Vec<Vec<Term>> = Vec::new();
    let mut longest_in = 0;
    if keyword(tokens.get(at), "WHERE") {
        at += 1;
        let mut conjunction = Vec::new();
        loop {
            let field = match next(&mut at) {
                Some(Token::Word(w)) => w,
                other => return Err(format!("expected a field name, found {other:?}")),
            };
            let values = match next(&mut at) {
                Some(Token::Equals) => match next(&mut at) {
                    Some(Token::Text(t)) => vec![t],
                    other => return Err(format!("expected a quoted value, found {other:?}")),
                },
                Some(Token::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                    if next(&mut at) != Some(Token::Open) {
                        return Err("expected `(` after IN".into());
                    }
                    let mut values = Vec::new();
                    loop {
                        match next(&mut at) {
                            Some(Token::Text(t)) => values.push(t),
                            other => {
                                return Err(format!("expected a quoted value, found {other:?}"))
                            }
                        }
                        match next(&mut at) {
                            Some(Token::Comma) => continue,
                            Some(Token::Close) => break,
                            other => return Err(format!("expected `,` or `)`, found {other:?}")),
                        }
                    }
                    longest_in = longest_in.max(values.len());
                    values
                }
                other => return Err(format!("expected `=` or IN, found {other:?}")),
            };
            conjunction.push(Term { field, values });
            if keyword(tokens.get(at), "AND") {
                at += 1;
            } else if keyword(tokens.get(at), "OR") {
                at += 1;
                condition.push(std::mem::take(&mut conjunction));
            } else {
                condition.push(std::mem::take(&mut conjunction));
                break;
            }
        }
    }
    let mut limit = None;
    if keyword(tokens.get(at), "LIMIT") {
        at += 1;
        match next(&mut at) {
            Some(Token::Word(n)) => {
                limit = Some(
                    n.parse()
                        .map_err(|_| format!("LIMIT {n} is not a number"))?,
                )
            }
            other => return Err(format!("expected a number after LIMIT, found {other:?}")),
        }
    }
    if at < tokens.len() {
        return Err(format!("unexpected {:?}", tokens[at]));
    }
    Ok(Query {
        fields,
        object,
        condition,
        limit,
        longest_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_adapter_shapes() {
        let q = parse(
            "SELECT Id, Phone FROM Contact WHERE Phone IN ('+55 11 9', 'o\\'b') OR MobilePhone = 'x' LIMIT 10",
        )
        .unwrap();
        assert_eq!(q.fields, vec!["Id", "Phone"]);
        assert_eq!(q.object, "Contact");
        assert_eq!(q.condition.len(), 2);
        assert_eq!(q.condition[0][0].values, vec!["+55 11 9", "o'b"]);
        assert_eq!(q.limit, Some(10));
        assert_eq!(q.longest_in, 2);
        assert!(parse("SELECT Id FROM Contact WHERE Phone LIKE '1%'").is_err());
        assert!(parse("DELETE FROM Contact").is_err());
        assert!(parse("SELECT Id FROM Contact WHERE Phone IN ('1'").is_err());
    }
}
