//! Live serving figures of one model version on one replica: requests,
//! errors and a latency histogram, kept in atomics so recording costs a few
//! relaxed increments on the request path.
//!
//! The histogram has fixed bounds (Prometheus style), so percentiles are
//! the bound of the bucket the quantile falls in — an upper estimate,
//! never an invented precision — and replicas' buckets add up in
//! Prometheus (`tracseq_predict_latency_seconds`).

use serde::Serialize;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
/// Upper bounds of the latency buckets, in microseconds (the prediction
/// log's histograms use the same); one more bucket holds everything slower.
use tracseq_core::predictions::LATENCY_BOUNDS_US as BOUNDS_US;

#[derive(Default)]
pub struct ServingStats {
    requests: AtomicU64,
    errors: AtomicU64,
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    total_us: AtomicU64,
}

/// What `GET /models/{name}/versions/{v}/metrics` shows of serving.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServingFigures {
    pub requests: u64,
    pub errors: u64,
    pub mean_ms: Option<f64>,
    /// Upper bounds: the bound of the bucket each percentile falls in.
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

impl ServingStats {
    /// Counts one answered request and how long it took.
    pub fn record(&self, took: Duration, ok: bool) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(BOUNDS_US.len());
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.total_us.fetch_add(us, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    pub fn figures(&self) -> ServingFigures {
        ServingStats::figures_of(&[self])
    }

    /// The figures of several together (a version's variants).
    pub fn figures_of(all: &[&ServingStats]) -> ServingFigures {
        let mut counts = vec![0u64; BOUNDS_US.len() + 1];
        let (mut requests, mut errors, mut total_us) = (0, 0, 0u64);
        for s in all {
            for (c, n) in counts.iter_mut().zip(s.counts()) {
                *c += n;
            }
            requests += s.requests.load(Ordering::Relaxed);
            errors += s.errors.load(Ordering::Relaxed);
            total_us = total_us.saturating_add(s.total_us.load(Ordering::Relaxed));
        }
        let n: u64 = counts.iter().sum();
        let pct = |q: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            let rank = ((q * n as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    let bound = BOUNDS_US.get(i).copied().unwrap_or(u64::MAX);
                    return (bound != u64::MAX).then(|| bound as f64 / 1000.0);
                }
            }
            None
        };
        ServingFigures {
            requests,
            errors,
            mean_ms: (n > 0).then(|| total_us as f64 / n as f64 / 1000.0),
            p50_ms: pct(0.50),
            p90_ms: pct(0.90),
            p99_ms: pct(0.99),
        }
    }
}

/// One exported series: a model version answering as one variant.
pub(super) struct Row<'a> {
    pub model: &'a str,
    pub version: u32,
    pub variant: &'a str,
    pub stats: &'a ServingStats,
}

/// Prometheus text of every row.
pub(super) fn render(rows: &[Row<'_>], out: &mut String) {
    out.push_str(
        "# HELP tracseq_predict_requests_total Prediction requests answered by this api replica, per model version and traffic variant.\n\
         # TYPE tracseq_predict_requests_total counter\n",
    );
    let labels = |r: &Row<'_>| {
        format!(
            "model=\"{}\",version=\"{}\",variant=\"{}\"",
            r.model, r.version, r.variant
        )
    };
    for r in rows {
        let _ = writeln!(
            out,
            "tracseq_predict_requests_total{{{}}} {}",
            labels(r),
            r.stats.requests.load(Ordering::Relaxed)
        );
    }
    out.push_str(
        "# HELP tracseq_predict_errors_total Prediction requests that failed after the model was chosen.\n\
         # TYPE tracseq_predict_errors_total counter\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "tracseq_predict_errors_total{{{}}} {}",
            labels(r),
            r.stats.errors.load(Ordering::Relaxed)
        );
    }
    out.push_str(
        "# HELP tracseq_predict_latency_seconds Time from a prediction request's parsed body to its answer.\n\
         # TYPE tracseq_predict_latency_seconds histogram\n",
    );
    for r in rows {
        let (labels, s) = (labels(r), r.stats);
        let counts = s.counts();
        let mut cumulative = 0;
        for (i, c) in counts.iter().enumerate() {
            cumulative += c;
            let le = BOUNDS_US
                .get(i)
                .map(|b| format!("{}", *b as f64 / 1e6))
                .unwrap_or_else(|| "+Inf".into());
            let _ = writeln!(
                out,
                "tracseq_predict_latency_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "tracseq_predict_latency_seconds_sum{{{labels}}} {}\n\
             tracseq_predict_latency_seconds_count{{{labels}}} {cumulative}",
            s.total_us.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_requests_have_no_percentiles() {
        let f = ServingStats::default().figures();
        assert_eq!((f.requests, f.p50_ms, f.mean_ms), (0, None, None));
    }

    #[test]
    fn percentiles_are_the_bound_of_the_bucket_they_fall_in() {
        let s = ServingStats::default();
        for _ in 0..98 {
            s.record(Duration::from_micros(80), true);
        }
        s.record(Duration::from_millis(3), false);
        s.record(Duration::from_millis(40), true);
        let f = s.figures();
        assert_eq!((f.requests, f.errors), (100, 1));
        assert_eq!(f.p50_ms, Some(0.1));
        assert_eq!(f.p90_ms, Some(0.1));
        assert_eq!(f.p99_ms, Some(5.0));
    }

    #[test]
    fn the_prometheus_histogram_is_cumulative_and_ends_at_the_count() {
        let s = ServingStats::default();
        s.record(Duration::from_micros(10), true);
        s.record(Duration::from_secs(20), true);
        let mut out = String::new();
        let row = Row {
            model: "m",
            version: 2,
            variant: "b",
            stats: &s,
        };
        render(&[row], &mut out);
        let labels = "model=\"m\",version=\"2\",variant=\"b\"";
        assert!(out.contains(&format!("bucket{{{labels},le=\"0.00005\"}} 1\n")));
        assert!(out.contains(&format!("bucket{{{labels},le=\"30\"}} 2\n")));
        assert!(out.contains(&format!("bucket{{{labels},le=\"+Inf\"}} 2\n")));
        assert!(out.contains(&format!(
            "tracseq_predict_latency_seconds_count{{{labels}}} 2"
        )));
    }
}
