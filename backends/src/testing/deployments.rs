//! The deployment half of the `RegistryStore` suite: records inserted and
//! moved by compare-and-set, several records and a registry change stored
//! all or nothing (a rollback), the live deployments every api replica
//! polls, and the listings. Records move through
//! [`tracseq_core::lifecycle::deployment::on_event`], as the scheduler moves them.

use super::registry::{actor, at, change, history, register, set_stage, Why};
use std::collections::BTreeSet;
use tracseq_core::ids::DeploymentId;
use tracseq_core::lifecycle::deployment::{
    self, Deployment, DeploymentState, Event, NewDeployment, Previous, Target,
};
use tracseq_core::ports::{DeploymentFilter, DeploymentWrite, RegistryStore, StateStore};
use tracseq_core::registry::{Change, Stage};
use tracseq_core::Error;

pub(super) async fn deployment_checks(s: &dyn StateStore, r: &dyn RegistryStore) {
    deployments_are_inserted_once_and_updated_by_compare_and_set(s, r).await;
    a_deployment_write_with_one_stale_part_writes_nothing(s, r).await;
    a_rollback_restores_the_previous_deployment_and_production_in_one_write(s, r).await;
    live_deployments_are_found_by_target(s, r).await;
    deployments_list_newest_first_filtered_and_limited(s, r).await;
}

fn new_deployment(model: &str, version: u32, target: Target, seconds: i64) -> Deployment {
    Deployment::new(
        NewDeployment {
            model: model.into(),
            version,
            target,
            replicas: 2,
            resources: None,
            job_id: None,
            requested_by: actor("deployer"),
            traffic: None,
        },
        at(seconds),
    )
}

/// `d` after `event`, as the scheduler computes it.
fn moved(d: &Deployment, event: Event, seconds: i64) -> Deployment {
    let mut d = d.clone();
    deployment::on_event(&mut d, event, at(seconds)).unwrap();
    d
}

fn succeeded(live: Option<&Deployment>) -> Event {
    Event::Succeeded {
        outputs: vec!["deployments/out/Dockerfile".into()],
        note: None,
        live: live.map(|d| Previous {
            id: d.id,
            version: d.version,
        }),
    }
}

fn inserts(ds: &[&Deployment]) -> DeploymentWrite {
    DeploymentWrite {
        inserts: ds.iter().map(|d| (*d).clone()).collect(),
        ..DeploymentWrite::default()
    }
}

fn updates(ds: &[&Deployment]) -> DeploymentWrite {
    DeploymentWrite {
        updates: ds.iter().map(|d| (*d).clone()).collect(),
        ..DeploymentWrite::default()
    }
}

async fn deployments_are_inserted_once_and_updated_by_compare_and_set(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    register(s, "deployed", &[1]).await;
    let d = new_deployment("deployed", 1, Target::Docker, 0);
    assert!(r.commit_deployments(inserts(&[&d])).await.unwrap());
    assert_eq!(r.get_deployment(d.id).await.unwrap(), d);
    match r.commit_deployments(inserts(&[&d])).await {
        Err(Error::Conflict(m)) => assert!(m.contains(&d.id.to_string()), "{m}"),
        other => panic!("a taken id: expected Conflict, got {other:?}"),
    }

    let started = moved(&d, Event::Started, 1);
    assert!(r.commit_deployments(updates(&[&started])).await.unwrap());
    let stored = r.get_deployment(d.id).await.unwrap();
    assert_eq!(
        stored,
        Deployment {
            revision: 1,
            ..started.clone()
        },
        "stored at the next revision, which its record carries"
    );
    // A writer holding revision 0 lost: nothing changes.
    let failed = moved(
        &d,
        Event::Failed {
            error: "image pull".into(),
        },
        2,
    );
    assert!(!r.commit_deployments(updates(&[&failed])).await.unwrap());
    assert_eq!(r.get_deployment(d.id).await.unwrap(), stored);
    // The holder of revision 1 goes on; two moves of one record in one
    // write apply in order.
    let live = moved(&stored, succeeded(None), 3);
    let superseded = Deployment {
        revision: 2,
        ..moved(
            &live,
            Event::Superseded {
                by: DeploymentId::new(),
            },
            4,
        )
    };
    assert!(r
        .commit_deployments(updates(&[&live, &superseded]))
        .await
        .unwrap());
    let stored = r.get_deployment(d.id).await.unwrap();
    assert_eq!(
        (stored.state, stored.revision),
        (DeploymentState::Superseded, 3)
    );

    let ghost = new_deployment("deployed", 1, Target::Docker, 5);
    match r.commit_deployments(updates(&[&ghost])).await {
        Err(Error::NotFound(m)) => assert!(m.contains(&ghost.id.to_string()), "{m}"),
        other => panic!("an unknown deployment: expected NotFound, got {other:?}"),
    }
    assert!(matches!(
        r.get_deployment(ghost.id).await,
        Err(Error::NotFound(_))
    ));
}

