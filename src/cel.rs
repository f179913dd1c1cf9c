//! CEL for Receivers: `spec.resourceFilter`, `resources[].filter` and
//! generic-oidc's `variables` and `validations` (DESIGN §3.13).
//!
//! Flux compiles these with cel-go, its variables declared as
//! `google.protobuf.Struct` (so every field read is `dyn`) and, for filters
//! and validations, a required output type of `bool`. herald parses with the
//! `cel` crate and applies the same two compile-time checks: every
//! identifier is a declared variable (or a comprehension's own), and a
//! boolean expression must be boolean by its form (a comparison, a logical
//! operator, `in`, `has()`, a predicate method such as `startsWith` or
//! `exists`, …) — as in Flux, `res.metadata.labels.enabled` alone is a
//! `dyn`, not a `bool`, and is refused. At run time a non-boolean result is
//! an error, as in Flux.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};

pub use cel::Value;
use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use cel::{Context, Env, Program};

/// The environment every expression runs in: the standard library plus the
/// strings and encoders extensions (Flux's cel-go has both).
fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // cel-go keeps the last of repeated map keys.
        env.set_error_on_duplicate_map_keys(false);
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::encoders);
        Arc::new(env)
    })
    .clone()
}

/// A compiled expression.
pub struct Expression {
    source: String,
    program: Program,
    /// The deepest nesting of comprehensions (`all`, `exists`, `map`, …):
    /// the power of the input's size the evaluation may cost.
    nesting: u32,
}

/// The most steps an evaluation may be estimated to take: the input's
/// values (every list item and map entry of the variables, counted)
/// raised to the expression's comprehension nesting. A filter that walks
/// a 3 MiB body once is well within it; one that walks it inside another
/// walk over it is refused before it runs instead of holding a thread.
pub const COST_BUDGET: u64 = 50_000_000;

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// What an expression must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Bool,
    Any,
}

/// The longest expression compiled, in characters (cel-go's default
/// expression size limit).
const MAX_SOURCE: usize = 100_000;
/// The deepest nesting of brackets compiled. The `cel` crate's parser
/// recurses per level and a stack overflow cannot be caught: deeper input
/// is refused before it reaches the parser. 64 levels parse within
/// [`PARSER_STACK`] even in a debug build; real filters nest a few.
const MAX_NESTING: usize = 64;

/// Refuses what the parser could not take safely: a huge expression or one
/// nested deeper than [`MAX_NESTING`] (brackets outside string literals).
fn check_input(source: &str) -> Result<(), String> {
    if source.chars().count() > MAX_SOURCE {
        return Err(format!(
            "the CEL expression is longer than {MAX_SOURCE} characters"
        ));
    }
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in source.chars() {
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
            }
            None => match c {
                '"' | '\'' => quote = Some(c),
                '(' | '[' | '{' => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
    }
    if deepest > MAX_NESTING {
        return Err(format!(
            "the CEL expression nests deeper than {MAX_NESTING} levels"
        ));
    }
    Ok(())
}

/// The stack the parser runs on: it recurses deeply per nesting level
/// (about 100 KiB a level in a debug build), far more than an async
/// worker's 2 MiB.
const PARSER_STACK: usize = 32 << 20;

/// Parses on a thread of its own with [`PARSER_STACK`]; `None` when the
/// parser panicked or the thread could not start.
fn parse(source: &str) -> Option<Result<Program, String>> {
    let source = source.to_owned();
    std::thread::Builder::new()
        .name("herald-cel-parse".to_owned())
        .stack_size(PARSER_STACK)
        .spawn(move || {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                env().compile(&source).map_err(|e| e.to_string())
            }))
            .ok()
        })
        .ok()?
        .join()
        .ok()
        .flatten()
}

/// Compiles `source` with `variables` declared, checking its output type.
pub fn compile(source: &str, variables: &[&str], output: Output) -> Result<Expression, String> {
    check_input(source).map_err(|e| format!("failed to parse the CEL expression: {e}"))?;
    let program = parse(source)
        .ok_or_else(|| format!("failed to parse the CEL expression '{source}'"))?
        .map_err(|e| format!("failed to parse the CEL expression '{source}': {e}"))?;
    let mut bound = Vec::new();
    if let Some(name) = undeclared(program.expression(), variables, &mut bound) {
        return Err(format!(
            "failed to parse the CEL expression '{source}': undeclared reference to '{name}'"
        ));
    }
    if output == Output::Bool {
        let found = static_type(program.expression());
        if found != StaticType::Bool {
            return Err(format!(
                "CEL expression output type mismatch: expected bool, got {}",
                found.name()
            ));
        }
    }
    let nesting = nesting(program.expression());
    Ok(Expression {
        source: source.to_owned(),
        program,
        nesting,
    })
}

