//! RDQL, the filter language of RD Station CRM's v2 lists, as far as the fake needs it.
//!
//! Grammar from the RDQL page (<https://developers.rdstation.com/reference/crm-v2-rdql-filtering>,
//! CRMS.md §3): `field:value`; operators `:` (equal), `-field:` (not), `:>`, `:<`, `:>=`, `:<=`,
//! `:(a,b)` (in), `-field:(a,b)` (not in), `:~` (contains, case-insensitive); values bare, or in
//! double quotes when they hold spaces (`"string com espaços"`), arrays `(1, "2 b", 3c)`;
//! expressions joined by `and` (the default, a space) and `or`, grouped with parentheses; custom
//! fields as `@<slug>`. The page does not say how a backslash or a quote inside a quoted value
//! is escaped: the fake takes `\"` and `\\` (what RD Station's own n8n node sends).

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// One condition.
    Term(Term),
}

/// `[-]field:<op>value`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub negated: bool,
    pub field: String,
    pub op: Op,
    pub values: Vec<String>,
}

/// The comparison of a term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    In,
    Match,
    Gt,
    Lt,
    Ge,
    Le,
}

struct Parser<'a> {
    chars: Vec<char>,
    at: usize,
    _src: &'a str,
}

/// Parses a filter; the error says where it went wrong.
pub(crate) fn parse(src: &str) -> Result<Expr, String> {
    let mut p = Parser {
        chars: src.chars().collect(),
        at: 0,
        _src: src,
    };
    let expr = p.or()?;
    p.skip_ws();
    if p.at < p.chars.len() {
        return Err(format!("unexpected text at character {}", p.at));
    }
    Ok(expr)
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn peek_word(&self, word: &str) -> bool {
        let w: Vec<char> = word.chars().collect();
        let end = self.at + w.len();
        end <= self.chars.len()
            && self.chars[self.at..end]
                .iter()
                .zip(&w)
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
            && self
                .chars
                .get(end)
                .is_none_or(|c| c.is_whitespace() || *c == '(')
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        loop {
            self.skip_ws();
            if self.peek_word("or") {
                self.at += 2;
                let right = self.and()?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                return Ok(left);
            }
        }
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.primary()?;
        loop {
            self.skip_ws();
            match self.chars.get(self.at) {
                None | Some(')') => return Ok(left),
                _ if self.peek_word("or") => return Ok(left),
                _ => {
                    if self.peek_word("and") {
                        self.at += 3;
                    }
                    let right = self.primary()?;
                    left = Expr::And(Box::new(left), Box::new(right));
                }
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        if self.chars.get(self.at) == Some(&'(') {
            self.at += 1;
            let inner = self.or()?;
            self.skip_ws();
            if self.chars.get(self.at) != Some(&')') {
                return Err(format!("missing ')' at character {}", self.at));
            }
            self.at += 1;
            return Ok(inner);
        }
        self.term().map(Expr::Term)
    }

    fn term(&mut self) -> Result<Term, String> {
        let negated = self.chars.get(self.at) == Some(&'-');
        if negated {
            self.at += 1;
        }
        let start = self.at;
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '@' || *c == '.')
        {
            self.at += 1;
        }
        let field: String = self.chars[start..self.at].iter().collect();
        if field.is_empty() || self.chars.get(self.at) != Some(&':') {
            return Err(format!("expected field:value at character {start}"));
        }
        self.at += 1;
        let rest: String = self.chars[self.at..].iter().take(2).collect();
        let op = if rest.starts_with(">=") {
            self.at += 2;
            Op::Ge
        } else if rest.starts_with("<=") {
            self.at += 2;
            Op::Le
        } else if rest.starts_with('>') {
            self.at += 1;
            Op::Gt
        } else if rest.starts_with('<') {
            self.at += 1;
            Op::Lt
        } else if rest.starts_with('~') {
            self.at += 1;
            Op::Match
        } else if rest.starts_with('(') {
            Op::In
        } else {
            Op::Eq
        };
        let values = if op == Op::In {
            self.at += 1;
            let mut values = Vec::new();
            loop {
                self.skip_ws();
                values.push(self.value(true)?);
                self.skip_ws();
                match self.chars.get(self.at) {
                    Some(',') => self.at += 1,
                    Some(')') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(format!("unterminated list at character {}", self.at)),
                }
            }
            values
        } else {
            vec![self.value(false)?]
        };
        Ok(Term {
            negated,
            field,
            op,
            values,
        })
    }

    fn value(&mut self, in_list: bool) -> Result<String, String> {
        if self.chars.get(self.at) == Some(&'"') {
            self.at += 1;
            let mut out = String::new();
            loop {
                match self.chars.get(self.at) {
                    None => return Err("unterminated quoted value".into()),
                    Some('\\') => {
                        if let Some(c) = self.chars.get(self.at + 1) {
                            out.push(*c);
                        }
                        self.at += 2;
                    }
                    Some('"') => {
                        self.at += 1;
                        return Ok(out);
                    }
                    Some(c) => {
                        out.push(*c);
                        self.at += 1;
                    }
                }
            }
        }
        let start = self.at;
        while self.chars.get(self.at).is_some_and(|c| {
            !c.is_whitespace() && *c != ')' && *c != '(' && !(in_list && *c == ',')
        }) {
            self.at += 1;
        }
        if start == self.at {
            return Err(format!("empty value at character {start}"));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }
}

impl Expr {
    /// Every term, for validation.
    pub(crate) fn terms(&self) -> Vec<&Term> {
        match self {
            Expr::Term(t) => vec![t],
            Expr::And(a, b) | Expr::Or(a, b) => {
                let mut out = a.terms();
                out.extend(b.terms());
                out
            }
        }
    }

    /// Whether a record matches, `values(field)` giving a record's values of a field (several
    /// for multi-valued fields: phones, contact ids). Values are compared as the text stored:
    /// RD Station documents no normalisation of phones, so the fake does none.
    pub(crate) fn matches(&self, values: &dyn Fn(&str) -> Vec<String>) -> bool {
        match self {
            Expr::And(a, b) => a.matches(values) && b.matches(values),
            Expr::Or(a, b) => a.matches(values) || b.matches(values),
            Expr::Term(t) => {
                let have = values(&t.field);
                let hit = match t.op {
                    Op::Eq | Op::In => have.iter().any(|h| t.values.contains(h)),
                    Op::Match => have
                        .iter()
                        .any(|h| h.to_lowercase().contains(&t.values[0].to_lowercase())),
                    Op::Gt => have.iter().any(|h| h.as_str() > t.values[0].as_str()),
                    Op::Lt => have.iter().any(|h| h.as_str() < t.values[0].as_str()),
                    Op::Ge => have.iter().any(|h| h.as_str() >= t.values[0].as_str()),
                    Op::Le => have.iter().any(|h| h.as_str() <= t.values[0].as_str()),
                };
                hit != t.negated
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let e = parse(r#"@whatsapp_id:(5511,"55 11") or phone:"+55 11 8700-0000""#).unwrap();
        let terms = e.terms();
        assert_eq!(terms[0].field, "@whatsapp_id");
        assert_eq!(terms[0].values, vec!["5511", "55 11"]);
        assert_eq!(terms[1].values, vec!["+55 11 8700-0000"]);
        let e = parse("(status:won or status:lost) and total_price:>100").unwrap();
        assert_eq!(e.terms().len(), 3);
        let e = parse("contact_id:(a,b) status:ongoing").unwrap();
        assert!(e.matches(&|f: &str| match f {
            "contact_id" => vec!["b".into()],
            "status" => vec!["ongoing".into()],
            _ => vec![],
        }));
        assert!(parse("name:").is_err());
        assert!(parse("status:(won").is_err());
    }
}
