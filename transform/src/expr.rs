//! Evaluating the topology's expressions (`calculate`, `custom_function`, `custom` rules).
//!
//! The expressions were compiled when the topology was parsed (`hub_topology::Expression`);
//! here they only run, on the same sandboxed rhai engine plus a wall-clock guard. Each
//! record converts its payload to rhai's `record` once ([`ExprScope`]), and each evaluation
//! binds `value` afresh, so nothing one field's script does leaks into the next: `record`
//! is a constant, and variables a script declares are dropped after it.
//!
//! Failures become field errors with code `expression_failed` (the script raised an error,
//! or returned something that is not a value) or `expression_limit` (it hit the operation,
//! size, nesting or time limit — a runaway loop, a string grown without bound).

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hub_topology::Expression;
use rhai::{Dynamic, Engine, EvalAltResult, Scope};
use serde_json::Value;

/// Longest one evaluation may run. The operation limit normally stops a script long
/// before; this catches single operations that are slow on large data.
pub const WALL_CLOCK_LIMIT: Duration = Duration::from_millis(50);

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut e = hub_topology::sandboxed_engine();
        e.on_progress(|ops| {
            // Reading the clock on every operation would cost more than the operations.
            if ops % 512 != 0 {
                return None;
            }
            let late = DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() > t));
            late.then(|| Dynamic::from("time limit"))
        });
        e
    })
}

/// Why an expression gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// `expression_failed` or `expression_limit`.
    pub code: &'static str,
    pub message: String,
}

impl ExprError {
    fn failed(message: String) -> Self {
        ExprError {
            code: "expression_failed",
            message,
        }
    }
}

/// One record's expression variables: `record` converted once, `value` per evaluation.
pub struct ExprScope {
    scope: Scope<'static>,
}

impl ExprScope {
    pub fn new(record: &Value) -> Self {
        let mut scope = Scope::new();
        // A payload rhai cannot hold (e.g. an integer beyond i64) leaves `record` empty;
        // expressions that read it then fail with expression_failed.
        let record = rhai::serde::to_dynamic(record).unwrap_or(Dynamic::UNIT);
        scope.push_constant_dynamic("record", record);
        ExprScope { scope }
    }

    /// Runs `expr` with `value` bound and returns its result as JSON (`()` is null).
    pub fn evaluate(&mut self, expr: &Expression, value: &Value) -> Result<Value, ExprError> {
        let result = self.run(expr, value)?;
        rhai::serde::from_dynamic::<Value>(&result)
            .map_err(|e| ExprError::failed(format!("the expression's result is not a value: {e}")))
    }

    /// Runs a rule: the expression must return `true` or `false`.
    pub fn check(&mut self, expr: &Expression, value: &Value) -> Result<bool, ExprError> {
        let result = self.run(expr, value)?;
        result
            .as_bool()
            .map_err(|t| ExprError::failed(format!("the rule returned {t}, not true or false")))
    }

    fn run(&mut self, expr: &Expression, value: &Value) -> Result<Dynamic, ExprError> {
        let value = rhai::serde::to_dynamic(value)
            .map_err(|e| ExprError::failed(format!("the value cannot be read: {e}")))?;
        self.scope.rewind(1);
        self.scope.push_dynamic("value", value);
        DEADLINE.with(|d| d.set(Some(Instant::now() + WALL_CLOCK_LIMIT)));
        let result = engine().eval_ast_with_scope::<Dynamic>(&mut self.scope, expr.ast());
        DEADLINE.with(|d| d.set(None));
        self.scope.rewind(1);
        result.map_err(|e| classify(&e))
    }
}

