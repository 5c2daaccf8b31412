//! The fixture the api's tests share: an in-memory platform, one token per
//! role, and calls through `App::handle`, the same entry the server uses.
#![allow(dead_code)]

use chrono::Utc;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tracseq_api::{ApiState, App, ServingSetup};
use tracseq_backends::MemorySecurityStore;
use tracseq_core::lifecycle::deployment::{on_event, Deployment, Event, Previous};
use tracseq_core::lifecycle::RetryPolicy;
use tracseq_core::ports::DeploymentWrite;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::token::{issue, TokenRequest};
use tracseq_core::security::Role;
use tracseq_core::Platform;
use warp::http::{header, Request};

pub struct Fixture {
    pub app: App,
    /// The replica's loaded models (to refresh its deployments at once).
    pub models: Arc<tracseq_api::serving::ModelCache>,
    pub platform: Platform,
    pub security: Arc<dyn SecurityStore>,
    pub tokens: BTreeMap<Role, String>,
}

pub async fn fixture() -> Fixture {
    fixture_with(ServingSetup::default()).await
}

/// [`fixture`] with its own serving setup (cache, shared tier, log).
pub async fn fixture_with(serving: ServingSetup) -> Fixture {
    let platform = tracseq_backends::platform::in_memory(RetryPolicy::default());
    let security: Arc<dyn SecurityStore> = Arc::new(MemorySecurityStore::new());
    let mut tokens = BTreeMap::new();
    for role in Role::ALL {
        let issued = issue(
            TokenRequest {
                name: role.as_str().into(),
                role,
                expires_in: None,
                created_by: "test".into(),
            },
            chrono::Utc::now(),
        )
        .unwrap();
        security.insert_token(&issued.record).await.unwrap();
        tokens.insert(role, issued.secret.expose().to_string());
    }
    Fixture::over(platform, security, tokens, serving)
}

impl Fixture {
    fn over(
        platform: Platform,
        security: Arc<dyn SecurityStore>,
        tokens: BTreeMap<Role, String>,
        serving: ServingSetup,
    ) -> Fixture {
        let ctx = ApiState::new(
            platform.clone(),
            security.clone(),
            Default::default(),
            Default::default(),
            Default::default(),
            serving,
            Arc::new(tokio::sync::Notify::new()),
        );
        Fixture {
            models: ctx.models.clone(),
            app: App::new(ctx),
            platform,
            security,
            tokens,
        }
    }

    /// A replica of `base` (its tokens) over another view of its platform
    /// (a wrapped store, say).
    pub fn over_platform(base: &Fixture, platform: Platform) -> Fixture {
        Fixture::over(
            platform,
            base.security.clone(),
            base.tokens.clone(),
            ServingSetup::default(),
        )
    }

    /// A second api replica over the same platform and tokens.
    pub fn replica(&self, serving: ServingSetup) -> Fixture {
        Fixture::over(
            self.platform.clone(),
            self.security.clone(),
            self.tokens.clone(),
            serving,
        )
    }
}

pub struct Answer {
    pub status: u16,
    pub headers: warp::http::HeaderMap,
    pub body: Value,
    /// The body as text (for answers that are not JSON, like `/metrics`).
    pub text: String,
}

impl Fixture {
    pub async fn call(&self, method: &str, path: &str, token: Option<&str>, body: &str) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(body.to_string()).unwrap();
        let remote: SocketAddr = "10.1.2.3:40000".parse().unwrap();
        let resp = self.app.handle(req, Some(remote)).await;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = http_body_util_collect(resp.into_body()).await;
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub fn token(&self, role: Role) -> &str {
        &self.tokens[&role]
    }

    /// `POST /predict` of `body` with the predictor's token.
    pub async fn predict(&self, body: &Value) -> Answer {
        let token = self.token(Role::Predictor);
        self.call("POST", "/predict", Some(token), &body.to_string())
            .await
    }
}

