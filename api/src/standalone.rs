//! `tracseq-ml serve`: one model artifact served on its own, without the
//! platform's database, queue or tokens. It is what the Docker, Kubernetes
//! and SageMaker deploy targets run inside their image, so it answers
//! SageMaker's container contract (`GET /ping`, `POST /invocations` on port
//! 8080) as well as `POST /predict` in the platform's own request shape.
//!
//! The artifact's SHA-256 is given on the command line (the deploy job
//! writes it into the image) and checked before the port opens: an image
//! whose model was swapped or damaged refuses to start instead of serving.
//! There is no authentication here: the image is meant to sit behind the
//! cluster's or the endpoint's own network policy, and the README says so.

use crate::problem::{ApiError, ApiResult};
use crate::routes::predict::check_record;
use crate::routes::{body_limited, json_reply, run};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use tracseq_core::{Error, Result};
use tracseq_learn::artifact::ModelArtifact;
use tracseq_learn::lab;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

/// The most records one request may carry.
pub const MAX_RECORDS: usize = 10_000;

/// A loaded, digest-checked model and what it is called.
pub struct ServedModel {
    pub name: String,
    pub version: u32,
    pub sha256: String,
    pub artifact: ModelArtifact,
}

impl ServedModel {
    /// Reads `path` and checks it against `sha256` before parsing it.
    pub fn load(path: &Path, sha256: &str, name: &str, version: u32) -> Result<ServedModel> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Invalid(format!("--model-file {}: {e}", path.display())))?;
        let artifact = ModelArtifact::from_bytes(&bytes, sha256)
            .map_err(|e| Error::Invalid(format!("--model-file {}: {e}", path.display())))?;
        Ok(ServedModel {
            name: name.to_string(),
            version,
            sha256: sha256.trim().to_ascii_lowercase(),
            artifact,
        })
    }
}

/// One record (`features`) or several (`records`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    features: Option<Map<String, Value>>,
    records: Option<Vec<Map<String, Value>>>,
    /// `false`: answers without per-feature contributions (faster).
    explain: Option<bool>,
}

/// The routes of a standalone server; `max_body_bytes` bounds each request.
pub fn routes(
    model: Arc<ServedModel>,
    max_body_bytes: u64,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let m = model.clone();
    let ping = warp::path!("ping")
        .and(warp::get())
        .map(|| json_reply(&json!({"status": "ok"}), StatusCode::OK));
    let health = warp::path!("health").and(warp::get()).map(move || {
        json_reply(
            &json!({"status": "ok", "model": m.name, "version": m.version, "sha256": m.sha256,
                    "family": m.artifact.family.name()}),
            StatusCode::OK,
        )
    });
    let m = model;
    let predict = warp::path!("predict")
        .or(warp::path!("invocations"))
        .unify()
        .and(warp::post())
        .and(body_limited(max_body_bytes))
        .then(move |b| run(predict(m.clone(), b)));
    ping.or(health)
        .unify()
        .or(predict)
        .unify()
        .or(warp::any().map(|| {
            crate::problem::respond(Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "this server answers GET /ping, GET /health, POST /predict and POST /invocations",
            )))
        }))
        .unify()
}

async fn predict(model: Arc<ServedModel>, body: std::result::Result<Bytes, ApiError>) -> ApiResult {
    let body = body?;
    let req: Request = crate::parse_json(&body)?;
    let (records, one) = match (req.features, req.records) {
        (Some(f), None) => (vec![f], true),
        (None, Some(r)) if !r.is_empty() && r.len() <= MAX_RECORDS => (r, false),
        (None, Some(r)) => {
            return Err(ApiError::bad_request(format!(
                "records must hold 1 to {MAX_RECORDS} records, got {}",
                r.len()
            )))
        }
        _ => {
            return Err(ApiError::bad_request(
                "give either features (one record) or records (several), not both",
            ))
        }
    };
    for r in &records {
        check_record(r)?;
    }
    let m = model.clone();
    let explain = crate::routes::predict::explain_of(req.explain);
    let predictions =
        tokio::task::spawn_blocking(move || m.artifact.predict_with(&records, explain))
            .await
            .map_err(|e| Error::Internal(format!("prediction panicked: {e}")))??;
    let sample_quality = model.artifact.target == lab::TARGET;
    let answers: Vec<Value> = predictions
        .iter()
        .map(|p| {
            let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
            if sample_quality {
                v["quality"] = serde_json::to_value(lab::assess(p)).unwrap_or(Value::Null);
            }
            v
        })
        .collect();
    let head = json!({"model": model.name, "version": model.version});
    let body = if one {
        let mut v = answers.into_iter().next().unwrap_or(Value::Null);
        if let (Some(obj), Some(h)) = (v.as_object_mut(), head.as_object()) {
            for (k, x) in h {
                obj.insert(k.clone(), x.clone());
            }
        }
        v
    } else {
        json!({"model": model.name, "version": model.version, "predictions": answers})
    };
    Ok(json_reply(&body, StatusCode::OK))
}

