//! The model registry's rules: which stage each version of a model is in,
//! which version each alias names, and what one change does to them, as a
//! pure function.
//!
//! Stages are the seed's words (`none → staging → production → archived`);
//! aliases are MLflow's (2.9+): a named, movable pointer to exactly one
//! version, addressed as `name@alias`. The two answer different questions.
//! A stage says where a version is in review (and only `production` needs a
//! second identity's approval, see [`crate::lifecycle::promotion`]); an
//! alias is how a client pins "the version I mean" without a number, and is
//! independent of stages, as in MLflow.
//!
//! The store keeps each model's [`ModelSlots`] with a revision. A change is
//! computed here from the slots it read and stored with a compare-and-set on
//! that revision, together with the history rows its [`Effect`]s describe:
//! one production version per model holds however many promotions race, and
//! a promotion decided against one production version (its gates, its
//! approval) is refused if another took its place meanwhile.

use crate::types::str_enum;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Registered, not reviewed: where every new version starts.
    None,
    Staging,
    /// What lab software should get: one version per model at a time.
    Production,
    /// Retired; kept for lineage and rollback, never deployed as it is.
    Archived,
}
str_enum!(Stage { None => "none", Staging => "staging", Production => "production", Archived => "archived" });

impl Stage {
    /// Only a move into production needs a second identity's approval;
    /// the lower stages are the requester's own call.
    pub fn needs_approval(self) -> bool {
        self == Stage::Production
    }
}

/// Longest alias, in bytes.
pub const MAX_ALIAS_LEN: usize = 64;

/// Checks the shape of an alias as a request names one: lowercase ASCII
/// letters, digits, `_` and `-`, starting with a letter, at most
/// [`MAX_ALIAS_LEN`] bytes. An over-long alias is never quoted back.
pub fn check_alias_shape(alias: &str) -> Result<(), Rejection> {
    if alias.is_empty() || alias.len() > MAX_ALIAS_LEN {
        return Err(Rejection::InvalidAlias(format!(
            "an alias must be 1 to {MAX_ALIAS_LEN} characters"
        )));
    }
    let bad = |why: &str| Err(Rejection::InvalidAlias(format!("alias '{alias}' {why}")));
    if !alias.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("must start with a lowercase letter");
    }
    if let Some(c) = alias
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
    {
        return bad(&format!(
            "contains '{c}'; use lowercase letters, digits, '_' and '-'"
        ));
    }
    Ok(())
}

/// Checks an alias name to set: [`check_alias_shape`], and not `latest` or
/// `v<digits>`, which already mean "the newest version" and "version
/// <digits>" wherever a version is addressed (MLflow reserves the same
/// names).
pub fn validate_alias(alias: &str) -> Result<(), Rejection> {
    check_alias_shape(alias)?;
    let numbered = alias.len() > 1 && alias[1..].bytes().all(|b| b.is_ascii_digit());
    if alias == "latest" || (alias.starts_with('v') && numbered) {
        return Err(Rejection::InvalidAlias(format!(
            "alias '{alias}' is reserved: it already names a version"
        )));
    }
    Ok(())
}

/// Names that are routes under `/models`, so no model may take them.
pub const RESERVED_MODEL_NAMES: [&str; 3] = ["promote", "deploy", "register"];

/// Refuses a model name that is a route under `/models`, naming `field`.
pub fn check_model_name_free(field: &str, name: &str) -> Result<(), String> {
    if RESERVED_MODEL_NAMES.contains(&name) {
        return Err(format!(
            "{field} '{name}' is reserved (a route under /models); choose another"
        ));
    }
    Ok(())
}

/// Most tags on one model or one version.
pub const MAX_TAGS: usize = 64;
/// Longest tag key, in bytes.
pub const MAX_TAG_KEY: usize = 128;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE: usize = 1024;

