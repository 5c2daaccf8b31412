use super::*;
use crate::pit::{self, AsOf, Observation};
use crate::testing::Lcg;
use serde_json::{json, Value};
use tracseq_learn::lab::{
    feature_index, lab_features, LabSample, LabValue, TemperatureStats, FEATURES,
};

const HOUR: i64 = 3_600 * MICROS_PER_SECOND;
const T0: &str = "2025-03-01T00:00:00Z";

fn t0() -> Micros {
    time::parse("t0", T0).unwrap_or_default()
}

fn at(hours: i64) -> String {
    time::format(t0() + hours * HOUR)
}

fn event(v: Value) -> LabEvent {
    serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
}

fn checked(v: Value) -> Checked {
    event(v)
        .check("event", i64::MAX / 2)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A sample's story: collected, received, processed, measured, stored in a
/// -80 °C freezer at a location, readings (one warm), a fill level, a thaw.
fn story() -> Vec<Value> {
    vec![
        json!({"type": "sample_collected", "sample": "S-1", "at": at(0), "sample_type": "rna_extract", "volume_ml": 0.1}),
        json!({"type": "sample_received", "sample": "S-1", "at": at(5)}),
        json!({"type": "location_fill", "location": "F1/R2", "at": at(6), "fill_fraction": 0.9}),
        json!({"type": "sample_processed", "sample": "S-1", "at": at(30)}),
        json!({"type": "sample_measured", "sample": "S-1", "at": at(31), "concentration_ng_ul": 50.0, "purity_260_280": 1.9, "rin": 7.5}),
        json!({"type": "sample_moved", "sample": "S-1", "at": at(32), "storage_unit": "F1", "target_temperature_c": -80.0, "location": "F1/R2"}),
        json!({"type": "temperature_reading", "storage_unit": "F1", "at": at(33), "temperature_c": -79.0}),
        json!({"type": "temperature_reading", "storage_unit": "F2", "at": at(33), "temperature_c": 20.0}),
        json!({"type": "temperature_reading", "storage_unit": "F1", "at": at(34), "temperature_c": -76.0}),
        json!({"type": "location_fill", "location": "F1/R2", "at": at(35), "fill_fraction": 0.95}),
        json!({"type": "sample_thawed", "sample": "S-1", "at": at(40)}),
        json!({"type": "temperature_reading", "storage_unit": "F1", "at": at(41), "temperature_c": -81.0}),
    ]
}

/// Runs events through a processor; every emission becomes a stored value
/// ingested at its arrival position (as the store would stamp it).
fn run(events: &[Value]) -> (LabProcessor, Vec<pit::FeatureHistory>) {
    let mut p = LabProcessor::default();
    let mut histories: Vec<pit::FeatureHistory> = vec![Default::default(); 18];
    for (arrival, e) in events.iter().enumerate() {
        for emission in p.apply(checked(e.clone())) {
            for (i, v) in emission.features {
                histories[i]
                    .entry(emission.sample.clone())
                    .or_default()
                    .push(Observation {
                        event_time: emission.event_time,
                        ingested_at: arrival as i64,
                        value: v.to_json(),
                    });
            }
        }
    }
    for h in &mut histories {
        for o in h.values_mut() {
            pit::sort(o);
        }
    }
    (p, histories)
}

fn visible(histories: &[pit::FeatureHistory], sample: &str, time: Micros) -> Vec<Value> {
    let as_of = AsOf {
        time,
        ttl: None,
        exclude_ingested_after: false,
    };
    histories
        .iter()
        .map(|h| {
            h.get(sample)
                .and_then(|o| pit::latest(o, &as_of))
                .map_or(Value::Null, |o| o.value.clone())
        })
        .collect()
}

#[test]
fn events_compute_the_lab_features_with_the_generators_function() {
    let (p, histories) = run(&story());
    let mut expected = LabSample {
        sample_type: Some("rna_extract".into()),
        collected_at: Some(time::to_naive(t0())),
        processed_at: Some(time::to_naive(t0() + 30 * HOUR)),
        temperature: TemperatureStats::default(),
        freeze_thaw_cycles: 1,
        volume_ml: Some(0.1),
        concentration_ng_ul: Some(50.0),
        purity_260_280: Some(1.9),
        purity_260_230: None,
        rin: Some(7.5),
        transport_time_hours: Some(5.0),
        storage_fill_fraction: Some(0.95),
    };
    for r in [-79.0, -76.0, -81.0] {
        expected.temperature.push(r, -80.0);
    }
    assert_eq!(p.state("S-1").map(|f| &f.sample), Some(&expected));
    let want: Vec<Value> = lab_features(&expected, time::to_naive(t0() + 41 * HOUR))
        .iter()
        .map(LabValue::to_json)
        .collect();
    assert_eq!(visible(&histories, "S-1", t0() + 41 * HOUR), want);
    // The F2 reading concerned another unit; the fill known before the
    // move applies from the move on.
    let at_move = visible(&histories, "S-1", t0() + 32 * HOUR);
    let i = |n: &str| feature_index(n).unwrap_or(0);
    assert_eq!(at_move[i("storage_utilization")], json!(0.9));
    assert_eq!(
        at_move[i("temperature_deviation")],
        Value::Null,
        "no reading yet"
    );
    assert_eq!(at_move[i("processing_delay_category")], json!("next_day"));
    assert_eq!(at_move[i("sample_age_days")], json!(32.0 / 24.0));
    let after_first = visible(&histories, "S-1", t0() + 33 * HOUR);
    assert_eq!(after_first[i("temperature_deviation")], json!(1.0));
    assert_eq!(after_first[i("freeze_thaw_cycles")], json!(0.0));
    assert_eq!(FEATURES.len(), want.len());
}

#[test]
fn any_arrival_order_gives_the_timeline_of_the_ordered_one() {
    let ordered = story();
    let (_, reference) = run(&ordered);
    // Reversed, and a few interleavings: each late event is corrected.
    let mut orders: Vec<Vec<Value>> = vec![ordered.iter().rev().cloned().collect()];
    for shift in [1, 3, 5, 7] {
        let mut o = ordered.clone();
        o.rotate_left(shift);
        orders.push(o);
    }
    let mut swapped = ordered.clone();
    swapped.swap(5, 9); // the fill at 35 h arrives before the move at 32 h
    swapped.swap(2, 11);
    orders.push(swapped);
    for (n, order) in orders.iter().enumerate() {
        let (p, histories) = run(order);
        for h in (0..45).map(|h| t0() + h * HOUR) {
            assert_eq!(
                visible(&histories, "S-1", h),
                visible(&reference, "S-1", h),
                "order {n} at {}",
                time::format(h)
            );
        }
        let (q, _) = run(&ordered);
        assert_eq!(p.state("S-1"), q.state("S-1"), "order {n}");
    }
}

#[test]
fn a_reading_fans_out_to_the_samples_in_the_unit_only() {
    let mut events = vec![];
    for (s, unit) in [("A", "F1"), ("B", "F1"), ("C", "F2")] {
        events.push(json!({"type": "sample_moved", "sample": s, "at": at(0), "storage_unit": unit, "target_temperature_c": 4.0}));
    }
    events.push(json!({"type": "sample_moved", "sample": "B", "at": at(2), "storage_unit": "F2", "target_temperature_c": 4.0}));
    let mut p = LabProcessor::default();
    for e in &events {
        p.apply(checked(e.clone()));
    }
    let out = p.apply(checked(json!({"type": "temperature_reading", "storage_unit": "F1", "at": at(3), "temperature_c": 6.0})));
    let samples: Vec<&str> = out.iter().map(|e| e.sample.as_str()).collect();
    assert_eq!(
        samples,
        ["A"],
        "B left F1 before the reading; C was never in it"
    );
    assert_eq!(p.samples(), 3);
}

#[test]
fn a_reading_sent_twice_counts_twice_from_its_time_on() {
    let (_, once) = run(&story());
    let mut twice = story();
    twice.push(story()[6].clone()); // the 33 h reading again
    let (_, again) = run(&twice);
    // A duplicate reading is a second reading (the LIMS sent it twice):
    // it counts, from its time on, like any other late reading.
    let i = feature_index("temperature_deviation").unwrap_or(0);
    assert_ne!(
        visible(&again, "S-1", t0() + 41 * HOUR)[i],
        visible(&once, "S-1", t0() + 41 * HOUR)[i]
    );
    assert_eq!(
        visible(&again, "S-1", t0() + 32 * HOUR),
        visible(&once, "S-1", t0() + 32 * HOUR)
    );
}

#[test]
fn bad_events_are_rejected_naming_the_field() {
    let now = t0();
    let cases = [
        (
            json!({"type": "sample_thawed", "sample": "", "at": at(0)}),
            "events[0].sample:",
        ),
        (
            json!({"type": "sample_thawed", "sample": "S", "at": "noon"}),
            "events[0].at:",
        ),
        (
            json!({"type": "sample_thawed", "sample": "S", "at": at(1)}),
            "events[0].at: 2025-03-01T01:00:00.000000Z is in the future",
        ),
        (
            json!({"type": "location_fill", "location": "L", "at": at(0), "fill_fraction": 1.5}),
            "events[0].fill_fraction: 1.5 is outside",
        ),
        (
            json!({"type": "temperature_reading", "storage_unit": "F", "at": at(0), "temperature_c": -300.0}),
            "events[0].temperature_c:",
        ),
        (
            json!({"type": "sample_measured", "sample": "S", "at": at(0)}),
            "events[0]: a sample_measured event needs",
        ),
        (
            json!({"type": "sample_measured", "sample": "S", "at": at(0), "rin": 11.0}),
            "events[0].rin:",
        ),
        (
            json!({"type": "sample_moved", "sample": "S", "at": at(0), "storage_unit": "F\u{7}", "target_temperature_c": 4.0}),
            "events[0].storage_unit:",
        ),
    ];
    for (body, prefix) in cases {
        match event(body.clone()).check("events[0]", now) {
            Err(tracseq_core::Error::Invalid(m)) => assert!(m.starts_with(prefix), "{body}: {m}"),
            other => panic!("{body}: {other:?}"),
        }
    }
    assert!(serde_json::from_value::<LabEvent>(
        json!({"type": "sample_sneezed", "sample": "S", "at": T0})
    )
    .is_err());
    assert!(serde_json::from_value::<LabEvent>(
        json!({"type": "sample_thawed", "sample": "S", "at": T0, "extra": 1})
    )
    .is_err());
}

fn random_story(rng: &mut Lcg, n: usize) -> Vec<Value> {
    let samples = ["A", "B", "C"];
    let units = ["F1", "F2"];
    let locations = ["L1", "L2"];
    // Distinct minutes, so that the time order is total.
    let mut minutes: Vec<i64> = (0..600).collect();
    for i in (1..minutes.len()).rev() {
        minutes.swap(i, rng.next(i as u64 + 1) as usize);
    }
    let at_min = |m: i64| time::format(t0() + m * 60 * MICROS_PER_SECOND);
    (0..n)
        .map(|i| {
            let at = at_min(minutes[i]);
            let s = samples[rng.next(3) as usize];
            match rng.next(8) {
                0 => json!({"type": "sample_collected", "sample": s, "at": at, "sample_type": "blood", "volume_ml": 1 + rng.next(5)}),
                1 => json!({"type": "sample_received", "sample": s, "at": at}),
                2 => json!({"type": "sample_processed", "sample": s, "at": at}),
                3 => json!({"type": "sample_measured", "sample": s, "at": at, "purity_260_280": 1.5 + rng.next(50) as f64 / 100.0}),
                4 => json!({"type": "sample_moved", "sample": s, "at": at, "storage_unit": units[rng.next(2) as usize],
                            "target_temperature_c": 4.0, "location": locations[rng.next(2) as usize]}),
                5 => json!({"type": "sample_thawed", "sample": s, "at": at}),
                6 => json!({"type": "location_fill", "location": locations[rng.next(2) as usize], "at": at, "fill_fraction": rng.next(100) as f64 / 100.0}),
                _ => json!({"type": "temperature_reading", "storage_unit": units[rng.next(2) as usize], "at": at, "temperature_c": rng.next(12) as f64}),
            }
        })
        .collect()
}

#[test]
fn shuffled_random_stories_end_in_the_timeline_of_the_ordered_story() {
    let mut rng = Lcg(7);
    for round in 0..150 {
        let story = random_story(&mut rng, 50);
        let mut ordered = story.clone();
        ordered.sort_by_key(|e| {
            time::parse("at", e["at"].as_str().unwrap_or_default()).unwrap_or_default()
        });
        let (p, reference) = run(&ordered);
        let (q, got) = run(&story);
        for s in ["A", "B", "C"] {
            for m in (0..620).step_by(5) {
                let t = t0() + m * 60 * MICROS_PER_SECOND;
                assert_eq!(
                    visible(&got, s, t),
                    visible(&reference, s, t),
                    "round {round}, sample {s}, minute {m}"
                );
            }
            assert_eq!(p.state(s), q.state(s), "round {round}, sample {s}");
        }
    }
}
