//! The one table of routes: for each method and path, who may call it, what
//! the audit log calls it, and how `/openapi.json` describes it.
//!
//! The request guard ([`crate::guard`]) looks every request up here before
//! any handler runs: a path and method that are not in this table are
//! answered 404 or 405 whatever handler exists, so a route cannot ship
//! without a permission. The OpenAPI document is generated from the same
//! rows, and the matrix test walks that document against every role.

use tracseq_core::security::Permission;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone, without a token (only `/health`).
    Public,
    /// Any active token, whatever its role (who am I, the API's description).
    Authenticated,
    /// A token whose role grants the permission.
    Needs(Permission),
}

/// One method on one path.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// Lower-case, as OpenAPI writes it.
    pub method: &'static str,
    /// OpenAPI style: `{name}` is one path segment; a last `{path}` takes
    /// the rest of the path (artifact paths contain `/`).
    pub path: &'static str,
    pub access: Access,
    /// The audit log's name for a call; `None` for reads, which are only
    /// recorded when denied.
    pub action: Option<&'static str>,
    pub summary: &'static str,
    /// The request body's schema in `components.schemas`, `csv`, or empty.
    pub body: &'static str,
    /// The status of success.
    pub status: u16,
}

const fn get(path: &'static str, access: Access, summary: &'static str) -> Route {
    Route {
        method: "get",
        path,
        access,
        action: None,
        summary,
        body: "",
        status: 200,
    }
}

const fn post(
    path: &'static str,
    access: Access,
    action: &'static str,
    summary: &'static str,
    body: &'static str,
    status: u16,
) -> Route {
    Route {
        method: "post",
        path,
        access,
        action: Some(action),
        summary,
        body,
        status,
    }
}

use Access::{Authenticated, Needs, Public};
use Permission::{Admin, Approve, Predict, Read, ReadData, Write};

