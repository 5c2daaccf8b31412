//! The small, safe expression language of derived features.
//!
//! A derived feature such as `volume_ml * concentration_ng_ul` or
//! `if(temperature_deviation > 2, 1, 0)` is parsed and type-checked when it
//! is registered, so a typo or a type error is a 400 that points at the
//! column, never a failure at serving time. The language has no loops, no
//! assignment, no calls out: numbers, text and booleans, arithmetic,
//! comparisons, `and`/`or`/`not`, and a fixed list of pure functions.
//! Evaluation is total: a missing input or an undefined result (`ln` of a
//! negative number, division by zero) is `null`, the same missing value an
//! ingested feature has, and models impute it the same way.

use std::collections::BTreeMap;
use std::fmt;

use crate::definition::ValueType;

mod eval;
mod parse;

pub use eval::eval;
pub use parse::parse;

/// Longest expression accepted, in characters.
pub const MAX_EXPRESSION_CHARS: usize = 2_000;
/// Deepest nesting accepted (parentheses, calls, unary operators).
pub(crate) const MAX_DEPTH: usize = 64;

/// A parse or type error, at a character column (1-based) of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at column {}: {}", self.column, self.message)
    }
}

impl ExprError {
    /// The message with the source and a caret under the column, for an
    /// API error body.
    pub fn render(&self, source: &str) -> String {
        let caret = " ".repeat(self.column.saturating_sub(1));
        format!("{self}\n  {source}\n  {caret}^")
    }
}

pub(crate) fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        column,
        message: message.into(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// The built-in functions and their arities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Ln,
    Log10,
    Exp,
    Sqrt,
    Abs,
    Min,
    Max,
    Clamp,
    If,
    Coalesce,
    IsNull,
}

pub(crate) const FUNCS: [(&str, Func); 11] = [
    ("ln", Func::Ln),
    ("log10", Func::Log10),
    ("exp", Func::Exp),
    ("sqrt", Func::Sqrt),
    ("abs", Func::Abs),
    ("min", Func::Min),
    ("max", Func::Max),
    ("clamp", Func::Clamp),
    ("if", Func::If),
    ("coalesce", Func::Coalesce),
    ("is_null", Func::IsNull),
];

/// A parsed expression; `column` is where each node starts in the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Text(String),
    Bool(bool),
    Feature {
        name: String,
        column: usize,
    },
    Neg(Box<Expr>, usize),
    Not(Box<Expr>, usize),
    Binary {
        op: BinOp,
        left: Box<Expr>,
        right: Box<Expr>,
        column: usize,
    },
    Call {
        func: Func,
        args: Vec<Expr>,
        column: usize,
    },
}

/// The type of an expression's value. `Integer` features read as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Number,
    Text,
    Bool,
}

impl Type {
    fn of(value_type: ValueType) -> Type {
        match value_type {
            ValueType::Float | ValueType::Int => Type::Number,
            ValueType::String => Type::Text,
            ValueType::Bool => Type::Bool,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Text => "text",
            Type::Bool => "a boolean",
        }
    }

    /// The value type a derived feature of this type is stored as.
    pub fn value_type(self) -> ValueType {
        match self {
            Type::Number => ValueType::Float,
            Type::Text => ValueType::String,
            Type::Bool => ValueType::Bool,
        }
    }
}

/// Where a node starts; literals do not record it, and an error about
/// one points at the operator or call that uses it.
fn column_of(e: &Expr) -> Option<usize> {
    match e {
        Expr::Feature { column, .. }
        | Expr::Neg(_, column)
        | Expr::Not(_, column)
        | Expr::Binary { column, .. }
        | Expr::Call { column, .. } => Some(*column),
        Expr::Number(_) | Expr::Text(_) | Expr::Bool(_) => None,
    }
}

