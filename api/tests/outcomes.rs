//! Outcomes over HTTP: the lab reports what really happened to a predicted
//! sample (by the answer's request id, or by the sample's id), the report
//! is joined to the logged prediction once, and the live metrics per
//! version and variant come from those outcomes.

mod common;

use common::{artifact_bytes, fixture, register, Fixture};
use serde_json::{json, Value};
use tracseq_core::security::Role;

/// Predicts for `entity` and waits until the answer is in the log.
async fn predict_logged(f: &Fixture, entity: &str, seed: u64) -> Value {
    let body = json!({"model": "sq", "version": 1, "entity_id": entity,
                      "features": tracseq_learn::lab::example_record(seed)});
    let answer = f.predict(&body).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let id = answer.body["request_id"].as_str().unwrap().to_string();
    for _ in 0..300 {
        let got = f
            .call(
                "GET",
                &format!("/predictions?entity_id={entity}"),
                Some(f.token(Role::Scientist)),
                "",
            )
            .await;
        if got
            .body
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p["request_id"] == id.as_str()))
        {
            return answer.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("prediction {id} never logged");
}

async fn report(f: &Fixture, body: Value) -> common::Answer {
    f.call(
        "POST",
        "/feedback",
        Some(f.token(Role::Predictor)),
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn an_outcome_joins_its_prediction_once_and_feeds_the_live_metrics() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let first = predict_logged(&f, "S-1", 1).await;
    let _older = predict_logged(&f, "S-2", 2).await;
    let newer = predict_logged(&f, "S-2", 3).await;
    let _unreported = predict_logged(&f, "S-3", 4).await;

    let by_id = report(
        &f,
        json!({"request_id": first["request_id"], "actual": 0.5}),
    )
    .await;
    assert_eq!(by_id.status, 201, "{}", by_id.body);
    assert_eq!(
        (
            &by_id.body["model"],
            &by_id.body["version"],
            &by_id.body["variant"],
            &by_id.body["reported_by"]
        ),
        (
            &json!("sq"),
            &json!(1),
            &json!("primary"),
            &json!("predictor")
        )
    );
    // By the sample: its latest prediction.
    let by_entity = report(
        &f,
        json!({"entity_id": "S-2", "model": "sq", "actual": 0.9}),
    )
    .await;
    assert_eq!(by_entity.status, 201, "{}", by_entity.body);
    assert_eq!(by_entity.body["request_id"], newer["request_id"]);

    let again = report(
        &f,
        json!({"request_id": first["request_id"], "actual": 0.1}),
    )
    .await;
    assert_eq!(
        again.status, 409,
        "outcomes are never replaced: {}",
        again.body
    );

    let live = f
        .call("GET", "/models/sq/live", Some(f.token(Role::Viewer)), "")
        .await;
    assert_eq!(live.status, 200, "{}", live.body);
    let arm = &live.body["variants"][0];
    assert_eq!(
        (
            &arm["version"],
            &arm["variant"],
            &arm["predictions"],
            &arm["outcomes"]
        ),
        (&json!(1), &json!("primary"), &json!(4), &json!(2))
    );
    let rmse = &arm["metrics"][0];
    assert_eq!(rmse["metric"], "rmse");
    let e1 = first["value"].as_f64().unwrap() - 0.5;
    let e2 = newer["value"].as_f64().unwrap() - 0.9;
    let want = ((e1 * e1 + e2 * e2) / 2.0).sqrt();
    assert!(
        (rmse["value"].as_f64().unwrap() - want).abs() < 1e-9,
        "{rmse}"
    );
    assert_eq!(rmse["enough"], false);
    assert!(rmse["note"]
        .as_str()
        .unwrap()
        .contains("not enough outcomes yet"));

    let later = f
        .call(
            "GET",
            "/models/sq/live?since=2999-01-01T00:00:00Z",
            Some(f.token(Role::Viewer)),
            "",
        )
        .await;
    assert_eq!(later.body["variants"], json!([]));
    let denied = f
        .call("GET", "/models/sq/live", Some(f.token(Role::Predictor)), "")
        .await;
    assert_eq!(denied.status, 403);
}

#[tokio::test]
async fn bad_reports_are_refused_by_name_and_store_nothing() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let answer = predict_logged(&f, "S-1", 1).await;
    let id = answer["request_id"].clone();
    let cases = [
        (
            json!({"request_id": id, "actual": "high"}),
            400,
            "finite number",
        ),
        (json!({"request_id": id, "actual": null}), 400, "actual"),
        (json!({"request_id": id, "actual": [1]}), 400, "actual"),
        (
            json!({"request_id": id, "entity_id": "S-1", "actual": 1}),
            400,
            "exactly one",
        ),
        (json!({"actual": 1}), 400, "exactly one"),
        (
            json!({"request_id": id, "model": "other", "actual": 1}),
            400,
            "model 'other'",
        ),
        (
            json!({"request_id": "01938f7a-0000-7000-8000-000000000000", "actual": 1}),
            404,
            "prediction request",
        ),
        (json!({"entity_id": "S-404", "actual": 1}), 404, "S-404"),
        (
            json!({"entity_id": "S-1", "model": "other", "actual": 1}),
            404,
            "model 'other'",
        ),
        (
            json!({"request_id": "not-a-uuid", "actual": 1}),
            400,
            "request_id",
        ),
        (
            json!({"request_id": id, "actual": 1, "color": "red"}),
            400,
            "color",
        ),
    ];
    for (body, status, says) in cases {
        let got = report(&f, body.clone()).await;
        assert_eq!(got.status, status, "{body}: {}", got.body);
        assert!(got.body.to_string().contains(says), "{says}: {}", got.body);
    }
    let live = f
        .call("GET", "/models/sq/live", Some(f.token(Role::Viewer)), "")
        .await;
    assert_eq!(live.body["variants"][0]["outcomes"], 0);
    for bad in [
        "/models/nope/live",
        "/models/sq/live?since=soon",
        "/models/sq/live?x=1",
    ] {
        let got = f.call("GET", bad, Some(f.token(Role::Viewer)), "").await;
        assert!(matches!(got.status, 400 | 404), "{bad}: {}", got.body);
    }
}

