//! Traffic policies of a platform deployment: how the requests that name
//! no version are shared between versions, and how a canary rollout moves,
//! as data and pure functions.
//!
//! - **Split** (A/B): named arms, each a version with a weight in percent;
//!   the deployment's own version takes the rest as `primary`.
//! - **Shadow**: a version that gets a copy of each request the deployment
//!   answers; its answers are logged (variant `shadow`) and never returned.
//! - **Canary**: the deployment's own version (newly approved for
//!   production) takes a growing share — the plan's steps — of the traffic
//!   of the version it replaces (`stable`), step by step, each step judged
//!   on live figures by [`check`]: too little traffic *holds*, a failed gate
//!   counts, and `fail_after` failed checks in a row roll the deployment
//!   back to the one it replaced.
//!
//! Assignment is sticky: a request with an entity id (a sample id) falls in
//! bucket SHA-256(deployment id, entity id) mod [`BUCKETS`], the same on
//! every replica and after restarts; arms own consecutive bucket ranges and
//! the canary the lowest, so a sample admitted to the canary at 5% stays in
//! it at 25%. A request without an entity id gets a random bucket and is
//! told its variant like every other.

use super::deployment::{Deployment, Previous};
use crate::ids::DeploymentId;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::predictions::PRIMARY;
/// The variant of a shadow's answers (logged, never returned).
pub const SHADOW: &str = "shadow";
/// The new version during a canary rollout.
pub const CANARY: &str = "canary";
/// The version a canary replaces, while the rollout runs.
pub const STABLE: &str = "stable";
/// Assignment buckets: weights resolve to 0.01%.
pub const BUCKETS: u32 = 10_000;
/// The most A/B arms besides `primary`.
pub const MAX_ARMS: usize = 8;
/// How long a shadow answer may take before it is logged as timed out.
pub const DEFAULT_SHADOW_TIMEOUT_MS: u64 = 1_000;
pub const MAX_SHADOW_TIMEOUT_MS: u64 = 60_000;
/// Canary checks kept on the deployment record (the newest).
pub const MAX_CHECKS_KEPT: usize = 100;
/// The longest a canary step may run before it is judged: a week.
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;
/// Outcomes each side needs before the metric gate compares them.
pub const DEFAULT_MIN_OUTCOMES: u64 = 30;

/// How a deployment shares its traffic; absent means all to its version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficPolicy {
    /// A/B arms besides `primary` (the deployment's own version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Arm>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryPlan>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arm {
    /// Its name in answers, the log and the analysis.
    pub variant: String,
    pub version: u32,
    /// Share of the traffic in percent (0.01 to 99.99).
    pub weight: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    pub version: u32,
    /// A shadow answer slower than this is logged as an error.
    #[serde(default = "default_shadow_timeout")]
    pub timeout_ms: u64,
}

fn default_shadow_timeout() -> u64 {
    DEFAULT_SHADOW_TIMEOUT_MS
}

/// A canary rollout's plan: what the request asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryPlan {
    /// The canary's share at each step, in percent, rising, the last 100.
    pub steps: Vec<f64>,
    /// How long each step runs before it is judged (and between checks).
    pub interval_secs: u64,
    pub gates: Gates,
    /// Failed checks in a row that roll the deployment back.
    #[serde(default = "default_fail_after")]
    pub fail_after: u32,
    /// Canary requests a check needs to judge; fewer holds the step.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
}

fn default_fail_after() -> u32 {
    3
}

fn default_min_requests() -> u64 {
    100
}

/// What a canary step must show; at least one gate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// The canary's share of failed answers, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// The canary's 99th percentile latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p99_ms: Option<f64>,
    /// Where outcomes are known: the canary's live metric against the
    /// stable version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricGate>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricGate {
    /// `rmse`, `mae`, `log_loss` (lower is better) or `accuracy`.
    pub name: String,
    /// How much worse than stable the canary may be, relative (0.05: 5%).
    #[serde(default)]
    pub tolerance: f64,
    /// Outcomes each side needs before the gate compares.
    #[serde(default = "default_min_outcomes")]
    pub min_outcomes: u64,
}

