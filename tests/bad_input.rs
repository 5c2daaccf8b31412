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

/// A request to the API.
#[derive(Debug)]
enum Call {
    Get(String),
    Json(&'static str, Value),
    /// Path, body, content type.
    Raw(&'static str, &'static [u8], &'static str),
}

/// Makes each call, which must be refused with the status and a problem
/// whose message mentions the needle.
async fn assert_refused(server: &Server, cases: Vec<(Call, u16, &str)>) {
    for (call, expected, needle) in cases {
        eprintln!("{call:?}");
        let (status, body) = match &call {
            Call::Get(path) => server.get(path).await,
            Call::Json(path, body) => server.post_json(path, body).await,
            Call::Raw(path, body, content_type) => {
                server.post_raw(path, body.to_vec(), content_type).await
            }
        };
        assert_problem(status, &body, expected, needle);
    }
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
         Content-Length: {len}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        server.token.as_deref().unwrap_or_default()
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
    use Call::{Get, Json, Raw};
    let server = Server::start_fresh(&[("TRACSEQ_API_MAX_BODY_BYTES", "1000000")]).await;
    let before = counts(&server).await;

    let space = json!({"x": {"type": "float", "low": 0, "high": 1}});
    let missing = tracseq_core::DatasetId::new();
    let json = "application/json";
    assert_refused(
        &server,
        vec![
            // CSV uploads.
            (Raw("/datasets", b"", "text/csv"), 400, "empty"),
            (Raw("/datasets", b"a,b\n1,2\n3\n", "text/csv"), 400, "line"),
            (Raw("/datasets", b"a,b\n", "text/csv"), 400, ""),
            (
                Raw("/datasets?name=..%2Fetc", b"a,b\n1,2\n", "text/csv"),
                400,
                "dataset name",
            ),
            // Experiments: malformed JSON, unknown fields, wrong types, bad values.
            (Raw("/experiments", b"{\"name\": ", json), 400, "invalid JSON"),
            (
                Json("/experiments", json!({"name": "x", "search_spaces": {}})),
                400,
                "unknown field",
            ),
            (Json("/experiments", json!({"name": 5})), 400, "invalid type"),
            (
                Json(
                    "/experiments",
                    json!({"name": "x", "search_space": space, "parallelism": 0}),
                ),
                400,
                "parallelism",
            ),
            (
                Json(
                    "/experiments",
                    json!({"name": "x", "search_space": {"x": {"type": "float", "low": 2, "high": 1}}}),
                ),
                400,
                "x",
            ),
            (
                Json(
                    "/experiments",
                    json!({"name": "x", "dataset_id": missing, "target": "y", "budget": {"trials": 3}}),
                ),
                400,
                "does not exist",
            ),
            // Predictions: unknown model, bad features.
            (
                Json("/predict", json!({"model": "ghost", "features": {}})),
                404,
                "ghost",
            ),
            (
                Raw(
                    "/predict",
                    b"{\"model\": \"m\", \"features\": {\"rin\": NaN}}",
                    json,
                ),
                400,
                "invalid JSON",
            ),
            (
                Json("/predict", json!({"model": "m", "features": [1, 2]})),
                400,
                "invalid type",
            ),
            (Json("/batch_predict", json!({"model": "m"})), 404, "m"),
            // Ids and routes.
            (
                Get("/experiments/not-a-uuid".into()),
                400,
                "not a valid experiment id",
            ),
            (
                Get(format!("/jobs/{}", tracseq_core::JobId::new())),
                404,
                "not found",
            ),
            (Get("/nowhere".into()), 404, "route"),
        ],
    )
    .await;
    let (s, b) = declare_oversize_body(&server, "/datasets", 2_000_000).await;
    assert_problem(s, &b, 413, "limit");

    // A real data set to aim at, then a wrong target and a wrong metric.
    let ds = server.upload_lab(100, 1).await;
    assert_refused(
        &server,
        vec![
            (
                Json(
                    "/experiments",
                    json!({"name": "x", "dataset_id": ds["id"], "target": "nope", "budget": {"trials": 3}}),
                ),
                400,
                "nope",
            ),
            (
                Json(
                    "/experiments",
                    json!({"name": "x", "dataset_id": ds["id"], "target": "quality_score", "metric": "auc", "budget": {"trials": 3}}),
                ),
                400,
                "metric",
            ),
        ],
    )
    .await;

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
    let (server, ds) = Server::start_with_lab(300, 4).await;
    let spec = json!({"name": "m", "dataset_id": ds["id"], "target": "quality_score", "budget": {"trials": 2},
                      "search_space": {"family": {"type": "categorical", "choices": ["linear"]}}});
    let (id, _) = server.create_experiment(&spec).await;
    server
        .wait_for(
            &format!("/experiments/{id}"),
            std::time::Duration::from_secs(60),
            |b| b["state"] == "completed",
        )
        .await;

    let predict = |features: Value| {
        Call::Json(
            "/predict",
            json!({"model": "m", "version": 1, "features": features}),
        )
    };
    assert_refused(
        &server,
        vec![
            (predict(json!({"bogus_feature": 1})), 400, "bogus_feature"),
            (predict(json!({"rin": "high"})), 400, "rin"),
            (
                Call::Json(
                    "/predict",
                    json!({"model": "m", "version": 1, "alias": "champion", "features": {}}),
                ),
                400,
                "at most one of version and alias",
            ),
            (
                Call::Json(
                    "/predict",
                    json!({"model": "m", "alias": "champion", "features": {}}),
                ),
                404,
                "no alias 'champion'",
            ),
            (
                Call::Json("/predict", json!({"model": "m", "features": {}})),
                409,
                "no deployed or production version",
            ),
            (
                Call::Json(
                    "/predict",
                    json!({"model": "m", "version": 9, "features": {}}),
                ),
                404,
                "version 9",
            ),
        ],
    )
    .await;
    // Missing features are imputed, not an error.
    server
        .predict(&json!({"model": "m", "version": 1, "features": {"rin": 8.0}}))
        .await;
    server.stop();
}

/// What a fuzzer (schemathesis) found, each refused briefly: huge input is
/// not echoed, control characters are not stored, server paths are not
/// named, and an ask/tell experiment ends when its budget is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzer_findings_are_refused_briefly_and_nothing_is_echoed_or_leaked() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]).await;
    let space = json!({"x": {"type": "float", "low": 0, "high": 1}});
    let huge = "n".repeat(1_000_000);
    let long_text = "t".repeat(10_000);
    let mut unknown = serde_json::Map::new();
    unknown.insert("name".into(), json!("x"));
    unknown.insert(huge.clone(), json!(1));
    let cases = vec![
        (
            Call::Json("/experiments", json!({"name": huge, "search_space": space})),
            400,
            "experiment name",
        ),
        (
            Call::Json("/experiments", Value::Object(unknown)),
            400,
            "unknown field",
        ),
        (
            Call::Json(
                "/experiments",
                json!({"name": "x", "search_space": {"a\u{0}b": {"type": "float", "low": 0, "high": 1}}}),
            ),
            400,
            "search_space parameter",
        ),
        (
            Call::Raw("/datasets?name=nul", b"a\0b,c\n1,2\n3,4\n", "text/csv"),
            400,
            "CSV column",
        ),
        (
            Call::Json(
                "/predict",
                json!({"model": "m", "features": {"rin": long_text}}),
            ),
            400,
            "at most 1024",
        ),
        (
            Call::Get("/artifacts/models/m/1/model.json".into()),
            404,
            "models/m/1/model.json",
        ),
    ];
    let root = dir.path().display().to_string();
    for (call, expected, needle) in cases {
        let (status, body) = match &call {
            Call::Get(path) => server.get(path).await,
            Call::Json(path, body) => server.post_json(path, body).await,
            Call::Raw(path, body, ct) => server.post_raw(path, body.to_vec(), ct).await,
        };
        assert_problem(status, &body, expected, needle);
        let text = body.to_string();
        assert!(text.len() < 2_000, "a short answer: {} bytes", text.len());
        assert!(!text.contains(&root), "the data dir leaked: {text}");
        assert!(!text.contains("tttttttttt"), "the feature text was echoed");
    }
    let (_, datasets) = server.get("/datasets").await;
    assert_eq!(datasets.as_array().unwrap().len(), 0, "nothing stored");

    // An ask/tell budget of two trials: the second tell ends the experiment.
    let (id, _) = server
        .create_experiment(&json!({"name": "b", "budget": {"trials": 2}, "search_space": space}))
        .await;
    for _ in 0..2 {
        let t = server.ask(&id).await;
        let n = t["number"].as_u64().unwrap();
        let (status, told) = server.tell(&id, n, &json!({"value": 0.5})).await;
        assert_eq!(status, 200, "{told}");
    }
    let exp = server.get_ok(&format!("/experiments/{id}")).await;
    assert_eq!(exp["state"], "completed", "{exp}");
    let (status, body) = server
        .post_json(&format!("/experiments/{id}/ask"), &json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    server.stop();
}

/// Listings come a page at a time: `limit`, `after` and a `Link` to the
/// next page, which walks every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_paged_and_the_next_link_walks_every_record_once() {
    let server = Server::start_fresh(&[]).await;
    let space = json!({"x": {"type": "float", "low": 0, "high": 1}});
    let mut made = Vec::new();
    for i in 0..5 {
        let (id, _) = server
            .create_experiment(&json!({"name": format!("p{i}"), "search_space": space}))
            .await;
        made.push(id);
    }
    let mut seen = Vec::new();
    let mut next = Some("/experiments?limit=2".to_string());
    while let Some(path) = next.take() {
        let resp = server
            .http
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        next = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string())
            .map(|l| l[1..l.find('>').unwrap()].to_string());
        let page: Value = resp.json().await.unwrap();
        let ids: Vec<String> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
    }
    made.reverse();
    assert_eq!(seen, made, "newest first, each once");
    for path in [
        "/experiments?limit=0",
        "/experiments?limit=1001",
        "/experiments?after=nope",
        "/datasets?after=nope",
        "/models?after=..",
        "/workers?after=bad%20id",
        "/experiments?bogus=1",
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    server.stop();
}
