//! `[alerts]`: the monitor the scheduler runs over what is served (drift
//! against each version's training profile, error-rate spikes) and where
//! its alerts go. Every alert is recorded and logged whether or not a
//! webhook is configured.

use crate::lifecycle::alert::Retry;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A receiver of alerts: each alert is POSTed to it as JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// What alerts name it by (never by its URL, which may carry a token).
    pub name: String,
    /// `http://` or `https://`.
    pub url: String,
    /// The environment variable holding a secret to sign bodies with
    /// (`X-TracSeq-Signature: sha256=<HMAC-SHA256 of the body, hex>`); the
    /// secret itself never goes in the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// Where alerts are POSTed, e.g.
    /// `[{ name = "lab-notify", url = "https://notify.lab.example/hooks/ml" }]`.
    pub webhooks: Vec<Webhook>,
    /// How often the monitor checks every live deployment's versions, in
    /// seconds (0: no monitor; canary rollbacks still alert).
    pub monitor_secs: u64,
    /// Newest live records each drift check compares with the training
    /// profile.
    pub drift_window: u32,
    /// The error rate over `error_window_secs` from which a live
    /// deployment raises an `error_rate` alert.
    pub error_rate: f64,
    pub error_window_secs: u64,
    /// Requests in the window below which the error rate is not judged.
    pub error_min_requests: u64,
    /// The same condition (kind, model version, deployment) raises its
    /// alert again only after this many seconds.
    pub cooldown_secs: u64,
    /// POSTs per webhook before a delivery fails for good.
    pub max_attempts: u32,
    /// The wait after a failed POST, in ms; doubled after each next one up
    /// to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// The longest one POST may take, in ms.
    pub timeout_ms: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhooks: Vec::new(),
            monitor_secs: 300,
            drift_window: 5_000,
            error_rate: 0.05,
            error_window_secs: 300,
            error_min_requests: 100,
            cooldown_secs: 3_600,
            max_attempts: 6,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            timeout_ms: 5_000,
        }
    }
}

impl AlertsConfig {
    /// How failed deliveries are retried.
    pub fn retry(&self) -> Retry {
        Retry {
            max_attempts: self.max_attempts,
            base: chrono::Duration::milliseconds(self.retry_base_ms as i64),
            max: chrono::Duration::milliseconds(self.retry_max_ms as i64),
        }
    }

    pub fn webhook(&self, name: &str) -> Option<&Webhook> {
        self.webhooks.iter().find(|w| w.name == name)
    }

    pub(super) fn validate(&self) -> Result<()> {
        let bad =
            |key: &str, why: String| Err(Error::Invalid(format!("config key '{key}': {why}")));
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("alerts.webhooks[{i}]");
            let name_ok = !w.name.is_empty()
                && w.name.len() <= 64
                && w.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !name_ok {
                return bad(
                    &format!("{key}.name"),
                    "must be 1 to 64 letters, digits, '-', '_' or '.'".into(),
                );
            }
            if self.webhooks[..i].iter().any(|o| o.name == w.name) {
                return bad(
                    &format!("{key}.name"),
                    format!("'{}' is named twice", w.name),
                );
            }
            let rest = w
                .url
                .strip_prefix("http://")
                .or_else(|| w.url.strip_prefix("https://"));
            if !rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/')) {
                return bad(
                    &format!("{key}.url"),
                    format!(
                        "webhook '{}' needs an http:// or https:// URL with a host",
                        w.name
                    ),
                );
            }
            if w.secret_env.as_deref().is_some_and(str::is_empty) {
                return bad(&format!("{key}.secret_env"), "must name a variable".into());
            }
        }
        if self.monitor_secs > 86_400 {
            return bad(
                "alerts.monitor_secs",
                "must be at most 86400 (a day)".into(),
            );
        }
        if !(1..=50_000).contains(&self.drift_window) {
            return bad("alerts.drift_window", "must be 1 to 50000 records".into());
        }
        if !(self.error_rate > 0.0 && self.error_rate <= 1.0) {
            return bad("alerts.error_rate", "must be above 0 and at most 1".into());
        }
        if !(1..=86_400).contains(&self.error_window_secs) {
            return bad("alerts.error_window_secs", "must be 1 to 86400".into());
        }
        if self.error_min_requests == 0 {
            return bad("alerts.error_min_requests", "must be 1 or more".into());
        }
        if self.cooldown_secs > 7 * 86_400 {
            return bad(
                "alerts.cooldown_secs",
                "must be at most 604800 (a week)".into(),
            );
        }
        if !(1..=100).contains(&self.max_attempts) {
            return bad("alerts.max_attempts", "must be 1 to 100".into());
        }
        if !(1..=3_600_000).contains(&self.retry_base_ms) {
            return bad("alerts.retry_base_ms", "must be 1 to 3600000".into());
        }
        if !(self.retry_base_ms..=86_400_000).contains(&self.retry_max_ms) {
            return bad(
                "alerts.retry_max_ms",
                "must be at least alerts.retry_base_ms and at most 86400000".into(),
            );
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return bad("alerts.timeout_ms", "must be 1 to 60000".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(name: &str, url: &str) -> Webhook {
        Webhook {
            name: name.into(),
            url: url.into(),
            secret_env: None,
        }
    }

    #[test]
    fn the_defaults_are_valid_and_each_bound_names_its_key() {
        AlertsConfig::default().validate().unwrap();
        type Break = fn(&mut AlertsConfig);
        let cases: [(&str, Break); 12] = [
            ("alerts.webhooks[0].name", |c| {
                c.webhooks = vec![hook("", "http://h")]
            }),
            ("alerts.webhooks[1].name", |c| {
                c.webhooks = vec![hook("a", "http://h"), hook("a", "http://i")]
            }),
            ("alerts.webhooks[0].url", |c| {
                c.webhooks = vec![hook("a", "ftp://h")]
            }),
            ("alerts.webhooks[0].url", |c| {
                c.webhooks = vec![hook("a", "https:///x")]
            }),
            ("alerts.monitor_secs", |c| c.monitor_secs = 86_401),
            ("alerts.drift_window", |c| c.drift_window = 0),
            ("alerts.error_rate", |c| c.error_rate = 0.0),
            ("alerts.error_rate", |c| c.error_rate = f64::NAN),
            ("alerts.max_attempts", |c| c.max_attempts = 0),
            ("alerts.retry_max_ms", |c| {
                c.retry_max_ms = c.retry_base_ms - 1
            }),
            ("alerts.timeout_ms", |c| c.timeout_ms = 0),
            ("alerts.error_min_requests", |c| c.error_min_requests = 0),
        ];
        for (key, break_it) in cases {
            let mut c = AlertsConfig::default();
            break_it(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn webhooks_are_found_by_name() {
        let c = AlertsConfig {
            webhooks: vec![hook("lab", "https://notify.lab.example/ml")],
            ..Default::default()
        };
        c.validate().unwrap();
        assert_eq!(
            c.webhook("lab").unwrap().url,
            "https://notify.lab.example/ml"
        );
        assert!(c.webhook("pager").is_none());
    }
}