/// Binds `addr` and serves `model` until `shutdown` resolves, then lets
/// in-flight requests finish; the bound address goes out through `bound`.
pub async fn serve(
    model: Arc<ServedModel>,
    max_body_bytes: u64,
    addr: std::net::SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    bound: tokio::sync::oneshot::Sender<std::net::SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let service = warp::service(routes(model, max_body_bytes));
    crate::server::run_with(listener, None, shutdown, move |req, _remote| {
        let mut service = service.clone();
        async move {
            match tower_service::Service::call(&mut service, req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    })
    .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracseq_learn::automl::{fit_final, EvalOptions};
    use tracseq_learn::dataset::{Dataset, Limits};

    /// A linear sample-quality model, written to a file with its digest.
    fn model_file() -> (std::path::PathBuf, String) {
        let csv = lab::generate_csv(200, 3);
        let data = Dataset::from_csv(csv.as_bytes(), &Limits::default()).unwrap();
        let params = json!({"family": "linear"}).as_object().cloned().unwrap();
        let artifact = fit_final(
            &data,
            lab::TARGET,
            &params,
            &EvalOptions::default(),
            Default::default(),
        )
        .unwrap();
        let bytes = artifact.to_bytes();
        let sha = tracseq_learn::artifact::sha256_hex(&bytes);
        let path = std::env::temp_dir().join(format!("standalone-{}.json", uuid::Uuid::now_v7()));
        std::fs::write(&path, bytes).unwrap();
        (path, sha)
    }

    #[test]
    fn a_model_file_that_does_not_match_its_digest_is_refused() {
        let (path, sha) = model_file();
        let wrong = format!(
            "{}{}",
            &sha[..63],
            if sha.ends_with('0') { "1" } else { "0" }
        );
        let err = ServedModel::load(&path, &wrong, "sq", 1).err().unwrap();
        assert!(err.to_string().contains("--model-file"), "{err}");
        let missing = ServedModel::load(Path::new("/nonexistent/model.json"), &sha, "sq", 1);
        assert!(matches!(missing, Err(Error::Invalid(_))));
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn the_sagemaker_contract_and_predict_answer_with_the_model_named() {
        let (path, sha) = model_file();
        let model = Arc::new(ServedModel::load(&path, &sha, "sq", 4).unwrap());
        let api = routes(model, 1 << 20);
        let ping = warp::test::request().path("/ping").reply(&api).await;
        assert_eq!(ping.status(), 200);
        let record = serde_json::to_value(lab::example_record(5)).unwrap();
        for path in ["/predict", "/invocations"] {
            let one = warp::test::request()
                .method("POST")
                .path(path)
                .json(&json!({"features": record}))
                .reply(&api)
                .await;
            assert_eq!(one.status(), 200, "{path}");
            let v: Value = serde_json::from_slice(one.body()).unwrap();
            assert_eq!(
                (v["model"].as_str(), v["version"].as_u64()),
                (Some("sq"), Some(4))
            );
            assert!(v["value"].is_number() && v["quality"].is_object(), "{v}");
        }
        let many = warp::test::request()
            .method("POST")
            .path("/invocations")
            .json(&json!({"records": [record, record]}))
            .reply(&api)
            .await;
        let v: Value = serde_json::from_slice(many.body()).unwrap();
        assert_eq!(v["predictions"].as_array().unwrap().len(), 2);
        let health = warp::test::request().path("/health").reply(&api).await;
        let v: Value = serde_json::from_slice(health.body()).unwrap();
        assert_eq!(v["sha256"].as_str(), Some(sha.as_str()));
        std::fs::remove_file(path).ok();
    }

    #[tokio::test]
    async fn bad_requests_are_refused_with_a_problem_naming_what_is_wrong() {
        let (path, sha) = model_file();
        let api = routes(
            Arc::new(ServedModel::load(&path, &sha, "sq", 1).unwrap()),
            1024,
        );
        let cases = [
            (json!({}), 400, "either features"),
            (
                json!({"features": {}, "records": [{}]}),
                400,
                "either features",
            ),
            (json!({"records": []}), 400, "1 to 10000"),
            (json!({"features": {"x": [1]}}), 400, "feature 'x'"),
            (
                json!({"features": {"x": "a".repeat(2000)}}),
                413,
                "limit of 1024 bytes",
            ),
        ];
        for (body, status, says) in cases {
            let r = warp::test::request()
                .method("POST")
                .path("/predict")
                .json(&body)
                .reply(&api)
                .await;
            let text = String::from_utf8_lossy(r.body());
            assert_eq!(r.status(), status, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
        }
        let unknown = warp::test::request().path("/models").reply(&api).await;
        assert_eq!(unknown.status(), 404);
        std::fs::remove_file(path).ok();
    }
}
