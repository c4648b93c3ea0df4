//! The SOQL subset the connector emits (vendor-apis.md §2.4, `connectors/src/salesforce/read.rs`):
//!
//! ```text
//! SELECT f1, f2 FROM Object [WHERE cond [AND|OR cond …] (parentheses, NOT)]
//!        [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], …] [LIMIT n]
//! cond := field (= | != | <> | < | <= | > | >=) literal | field [NOT] IN (literal, …) | field LIKE 'x%'
//! ```
//!
//! Datetime literals are unquoted (`2024-05-01T10:00:00Z`, §2.3), strings single-quoted. Anything
//! else is `MALFORMED_QUERY`; unknown objects `INVALID_TYPE`, unknown fields `INVALID_FIELD`
//! (§2.4, §2.9).

use std::cmp::Ordering;

use serde_json::Value;

use super::errors::SfError;
use super::schema::{Field, FieldType, SObject};
use super::store::{Record, parse_date, parse_datetime};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Op(&'static str),
    Comma,
    LParen,
    RParen,
}

fn describe(t: Option<&Tok>) -> String {
    match t {
        None => "<EOF>".into(),
        Some(Tok::Word(w)) => w.clone(),
        Some(Tok::Str(s)) => format!("'{s}'"),
        Some(Tok::Op(o)) => (*o).into(),
        Some(Tok::Comma) => ",".into(),
        Some(Tok::LParen) => "(".into(),
        Some(Tok::RParen) => ")".into(),
    }
}

fn lex(q: &str) -> Result<Vec<Tok>, SfError> {
    let mut out = Vec::new();
    let cs: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        match c {
            c if c.is_whitespace() => i += 1,
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1;
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match cs.get(i) {
                        None => {
                            return Err(SfError::malformed(
                                "unexpected token: unterminated string literal",
                            ));
                        }
                        Some('\\') => {
                            match cs.get(i + 1) {
                                Some('n') => s.push('\n'),
                                Some(&e) => s.push(e),
                                None => {
                                    return Err(SfError::malformed(
                                        "unexpected token: unterminated string literal",
                                    ));
                                }
                            }
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(s));
            }
            '=' => {
                out.push(Tok::Op("="));
                i += 1;
            }
            '!' if cs.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op("!="));
                i += 2;
            }
            '<' | '>' => {
                let two: String = cs[i..(i + 2).min(cs.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    "<=" => ("<=", 2),
                    ">=" => (">=", 2),
                    "<>" => ("!=", 2),
                    _ if c == '<' => ("<", 1),
                    _ => (">", 1),
                };
                i += len;
                out.push(Tok::Op(op));
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '+' => {
                // Words, numbers and unquoted date/datetime literals (`2024-05-01T10:00:00Z`,
                // `2024-05-01T10:00:00.000+00:00`) all lex as one run.
                let start = i;
                let numeric = c.is_ascii_digit() || c == '-' || c == '+';
                while i < cs.len() {
                    let d = cs[i];
                    let ok = d.is_ascii_alphanumeric()
                        || d == '_'
                        || d == '.'
                        || (numeric && matches!(d, '-' | ':' | '+'));
                    if !ok {
                        break;
                    }
                    i += 1;
                }
                out.push(Tok::Word(cs[start..i].iter().collect()));
            }
            other => {
                return Err(SfError::malformed(format!("unexpected token: '{other}'")));
            }
        }
    }
    Ok(out)
}