fn default_min_outcomes() -> u64 {
    DEFAULT_MIN_OUTCOMES
}

/// The live metrics a metric gate can compare, and which way is better.
pub const GATE_METRICS: [(&str, bool); 4] = [
    ("rmse", true),
    ("mae", true),
    ("log_loss", true),
    ("accuracy", false),
];

fn lower_is_better(metric: &str) -> Option<bool> {
    GATE_METRICS
        .iter()
        .find(|(m, _)| *m == metric)
        .map(|(_, lower)| *lower)
}

/// Names reserved for the platform's own variants.
pub const RESERVED_VARIANTS: [&str; 4] = [PRIMARY, SHADOW, CANARY, STABLE];

fn bad(msg: impl Into<String>) -> crate::Error {
    crate::Error::Invalid(msg.into())
}

impl TrafficPolicy {
    /// Whether the policy shares traffic at all.
    pub fn is_empty(&self) -> bool {
        self.split.is_empty() && self.shadow.is_none() && self.canary.is_none()
    }

    /// Checks the policy for a deployment of `own` version; the message
    /// names the field.
    pub fn validate(&self, own: u32) -> crate::Result<()> {
        if self.split.len() > MAX_ARMS {
            return Err(bad(format!(
                "traffic.split has {} arms; at most {MAX_ARMS}",
                self.split.len()
            )));
        }
        let mut total = 0.0;
        for (i, arm) in self.split.iter().enumerate() {
            let at = format!("traffic.split[{i}]");
            crate::types::validate_name(&format!("{at}.variant"), &arm.variant)?;
            if arm.variant.len() > crate::predictions::MAX_VARIANT {
                return Err(bad(format!(
                    "{at}.variant is longer than {} characters",
                    crate::predictions::MAX_VARIANT
                )));
            }
            if RESERVED_VARIANTS.contains(&arm.variant.as_str()) {
                return Err(bad(format!(
                    "{at}.variant '{}' is reserved ({})",
                    arm.variant,
                    RESERVED_VARIANTS.join(", ")
                )));
            }
            if self.split[..i].iter().any(|a| a.variant == arm.variant) {
                return Err(bad(format!(
                    "{at}.variant '{}' is named twice",
                    arm.variant
                )));
            }
            if arm.version == own {
                return Err(bad(format!(
                    "{at}.version {own} is the deployment's own version (it answers as primary)"
                )));
            }
            if !(arm.weight.is_finite() && (0.01..100.0).contains(&arm.weight)) {
                return Err(bad(format!(
                    "{at}.weight must be a percentage from 0.01 to below 100, got {}",
                    arm.weight
                )));
            }
            total += arm.weight;
        }
        if total >= 100.0 {
            return Err(bad(format!(
                "traffic.split weights add up to {total}%: primary needs a share, so keep them below 100"
            )));
        }
        if let Some(s) = &self.shadow {
            if s.version == own {
                return Err(bad(format!(
                    "traffic.shadow.version {own} is the deployment's own version"
                )));
            }
            if !(1..=MAX_SHADOW_TIMEOUT_MS).contains(&s.timeout_ms) {
                return Err(bad(format!(
                    "traffic.shadow.timeout_ms must be 1 to {MAX_SHADOW_TIMEOUT_MS}, got {}",
                    s.timeout_ms
                )));
            }
        }
        if let Some(c) = &self.canary {
            if !self.split.is_empty() {
                return Err(bad(
                    "traffic: a canary rollout and an A/B split cannot run in one deployment",
                ));
            }
            c.validate()?;
        }
        Ok(())
    }

    /// Every other version the policy serves (arms and shadow).
    pub fn versions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.split.iter().map(|a| a.version).collect();
        v.extend(self.shadow.as_ref().map(|s| s.version));
        v
    }
}