pub fn artifact_bytes() -> bytes::Bytes {
    bytes::Bytes::from(tracseq_learn::lab::example_artifact_bytes(200, 9).unwrap())
}

/// Registers `version` of "sq"; with `corrupt`, its record names a digest
/// the stored bytes do not have.
pub async fn register(p: &Platform, version: u32, bytes: &bytes::Bytes, corrupt: bool) {
    let path = tracseq_core::ports::ArtifactPath::model("sq", version, "model.json").unwrap();
    p.artifacts.put(&path, bytes.clone()).await.unwrap();
    let mut new: tracseq_core::types::NewModelVersion =
        tracseq_core::fixtures::model_version("sq", version, 0.8);
    new.artifact_path = path.to_string();
    new.sha256 = if corrupt {
        "ab".repeat(32)
    } else {
        tracseq_learn::artifact::sha256_hex(bytes)
    };
    p.state
        .register_model_version(new, chrono::Utc::now())
        .await
        .unwrap();
}

/// A new platform deployment of "sq" `version` (pending, not stored).
pub fn deployment(
    version: u32,
    traffic: Option<tracseq_core::lifecycle::traffic::TrafficPolicy>,
) -> tracseq_core::lifecycle::deployment::Deployment {
    use tracseq_core::lifecycle::deployment::{Deployment, NewDeployment, Target};
    Deployment::new(
        NewDeployment {
            model: "sq".into(),
            version,
            target: Target::Platform,
            replicas: 1,
            resources: None,
            job_id: None,
            requested_by: tracseq_core::security::Actor {
                id: tracseq_core::ids::TokenId::new(),
                name: "sci".into(),
            },
            traffic,
        },
        chrono::Utc::now(),
    )
}

/// A live platform deployment of "sq" `version` with `traffic`, replacing
/// `before` (stored superseded in the same write).
pub async fn go_live(
    p: &Platform,
    version: u32,
    traffic: Option<tracseq_core::lifecycle::traffic::TrafficPolicy>,
    before: Option<&Deployment>,
) -> Deployment {
    let mut d = deployment(version, traffic);
    let live = before.map(|b| Previous {
        id: b.id,
        version: b.version,
    });
    on_event(
        &mut d,
        Event::Succeeded {
            outputs: vec![],
            note: None,
            live,
        },
        Utc::now(),
    )
    .unwrap();
    let mut updates = Vec::new();
    if let Some(b) = before {
        let mut old = p.registry.get_deployment(b.id).await.unwrap();
        on_event(&mut old, Event::Superseded { by: d.id }, Utc::now()).unwrap();
        updates.push(old);
    }
    let write = DeploymentWrite {
        inserts: vec![d.clone()],
        updates,
        registry: None,
    };
    assert!(p.registry.commit_deployments(write).await.unwrap());
    p.registry.get_deployment(d.id).await.unwrap()
}

/// The log's records of "sq" once it holds at least `n` (the writer
/// flushes every 200 ms).
pub async fn logged(p: &Platform, n: usize) -> Vec<tracseq_core::predictions::PredictionRecord> {
    let filter = tracseq_core::predictions::PredictionFilter {
        model: Some("sq".into()),
        ..Default::default()
    };
    for _ in 0..500 {
        let got = p
            .predictions
            .list_predictions(&filter, &tracseq_core::paging::Page::all())
            .await
            .unwrap();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} predictions logged");
}

/// The whole body of a response.
async fn http_body_util_collect<B>(body: B) -> Vec<u8>
where
    B: http_body::Body + Unpin,
    B::Data: bytes::Buf,
    B::Error: std::fmt::Debug,
{
    use bytes::Buf;
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        if let Ok(mut data) = frame.unwrap().into_data() {
            while data.has_remaining() {
                let chunk = data.chunk();
                out.extend_from_slice(chunk);
                let n = chunk.len();
                data.advance(n);
            }
        }
    }
    out
}
