use super::*;
use serde_json::{json, Map, Value};

fn env() -> BTreeMap<String, ValueType> {
    [
        ("volume_ml", ValueType::Float),
        ("concentration_ng_ul", ValueType::Float),
        ("freeze_thaw_cycles", ValueType::Int),
        ("sample_type", ValueType::String),
        ("flagged", ValueType::Bool),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn compile(src: &str) -> Result<(Expr, Type, Vec<String>), ExprError> {
    let e = parse(src)?;
    let (t, reads) = check(&e, &env())?;
    Ok((e, t, reads))
}

fn run(src: &str, values: Value) -> Value {
    let (e, _, _) = compile(src).unwrap_or_else(|e| panic!("{}", e.render(src)));
    let map: Map<String, Value> = values.as_object().cloned().unwrap_or_default();
    eval(&e, &map)
}

fn error(src: &str) -> ExprError {
    match compile(src) {
        Err(e) => e,
        Ok(_) => panic!("`{src}` should not compile"),
    }
}

#[test]
fn arithmetic_follows_the_usual_precedence() {
    let none = json!({});
    assert_eq!(run("1 + 2 * 3", none.clone()), json!(7.0));
    assert_eq!(run("(1 + 2) * 3", none.clone()), json!(9.0));
    assert_eq!(run("-2 ^ 2", none.clone()), json!(-4.0));
    assert_eq!(run("2 ^ 3 ^ 2", none.clone()), json!(512.0));
    assert_eq!(run("10 - 4 - 3", none.clone()), json!(3.0));
    assert_eq!(run("1.5e2 / 3", none), json!(50.0));
}

#[test]
fn features_are_read_by_name_and_listed_once() {
    let (_, t, reads) =
        compile("volume_ml * concentration_ng_ul / volume_ml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t, Type::Number);
    assert_eq!(reads, ["concentration_ng_ul", "volume_ml"]);
    assert_eq!(
        run(
            "volume_ml * concentration_ng_ul",
            json!({"volume_ml": 0.5, "concentration_ng_ul": 40})
        ),
        json!(20.0)
    );
}

#[test]
fn missing_inputs_and_undefined_results_are_null() {
    assert_eq!(run("volume_ml * 2", json!({})), Value::Null);
    assert_eq!(
        run("volume_ml * 2", json!({"volume_ml": null})),
        Value::Null
    );
    assert_eq!(run("1 / 0", json!({})), Value::Null);
    assert_eq!(run("ln(0)", json!({})), Value::Null);
    assert_eq!(run("sqrt(-1)", json!({})), Value::Null);
    assert_eq!(run("coalesce(volume_ml, 1)", json!({})), json!(1.0));
    assert_eq!(run("is_null(volume_ml)", json!({})), json!(true));
}

#[test]
fn logic_is_three_valued_like_sql() {
    assert_eq!(run("flagged and false", json!({})), json!(false));
    assert_eq!(run("flagged or true", json!({})), json!(true));
    assert_eq!(run("flagged and true", json!({})), Value::Null);
    assert_eq!(run("not flagged", json!({"flagged": true})), json!(false));
}

#[test]
fn functions_and_comparisons_compute() {
    let v = json!({"freeze_thaw_cycles": 3, "sample_type": "tissue"});
    assert_eq!(
        run("if(freeze_thaw_cycles >= 3, 'high', 'low')", v.clone()),
        json!("high")
    );
    assert_eq!(
        run(
            "sample_type == 'tissue' and freeze_thaw_cycles != 2",
            v.clone()
        ),
        json!(true)
    );
    assert_eq!(
        run("clamp(freeze_thaw_cycles, 0, 2)", v.clone()),
        json!(2.0)
    );
    assert_eq!(run("max(1, freeze_thaw_cycles, 2)", v.clone()), json!(3.0));
    assert_eq!(run("min(abs(-4), 5)", v.clone()), json!(4.0));
    assert_eq!(run("exp(1)", json!({})), json!(1f64.exp()));
    assert_eq!(run("log10(1000)", v), json!(3.0));
}

#[test]
fn an_unknown_feature_points_at_it_and_suggests_the_nearest_name() {
    let e = error("2 * volume_m");
    assert_eq!(e.column, 5);
    assert!(
        e.message.contains("unknown feature `volume_m`"),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("did you mean `volume_ml`"),
        "{}",
        e.message
    );
    assert_eq!(e.render("2 * volume_m"), "at column 5: unknown feature `volume_m` (did you mean `volume_ml`?)\n  2 * volume_m\n      ^");
}

#[test]
fn type_errors_name_the_operand_and_its_column() {
    let e = error("volume_ml + sample_type");
    assert_eq!(e.column, 13);
    assert!(
        e.message.contains("must be a number, this is text"),
        "{}",
        e.message
    );
    let e = error("if(volume_ml, 1, 2)");
    assert_eq!(e.column, 4);
    assert!(e.message.contains("condition"), "{}", e.message);
    let e = error("if(flagged, 1, 'x')");
    assert!(e.message.contains("third argument"), "{}", e.message);
    let e = error("'a' + 1");
    assert_eq!(e.column, 5, "a literal's error points at its operator");
    assert!(error("sample_type == 1").message.contains("right side"));
}

#[test]
fn syntax_errors_point_at_the_problem() {
    let cases: [(&str, usize, &str); 11] = [
        ("", 1, "empty"),
        ("1 +", 4, "end of the expression"),
        ("(1 + 2", 7, "to close the `(` at column 1"),
        ("1 2", 3, "expected an operator"),
        ("1 < 2 < 3", 7, "do not chain"),
        ("volume_ml $ 2", 11, "unexpected character `$`"),
        ("'open", 1, "unterminated"),
        ("foo(1)", 1, "unknown function `foo`"),
        ("ln(1, 2)", 1, "takes 1 arguments, got 2"),
        ("clamp(1)", 1, "takes 3 arguments"),
        ("null + 1", 1, "is_null"),
    ];
    for (src, column, words) in cases {
        let e = error(src);
        assert_eq!(e.column, column, "`{src}`: {e}");
        assert!(e.message.contains(words), "`{src}`: {e}");
    }
}

#[test]
fn hostile_inputs_are_bounded() {
    let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
    assert!(error(&deep).message.contains("nested deeper"));
    let negs = format!("{}1", "-".repeat(500));
    assert!(error(&negs).message.contains("nested deeper"));
    let long = "1 + ".repeat(600) + "1";
    assert!(error(&long).message.contains("longer than"));
    let e = error("1e999");
    assert!(e.message.contains("not a number"), "{e}");
}
