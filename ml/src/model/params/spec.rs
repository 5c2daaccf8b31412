//! The shape of the hyperparameter tables in [`super`]: a row ([`ParamSpec`]:
//! what parsing accepts, the default, the search space's entry, a doc line),
//! the reading of a row from sampler output, and `family_params!`, which
//! turns a family's rows into its typed struct and table.

use serde_json::{json, Map, Value};

use crate::error::{internal, invalid, LearnError, Result};

/// What parsing accepts for one hyperparameter, with its default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Accepts {
    /// A whole number in `low..=high`; samplers that work in floats may
    /// send `200.0` for 200.
    Int {
        default: usize,
        low: usize,
        high: usize,
    },
    /// A finite number in `low..=high`.
    Float { default: f64, low: f64, high: f64 },
    /// `true` or `false`.
    Bool { default: bool },
}

/// A hyperparameter's entry in [`super::default_search_space`], less the `when`
/// that ties it to its family.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Search {
    /// `{"type": "int", "low", "high"}`, with `"log": true` and `"step"`
    /// where set.
    Int {
        low: usize,
        high: usize,
        log: bool,
        step: Option<usize>,
    },
    /// `{"type": "float", "low", "high"}`, with `"log": true` where set.
    Float { low: f64, high: f64, log: bool },
    /// `{"type": "categorical", "choices"}` over these booleans, in order.
    Bools(&'static [bool]),
}

impl Search {
    /// The distribution as the scheduler reads it.
    pub fn to_json(&self) -> Value {
        let (kind, low, high, log, step) = match *self {
            Search::Int {
                low,
                high,
                log,
                step,
            } => ("int", json!(low), json!(high), log, step),
            Search::Float { low, high, log } => ("float", json!(low), json!(high), log, None),
            Search::Bools(choices) => return json!({"type": "categorical", "choices": choices}),
        };
        let mut entry = json!({"type": kind, "low": low, "high": high});
        if log {
            entry["log"] = json!(true);
        }
        if let Some(step) = step {
            entry["step"] = json!(step);
        }
        entry
    }
}

/// One hyperparameter: a row of its family's table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The name samplers send: the family's prefix and the field's name.
    pub name: &'static str,
    pub accepts: Accepts,
    pub search: Search,
    /// What the parameter does.
    pub doc: &'static str,
}

/// A field type a table row can hold: the value present in sampler output,
/// checked against the row, or the row's default when absent.
pub(super) trait FromParam: Sized {
    fn read(params: &Map<String, Value>, spec: &ParamSpec) -> Result<Self>;
}

fn row_mismatch(spec: &ParamSpec, kind: &str) -> LearnError {
    internal(format!(
        "parameter '{}' is not {kind} in its table",
        spec.name
    ))
}

impl FromParam for usize {
    fn read(params: &Map<String, Value>, spec: &ParamSpec) -> Result<usize> {
        match spec.accepts {
            // Whole and far below 2^53, the bounds are exact as f64 and
            // print as the integers they are.
            Accepts::Int { default, low, high } => {
                let x = number(params, spec.name, true, low as f64, high as f64)?;
                Ok(x.map_or(default, |x| x as usize))
            }
            _ => Err(row_mismatch(spec, "an integer")),
        }
    }
}

impl FromParam for f64 {
    fn read(params: &Map<String, Value>, spec: &ParamSpec) -> Result<f64> {
        match spec.accepts {
            Accepts::Float { default, low, high } => {
                Ok(number(params, spec.name, false, low, high)?.unwrap_or(default))
            }
            _ => Err(row_mismatch(spec, "a number")),
        }
    }
}

impl FromParam for bool {
    fn read(params: &Map<String, Value>, spec: &ParamSpec) -> Result<bool> {
        match spec.accepts {
            Accepts::Bool { default } => boolean(params, spec.name, default),
            _ => Err(row_mismatch(spec, "a boolean")),
        }
    }
}

