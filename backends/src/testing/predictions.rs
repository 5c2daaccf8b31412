//! The prediction log's suite: batches stored whole or not at all, request
//! ids never logged twice, listings newest first with every filter, pages
//! that walk the log once, and retention that deletes only what is older
//! than its cutoff.

use chrono::Duration;
use serde_json::{json, Map};
use std::sync::Arc;
use tracseq_core::ids::{DeploymentId, RequestId};
use tracseq_core::paging::Page;
use tracseq_core::ports::PredictionLogStore;
use tracseq_core::predictions::{
    LiveFilter, Outcome, PredictionFilter, PredictionRecord, VariantCount, LATENCY_BOUNDS_US,
    PRIMARY,
};
use tracseq_core::Error;

use super::t0;

/// A logged prediction of `model` at `t0 + seconds`.
pub fn prediction(model: &str, seconds: i64, entity: Option<&str>) -> PredictionRecord {
    let mut features = Map::new();
    features.insert("x".into(), json!(seconds));
    features.insert("site".into(), json!("north"));
    PredictionRecord {
        request_id: RequestId::new(),
        at: t0() + Duration::seconds(seconds),
        model: model.into(),
        version: 1,
        variant: PRIMARY.into(),
        entity_id: entity.map(str::to_string),
        features: features.into(),
        output: json!({"value": 0.5 + seconds as f64 / 100.0}),
        latency_us: 120,
        caller: Some("lab-client".into()),
        deployment_id: None,
        shadow_of: None,
        error: None,
    }
}

fn of(model: &str) -> LiveFilter {
    LiveFilter::model(model, None)
}

pub async fn prediction_log_suite(s: Arc<dyn PredictionLogStore>) {
    a_batch_is_stored_whole_and_read_back_exactly(s.as_ref()).await;
    a_repeated_request_id_refuses_the_whole_batch(s.as_ref()).await;
    listings_filter_by_model_entity_and_time_newest_first(s.as_ref()).await;
    pages_walk_the_log_once(s.as_ref()).await;
    outcomes_join_their_prediction_once(s.as_ref()).await;
    counts_and_labelled_predictions_by_version_and_variant(s.as_ref()).await;
    failures_and_latencies_are_counted_per_variant_and_deployment(s.as_ref()).await;
    a_shadow_copy_is_judged_by_its_answers_outcome_and_takes_none_itself(s.as_ref()).await;
    retention_deletes_the_oldest_predictions_with_their_outcomes_in_bounded_steps(s.as_ref()).await;
    concurrent_writers_lose_nothing(s).await;
}

/// The outcome of `p` (model, version and variant copied from it).
pub fn outcome(p: &PredictionRecord, actual: serde_json::Value) -> Outcome {
    Outcome {
        request_id: p.request_id,
        model: p.model.clone(),
        version: p.version,
        variant: p.variant.clone(),
        actual,
        reported_at: p.at + Duration::hours(6),
        reported_by: Some("lims".into()),
    }
}

fn only(model: &str) -> PredictionFilter {
    PredictionFilter {
        model: Some(model.into()),
        ..Default::default()
    }
}

async fn a_batch_is_stored_whole_and_read_back_exactly(s: &dyn PredictionLogStore) {
    s.append_predictions(&[]).await.unwrap();
    let batch: Vec<_> = (0..3)
        .map(|i| prediction("exact", i, Some("S-1")))
        .collect();
    s.append_predictions(&batch).await.unwrap();
    let got = s
        .list_predictions(&only("exact"), &Page::default())
        .await
        .unwrap();
    let mut want = batch.clone();
    want.reverse();
    assert_eq!(got, want, "every field back, newest first");
}

async fn a_repeated_request_id_refuses_the_whole_batch(s: &dyn PredictionLogStore) {
    let logged = prediction("dup", 0, None);
    s.append_predictions(std::slice::from_ref(&logged))
        .await
        .unwrap();
    let fresh = prediction("dup", 1, None);
    let err = s
        .append_predictions(&[fresh.clone(), logged.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains(&logged.request_id.to_string())),
        "{err}"
    );
    let twice = s
        .append_predictions(&[fresh.clone(), fresh.clone()])
        .await
        .unwrap_err();
    assert!(matches!(twice, Error::Conflict(_)), "{twice}");
    let got = s
        .list_predictions(&only("dup"), &Page::default())
        .await
        .unwrap();
    assert_eq!(got, vec![logged], "nothing of a refused batch is stored");
}

