//! Compiled pieces of a topology file: expressions (rhai) and regular expressions.
//!
//! They are compiled when the file is parsed, so a syntax error is a `hub validate` error
//! with its line, and no record ever pays for a compile. The model keeps the compiled form
//! beside the source text; serialising writes the source back.
//!
//! Expressions are [rhai](https://rhai.rs) — an existing embeddable language, not one of
//! ours. [`sandboxed_engine`] is the one configuration both the compile here and the
//! evaluation in `hub-transform` use: no modules, no clock, no `eval`, `print`/`debug`
//! silenced (a script must not log personal data), and limits on operations, nesting, string,
//! array and map sizes. Two variables exist: `value` (the field's current value) and
//! `record` (the whole vendor payload, a map); any other name is a compile error.

use std::fmt;
use std::sync::Arc;

use regex::Regex;
use rhai::{AST, Dynamic, Engine, Scope};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Operations one evaluation may run (a runaway loop stops here, in well under a
/// millisecond).
pub const MAX_OPERATIONS: u64 = 10_000;
/// Longest string an expression may build, in bytes.
pub const MAX_STRING_BYTES: usize = 64 * 1024;
/// Most elements in an array or entries in a map an expression may build.
pub const MAX_COLLECTION_LEN: usize = 4096;
/// Longest source text of one expression or regular expression, in bytes.
pub const MAX_SOURCE_BYTES: usize = 4096;

/// The engine expressions compile and run on, with the hub's sandbox.
pub fn sandboxed_engine() -> Engine {
    let mut e = Engine::new();
    e.set_max_operations(MAX_OPERATIONS)
        .set_max_expr_depths(32, 16)
        .set_max_call_levels(16)
        .set_max_variables(64)
        .set_max_functions(16)
        .set_max_string_size(MAX_STRING_BYTES)
        .set_max_array_size(MAX_COLLECTION_LEN)
        .set_max_map_size(MAX_COLLECTION_LEN)
        .set_strict_variables(true)
        .on_print(|_| {})
        .on_debug(|_, _, _| {});
    e.disable_symbol("eval");
    e
}

/// Whether the source is one expression (`calculate`, rule `custom`) or a script with
/// statements, `let` and loops (`custom_function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionKind {
    Expression,
    Script,
}

/// A compiled expression and the text it came from.
#[derive(Clone)]
pub struct Expression {
    source: String,
    kind: ExpressionKind,
    ast: Arc<AST>,
}

impl Expression {
    /// Compiles `source` with [`sandboxed_engine`]; the error is a sentence with rhai's
    /// line and position inside the expression.
    pub fn compile(source: &str, kind: ExpressionKind) -> Result<Self, String> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!(
                "the expression is longer than {MAX_SOURCE_BYTES} bytes"
            ));
        }
        let engine = sandboxed_engine();
        // Variables, not constants: the optimiser would otherwise fold the compile-time
        // placeholders into the AST.
        let mut scope = Scope::new();
        scope.push("record", Dynamic::UNIT);
        scope.push("value", Dynamic::UNIT);
        let ast = match kind {
            ExpressionKind::Expression => engine.compile_expression_with_scope(&scope, source),
            ExpressionKind::Script => engine.compile_with_scope(&scope, source),
        }
        .map_err(|e| format!("expression `{}` does not compile: {e}", first_line(source)))?;
        Ok(Expression {
            source: source.to_string(),
            kind,
            ast: Arc::new(ast),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn kind(&self) -> ExpressionKind {
        self.kind
    }

    pub fn ast(&self) -> &AST {
        &self.ast
    }
}

fn first_line(s: &str) -> &str {
    let line = s.trim().lines().next().unwrap_or_default();
    match line.char_indices().nth(60) {
        Some((cut, _)) => &line[..cut],
        None => line,
    }
}

impl fmt::Debug for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expression({:?})", self.source)
    }
}

impl PartialEq for Expression {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.kind == other.kind
    }
}

impl Serialize for Expression {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

/// A single expression (the default for the type).
impl<'de> Deserialize<'de> for Expression {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Expression::compile(&s, ExpressionKind::Expression).map_err(serde::de::Error::custom)
    }
}

/// A compiled regular expression (Rust `regex` syntax: no backtracking, linear time, so a
/// pattern cannot be made to run away on a hostile value). It matches anywhere in the value
/// unless anchored with `^…$`.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: Regex,
}

impl Pattern {
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(format!(
                "the regular expression is longer than {MAX_SOURCE_BYTES} bytes"
            ));
        }
        let regex = regex::RegexBuilder::new(source)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                let why = e.to_string();
                let why = why.lines().last().unwrap_or_default().trim().to_string();
                format!(
                    "regular expression `{}` is invalid: {why}",
                    first_line(source)
                )
            })?;
        Ok(Pattern {
            source: source.to_string(),
            regex,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &Regex {
        &self.regex
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Pattern::compile(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_compile_and_unknown_variables_do_not() {
        assert!(Expression::compile("value * 100", ExpressionKind::Expression).is_ok());
        assert!(
            Expression::compile("value != record.LastName", ExpressionKind::Expression).is_ok()
        );
        let e = Expression::compile("valeu * 100", ExpressionKind::Expression).unwrap_err();
        assert!(e.contains("valeu"), "{e}");
        let e = Expression::compile("value *", ExpressionKind::Expression).unwrap_err();
        assert!(
            e.starts_with("expression `value *` does not compile"),
            "{e}"
        );
        assert!(Expression::compile("let x = 0; loop { x += 1 }", ExpressionKind::Script).is_ok());
        assert!(Expression::compile("let x = 0; x", ExpressionKind::Expression).is_err());
        assert!(Expression::compile("eval(\"1\")", ExpressionKind::Expression).is_err());
    }

    #[test]
    fn patterns_compile_or_say_why_not() {
        assert!(
            Pattern::compile("^[A-Z]{3}$")
                .unwrap()
                .regex()
                .is_match("ABC")
        );
        assert!(Pattern::compile("^[A-Z").unwrap_err().contains("`^[A-Z`"));
    }
}
