//! The request guard: every request passes here before any handler, and
//! every change and every refusal leaves here for the audit log.
//!
//! In order: give the request an id, find its route in the
//! [route table](crate::route_table) (404, or 405 with `Allow`), check the
//! bearer token (401 with `WWW-Authenticate`) and the role's permission
//! (403 naming it), hand the caller to the handlers in the request's
//! extensions, and record the outcome of audited actions and of every
//! refusal. Handlers never see an unauthenticated request, so none of them
//! can forget to check.

use crate::problem::ApiError;
use crate::route_table::{lookup, Access, Lookup, Route};
use crate::Ctx;
use chrono::Utc;
use std::convert::Infallible;
use std::net::SocketAddr;
use tower_service::Service;
use tracseq_core::security::audit::{NewAuditEntry, Outcome};
use tracseq_core::security::{Actor, Caller};
use warp::http::{header, HeaderValue, Request, StatusCode};
use warp::reply::Response;
use warp::Reply;

/// Ids and names a handler created or acted on, for the audit log; put
/// into the response's extensions (never sent to the client).
#[derive(Clone, Debug, Default)]
pub struct AuditTargets(pub Vec<String>);

/// Adds `targets` to the ones the audit log records for this response.
pub fn record_targets(resp: &mut Response, targets: impl IntoIterator<Item = String>) {
    let ext = resp.extensions_mut();
    let mut all = ext.remove::<AuditTargets>().unwrap_or_default();
    all.0.extend(targets);
    ext.insert(all);
}

/// Built with the `unauthenticated` feature (the benchmark's "auth off"
/// server): every route passes unchecked and unaudited.
pub const UNAUTHENTICATED: bool = cfg!(feature = "unauthenticated");

/// The longest request id taken from a client's `x-request-id`.
const MAX_REQUEST_ID: usize = 64;
/// The longest target recorded (path segments are the caller's text).
const MAX_TARGET: usize = 200;

/// Runs one request through the guard and, when it may pass, `inner`.
pub(crate) async fn handle<S, B>(
    ctx: &Ctx,
    mut inner: S,
    mut req: Request<B>,
    remote: Option<SocketAddr>,
) -> Response
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    let request_id = request_id(&req);
    let mut resp = match lookup(req.method().as_str(), req.uri().path()) {
        Lookup::NotFound => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response()
        }
        Lookup::WrongMethod(allowed) => {
            let allow = allowed
                .iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ");
            let mut resp = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("this route takes {allow}"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
            resp
        }
        Lookup::Found(route, params) => {
            let call = Call {
                route,
                params,
                request_id: &request_id,
                remote,
            };
            if route.access == Access::Public || UNAUTHENTICATED {
                call_inner(&mut inner, req).await
            } else {
                let auth = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .map(HeaderValue::as_bytes);
                match ctx
                    .tokens
                    .authenticate(&ctx.security, auth, Utc::now())
                    .await
                {
                    Err(e) => ApiError::from(e).into_response(),
                    Ok(Err(denial)) => {
                        let mut resp = ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            denial.message(),
                        )
                        .into_response();
                        resp.headers_mut().insert(
                            header::WWW_AUTHENTICATE,
                            HeaderValue::from_static(denial.www_authenticate()),
                        );
                        call.audit(ctx, None, &resp, Some(denial.message().to_string()))
                            .await;
                        resp
                    }
                    Ok(Ok(caller)) => match route.access {
                        Access::Needs(p) if !caller.role.allows(p) => {
                            let message = format!(
                                "the token '{}' (role {}) lacks the permission '{p}' that {} {} needs",
                                caller.actor.name,
                                caller.role,
                                route.method.to_ascii_uppercase(),
                                route.path
                            );
                            let resp = ApiError::new(StatusCode::FORBIDDEN, "forbidden", &message)
                                .into_response();
                            call.audit(ctx, Some(&caller.actor), &resp, Some(message))
                                .await;
                            resp
                        }
                        _ => {
                            req.extensions_mut().insert(caller.clone());
                            let resp = call_inner(&mut inner, req).await;
                            if route.action.is_some() {
                                let detail = failure_detail(&resp);
                                call.audit(ctx, Some(&caller.actor), &resp, detail).await;
                            }
                            resp
                        }
                    },
                }
            }
        }
    };
    resp.extensions_mut().remove::<AuditTargets>();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn call_inner<S, B>(inner: &mut S, req: Request<B>) -> Response
where
    S: Service<Request<B>, Response = Response, Error = Infallible>,
{
    match inner.call(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    }
}

/// One request as the audit log sees it.
struct Call<'a> {
    route: &'static Route,
    params: Vec<String>,
    request_id: &'a str,
    remote: Option<SocketAddr>,
}

impl Call<'_> {
    async fn audit(
        &self,
        ctx: &Ctx,
        actor: Option<&Actor>,
        resp: &Response,
        detail: Option<String>,
    ) {
        let mut targets: Vec<String> = self.params.iter().map(|p| cut(p)).collect();
        if let Some(t) = resp.extensions().get::<AuditTargets>() {
            targets.extend(t.0.iter().map(|p| cut(p)));
        }
        let status = resp.status().as_u16();
        let action = match self.route.action {
            Some(a) => a.to_string(),
            None => format!("{} {}", self.route.method, self.route.path),
        };
        let entry = NewAuditEntry {
            at: Utc::now(),
            actor: actor.cloned(),
            action,
            targets,
            outcome: Outcome::of_status(status),
            status,
            request_id: self.request_id.to_string(),
            client: self.remote.map(|a| a.to_string()),
            detail,
        };
        if let Err(e) = ctx.security.append_audit(entry).await {
            // The request's own outcome stands (it already happened); the
            // failure is counted in /metrics and logged for the operator.
            ctx.audit_failures
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(request_id = %self.request_id, action = ?self.route.action,
                error = %e, "could not write the audit log");
        }
    }
}

/// A failed handler's problem code, for the audit entry (not the message:
/// it may quote the request).
fn failure_detail(resp: &Response) -> Option<String> {
    let status = resp.status();
    (!status.is_success()).then(|| {
        status
            .canonical_reason()
            .unwrap_or("failed")
            .to_ascii_lowercase()
    })
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_TARGET {
        return s.to_string();
    }
    let mut end = MAX_TARGET;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The client's `x-request-id` when it is short and plain, else a new one.
fn request_id<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= MAX_REQUEST_ID
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// The caller of the request a handler serves (set by the guard).
pub(crate) fn caller() -> impl warp::Filter<Extract = (Option<Caller>,), Error = Infallible> + Clone
{
    warp::ext::optional::<Caller>()
}