async fn listings_filter_by_model_entity_and_time_newest_first(s: &dyn PredictionLogStore) {
    let batch = vec![
        prediction("filter-a", 0, Some("S-1")),
        prediction("filter-b", 1, Some("S-1")),
        prediction("filter-a", 2, Some("S-2")),
        prediction("filter-a", 3, None),
    ];
    s.append_predictions(&batch).await.unwrap();
    let ids = |v: Vec<PredictionRecord>| v.into_iter().map(|r| r.request_id).collect::<Vec<_>>();
    let list = |f: PredictionFilter| async move {
        ids(s.list_predictions(&f, &Page::default()).await.unwrap())
    };
    assert_eq!(
        list(only("filter-a")).await,
        vec![
            batch[3].request_id,
            batch[2].request_id,
            batch[0].request_id
        ]
    );
    let entity = PredictionFilter {
        model: Some("filter-a".into()),
        entity_id: Some("S-1".into()),
        ..Default::default()
    };
    assert_eq!(list(entity).await, vec![batch[0].request_id]);
    let since = PredictionFilter {
        model: Some("filter-a".into()),
        since: Some(t0() + Duration::seconds(2)),
        ..Default::default()
    };
    assert_eq!(
        list(since).await,
        vec![batch[3].request_id, batch[2].request_id],
        "since is inclusive"
    );
    let any_model = PredictionFilter {
        entity_id: Some("S-1".into()),
        ..Default::default()
    };
    let s1 = list(any_model).await;
    assert!(s1.contains(&batch[0].request_id) && s1.contains(&batch[1].request_id));
    assert!(list(only("no-such-model")).await.is_empty());
}

