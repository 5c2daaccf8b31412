//! Tests of the hyperparameter tables and their parsing (the exact messages
//! and the search space's text are golden tests, `ml/tests/params_golden.rs`).

use super::*;
use crate::error::LearnError;

fn parse(v: Value) -> Result<ModelParams> {
    match v {
        Value::Object(m) => ModelParams::from_map(&m),
        _ => Err(invalid("not an object")),
    }
}

#[test]
fn parses_both_families_with_defaults() {
    assert_eq!(
        parse(json!({"family": "linear", "linear_l2": 0.5})).ok(),
        Some(ModelParams::Linear(LinearParams { l2: 0.5 }))
    );
    let p = parse(
        json!({"family": "gbm", "gbm_iterations": 200.0, "gbm_max_depth": 3, "linear_l2": 1.0}),
    );
    let Ok(ModelParams::Gbm(g)) = p else {
        panic!("{p:?}")
    };
    assert_eq!(g.iterations, 200);
    assert_eq!(g.max_depth, 3);
    assert_eq!(g.learning_rate, GbmParams::default().learning_rate);
    assert_eq!(parse(json!({})).ok().map(|p| p.family()), Some(Family::Gbm));
}

#[test]
fn bad_params_name_the_parameter() {
    let cases = [
        (json!({"family": "forest"}), "family"),
        (
            json!({"family": "gbm", "gbm_max_depth": 2.5}),
            "gbm_max_depth",
        ),
        (
            json!({"family": "gbm", "gbm_subsample": 0.0}),
            "gbm_subsample",
        ),
        (json!({"family": "linear", "linear_l2": "big"}), "linear_l2"),
        (json!({"family": "linear", "linear_l2": -1.0}), "linear_l2"),
        (json!({"family": "gbm", "gbm_depth": 3}), "gbm_depth"),
    ];
    for (v, name) in cases {
        match parse(v) {
            Err(LearnError::Invalid(m)) => assert!(m.contains(name), "{m}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn search_space_covers_every_known_parameter_and_parses_at_bounds() {
    let space = default_search_space();
    let Some(space) = space.as_object() else {
        panic!("space is an object")
    };
    for name in known_names().filter(|n| *n != "family") {
        // Every family's parameters are known to every build (so a typo
        // check never hides the real error) but sampled only where the
        // family can train.
        let Some(family) = Family::ALL
            .into_iter()
            .find(|f| name.starts_with(f.prefix()))
        else {
            panic!("{name} has no family prefix")
        };
        assert_eq!(space.contains_key(name), family.available(), "{name}");
    }
    for family in Family::ALL.into_iter().filter(|f| f.available()) {
        for bound in ["low", "high"] {
            let mut m = Map::new();
            m.insert("family".into(), json!(family.name()));
            let prefix = family.prefix();
            for (name, spec) in space.iter().filter(|(n, _)| n.starts_with(prefix)) {
                let value = match spec.get(bound) {
                    Some(v) => v.clone(),
                    None => spec["choices"][0].clone(),
                };
                m.insert(name.clone(), value);
            }
            let parsed = ModelParams::from_map(&m);
            assert!(parsed.is_ok(), "{family:?} {bound}: {parsed:?}");
        }
    }
}

#[test]
fn nn_params_parse_or_name_the_missing_feature() {
    let p = parse(json!({"family": "nn", "nn_width": 32, "nn_batch_norm": false}));
    if NN_AVAILABLE {
        let Ok(ModelParams::Nn(nn)) = p else {
            panic!("{p:?}")
        };
        assert_eq!(nn.width, 32);
        assert!(!nn.batch_norm);
        assert_eq!(nn.layers, NnParams::default().layers);
        let cases = [
            (json!({"family": "nn", "nn_dropout": 1.0}), "nn_dropout"),
            (
                json!({"family": "nn", "nn_batch_norm": "yes"}),
                "nn_batch_norm",
            ),
            (json!({"family": "nn", "nn_layers": 0}), "nn_layers"),
            (json!({"family": "nn", "nn_width": 4096}), "nn_width"),
            (
                json!({"family": "nn", "nn_learning_rate": 0.0}),
                "nn_learning_rate",
            ),
            (json!({"family": "nn", "nn_epochs": 1.5}), "nn_epochs"),
            (json!({"family": "nn", "nn_batch_size": 1}), "nn_batch_size"),
            (
                json!({"family": "nn", "nn_weight_decay": -0.1}),
                "nn_weight_decay",
            ),
        ];
        for (v, name) in cases {
            match parse(v) {
                Err(LearnError::Invalid(m)) => assert!(m.contains(name), "{m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        // Without batch norm a batch of one row is fine.
        assert!(parse(json!({"family": "nn", "nn_batch_size": 1, "nn_batch_norm": false})).is_ok());
    } else {
        match p {
            Err(LearnError::Invalid(m)) => assert!(m.contains("`torch` feature"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn tables_name_each_parameter_once_with_the_family_prefix() {
    let mut seen = std::collections::HashSet::new();
    for family in Family::ALL {
        assert!(!specs(family).is_empty(), "{family:?}");
        for spec in specs(family) {
            assert!(spec.name.starts_with(family.prefix()), "{}", spec.name);
            assert!(seen.insert(spec.name), "{} twice", spec.name);
            assert!(
                !spec.doc.is_empty() && !spec.doc.starts_with(' ') && !spec.doc.contains('\n'),
                "{}: {:?}",
                spec.name,
                spec.doc
            );
        }
    }
    assert_eq!(known_names().count(), seen.len() + 1);
}

#[test]
fn defaults_are_accepted_and_searched_within_range() {
    for family in Family::ALL {
        for spec in specs(family) {
            let ok = match (spec.accepts, spec.search) {
                (
                    Accepts::Int { default, low, high },
                    Search::Int {
                        low: l,
                        high: h,
                        step,
                        ..
                    },
                ) => {
                    (low..=high).contains(&default)
                        && low <= l
                        && l <= h
                        && h <= high
                        && step.is_none_or(|s| s > 0 && (h - l) % s == 0)
                }
                (
                    Accepts::Float { default, low, high },
                    Search::Float {
                        low: l,
                        high: h,
                        log,
                    },
                ) => {
                    (low..=high).contains(&default)
                        && low <= l
                        && l < h
                        && h <= high
                        && (!log || l > 0.0)
                }
                (Accepts::Bool { .. }, Search::Bools(choices)) => !choices.is_empty(),
                _ => false,
            };
            assert!(ok, "{}: {:?} {:?}", spec.name, spec.accepts, spec.search);
        }
    }
}

#[test]
fn defaults_come_from_the_tables() {
    /// A family's `Default` and what it parses from no parameters at all,
    /// both as the JSON its stored params use.
    fn defaults<P: Default + Serialize>(
        from_map: fn(&Map<String, Value>) -> Result<P>,
    ) -> (Value, Option<Value>) {
        let json = |p: &P| serde_json::to_value(p).unwrap_or_default();
        (
            json(&P::default()),
            from_map(&Map::new()).ok().as_ref().map(json),
        )
    }
    for family in Family::ALL {
        let (default, parsed) = match family {
            Family::Linear => defaults(LinearParams::from_map),
            Family::Gbm => defaults(GbmParams::from_map),
            Family::Nn => defaults(NnParams::from_map),
            Family::Lightgbm => defaults(LightgbmParams::from_map),
            Family::RandomForest => defaults(RandomForestParams::from_map),
            Family::Xgboost => defaults(XgboostParams::from_map),
        };
        assert_eq!(parsed.as_ref(), Some(&default), "{family:?}");
        // Each field holds its row's default, under the row's name less the
        // family prefix (the name the stored params use).
        let Value::Object(fields) = default else {
            panic!("{family:?}: {default:?}")
        };
        assert_eq!(fields.len(), specs(family).len(), "{family:?}");
        for spec in specs(family) {
            let expected = match spec.accepts {
                Accepts::Int { default, .. } => json!(default),
                Accepts::Float { default, .. } => json!(default),
                Accepts::Bool { default } => json!(default),
            };
            let field = spec.name.strip_prefix(family.prefix()).unwrap_or_default();
            assert_eq!(fields.get(field), Some(&expected), "{}", spec.name);
        }
    }
}