/// A family's parameters struct and its table, from one row per parameter:
///
/// ```text
/// /// Doc (one line, or more for the field's rustdoc).
/// field: usize = default, accepts low..=high, search int(low..=high[, log | , step n]);
/// field: f64 = default, accepts low..=high, search float(low..=high[, log]);
/// field: bool = default, search bools[choices];
/// ```
///
/// It writes the struct (serde derives, the docs plus a line rendering the
/// row), `SPECS` (the table), `Default` (the defaults) and `from_map`
/// (parsing: every row read and checked in field order).
macro_rules! family_params {
    (@accepts usize, $default:tt, $low:tt, $high:tt) => {
        $crate::model::params::Accepts::Int { default: $default, low: $low, high: $high }
    };
    (@accepts f64, $default:tt, $low:tt, $high:tt) => {
        $crate::model::params::Accepts::Float { default: $default, low: $low, high: $high }
    };
    (@accepts bool, $default:tt) => {
        $crate::model::params::Accepts::Bool { default: $default }
    };
    (@search int ($low:tt ..= $high:tt)) => {
        $crate::model::params::Search::Int { low: $low, high: $high, log: false, step: None }
    };
    (@search int ($low:tt ..= $high:tt, log)) => {
        $crate::model::params::Search::Int { low: $low, high: $high, log: true, step: None }
    };
    (@search int ($low:tt ..= $high:tt, step $step:tt)) => {
        $crate::model::params::Search::Int {
            low: $low,
            high: $high,
            log: false,
            step: Some($step),
        }
    };
    (@search float ($low:tt ..= $high:tt)) => {
        $crate::model::params::Search::Float { low: $low, high: $high, log: false }
    };
    (@search float ($low:tt ..= $high:tt, log)) => {
        $crate::model::params::Search::Float { low: $low, high: $high, log: true }
    };
    (@search bools [$($choice:tt),+]) => {
        $crate::model::params::Search::Bools(&[$($choice),+])
    };
    (@search_doc $kind:ident ($low:tt ..= $high:tt $(, $($option:tt)+)?)) => {
        concat!(
            stringify!($kind), " ", stringify!($low), "..=", stringify!($high)
            $(, ", ", stringify!($($option)+))?
        )
    };
    (@search_doc bools [$($choice:tt),+]) => {
        concat!("one of ", stringify!($($choice),+))
    };
    (
        $(#[doc = $struct_doc:literal])+
        pub struct $name:ident, prefix $prefix:literal {
            $(
                $(#[doc = $doc:literal])+
                $(#[serde($serde:meta)])?
                $field:ident: $ty:ident = $default:tt
                    $(, accepts $low:tt ..= $high:tt)?
                    , search $kind:ident $args:tt;
            )+
        }
    ) => {
        $(#[doc = $struct_doc])+
        ///
        /// Its table is [`Self::SPECS`] (see the module docs).
        #[derive(Debug, Clone, Copy, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        pub struct $name {
            $(
                $(#[doc = $doc])+
                #[doc = ""]
                #[doc = concat!(
                    "`", $prefix, stringify!($field), "`: default `", stringify!($default), "`"
                    $(, "; accepts `", stringify!($low), "..=", stringify!($high), "`")?
                    , "; searched over ", family_params!(@search_doc $kind $args), "."
                )]
                $(#[serde($serde)])?
                pub $field: $ty,
            )+
        }

        impl $name {
            /// This family's table: a row per hyperparameter, in field order.
            pub const SPECS: &'static [$crate::model::params::ParamSpec] = &[$(
                $crate::model::params::ParamSpec {
                    name: concat!($prefix, stringify!($field)),
                    accepts: family_params!(@accepts $ty, $default $(, $low, $high)?),
                    search: family_params!(@search $kind $args),
                    doc: concat!($($doc),+).trim_ascii_start(),
                },
            )+];

            /// The family's parameters in sampler output, each checked
            /// against its row; absent ones take their defaults.
            fn from_map(
                params: &::serde_json::Map<::std::string::String, ::serde_json::Value>,
            ) -> $crate::error::Result<Self> {
                use $crate::model::params::spec::FromParam;
                let mut rows = Self::SPECS.iter();
                let mut row = || {
                    rows.next().ok_or_else(|| {
                        let message = concat!(stringify!($name), "::SPECS is short of a row");
                        $crate::error::internal(message)
                    })
                };
                Ok($name {
                    $($field: <$ty as FromParam>::read(params, row()?)?,)+
                })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)+
                }
            }
        }
    };
}
pub(super) use family_params;

/// The number `name` holds in sampler output, `None` when absent: a whole
/// one where `whole` (samplers that work in floats send 200.0 for 200, so
/// whole floats pass), within `[low, high]`.
fn number(
    params: &Map<String, Value>,
    name: &str,
    whole: bool,
    low: f64,
    high: f64,
) -> Result<Option<f64>> {
    let Some(v) = params.get(name) else {
        return Ok(None);
    };
    let what = if whole { "an integer" } else { "a number" };
    let x = v
        .as_f64()
        .filter(|x| !whole || x.fract() == 0.0)
        .ok_or_else(|| invalid(format!("parameter '{name}' must be {what}, got {v}")))?;
    if !(x.is_finite() && x >= low && x <= high) {
        return Err(invalid(format!(
            "parameter '{name}' = {x} is out of range [{low}, {high}]"
        )));
    }
    Ok(Some(x))
}

fn boolean(params: &Map<String, Value>, name: &str, default: bool) -> Result<bool> {
    match params.get(name) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(invalid(format!(
            "parameter '{name}' must be true or false, got {v}"
        ))),
    }
}