pub(crate) const ROUTES: &[Route] = &[
    get("/health", Public, "Liveness and version"),
    get("/openapi.json", Authenticated, "This document"),
    get(
        "/whoami",
        Authenticated,
        "The calling token: its name, id, role and permissions",
    ),
    post(
        "/datasets",
        Needs(Write),
        "datasets.create",
        "Upload a CSV data set (text/csv body; ?name=)",
        "csv",
        201,
    ),
    get("/datasets", Needs(Read), "List data sets"),
    get(
        "/datasets/{id}",
        Needs(Read),
        "One data set with its detected schema",
    ),
    post(
        "/experiments",
        Needs(Write),
        "experiments.create",
        "Create an AutoML (with dataset_id) or ask/tell experiment",
        "ExperimentRequest",
        201,
    ),
    get(
        "/experiments",
        Needs(Read),
        "List experiments with trial counts and best trial",
    ),
    get(
        "/experiments/{id}",
        Needs(Read),
        "Experiment state, best trial and counts",
    ),
    get(
        "/experiments/{id}/trials",
        Needs(Read),
        "Trials (?fields=a,b&sort=value|number&state=&limit=)",
    ),
    post(
        "/experiments/{id}/ask",
        Needs(Write),
        "experiments.ask",
        "Ask/tell: get the next trial's params",
        "",
        201,
    ),
    post(
        "/experiments/{id}/trials/{number}/report",
        Needs(Write),
        "trials.report",
        "Report an intermediate value; answers should_prune",
        "ReportRequest",
        200,
    ),
    post(
        "/experiments/{id}/trials/{number}/tell",
        Needs(Write),
        "trials.tell",
        "Tell a trial's final value or state",
        "TellRequest",
        200,
    ),
    post(
        "/experiments/{id}/cancel",
        Needs(Write),
        "experiments.cancel",
        "Cancel an experiment and its jobs",
        "",
        200,
    ),
    get(
        "/jobs/{id}",
        Needs(Read),
        "A job's state, attempts, last error and result",
    ),
    post(
        "/jobs/{id}/cancel",
        Needs(Write),
        "jobs.cancel",
        "Cancel one job",
        "",
        200,
    ),
    get(
        "/workers",
        Needs(Read),
        "The fleet: each worker's slots, GPUs with live figures, running jobs, last heartbeat; dead workers marked",
    ),
    get("/workers/{id}", Needs(Read), "One worker"),
    get(
        "/metrics",
        Needs(Read),
        "Prometheus metrics: workers, GPUs, reservations, queue depths",
    ),
    get(
        "/models",
        Needs(Read),
        "Registered models with their latest version",
    ),
    get(
        "/models/{name}",
        Needs(Read),
        "A model: versions with metrics, stages, aliases and tags, and what is deployed",
    ),
    post(
        "/models/register",
        Needs(Write),
        "models.register",
        "Register a version from outside: an uploaded or stored artifact checked against its SHA-256",
        "RegisterRequest",
        201,
    ),
    get(
        "/models/{name}/versions/{version}/metrics",
        Needs(Read),
        "A version's training metrics, cross-validation folds and live serving figures",
    ),
    Route {
        method: "put",
        path: "/models/{name}/tags",
        access: Needs(Write),
        action: Some("models.tags"),
        summary: "Replace a model's tags",
        body: "TagsRequest",
        status: 200,
    },
    Route {
        method: "put",
        path: "/models/{name}/versions/{version}/tags",
        access: Needs(Write),
        action: Some("models.version_tags"),
        summary: "Replace a version's tags",
        body: "TagsRequest",
        status: 200,
    },
    post(
        "/models/promote",
        Needs(Write),
        "models.promote",
        "Request a version's move to a stage (production waits for another identity's approval)",
        "PromoteRequest",
        201,
    ),
    get(
        "/promotions",
        Needs(Read),
        "Promotion requests, newest first (?model=&state=&limit=)",
    ),
    get("/promotions/{id}", Needs(Read), "One promotion request"),
    post(
        "/promotions/{id}/approve",
        Needs(Approve),
        "promotions.approve",
        "Approve (not your own request; its gates are checked again)",
        "DecisionRequest",
        200,
    ),
    post(
        "/promotions/{id}/reject",
        Needs(Approve),
        "promotions.reject",
        "Reject, with a reason",
        "DecisionRequest",
        200,
    ),
    post(
        "/promotions/{id}/cancel",
        Needs(Write),
        "promotions.cancel",
        "Withdraw your own pending request (an admin: any)",
        "",
        200,
    ),
    Route {
        method: "put",
        path: "/models/{name}/aliases/{alias}",
        access: Needs(Write),
        action: Some("models.alias"),
        summary: "Point an alias (champion, challenger...) at a version",
        body: "AliasRequest",
        status: 200,
    },
    Route {
        method: "delete",
        path: "/models/{name}/aliases/{alias}",
        access: Needs(Write),
        action: Some("models.alias_delete"),
        summary: "Delete an alias",
        body: "",
        status: 200,
    },
    get(
        "/models/{name}/live",
        Needs(Read),
        "Live metrics from reported outcomes per version and variant, with 95% intervals (?since=)",
    ),
    get(
        "/models/{name}/drift",
        Needs(Read),
        "Per-feature drift of live features (the prediction log) from the training profile: PSI, KS, chi-squared, Jensen-Shannon, sample sizes (?version=&since=&limit=)",
    ),
    get(
        "/alerts",
        Needs(Read),
        "Alerts the monitor raised (drift, canary rollback, error rate) and each webhook delivery, newest first (?kind=&model=&since=&limit=&after=)",
    ),
    get(
        "/alerts/{id}",
        Needs(Read),
        "One alert and its deliveries",
    ),
    get(
        "/models/{name}/history",
        Needs(Read),
        "Every stage and alias move: who asked, who approved, when (?after=&limit=)",
    ),
    post(
        "/models/deploy",
        Needs(Write),
        "models.deploy",
        "Deploy a version (by version, alias or stage) to a target as a deploy job (202); on the platform, optionally with a traffic policy (A/B split, shadow, canary)",
        "DeployRequest",
        202,
    ),
    get(
        "/deployments",
        Needs(Read),
        "Deployments, newest first (?model=&target=&state=&limit=)",
    ),
    get(
        "/deployments/{id}",
        Needs(Read),
        "One deployment with its state history, traffic policy and canary checks",
    ),
    get(
        "/deployments/{id}/analysis",
        Needs(Read),
        "A/B analysis: per variant requests, errors, latency percentiles, outcomes, live metrics with 95% intervals, and each variant against its baseline (Welch t / two-proportion z, p-values)",
    ),
    post(
        "/deployments/{id}/rollback",
        Needs(Write),
        "deployments.rollback",
        "Return to the deployment this one replaced (no approval; recorded)",
        "RollbackRequest",
        200,
    ),
    get(
        "/artifacts",
        Needs(Read),
        "Stored objects under a prefix with sizes and SHA-256 (?prefix=&limit=)",
    ),
    Route {
        method: "get",
        path: "/artifacts/{path}",
        access: Needs(ReadData),
        // Downloading the lab's data is recorded like a change.
        action: Some("artifacts.download"),
        summary: "Download a stored object (x-checksum-sha256 header)",
        body: "",
        status: 200,
    },
    Route {
        method: "post",
        path: "/predict",
        access: Needs(Predict),
        // The hot path: recorded only when denied.
        action: None,
        summary: "Predict one record: a version, an alias, or by default the deployed version",
        body: "PredictRequest",
        status: 200,
    },
    post(
        "/batch_predict",
        Needs(Predict),
        "batch_predict",
        "Predict records now, or a data set as a job (202)",
        "BatchPredictRequest",
        200,
    ),
    get(
        "/predictions",
        Needs(ReadData),
        "The prediction log, newest first (?model=&since=&entity_id=&limit=&after=)",
    ),
    post(
        "/feedback",
        Needs(Predict),
        "feedback.record",
        "Report what really happened to a predicted entity (joined to its logged prediction)",
        "FeedbackRequest",
        201,
    ),
    get(
        "/tokens",
        Needs(Admin),
        "Every API token (never its secret): name, role, expiry, state",
    ),
    post(
        "/tokens",
        Needs(Admin),
        "tokens.create",
        "Create a token; its secret is in this answer and never again",
        "TokenRequest",
        201,
    ),
    post(
        "/tokens/{id}/revoke",
        Needs(Admin),
        "tokens.revoke",
        "Revoke a token (refused from the next request on)",
        "",
        200,
    ),
    get(
        "/audit",
        Needs(Admin),
        "The audit log, newest first (?actor=&action=&target=&since=&before=&limit=)",
    ),
];

