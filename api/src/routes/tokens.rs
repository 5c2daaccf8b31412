//! `/tokens` (admin only: create, list, revoke) and `/whoami` (any token).
//!
//! A token's secret is in the answer to its creation and nowhere else: the
//! store keeps its hash, listings show everything but.

use super::{body, json_reply, run, with_ctx};
use crate::guard::{caller, record_targets};
use crate::problem::{ApiError, ApiResult};
use crate::{parse_json, Ctx};
use bytes::Bytes;
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use tracseq_core::security::token::{issue, parse_lifetime, TokenRequest};
use tracseq_core::security::{Caller, Role};
use tracseq_core::{Error, TokenId};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("tokens")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|ctx| run(list(ctx)));
    let create = warp::path!("tokens")
        .and(warp::post())
        .and(with_ctx(ctx.clone()))
        .and(caller())
        .and(body(&ctx))
        .then(|ctx, who, b| run(create(ctx, who, b)));
    let revoke = warp::path!("tokens" / String / "revoke")
        .and(warp::post())
        .and(with_ctx(ctx))
        .then(|id, ctx| run(revoke(ctx, id)));
    let whoami = warp::path!("whoami")
        .and(warp::get())
        .and(caller())
        .then(|who| run(whoami(who)));
    list.or(create)
        .unify()
        .or(revoke)
        .unify()
        .or(whoami)
        .unify()
}

/// The caller the guard let through (absent only when the routes run
/// without the guard, which they never do when served).
fn required(who: Option<Caller>) -> Result<Caller, ApiError> {
    who.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs an API token",
        )
    })
}

async fn whoami(who: Option<Caller>) -> ApiResult {
    let who = required(who)?;
    let permissions: Vec<&str> = who.role.permissions().iter().map(|p| p.as_str()).collect();
    Ok(json_reply(
        &json!({"id": who.actor.id, "name": who.actor.name, "role": who.role,
                "permissions": permissions}),
        StatusCode::OK,
    ))
}

async fn list(ctx: Ctx) -> ApiResult {
    let now = Utc::now();
    let tokens: Vec<_> = ctx
        .security
        .list_tokens()
        .await?
        .iter()
        .map(|t| t.public_view(now))
        .collect();
    Ok(json_reply(&tokens, StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    role: String,
    /// A lifetime such as `30d`; absent: no expiry.
    expires: Option<String>,
}

async fn create(ctx: Ctx, who: Option<Caller>, body: Result<Bytes, ApiError>) -> ApiResult {
    let who = required(who)?;
    let req: CreateRequest = parse_json(&body?)?;
    let role: Role = req.role.parse()?;
    let expires_in = req.expires.as_deref().map(parse_lifetime).transpose()?;
    let issued = issue(
        TokenRequest {
            name: req.name,
            role,
            expires_in,
            created_by: who.actor.name,
        },
        Utc::now(),
    )?;
    ctx.security.insert_token(&issued.record).await?;
    let mut view = issued.record.public_view(Utc::now());
    view["token"] = json!(issued.secret.expose());
    let mut resp = json_reply(&view, StatusCode::CREATED);
    record_targets(
        &mut resp,
        [issued.record.id.to_string(), issued.record.name.clone()],
    );
    Ok(resp)
}

async fn revoke(ctx: Ctx, id: String) -> ApiResult {
    let id: TokenId = id.parse()?;
    let now = Utc::now();
    let tokens = ctx.security.list_tokens().await?;
    let token = tokens
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Error::not_found(format!("token {id}")))?;
    let is_active_admin = |t: &&tracseq_core::security::token::TokenRecord| {
        t.role == Role::Admin && t.check_active(now).is_ok()
    };
    if is_active_admin(&token) && tokens.iter().filter(is_active_admin).count() == 1 {
        return Err(Error::Conflict(
            "this is the last active admin token: create another admin token before revoking it"
                .into(),
        )
        .into());
    }
    let revoked = ctx.security.revoke_token(id, now).await?;
    ctx.tokens.forget(id);
    let mut resp = json_reply(&revoked.public_view(now), StatusCode::OK);
    record_targets(&mut resp, [revoked.name.clone()]);
    Ok(resp)
}