impl CanaryPlan {
    fn validate(&self) -> crate::Result<()> {
        if self.steps.is_empty() || self.steps.len() > 20 {
            return Err(bad("traffic.canary.steps must have 1 to 20 steps"));
        }
        let mut last = 0.0;
        for (i, s) in self.steps.iter().enumerate() {
            if !(s.is_finite() && *s > last && *s <= 100.0) {
                return Err(bad(format!(
                    "traffic.canary.steps[{i}] = {s}: steps are percentages above 0, rising, at most 100"
                )));
            }
            last = *s;
        }
        if last != 100.0 {
            return Err(bad(
                "traffic.canary.steps must end at 100: the last step serves the canary to everyone",
            ));
        }
        if !(1..=MAX_INTERVAL_SECS).contains(&self.interval_secs) {
            return Err(bad(format!(
                "traffic.canary.interval_secs must be 1 to {MAX_INTERVAL_SECS}, got {}",
                self.interval_secs
            )));
        }
        if !(1..=100).contains(&self.fail_after) {
            return Err(bad(format!(
                "traffic.canary.fail_after must be 1 to 100, got {}",
                self.fail_after
            )));
        }
        if !(1..=1_000_000_000).contains(&self.min_requests) {
            return Err(bad(
                "traffic.canary.min_requests must be 1 to 1,000,000,000",
            ));
        }
        let g = &self.gates;
        if g.max_error_rate.is_none() && g.max_p99_ms.is_none() && g.metric.is_none() {
            return Err(bad(
                "traffic.canary.gates needs at least one of max_error_rate, max_p99_ms, metric",
            ));
        }
        if let Some(r) = g.max_error_rate {
            if !(r.is_finite() && (0.0..=1.0).contains(&r)) {
                return Err(bad(format!(
                    "traffic.canary.gates.max_error_rate must be from 0 to 1, got {r}"
                )));
            }
        }
        if let Some(ms) = g.max_p99_ms {
            if !(ms.is_finite() && ms > 0.0) {
                return Err(bad(format!(
                    "traffic.canary.gates.max_p99_ms must be above 0, got {ms}"
                )));
            }
        }
        if let Some(m) = &g.metric {
            if lower_is_better(&m.name).is_none() {
                let known: Vec<&str> = GATE_METRICS.iter().map(|(m, _)| *m).collect();
                return Err(bad(format!(
                    "traffic.canary.gates.metric.name '{}' is not a live metric ({})",
                    crate::error::excerpt(&m.name, 64),
                    known.join(", ")
                )));
            }
            if !(m.tolerance.is_finite() && (0.0..=10.0).contains(&m.tolerance)) {
                return Err(bad(format!(
                    "traffic.canary.gates.metric.tolerance must be from 0 to 10, got {}",
                    m.tolerance
                )));
            }
            if !(1..=1_000_000).contains(&m.min_outcomes) {
                return Err(bad(
                    "traffic.canary.gates.metric.min_outcomes must be 1 to 1,000,000",
                ));
            }
        }
        Ok(())
    }
}

/// One arm as serving sees it: requests whose bucket is below `upper` (and
/// not below the arm before) go to `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub variant: String,
    pub version: u32,
    pub upper: u32,
}

fn buckets_of(percent: f64) -> u32 {
    ((percent * f64::from(BUCKETS) / 100.0).round() as u32).min(BUCKETS)
}

/// How a live deployment shares its traffic now, lowest buckets first; the
/// last slot's `upper` is [`BUCKETS`].
pub fn slots(d: &Deployment) -> Vec<Slot> {
    if let (Some(r), Some(prev)) = (&d.rollout, d.previous) {
        if r.state.running() {
            let upper = buckets_of(r.percent);
            return vec![
                Slot {
                    variant: CANARY.into(),
                    version: d.version,
                    upper,
                },
                Slot {
                    variant: STABLE.into(),
                    version: prev.version,
                    upper: BUCKETS,
                },
            ];
        }
    }
    let mut out = Vec::new();
    let mut total = 0.0;
    for arm in d.traffic.iter().flat_map(|t| &t.split) {
        total += arm.weight;
        out.push(Slot {
            variant: arm.variant.clone(),
            version: arm.version,
            upper: buckets_of(total),
        });
    }
    out.push(Slot {
        variant: PRIMARY.into(),
        version: d.version,
        upper: BUCKETS,
    });
    out
}

/// The sticky bucket of an entity in a deployment.
pub fn bucket(deployment: DeploymentId, entity_id: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(deployment.to_string().as_bytes());
    h.update([0]);
    h.update(entity_id.as_bytes());
    let d = h.finalize();
    let n = u64::from_be_bytes(d[..8].try_into().expect("a SHA-256 digest has 8 bytes"));
    (n % u64::from(BUCKETS)) as u32
}

