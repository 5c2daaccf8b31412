//! Alerts — a model drifting, a canary rolled back, an error-rate spike —
//! and their delivery to each configured webhook, as pure functions.
//!
//! ```text
//! raised ──recorded with one delivery per webhook, each pending and due now
//! pending ──POST answered 2xx──> delivered
//!    └──refused, timed out, non-2xx──> pending, due after a backoff
//!         (base · 2^(attempts-1), capped) ──attempts = max_attempts──> failed
//! ```
//!
//! An alert is stored before its first delivery is tried, so a scheduler
//! that dies never loses one: the next pass tries what is due. Delivery is
//! at least once (a scheduler can die between the POST and the write that
//! records it), so every body carries the alert's id for receivers to
//! drop repeats. The same condition does not raise the same alert again
//! within a cooldown ([`may_raise`]): a drifted model stays drifted, and
//! one page an hour says so better than one a minute.
//!
//! Webhooks are named in the configuration; an alert names them, never
//! their URLs (which often carry a token), so reading alerts shows no
//! secret.

use crate::ids::{AlertId, DeploymentId};
use crate::types::str_enum;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A served version's live features moved away from its training data.
    Drift,
    /// A canary failed its gates and was rolled back automatically.
    CanaryRollback,
    /// A live deployment's requests fail more often than the threshold.
    ErrorRate,
}
str_enum!(AlertKind { Drift => "drift", CanaryRollback => "canary_rollback", ErrorRate => "error_rate" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone should look (drift: the model may be wrong more often).
    Warning,
    /// Something already went wrong (failed requests, a rollback).
    Critical,
}
str_enum!(Severity { Warning => "warning", Critical => "critical" });

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `next_attempt`.
    Pending,
    Delivered,
    /// Gave up: every attempt failed, or the webhook is no longer
    /// configured.
    Failed,
}
str_enum!(DeliveryState { Pending => "pending", Delivered => "delivered", Failed => "failed" });

/// One alert's delivery to one webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The webhook's name in the configuration.
    pub webhook: String,
    pub state: DeliveryState,
    /// POSTs tried so far.
    pub attempts: u32,
    /// When a pending delivery is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt: Option<DateTime<Utc>>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// What raises an alert: the condition, and what it is about.
#[derive(Clone, Debug, PartialEq)]
pub struct Raise {
    pub kind: AlertKind,
    pub severity: Severity,
    pub model: String,
    pub version: Option<u32>,
    pub deployment_id: Option<DeploymentId>,
    /// One line a person reads in a chat message.
    pub summary: String,
    /// The figures behind it (a drift report's features, the gate that
    /// failed, the error counts).
    pub detail: Value,
}

impl Raise {
    /// The condition an alert is about, for the cooldown: the same kind
    /// for the same model version (or deployment).
    pub fn key(&self) -> String {
        let version = self.version.map_or_else(String::new, |v| v.to_string());
        let deployment = self
            .deployment_id
            .map_or_else(String::new, |d| d.to_string());
        format!("{}:{}@{}:{}", self.kind, self.model, version, deployment)
    }
}

/// A recorded alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    pub at: DateTime<Utc>,
    pub kind: AlertKind,
    pub severity: Severity,
    /// What the cooldown compares ([`Raise::key`]).
    pub key: String,
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<DeploymentId>,
    pub summary: String,
    pub detail: Value,
    /// One per webhook configured when it was raised (none without any:
    /// the alert is still recorded and logged).
    pub deliveries: Vec<Delivery>,
}

/// How deliveries are retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retry {
    /// Attempts before a delivery fails for good (1 or more).
    pub max_attempts: u32,
    /// The wait after the first failure; doubled after each next one.
    pub base: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
}

impl Retry {
    /// The wait after the `attempts`-th failed attempt.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        let wait = self.base.num_milliseconds().saturating_mul(1 << doublings);
        Duration::milliseconds(wait).min(self.max)
    }
}

impl Alert {
    /// A new alert with one pending delivery, due now, per webhook.
    pub fn new<'a>(
        raise: Raise,
        webhooks: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Alert {
        Alert {
            id: AlertId::new(),
            at: now,
            key: raise.key(),
            kind: raise.kind,
            severity: raise.severity,
            model: raise.model,
            version: raise.version,
            deployment_id: raise.deployment_id,
            summary: raise.summary,
            detail: raise.detail,
            deliveries: webhooks
                .into_iter()
                .map(|w| Delivery {
                    webhook: w.to_string(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_attempt: Some(now),
                    last_error: None,
                    delivered_at: None,
                })
                .collect(),
        }
    }

    /// When its next pending delivery is due (`None`: nothing left to
    /// deliver). Stores index it to find due alerts without reading all.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        self.deliveries
            .iter()
            .filter(|d| d.state == DeliveryState::Pending)
            .filter_map(|d| d.next_attempt)
            .min()
    }

    /// The positions of the deliveries due at `now`.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<usize> {
        self.deliveries
            .iter()
            .enumerate()
            .filter(|(_, d)| d.state == DeliveryState::Pending)
            .filter(|(_, d)| d.next_attempt.is_some_and(|t| t <= now))
            .map(|(i, _)| i)
            .collect()
    }
}

/// The delivery after one attempt: delivered, or pending again after the
/// backoff, or failed once `max_attempts` are spent. A delivery that is no
/// longer pending is returned unchanged (a late, repeated attempt).
pub fn attempted(
    d: &Delivery,
    result: std::result::Result<(), String>,
    retry: &Retry,
    now: DateTime<Utc>,
) -> Delivery {
    if d.state != DeliveryState::Pending {
        return d.clone();
    }
    let attempts = d.attempts.saturating_add(1);
    match result {
        Ok(()) => Delivery {
            state: DeliveryState::Delivered,
            attempts,
            next_attempt: None,
            delivered_at: Some(now),
            ..d.clone()
        },
        Err(why) if attempts >= retry.max_attempts.max(1) => Delivery {
            state: DeliveryState::Failed,
            attempts,
            next_attempt: None,
            last_error: Some(why),
            ..d.clone()
        },
        Err(why) => Delivery {
            attempts,
            next_attempt: Some(now + retry.backoff(attempts)),
            last_error: Some(why),
            ..d.clone()
        },
    }
}

/// A pending delivery whose webhook is no longer configured: failed, with
/// the reason, and never tried.
pub fn unconfigured(d: &Delivery) -> Delivery {
    if d.state != DeliveryState::Pending {
        return d.clone();
    }
    Delivery {
        state: DeliveryState::Failed,
        next_attempt: None,
        last_error: Some(format!(
            "webhook '{}' is no longer configured (alerts.webhooks)",
            d.webhook
        )),
        ..d.clone()
    }
}

/// Whether a condition may raise its alert again: not while the last alert
/// with the same key is younger than the cooldown.
pub fn may_raise(last: Option<&Alert>, cooldown: Duration, now: DateTime<Utc>) -> bool {
    last.is_none_or(|a| now - a.at >= cooldown)
}

#[cfg(test)]
#[path = "alert_tests.rs"]
mod tests;