/// What a request's method and path are, by the table.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The route, and the values of its `{…}` segments in order.
    Found(&'static Route, Vec<String>),
    /// The path exists, but not with this method: the methods it has.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// The table's path templates, split into segments once, and the routes
/// each first segment can lead to: every request is looked up here, so
/// matching neither re-splits 80 templates nor compares a path with all of
/// them.
struct Templates {
    segments: Vec<Vec<&'static str>>,
    /// Route indices (in table order) by their template's first segment.
    by_first: std::collections::HashMap<&'static str, Vec<usize>>,
    /// Routes whose template starts with a `{…}` segment: candidates for
    /// every path.
    any_first: Vec<usize>,
}

static TEMPLATES: std::sync::LazyLock<Templates> = std::sync::LazyLock::new(|| {
    let segments: Vec<Vec<&'static str>> = ROUTES
        .iter()
        .map(|r| r.path.split('/').skip(1).collect())
        .collect();
    let mut by_first: std::collections::HashMap<&'static str, Vec<usize>> = Default::default();
    let mut any_first = Vec::new();
    for (i, want) in segments.iter().enumerate() {
        match want.first() {
            Some(seg) if !seg.starts_with('{') => by_first.entry(*seg).or_default().push(i),
            _ => any_first.push(i),
        }
    }
    Templates {
        segments,
        by_first,
        any_first,
    }
});

/// Finds the route of `method` (any case) on `path` (as requested, before
/// percent-decoding: a `%2F` never splits a segment).
pub(crate) fn lookup(method: &str, path: &str) -> Lookup {
    let Some(rest) = path.strip_prefix('/') else {
        return Lookup::NotFound;
    };
    let have: Vec<&str> = rest.split('/').collect();
    let t = &*TEMPLATES;
    let mut candidates: Vec<usize> = t.by_first.get(have[0]).cloned().unwrap_or_default();
    if !t.any_first.is_empty() {
        candidates.extend(&t.any_first);
        candidates.sort_unstable();
    }
    // As OpenAPI matches paths: a template with fewer `{…}` segments is
    // more specific and wins (`/models/promote` before `/models/{name}`).
    let matching: Vec<(&'static Route, Vec<String>)> = candidates
        .into_iter()
        .filter_map(|i| match_segments(&t.segments[i], &have).map(|p| (&ROUTES[i], p)))
        .collect();
    let Some(fewest) = matching.iter().map(|(_, p)| p.len()).min() else {
        return Lookup::NotFound;
    };
    let mut allowed: Vec<&'static str> = Vec::new();
    for (route, params) in matching.into_iter().filter(|(_, p)| p.len() == fewest) {
        if route.method.eq_ignore_ascii_case(method) {
            return Lookup::Found(route, params);
        }
        if !allowed.contains(&route.method) {
            allowed.push(route.method);
        }
    }
    Lookup::WrongMethod(allowed)
}

/// The parameters of a path (its segments `have`) that fits the template
/// segments `want`.
fn match_segments(want: &[&str], have: &[&str]) -> Option<Vec<String>> {
    let mut params = Vec::new();
    for (i, seg) in want.iter().enumerate() {
        if *seg == "{path}" && i + 1 == want.len() {
            // Every segment before this one matched, so `have` has them.
            let rest = &have[i..];
            if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
                return None;
            }
            params.push(rest.join("/"));
            return Some(params);
        }
        let got = *have.get(i)?;
        if seg.starts_with('{') {
            if got.is_empty() {
                return None;
            }
            params.push(got.to_string());
        } else if *seg != got {
            return None;
        }
    }
    (have.len() == want.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(method: &str, path: &str) -> (&'static str, Vec<String>) {
        match lookup(method, path) {
            Lookup::Found(r, p) => (r.path, p),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn paths_match_their_templates_and_capture_parameters() {
        assert_eq!(found("GET", "/datasets"), ("/datasets", vec![]));
        assert_eq!(
            found("POST", "/experiments/e1/trials/3/tell"),
            (
                "/experiments/{id}/trials/{number}/tell",
                vec!["e1".into(), "3".into()]
            )
        );
        assert_eq!(
            found("get", "/artifacts/models/m/1/model.json"),
            ("/artifacts/{path}", vec!["models/m/1/model.json".into()])
        );
        assert_eq!(found("GET", "/artifacts"), ("/artifacts", vec![]));
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_methods_it_has() {
        match lookup("DELETE", "/datasets") {
            Lookup::WrongMethod(m) => assert_eq!(m, ["post", "get"]),
            other => panic!("{other:?}"),
        }
        match lookup("GET", "/predict") {
            Lookup::WrongMethod(m) => assert_eq!(m, ["post"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_literal_route_wins_over_a_template_that_also_matches() {
        assert_eq!(
            found("POST", "/models/promote"),
            ("/models/promote", vec![])
        );
        assert_eq!(
            found("GET", "/models/sq"),
            ("/models/{name}", vec!["sq".to_string()])
        );
        // GET /models/promote is not "the model named promote".
        match lookup("GET", "/models/deploy") {
            Lookup::WrongMethod(m) => assert_eq!(m, ["post"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_extra_segments_and_empty_segments_match_nothing() {
        for path in [
            "/nope",
            "/datasets/",
            "/datasets/a/b",
            "//datasets",
            "/experiments//ask",
            "/artifacts/",
            "/artifacts/a//b",
            "datasets",
        ] {
            assert!(
                matches!(
                    lookup("GET", path),
                    Lookup::NotFound | Lookup::WrongMethod(_)
                ) && !matches!(lookup("GET", path), Lookup::Found(..)),
                "{path}"
            );
        }
    }

    #[test]
    fn every_route_is_listed_once_and_every_change_is_audited() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} twice",
                    a.method,
                    a.path
                );
            }
            if a.method != "get" && a.path != "/predict" {
                assert!(a.action.is_some(), "{} {} is not audited", a.method, a.path);
            }
        }
    }
}