/// The slot a bucket falls in (`slots` as [`slots`] made them).
pub fn choose(slots: &[Slot], bucket: u32) -> usize {
    slot_of(slots.iter().map(|s| s.upper), bucket)
}

/// The index of the first slot whose upper bound is above `bucket` (the
/// last slot when none is: its bound is [`BUCKETS`]); serving's slots carry
/// the same bounds beside their loaded models.
pub fn slot_of(uppers: impl ExactSizeIterator<Item = u32>, bucket: u32) -> usize {
    let n = uppers.len();
    let mut uppers = uppers;
    uppers
        .position(|upper| bucket < upper)
        .unwrap_or(n.saturating_sub(1))
}

/// Where a canary rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// At a step, waiting for its next check.
    Progressing,
    /// At a step whose last check had too little traffic to judge.
    Holding,
    /// Every step passed: the canary serves everything.
    Completed,
    /// A gate failed `fail_after` checks in a row.
    RolledBack,
}

impl RolloutState {
    /// Whether traffic is still split between canary and stable.
    pub fn running(self) -> bool {
        matches!(self, RolloutState::Progressing | RolloutState::Holding)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    Hold,
}

/// One side's live figures over a check's window (from the prediction log).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmFigures {
    pub version: u32,
    pub requests: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// The gate's metric and the outcomes it was computed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<f64>,
    #[serde(default)]
    pub outcomes: u64,
}

impl ArmFigures {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// One judged check of a canary step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryCheck {
    pub at: DateTime<Utc>,
    pub step: usize,
    pub percent: f64,
    pub verdict: Verdict,
    /// Why: the failed gates, what held, what could not be compared yet.
    pub reasons: Vec<String>,
    pub canary: ArmFigures,
    pub stable: ArmFigures,
}

/// A canary rollout's progress, kept on its deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub state: RolloutState,
    /// Index into the plan's steps.
    pub step: usize,
    /// The canary's share now, in percent.
    pub percent: f64,
    /// Figures of a check count from here (the step's start, or the last
    /// judged check; a hold keeps it, so traffic accumulates).
    pub window_start: DateTime<Utc>,
    pub next_check: DateTime<Utc>,
    /// Failed checks in a row.
    pub failures: u32,
    /// The newest [`MAX_CHECKS_KEPT`] checks, oldest first.
    pub checks: Vec<CanaryCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn interval(plan: &CanaryPlan) -> Duration {
    Duration::seconds(i64::try_from(plan.interval_secs).unwrap_or(i64::MAX / 1000))
}

impl Rollout {
    /// The rollout of a deployment going live, replacing `live` (if any).
    pub fn start(
        plan: &CanaryPlan,
        own: u32,
        live: Option<Previous>,
        now: DateTime<Utc>,
    ) -> Rollout {
        let mut r = Rollout {
            state: RolloutState::Progressing,
            step: 0,
            percent: plan.steps[0],
            window_start: now,
            next_check: now + interval(plan),
            failures: 0,
            checks: Vec::new(),
            note: None,
        };
        match live {
            None => {
                r.state = RolloutState::Completed;
                r.percent = 100.0;
                r.note = Some(
                    "no earlier live deployment to compare with: the canary serves everything"
                        .into(),
                );
            }
            Some(p) if p.version == own => {
                r.state = RolloutState::Completed;
                r.percent = 100.0;
                r.note = Some(format!(
                    "version {own} was already live: nothing to roll out"
                ));
            }
            Some(_) => {}
        }
        r
    }
}

/// What a check asks the caller to do beyond storing the rollout.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The step is judged; the rollout moved (stored with the deployment).
    Judged(Verdict),
    /// `fail_after` failures in a row: roll the deployment back, for this
    /// reason, and alert.
    RollBack { reason: String },
}

