//! `/models`: the registry — models and their versions with metrics.

use super::{json_reply, paging, query, run, with_ctx};
use crate::Ctx;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use tracseq_core::types::{validate_name, ModelVersion};
use tracseq_core::Error;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let list = warp::path!("models")
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .and(query())
        .then(|ctx: Ctx, q: HashMap<String, String>| {
            run(async move {
                let page = paging::page(&q, |a| validate_name("after", a))?;
                let mut by_name: BTreeMap<String, Vec<ModelVersion>> = BTreeMap::new();
                for v in ctx.platform.state.page_model_versions(&page).await? {
                    by_name.entry(v.name.clone()).or_default().push(v);
                }
                let last = by_name.keys().next_back().cloned();
                let out: Vec<_> = by_name
                    .into_iter()
                    .filter_map(|(name, versions)| {
                        let latest = versions.iter().max_by_key(|v| v.version)?.clone();
                        Some(json!({"name": name, "versions": versions.len(), "latest": latest}))
                    })
                    .collect();
                let mut resp = json_reply(&out, StatusCode::OK);
                paging::link_next(&mut resp, "/models", &page, out.len(), last);
                Ok(resp)
            })
        });
    let get = warp::path!("models" / String)
        .and(warp::get())
        .and(with_ctx(ctx))
        .then(|name: String, ctx: Ctx| {
            run(async move {
                validate_name("model", &name)?;
                let versions = ctx.platform.state.list_model_versions(Some(&name)).await?;
                if versions.is_empty() {
                    return Err(Error::NotFound(format!("model '{name}' not found")).into());
                }
                Ok(json_reply(
                    &json!({"name": name, "versions": versions}),
                    StatusCode::OK,
                ))
            })
        });
    list.or(get).unify()
}
