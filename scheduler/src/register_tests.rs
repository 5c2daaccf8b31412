use super::*;
use std::sync::OnceLock;
use tracseq_core::fixtures::t0;
use tracseq_core::ids::TokenId;
use tracseq_core::lifecycle::RetryPolicy;

fn actor() -> Actor {
    Actor {
        id: TokenId::new(),
        name: "outside-team".into(),
    }
}

/// A real linear model's artifact bytes (fitted once for all tests).
fn model_bytes() -> Bytes {
    static BYTES: OnceLock<Bytes> = OnceLock::new();
    BYTES
        .get_or_init(|| Bytes::from(tracseq_learn::lab::example_artifact_bytes(300, 5).unwrap()))
        .clone()
}

fn upload(bytes: Bytes) -> Registration {
    Registration {
        name: "sq".into(),
        sha256: sha256_hex(&bytes),
        source: Source::Upload(bytes),
        metrics: Some(BTreeMap::from([("auc".to_string(), 0.91)])),
        params: None,
        tags: BTreeMap::from([("team".to_string(), "core".to_string())]),
        description: Some("fitted by the core facility".into()),
        experiment_id: None,
        lineage: Lineage {
            feature_set_version: Some("lab-features@3".into()),
            ..Default::default()
        },
    }
}

fn platform() -> Platform {
    tracseq_backends::platform::in_memory(RetryPolicy::default())
}

#[tokio::test]
async fn an_uploaded_artifact_becomes_the_next_version_with_its_tags_and_lineage() {
    let p = platform();
    let v = register(&p, upload(model_bytes()), &actor(), t0())
        .await
        .unwrap();
    assert_eq!((v.name.as_str(), v.version, v.job_id), ("sq", 1, None));
    assert_eq!(v.family, "linear");
    assert_eq!(v.artifact_path, "models/sq/1/model.json");
    assert_eq!(v.metrics["auc"], 0.91);
    assert_eq!(
        v.lineage.feature_set_version.as_deref(),
        Some("lab-features@3")
    );
    assert_eq!(
        v.owner.as_ref().map(|a| a.name.as_str()),
        Some("outside-team")
    );
    let tags = p.registry.tags("sq").await.unwrap();
    assert_eq!(tags.versions[&1]["team"], "core");
    // The stored copy is the artifact, byte for byte.
    let stored = p
        .artifacts
        .get(&ArtifactPath::parse(&v.artifact_path).unwrap())
        .await
        .unwrap();
    assert_eq!(sha256_hex(&stored), v.sha256);
    let second = register(&p, upload(model_bytes()), &actor(), t0())
        .await
        .unwrap();
    assert_eq!(second.version, 2);
}

#[tokio::test]
async fn a_stored_artifact_is_copied_under_the_version_so_later_changes_to_it_do_not_matter() {
    let p = platform();
    let path = ArtifactPath::parse("uploads/outside/model.json").unwrap();
    p.artifacts.put(&path, model_bytes()).await.unwrap();
    let mut r = upload(model_bytes());
    r.source = Source::Stored(path.clone());
    let v = register(&p, r, &actor(), t0()).await.unwrap();
    p.artifacts
        .put(&path, Bytes::from_static(b"overwritten"))
        .await
        .unwrap();
    let stored = p
        .artifacts
        .get(&ArtifactPath::parse(&v.artifact_path).unwrap())
        .await
        .unwrap();
    assert_eq!(stored, model_bytes());
}

#[tokio::test]
async fn a_digest_mismatch_is_refused_and_nothing_is_registered() {
    let p = platform();
    let mut r = upload(model_bytes());
    r.sha256 = "ab".repeat(32);
    let err = register(&p, r, &actor(), t0()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(m) if m.contains("does not match")),
        "{err}"
    );
    assert!(p
        .state
        .list_model_versions(Some("sq"))
        .await
        .unwrap()
        .is_empty());
    let models = ArtifactPath::parse("models").unwrap();
    assert!(p.artifacts.list(Some(&models)).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_malformed_artifact_is_refused_and_nothing_is_registered() {
    let p = platform();
    for bytes in [
        Bytes::from_static(b"not json"),
        Bytes::from_static(br#"{"format_version": 999}"#),
        Bytes::from_static(br#"{"format_version": 1, "family": "linear"}"#),
    ] {
        let err = register(&p, upload(bytes), &actor(), t0())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("not a model")),
            "{err}"
        );
    }
    assert!(p
        .state
        .list_model_versions(Some("sq"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn lineage_that_points_nowhere_is_refused_naming_the_field() {
    let p = platform();
    let mut r = upload(model_bytes());
    r.lineage.dataset_id = Some(tracseq_core::DatasetId::new());
    assert!(matches!(
        register(&p, r, &actor(), t0()).await,
        Err(Error::NotFound(_))
    ));
    let mut r = upload(model_bytes());
    r.lineage.trial = Some(3);
    let err = register(&p, r, &actor(), t0()).await.unwrap_err();
    assert!(err.to_string().contains("experiment_id"), "{err}");
    let mut r = upload(model_bytes());
    r.lineage.dataset_sha256 = Some("xyz".into());
    let err = register(&p, r, &actor(), t0()).await.unwrap_err();
    assert!(err.to_string().contains("lineage.dataset_sha256"), "{err}");
    assert!(p
        .state
        .list_model_versions(Some("sq"))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn bad_tags_metrics_or_description_are_refused_before_anything_is_read() {
    let p = platform();
    type Spoil = fn(&mut Registration);
    let cases: Vec<(Spoil, &str)> = vec![
        (
            |r| {
                r.tags.insert("a b".into(), "x".into());
            },
            "'a b'",
        ),
        (
            |r| {
                r.metrics = Some(BTreeMap::from([("auc".to_string(), f64::NAN)]));
            },
            "metric 'auc'",
        ),
        (
            |r| r.description = Some("x".repeat(MAX_DESCRIPTION_CHARS + 1)),
            "description",
        ),
        (|r| r.sha256 = "short".into(), "sha256"),
        (
            |r| {
                let big = serde_json::Value::String("x".repeat(MAX_PARAMS_BYTES));
                r.params = Some(serde_json::Map::from_iter([("blob".to_string(), big)]));
            },
            "params",
        ),
        (|r| r.name = "bad name!".into(), "name"),
    ];
    for (spoil, names) in cases {
        let mut r = upload(model_bytes());
        spoil(&mut r);
        let err = register(&p, r, &actor(), t0()).await.unwrap_err();
        assert!(err.to_string().contains(names), "{names}: {err}");
    }
}
