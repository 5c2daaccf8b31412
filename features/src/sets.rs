//! Feature sets: named, versioned groups of feature versions, the unit
//! models are trained and served on.
//!
//! A set's version pins each member's feature version, so "the model was
//! trained on `sample_quality@3`" names exactly which computations produced
//! its inputs. Registering the same members again is not a new version;
//! adding, removing or re-pinning one is.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracseq_core::{Error, Result};

use crate::definition::{validate_name, FeatureVersion};

/// Most features in one set.
pub const MAX_SET_FEATURES: usize = 1_000;

/// What a user sends to register a feature set. Each member is a feature
/// name (its latest version) or `name@version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSetSpec {
    pub name: String,
    pub features: Vec<String>,
    #[serde(default)]
    pub description: String,
}

/// One member of a set version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub version: u32,
}

/// A registered, immutable version of a feature set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSetVersion {
    pub name: String,
    pub version: u32,
    pub entity_type: String,
    /// In the order the user listed them: the column order of the set's
    /// training data and of `/feature-set` answers.
    pub members: Vec<Member>,
    pub digest: String,
}

impl FeatureSetVersion {
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Parses `name` or `name@version`.
pub fn parse_member(field: &str, text: &str) -> Result<(String, Option<u32>)> {
    match text.split_once('@') {
        None => Ok((text.to_string(), None)),
        Some((name, v)) => match v.parse::<u32>() {
            Ok(n) if n >= 1 => Ok((name.to_string(), Some(n))),
            _ => Err(Error::Invalid(format!(
                "{field}: `{}` has a bad version after `@`: write `name` or `name@N` with N >= 1",
                tracseq_core::error::excerpt(text, 80)
            ))),
        },
    }
}

/// Resolves `spec` against the stored versions (`lookup(name, version)`,
/// `None` version = latest) and decides whether it is a new set version.
pub fn register_set(
    spec: &FeatureSetSpec,
    lookup: &dyn Fn(&str, Option<u32>) -> Option<FeatureVersion>,
    latest: Option<&FeatureSetVersion>,
) -> Result<(FeatureSetVersion, bool)> {
    validate_name("name", &spec.name)?;
    if spec.features.is_empty() || spec.features.len() > MAX_SET_FEATURES {
        return Err(Error::Invalid(format!(
            "features: a set holds 1 to {MAX_SET_FEATURES} features, got {}",
            spec.features.len()
        )));
    }
    let mut members = Vec::with_capacity(spec.features.len());
    let mut entity_type: Option<String> = None;
    let mut seen = BTreeSet::new();
    for (i, text) in spec.features.iter().enumerate() {
        let field = format!("features[{i}]");
        let (name, pinned) = parse_member(&field, text)?;
        validate_name(&field, &name)?;
        let Some(v) = lookup(&name, pinned) else {
            return Err(Error::Invalid(match pinned {
                Some(n) => format!("{field}: feature `{name}` has no version {n}"),
                None => format!("{field}: no feature `{name}` is registered"),
            }));
        };
        if !seen.insert(name.clone()) {
            return Err(Error::Invalid(format!("{field}: `{name}` is listed twice")));
        }
        match &entity_type {
            None => entity_type = Some(v.entity_type.clone()),
            Some(e) if *e != v.entity_type => {
                return Err(Error::Invalid(format!(
                    "{field}: `{name}` belongs to entity type `{}`, the set's first feature to `{e}`: a set serves one entity type",
                    v.entity_type
                )))
            }
            Some(_) => {}
        }
        members.push(Member {
            name,
            version: v.version,
        });
    }
    let entity_type = entity_type.unwrap_or_default();
    let digest = {
        let canonical = serde_json::json!({"entity_type": entity_type, "members": members});
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    };
    if let Some(l) = latest {
        if l.digest == digest {
            return Ok((l.clone(), false));
        }
    }
    Ok((
        FeatureSetVersion {
            name: spec.name.clone(),
            version: latest.map_or(1, |l| l.version + 1),
            entity_type,
            members,
            digest,
        },
        true,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{register, FeatureSpec, Source, ValueType};
    use std::collections::BTreeMap;

    fn catalog() -> BTreeMap<String, Vec<FeatureVersion>> {
        let mut all: BTreeMap<String, Vec<FeatureVersion>> = BTreeMap::new();
        for (name, entity) in [("age", "sample"), ("rin", "sample"), ("fill", "location")] {
            let spec = FeatureSpec {
                name: name.into(),
                entity_type: entity.into(),
                value_type: Some(ValueType::Float),
                description: String::new(),
                owner: String::new(),
                tags: vec![],
                ttl: None,
                sensitivity: Default::default(),
                source: Source::Ingested,
            };
            let empty: BTreeMap<String, FeatureVersion> = BTreeMap::new();
            let v = register(&spec, "f", &empty).map(|r| r.version().clone());
            all.entry(name.into()).or_default().extend(v);
        }
        // A second version of `age`.
        if let Some(age) = all.get_mut("age") {
            let mut v2 = age[0].clone();
            v2.version = 2;
            v2.ttl_seconds = Some(60);
            age.push(v2);
        }
        all
    }

    fn lookup_in(
        all: &BTreeMap<String, Vec<FeatureVersion>>,
    ) -> impl Fn(&str, Option<u32>) -> Option<FeatureVersion> + '_ {
        move |name, version| {
            let vs = all.get(name)?;
            match version {
                None => vs.last().cloned(),
                Some(n) => vs.iter().find(|v| v.version == n).cloned(),
            }
        }
    }

    fn spec(features: &[&str]) -> FeatureSetSpec {
        FeatureSetSpec {
            name: "quality".into(),
            features: features.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
        }
    }

    #[test]
    fn a_set_pins_the_latest_version_unless_one_is_named() {
        let all = catalog();
        let lookup = lookup_in(&all);
        let (v, new) =
            register_set(&spec(&["age", "rin"]), &lookup, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(new);
        assert_eq!(v.version, 1);
        assert_eq!(v.entity_type, "sample");
        assert_eq!(
            v.members,
            [
                Member {
                    name: "age".into(),
                    version: 2
                },
                Member {
                    name: "rin".into(),
                    version: 1
                }
            ]
        );
        let (pinned, _) =
            register_set(&spec(&["age@1", "rin"]), &lookup, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pinned.members[0].version, 1);
    }

    #[test]
    fn the_same_members_again_are_not_a_new_version_and_a_change_is() {
        let all = catalog();
        let lookup = lookup_in(&all);
        let (v1, _) =
            register_set(&spec(&["age", "rin"]), &lookup, None).unwrap_or_else(|e| panic!("{e}"));
        let (again, new) = register_set(&spec(&["age@2", "rin@1"]), &lookup, Some(&v1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!new);
        assert_eq!(again, v1);
        let (v2, new) = register_set(&spec(&["age@1", "rin"]), &lookup, Some(&v1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(new);
        assert_eq!(v2.version, 2);
        let (reordered, new) = register_set(&spec(&["rin", "age"]), &lookup, Some(&v1))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(new, "column order is part of the set");
        assert_eq!(reordered.version, 2);
    }

    #[test]
    fn bad_sets_are_rejected_naming_the_member() {
        let all = catalog();
        let lookup = lookup_in(&all);
        let message = |features: &[&str]| match register_set(&spec(features), &lookup, None) {
            Err(Error::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(message(&[]).starts_with("features:"));
        assert!(message(&["age", "nope"]).starts_with("features[1]: no feature `nope`"));
        assert!(message(&["age@3"]).contains("has no version 3"));
        assert!(message(&["age@0"]).contains("bad version"));
        assert!(message(&["age", "age@1"]).contains("listed twice"));
        assert!(message(&["age", "fill"]).contains("one entity type"));
    }
}