/// Checks a set of tags for a model or a version: at most [`MAX_TAGS`],
/// keys of letters, digits and `_ - . / :` up to [`MAX_TAG_KEY`] bytes,
/// values of printable text up to [`MAX_TAG_VALUE`] bytes. The message
/// names the key (cut short), never a value.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), String> {
    if tags.len() > MAX_TAGS {
        return Err(format!("tags: {} given; at most {MAX_TAGS}", tags.len()));
    }
    for (key, value) in tags {
        let shown: String = key.chars().take(64).collect();
        if key.is_empty() || key.len() > MAX_TAG_KEY {
            return Err(format!(
                "tag key '{shown}' must be 1 to {MAX_TAG_KEY} bytes"
            ));
        }
        if let Some(c) = key
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-./:".contains(*c)))
        {
            return Err(format!(
                "tag key '{shown}' contains {c:?}; use letters, digits and _ - . / :"
            ));
        }
        if value.len() > MAX_TAG_VALUE {
            return Err(format!(
                "tag '{shown}': the value is {} bytes; at most {MAX_TAG_VALUE}",
                value.len()
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(format!(
                "tag '{shown}': the value contains a control character"
            ));
        }
    }
    Ok(())
}

/// What the registry holds for one model at one revision: each version's
/// stage and each alias's version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSlots {
    pub name: String,
    /// Bumped by every stored change; the compare-and-set key.
    pub revision: u64,
    pub stages: BTreeMap<u32, Stage>,
    pub aliases: BTreeMap<String, u32>,
}

impl ModelSlots {
    /// The version in production, if any.
    pub fn production(&self) -> Option<u32> {
        self.stages
            .iter()
            .find(|(_, s)| **s == Stage::Production)
            .map(|(v, _)| *v)
    }

    pub fn stage_of(&self, version: u32) -> Option<Stage> {
        self.stages.get(&version).copied()
    }

    /// The aliases naming `version`, by name.
    pub fn aliases_of(&self, version: u32) -> Vec<&str> {
        self.aliases
            .iter()
            .filter(|(_, v)| **v == version)
            .map(|(a, _)| a.as_str())
            .collect()
    }
}

/// One change a request makes to a model's slots.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Moves `version` to `stage`. Into production, the version it replaces
    /// goes to `archived` when `archive_previous`, else back to `staging`
    /// (kept ready, out of production: one production version at a time).
    /// `expect_production`, when given, is the production version the
    /// decision was made against; a different one now refuses the change.
    SetStage {
        version: u32,
        stage: Stage,
        archive_previous: bool,
        expect_production: Option<Option<u32>>,
    },
    /// Points `alias` at `version`, moving it if it named another.
    SetAlias {
        alias: String,
        version: u32,
    },
    DeleteAlias {
        alias: String,
    },
}

/// What a change did, one row of the model's history each.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    StageChanged {
        version: u32,
        from: Stage,
        to: Stage,
    },
    AliasSet {
        alias: String,
        from: Option<u32>,
        to: u32,
    },
    AliasDeleted {
        alias: String,
        version: u32,
    },
}

/// Why a change does not apply; the slots are unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("model '{name}' has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("model '{name}' has no alias '{alias}'")]
    UnknownAlias { name: String, alias: String },
    #[error("{0}")]
    InvalidAlias(String),
    #[error(
        "the production version of '{name}' changed from {} to {} since this was decided; decide again",
        show(*expected),
        show(*found)
    )]
    ProductionChanged {
        name: String,
        expected: Option<u32>,
        found: Option<u32>,
    },
}

fn show(v: Option<u32>) -> String {
    v.map_or_else(|| "none".to_string(), |v| format!("version {v}"))
}

