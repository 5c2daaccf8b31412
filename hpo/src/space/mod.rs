//! Search spaces: parameter kinds, conditional activity, validation of told parameters, and the samplers' internal (log, grid, index) mapping.
//!
//! `param` holds one parameter (its kind, conditions and value mapping),
//! `json` parses one parameter's JSON spec and orders the `when` graph, and
//! `search_space` builds and checks the whole space from them.

mod json;
mod param;
mod search_space;

pub(crate) use param::{cmp_choice, repeated_value};
pub use param::{
    Condition, ParamKind, ParamSpec, MAX_CHOICES, MAX_INT_ABS, MAX_NAME_LEN, MAX_PARAMS,
};
pub use search_space::SearchSpace;
