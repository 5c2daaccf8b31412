//! The pruner's answer to a training's progress reports.
//!
//! A leaf module: [`crate::automl`] asks the pruner and the trainers of
//! every family obey it, so the type sits below both (`crate::automl::Step`
//! and `crate::Step` re-export it).

/// The pruner's answer after each fold (and, for nn, each epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Continue,
    /// Stop evaluating: the trial is pruned.
    Stop,
}
