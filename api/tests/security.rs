//! The request guard over the whole api: who may call what (the matrix of
//! every operation in `/openapi.json` against every role), tokens, and what
//! the audit log records. In memory, through `App::handle`, the same entry
//! the server uses.

mod common;

use common::fixture;
use serde_json::json;
use tracseq_core::security::audit::{AuditFilter, Outcome};
use tracseq_core::security::Role;
use warp::http::header;

/// Who may call what, written out independently of the route table: the
/// table must agree with this, route by route.
fn may_call(role: Role, method: &str, path: &str) -> bool {
    use Role::*;
    match path {
        "/health" | "/openapi.json" | "/whoami" => true,
        p if p.starts_with("/tokens") || p == "/audit" => role == Admin,
        "/predict" | "/batch_predict" | "/feedback" => {
            matches!(role, Scientist | Predictor | Admin)
        }
        // Lab data: the artifacts' contents and the logged features.
        "/artifacts/{path}" | "/predictions" => matches!(role, Scientist | Admin),
        // Deciding a promotion is the approver's job (and an admin's).
        "/promotions/{id}/approve" | "/promotions/{id}/reject" => matches!(role, Approver | Admin),
        _ if method == "get" => matches!(role, Viewer | Scientist | Approver | Admin),
        _ => matches!(role, Scientist | Admin),
    }
}

fn concrete(path: &str) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    path.replace("{id}", &id)
        .replace("{number}", "0")
        .replace("{name}", "m")
        .replace("{alias}", "champion")
        .replace("{version}", "1")
        .replace("{path}", "datasets/x/data.csv")
}