async fn a_deployment_write_with_one_stale_part_writes_nothing(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "all-or-nothing";
    register(s, name, &[1, 2]).await;
    let d1 = new_deployment(name, 1, Target::Kubernetes, 0);
    assert!(r.commit_deployments(inserts(&[&d1])).await.unwrap());
    let read = r.model_slots(name).await.unwrap();
    let registry = change(
        &read,
        vec![set_stage(1, Stage::Staging)],
        at(1),
        Why::default(),
    );

    // A stale record: the new record and the registry change are not written.
    let d2 = new_deployment(name, 2, Target::Kubernetes, 1);
    let stale_d1 = Deployment {
        revision: 7,
        ..moved(&d1, Event::Started, 1)
    };
    let write = DeploymentWrite {
        inserts: vec![d2.clone()],
        updates: vec![stale_d1],
        registry: Some(registry.clone()),
    };
    assert!(!r.commit_deployments(write).await.unwrap());
    assert!(matches!(
        r.get_deployment(d2.id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(r.get_deployment(d1.id).await.unwrap(), d1);
    assert_eq!(r.model_slots(name).await.unwrap(), read);
    assert!(history(r, name).await.is_empty());

    // A stale registry part: the records are not written either.
    assert!(r.commit_registry(registry.clone()).await.unwrap());
    let after = r.model_slots(name).await.unwrap();
    let started = moved(&d1, Event::Started, 2);
    let write = DeploymentWrite {
        inserts: vec![d2.clone()],
        updates: vec![started.clone()],
        registry: Some(change(
            &read,
            vec![set_stage(2, Stage::Staging)],
            at(2),
            Why::default(),
        )),
    };
    assert!(!r.commit_deployments(write).await.unwrap());
    assert!(matches!(
        r.get_deployment(d2.id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(r.get_deployment(d1.id).await.unwrap(), d1);
    assert_eq!(r.model_slots(name).await.unwrap(), after);
    assert_eq!(history(r, name).await.len(), 1);

    // An invalid registry part: refused, and the records with it.
    let mut invalid = change(&after, vec![], at(2), Why::default());
    invalid.slots.stages.insert(9, Stage::Staging);
    let write = DeploymentWrite {
        inserts: vec![d2.clone()],
        updates: vec![started.clone()],
        registry: Some(invalid),
    };
    assert!(matches!(
        r.commit_deployments(write).await,
        Err(Error::Invalid(_))
    ));
    assert!(matches!(
        r.get_deployment(d2.id).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(r.get_deployment(d1.id).await.unwrap(), d1);

    // All parts current: all written.
    let write = DeploymentWrite {
        inserts: vec![d2.clone()],
        updates: vec![started.clone()],
        registry: Some(change(
            &after,
            vec![set_stage(2, Stage::Staging)],
            at(2),
            Why::default(),
        )),
    };
    assert!(r.commit_deployments(write).await.unwrap());
    assert_eq!(r.get_deployment(d2.id).await.unwrap(), d2);
    assert_eq!(r.get_deployment(d1.id).await.unwrap().revision, 1);
    assert_eq!(
        r.model_slots(name).await.unwrap().revision,
        after.revision + 1
    );
}

async fn a_rollback_restores_the_previous_deployment_and_production_in_one_write(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "rolled";
    register(s, name, &[1, 2]).await;
    let promote = |version| Change::SetStage {
        version,
        stage: Stage::Production,
        archive_previous: true,
        expect_production: None,
    };
    // Version 1 in production and live on the platform.
    let read = r.model_slots(name).await.unwrap();
    assert!(r
        .commit_registry(change(&read, vec![promote(1)], at(0), Why::default()))
        .await
        .unwrap());
    let d1 = moved(
        &new_deployment(name, 1, Target::Platform, 0),
        succeeded(None),
        1,
    );
    assert!(r.commit_deployments(inserts(&[&d1])).await.unwrap());
    let d1 = r.get_deployment(d1.id).await.unwrap();

    // Version 2 replaces it: production moves, d2 goes live, d1 is superseded.
    let read = r.model_slots(name).await.unwrap();
    assert!(r
        .commit_registry(change(&read, vec![promote(2)], at(2), Why::default()))
        .await
        .unwrap());
    let d2 = new_deployment(name, 2, Target::Platform, 2);
    assert!(r.commit_deployments(inserts(&[&d2])).await.unwrap());
    let d2_live = moved(&d2, succeeded(Some(&d1)), 3);
    let d1_superseded = moved(&d1, Event::Superseded { by: d2.id }, 3);
    assert!(r
        .commit_deployments(updates(&[&d2_live, &d1_superseded]))
        .await
        .unwrap());
    let live = r.live_deployments(Target::Platform).await.unwrap();
    let ours: Vec<_> = live.iter().filter(|d| d.model == name).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, d2.id);

    // The rollback: both records and the production stage, one write.
    let person = actor("operator");
    let d2_stored = r.get_deployment(d2.id).await.unwrap();
    let d1_stored = r.get_deployment(d1.id).await.unwrap();
    let mut rolled_back = d2_stored.clone();
    let effects = deployment::on_event(
        &mut rolled_back,
        Event::RollBack {
            by: person.clone(),
            reason: Some("drift alarm".into()),
        },
        at(4),
    )
    .unwrap();
    let restore_to = effects
        .iter()
        .find_map(|e| match e {
            deployment::Effect::RestoreProduction { version } => Some(*version),
            _ => None,
        })
        .expect("a platform rollback restores production");
    let restored = moved(
        &d1_stored,
        Event::Restore {
            by: person.clone(),
            from: d2.id,
            reason: Some("drift alarm".into()),
        },
        4,
    );
    let read = r.model_slots(name).await.unwrap();
    let why = Why {
        requested_by: Some(person),
        deployment_id: Some(d2.id),
        ..Why::default()
    };
    let write = DeploymentWrite {
        inserts: vec![],
        updates: vec![rolled_back.clone(), restored.clone()],
        registry: Some(change(&read, vec![promote(restore_to)], at(4), why)),
    };
    assert!(r.commit_deployments(write).await.unwrap());
    assert_eq!(
        r.get_deployment(d2.id).await.unwrap().state,
        DeploymentState::RolledBack
    );
    assert_eq!(
        r.get_deployment(d1.id).await.unwrap(),
        Deployment {
            revision: d1_stored.revision + 1,
            ..restored
        }
    );
    let slots = r.model_slots(name).await.unwrap();
    assert_eq!(slots.production(), Some(1));
    assert_eq!(slots.stages[&2], Stage::Archived);
    let last = history(r, name).await.pop().unwrap();
    assert_eq!(last.deployment_id, Some(d2.id));
    let live = r.live_deployments(Target::Platform).await.unwrap();
    let ours: Vec<_> = live.iter().filter(|d| d.model == name).collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0].id, d1.id);
}

async fn live_deployments_are_found_by_target(s: &dyn StateStore, r: &dyn RegistryStore) {
    for name in ["live-b", "live-a"] {
        register(s, name, &[1]).await;
    }
    let live = |model, target, seconds| {
        moved(
            &new_deployment(model, 1, target, seconds),
            succeeded(None),
            seconds,
        )
    };
    let b_platform = live("live-b", Target::Platform, 1);
    let a_platform = live("live-a", Target::Platform, 2);
    let a_docker = live("live-a", Target::Docker, 3);
    let b_failed = moved(
        &new_deployment("live-b", 1, Target::Platform, 4),
        Event::Failed {
            error: "digest mismatch".into(),
        },
        4,
    );
    let write = inserts(&[&b_platform, &a_platform, &a_docker, &b_failed]);
    assert!(r.commit_deployments(write).await.unwrap());

    let platform = r.live_deployments(Target::Platform).await.unwrap();
    assert!(platform
        .iter()
        .all(|d| d.target == Target::Platform && d.state == DeploymentState::Live));
    let models: Vec<&str> = platform.iter().map(|d| d.model.as_str()).collect();
    assert!(
        models.windows(2).all(|w| w[0] <= w[1]),
        "by model: {models:?}"
    );
    let ours: Vec<DeploymentId> = platform
        .iter()
        .filter(|d| d.model.starts_with("live-"))
        .map(|d| d.id)
        .collect();
    assert_eq!(ours, vec![a_platform.id, b_platform.id]);

    let docker = r.live_deployments(Target::Docker).await.unwrap();
    assert!(docker.iter().any(|d| d.id == a_docker.id));
    assert!(docker.iter().all(|d| d.target == Target::Docker));
    assert!(r
        .live_deployments(Target::Sagemaker)
        .await
        .unwrap()
        .iter()
        .all(|d| !d.model.starts_with("live-")));
}

async fn deployments_list_newest_first_filtered_and_limited(
    s: &dyn StateStore,
    r: &dyn RegistryStore,
) {
    let name = "deploy-listed";
    register(s, name, &[1]).await;
    let d1 = new_deployment(name, 1, Target::Docker, 1);
    let d2 = new_deployment(name, 1, Target::Platform, 2);
    let d3 = moved(
        &new_deployment(name, 1, Target::Docker, 3),
        Event::Failed {
            error: "render failed".into(),
        },
        3,
    );
    assert!(r
        .commit_deployments(inserts(&[&d1, &d2, &d3]))
        .await
        .unwrap());
    let list = |target, state, limit| DeploymentFilter {
        model: Some(name.into()),
        target,
        state,
        limit,
    };
    let ids = |ds: Vec<Deployment>| ds.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(r.list_deployments(&list(None, None, None)).await.unwrap()),
        vec![d3.id, d2.id, d1.id]
    );
    assert_eq!(
        ids(r
            .list_deployments(&list(None, None, Some(1)))
            .await
            .unwrap()),
        vec![d3.id]
    );
    assert_eq!(
        ids(r
            .list_deployments(&list(Some(Target::Docker), None, None))
            .await
            .unwrap()),
        vec![d3.id, d1.id]
    );
    assert_eq!(
        ids(r
            .list_deployments(&list(
                Some(Target::Docker),
                Some(DeploymentState::Pending),
                None
            ))
            .await
            .unwrap()),
        vec![d1.id]
    );
    // Across models: every record, newest first; none of another's.
    let all = r
        .list_deployments(&DeploymentFilter::default())
        .await
        .unwrap();
    let listed: BTreeSet<DeploymentId> = all.iter().map(|d| d.id).collect();
    assert!([d1.id, d2.id, d3.id].iter().all(|id| listed.contains(id)));
    assert!(all
        .windows(2)
        .all(|w| (w[0].created_at, w[0].id) >= (w[1].created_at, w[1].id)));
    let other = DeploymentFilter {
        model: Some("no-such-model".into()),
        ..DeploymentFilter::default()
    };
    assert!(r.list_deployments(&other).await.unwrap().is_empty());
}
