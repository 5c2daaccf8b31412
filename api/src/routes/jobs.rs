//! `/jobs/{id}`: status of any job, and cancelling one.

use super::{json_reply, run, with_ctx};
use crate::Ctx;
use chrono::Utc;
use tracseq_core::lifecycle::Event;
use tracseq_core::ports::{transition, TransitionOutcome};
use tracseq_core::{Error, JobId};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

pub fn routes(ctx: Ctx) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let get = warp::path!("jobs" / String)
        .and(warp::get())
        .and(with_ctx(ctx.clone()))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let id: JobId = id.parse()?;
                Ok(json_reply(
                    &ctx.platform.state.get_job(id).await?,
                    StatusCode::OK,
                ))
            })
        });
    let cancel = warp::path!("jobs" / String / "cancel")
        .and(warp::post())
        .and(with_ctx(ctx))
        .then(|id: String, ctx: Ctx| {
            run(async move {
                let id: JobId = id.parse()?;
                let ev = Event::Cancel {
                    reason: "cancelled by request".into(),
                };
                let p = &ctx.platform;
                match transition(p.state.as_ref(), id, ev, Utc::now(), &p.policy).await? {
                    TransitionOutcome::Applied { job, .. } => {
                        ctx.wake.notify_one();
                        Ok(json_reply(&job, StatusCode::OK))
                    }
                    TransitionOutcome::Rejected { job, .. } => {
                        Err(Error::Conflict(format!("job {id} is already {}", job.state)).into())
                    }
                }
            })
        });
    get.or(cancel).unify()
}
