//! The listener: plain HTTP, or HTTPS through rustls when `api.tls_cert`
//! and `api.tls_key` are set; every connection's requests go through the
//! [guard](crate::guard) and then the warp routes.
//!
//! This is warp's own serve loop (hyper-util's auto builder, graceful
//! shutdown) with two things warp 0.4 cannot do: terminate TLS, and run
//! code around each request with the client's address at hand.

use crate::Ctx;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tracseq_core::{Error, Result};

/// The TLS acceptor for a PEM certificate chain and private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::Invalid(format!(
                "api.tls_cert: cannot read a PEM certificate from {}: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Invalid(format!(
            "api.tls_cert: {} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::Invalid(format!(
            "api.tls_key: cannot read a PEM private key from {}: {e}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| Error::Invalid(format!("api.tls_cert / api.tls_key do not match: {e}")))?;
    let mut config = config;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
pub(crate) async fn run(
    ctx: Ctx,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let app = crate::App::new(ctx);
    run_with(listener, tls, shutdown, move |req, remote| {
        let app = app.clone();
        async move { app.handle(req, Some(remote)).await }
    })
    .await
}

/// The serve loop around any request handler (the api's, or a standalone
/// model server's).
pub(crate) async fn run_with<H, F>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    handler: H,
) where
    H: Fn(hyper::Request<hyper::body::Incoming>, std::net::SocketAddr) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = warp::reply::Response> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let answer = handler(req, remote);
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        });
        let watcher = graceful.watcher();
        match tls.clone() {
            None => {
                tokio::spawn(serve_connection(stream, service, watcher));
            }
            Some(acceptor) => {
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(stream) => serve_connection(stream, service, watcher).await,
                        Err(e) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    }
                });
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

async fn serve_connection<I, S>(io: I, service: S, watcher: hyper_util::server::graceful::Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