fn classify(e: &EvalAltResult) -> ExprError {
    use EvalAltResult as E;
    let limit = |what: &str| ExprError {
        code: "expression_limit",
        message: format!("the expression was stopped: {what}"),
    };
    match e {
        E::ErrorInFunctionCall(_, _, inner, _) => classify(inner),
        E::ErrorTooManyOperations(_) => limit(&format!(
            "it ran more than {} operations",
            hub_topology::MAX_OPERATIONS
        )),
        E::ErrorDataTooLarge(what, _) => limit(&format!("{what} grew too large")),
        E::ErrorStackOverflow(_) => limit("it nested calls too deeply"),
        E::ErrorTooManyVariables(_) | E::ErrorTooManyModules(_) => limit("it declared too much"),
        E::ErrorTerminated(..) => limit(&format!(
            "it ran longer than {} ms",
            WALL_CLOCK_LIMIT.as_millis()
        )),
        other => ExprError::failed(format!("the expression failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hub_topology::ExpressionKind;
    use serde_json::json;

    fn expr(s: &str) -> Expression {
        Expression::compile(s, ExpressionKind::Expression).unwrap()
    }

    fn script(s: &str) -> Expression {
        Expression::compile(s, ExpressionKind::Script).unwrap()
    }

    #[test]
    fn arithmetic_and_string_operations_see_value_and_record() {
        let mut s = ExprScope::new(&json!({"LastName": "Lee", "Qty": 3, "Price": 2.5}));
        assert_eq!(
            s.evaluate(&expr("value * 100"), &json!(12)).unwrap(),
            json!(1200)
        );
        assert_eq!(
            s.evaluate(&expr("record.Qty * record.Price"), &Value::Null)
                .unwrap(),
            json!(7.5)
        );
        let f = script("if value.len() > 3 { value.sub_string(0, 3) } else { value }");
        assert_eq!(s.evaluate(&f, &json!("Austin")).unwrap(), json!("Aus"));
        assert_eq!(s.evaluate(&f, &json!("TX")).unwrap(), json!("TX"));
        assert_eq!(
            s.evaluate(
                &expr("value.to_upper() + \" \" + record.LastName"),
                &json!("pat")
            )
            .unwrap(),
            json!("PAT Lee")
        );
        assert!(
            s.check(&expr("value != record.LastName"), &json!("Pat"))
                .unwrap()
        );
        assert!(
            !s.check(&expr("value != record.LastName"), &json!("Lee"))
                .unwrap()
        );
        assert_eq!(s.evaluate(&expr("()"), &json!(1)).unwrap(), Value::Null);
    }

    #[test]
    fn scripts_cannot_change_record_or_leak_variables() {
        let mut s = ExprScope::new(&json!({"A": 1}));
        let e = s
            .evaluate(&script("record.A = 2; record.A"), &Value::Null)
            .unwrap_err();
        assert_eq!(e.code, "expression_failed");
        s.evaluate(&script("let x = 5; x"), &Value::Null).unwrap();
        assert_eq!(
            s.evaluate(&expr("record.A"), &Value::Null).unwrap(),
            json!(1)
        );
        assert_eq!(s.scope.len(), 1);
    }

    #[test]
    fn runaway_loops_and_huge_strings_hit_the_limits() {
        let mut s = ExprScope::new(&json!({}));
        let e = s
            .evaluate(&script("let x = 0; loop { x += 1 }"), &Value::Null)
            .unwrap_err();
        assert_eq!(e.code, "expression_limit", "{e:?}");
        assert!(e.message.contains("operations"), "{e:?}");
        let e = s
            .evaluate(
                &script("let s = \"xxxxxxxx\"; loop { s += s }"),
                &Value::Null,
            )
            .unwrap_err();
        assert_eq!(e.code, "expression_limit", "{e:?}");
        assert!(e.message.contains("too large"), "{e:?}");
        let e = s
            .evaluate(&script("fn f(n) { f(n + 1) } f(0)"), &Value::Null)
            .unwrap_err();
        assert_eq!(e.code, "expression_limit", "{e:?}");
        assert!(e.message.contains("nested calls"), "{e:?}");
    }

    #[test]
    fn runtime_errors_and_non_boolean_rules_fail() {
        let mut s = ExprScope::new(&json!({}));
        let e = s.evaluate(&expr("value * 100"), &json!("abc")).unwrap_err();
        assert_eq!(e.code, "expression_failed");
        let e = s.check(&expr("value + 1"), &json!(1)).unwrap_err();
        assert!(e.message.contains("not true or false"), "{e:?}");
        let e = s.evaluate(&expr("1 / value"), &json!(0)).unwrap_err();
        assert_eq!(e.code, "expression_failed");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_values_never_panic(v in crate::functions::arb_json()) {
            let mut s = ExprScope::new(&v);
            for e in ["value * 100", "value + record", "value.len()", "value[0]", "record.a.b"] {
                let _ = s.evaluate(&expr(e), &v);
                let _ = s.check(&expr(e), &v);
            }
        }

        #[test]
        fn arbitrary_source_never_panics(src in "\\PC{0,80}") {
            for kind in [ExpressionKind::Expression, ExpressionKind::Script] {
                if let Ok(e) = Expression::compile(&src, kind) {
                    let _ = ExprScope::new(&json!({"a": 1})).evaluate(&e, &json!("x"));
                }
            }
        }
    }
}
