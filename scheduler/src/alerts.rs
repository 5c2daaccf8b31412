//! Raising and delivering alerts. [`raise`] records an alert (unless the
//! same condition raised one within the cooldown) and writes it to the log
//! at once; [`deliver_due`] POSTs every due delivery to its webhook and
//! stores what happened, so a failed POST is retried with a backoff
//! ([`tracseq_core::lifecycle::alert`]) by whichever scheduler pass comes
//! next — also after a restart, since the alert was stored first.
//!
//! The body is the alert as `GET /alerts` shows it, plus the attempt; its
//! `id` lets a receiver drop repeats (delivery is at least once). With a
//! webhook's `secret_env` set, `X-TracSeq-Signature: sha256=<hex>` is the
//! HMAC-SHA256 of the body under that secret.

use chrono::{DateTime, Duration, Utc};
use std::time::Duration as StdDuration;
use tokio::task::JoinSet;
use tracseq_core::config::{AlertsConfig, Webhook};
use tracseq_core::lifecycle::alert::{attempted, may_raise, unconfigured, DeliveryState};
use tracseq_core::monitoring::{Alert, Raise, Severity};
use tracseq_core::{Error, Platform, Result};

/// Alerts one delivery pass reads at most.
const DUE_PER_PASS: u32 = 100;
/// The most of a webhook's answer kept as the reason a POST failed.
const MAX_REASON: usize = 200;

/// Records an alert for `raise` and logs it, unless the same condition
/// raised one within `alerts.cooldown_secs` (then `None`).
pub async fn raise(
    p: &Platform,
    cfg: &AlertsConfig,
    raise: Raise,
    now: DateTime<Utc>,
) -> Result<Option<Alert>> {
    let cooldown = Duration::seconds(cfg.cooldown_secs as i64);
    let last = p.alerts.last_alert(&raise.key()).await?;
    if !may_raise(last.as_ref(), cooldown, now) {
        tracing::debug!(key = %raise.key(), "alert condition still holds; within its cooldown");
        return Ok(None);
    }
    let alert = Alert::new(raise, cfg.webhooks.iter().map(|w| w.name.as_str()), now);
    p.alerts.record_alert(&alert).await?;
    match alert.severity {
        Severity::Critical => tracing::error!(alert_id = %alert.id, kind = %alert.kind,
            model = %alert.model, version = ?alert.version, summary = %alert.summary, "ALERT"),
        Severity::Warning => tracing::warn!(alert_id = %alert.id, kind = %alert.kind,
            model = %alert.model, version = ?alert.version, summary = %alert.summary, "ALERT"),
    }
    Ok(Some(alert))
}

/// The JSON body POSTed for `alert`'s `attempt`-th try.
pub fn body(alert: &Alert, attempt: u32) -> Vec<u8> {
    let mut v = serde_json::to_value(alert).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("deliveries");
        o.remove("key");
        o.insert("attempt".into(), attempt.into());
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn post(
    client: reqwest::Client,
    hook: Webhook,
    body: Vec<u8>,
    alert: String,
    attempt: u32,
) -> std::result::Result<(), String> {
    let mut req = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("x-tracseq-alert-id", alert)
        .header("x-tracseq-attempt", attempt.to_string());
    if let Some(var) = &hook.secret_env {
        let secret = std::env::var(var).map_err(|_| {
            format!("the signing secret's variable {var} is not set in the scheduler")
        })?;
        req = req.header("x-tracseq-signature", signature(secret.as_bytes(), &body));
    }
    let resp = req.body(body).send().await.map_err(|e| {
        if e.is_timeout() {
            "timed out".to_string()
        } else {
            // The URL may carry a token: the reason never names it.
            format!("no answer: {}", e.without_url())
        }
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    let text: String = text.chars().take(MAX_REASON).collect();
    Err(format!("HTTP {}: {}", status.as_u16(), text.trim()))
}

/// The client deliveries are POSTed with.
pub fn client(cfg: &AlertsConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(StdDuration::from_millis(cfg.timeout_ms))
        .user_agent(concat!("tracseq-ml/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Internal(format!("webhook client: {e}")))
}

/// Tries every delivery due at `now` (all at once) and stores the outcome
/// of each; returns how many were tried.
pub async fn deliver_due(
    p: &Platform,
    cfg: &AlertsConfig,
    client: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<usize> {
    let mut alerts = p.alerts.due_alerts(now, DUE_PER_PASS).await?;
    let mut posts = JoinSet::new();
    for (a, alert) in alerts.iter_mut().enumerate() {
        for d in alert.due(now) {
            let delivery = &alert.deliveries[d];
            let Some(hook) = cfg.webhook(&delivery.webhook) else {
                alert.deliveries[d] = unconfigured(delivery);
                continue;
            };
            let attempt = delivery.attempts + 1;
            let fut = post(
                client.clone(),
                hook.clone(),
                body(alert, attempt),
                alert.id.to_string(),
                attempt,
            );
            posts.spawn(async move { (a, d, fut.await) });
        }
    }
    let mut tried = 0;
    while let Some(done) = posts.join_next().await {
        let Ok((a, d, result)) = done else { continue };
        tried += 1;
        let alert = &mut alerts[a];
        let after = attempted(&alert.deliveries[d], result, &cfg.retry(), now);
        match after.state {
            DeliveryState::Delivered => tracing::info!(alert_id = %alert.id,
                webhook = %after.webhook, attempts = after.attempts, "alert delivered"),
            DeliveryState::Failed => tracing::error!(alert_id = %alert.id,
                webhook = %after.webhook, attempts = after.attempts,
                error = after.last_error.as_deref().unwrap_or(""),
                "alert delivery failed for good"),
            DeliveryState::Pending => tracing::warn!(alert_id = %alert.id,
                webhook = %after.webhook, attempts = after.attempts,
                error = after.last_error.as_deref().unwrap_or(""),
                next_attempt = ?after.next_attempt, "alert delivery failed; will retry"),
        }
        alert.deliveries[d] = after;
    }
    for alert in &alerts {
        p.alerts.update_deliveries(alert).await?;
    }
    Ok(tried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