/// A literal as written in the query.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Null,
    Bool(bool),
    Str(String),
    Bare(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Cmp(&'static Field, &'static str, Lit),
    In(&'static Field, bool, Vec<Lit>),
    Like(&'static Field, String),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub object: &'static SObject,
    pub fields: Vec<&'static str>,
    filter: Option<Expr>,
    order: Vec<(&'static Field, bool, bool)>,
    pub limit: Option<usize>,
}

struct P<'a> {
    toks: &'a [Tok],
    pos: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn unexpected(&self) -> SfError {
        SfError::malformed(format!("unexpected token: '{}'", describe(self.peek())))
    }
    fn keyword(&mut self, kw: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn expect_keyword(&mut self, kw: &str) -> Result<(), SfError> {
        if self.keyword(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn ident(&mut self) -> Result<String, SfError> {
        match self.peek() {
            Some(Tok::Word(w))
                if w.starts_with(|c: char| c.is_ascii_alphabetic()) && !is_reserved(w) =>
            {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.unexpected()),
        }
    }
}

fn is_reserved(w: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "ASC", "DESC",
        "NULLS", "IN", "LIKE", "OFFSET", "GROUP", "HAVING",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(w))
}

fn field_of(object: &'static SObject, name: &str) -> Result<&'static Field, SfError> {
    object.field(name).ok_or_else(|| {
        SfError::new(
            400,
            "INVALID_FIELD",
            format!("No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.", object.name),
        )
    })
}

fn literal(p: &mut P<'_>) -> Result<Lit, SfError> {
    match p.next() {
        Some(Tok::Str(s)) => Ok(Lit::Str(s)),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => Ok(Lit::Null),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => Ok(Lit::Bool(true)),
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => Ok(Lit::Bool(false)),
        Some(Tok::Word(w)) if !is_reserved(&w) => Ok(Lit::Bare(w)),
        t => Err(SfError::malformed(format!(
            "unexpected token: '{}'",
            describe(t.as_ref())
        ))),
    }
}

/// Checks a literal against the field's type as Salesforce does: datetimes unquoted, strings
/// quoted (§2.3).
fn check_literal(f: &Field, l: &Lit) -> Result<(), SfError> {
    let type_error = |ty: &str| {
        SfError::new(
            400,
            "INVALID_FIELD",
            format!(
                "value of filter criterion for field '{}' must be of type {ty} and should not be enclosed in quotes",
                f.name
            ),
        )
    };
    match (f.ty, l) {
        (_, Lit::Null) => Ok(()),
        (FieldType::DateTime, Lit::Bare(s)) if parse_datetime(s).is_some() => Ok(()),
        (FieldType::DateTime, _) => Err(type_error("dateTime")),
        (FieldType::Date, Lit::Bare(s)) if parse_date(s).is_some() => Ok(()),
        (FieldType::Date, _) => Err(type_error("date")),
        (FieldType::Number, Lit::Bare(s)) if s.parse::<f64>().is_ok() => Ok(()),
        (FieldType::Number, _) => Err(type_error("double")),
        (FieldType::Boolean, Lit::Bool(_)) => Ok(()),
        (FieldType::Boolean, _) => Err(type_error("boolean")),
        (_, Lit::Str(_)) => Ok(()),
        (_, _) => Err(SfError::malformed(format!(
            "unexpected token: a value for '{}' must be enclosed in quotes",
            f.name
        ))),
    }
}

fn condition(p: &mut P<'_>, object: &'static SObject) -> Result<Expr, SfError> {
    if p.keyword("NOT") {
        return Ok(Expr::Not(Box::new(condition(p, object)?)));
    }
    if matches!(p.peek(), Some(Tok::LParen)) {
        p.pos += 1;
        let e = or_expr(p, object)?;
        if p.next() != Some(Tok::RParen) {
            p.pos -= 1;
            return Err(p.unexpected());
        }
        return Ok(e);
    }
    let name = p.ident()?;
    let f = field_of(object, &name)?;
    let negated = p.keyword("NOT");
    if p.keyword("IN") {
        if p.next() != Some(Tok::LParen) {
            p.pos -= 1;
            return Err(p.unexpected());
        }
        let mut vals = Vec::new();
        loop {
            let l = literal(p)?;
            check_literal(f, &l)?;
            vals.push(l);
            match p.next() {
                Some(Tok::Comma) => continue,
                Some(Tok::RParen) => break,
                _ => {
                    p.pos -= 1;
                    return Err(p.unexpected());
                }
            }
        }
        return Ok(Expr::In(f, negated, vals));
    }
    if negated {
        return Err(p.unexpected());
    }
    if p.keyword("LIKE") {
        return match p.next() {
            Some(Tok::Str(s)) => Ok(Expr::Like(f, s)),
            _ => {
                p.pos -= 1;
                Err(p.unexpected())
            }
        };
    }
    let op = match p.next() {
        Some(Tok::Op(o)) => o,
        _ => {
            p.pos -= 1;
            return Err(p.unexpected());
        }
    };
    let l = literal(p)?;
    check_literal(f, &l)?;
    Ok(Expr::Cmp(f, op, l))
}

fn and_expr(p: &mut P<'_>, object: &'static SObject) -> Result<Expr, SfError> {
    let mut e = condition(p, object)?;
    while p.keyword("AND") {
        e = Expr::And(Box::new(e), Box::new(condition(p, object)?));
    }
    Ok(e)
}

fn or_expr(p: &mut P<'_>, object: &'static SObject) -> Result<Expr, SfError> {
    let mut e = and_expr(p, object)?;
    while p.keyword("OR") {
        e = Expr::Or(Box::new(e), Box::new(and_expr(p, object)?));
    }
    Ok(e)
}

/// Parses a query; errors carry Salesforce's codes.
pub fn parse(q: &str) -> Result<Query, SfError> {
    if q.len() > 100_000 {
        return Err(SfError::malformed("query is too long"));
    }
    let toks = lex(q)?;
    let mut p = P {
        toks: &toks,
        pos: 0,
    };
    p.expect_keyword("SELECT")?;
    let mut names = vec![p.ident()?];
    while matches!(p.peek(), Some(Tok::Comma)) {
        p.pos += 1;
        names.push(p.ident()?);
    }
    p.expect_keyword("FROM")?;
    let oname = p.ident()?;
    let object = SObject::find(&oname).ok_or_else(|| {
        SfError::new(
            400,
            "INVALID_TYPE",
            format!("sObject type '{oname}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name."),
        )
    })?;
    let mut fields = Vec::new();
    for n in &names {
        if n.contains('.') {
            return Err(SfError::malformed(format!(
                "unexpected token: relationship field '{n}' is not supported by the sandbox"
            )));
        }
        let f = field_of(object, n)?;
        if fields.contains(&f.name) {
            return Err(SfError::malformed(format!(
                "duplicate field selected: {}",
                f.name
            )));
        }
        fields.push(f.name);
    }
    let filter = if p.keyword("WHERE") {
        Some(or_expr(&mut p, object)?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.keyword("ORDER") {
        p.expect_keyword("BY")?;
        loop {
            let f = field_of(object, &p.ident()?)?;
            let desc = if p.keyword("DESC") {
                true
            } else {
                p.keyword("ASC");
                false
            };
            // SOQL: nulls first by default for ASC, last for DESC.
            let mut nulls_first = !desc;
            if p.keyword("NULLS") {
                if p.keyword("FIRST") {
                    nulls_first = true;
                } else {
                    p.expect_keyword("LAST")?;
                    nulls_first = false;
                }
            }
            order.push((f, desc, nulls_first));
            if matches!(p.peek(), Some(Tok::Comma)) {
                p.pos += 1;
            } else {
                break;
            }
        }
    }
    let mut limit = None;
    if p.keyword("LIMIT") {
        match p.next() {
            Some(Tok::Word(w)) => {
                limit = Some(
                    w.parse::<usize>()
                        .map_err(|_| SfError::malformed(format!("unexpected token: '{w}'")))?,
                )
            }
            t => {
                return Err(SfError::malformed(format!(
                    "unexpected token: '{}'",
                    describe(t.as_ref())
                )));
            }
        }
    }
    if p.peek().is_some() {
        return Err(p.unexpected());
    }
    Ok(Query {
        object,
        fields,
        filter,
        order,
        limit,
    })
}

fn cmp_values(f: &Field, a: &Value, b: &Value) -> Option<Ordering> {
    if a.is_null() || b.is_null() {
        return None;
    }
    match f.ty {
        FieldType::DateTime => {
            Some(parse_datetime(a.as_str()?)?.cmp(&parse_datetime(b.as_str()?)?))
        }
        FieldType::Number => a.as_f64()?.partial_cmp(&b.as_f64()?),
        FieldType::Boolean => Some(a.as_bool()?.cmp(&b.as_bool()?)),
        // Text comparison in SOQL is case-insensitive; Ids compare as text.
        _ => Some(a.as_str()?.to_lowercase().cmp(&b.as_str()?.to_lowercase())),
    }
}

fn lit_value(f: &Field, l: &Lit) -> Value {
    match l {
        Lit::Null => Value::Null,
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Str(s) => Value::String(s.clone()),
        Lit::Bare(s) => match f.ty {
            FieldType::Number => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or(Value::Null, Value::Number),
            _ => Value::String(s.clone()),
        },
    }
}

/// SOQL `LIKE`: `%` any run, `_` one character, case-insensitive. The classic greedy
/// wildcard match with one backtrack point: linear-ish, so no pattern can make it explode.
fn like(value: &str, pattern: &str) -> bool {
    let v: Vec<char> = value.to_lowercase().chars().collect();
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < v.len() {
        if j < p.len() && (p[j] == '_' || p[j] == v[i]) && p[j] != '%' {
            i += 1;
            j += 1;
        } else if j < p.len() && p[j] == '%' {
            star = Some((j, i));
            j += 1;
        } else if let Some((sj, si)) = star {
            j = sj + 1;
            i = si + 1;
            star = Some((sj, si + 1));
        } else {
            return false;
        }
    }
    p[j..].iter().all(|c| *c == '%')
}

fn eval(e: &Expr, r: &Record) -> bool {
    match e {
        Expr::And(a, b) => eval(a, r) && eval(b, r),
        Expr::Or(a, b) => eval(a, r) || eval(b, r),
        Expr::Not(a) => !eval(a, r),
        Expr::Like(f, pat) => r.get(f.name).as_str().is_some_and(|s| like(s, pat)),
        Expr::In(f, negated, vals) => {
            let v = r.get(f.name);
            let hit = vals.iter().any(|l| {
                let w = lit_value(f, l);
                (v.is_null() && w.is_null()) || cmp_values(f, &v, &w) == Some(Ordering::Equal)
            });
            hit != *negated
        }
        Expr::Cmp(f, op, l) => {
            let v = r.get(f.name);
            let w = lit_value(f, l);
            if w.is_null() || v.is_null() {
                let both = v.is_null() && w.is_null();
                return match *op {
                    "=" => both,
                    "!=" => !both,
                    _ => false,
                };
            }
            let Some(o) = cmp_values(f, &v, &w) else {
                return false;
            };
            match *op {
                "=" => o == Ordering::Equal,
                "!=" => o != Ordering::Equal,
                "<" => o == Ordering::Less,
                "<=" => o != Ordering::Greater,
                ">" => o == Ordering::Greater,
                ">=" => o != Ordering::Less,
                _ => false,
            }
        }
    }
}

impl Query {
    /// Runs the query over `records`, `include_deleted` for `queryAll` (§2.4).
    pub fn run<'a>(&self, records: &'a [Record], include_deleted: bool) -> Vec<&'a Record> {
        let mut hits: Vec<&Record> = records
            .iter()
            .filter(|r| include_deleted || !r.deleted)
            .filter(|r| self.filter.as_ref().is_none_or(|f| eval(f, r)))
            .collect();
        if !self.order.is_empty() {
            hits.sort_by(|a, b| {
                for (f, desc, nulls_first) in &self.order {
                    let (va, vb) = (a.get(f.name), b.get(f.name));
                    let o = match (va.is_null(), vb.is_null()) {
                        (true, true) => Ordering::Equal,
                        (true, false) => {
                            if *nulls_first {
                                Ordering::Less
                            } else {
                                Ordering::Greater
                            }
                        }
                        (false, true) => {
                            if *nulls_first {
                                Ordering::Greater
                            } else {
                                Ordering::Less
                            }
                        }
                        _ => {
                            let o = cmp_values(f, &va, &vb).unwrap_or(Ordering::Equal);
                            if *desc { o.reverse() } else { o }
                        }
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            });
        }
        if let Some(n) = self.limit {
            hits.truncate(n);
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_connectors::salesforce::read::{Cursor, incremental_soql};

    #[test]
    fn the_connectors_queries_parse() {
        let first = incremental_soql("Contact", &["FirstName", "Email"], None).unwrap();
        let q = parse(&first).unwrap();
        assert_eq!(q.fields, ["Id", "SystemModstamp", "FirstName", "Email"]);
        let c = Cursor {
            system_modstamp_ms: 1_714_557_600_250,
            id: "003RO00000AbCdEYAV".into(),
        };
        for obj in ["Lead", "Account", "Opportunity", "Vehicle__c"] {
            let s = incremental_soql(obj, &[], Some(&c)).unwrap();
            parse(&s).unwrap();
        }
        parse("SELECT Id FROM Contact WHERE SystemModstamp > 2024-05-01T00:00:00Z OR (SystemModstamp = 2024-05-01T00:00:00.000+0000 AND Id > '003RO00000AbCdEYAV') ORDER BY SystemModstamp, Id LIMIT 10").unwrap();
    }

    #[test]
    fn errors_carry_salesforce_codes() {
        assert_eq!(
            parse("SELEC Id FROM Contact").unwrap_err().code,
            "MALFORMED_QUERY"
        );
        assert_eq!(
            parse("SELECT Id FROM Contact WHERE").unwrap_err().code,
            "MALFORMED_QUERY"
        );
        assert_eq!(
            parse("SELECT Id FROM Widget").unwrap_err().code,
            "INVALID_TYPE"
        );
        assert_eq!(
            parse("SELECT Nope FROM Contact").unwrap_err().code,
            "INVALID_FIELD"
        );
        assert_eq!(
            parse("SELECT Id FROM Contact WHERE SystemModstamp > '2024-01-01'")
                .unwrap_err()
                .code,
            "INVALID_FIELD"
        );
        assert_eq!(
            parse("SELECT COUNT() FROM Contact").unwrap_err().code,
            "MALFORMED_QUERY"
        );
        assert_eq!(
            parse("SELECT Id FROM Contact LIMIT 5 extra")
                .unwrap_err()
                .code,
            "MALFORMED_QUERY"
        );
    }

    #[test]
    fn like_matches_wildcards_without_blowing_up() {
        assert!(like("Lopez", "lo%"));
        assert!(like("Lopez", "%PEZ"));
        assert!(like("Lopez", "L_p%z"));
        assert!(!like("Lopez", "L_z%"));
        let long = "a".repeat(5000);
        assert!(!like(&long, "%a%a%a%a%a%a%a%a%a%a%b"));
    }

    #[test]
    fn hostile_queries_never_panic() {
        for q in [
            "",
            "'",
            "SELECT",
            "SELECT Id FROM Contact WHERE Email LIKE '%%%%%%%%%%%'",
            "((((",
            "SELECT Id FROM Contact WHERE Id IN (",
            "<><=>=!",
            "SELECT Id, FROM",
            "é'\\",
        ] {
            let _ = parse(q);
        }
    }
}
