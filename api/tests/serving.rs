//! Which version answers, and the swap: `ModelCache` over an in-memory
//! platform with real artifacts. A deployed version is loaded before it
//! takes traffic; one that fails its digest check is never swapped in, and
//! the previous one keeps answering.

use bytes::Bytes;
use chrono::Utc;
use tracseq_api::serving::{ModelCache, Pick};
use tracseq_core::ids::TokenId;
use tracseq_core::lifecycle::deployment::{Deployment, DeploymentState, NewDeployment, Target};
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::{ArtifactPath, DeploymentWrite};
use tracseq_core::security::Actor;
use tracseq_core::types::NewModelVersion;
use tracseq_core::{Error, Platform};
use tracseq_learn::artifact::sha256_hex;

fn artifact_bytes() -> Bytes {
    Bytes::from(tracseq_learn::lab::example_artifact_bytes(200, 9).unwrap())
}

/// Registers `version` of "sq"; with `corrupt`, its record names a digest
/// the stored bytes do not have.
async fn register(p: &Platform, version: u32, bytes: &Bytes, corrupt: bool) {
    let path = ArtifactPath::model("sq", version, "model.json").unwrap();
    p.artifacts.put(&path, bytes.clone()).await.unwrap();
    let mut new: NewModelVersion = tracseq_core::fixtures::model_version("sq", version, 0.8);
    new.artifact_path = path.to_string();
    new.sha256 = if corrupt {
        "ab".repeat(32)
    } else {
        sha256_hex(bytes)
    };
    p.state
        .register_model_version(new, Utc::now())
        .await
        .unwrap();
}

fn live(version: u32) -> Deployment {
    let mut d = Deployment::new(
        NewDeployment {
            model: "sq".into(),
            version,
            target: Target::Platform,
            replicas: 1,
            resources: None,
            job_id: None,
            requested_by: Actor {
                id: TokenId::new(),
                name: "sci".into(),
            },
        },
        Utc::now(),
    );
    d.state = DeploymentState::Live;
    d
}

async fn store(p: &Platform, inserts: Vec<Deployment>, updates: Vec<Deployment>) {
    let write = DeploymentWrite {
        inserts,
        updates,
        registry: None,
    };
    assert!(p.registry.commit_deployments(write).await.unwrap());
}

#[tokio::test]
async fn without_a_deployment_or_production_version_a_request_without_version_is_refused() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let bytes = artifact_bytes();
    register(&p, 1, &bytes, false).await;
    let cache = ModelCache::default();
    let err = cache.get(&p, "sq", Pick::Serving).await.err().unwrap();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("POST /models/deploy")),
        "{err}"
    );
    // Pinned and aliased requests need no deployment.
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Version(1))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Alias("latest"))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Alias("v1"))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    let unknown = cache
        .get(&p, "sq", Pick::Alias("champion"))
        .await
        .err()
        .unwrap();
    assert!(matches!(unknown, Error::NotFound(_)));
    assert!(matches!(
        Pick::from_request(Some(1), Some("champion")),
        Err(Error::Invalid(_))
    ));
    let long = "a".repeat(10_000);
    for bad in ["", "Champion", "a b", long.as_str()] {
        let err = Pick::from_request(None, Some(bad)).err().unwrap();
        assert!(
            matches!(&err, Error::Invalid(m) if !m.contains("aaaa") && m.contains("alias")),
            "{err}"
        );
    }
    assert_eq!(
        Pick::from_request(None, Some("v2")).unwrap(),
        Pick::Alias("v2")
    );
}

#[tokio::test]
async fn the_deployed_version_answers_and_a_version_failing_its_digest_is_never_swapped_in() {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let bytes = artifact_bytes();
    register(&p, 1, &bytes, false).await;
    register(&p, 2, &bytes, false).await;
    register(&p, 3, &bytes, true).await;
    let cache = ModelCache::default();

    let mut first = live(1);
    store(&p, vec![first.clone()], vec![]).await;
    cache.refresh_deployments(&p).await.unwrap();
    let held = cache.get(&p, "sq", Pick::Serving).await.unwrap();
    assert_eq!(held.version.version, 1);
    assert_eq!(cache.deployed_versions(), vec![("sq".to_string(), 1)]);

    // Version 2 goes live: the next refresh swaps it in; a request that
    // already held version 1 still holds it.
    first.state = DeploymentState::Superseded;
    let mut second = live(2);
    store(&p, vec![second.clone()], vec![first.clone()]).await;
    cache.refresh_deployments(&p).await.unwrap();
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Serving)
            .await
            .unwrap()
            .version
            .version,
        2
    );
    assert_eq!(held.version.version, 1);

    // Version 3's artifact does not match its digest: version 2 keeps answering.
    second.revision = 0;
    second.state = DeploymentState::Superseded;
    store(&p, vec![live(3)], vec![second]).await;
    cache.refresh_deployments(&p).await.unwrap();
    assert_eq!(
        cache
            .get(&p, "sq", Pick::Serving)
            .await
            .unwrap()
            .version
            .version,
        2
    );
    let mut metrics = String::new();
    cache.render_metrics(&mut metrics);
    assert!(
        metrics.contains("tracseq_serving_swap_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tracseq_serving_deployed_version{model=\"sq\"} 2"),
        "{metrics}"
    );
}
