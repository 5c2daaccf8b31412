//! Feature definitions: what a user registers, how it is validated, and
//! when a registration makes a new version.
//!
//! A feature's *version* is everything that decides its values: entity
//! type, value type, ttl, sensitivity and how it is computed (for a derived
//! feature, including the versions of the features it reads). Changing any
//! of those makes a new version; the old one stays as it was forever, so a
//! model trained on it can always be reproduced. Description, owner and
//! tags are the feature's, not a version's: editing them changes no value.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracseq_core::{Error, Result};

use crate::expr;

/// Longest feature, entity type or feature set name.
pub const MAX_NAME_CHARS: usize = 64;
/// Most tags on one feature.
pub const MAX_TAGS: usize = 32;
/// Longest ttl: ten years, in seconds.
pub const MAX_TTL_SECONDS: u64 = 10 * 366 * 86_400;

/// The entity type the built-in lab features belong to.
pub const SAMPLE_ENTITY: &str = "sample";

/// A feature's stored type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Float,
    Int,
    Bool,
    String,
}

impl ValueType {
    pub fn as_str(self) -> &'static str {
        match self {
            ValueType::Float => "float",
            ValueType::Int => "int",
            ValueType::Bool => "bool",
            ValueType::String => "string",
        }
    }
}

/// How carefully a feature's values are handled. `Sensitive` values are
/// encrypted at rest and every read of them is audited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Public,
    #[default]
    Internal,
    Sensitive,
}

/// How a feature's values come to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Values are sent in (`/features/ingest`, CSV, Parquet) as they are.
    Ingested,
    /// One of the built-in lab features, computed from raw lab events
    /// (`/events`) by the same code the sample-quality generator uses.
    Lab { feature: String },
    /// A safe expression over other features of the same entity type.
    Expression { expression: String },
}

/// What a user sends to register a feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    pub entity_type: String,
    /// Required for ingested features; inferred (and checked when given)
    /// for lab and expression features.
    #[serde(default)]
    pub value_type: Option<ValueType>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// How long a value stays valid after its event time: seconds, or a
    /// duration text such as `"36h"` or `"30d"`. Absent: forever.
    #[serde(default)]
    pub ttl: Option<Ttl>,
    #[serde(default)]
    pub sensitivity: Sensitivity,
    #[serde(default = "ingested")]
    pub source: Source,
}

fn ingested() -> Source {
    Source::Ingested
}

/// A ttl in seconds, written as a number of seconds or a duration text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "u64")]
pub struct Ttl(pub u64);

impl From<Ttl> for u64 {
    fn from(t: Ttl) -> u64 {
        t.0
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Seconds(s) => Ok(Ttl(s)),
            Raw::Text(t) => parse_duration(&t)
                .map(Ttl)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `"90s"`, `"15m"`, `"36h"`, `"30d"`, `"2w"` or plain seconds.
pub fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        format!("`{text}` is not a duration: write seconds or e.g. \"36h\", \"30d\"")
    })?;
    let scale = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "`{other}` is not a duration unit (use s, m, h, d or w)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

/// A registered version of a feature: immutable once stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureVersion {
    pub name: String,
    pub version: u32,
    pub entity_type: String,
    pub value_type: ValueType,
    pub ttl_seconds: Option<u64>,
    pub sensitivity: Sensitivity,
    pub source: Source,
    /// For an expression: the feature versions it reads, by name.
    #[serde(default)]
    pub depends_on: BTreeMap<String, u32>,
    /// SHA-256 over everything above but `version`: equal digests, equal
    /// values.
    pub digest: String,
}

impl FeatureVersion {
    /// `name@version`, the way feature sets and lineage name a version.
    pub fn key(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// The feature's editable metadata, shared by all its versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    pub description: String,
    pub owner: String,
    pub tags: Vec<String>,
}

/// What a registration does.
#[derive(Debug, Clone, PartialEq)]
pub enum Registration {
    /// The definition equals the latest version's: nothing new (metadata
    /// may still be updated).
    Unchanged(FeatureVersion),
    /// A new version to store.
    NewVersion(FeatureVersion),
}

impl Registration {
    pub fn version(&self) -> &FeatureVersion {
        match self {
            Registration::Unchanged(v) | Registration::NewVersion(v) => v,
        }
    }
}

/// The latest version of each feature an expression may read, by name.
pub trait Catalog {
    fn latest(&self, name: &str) -> Option<&FeatureVersion>;
    /// Every feature of `entity_type`, latest versions.
    fn of_entity_type(&self, entity_type: &str) -> Vec<&FeatureVersion>;
}

impl Catalog for BTreeMap<String, FeatureVersion> {
    fn latest(&self, name: &str) -> Option<&FeatureVersion> {
        self.get(name)
    }

    fn of_entity_type(&self, entity_type: &str) -> Vec<&FeatureVersion> {
        self.values()
            .filter(|v| v.entity_type == entity_type)
            .collect()
    }
}

/// Checks a name: lower-case letters, digits and `_`, starting with a
/// letter, at most [`MAX_NAME_CHARS`].
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{field}: `{}` is not a name: use 1 to {MAX_NAME_CHARS} lower-case letters, digits and `_`, starting with a letter",
            tracseq_core::error::excerpt(name, 80)
        )))
    }
}

fn lab_value_type(feature: &str) -> Option<ValueType> {
    tracseq_learn::lab::feature_index(feature).map(|_| match feature {
        "sample_type" | "processing_delay_category" => ValueType::String,
        "freeze_thaw_cycles" => ValueType::Int,
        _ => ValueType::Float,
    })
}

