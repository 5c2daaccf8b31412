use super::*;
use crate::ids::TokenId;
use chrono::TimeZone;
use DeploymentState::{Deploying, Failed, Live, Pending, RolledBack, Superseded};

fn t(minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 9, minute, 0).unwrap()
}

fn actor(name: &str) -> Actor {
    Actor {
        id: TokenId::new(),
        name: name.into(),
    }
}

fn fresh(version: u32, target: Target) -> Deployment {
    Deployment::new(
        NewDeployment {
            model: "sample-quality".into(),
            version,
            target,
            replicas: 2,
            resources: None,
            job_id: Some(JobId::new()),
            requested_by: actor("scientist"),
            traffic: None,
        },
        t(0),
    )
}

fn succeeded(live: Option<&Deployment>) -> Event {
    Event::Succeeded {
        outputs: vec![],
        note: None,
        live: live.map(|d| Previous {
            id: d.id,
            version: d.version,
        }),
    }
}

/// A live deployment of `version` that replaced `before`.
fn live(version: u32, before: Option<&Deployment>) -> Deployment {
    let mut d = fresh(version, Target::Platform);
    on_event(&mut d, Event::Started, t(1)).unwrap();
    on_event(&mut d, succeeded(before), t(2)).unwrap();
    d
}

fn states(d: &Deployment) -> Vec<DeploymentState> {
    d.history.iter().map(|s| s.to).collect()
}

#[test]
fn a_new_deployment_is_pending_with_its_request_in_the_history() {
    let d = fresh(1, Target::Platform);
    assert_eq!(d.state, Pending);
    assert_eq!(d.history.len(), 1);
    assert_eq!(d.history[0].from, None);
    assert_eq!(d.history[0].by.as_ref().unwrap().name, "scientist");
}

#[test]
fn the_first_deployment_of_a_model_goes_live_and_is_served() {
    let mut d = fresh(1, Target::Platform);
    assert_eq!(on_event(&mut d, Event::Started, t(1)).unwrap(), vec![]);
    assert_eq!(d.state, Deploying);
    let effects = on_event(&mut d, succeeded(None), t(2)).unwrap();
    assert_eq!(effects, vec![Effect::Serve { version: 1 }]);
    assert_eq!(d.state, Live);
    assert_eq!(d.previous, None);
    assert_eq!(states(&d), vec![Pending, Deploying, Live]);
    assert_eq!(d.updated_at, t(2));
}

#[test]
fn a_deploy_job_that_succeeds_before_reporting_its_start_still_goes_live() {
    // A worker may finish before its "started" write lands (a retried job).
    let mut d = fresh(1, Target::Platform);
    on_event(&mut d, succeeded(None), t(1)).unwrap();
    assert_eq!(d.state, Live);
}

#[test]
fn going_live_supersedes_the_live_deployment_and_remembers_it() {
    let first = live(1, None);
    let mut second = fresh(2, Target::Platform);
    on_event(&mut second, Event::Started, t(3)).unwrap();
    let effects = on_event(&mut second, succeeded(Some(&first)), t(4)).unwrap();
    assert_eq!(
        effects,
        vec![Effect::Supersede(first.id), Effect::Serve { version: 2 }]
    );
    assert_eq!(
        second.previous,
        Some(Previous {
            id: first.id,
            version: 1
        })
    );
    let mut first = first;
    let effects = on_event(&mut first, Event::Superseded { by: second.id }, t(4)).unwrap();
    assert_eq!(effects, vec![Effect::Finished(Superseded)]);
    assert_eq!(first.state, Superseded);
    assert!(first
        .history
        .last()
        .unwrap()
        .reason
        .as_ref()
        .unwrap()
        .contains(&second.id.to_string()));
}

