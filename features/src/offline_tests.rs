//! The offline engine against the point-in-time rule: hand-made tables
//! with their answers written out, and random histories compared with
//! [`crate::pit::join`].

use super::*;
use crate::pit::{self, Observation};
use crate::testing::Lcg;
use object_store::memory::InMemory;
use serde_json::json;

const H: i64 = 3_600 * time::MICROS_PER_SECOND;

fn t(hours: i64) -> Micros {
    // 2025-03-01T00:00:00Z plus `hours` (negative hours cross into
    // February: several day partitions).
    1_740_787_200 * time::MICROS_PER_SECOND + hours * H
}

fn v(entity: &str, feature: &str, value: Value, event_h: i64, ingested_h: i64) -> ValueRow {
    ValueRow {
        entity: entity.into(),
        feature: feature.into(),
        value,
        event_time: t(event_h),
        ingested_at: t(ingested_h),
    }
}

fn feature(key: &str, value_type: ValueType, ttl_h: Option<i64>) -> JoinFeature {
    JoinFeature {
        key: key.into(),
        value_type,
        ttl: ttl_h.map(|h| h * H),
    }
}

fn store() -> OfflineStore {
    OfflineStore::new(Arc::new(InMemory::new()), "features")
}

async fn join_rows(
    s: &OfflineStore,
    rows: &[(&str, i64)],
    features: &[JoinFeature],
    exclude: bool,
) -> Vec<Vec<Value>> {
    let entities: Vec<String> = rows.iter().map(|(e, _)| e.to_string()).collect();
    let times: Vec<Micros> = rows.iter().map(|(_, h)| t(*h)).collect();
    let j = s
        .join("sample", &entities, &times, features, exclude)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (0..rows.len()).map(|i| j.row(i, features)).collect()
}