/// The drift report, once the log holds at least 300 records of its window.
async fn drift_report(f: &Fixture, query: String) -> Value {
    for _ in 0..300 {
        let got = f
            .call(
                "GET",
                &format!("/models/sq/drift?{query}"),
                Some(f.token(Role::Viewer)),
                "",
            )
            .await;
        assert_eq!(got.status, 200, "{}", got.body);
        if got.body["live_records"].as_u64() >= Some(300) {
            return got.body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the log never held 300 records");
}

#[tokio::test]
async fn drift_compares_the_logged_features_with_the_training_profile() {
    let f = fixture().await;
    register(&f.platform, 1, &artifact_bytes(), false).await;
    let predictor = f.token(Role::Predictor);
    let send = |shift: f64, seeds: std::ops::Range<u64>| {
        let records: Vec<Value> = seeds
            .map(|s| {
                let mut r = tracseq_learn::lab::example_record(s);
                let age = r["sample_age_days"].as_f64().unwrap_or(0.0);
                r.insert("sample_age_days".into(), json!(age + shift));
                json!(r)
            })
            .collect();
        json!({"model": "sq", "version": 1, "records": records}).to_string()
    };
    let ok = f
        .call(
            "POST",
            "/batch_predict",
            Some(predictor),
            &send(0.0, 0..300),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let viewer = f.token(Role::Viewer);
    let calm = drift_report(&f, "version=1".into()).await;
    assert_eq!(calm["drifted"], json!([]), "{calm}");
    let age = calm["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["feature"] == "sample_age_days")
        .unwrap();
    assert_eq!(age["n_live"], 300);
    assert!(age["ks"]["p_value"].as_f64().is_some() && age["psi"]["value"].as_f64().is_some());

    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // Samples now arrive a year older than anything the model saw.
    let late = f
        .call(
            "POST",
            "/batch_predict",
            Some(predictor),
            &send(365.0, 300..600),
        )
        .await;
    assert_eq!(late.status, 200);
    let moved = drift_report(&f, format!("version=1&since={}", since.replace('+', "%2B"))).await;
    assert_eq!(moved["drifted"], json!(["sample_age_days"]), "{moved}");
    let bad = f
        .call("GET", "/models/sq/drift?limit=0", Some(viewer), "")
        .await;
    assert_eq!(bad.status, 400);
}