/// The deepest nesting of comprehensions in `expr`.
fn nesting(expr: &IdedExpr) -> u32 {
    match &expr.expr {
        Expr::Comprehension(c) => {
            1 + [
                &c.iter_range,
                &c.accu_init,
                &c.loop_cond,
                &c.loop_step,
                &c.result,
            ]
            .into_iter()
            .map(nesting)
            .max()
            .unwrap_or(0)
        }
        Expr::Call(call) => call
            .target
            .iter()
            .map(|t| nesting(t))
            .chain(call.args.iter().map(nesting))
            .max()
            .unwrap_or(0),
        Expr::Select(select) => nesting(&select.operand),
        Expr::List(list) => list.elements.iter().map(nesting).max().unwrap_or(0),
        Expr::Map(map) => map
            .entries
            .iter()
            .map(|entry| match &entry.expr {
                cel::common::ast::EntryExpr::MapEntry(e) => nesting(&e.key).max(nesting(&e.value)),
                cel::common::ast::EntryExpr::StructField(f) => nesting(&f.value),
            })
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

/// How many values `value` holds, itself included (lists and maps counted
/// item by item), up to `limit`.
fn size_of(value: &Value, limit: u64) -> u64 {
    let mut count = 0u64;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        count += 1;
        if count >= limit {
            return limit;
        }
        match value {
            Value::List(items) => stack.extend(items.iter()),
            Value::Map(map) => stack.extend(map.map.values()),
            _ => {}
        }
    }
    count
}

impl Expression {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates with `variables` (JSON values as in Flux's `map[string]any`).
    pub fn evaluate(&self, variables: &[(&str, Value)]) -> Result<Value, String> {
        let size: u64 = variables
            .iter()
            .map(|(_, value)| size_of(value, COST_BUDGET))
            .fold(0u64, u64::saturating_add);
        let estimated = size.saturating_pow(self.nesting.max(1));
        if estimated > COST_BUDGET {
            return Err(format!(
                "failed to evaluate the CEL expression '{}': over its cost budget \
                 (about {estimated} steps: {size} input values, {} nested comprehensions; \
                 the budget is {COST_BUDGET})",
                self.source, self.nesting
            ));
        }
        let mut context = Context::with_env(env());
        for (name, value) in variables {
            context.add_variable_from_value(*name, value.clone());
        }
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| self.program.execute(&context)))
            .map_err(|_| {
                format!(
                    "failed to evaluate the CEL expression '{}': the evaluator failed",
                    self.source
                )
            })?;
        result.map_err(|e| {
            format!(
                "failed to evaluate the CEL expression '{}': {e}",
                self.source
            )
        })
    }

    /// Evaluates an expression that must produce a boolean.
    pub fn evaluate_bool(&self, variables: &[(&str, Value)]) -> Result<bool, String> {
        match self.evaluate(variables)? {
            Value::Bool(b) => Ok(b),
            _ => Err(format!(
                "failed to evaluate CEL expression as boolean: '{}'",
                self.source
            )),
        }
    }
}

/// A JSON value as CEL sees it.
pub fn value(json: &serde_json::Value) -> Value {
    cel::to_value(json).unwrap_or(Value::Null)
}

/// The type names CEL resolves as identifiers (`type(x) == string`).
const TYPE_NAMES: [&str; 11] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// The first identifier that is neither declared, bound by an enclosing
/// comprehension, nor a type name.
fn undeclared<'a>(
    expr: &'a IdedExpr,
    declared: &[&str],
    bound: &mut Vec<&'a str>,
) -> Option<&'a str> {
    match &expr.expr {
        Expr::Ident(name) => {
            let known = name.starts_with('@')
                || declared.contains(&name.as_str())
                || bound.contains(&name.as_str())
                || TYPE_NAMES.contains(&name.as_str());
            (!known).then_some(name.as_str())
        }
        Expr::Call(call) => call
            .target
            .as_deref()
            .and_then(|t| undeclared(t, declared, bound))
            .or_else(|| {
                call.args
                    .iter()
                    .find_map(|a| undeclared(a, declared, bound))
            }),
        Expr::Select(select) => undeclared(&select.operand, declared, bound),
        Expr::List(list) => list
            .elements
            .iter()
            .find_map(|e| undeclared(e, declared, bound)),
        Expr::Map(map) => map.entries.iter().find_map(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(e) => undeclared(&e.key, declared, bound)
                .or_else(|| undeclared(&e.value, declared, bound)),
            cel::common::ast::EntryExpr::StructField(f) => undeclared(&f.value, declared, bound),
        }),
        Expr::Struct(s) => s.entries.iter().find_map(|entry| match &entry.expr {
            cel::common::ast::EntryExpr::MapEntry(e) => undeclared(&e.key, declared, bound)
                .or_else(|| undeclared(&e.value, declared, bound)),
            cel::common::ast::EntryExpr::StructField(f) => undeclared(&f.value, declared, bound),
        }),
        Expr::Comprehension(c) => {
            if let Some(found) = undeclared(&c.iter_range, declared, bound)
                .or_else(|| undeclared(&c.accu_init, declared, bound))
            {
                return Some(found);
            }
            let depth = bound.len();
            bound.push(c.iter_var.as_str());
            if let Some(second) = &c.iter_var2 {
                bound.push(second.as_str());
            }
            bound.push(c.accu_var.as_str());
            let found = undeclared(&c.loop_cond, declared, bound)
                .or_else(|| undeclared(&c.loop_step, declared, bound))
                .or_else(|| undeclared(&c.result, declared, bound));
            bound.truncate(depth);
            found
        }
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