#[test]
fn a_rendered_target_goes_live_without_serving_anything() {
    let mut d = fresh(1, Target::Kubernetes);
    let effects = on_event(
        &mut d,
        Event::Succeeded {
            outputs: vec!["deployments/x/kubernetes.yaml".into()],
            note: Some("rendered, not applied: no cluster credentials".into()),
            live: None,
        },
        t(1),
    )
    .unwrap();
    assert_eq!(effects, vec![]);
    assert_eq!(d.outputs, vec!["deployments/x/kubernetes.yaml".to_string()]);
    assert!(d.note.as_ref().unwrap().contains("not applied"));
}

#[test]
fn a_failed_deploy_job_fails_the_deployment_with_its_error() {
    for started in [false, true] {
        let mut d = fresh(1, Target::Platform);
        if started {
            on_event(&mut d, Event::Started, t(1)).unwrap();
        }
        let effects = on_event(
            &mut d,
            Event::Failed {
                error: "artifact digest mismatch".into(),
            },
            t(2),
        )
        .unwrap();
        assert_eq!(effects, vec![Effect::Finished(Failed)]);
        assert_eq!(d.state, Failed);
        assert_eq!(d.error.as_deref(), Some("artifact digest mismatch"));
    }
}

#[test]
fn rollback_returns_to_the_deployment_it_replaced_and_restores_production() {
    let first = live(1, None);
    let mut second = live(2, Some(&first));
    let admin = actor("on-call");
    let effects = on_event(
        &mut second,
        Event::RollBack {
            by: admin.clone(),
            reason: Some("error rate doubled".into()),
        },
        t(5),
    )
    .unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::Restore(Previous {
                id: first.id,
                version: 1
            }),
            Effect::RestoreProduction { version: 1 },
            Effect::Serve { version: 1 },
            Effect::Finished(RolledBack),
        ]
    );
    assert_eq!(second.state, RolledBack);
    let last = second.history.last().unwrap();
    assert_eq!(last.by.as_ref(), Some(&admin));
    assert_eq!(last.reason.as_deref(), Some("error rate doubled"));

    let mut first = first;
    on_event(&mut first, Event::Superseded { by: second.id }, t(4)).unwrap();
    on_event(
        &mut first,
        Event::Restore {
            by: admin,
            from: second.id,
            reason: None,
        },
        t(5),
    )
    .unwrap();
    assert_eq!(first.state, Live);
    assert_eq!(
        states(&first),
        vec![Pending, Deploying, Live, Superseded, Live]
    );
}

#[test]
fn rollback_of_a_rendered_target_leaves_the_registry_and_serving_alone() {
    let mut first = fresh(1, Target::Docker);
    on_event(&mut first, succeeded(None), t(1)).unwrap();
    let mut second = fresh(2, Target::Docker);
    on_event(&mut second, succeeded(Some(&first)), t(2)).unwrap();
    let effects = on_event(
        &mut second,
        Event::RollBack {
            by: actor("a"),
            reason: None,
        },
        t(3),
    )
    .unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::Restore(Previous {
                id: first.id,
                version: 1
            }),
            Effect::Finished(RolledBack)
        ]
    );
}

#[test]
fn rollback_with_no_previous_deployment_is_refused_clearly() {
    let mut only = live(1, None);
    let before = only.clone();
    let err = on_event(
        &mut only,
        Event::RollBack {
            by: actor("a"),
            reason: None,
        },
        t(3),
    )
    .unwrap_err();
    assert_eq!(
        err,
        Rejection::NothingToRollBackTo {
            model: "sample-quality".into(),
            version: 1
        }
    );
    assert!(err.to_string().contains("nothing to roll back to"));
    assert_eq!(only, before);
}

#[test]
fn rolling_back_twice_walks_back_through_earlier_deployments() {
    let v1 = live(1, None);
    let v2 = live(2, Some(&v1));
    let mut v3 = live(3, Some(&v2));
    let effects = on_event(
        &mut v3,
        Event::RollBack {
            by: actor("a"),
            reason: None,
        },
        t(6),
    )
    .unwrap();
    assert!(effects.contains(&Effect::Restore(Previous {
        id: v2.id,
        version: 2
    })));
    // v2, live again, still remembers v1.
    let mut v2 = v2;
    on_event(&mut v2, Event::Superseded { by: v3.id }, t(5)).unwrap();
    on_event(
        &mut v2,
        Event::Restore {
            by: actor("a"),
            from: v3.id,
            reason: None,
        },
        t(6),
    )
    .unwrap();
    let effects = on_event(
        &mut v2,
        Event::RollBack {
            by: actor("a"),
            reason: None,
        },
        t(7),
    )
    .unwrap();
    assert!(effects.contains(&Effect::Serve { version: 1 }));
}

