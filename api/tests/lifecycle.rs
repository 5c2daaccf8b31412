//! The model lifecycle over HTTP, as two people use it: a scientist asks
//! for a promotion, an approver decides, the scientist deploys and rolls
//! back; aliases and the history record who did what. In memory, through
//! the guard (roles are checked as in production). The deploy job's run by
//! a worker is covered in the scheduler's and the worker's tests.

mod common;

use common::fixture;
use serde_json::json;
use tracseq_core::fixtures::model_version;
use tracseq_core::security::Role;

async fn with_versions(n: u32) -> common::Fixture {
    let f = fixture().await;
    for version in 1..=n {
        f.platform
            .state
            .register_model_version(
                model_version("sq", version, 0.7 + version as f64 / 100.0),
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    f
}

#[tokio::test]
async fn a_promotion_to_production_needs_an_approver_who_is_not_the_requester() {
    let f = with_versions(2).await;
    let sci = f.token(Role::Scientist);
    let body = json!({"name": "sq", "version": 1, "stage": "production", "reason": "best AUC",
                      "gates": [{"type": "threshold", "metric": "auc", "value": 0.7}]});
    let req = f
        .call("POST", "/models/promote", Some(sci), &body.to_string())
        .await;
    assert_eq!(req.status, 201, "{}", req.body);
    assert_eq!(req.body["state"], "pending");
    assert_eq!(
        req.body["gates"][0]["goal"], "higher",
        "AUC's own direction"
    );
    let id = req.body["id"].as_str().unwrap().to_string();

    // A scientist may not approve at all; the admin who requested may not approve their own.
    let path = format!("/promotions/{id}/approve");
    assert_eq!(f.call("POST", &path, Some(sci), "").await.status, 403);
    let appr = f
        .call(
            "POST",
            &path,
            Some(f.token(Role::Approver)),
            r#"{"reason": "folds agree"}"#,
        )
        .await;
    assert_eq!(appr.status, 200, "{}", appr.body);
    assert_eq!(appr.body["state"], "approved");
    assert_eq!(appr.body["decided_by"]["name"], "approver");
    assert_eq!(
        f.call("POST", &path, Some(f.token(Role::Admin)), "")
            .await
            .status,
        409
    );

    let own = f
        .call(
            "POST",
            "/models/promote",
            Some(f.token(Role::Admin)),
            &json!({"name": "sq", "version": 2, "stage": "production", "reason": "newer"})
                .to_string(),
        )
        .await;
    let own_id = own.body["id"].as_str().unwrap();
    let refused = f
        .call(
            "POST",
            &format!("/promotions/{own_id}/approve"),
            Some(f.token(Role::Admin)),
            "",
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("another identity"));

    let history = f
        .call("GET", "/models/sq/history", Some(f.token(Role::Viewer)), "")
        .await;
    assert_eq!(history.status, 200);
    assert_eq!(history.body["stages"]["1"], "production");
    let entry = &history.body["entries"][0];
    assert_eq!(
        (
            entry["requested_by"]["name"].as_str(),
            entry["approved_by"]["name"].as_str()
        ),
        (Some("scientist"), Some("approver"))
    );
    let listed = f
        .call(
            "GET",
            "/promotions?model=sq&state=pending",
            Some(f.token(Role::Viewer)),
            "",
        )
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_promotion_requests_are_refused_naming_the_field() {
    let f = with_versions(1).await;
    let sci = f.token(Role::Scientist);
    for (body, says) in [
        (
            json!({"name": "sq", "version": 1, "stage": "production", "reason": " "}),
            "reason",
        ),
        (
            json!({"name": "sq", "version": 1, "stage": "live", "reason": "x"}),
            "stage",
        ),
        (
            json!({"name": "sq", "version": 1, "stage": "staging", "reason": "x",
                "gates": [{"type": "threshold", "metric": "custom_score", "value": 1}]}),
            "gates[0].goal",
        ),
        (
            json!({"name": "sq", "version": 1, "stage": "staging", "reason": "x",
                "gates": [{"type": "threshold", "metric": "rmse", "value": 1, "goal": "higher"}]}),
            "lower",
        ),
        (
            json!({"name": "sq", "version": 9, "stage": "staging", "reason": "x"}),
            "no version 9",
        ),
    ] {
        let a = f
            .call("POST", "/models/promote", Some(sci), &body.to_string())
            .await;
        assert!(
            a.status == 400 || a.status == 404,
            "{body}: {} {}",
            a.status,
            a.body
        );
        assert!(
            a.body["message"].as_str().unwrap().contains(says),
            "{body}: {}",
            a.body
        );
    }
    let listed = f.call("GET", "/promotions", Some(sci), "").await;
    assert_eq!(listed.body, json!([]), "nothing half-stored");
}

#[tokio::test]
async fn aliases_are_set_moved_and_deleted_by_name() {
    let f = with_versions(2).await;
    let sci = f.token(Role::Scientist);
    let set = f
        .call(
            "PUT",
            "/models/sq/aliases/champion",
            Some(sci),
            r#"{"version": 1}"#,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    let moved = f
        .call(
            "PUT",
            "/models/sq/aliases/champion",
            Some(sci),
            r#"{"version": 2}"#,
        )
        .await;
    assert_eq!(moved.body["aliases"]["champion"], 2);
    let reserved = f
        .call(
            "PUT",
            "/models/sq/aliases/latest",
            Some(sci),
            r#"{"version": 2}"#,
        )
        .await;
    assert_eq!(reserved.status, 400, "{}", reserved.body);
    assert_eq!(
        f.call("DELETE", "/models/sq/aliases/champion", Some(sci), "")
            .await
            .status,
        200
    );
    assert_eq!(
        f.call("DELETE", "/models/sq/aliases/champion", Some(sci), "")
            .await
            .status,
        404
    );
    let history = f
        .call("GET", "/models/sq/history?limit=2", Some(sci), "")
        .await;
    assert_eq!(history.body["entries"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_deploy_queues_a_job_and_a_first_deployment_cannot_be_rolled_back() {
    let f = with_versions(1).await;
    let sci = f.token(Role::Scientist);
    let deploy = json!({"name": "sq", "stage": "production"}).to_string();
    let none = f.call("POST", "/models/deploy", Some(sci), &deploy).await;
    assert_eq!(none.status, 404, "nothing in production yet: {}", none.body);
    let staged = f
        .call(
            "POST",
            "/models/promote",
            Some(sci),
            &json!({"name": "sq", "version": 1, "stage": "staging", "reason": "try it"})
                .to_string(),
        )
        .await;
    assert_eq!(staged.body["state"], "approved");
    let refused = f
        .call(
            "POST",
            "/models/deploy",
            Some(sci),
            &json!({"name": "sq", "version": 1}).to_string(),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("only the production version"));
    let docker = f
        .call(
            "POST",
            "/models/deploy",
            Some(sci),
            &json!({"name": "sq", "version": 1, "target": "docker"}).to_string(),
        )
        .await;
    assert_eq!(docker.status, 202, "{}", docker.body);
    let id = docker.body["deployment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(docker.body["deployment"]["state"], "pending");
    let job = f
        .call(
            "GET",
            &format!("/jobs/{}", docker.body["job_id"].as_str().unwrap()),
            Some(sci),
            "",
        )
        .await;
    assert_eq!(job.body["kind"], "deploy");
    let both = f
        .call(
            "POST",
            "/models/deploy",
            Some(sci),
            &json!({"name": "sq", "version": 1, "alias": "x"}).to_string(),
        )
        .await;
    assert_eq!(both.status, 400);
    let rollback = f
        .call(
            "POST",
            &format!("/deployments/{id}/rollback"),
            Some(sci),
            "",
        )
        .await;
    assert_eq!(rollback.status, 409, "{}", rollback.body);
    let listed = f
        .call(
            "GET",
            "/deployments?model=sq&target=docker",
            Some(f.token(Role::Viewer)),
            "",
        )
        .await;
    assert_eq!(listed.body.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn tags_are_replaced_validated_and_shown_with_the_model_and_its_versions() {
    let f = with_versions(2).await;
    let sci = f.token(Role::Scientist);
    let put = f
        .call(
            "PUT",
            "/models/sq/versions/2/tags",
            Some(sci),
            &json!({"tags": {"assay": "wgs", "reviewed-by": "qc team"}}).to_string(),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let model_tags = json!({"tags": {"owner": "sequencing-core"}}).to_string();
    let put = f
        .call("PUT", "/models/sq/tags", Some(sci), &model_tags)
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let viewer = f.token(Role::Viewer);
    assert_eq!(
        f.call("PUT", "/models/sq/tags", Some(viewer), &model_tags)
            .await
            .status,
        403
    );
    let bad = f
        .call(
            "PUT",
            "/models/sq/tags",
            Some(sci),
            &json!({"tags": {"has space": "x"}}).to_string(),
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.body["message"]
        .as_str()
        .unwrap()
        .contains("'has space'"));
    let missing = f
        .call("PUT", "/models/sq/versions/9/tags", Some(sci), &model_tags)
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);

    let model = f.call("GET", "/models/sq", Some(viewer), "").await;
    assert_eq!(model.body["tags"]["owner"], "sequencing-core");
    assert_eq!(model.body["versions"][1]["tags"]["assay"], "wgs");
    assert_eq!(model.body["versions"][0]["stage"], "none");
    assert_eq!(model.body["production"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_versions_metrics_show_training_figures_and_no_serving_before_any_request() {
    let f = with_versions(1).await;
    let m = f
        .call(
            "GET",
            "/models/sq/versions/1/metrics",
            Some(f.token(Role::Viewer)),
            "",
        )
        .await;
    assert_eq!(m.status, 200, "{}", m.body);
    assert_eq!(m.body["training"]["auc"], 0.71);
    assert_eq!(m.body["serving"]["replica"], serde_json::Value::Null);
    assert_eq!(m.body["serving"]["serves_unpinned_requests_here"], false);
    let none = f
        .call(
            "GET",
            "/models/sq/versions/7/metrics",
            Some(f.token(Role::Viewer)),
            "",
        )
        .await;
    assert_eq!(none.status, 404);
}