/// Applies `change` to `slots`, returning what moved (nothing for a change
/// that is already true). On `Err` the slots are unchanged. The caller
/// stores the result with a compare-and-set on `slots.revision` and bumps
/// it; this function leaves the revision alone.
pub fn apply(slots: &mut ModelSlots, change: Change) -> Result<Vec<Effect>, Rejection> {
    match change {
        Change::SetStage {
            version,
            stage,
            archive_previous,
            expect_production,
        } => {
            let from = known(slots, version)?;
            let current = slots.production();
            if let Some(expected) = expect_production {
                if expected != current {
                    return Err(Rejection::ProductionChanged {
                        name: slots.name.clone(),
                        expected,
                        found: current,
                    });
                }
            }
            if from == stage {
                return Ok(vec![]);
            }
            let mut effects = Vec::new();
            if stage == Stage::Production {
                if let Some(old) = current {
                    let to = if archive_previous {
                        Stage::Archived
                    } else {
                        Stage::Staging
                    };
                    slots.stages.insert(old, to);
                    effects.push(Effect::StageChanged {
                        version: old,
                        from: Stage::Production,
                        to,
                    });
                }
            }
            slots.stages.insert(version, stage);
            effects.push(Effect::StageChanged {
                version,
                from,
                to: stage,
            });
            Ok(effects)
        }
        Change::SetAlias { alias, version } => {
            validate_alias(&alias)?;
            known(slots, version)?;
            let from = slots.aliases.insert(alias.clone(), version);
            if from == Some(version) {
                return Ok(vec![]);
            }
            Ok(vec![Effect::AliasSet {
                alias,
                from,
                to: version,
            }])
        }
        Change::DeleteAlias { alias } => match slots.aliases.remove(&alias) {
            Some(version) => Ok(vec![Effect::AliasDeleted { alias, version }]),
            None => Err(Rejection::UnknownAlias {
                name: slots.name.clone(),
                alias,
            }),
        },
    }
}

fn known(slots: &ModelSlots, version: u32) -> Result<Stage, Rejection> {
    slots
        .stage_of(version)
        .ok_or_else(|| Rejection::UnknownVersion {
            name: slots.name.clone(),
            version,
        })
}

/// Which way a metric improves, for gates that compare values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    Higher,
    Lower,
}

impl Goal {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Goal::Higher => a > b,
            Goal::Lower => a < b,
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Goal::Higher => "higher",
            Goal::Lower => "lower",
        })
    }
}

impl FromStr for Goal {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "higher" => Ok(Goal::Higher),
            "lower" => Ok(Goal::Lower),
            other => Err(crate::Error::Invalid(format!(
                "unknown goal '{other}'; expected higher or lower"
            ))),
        }
    }
}

/// A condition a promotion must meet before an approval counts, checked
/// on the candidate's recorded training metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Gate {
    /// The metric is `value` or better (at least, or at most for a metric
    /// where lower is better).
    Threshold {
        metric: String,
        value: f64,
        goal: Goal,
    },
    /// The metric beats the current production version's. With no version
    /// in production there is nothing to beat and the gate holds.
    BetterThanProduction { metric: String, goal: Goal },
}