async fn pages_walk_the_log_once(s: &dyn PredictionLogStore) {
    let batch: Vec<_> = (0..7).map(|i| prediction("paged", i, None)).collect();
    s.append_predictions(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut page = Page {
        limit: 3,
        after: None,
    };
    loop {
        let got = s.list_predictions(&only("paged"), &page).await.unwrap();
        let Some(last) = got.last() else { break };
        page.after = Some(last.request_id.to_string());
        seen.extend(got.iter().map(|r| r.request_id));
        if got.len() < 3 {
            break;
        }
    }
    let want: Vec<_> = batch.iter().rev().map(|r| r.request_id).collect();
    assert_eq!(seen, want);
}

async fn concurrent_writers_lose_nothing(s: Arc<dyn PredictionLogStore>) {
    let mut handles = Vec::new();
    for w in 0..4 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            for b in 0..5 {
                let batch: Vec<_> = (0..10)
                    .map(|i| prediction("racing", w * 100 + b * 10 + i, None))
                    .collect();
                s.append_predictions(&batch).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let all = s
        .list_predictions(&only("racing"), &Page::all())
        .await
        .unwrap();
    assert_eq!(all.len(), 200);
}

async fn retention_deletes_the_oldest_predictions_with_their_outcomes_in_bounded_steps(
    s: &dyn PredictionLogStore,
) {
    // Far before every other test's records, which must all survive.
    const DAY: i64 = 86_400;
    let old: Vec<PredictionRecord> = (0..5)
        .map(|i| prediction("retention", -400 * DAY + i, Some("S-old")))
        .collect();
    let mut copy = prediction("retention", -400 * DAY + 9, None);
    copy.shadow_of = Some(old[1].request_id);
    copy.variant = "shadow".into();
    let kept = prediction("retention", -200 * DAY, Some("S-new"));
    s.append_predictions(&old).await.unwrap();
    s.append_predictions(&[copy.clone(), kept.clone()])
        .await
        .unwrap();
    s.record_outcome(&outcome(&old[1], json!(0.4)))
        .await
        .unwrap();
    s.record_outcome(&outcome(&kept, json!(0.9))).await.unwrap();
    let everyone_else = s
        .list_predictions(&PredictionFilter::default(), &Page::all())
        .await
        .unwrap()
        .len();

    let cutoff = t0() - Duration::days(300);
    assert_eq!(s.prune_predictions(cutoff, 2).await.unwrap(), 2);
    for p in &old[..2] {
        let gone = s.get_prediction(p.request_id).await.unwrap_err();
        assert!(matches!(gone, Error::NotFound(_)), "oldest first: {gone}");
    }
    assert!(s.get_prediction(old[2].request_id).await.is_ok());
    let mut steps = vec![2];
    loop {
        let n = s.prune_predictions(cutoff, 2).await.unwrap();
        steps.push(n);
        if n < 2 {
            break;
        }
    }
    assert_eq!(
        steps,
        vec![2, 2, 2, 0],
        "six old records (the copy too), two at a time"
    );
    let left = s
        .list_predictions(&only("retention"), &Page::all())
        .await
        .unwrap();
    assert_eq!(left, vec![kept.clone()]);
    let labelled = s.labelled_predictions(&of("retention"), 10).await.unwrap();
    assert_eq!(
        labelled.len(),
        1,
        "the pruned outcome went with its prediction"
    );
    assert_eq!(labelled[0].prediction, kept);
    let late = s
        .record_outcome(&outcome(&old[3], json!(0.1)))
        .await
        .unwrap_err();
    assert!(matches!(late, Error::NotFound(_)), "{late}");
    let after = s
        .list_predictions(&PredictionFilter::default(), &Page::all())
        .await
        .unwrap()
        .len();
    assert_eq!(
        after,
        everyone_else - 6,
        "nothing newer than the cutoff went"
    );
}

async fn outcomes_join_their_prediction_once(s: &dyn PredictionLogStore) {
    let p = prediction("outcome", 0, Some("S-9"));
    let missing = s.get_prediction(p.request_id).await.unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing}");
    let early = s
        .record_outcome(&outcome(&p, json!(0.7)))
        .await
        .unwrap_err();
    assert!(
        matches!(&early, Error::NotFound(m) if m.contains(&p.request_id.to_string())),
        "an outcome needs its logged prediction: {early}"
    );
    s.append_predictions(std::slice::from_ref(&p))
        .await
        .unwrap();
    assert_eq!(s.get_prediction(p.request_id).await.unwrap(), p);

    let mut wrong = outcome(&p, json!(0.7));
    wrong.version = 2;
    let err = s.record_outcome(&wrong).await.unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");

    let first = outcome(&p, json!(0.7));
    s.record_outcome(&first).await.unwrap();
    let again = s
        .record_outcome(&outcome(&p, json!(0.2)))
        .await
        .unwrap_err();
    assert!(
        matches!(again, Error::Conflict(_)),
        "never replaced: {again}"
    );
    let labelled = s.labelled_predictions(&of("outcome"), 10).await.unwrap();
    assert_eq!(labelled.len(), 1);
    assert_eq!(
        (&labelled[0].prediction, &labelled[0].outcome),
        (&p, &first)
    );
}

async fn counts_and_labelled_predictions_by_version_and_variant(s: &dyn PredictionLogStore) {
    let mut batch = Vec::new();
    for (i, (version, variant)) in [(1, "a"), (1, "a"), (1, "b"), (2, "a"), (2, "a"), (2, "a")]
        .into_iter()
        .enumerate()
    {
        let mut p = prediction("counted", i as i64, None);
        p.version = version;
        p.variant = variant.into();
        batch.push(p);
    }
    s.append_predictions(&batch).await.unwrap();
    let count = |version, variant: &str, predictions| VariantCount {
        version,
        variant: variant.into(),
        predictions,
        errors: 0,
        latency_le: LATENCY_BOUNDS_US
            .iter()
            .map(|&b| if b >= 120 { predictions } else { 0 })
            .collect(),
    };
    assert_eq!(
        s.prediction_counts(&of("counted")).await.unwrap(),
        vec![count(1, "a", 2), count(1, "b", 1), count(2, "a", 3)]
    );
    assert_eq!(
        s.prediction_counts(&LiveFilter::model(
            "counted",
            Some(t0() + Duration::seconds(3))
        ))
        .await
        .unwrap(),
        vec![count(2, "a", 3)],
        "since counts by prediction time"
    );
    for p in &batch[1..] {
        s.record_outcome(&outcome(p, json!(1.0))).await.unwrap();
    }
    let all = s.labelled_predictions(&of("counted"), 100).await.unwrap();
    let ids: Vec<_> = all.iter().map(|l| l.prediction.request_id).collect();
    let want: Vec<_> = batch[1..].iter().rev().map(|p| p.request_id).collect();
    assert_eq!(ids, want, "newest first, only those with an outcome");
    let recent = s
        .labelled_predictions(
            &LiveFilter::model("counted", Some(t0() + Duration::seconds(4))),
            100,
        )
        .await
        .unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(
        s.labelled_predictions(&of("counted"), 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(s
        .labelled_predictions(&of("nobody"), 9)
        .await
        .unwrap()
        .is_empty());
}

async fn failures_and_latencies_are_counted_per_variant_and_deployment(s: &dyn PredictionLogStore) {
    let deployment = DeploymentId::new();
    let mut batch = Vec::new();
    for (i, (variant, latency_us, failed, routed)) in [
        ("primary", 40, false, true),
        ("primary", 900, false, true),
        ("primary", 3_000, true, true),
        ("b", 7_000_000, false, true),
        ("primary", 40, false, false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = prediction("histogram", i as i64, None);
        p.variant = variant.into();
        p.latency_us = latency_us;
        if failed {
            p.output = serde_json::Value::Null;
            p.error = Some("feature 'x' is missing".into());
        }
        p.deployment_id = routed.then_some(deployment);
        batch.push(p);
    }
    s.append_predictions(&batch).await.unwrap();
    let routed = LiveFilter {
        model: "histogram".into(),
        since: None,
        deployment: Some(deployment),
    };
    let counts = s.prediction_counts(&routed).await.unwrap();
    assert_eq!(counts.len(), 2);
    let (b, primary) = (&counts[0], &counts[1]);
    assert_eq!((b.variant.as_str(), b.predictions, b.errors), ("b", 1, 0));
    assert_eq!(
        (
            primary.variant.as_str(),
            primary.predictions,
            primary.errors
        ),
        ("primary", 3, 1),
        "the request outside the deployment is not counted"
    );
    let le = |us: u64| {
        let i = LATENCY_BOUNDS_US.iter().position(|&b| b == us).unwrap();
        primary.latency_le[i]
    };
    assert_eq!((le(50), le(500), le(1_000), le(5_000)), (1, 1, 2, 3));
    assert_eq!(b.latency_le[LATENCY_BOUNDS_US.len() - 3], 0);
    assert_eq!(*b.latency_le.last().unwrap(), 1);
    let all = s.prediction_counts(&of("histogram")).await.unwrap();
    assert_eq!(all[1].predictions, 4);
    // A failure takes no outcome: it gave nothing to compare with.
    let err = s
        .record_outcome(&outcome(&batch[2], json!(1.0)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
}

async fn a_shadow_copy_is_judged_by_its_answers_outcome_and_takes_none_itself(
    s: &dyn PredictionLogStore,
) {
    let answer = prediction("shadowed", 0, Some("S-77"));
    let mut copy = prediction("shadowed", 0, Some("S-77"));
    copy.version = 2;
    copy.variant = "shadow".into();
    copy.shadow_of = Some(answer.request_id);
    copy.output = json!({"value": 0.9});
    s.append_predictions(&[answer.clone(), copy.clone()])
        .await
        .unwrap();
    let err = s
        .record_outcome(&outcome(&copy, json!(0.4)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains(&answer.request_id.to_string())),
        "{err}"
    );
    // The entity's latest answer is the one it received, not the copy.
    let received = PredictionFilter {
        entity_id: Some("S-77".into()),
        answered_only: true,
        ..only("shadowed")
    };
    let latest = s
        .list_predictions(&received, &Page::default())
        .await
        .unwrap();
    assert_eq!(latest, vec![answer.clone()]);
    s.record_outcome(&outcome(&answer, json!(0.4)))
        .await
        .unwrap();
    let labelled = s.labelled_predictions(&of("shadowed"), 10).await.unwrap();
    let got: Vec<(u32, &str, f64)> = labelled
        .iter()
        .map(|l| {
            (
                l.prediction.version,
                l.prediction.variant.as_str(),
                l.outcome.actual.as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(1, "primary", 0.4), (2, "shadow", 0.4)]);
}