#[tokio::test]
async fn the_join_follows_feasts_rule_on_a_hand_made_table() {
    let s = store();
    s.append(
        "sample",
        &[
            // temperature: a tie at 10 h corrected at 12 h, then a value at 20 h.
            v("S1", "temp@1", json!(1.0), 10, 10),
            v("S1", "temp@1", json!(1.5), 10, 12),
            v("S1", "temp@1", json!(2.0), 20, 20),
            // fill: a 5 h ttl.
            v("S1", "fill@1", json!(0.5), 10, 10),
            // rin: backfilled at 30 h for an event at -30 h (another day).
            v("S1", "rin@1", json!(7.5), -30, 30),
            // kind: text, another entity.
            v("S2", "kind@1", json!("blood"), -50, -50),
            // a stored null retracts the earlier value.
            v("S2", "temp@1", json!(3.0), 1, 1),
            v("S2", "temp@1", Value::Null, 2, 2),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let features = [
        feature("temp@1", ValueType::Float, None),
        feature("fill@1", ValueType::Float, Some(5)),
        feature("rin@1", ValueType::Float, None),
        feature("kind@1", ValueType::String, None),
    ];
    let rows = [
        ("S1", 9),
        ("S1", 10),
        ("S1", 15),
        ("S1", 16),
        ("S2", 1),
        ("S2", 3),
        ("nobody", 100),
        ("S1", 25),
    ];
    let n = Value::Null;
    assert_eq!(
        join_rows(&s, &rows, &features, false).await,
        vec![
            vec![n.clone(), n.clone(), json!(7.5), n.clone()], // S1 @ 9: only the backfilled rin
            vec![json!(1.5), json!(0.5), json!(7.5), n.clone()], // @ 10: the later ingestion wins the tie
            vec![json!(1.5), json!(0.5), json!(7.5), n.clone()], // @ 15: fill exactly at its ttl's edge
            vec![json!(1.5), n.clone(), json!(7.5), n.clone()],  // @ 16: fill expired
            vec![json!(3.0), n.clone(), n.clone(), json!("blood")], // S2 @ 1
            vec![n.clone(), n.clone(), n.clone(), json!("blood")], // S2 @ 3: retracted
            vec![n.clone(), n.clone(), n.clone(), n.clone()],    // unknown entity: kept, all null
            vec![json!(2.0), n.clone(), json!(7.5), n.clone()],  // S1 @ 25
        ]
    );
    // Excluding what was ingested after each row's time: the 12 h
    // correction is unknown at 10 h, the rin backfill until 30 h.
    assert_eq!(
        join_rows(&s, &[("S1", 10), ("S1", 12), ("S1", 31)], &features, true).await,
        vec![
            vec![json!(1.0), json!(0.5), n.clone(), n.clone()],
            vec![json!(1.5), json!(0.5), n.clone(), n.clone()],
            vec![json!(2.0), n.clone(), json!(7.5), n.clone()],
        ]
    );
}

#[tokio::test]
async fn an_entity_type_without_values_answers_nulls_and_types_are_kept() {
    let s = store();
    let f = [
        feature("flag@1", ValueType::Bool, None),
        feature("count@1", ValueType::Int, None),
    ];
    assert_eq!(
        join_rows(&s, &[("S1", 0)], &f, false).await,
        vec![vec![Value::Null, Value::Null]]
    );
    s.append(
        "sample",
        &[
            v("S1", "flag@1", json!(true), 0, 0),
            v("S1", "count@1", json!(3), 0, 0),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        join_rows(&s, &[("S1", 0)], &f, false).await,
        vec![vec![json!(true), json!(3)]]
    );
}

#[tokio::test]
async fn random_histories_join_exactly_as_the_reference_rule() {
    let mut rng = Lcg(11);
    for round in 0..6 {
        let s = store();
        let features = [
            feature("a@1", ValueType::Float, None),
            feature("b@1", ValueType::Float, Some(1 + rng.next(30) as i64)),
            feature("c@2", ValueType::String, Some(48)),
        ];
        let entities = ["e0", "e1", "e2", "e3", "e4"];
        let mut values = Vec::new();
        for _ in 0..400 {
            let f = &features[rng.next(3) as usize];
            let event = rng.next(200) as i64 - 100;
            // Mostly on time, sometimes late, ties on purpose (few hours).
            let ingested = event
                + if rng.next(4) == 0 {
                    rng.next(100) as i64
                } else {
                    0
                };
            let value = match (f.value_type, rng.next(10)) {
                (_, 0) => Value::Null,
                (ValueType::String, k) => json!(format!("v{k}")),
                (_, k) => json!(k as f64 / 2.0),
            };
            let mut row = v(
                entities[rng.next(5) as usize],
                &f.key,
                value,
                event,
                ingested,
            );
            // Ingestion times are unique (the store stamps each batch, and
            // a batch holds one value per entity, feature and event time).
            row.ingested_at += values.len() as i64;
            values.push(row);
        }
        // In several batches, as ingestion would write them.
        for chunk in values.chunks(97) {
            s.append("sample", chunk)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let rows: Vec<(&str, i64)> = (0..150)
            .map(|_| {
                (
                    entities[rng.next(6).min(4) as usize],
                    rng.next(260) as i64 - 120,
                )
            })
            .collect();
        let mut histories: Vec<pit::FeatureHistory> = vec![Default::default(); 3];
        for r in &values {
            let i = features
                .iter()
                .position(|f| f.key == r.feature)
                .unwrap_or(0);
            histories[i]
                .entry(r.entity.clone())
                .or_default()
                .push(Observation {
                    event_time: r.event_time,
                    ingested_at: r.ingested_at,
                    value: r.value.clone(),
                });
        }
        for h in &mut histories {
            for o in h.values_mut() {
                pit::sort(o);
            }
        }
        let pairs: Vec<(&pit::FeatureHistory, Option<i64>)> = histories
            .iter()
            .zip(&features)
            .map(|(h, f)| (h, f.ttl))
            .collect();
        let reference_rows: Vec<(String, i64)> =
            rows.iter().map(|(e, h)| (e.to_string(), t(*h))).collect();
        for exclude in [false, true] {
            let want = pit::join(&reference_rows, &pairs, exclude);
            let got = join_rows(&s, &rows, &features, exclude).await;
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g, w,
                    "round {round}, exclude {exclude}, row {i} {:?}",
                    rows[i]
                );
            }
        }
    }
}
