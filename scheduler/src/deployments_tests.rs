use super::*;
use crate::registry::tests::to_production;
use serde_json::json;
use tracseq_core::fixtures::model_version;
use tracseq_core::fixtures::t0;
use tracseq_core::ids::TokenId;
use tracseq_core::lifecycle::{self, RetryPolicy};
use tracseq_core::ports::transition;
use tracseq_core::WorkerId;

fn actor(name: &str) -> Actor {
    Actor {
        id: TokenId::new(),
        name: name.into(),
    }
}

async fn platform(versions: u32) -> Platform {
    let p = tracseq_backends::platform::in_memory(RetryPolicy::default());
    for version in 1..=versions {
        p.state
            .register_model_version(model_version("sq", version, 0.8), t0())
            .await
            .unwrap();
    }
    p
}

async fn promote(p: &Platform, version: u32) {
    to_production(p.state.as_ref(), p.registry.as_ref(), version).await;
}

fn ask(which: Which, target: Target) -> DeployRequest {
    DeployRequest {
        model: "sq".into(),
        which,
        target,
        replicas: 2,
        resources: None,
        traffic: None,
    }
}

/// What a worker does with a deploy job, through the job lifecycle.
async fn run_job(p: &Platform, job: &Job, outcome: Result<DeployResult>) {
    let worker = WorkerId("w".into());
    let policy = RetryPolicy::default();
    let claim = lifecycle::Event::ClaimAndStart {
        worker: worker.clone(),
        lease: Duration::seconds(30),
        gpus: None,
    };
    transition(p.state.as_ref(), job.id, claim, t0(), &policy)
        .await
        .unwrap();
    let done = match outcome {
        Ok(r) => lifecycle::Event::Succeed {
            worker,
            attempt: 1,
            result: serde_json::to_value(r).unwrap(),
        },
        Err(e) => lifecycle::Event::Fail {
            worker,
            attempt: 1,
            error: e.to_string(),
            retryable: false,
        },
    };
    transition(p.state.as_ref(), job.id, done, t0(), &policy)
        .await
        .unwrap();
}

fn ok(d: &Deployment) -> Result<DeployResult> {
    Ok(DeployResult {
        deployment_id: d.id,
        outputs: vec![],
        note: None,
        sha256: "0".repeat(64),
    })
}

async fn deployed(p: &Platform, version: u32) -> Deployment {
    let (d, job) = deploy(
        p,
        ask(Which::Version(version), Target::Platform),
        &Default::default(),
        &actor("sci"),
        t0(),
    )
    .await
    .unwrap();
    run_job(p, &job, ok(&d)).await;
    advance(p, t0()).await.unwrap();
    p.registry.get_deployment(d.id).await.unwrap()
}

#[tokio::test]
async fn a_deploy_queues_a_job_with_everything_the_worker_needs() {
    let p = platform(1).await;
    promote(&p, 1).await;
    let settings = DeployConfig {
        registry: "reg.lab:5000/ml".into(),
        ..Default::default()
    };
    let (d, job) = deploy(
        &p,
        ask(Which::Stage(Stage::Production), Target::Kubernetes),
        &settings,
        &actor("sci"),
        t0(),
    )
    .await
    .unwrap();
    assert_eq!(
        (d.state, d.version, d.job_id),
        (DeploymentState::Pending, 1, Some(job.id))
    );
    let JobSpec::Deploy(payload) = job.spec().unwrap() else {
        panic!("a deploy job");
    };
    assert_eq!(payload.deployment_id, d.id);
    assert_eq!(payload.artifact_path, "models/sq/1/model.json");
    assert_eq!(payload.registry.as_deref(), Some("reg.lab:5000/ml"));
    assert_eq!(
        p.state.get_job(job.id).await.unwrap().state,
        JobState::Queued
    );
}