/// Type-checks `expr` against the features it may read, returning its type
/// and the features it reads (sorted, each once).
pub fn check(
    expr: &Expr,
    features: &BTreeMap<String, ValueType>,
) -> Result<(Type, Vec<String>), ExprError> {
    let mut reads = Vec::new();
    let ty = type_of(expr, features, &mut reads)?;
    reads.sort();
    reads.dedup();
    Ok((ty, reads))
}

fn expect(e: &Expr, got: Type, want: Type, what: &str, user: usize) -> Result<(), ExprError> {
    if got == want {
        Ok(())
    } else {
        err(
            column_of(e).unwrap_or(user),
            format!("{what} must be {}, this is {}", want.name(), got.name()),
        )
    }
}

fn type_of(
    expr: &Expr,
    features: &BTreeMap<String, ValueType>,
    reads: &mut Vec<String>,
) -> Result<Type, ExprError> {
    match expr {
        Expr::Number(_) => Ok(Type::Number),
        Expr::Text(_) => Ok(Type::Text),
        Expr::Bool(_) => Ok(Type::Bool),
        Expr::Feature { name, column } => match features.get(name) {
            Some(vt) => {
                reads.push(name.clone());
                Ok(Type::of(*vt))
            }
            None => {
                let mut message = format!("unknown feature `{name}`");
                if let Some(close) = closest(name, features.keys()) {
                    message.push_str(&format!(" (did you mean `{close}`?)"));
                }
                err(*column, message)
            }
        },
        Expr::Neg(inner, at) => {
            let t = type_of(inner, features, reads)?;
            expect(inner, t, Type::Number, "the operand of `-`", *at)?;
            Ok(Type::Number)
        }
        Expr::Not(inner, at) => {
            let t = type_of(inner, features, reads)?;
            expect(inner, t, Type::Bool, "the operand of `not`", *at)?;
            Ok(Type::Bool)
        }
        Expr::Binary {
            op,
            left,
            right,
            column: at,
        } => {
            let at = *at;
            let l = type_of(left, features, reads)?;
            let r = type_of(right, features, reads)?;
            match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Pow => {
                    expect(left, l, Type::Number, "an arithmetic operand", at)?;
                    expect(right, r, Type::Number, "an arithmetic operand", at)?;
                    Ok(Type::Number)
                }
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    expect(
                        left,
                        l,
                        Type::Number,
                        "an ordering comparison's operand",
                        at,
                    )?;
                    expect(
                        right,
                        r,
                        Type::Number,
                        "an ordering comparison's operand",
                        at,
                    )?;
                    Ok(Type::Bool)
                }
                BinOp::Eq | BinOp::Ne => {
                    expect(right, r, l, "the right side of an equality", at)?;
                    Ok(Type::Bool)
                }
                BinOp::And | BinOp::Or => {
                    expect(left, l, Type::Bool, "an operand of `and`/`or`", at)?;
                    expect(right, r, Type::Bool, "an operand of `and`/`or`", at)?;
                    Ok(Type::Bool)
                }
            }
        }
        Expr::Call {
            func,
            args,
            column: at,
        } => {
            let at = *at;
            let types = args
                .iter()
                .map(|a| type_of(a, features, reads))
                .collect::<Result<Vec<_>, _>>()?;
            match func {
                Func::IsNull => Ok(Type::Bool),
                Func::If => {
                    expect(&args[0], types[0], Type::Bool, "`if`'s condition", at)?;
                    expect(&args[2], types[2], types[1], "`if`'s third argument", at)?;
                    Ok(types[1])
                }
                Func::Coalesce => {
                    for (a, t) in args.iter().zip(&types).skip(1) {
                        expect(a, *t, types[0], "every argument of `coalesce`", at)?;
                    }
                    Ok(types[0])
                }
                _ => {
                    for (a, t) in args.iter().zip(&types) {
                        expect(a, *t, Type::Number, "this function's argument", at)?;
                    }
                    Ok(Type::Number)
                }
            }
        }
    }
}

/// The known name nearest to `name` by edit distance, when it is close.
fn closest<'a>(name: &str, known: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
