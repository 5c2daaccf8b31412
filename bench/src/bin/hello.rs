//! Baseline server for the `/predict` load test (`bench/predict.sh`).
//!
//! Same framework (warp 0.4 on a multi-thread tokio runtime) and the same
//! request handling shape as the real serving endpoint: it reads and parses
//! the JSON request body, then answers a small fixed JSON body. No model, no
//! registry lookup, no state — the difference between this and
//! `tracseq-ml up`'s `/predict` is the cost of prediction itself.

use std::net::{Ipv4Addr, SocketAddr};

use clap::Parser;
use warp::Filter;

/// Largest request body accepted, matching a generous single-record predict.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "hello",
    about = "warp hello-world baseline: POST /predict -> {\"value\": 0.5}"
)]
struct Args {
    /// Port to listen on (127.0.0.1 only).
    #[arg(long, default_value_t = 8095)]
    port: u16,
}

fn routes() -> impl Filter<Extract = (impl warp::Reply,), Error = warp::Rejection> + Clone {
    let predict = warp::post()
        .and(warp::path("predict"))
        .and(warp::path::end())
        .and(warp::body::content_length_limit(MAX_BODY_BYTES))
        .and(warp::body::json::<serde_json::Value>())
        .map(|_body: serde_json::Value| warp::reply::json(&serde_json::json!({ "value": 0.5 })));
    let health = warp::get()
        .and(warp::path("health"))
        .and(warp::path::end())
        .map(|| warp::reply::json(&serde_json::json!({ "status": "ok" })));
    predict.or(health)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    eprintln!("hello: listening on http://{}", listener.local_addr()?);
    warp::serve(routes()).incoming(listener).run().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::routes;

    #[tokio::test]
    async fn predict_answers_fixed_body() {
        let res = warp::test::request()
            .method("POST")
            .path("/predict")
            .header("content-type", "application/json")
            .body(r#"{"model":"m","features":{"a":1}}"#)
            .reply(&routes())
            .await;
        assert_eq!(res.status(), 200);
        let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        assert_eq!(v, serde_json::json!({ "value": 0.5 }));
    }

    #[tokio::test]
    async fn predict_rejects_bad_json() {
        let res = warp::test::request()
            .method("POST")
            .path("/predict")
            .header("content-type", "application/json")
            .body("not json")
            .reply(&routes())
            .await;
        assert_eq!(res.status(), 400);
    }
}