/// Checks every gate; the first that fails is the error, in words that
/// name the metric and both figures.
pub fn check_gates(
    gates: &[Gate],
    candidate: &BTreeMap<String, f64>,
    production: Option<(u32, &BTreeMap<String, f64>)>,
) -> Result<(), String> {
    let value = |metrics: &BTreeMap<String, f64>, metric: &str, whose: &str| {
        metrics
            .get(metric)
            .copied()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{whose} has no recorded {metric}"))
    };
    for gate in gates {
        match gate {
            Gate::Threshold {
                metric,
                value: bound,
                goal,
            } => {
                let v = value(candidate, metric, "the candidate")?;
                if goal.better(*bound, v) {
                    let word = match goal {
                        Goal::Higher => "at least",
                        Goal::Lower => "at most",
                    };
                    return Err(format!("gate failed: {metric} {v} is not {word} {bound}"));
                }
            }
            Gate::BetterThanProduction { metric, goal } => {
                let v = value(candidate, metric, "the candidate")?;
                let Some((version, metrics)) = production else {
                    continue;
                };
                let p = value(metrics, metric, &format!("production version {version}"))?;
                if !goal.better(v, p) {
                    return Err(format!(
                        "gate failed: {metric} {v} is not better ({goal} is better) than production version {version}'s {p}"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::{Archived, Production, Staging};

    fn slots(stages: &[(u32, Stage)]) -> ModelSlots {
        ModelSlots {
            name: "sample-quality".into(),
            revision: 3,
            stages: stages.iter().copied().collect(),
            aliases: BTreeMap::new(),
        }
    }

    fn set(version: u32, stage: Stage) -> Change {
        Change::SetStage {
            version,
            stage,
            archive_previous: true,
            expect_production: None,
        }
    }

    #[test]
    fn a_new_version_moves_to_staging_alone() {
        let mut s = slots(&[(1, Stage::None)]);
        let effects = apply(&mut s, set(1, Staging)).unwrap();
        assert_eq!(
            effects,
            vec![Effect::StageChanged {
                version: 1,
                from: Stage::None,
                to: Staging
            }]
        );
        assert_eq!(s.stage_of(1), Some(Staging));
        assert_eq!(s.revision, 3, "the store bumps the revision, not apply");
    }

    #[test]
    fn promoting_to_production_archives_the_version_it_replaces_in_the_same_change() {
        let mut s = slots(&[(1, Production), (2, Staging)]);
        let effects = apply(&mut s, set(2, Production)).unwrap();
        assert_eq!(
            effects,
            vec![
                Effect::StageChanged {
                    version: 1,
                    from: Production,
                    to: Archived
                },
                Effect::StageChanged {
                    version: 2,
                    from: Staging,
                    to: Production
                },
            ]
        );
        assert_eq!(s.production(), Some(2));
        assert_eq!(s.stage_of(1), Some(Archived));
    }

    #[test]
    fn promoting_without_archiving_keeps_the_old_version_in_staging() {
        let mut s = slots(&[(1, Production), (2, Stage::None)]);
        let change = Change::SetStage {
            version: 2,
            stage: Production,
            archive_previous: false,
            expect_production: None,
        };
        apply(&mut s, change).unwrap();
        assert_eq!(s.stage_of(1), Some(Staging));
        assert_eq!(s.production(), Some(2));
    }

    #[test]
    fn there_is_never_more_than_one_production_version() {
        let mut s = slots(&[(1, Stage::None), (2, Stage::None), (3, Stage::None)]);
        for v in [1, 2, 3, 1, 3] {
            apply(&mut s, set(v, Production)).unwrap();
            let n = s.stages.values().filter(|st| **st == Production).count();
            assert_eq!(n, 1);
            assert_eq!(s.production(), Some(v));
        }
    }

    #[test]
    fn a_change_that_is_already_true_moves_nothing() {
        let mut s = slots(&[(1, Production)]);
        assert_eq!(apply(&mut s, set(1, Production)).unwrap(), vec![]);
        assert_eq!(s.stage_of(1), Some(Production));
    }

    #[test]
    fn a_production_version_can_be_archived_leaving_none_in_production() {
        let mut s = slots(&[(1, Production)]);
        apply(&mut s, set(1, Archived)).unwrap();
        assert_eq!(s.production(), None);
    }

    #[test]
    fn an_archived_version_can_return_to_staging() {
        let mut s = slots(&[(1, Archived)]);
        apply(&mut s, set(1, Staging)).unwrap();
        assert_eq!(s.stage_of(1), Some(Staging));
    }

    #[test]
    fn an_unknown_version_is_refused_and_nothing_changes() {
        let mut s = slots(&[(1, Production)]);
        let before = s.clone();
        let err = apply(&mut s, set(9, Production)).unwrap_err();
        assert_eq!(err.to_string(), "model 'sample-quality' has no version 9");
        assert_eq!(s, before);
    }

    #[test]
    fn a_decision_made_against_another_production_version_is_refused() {
        // Two promotions approved against version 1 race: the first stores
        // its change, the second reads the new slots and must not silently
        // replace what it never compared against.
        let mut s = slots(&[(1, Production), (2, Staging), (3, Staging)]);
        let decided = |version| Change::SetStage {
            version,
            stage: Production,
            archive_previous: true,
            expect_production: Some(Some(1)),
        };
        apply(&mut s, decided(2)).unwrap();
        let before = s.clone();
        let err = apply(&mut s, decided(3)).unwrap_err();
        assert_eq!(
            err,
            Rejection::ProductionChanged {
                name: "sample-quality".into(),
                expected: Some(1),
                found: Some(2)
            }
        );
        assert!(err.to_string().contains("from version 1 to version 2"));
        assert_eq!(s, before);
    }

    #[test]
    fn a_decision_made_with_nothing_in_production_expects_nothing_there() {
        let mut s = slots(&[(1, Staging), (2, Staging)]);
        let first = Change::SetStage {
            version: 1,
            stage: Production,
            archive_previous: true,
            expect_production: Some(None),
        };
        apply(&mut s, first).unwrap();
        let second = Change::SetStage {
            version: 2,
            stage: Production,
            archive_previous: true,
            expect_production: Some(None),
        };
        assert!(matches!(
            apply(&mut s, second),
            Err(Rejection::ProductionChanged { found: Some(1), .. })
        ));
    }

    #[test]
    fn an_alias_is_set_then_moved_then_deleted() {
        let mut s = slots(&[(1, Staging), (2, Staging)]);
        let set_alias = |version| Change::SetAlias {
            alias: "champion".into(),
            version,
        };
        assert_eq!(
            apply(&mut s, set_alias(1)).unwrap(),
            vec![Effect::AliasSet {
                alias: "champion".into(),
                from: None,
                to: 1
            }]
        );
        assert_eq!(
            apply(&mut s, set_alias(2)).unwrap(),
            vec![Effect::AliasSet {
                alias: "champion".into(),
                from: Some(1),
                to: 2
            }]
        );
        assert_eq!(apply(&mut s, set_alias(2)).unwrap(), vec![]);
        assert_eq!(s.aliases_of(2), vec!["champion"]);
        assert_eq!(
            apply(
                &mut s,
                Change::DeleteAlias {
                    alias: "champion".into()
                }
            )
            .unwrap(),
            vec![Effect::AliasDeleted {
                alias: "champion".into(),
                version: 2
            }]
        );
        assert!(s.aliases.is_empty());
    }

    #[test]
    fn an_alias_names_exactly_one_version() {
        let mut s = slots(&[(1, Staging), (2, Staging)]);
        for (alias, v) in [("champion", 1), ("challenger", 2), ("champion", 2)] {
            apply(
                &mut s,
                Change::SetAlias {
                    alias: alias.into(),
                    version: v,
                },
            )
            .unwrap();
        }
        assert_eq!(s.aliases.len(), 2);
        assert_eq!(s.aliases_of(1), Vec::<&str>::new());
        assert_eq!(s.aliases_of(2), vec!["challenger", "champion"]);
    }

    #[test]
    fn aliases_are_independent_of_stages() {
        let mut s = slots(&[(1, Production), (2, Staging)]);
        apply(
            &mut s,
            Change::SetAlias {
                alias: "champion".into(),
                version: 1,
            },
        )
        .unwrap();
        apply(&mut s, set(2, Production)).unwrap();
        assert_eq!(s.aliases["champion"], 1, "archiving does not move an alias");
    }

    #[test]
    fn an_alias_on_an_unknown_version_or_an_unknown_alias_is_refused() {
        let mut s = slots(&[(1, Staging)]);
        let err = apply(
            &mut s,
            Change::SetAlias {
                alias: "champion".into(),
                version: 4,
            },
        )
        .unwrap_err();
        assert!(matches!(err, Rejection::UnknownVersion { version: 4, .. }));
        let err = apply(
            &mut s,
            Change::DeleteAlias {
                alias: "champion".into(),
            },
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "model 'sample-quality' has no alias 'champion'"
        );
        assert!(s.aliases.is_empty());
    }

    #[test]
    fn alias_names_are_checked_and_version_words_are_reserved() {
        for ok in ["champion", "challenger", "a", "prod-2024_q1", "v2a", "va"] {
            validate_alias(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("", "1 to 64"),
            ("Champion", "lowercase letter"),
            ("2nd", "lowercase letter"),
            ("cham pion", "contains ' '"),
            ("a/b", "contains '/'"),
            ("latest", "reserved"),
            ("v2", "reserved"),
            ("v10", "reserved"),
        ] {
            let err = validate_alias(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(validate_alias(&"a".repeat(MAX_ALIAS_LEN)).is_ok());
        let long = validate_alias(&"a".repeat(MAX_ALIAS_LEN + 1))
            .unwrap_err()
            .to_string();
        assert!(
            !long.contains("aaa"),
            "an over-long alias is not quoted: {long}"
        );
        // Asking for a version by its reserved words is a request's right.
        assert_eq!(check_alias_shape("latest"), Ok(()));
        assert_eq!(check_alias_shape("v2"), Ok(()));
    }

    #[test]
    fn only_production_needs_approval() {
        let needing: Vec<Stage> = Stage::ALL
            .iter()
            .copied()
            .filter(|s| s.needs_approval())
            .collect();
        assert_eq!(needing, vec![Production]);
    }

    fn metrics(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn a_threshold_gate_holds_at_its_bound_in_the_metric_s_direction() {
        let auc = |value| Gate::Threshold {
            metric: "auc".into(),
            value,
            goal: Goal::Higher,
        };
        let rmse = |value| Gate::Threshold {
            metric: "rmse".into(),
            value,
            goal: Goal::Lower,
        };
        let m = metrics(&[("auc", 0.8), ("rmse", 0.5)]);
        assert!(check_gates(&[auc(0.8), rmse(0.5)], &m, None).is_ok());
        let err = check_gates(&[auc(0.81)], &m, None).unwrap_err();
        assert_eq!(err, "gate failed: auc 0.8 is not at least 0.81");
        let err = check_gates(&[rmse(0.4)], &m, None).unwrap_err();
        assert_eq!(err, "gate failed: rmse 0.5 is not at most 0.4");
    }

    #[test]
    fn a_better_than_production_gate_compares_with_the_production_version() {
        let gate = [Gate::BetterThanProduction {
            metric: "rmse".into(),
            goal: Goal::Lower,
        }];
        let candidate = metrics(&[("rmse", 0.5)]);
        let worse = metrics(&[("rmse", 0.6)]);
        let better = metrics(&[("rmse", 0.4)]);
        assert!(check_gates(&gate, &candidate, Some((1, &worse))).is_ok());
        let err = check_gates(&gate, &candidate, Some((1, &better))).unwrap_err();
        assert!(err.contains("production version 1's 0.4"), "{err}");
        // A tie is not better.
        assert!(check_gates(&gate, &candidate, Some((1, &candidate))).is_err());
        // Nothing in production: nothing to beat.
        assert!(check_gates(&gate, &candidate, None).is_ok());
    }

    #[test]
    fn a_gate_on_a_metric_that_was_not_recorded_fails_naming_it() {
        let gate = [Gate::BetterThanProduction {
            metric: "auc".into(),
            goal: Goal::Higher,
        }];
        // Even with nothing in production: the gate could never be judged.
        let err = check_gates(&gate, &metrics(&[("rmse", 0.5)]), None).unwrap_err();
        assert_eq!(err, "the candidate has no recorded auc");
        let err = check_gates(
            &gate,
            &metrics(&[("auc", 0.9)]),
            Some((4, &metrics(&[("auc", f64::NAN)]))),
        )
        .unwrap_err();
        assert_eq!(err, "production version 4 has no recorded auc");
        let threshold = [Gate::Threshold {
            metric: "auc".into(),
            value: 0.5,
            goal: Goal::Higher,
        }];
        let err = check_gates(&threshold, &metrics(&[]), None).unwrap_err();
        assert_eq!(err, "the candidate has no recorded auc");
    }

    #[test]
    fn tags_with_plain_keys_and_text_values_are_accepted() {
        let tags = BTreeMap::from([
            ("team".to_string(), "sequencing core".to_string()),
            ("mlflow.source/run:id".to_string(), String::new()),
        ]);
        assert_eq!(validate_tags(&tags), Ok(()));
    }

    #[test]
    fn a_tag_key_with_a_space_or_a_long_value_is_refused_by_key() {
        let spaced = BTreeMap::from([("my tag".to_string(), "x".to_string())]);
        assert!(validate_tags(&spaced).unwrap_err().contains("'my tag'"));
        let long = BTreeMap::from([("note".to_string(), "x".repeat(MAX_TAG_VALUE + 1))]);
        let err = validate_tags(&long).unwrap_err();
        assert!(err.contains("'note'") && !err.contains("xxx"), "{err}");
        let many: BTreeMap<String, String> = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(validate_tags(&many).is_err());
        let control = BTreeMap::from([("k".to_string(), "a\u{7}b".to_string())]);
        assert!(validate_tags(&control).is_err());
    }
}