#[tokio::test]
async fn the_platform_serves_only_production_and_nothing_deploys_an_archived_version() {
    let p = platform(2).await;
    let err = deploy(
        &p,
        ask(Which::Version(1), Target::Platform),
        &Default::default(),
        &actor("s"),
        t0(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("promote it")),
        "{err}"
    );
    promote(&p, 1).await;
    promote(&p, 2).await;
    let err = deploy(
        &p,
        ask(Which::Version(1), Target::Docker),
        &Default::default(),
        &actor("s"),
        t0(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("archived")),
        "{err}"
    );
    assert!(p
        .registry
        .list_deployments(&Default::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_is_stored() {
    let p = platform(1).await;
    promote(&p, 1).await;
    let mut zero = ask(Which::Version(1), Target::Platform);
    zero.replicas = 0;
    for (req, says) in [
        (zero, "replicas"),
        (
            ask(Which::Alias("champion".into()), Target::Platform),
            "no alias",
        ),
        (
            ask(Which::Stage(Stage::Staging), Target::Docker),
            "no version in staging",
        ),
        (ask(Which::Version(9), Target::Platform), "no version 9"),
    ] {
        let err = deploy(&p, req, &Default::default(), &actor("s"), t0())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    assert!(p
        .registry
        .list_deployments(&Default::default())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_deployment_follows_its_job_and_supersedes_the_live_one() {
    let p = platform(2).await;
    promote(&p, 1).await;
    let first = deployed(&p, 1).await;
    assert_eq!(first.state, DeploymentState::Live);
    promote(&p, 2).await;
    let (d, job) = deploy(
        &p,
        ask(Which::Version(2), Target::Platform),
        &Default::default(),
        &actor("s"),
        t0(),
    )
    .await
    .unwrap();
    advance(&p, t0()).await.unwrap();
    assert_eq!(
        p.registry.get_deployment(d.id).await.unwrap().state,
        DeploymentState::Pending
    );
    run_job(&p, &job, ok(&d)).await;
    advance(&p, t0()).await.unwrap();
    let second = p.registry.get_deployment(d.id).await.unwrap();
    assert_eq!(second.state, DeploymentState::Live);
    assert_eq!(second.previous.map(|x| x.id), Some(first.id));
    assert_eq!(
        p.registry.get_deployment(first.id).await.unwrap().state,
        DeploymentState::Superseded
    );
    let live = p.registry.live_deployments(Target::Platform).await.unwrap();
    assert_eq!(live.iter().map(|d| d.version).collect::<Vec<_>>(), vec![2]);
}

#[tokio::test]
async fn a_failed_deploy_job_fails_the_deployment_and_leaves_the_live_one_serving() {
    let p = platform(2).await;
    promote(&p, 1).await;
    let first = deployed(&p, 1).await;
    promote(&p, 2).await;
    let (d, job) = deploy(
        &p,
        ask(Which::Version(2), Target::Platform),
        &Default::default(),
        &actor("s"),
        t0(),
    )
    .await
    .unwrap();
    run_job(
        &p,
        &job,
        Err(Error::Invalid("artifact digest mismatch".into())),
    )
    .await;
    advance(&p, t0()).await.unwrap();
    let failed = p.registry.get_deployment(d.id).await.unwrap();
    assert_eq!(failed.state, DeploymentState::Failed);
    assert!(failed.error.unwrap().contains("digest mismatch"));
    assert_eq!(
        p.registry.get_deployment(first.id).await.unwrap().state,
        DeploymentState::Live
    );
}

#[tokio::test]
async fn rollback_restores_the_previous_version_and_its_production_stage() {
    let p = platform(2).await;
    promote(&p, 1).await;
    let first = deployed(&p, 1).await;
    promote(&p, 2).await;
    let second = deployed(&p, 2).await;
    assert_eq!(
        p.registry.model_slots("sq").await.unwrap().production(),
        Some(2)
    );

    let oncall = actor("on-call");
    let back = rollback(&p, second.id, &oncall, Some("error rate".into()), t0())
        .await
        .unwrap();
    assert_eq!(back.state, DeploymentState::RolledBack);
    assert_eq!(
        p.registry.get_deployment(first.id).await.unwrap().state,
        DeploymentState::Live
    );
    let slots = p.registry.model_slots("sq").await.unwrap();
    assert_eq!(slots.production(), Some(1));
    assert_eq!(slots.stage_of(2), Some(Stage::Archived));
    let history = p.registry.model_history("sq", 0, 100).await.unwrap();
    let last = history.last().unwrap();
    assert_eq!(last.deployment_id, Some(second.id));
    assert_eq!(last.requested_by, Some(oncall));
    assert!(last.reason.as_deref().unwrap().contains("error rate"));

    // The first deployment replaced nothing: a second rollback is refused.
    let err = rollback(&p, first.id, &actor("x"), None, t0())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Conflict(m) if m.contains("nothing to roll back to")),
        "{err}"
    );
}

#[tokio::test]
async fn a_deployment_whose_job_was_never_stored_fails_after_a_while() {
    let p = platform(1).await;
    promote(&p, 1).await;
    let mut d = Deployment::new(
        NewDeployment {
            model: "sq".into(),
            version: 1,
            target: Target::Platform,
            replicas: 1,
            resources: None,
            job_id: Some(tracseq_core::JobId::new()),
            requested_by: actor("s"),
            traffic: None,
        },
        t0(),
    );
    d.revision = 0;
    let write = DeploymentWrite {
        inserts: vec![d.clone()],
        ..Default::default()
    };
    assert!(p.registry.commit_deployments(write).await.unwrap());
    advance(&p, t0() + Duration::seconds(5)).await.unwrap();
    assert_eq!(
        p.registry.get_deployment(d.id).await.unwrap().state,
        DeploymentState::Pending
    );
    advance(&p, t0() + Duration::seconds(ORPHAN_AFTER_SECS + 1))
        .await
        .unwrap();
    let failed = p.registry.get_deployment(d.id).await.unwrap();
    assert_eq!(failed.state, DeploymentState::Failed);
    assert!(
        failed.error.unwrap().contains("never stored"),
        "{}",
        json!(failed.history)
    );
}
