//! The point-in-time rule on hand-made histories, each answer written out.

use super::*;
use serde_json::json;

const H: i64 = 3_600_000_000; // one hour in microseconds

fn obs(event_h: i64, ingested_h: i64, value: Value) -> Observation {
    Observation {
        event_time: event_h * H,
        ingested_at: ingested_h * H,
        value,
    }
}

fn history(entries: Vec<(&str, Vec<Observation>)>) -> FeatureHistory {
    entries
        .into_iter()
        .map(|(e, mut o)| {
            sort(&mut o);
            (e.to_string(), o)
        })
        .collect()
}

fn rows(r: &[(&str, i64)]) -> Vec<(String, i64)> {
    r.iter().map(|(e, h)| (e.to_string(), h * H)).collect()
}

#[test]
fn a_row_sees_the_latest_value_at_or_before_its_time_and_never_a_later_one() {
    let temp = history(vec![(
        "s1",
        vec![
            obs(10, 10, json!(1.0)),
            obs(20, 20, json!(2.0)),
            obs(30, 30, json!(3.0)),
        ],
    )]);
    let out = join(
        &rows(&[("s1", 5), ("s1", 10), ("s1", 25), ("s1", 30), ("s1", 99)]),
        &[(&temp, None)],
        false,
    );
    assert_eq!(
        out,
        vec![
            vec![Value::Null], // before the first event: nothing known
            vec![json!(1.0)],  // exactly at an event time: that event counts
            vec![json!(2.0)],
            vec![json!(3.0)],
            vec![json!(3.0)],
        ]
    );
}

#[test]
fn an_event_time_tie_goes_to_the_later_ingestion() {
    // Two corrections of the 10:00 reading, sent at 11:00 and 12:00, and
    // listed out of order.
    let temp = history(vec![(
        "s1",
        vec![
            obs(10, 12, json!("late fix")),
            obs(10, 10, json!("first")),
            obs(10, 11, json!("fix")),
        ],
    )]);
    let out = join(&rows(&[("s1", 10), ("s1", 20)]), &[(&temp, None)], false);
    assert_eq!(out, vec![vec![json!("late fix")], vec![json!("late fix")]]);
}

#[test]
fn ttl_bounds_are_inclusive_and_an_expired_value_is_null() {
    let fill = history(vec![("loc", vec![obs(10, 10, json!(0.5))])]);
    let ttl = Some(5 * H);
    let out = join(
        &rows(&[("loc", 10), ("loc", 15), ("loc", 16)]),
        &[(&fill, ttl)],
        false,
    );
    // 15 - 5 = 10: the value at 10 is exactly at the ttl's edge and counts;
    // at 16 it is older than the ttl and the row is null.
    assert_eq!(
        out,
        vec![vec![json!(0.5)], vec![json!(0.5)], vec![Value::Null]]
    );
}

#[test]
fn an_expired_latest_value_does_not_fall_back_to_an_even_older_one() {
    let fill = history(vec![(
        "loc",
        vec![obs(1, 1, json!(0.1)), obs(2, 2, json!(0.2))],
    )]);
    let out = join(&rows(&[("loc", 10)]), &[(&fill, Some(3 * H))], false);
    assert_eq!(out, vec![vec![Value::Null]]);
}

#[test]
fn late_data_counts_by_event_time_unless_ingested_after_the_row() {
    // A reading taken at 10:00 arrived at 30:00 (a backfill); the 20:00
    // reading arrived on time.
    let temp = history(vec![(
        "s1",
        vec![
            obs(20, 20, json!("on time")),
            obs(10, 30, json!("backfilled")),
            obs(25, 40, json!("very late")),
        ],
    )]);
    let r = rows(&[("s1", 15), ("s1", 26), ("s1", 50)]);
    assert_eq!(
        join(&r, &[(&temp, None)], false),
        vec![
            vec![json!("backfilled")],
            vec![json!("very late")],
            vec![json!("very late")]
        ],
        "by event time alone, the backfill answers the 15:00 row"
    );
    assert_eq!(
        join(&r, &[(&temp, None)], true),
        vec![
            vec![Value::Null],        // at 15:00 nothing about 10:00 was known yet
            vec![json!("on time")],   // the 25:00 value was not known at 26:00
            vec![json!("very late")], // by 50:00 everything was
        ],
        "excluding values ingested after the row's time"
    );
}

#[test]
fn the_ingestion_filter_and_ttl_combine() {
    let temp = history(vec![(
        "s1",
        vec![obs(10, 10, json!(1)), obs(18, 30, json!(2))],
    )]);
    // At 20 with a 5 h ttl: the 18:00 value is in the window but unknown
    // until 30:00; the 10:00 value is known but expired.
    let out = join(&rows(&[("s1", 20)]), &[(&temp, Some(5 * H))], true);
    assert_eq!(out, vec![vec![Value::Null]]);
}

#[test]
fn rows_without_values_are_kept_in_order_with_nulls_per_feature() {
    let a = history(vec![("s1", vec![obs(1, 1, json!(1))])]);
    let b = history(vec![("s2", vec![obs(1, 1, json!("x"))])]);
    let out = join(
        &rows(&[("s2", 5), ("unknown", 5), ("s1", 5), ("s1", 0)]),
        &[(&a, None), (&b, None)],
        false,
    );
    assert_eq!(
        out,
        vec![
            vec![Value::Null, json!("x")],
            vec![Value::Null, Value::Null],
            vec![json!(1), Value::Null],
            vec![Value::Null, Value::Null],
        ]
    );
}

#[test]
fn a_stored_null_is_a_value_and_hides_an_older_one() {
    // The lab retracted a measurement: a null event replaces the number.
    let rin = history(vec![(
        "s1",
        vec![obs(1, 1, json!(7.5)), obs(2, 2, Value::Null)],
    )]);
    let out = join(&rows(&[("s1", 1), ("s1", 3)]), &[(&rin, None)], false);
    assert_eq!(out, vec![vec![json!(7.5)], vec![Value::Null]]);
}

#[test]
fn admits_states_the_rule_on_its_own() {
    let as_of = AsOf {
        time: 10,
        ttl: Some(4),
        exclude_ingested_after: true,
    };
    assert!(as_of.admits(10, 10));
    assert!(as_of.admits(6, 10));
    assert!(!as_of.admits(5, 10), "older than the ttl");
    assert!(!as_of.admits(11, 11), "from the future");
    assert!(!as_of.admits(8, 11), "not known yet");
}