#[test]
fn redeploying_the_live_deployment_does_not_name_itself_as_previous() {
    let mut d = fresh(1, Target::Platform);
    let me = Previous {
        id: d.id,
        version: 1,
    };
    on_event(
        &mut d,
        Event::Succeeded {
            outputs: vec![],
            note: None,
            live: Some(me),
        },
        t(1),
    )
    .unwrap();
    assert_eq!(d.previous, None);
}

#[test]
fn every_event_in_a_state_that_does_not_take_it_is_refused_and_changes_nothing() {
    let by = actor("a");
    let events = || {
        vec![
            Event::Started,
            succeeded(None),
            Event::Failed { error: "x".into() },
            Event::Superseded {
                by: DeploymentId::new(),
            },
            Event::RollBack {
                by: by.clone(),
                reason: None,
            },
            Event::Restore {
                by: by.clone(),
                from: DeploymentId::new(),
                reason: None,
            },
        ]
    };
    // (state, which of the events above it takes)
    let takes: [(DeploymentState, [bool; 6]); 6] = [
        (Pending, [true, true, true, false, false, false]),
        (Deploying, [false, true, true, false, false, false]),
        (Live, [false, false, false, true, true, false]),
        (Superseded, [false, false, false, false, false, true]),
        (RolledBack, [false; 6]),
        (Failed, [false; 6]),
    ];
    for (state, accepted) in takes {
        for (event, ok) in events().into_iter().zip(accepted) {
            let mut d = live(2, Some(&live(1, None)));
            d.state = state;
            let before = d.clone();
            let label = format!("{state} + {event:?}");
            match on_event(&mut d, event, t(9)) {
                Ok(_) => assert!(ok, "{label} was accepted"),
                Err(Rejection::WrongState { state: s, .. }) => {
                    assert!(!ok, "{label} was refused");
                    assert_eq!(s, state);
                    assert_eq!(d, before, "{label} changed the record");
                }
                Err(other) => panic!("{label}: {other}"),
            }
        }
    }
}

#[test]
fn only_the_production_version_reaches_the_platform_and_archived_reaches_nothing() {
    use Stage::{Archived, None as Unreviewed, Production, Staging};
    for target in Target::ALL {
        assert!(deployable("m", 1, Production, *target).is_ok());
        let err = deployable("m", 1, Archived, *target).unwrap_err();
        assert!(
            err.to_string().contains("version 1 of 'm' is archived"),
            "{err}"
        );
        assert!(deployable("m", 1, Unreviewed, *target).is_err());
    }
    assert!(deployable("m", 1, Staging, Target::Docker).is_ok());
    assert!(deployable("m", 1, Staging, Target::Kubernetes).is_ok());
    assert!(deployable("m", 1, Staging, Target::Sagemaker).is_ok());
    let err = deployable("m", 1, Staging, Target::Platform).unwrap_err();
    assert!(
        err.to_string().contains("only the production version"),
        "{err}"
    );
}

#[test]
fn states_and_targets_parse_from_their_names() {
    for s in DeploymentState::ALL {
        assert_eq!(s.as_str().parse::<DeploymentState>().unwrap(), *s);
    }
    for t in Target::ALL {
        assert_eq!(t.as_str().parse::<Target>().unwrap(), *t);
    }
    let err = "k8s".parse::<Target>().unwrap_err().to_string();
    assert!(
        err.contains("platform, docker, kubernetes, sagemaker"),
        "{err}"
    );
}
