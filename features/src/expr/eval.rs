//! Evaluation of a type-checked expression over one entity's values.

use serde_json::Value;

use super::{BinOp, Expr, Func};

/// A value during evaluation; `Null` is a missing input or an undefined
/// result.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Number(f64),
    Text(String),
    Bool(bool),
}

impl Val {
    fn from_json(v: Option<&Value>) -> Val {
        match v {
            Some(Value::Number(n)) => n.as_f64().map_or(Val::Null, Val::Number),
            Some(Value::String(s)) => Val::Text(s.clone()),
            Some(Value::Bool(b)) => Val::Bool(*b),
            _ => Val::Null,
        }
    }

    fn into_json(self) -> Value {
        match self {
            Val::Number(x) => serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
            Val::Text(s) => Value::String(s),
            Val::Bool(b) => Value::Bool(b),
            Val::Null => Value::Null,
        }
    }
}

fn number(x: f64) -> Val {
    if x.is_finite() {
        Val::Number(x)
    } else {
        Val::Null
    }
}

/// Evaluates a type-checked `expr` over one entity's feature values (by
/// name). Missing or null inputs give `null` except under `is_null` and
/// `coalesce`; so does an undefined result (division by zero, `ln(0)`).
pub fn eval(expr: &Expr, values: &serde_json::Map<String, Value>) -> Value {
    eval_val(expr, values).into_json()
}

fn eval_val(expr: &Expr, values: &serde_json::Map<String, Value>) -> Val {
    match expr {
        Expr::Number(x) => Val::Number(*x),
        Expr::Text(t) => Val::Text(t.clone()),
        Expr::Bool(b) => Val::Bool(*b),
        Expr::Feature { name, .. } => Val::from_json(values.get(name)),
        Expr::Neg(inner, _) => match eval_val(inner, values) {
            Val::Number(x) => Val::Number(-x),
            _ => Val::Null,
        },
        Expr::Not(inner, _) => match eval_val(inner, values) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Null,
        },
        Expr::Binary {
            op, left, right, ..
        } => binary(*op, eval_val(left, values), eval_val(right, values)),
        Expr::Call { func, args, .. } => call(*func, args, values),
    }
}

fn binary(op: BinOp, l: Val, r: Val) -> Val {
    use Val::{Bool, Null, Number as N};
    match (op, l, r) {
        // Three-valued logic, as SQL: false and null is false, true or
        // null is true.
        (BinOp::And, Bool(false), _) | (BinOp::And, _, Bool(false)) => Bool(false),
        (BinOp::Or, Bool(true), _) | (BinOp::Or, _, Bool(true)) => Bool(true),
        (BinOp::And | BinOp::Or, Bool(a), Bool(b)) => {
            Bool(if op == BinOp::And { a && b } else { a || b })
        }
        (_, Null, _) | (_, _, Null) => Null,
        (BinOp::Add, N(a), N(b)) => number(a + b),
        (BinOp::Sub, N(a), N(b)) => number(a - b),
        (BinOp::Mul, N(a), N(b)) => number(a * b),
        (BinOp::Div, N(a), N(b)) => number(a / b),
        (BinOp::Pow, N(a), N(b)) => number(a.powf(b)),
        (BinOp::Lt, N(a), N(b)) => Bool(a < b),
        (BinOp::Le, N(a), N(b)) => Bool(a <= b),
        (BinOp::Gt, N(a), N(b)) => Bool(a > b),
        (BinOp::Ge, N(a), N(b)) => Bool(a >= b),
        (BinOp::Eq, a, b) => Bool(a == b),
        (BinOp::Ne, a, b) => Bool(a != b),
        _ => Null,
    }
}

fn call(func: Func, args: &[Expr], values: &serde_json::Map<String, Value>) -> Val {
    let arg = |i: usize| eval_val(&args[i], values);
    let num = |i: usize| match eval_val(&args[i], values) {
        Val::Number(x) => Some(x),
        _ => None,
    };
    match func {
        Func::IsNull => Val::Bool(arg(0) == Val::Null),
        Func::Coalesce => (0..args.len())
            .map(arg)
            .find(|v| *v != Val::Null)
            .unwrap_or(Val::Null),
        Func::If => match arg(0) {
            Val::Bool(true) => arg(1),
            Val::Bool(false) => arg(2),
            _ => Val::Null,
        },
        Func::Ln => num(0).map_or(Val::Null, |x| number(x.ln())),
        Func::Log10 => num(0).map_or(Val::Null, |x| number(x.log10())),
        Func::Exp => num(0).map_or(Val::Null, |x| number(x.exp())),
        Func::Sqrt => num(0).map_or(Val::Null, |x| number(x.sqrt())),
        Func::Abs => num(0).map_or(Val::Null, |x| number(x.abs())),
        Func::Min | Func::Max => {
            let xs: Option<Vec<f64>> = (0..args.len()).map(num).collect();
            xs.map_or(Val::Null, |xs| {
                let pick = if func == Func::Min {
                    f64::min
                } else {
                    f64::max
                };
                number(xs.into_iter().reduce(pick).unwrap_or(f64::NAN))
            })
        }
        Func::Clamp => match (num(0), num(1), num(2)) {
            (Some(x), Some(lo), Some(hi)) if lo <= hi => number(x.clamp(lo, hi)),
            _ => Val::Null,
        },
    }
}
