//! Bad input at the HTTP edge: a 4xx with a clear message, and nothing stored.

mod common;

use common::Server;
use serde_json::{json, Value};

async fn counts(s: &Server) -> (usize, usize, usize) {
    let (_, ds) = s.get("/datasets").await;
    let (_, ex) = s.get("/experiments").await;
    let (_, models) = s.get("/models").await;
    (
        ds.as_array().unwrap().len(),
        ex.as_array().unwrap().len(),
        models.as_array().unwrap().len(),
    )
}

fn assert_problem(status: u16, body: &Value, expected: u16, needle: &str) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["error"].is_string(),
        "problem body has an error code: {body}"
    );
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

/// Declares a body over the limit and sends none of it: the server must
/// answer 413 from the declared length alone. (Sending the bytes races the
/// server's early answer: an HTTP client may see its write fail with a
/// broken pipe instead of reading the 413.)
async fn declare_oversize_body(server: &Server, path: &str, len: usize) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/csv\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_4xx_and_leaves_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[("TRACSEQ_API_MAX_BODY_BYTES", "1000000")]).await;
    let before = counts(&server).await;

    // CSV uploads.
    let (s, b) = server.post_raw("/datasets", Vec::new(), "text/csv").await;
    assert_problem(s, &b, 400, "empty");
    let (s, b) = server
        .post_raw("/datasets", b"a,b\n1,2\n3\n".to_vec(), "text/csv")
        .await;
    assert_problem(s, &b, 400, "line");
    let (s, b) = server
        .post_raw("/datasets", b"a,b\n".to_vec(), "text/csv")
        .await;
    assert_problem(s, &b, 400, "");
    let (s, b) = server
        .post_raw(
            "/datasets?name=..%2Fetc",
            b"a,b\n1,2\n".to_vec(),
            "text/csv",
        )
        .await;
    assert_problem(s, &b, 400, "dataset name");
    let (s, b) = declare_oversize_body(&server, "/datasets", 2_000_000).await;
    assert_problem(s, &b, 413, "limit");

    // Experiments: malformed JSON, unknown fields, wrong types, bad values.
    let (s, b) = server
        .post_raw("/experiments", b"{\"name\": ".to_vec(), "application/json")
        .await;
    assert_problem(s, &b, 400, "invalid JSON");
    let (s, b) = server
        .post_json("/experiments", &json!({"name": "x", "search_spaces": {}}))
        .await;
    assert_problem(s, &b, 400, "unknown field");
    let (s, b) = server.post_json("/experiments", &json!({"name": 5})).await;
    assert_problem(s, &b, 400, "invalid type");
    let space = json!({"x": {"type": "float", "low": 0, "high": 1}});
    let (s, b) = server
        .post_json(
            "/experiments",
            &json!({"name": "x", "search_space": space, "parallelism": 0}),
        )
        .await;
    assert_problem(s, &b, 400, "parallelism");
    let (s, b) = server
        .post_json(
            "/experiments",
            &json!({"name": "x", "search_space": {"x": {"type": "float", "low": 2, "high": 1}}}),
        )
        .await;
    assert_problem(s, &b, 400, "x");
    let missing = tracseq_core::DatasetId::new();
    let (s, b) = server
        .post_json(
            "/experiments",
            &json!({"name": "x", "dataset_id": missing, "target": "y", "budget": {"trials": 3}}),
        )
        .await;
    assert_problem(s, &b, 400, "does not exist");

    // A real data set to aim at, then a wrong target.
    let csv = tracseq_learn::lab::generate_csv(100, 1);
    let (s, ds) = server
        .post_raw("/datasets", csv.into_bytes(), "text/csv")
        .await;
    assert_eq!(s, 201);
    let (s, b) = server
        .post_json("/experiments", &json!({"name": "x", "dataset_id": ds["id"], "target": "nope", "budget": {"trials": 3}}))
        .await;
    assert_problem(s, &b, 400, "nope");
    let (s, b) = server
        .post_json("/experiments", &json!({"name": "x", "dataset_id": ds["id"], "target": "quality_score", "metric": "auc", "budget": {"trials": 3}}))
        .await;
    assert_problem(s, &b, 400, "metric");

    // Predictions: unknown model, bad features.
    let (s, b) = server
        .post_json("/predict", &json!({"model": "ghost", "features": {}}))
        .await;
    assert_problem(s, &b, 404, "ghost");
    let (s, b) = server
        .post_raw(
            "/predict",
            b"{\"model\": \"m\", \"features\": {\"rin\": NaN}}".to_vec(),
            "application/json",
        )
        .await;
    assert_problem(s, &b, 400, "invalid JSON");
    let (s, b) = server
        .post_json("/predict", &json!({"model": "m", "features": [1, 2]}))
        .await;
    assert_problem(s, &b, 400, "invalid type");
    let (s, b) = server
        .post_json("/batch_predict", &json!({"model": "m"}))
        .await;
    assert_problem(s, &b, 404, "m");

    // Ids and routes.
    let (s, b) = server.get("/experiments/not-a-uuid").await;
    assert_problem(s, &b, 400, "not a valid experiment id");
    let (s, b) = server
        .get(&format!("/jobs/{}", tracseq_core::JobId::new()))
        .await;
    assert_problem(s, &b, 404, "not found");
    let (s, b) = server.get("/nowhere").await;
    assert_problem(s, &b, 404, "route");

    let after = counts(&server).await;
    assert_eq!(
        after,
        (before.0 + 1, before.1, before.2),
        "only the one valid data set was stored"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_prediction_features_are_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let csv = tracseq_learn::lab::generate_csv(300, 4);
    let (_, ds) = server
        .post_raw("/datasets", csv.into_bytes(), "text/csv")
        .await;
    let spec = json!({"name": "m", "dataset_id": ds["id"], "target": "quality_score", "budget": {"trials": 2},
                      "search_space": {"family": {"type": "categorical", "choices": ["linear"]}}});
    let (s, exp) = server.post_json("/experiments", &spec).await;
    assert_eq!(s, 201, "{exp}");
    let id = exp["id"].as_str().unwrap().to_string();
    server
        .wait_for(
            &format!("/experiments/{id}"),
            std::time::Duration::from_secs(60),
            |b| b["state"] == "completed",
        )
        .await;

    let (s, b) = server
        .post_json(
            "/predict",
            &json!({"model": "m", "features": {"bogus_feature": 1}}),
        )
        .await;
    assert_problem(s, &b, 400, "bogus_feature");
    let (s, b) = server
        .post_json(
            "/predict",
            &json!({"model": "m", "features": {"rin": "high"}}),
        )
        .await;
    assert_problem(s, &b, 400, "rin");
    let (s, b) = server
        .post_json(
            "/predict",
            &json!({"model": "m", "version": 9, "features": {}}),
        )
        .await;
    assert_problem(s, &b, 404, "version 9");
    // Missing features are imputed, not an error.
    let (s, b) = server
        .post_json("/predict", &json!({"model": "m", "features": {"rin": 8.0}}))
        .await;
    assert_eq!(s, 200, "{b}");
    server.stop();
}
