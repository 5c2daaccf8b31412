use super::*;
use serde_json::json;

fn spec(value: serde_json::Value) -> FeatureSpec {
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}"))
}

fn stored(catalog: &mut BTreeMap<String, FeatureVersion>, s: serde_json::Value) -> FeatureVersion {
    let r = register(&spec(s), "feature", &*catalog).unwrap_or_else(|e| panic!("{e}"));
    let v = r.version().clone();
    catalog.insert(v.name.clone(), v.clone());
    v
}

fn invalid(catalog: &BTreeMap<String, FeatureVersion>, s: serde_json::Value) -> String {
    match register(&spec(s), "feature", catalog) {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn registering_the_same_definition_twice_is_one_version() {
    let mut c = BTreeMap::new();
    let body = json!({"name": "rin", "entity_type": "sample", "value_type": "float"});
    let v1 = stored(&mut c, body.clone());
    assert_eq!(v1.version, 1);
    let again = register(&spec(body), "feature", &c).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, Registration::Unchanged(v1));
}

#[test]
fn metadata_is_not_part_of_a_version_and_computation_is() {
    let mut c = BTreeMap::new();
    let v1 = stored(
        &mut c,
        json!({"name": "rin", "entity_type": "sample", "value_type": "float"}),
    );
    let edited = register(
        &spec(
            json!({"name": "rin", "entity_type": "sample", "value_type": "float",
                     "description": "RNA integrity", "owner": "lab-a", "tags": ["qc"]}),
        ),
        "feature",
        &c,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(edited, Registration::Unchanged(v1.clone()));
    for change in [
        json!({"ttl": "30d"}),
        json!({"sensitivity": "sensitive"}),
        json!({"value_type": "int"}),
    ] {
        let mut body = json!({"name": "rin", "entity_type": "sample", "value_type": "float"});
        for (k, v) in change.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        match register(&spec(body), "feature", &c) {
            Ok(Registration::NewVersion(v2)) => {
                assert_eq!(v2.version, 2, "{change}");
                assert_ne!(v2.digest, v1.digest);
            }
            other => panic!("{change}: {other:?}"),
        }
    }
}

#[test]
fn a_derived_feature_pins_what_it_reads_and_a_new_input_version_is_a_new_version() {
    let mut c = BTreeMap::new();
    stored(
        &mut c,
        json!({"name": "volume_ml", "entity_type": "sample", "value_type": "float"}),
    );
    stored(
        &mut c,
        json!({"name": "conc", "entity_type": "sample", "value_type": "float"}),
    );
    let body = json!({"name": "yield_ug", "entity_type": "sample",
                      "source": {"kind": "expression", "expression": "volume_ml * conc"}});
    let d1 = stored(&mut c, body.clone());
    assert_eq!(d1.value_type, ValueType::Float);
    assert_eq!(
        d1.depends_on,
        BTreeMap::from([("conc".into(), 1), ("volume_ml".into(), 1)])
    );
    stored(
        &mut c,
        json!({"name": "conc", "entity_type": "sample", "value_type": "float", "ttl": 3600}),
    );
    match register(&spec(body), "feature", &c) {
        Ok(Registration::NewVersion(d2)) => {
            assert_eq!(d2.version, 2);
            assert_eq!(d2.depends_on["conc"], 2);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bad_expression_is_invalid_and_points_at_the_error() {
    let mut c = BTreeMap::new();
    stored(
        &mut c,
        json!({"name": "volume_ml", "entity_type": "sample", "value_type": "float"}),
    );
    stored(
        &mut c,
        json!({"name": "fill", "entity_type": "location", "value_type": "float"}),
    );
    let m = invalid(
        &c,
        json!({"name": "x", "entity_type": "sample",
                               "source": {"kind": "expression", "expression": "volume_ml * fill"}}),
    );
    assert!(
        m.starts_with("feature.source.expression: at column 13: unknown feature `fill`"),
        "{m}"
    );
    assert!(m.ends_with("volume_ml * fill\n              ^"), "{m}");
}

#[test]
fn a_feature_cannot_depend_on_itself_through_others() {
    let mut c = BTreeMap::new();
    stored(
        &mut c,
        json!({"name": "a", "entity_type": "sample", "value_type": "float"}),
    );
    stored(
        &mut c,
        json!({"name": "b", "entity_type": "sample", "source": {"kind": "expression", "expression": "a + 1"}}),
    );
    let m = invalid(
        &c,
        json!({"name": "a", "entity_type": "sample",
                               "source": {"kind": "expression", "expression": "b * 2"}}),
    );
    assert!(m.contains("cannot depend on itself"), "{m}");
    let m = invalid(
        &c,
        json!({"name": "c", "entity_type": "sample",
                               "source": {"kind": "expression", "expression": "c + 1"}}),
    );
    assert!(m.contains("unknown feature `c`"), "{m}");
}

#[test]
fn lab_features_are_typed_and_belong_to_samples() {
    let mut c = BTreeMap::new();
    let v = stored(
        &mut c,
        json!({"name": "age", "entity_type": "sample",
                                  "source": {"kind": "lab", "feature": "sample_age_days"}}),
    );
    assert_eq!(v.value_type, ValueType::Float);
    let v = stored(
        &mut c,
        json!({"name": "delay_cat", "entity_type": "sample",
                                  "source": {"kind": "lab", "feature": "processing_delay_category"}}),
    );
    assert_eq!(v.value_type, ValueType::String);
    let m = invalid(
        &c,
        json!({"name": "x", "entity_type": "sample", "source": {"kind": "lab", "feature": "age"}}),
    );
    assert!(
        m.starts_with("feature.source.feature: `age` is not a lab feature (known: sample_type,"),
        "{m}"
    );
    let m = invalid(
        &c,
        json!({"name": "x", "entity_type": "unit", "source": {"kind": "lab", "feature": "rin"}}),
    );
    assert!(
        m.starts_with("feature.entity_type: lab features belong to"),
        "{m}"
    );
    let m = invalid(
        &c,
        json!({"name": "x", "entity_type": "sample", "value_type": "bool",
                               "source": {"kind": "lab", "feature": "rin"}}),
    );
    assert!(
        m.contains("does not match the computed type `float`"),
        "{m}"
    );
}

#[test]
fn every_field_is_checked_and_named() {
    let c = BTreeMap::new();
    let cases = [
        (
            json!({"name": "Bad Name", "entity_type": "sample", "value_type": "float"}),
            "feature.name:",
        ),
        (
            json!({"name": "x", "entity_type": "", "value_type": "float"}),
            "feature.entity_type:",
        ),
        (
            json!({"name": "x", "entity_type": "sample"}),
            "feature.value_type: required",
        ),
        (
            json!({"name": "x", "entity_type": "sample", "value_type": "float", "ttl": 0}),
            "feature.ttl: must be positive",
        ),
        (
            json!({"name": "x", "entity_type": "sample", "value_type": "float", "ttl": 999_999_999_999u64}),
            "feature.ttl: at most",
        ),
        (
            json!({"name": "x", "entity_type": "sample", "value_type": "float", "tags": [""]}),
            "feature.tags[0]:",
        ),
        (
            json!({"name": "x".repeat(65), "entity_type": "sample", "value_type": "float"}),
            "feature.name:",
        ),
    ];
    for (body, prefix) in cases {
        let m = invalid(&c, body.clone());
        assert!(m.starts_with(prefix), "{body}: {m}");
    }
}

#[test]
fn a_feature_keeps_its_entity_type() {
    let mut c = BTreeMap::new();
    stored(
        &mut c,
        json!({"name": "x", "entity_type": "sample", "value_type": "float"}),
    );
    match register(
        &spec(json!({"name": "x", "entity_type": "unit", "value_type": "float"})),
        "feature",
        &c,
    ) {
        Err(Error::Conflict(m)) => assert!(m.contains("belongs to entity type `sample`"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn durations_read_as_seconds_or_text() {
    assert_eq!(parse_duration("90"), Ok(90));
    assert_eq!(parse_duration("15m"), Ok(900));
    assert_eq!(parse_duration("36h"), Ok(129_600));
    assert_eq!(parse_duration("30d"), Ok(2_592_000));
    assert_eq!(parse_duration("2w"), Ok(1_209_600));
    assert!(parse_duration("3 fortnights").is_err());
    assert!(parse_duration("h").is_err());
    assert!(parse_duration("99999999999999999999d").is_err());
    let s: FeatureSpec =
        spec(json!({"name": "x", "entity_type": "s", "value_type": "int", "ttl": "1d"}));
    assert_eq!(s.ttl, Some(Ttl(86_400)));
    assert!(serde_json::from_value::<FeatureSpec>(
        json!({"name": "x", "entity_type": "s", "ttl": "1y"})
    )
    .is_err());
}