/// Validates `spec` (its fields named under `field`, e.g. `features[2]`)
/// against the catalog and decides whether it makes a new version.
pub fn register(spec: &FeatureSpec, field: &str, catalog: &dyn Catalog) -> Result<Registration> {
    let invalid =
        |what: &str, message: String| Error::Invalid(format!("{field}.{what}: {message}"));
    validate_name(&format!("{field}.name"), &spec.name)?;
    validate_name(&format!("{field}.entity_type"), &spec.entity_type)?;
    if spec.tags.len() > MAX_TAGS {
        return Err(invalid("tags", format!("at most {MAX_TAGS} tags")));
    }
    for (i, tag) in spec.tags.iter().enumerate() {
        if tag.is_empty() || tag.len() > MAX_NAME_CHARS || tag.chars().any(char::is_control) {
            return Err(invalid(
                &format!("tags[{i}]"),
                format!("a tag is 1 to {MAX_NAME_CHARS} printable characters"),
            ));
        }
    }
    for (what, text, max) in [
        ("description", &spec.description, 4_000),
        ("owner", &spec.owner, 200),
    ] {
        if text.len() > max {
            return Err(invalid(what, format!("at most {max} bytes")));
        }
    }
    let ttl_seconds = match spec.ttl {
        Some(Ttl(0)) => {
            return Err(invalid(
                "ttl",
                "must be positive; leave it out for values that never expire".into(),
            ))
        }
        Some(Ttl(s)) if s > MAX_TTL_SECONDS => {
            return Err(invalid(
                "ttl",
                format!("at most {MAX_TTL_SECONDS} seconds (ten years)"),
            ))
        }
        Some(Ttl(s)) => Some(s),
        None => None,
    };
    let (value_type, depends_on) = match &spec.source {
        Source::Ingested => {
            let vt = spec.value_type.ok_or_else(|| {
                invalid(
                    "value_type",
                    "required for an ingested feature: float, int, bool or string".into(),
                )
            })?;
            (vt, BTreeMap::new())
        }
        Source::Lab { feature } => {
            let Some(vt) = lab_value_type(feature) else {
                return Err(invalid(
                    "source.feature",
                    format!(
                        "`{}` is not a lab feature (known: {})",
                        tracseq_core::error::excerpt(feature, 80),
                        tracseq_learn::lab::FEATURES.join(", ")
                    ),
                ));
            };
            if spec.entity_type != SAMPLE_ENTITY {
                return Err(invalid(
                    "entity_type",
                    format!("lab features belong to entity type `{SAMPLE_ENTITY}`"),
                ));
            }
            (vt, BTreeMap::new())
        }
        Source::Expression { expression } => {
            let readable: BTreeMap<String, ValueType> = catalog
                .of_entity_type(&spec.entity_type)
                .into_iter()
                .filter(|v| v.name != spec.name)
                .map(|v| (v.name.clone(), v.value_type))
                .collect();
            let parsed = expr::parse(expression)
                .map_err(|e| invalid("source.expression", e.render(expression)))?;
            let (ty, reads) = expr::check(&parsed, &readable)
                .map_err(|e| invalid("source.expression", e.render(expression)))?;
            let mut depends_on = BTreeMap::new();
            for name in reads {
                let Some(v) = catalog.latest(&name) else {
                    continue;
                };
                if reads_feature(catalog, v, &spec.name) {
                    return Err(invalid(
                        "source.expression",
                        format!(
                            "`{name}` is derived from `{}`: a feature cannot depend on itself",
                            spec.name
                        ),
                    ));
                }
                depends_on.insert(name, v.version);
            }
            (ty.value_type(), depends_on)
        }
    };
    if let Some(given) = spec.value_type {
        let compatible =
            given == value_type || (given == ValueType::Float && value_type == ValueType::Int);
        if !compatible {
            return Err(invalid(
                "value_type",
                format!(
                    "`{}` does not match the computed type `{}`",
                    given.as_str(),
                    value_type.as_str()
                ),
            ));
        }
    }
    let value_type = spec.value_type.unwrap_or(value_type);
    let latest = catalog.latest(&spec.name);
    if let Some(l) = latest {
        if l.entity_type != spec.entity_type {
            return Err(Error::Conflict(format!(
                "{field}.entity_type: feature `{}` belongs to entity type `{}`; register a new name for `{}`",
                spec.name, l.entity_type, spec.entity_type
            )));
        }
    }
    let mut version = FeatureVersion {
        name: spec.name.clone(),
        version: latest.map_or(1, |l| l.version + 1),
        entity_type: spec.entity_type.clone(),
        value_type,
        ttl_seconds,
        sensitivity: spec.sensitivity,
        source: spec.source.clone(),
        depends_on,
        digest: String::new(),
    };
    version.digest = digest(&version);
    Ok(match latest {
        Some(l) if l.digest == version.digest => Registration::Unchanged(l.clone()),
        _ => Registration::NewVersion(version),
    })
}

/// Whether `version` reads `target`, directly or through other derived
/// features (latest versions).
fn reads_feature(catalog: &dyn Catalog, version: &FeatureVersion, target: &str) -> bool {
    let mut stack: Vec<&str> = version.depends_on.keys().map(String::as_str).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(name) = stack.pop() {
        if name == target {
            return true;
        }
        if seen.insert(name) {
            if let Some(v) = catalog.latest(name) {
                stack.extend(v.depends_on.keys().map(String::as_str));
            }
        }
    }
    false
}

/// The digest of a version's definition (everything but its number).
pub fn digest(v: &FeatureVersion) -> String {
    let canonical = serde_json::json!({
        "entity_type": v.entity_type,
        "value_type": v.value_type,
        "ttl_seconds": v.ttl_seconds,
        "sensitivity": v.sensitivity,
        "source": v.source,
        "depends_on": v.depends_on,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
#[path = "definition_tests.rs"]
mod tests;