/// What the type checker can tell of an expression's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StaticType {
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Null,
    List,
    Map,
    Dyn,
}

impl StaticType {
    fn name(self) -> &'static str {
        match self {
            StaticType::Bool => "bool",
            StaticType::Int => "int",
            StaticType::Uint => "uint",
            StaticType::Double => "double",
            StaticType::String => "string",
            StaticType::Bytes => "bytes",
            StaticType::Null => "null_type",
            StaticType::List => "list(dyn)",
            StaticType::Map => "map(dyn, dyn)",
            StaticType::Dyn => "dyn",
        }
    }
}

/// Functions and methods whose every overload returns a bool.
const PREDICATES: [&str; 16] = [
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::NOT_STRICTLY_FALSE,
    operators::IN,
    "startsWith",
    "endsWith",
    "contains",
    "matches",
    "bool",
];

/// The output type of `expr` as cel-go's checker would find it, with every
/// variable a `dyn` struct.
fn static_type(expr: &IdedExpr) -> StaticType {
    let mut accumulators = HashSet::new();
    static_type_in(expr, &mut accumulators)
}

fn static_type_in<'a>(expr: &'a IdedExpr, accumulators: &mut HashSet<&'a str>) -> StaticType {
    match &expr.expr {
        Expr::Literal(literal) => match literal {
            LiteralValue::Boolean(_) => StaticType::Bool,
            LiteralValue::Int(_) => StaticType::Int,
            LiteralValue::UInt(_) => StaticType::Uint,
            LiteralValue::Double(_) => StaticType::Double,
            LiteralValue::String(_) => StaticType::String,
            LiteralValue::Bytes(_) => StaticType::Bytes,
            LiteralValue::Null => StaticType::Null,
        },
        Expr::List(_) => StaticType::List,
        Expr::Map(_) => StaticType::Map,
        // `has(a.b)` is a presence test: a bool.
        Expr::Select(select) if select.test => StaticType::Bool,
        Expr::Call(call) if PREDICATES.contains(&call.func_name.as_str()) => StaticType::Bool,
        Expr::Call(call) if call.func_name == operators::CONDITIONAL && call.args.len() == 3 => {
            let then = static_type_in(&call.args[1], accumulators);
            let otherwise = static_type_in(&call.args[2], accumulators);
            if then == otherwise {
                then
            } else {
                StaticType::Dyn
            }
        }
        Expr::Call(call) if call.func_name == "size" => StaticType::Int,
        Expr::Call(call) if call.func_name == "string" => StaticType::String,
        Expr::Call(call) if call.func_name == "int" => StaticType::Int,
        Expr::Call(call) if call.func_name == "double" => StaticType::Double,
        Expr::Call(call)
            if [operators::ADD, operators::SUBSTRACT, operators::MULTIPLY]
                .contains(&call.func_name.as_str()) =>
        {
            let types: Vec<StaticType> = call
                .args
                .iter()
                .map(|a| static_type_in(a, accumulators))
                .collect();
            if types.windows(2).all(|w| w[0] == w[1]) {
                types.first().copied().unwrap_or(StaticType::Dyn)
            } else {
                StaticType::Dyn
            }
        }
        // `all`, `exists` and `exists_one` accumulate a bool; `map` and
        // `filter` a list.
        Expr::Comprehension(c) => {
            let init = static_type_in(&c.accu_init, accumulators);
            if init == StaticType::Bool {
                accumulators.insert(c.accu_var.as_str());
            }
            static_type_in(&c.result, accumulators)
        }
        Expr::Ident(name) if accumulators.contains(name.as_str()) => StaticType::Bool,
        _ => StaticType::Dyn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FILTER_VARS: [&str; 2] = ["res", "req"];

    fn filter(source: &str) -> Result<Expression, String> {
        compile(source, &FILTER_VARS, Output::Bool)
    }

    #[test]
    fn boolean_forms_compile() {
        for source in [
            "true",
            "res.metadata.name == 'app'",
            "res.metadata.name != req.name && true",
            "!(res.metadata.name in ['a', 'b'])",
            "has(res.metadata.labels) ? res.metadata.labels.app == 'x' : false",
            "res.metadata.name.startsWith('app-')",
            "req.commits.exists(c, c.message.contains('deploy'))",
            "req.commits.all(c, c.id != '')",
            "req.commits.exists_one(c, c.id == 'a')",
            "'app' in res.metadata.labels",
            "size(req.commits) > 0",
        ] {
            filter(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        }
    }

    #[test]
    fn non_boolean_and_undeclared_are_refused_as_flux_refuses_them() {
        let error = filter("res.metadata.name").expect_err("dyn");
        assert_eq!(
            error,
            "CEL expression output type mismatch: expected bool, got dyn"
        );
        assert!(filter("'a'").expect_err("string").contains("got string"));
        assert!(filter("1 + 2").expect_err("int").contains("got int"));
        let error = filter("claims.sub == 'x'").expect_err("undeclared");
        assert!(
            error.contains("undeclared reference to 'claims'"),
            "{error}"
        );
        assert!(compile("claims.sub == 'x'", &["res", "req", "claims"], Output::Bool).is_ok());
        assert!(filter("res.metadata.name ==").is_err());
        // A comprehension's own variable is declared inside it only.
        assert!(filter("req.list.exists(x, x == 1) && x == 2").is_err());
    }

    #[test]
    fn evaluates_against_json() {
        let expr = filter("res.metadata.labels.app == req.repository.name && !req.skip").unwrap();
        let res = value(&json!({"metadata": {"name": "a", "labels": {"app": "podinfo"}}}));
        let req = value(&json!({"repository": {"name": "podinfo"}, "skip": false}));
        assert!(
            expr.evaluate_bool(&[("res", res.clone()), ("req", req)])
                .unwrap()
        );
        let other = value(&json!({"repository": {"name": "other"}, "skip": false}));
        assert!(!expr.evaluate_bool(&[("res", res), ("req", other)]).unwrap());
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_match() {
        let expr = filter("req.absent.name == 'x'").unwrap();
        let result = expr.evaluate_bool(&[("res", value(&json!({}))), ("req", value(&json!({})))]);
        assert!(result.is_err(), "{result:?}");
    }

    /// Input the parser could overflow its stack on is refused before it
    /// is parsed; nesting within the limit compiles.
    #[test]
    fn deep_nesting_and_huge_expressions_are_refused_before_parsing() {
        let deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
        let error = filter(&deep).expect_err("refused");
        assert!(error.contains("nests deeper than 64"), "{error}");
        let huge = format!("'{}' == 'a'", "a".repeat(200_000));
        assert!(filter(&huge).expect_err("refused").contains("longer than"));
        let within = format!("{}true{}", "(".repeat(64), ")".repeat(64));
        let compiled = filter(&within).expect("64 levels compile");
        // And evaluate on an ordinary thread's stack.
        assert!(
            compiled
                .evaluate_bool(&[("req", Value::Null), ("res", Value::Null)])
                .expect("evaluates")
        );
        // Brackets inside strings do not count.
        filter(&format!("res.metadata.name == '{}'", "(".repeat(500))).expect("a string");
    }

    /// A walk over a large body inside another walk over it is refused
    /// before it runs; one walk over the same body runs.
    #[test]
    fn nested_walks_over_a_large_body_are_over_budget() {
        let items: Vec<serde_json::Value> = (0..20_000).map(|i| json!({"n": i})).collect();
        let req = value(&json!({"items": items}));
        let nested = filter("req.items.all(a, req.items.exists(b, b.n == a.n))").expect("compile");
        let started = std::time::Instant::now();
        let error = nested
            .evaluate_bool(&[("req", req.clone()), ("res", Value::Null)])
            .expect_err("over budget");
        assert!(error.contains("over its cost budget"), "{error}");
        assert!(error.contains("2 nested comprehensions"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        let single = filter("req.items.exists(a, a.n == 19999)").expect("compile");
        assert!(
            single
                .evaluate_bool(&[("req", req), ("res", Value::Null)])
                .expect("within budget")
        );
    }

    #[test]
    fn strings_extension_is_there() {
        let expr = filter("res.metadata.name.lowerAscii() == 'app'").unwrap();
        let res = value(&json!({"metadata": {"name": "APP"}}));
        assert!(
            expr.evaluate_bool(&[("res", res), ("req", value(&json!({})))])
                .unwrap()
        );
    }
}