/// Judges the figures of one step against the gates.
pub fn judge(
    plan: &CanaryPlan,
    canary: &ArmFigures,
    stable: &ArmFigures,
) -> (Verdict, Vec<String>) {
    let mut failed = Vec::new();
    let mut notes = Vec::new();
    if canary.requests < plan.min_requests {
        return (
            Verdict::Hold,
            vec![format!(
                "too little traffic to judge: the canary answered {} of the {} requests a check needs",
                canary.requests, plan.min_requests
            )],
        );
    }
    let g = &plan.gates;
    if let (Some(max), Some(rate)) = (g.max_error_rate, canary.error_rate()) {
        if rate > max {
            failed.push(format!(
                "error rate {:.4} is above {max} ({} of {} requests failed)",
                rate, canary.errors, canary.requests
            ));
        }
    }
    if let Some(max) = g.max_p99_ms {
        match canary.p99_ms {
            Some(p99) if p99 > max => {
                failed.push(format!("p99 latency {p99:.2} ms is above {max} ms"))
            }
            Some(_) => {}
            None => notes.push("no latency figures for the canary".into()),
        }
    }
    if let Some(m) = &g.metric {
        match (canary.metric, stable.metric) {
            (Some(c), Some(s))
                if canary.outcomes >= m.min_outcomes && stable.outcomes >= m.min_outcomes =>
            {
                let lower = lower_is_better(&m.name).unwrap_or(true);
                let worse = if lower {
                    c > s * (1.0 + m.tolerance)
                } else {
                    c < s * (1.0 - m.tolerance)
                };
                if worse {
                    failed.push(format!(
                        "{} {c:.4} is worse than stable's {s:.4} by more than {}%",
                        m.name,
                        m.tolerance * 100.0
                    ));
                }
            }
            _ => notes.push(format!(
                "{} not compared: not enough outcomes yet (canary {}, stable {}, {} each needed)",
                m.name, canary.outcomes, stable.outcomes, m.min_outcomes
            )),
        }
    }
    if failed.is_empty() {
        (Verdict::Pass, notes)
    } else {
        failed.extend(notes);
        (Verdict::Fail, failed)
    }
}

/// Checks a running rollout at `now` with the figures of its window.
/// `None` when it is not time yet (or it is not running); otherwise the
/// rollout has moved and the check is recorded on it.
pub fn check(
    plan: &CanaryPlan,
    r: &mut Rollout,
    canary: ArmFigures,
    stable: ArmFigures,
    now: DateTime<Utc>,
) -> Option<Outcome> {
    if !r.state.running() || now < r.next_check {
        return None;
    }
    let (verdict, reasons) = judge(plan, &canary, &stable);
    let rollback_reason = (verdict == Verdict::Fail).then(|| reasons.join("; "));
    r.checks.push(CanaryCheck {
        at: now,
        step: r.step,
        percent: r.percent,
        verdict,
        reasons,
        canary,
        stable,
    });
    if r.checks.len() > MAX_CHECKS_KEPT {
        let extra = r.checks.len() - MAX_CHECKS_KEPT;
        r.checks.drain(..extra);
    }
    r.next_check = now + interval(plan);
    match verdict {
        Verdict::Hold => {
            r.state = RolloutState::Holding;
            Some(Outcome::Judged(verdict))
        }
        Verdict::Pass => {
            r.failures = 0;
            r.window_start = now;
            if r.step + 1 < plan.steps.len() {
                r.step += 1;
                r.percent = plan.steps[r.step];
                r.state = RolloutState::Progressing;
            } else {
                r.state = RolloutState::Completed;
                r.percent = 100.0;
            }
            Some(Outcome::Judged(verdict))
        }
        Verdict::Fail => {
            r.failures += 1;
            r.window_start = now;
            if r.failures >= plan.fail_after {
                r.state = RolloutState::RolledBack;
                let reason = format!(
                    "canary rolled back automatically at step {} ({}%) after {} failed checks in a row: {}",
                    r.step + 1,
                    r.percent,
                    r.failures,
                    rollback_reason.unwrap_or_default()
                );
                r.note = Some(reason.clone());
                Some(Outcome::RollBack { reason })
            } else {
                r.state = RolloutState::Progressing;
                Some(Outcome::Judged(verdict))
            }
        }
    }
}

#[cfg(test)]
#[path = "traffic_tests.rs"]
mod tests;