#[tokio::test]
async fn every_operation_in_the_openapi_document_answers_each_role_as_its_permission_says() {
    let f = fixture().await;
    let doc = f
        .call("GET", "/openapi.json", Some(f.token(Role::Viewer)), "")
        .await;
    assert_eq!(doc.status, 200);
    let mut checked = 0;
    for (path, ops) in doc.body["paths"].as_object().unwrap() {
        for (method, _) in ops.as_object().unwrap() {
            let url = concrete(path);
            let m = method.to_uppercase();
            let anonymous = f.call(&m, &url, None, "{}").await;
            if path == "/health" {
                assert_eq!(anonymous.status, 200, "{m} {path}");
            } else {
                assert_eq!(anonymous.status, 401, "{m} {path} without a token");
                assert!(
                    anonymous.headers.contains_key(header::WWW_AUTHENTICATE),
                    "{m} {path}"
                );
            }
            for role in Role::ALL {
                let a = f.call(&m, &url, Some(f.token(role)), "{}").await;
                if may_call(role, method, path) {
                    assert!(
                        a.status != 401 && a.status != 403,
                        "{role} must reach {m} {path}: {} {}",
                        a.status,
                        a.body
                    );
                } else {
                    assert_eq!(a.status, 403, "{role} on {m} {path}: {}", a.body);
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 29, "only {checked} operations in the document");
}

#[tokio::test]
async fn a_refusal_names_the_missing_permission_and_unknown_tokens_get_invalid_token() {
    let f = fixture().await;
    let denied = f
        .call(
            "POST",
            "/datasets?name=x",
            Some(f.token(Role::Viewer)),
            "a,b\n1,2\n",
        )
        .await;
    assert_eq!(denied.status, 403);
    let message = denied.body["message"].as_str().unwrap();
    assert!(
        message.contains("'write'") && message.contains("viewer"),
        "{message}"
    );
    let unknown = f
        .call(
            "GET",
            "/datasets",
            Some(&format!("tsq_{}", "0".repeat(64))),
            "",
        )
        .await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("invalid_token"));
}

#[tokio::test]
async fn a_path_with_the_wrong_method_is_405_with_allow() {
    let f = fixture().await;
    let a = f.call("DELETE", "/datasets", None, "").await;
    assert_eq!(a.status, 405);
    assert_eq!(a.headers[header::ALLOW], "POST, GET");
    let missing = f.call("GET", "/nowhere", None, "").await;
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_plain_client_id_is_kept() {
    let f = fixture().await;
    let a = f.call("GET", "/health", None, "").await;
    assert!(uuid::Uuid::parse_str(a.headers["x-request-id"].to_str().unwrap()).is_ok());
}

#[tokio::test]
async fn tokens_made_through_the_api_work_at_once_list_without_secrets_and_revoke_at_once() {
    let f = fixture().await;
    let admin = f.token(Role::Admin).to_string();
    let made = f
        .call(
            "POST",
            "/tokens",
            Some(&admin),
            r#"{"name": "lims", "role": "predictor", "expires": "30d"}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let secret = made.body["token"].as_str().unwrap().to_string();
    let id = made.body["id"].as_str().unwrap().to_string();
    assert!(made.body["expires_at"].is_string());

    let me = f.call("GET", "/whoami", Some(&secret), "").await;
    assert_eq!(
        (me.body["name"].as_str(), me.body["role"].as_str()),
        (Some("lims"), Some("predictor"))
    );
    assert_eq!(me.body["permissions"], json!(["predict"]));

    let listed = f.call("GET", "/tokens", Some(&admin), "").await;
    let text = listed.body.to_string();
    assert!(!text.contains(&secret[4..]), "a listing shows a secret");
    assert!(!text.contains("hash"), "a listing shows a hash: {text}");

    let revoked = f
        .call("POST", &format!("/tokens/{id}/revoke"), Some(&admin), "")
        .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.body["state"], "revoked");
    let after = f.call("GET", "/whoami", Some(&secret), "").await;
    assert_eq!(after.status, 401);
    assert_eq!(after.body["message"], "the API token has been revoked");

    for (body, field) in [
        (r#"{"name": "x", "role": "root"}"#, "role"),
        (r#"{"name": "x y", "role": "viewer"}"#, "token name"),
        (
            r#"{"name": "x", "role": "viewer", "expires": "1w"}"#,
            "expires",
        ),
        (
            r#"{"name": "lims2", "role": "viewer", "secret": "mine"}"#,
            "secret",
        ),
    ] {
        let bad = f.call("POST", "/tokens", Some(&admin), body).await;
        assert_eq!(bad.status, 400, "{body}: {}", bad.body);
        assert!(
            bad.body["message"].as_str().unwrap().contains(field),
            "{}",
            bad.body
        );
    }
    let taken = f
        .call(
            "POST",
            "/tokens",
            Some(&admin),
            r#"{"name": "viewer", "role": "viewer"}"#,
        )
        .await;
    assert_eq!(taken.status, 409);
}

#[tokio::test]
async fn the_last_active_admin_token_cannot_be_revoked_through_the_api() {
    let f = fixture().await;
    let admin = f.token(Role::Admin).to_string();
    let me = f.call("GET", "/whoami", Some(&admin), "").await;
    let id = me.body["id"].as_str().unwrap();
    let a = f
        .call("POST", &format!("/tokens/{id}/revoke"), Some(&admin), "")
        .await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert!(f.call("GET", "/whoami", Some(&admin), "").await.status == 200);
}

#[tokio::test]
async fn changes_and_refusals_are_in_the_audit_log_with_who_what_and_from_where() {
    let f = fixture().await;
    let scientist = f.token(Role::Scientist).to_string();
    let upload = f
        .call(
            "POST",
            "/datasets?name=lab",
            Some(&scientist),
            "a,b\n1,2\n3,4\n",
        )
        .await;
    assert_eq!(upload.status, 201, "{}", upload.body);
    let dataset = upload.body["id"].as_str().unwrap().to_string();
    let request_id = upload.headers["x-request-id"].to_str().unwrap().to_string();
    f.call(
        "POST",
        "/datasets?name=lab",
        Some(f.token(Role::Viewer)),
        "a\n1\n",
    )
    .await;
    f.call("POST", "/experiments", None, "{}").await;
    // Reads are not recorded.
    f.call("GET", "/datasets", Some(&scientist), "").await;

    let log = f
        .security
        .list_audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 3, "{log:#?}");
    let (anonymous, denied, created) = (&log[0].entry, &log[1].entry, &log[2].entry);
    assert_eq!(created.action, "datasets.create");
    assert_eq!(created.actor.as_ref().unwrap().name, "scientist");
    assert_eq!(created.outcome, Outcome::Ok);
    assert_eq!(created.status, 201);
    assert_eq!(created.targets, std::slice::from_ref(&dataset));
    assert_eq!(created.request_id, request_id);
    assert_eq!(created.client.as_deref(), Some("10.1.2.3:40000"));
    assert_eq!(
        (
            denied.outcome,
            denied.status,
            denied.actor.as_ref().unwrap().name.as_str()
        ),
        (Outcome::Denied, 403, "viewer")
    );
    assert_eq!(
        (anonymous.outcome, anonymous.status),
        (Outcome::Denied, 401)
    );
    assert!(anonymous.actor.is_none());

    // The same through GET /audit, for admins only, filtered and paged.
    let admin = f.token(Role::Admin).to_string();
    let by_target = f
        .call("GET", &format!("/audit?target={dataset}"), Some(&admin), "")
        .await;
    assert_eq!(by_target.status, 200, "{}", by_target.body);
    assert_eq!(by_target.body.as_array().unwrap().len(), 1);
    let page = f.call("GET", "/audit?limit=2", Some(&admin), "").await;
    let link = page.headers[header::LINK].to_str().unwrap().to_string();
    assert!(link.contains("before="), "{link}");
    let next = link.trim_start_matches('<').split('>').next().unwrap();
    let rest = f.call("GET", next, Some(&admin), "").await;
    assert!(!rest.body.as_array().unwrap().is_empty(), "{}", rest.body);
    let bad = f.call("GET", "/audit?limit=0", Some(&admin), "").await;
    assert_eq!(bad.status, 400);
}
