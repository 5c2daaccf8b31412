//! The security port on the embedded SQLite database.
//!
//! Audit appends take SQLite's write lock before reading the chain's last
//! entry (`BEGIN IMMEDIATE`), so two processes on one file (the server and
//! `tracseq-ml token create`) queue instead of forking the chain.

use super::SqliteStateStore;
use crate::error::Classify;
use crate::security::{
    target_pattern, targets_column, token_name_taken, token_not_found, MAX_AUDIT_PAGE,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::audit::{seal, AuditEntry, AuditFilter, NewAuditEntry};
use tracseq_core::security::token::TokenRecord;
use tracseq_core::{Error, Result, TokenId};

fn token_body(row: &sqlx::sqlite::SqliteRow) -> Result<TokenRecord> {
    Ok(serde_json::from_str(row.get::<&str, _>("body"))?)
}

fn audit_bodies(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<AuditEntry>> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(r.get::<&str, _>("body"))?))
        .collect()
}

#[async_trait]
impl SecurityStore for SqliteStateStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO api_tokens (id, name, hash, created_at, revoked_at, body)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(&token.name)
        .bind(&token.hash)
        .bind(token.created_at.timestamp_millis())
        .bind(token.revoked_at.map(|t| t.timestamp_millis()))
        .bind(serde_json::to_string(token)?)
        .execute(&self.writer)
        .await
        .classify();
        match res {
            Err(Error::Conflict(_)) => Err(token_name_taken(&token.name)),
            other => other.map(|_| ()),
        }
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query("SELECT body FROM api_tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.reader)
            .await
            .classify()?;
        row.as_ref().map(token_body).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query("SELECT body FROM api_tokens ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await
            .classify()?;
        rows.iter().map(token_body).collect()
    }

    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<TokenRecord> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let row = sqlx::query("SELECT body FROM api_tokens WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .classify()?;
        let mut token = token_body(&row.ok_or_else(|| token_not_found(id))?)?;
        if token.revoked_at.is_none() {
            token.revoked_at = Some(now);
            sqlx::query("UPDATE api_tokens SET revoked_at = ?, body = ? WHERE id = ?")
                .bind(now.timestamp_millis())
                .bind(serde_json::to_string(&token)?)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .classify()?;
        }
        tx.commit().await.classify()?;
        Ok(token)
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.classify()?;
        let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .classify()?
            .map(|r| (r.get::<i64, _>("seq") as u64, r.get::<String, _>("hash")));
        let sealed = seal(last.as_ref().map(|(s, h)| (*s, h.as_str())), entry)?;
        let e = &sealed.entry;
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor_id, actor_name, action, targets, request_id, hash, body)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(sealed.seq as i64)
        .bind(e.at.timestamp_millis())
        .bind(e.actor.as_ref().map(|a| a.id.to_string()))
        .bind(e.actor.as_ref().map(|a| a.name.clone()))
        .bind(&e.action)
        .bind(targets_column(&e.targets))
        .bind(&e.request_id)
        .bind(&sealed.hash)
        .bind(serde_json::to_string(&sealed)?)
        .execute(&mut *tx)
        .await
        .classify()?;
        tx.commit().await.classify()?;
        Ok(sealed)
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from("SELECT body FROM audit_log WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        if let Some(a) = &f.actor {
            sql.push_str(" AND (actor_name = ? OR actor_id = ?)");
            binds.push(Bind::Text(a.clone()));
            binds.push(Bind::Text(a.clone()));
        }
        if let Some(a) = &f.action {
            sql.push_str(" AND action = ?");
            binds.push(Bind::Text(a.clone()));
        }
        if let Some(t) = &f.target {
            sql.push_str(" AND targets LIKE ? ESCAPE '\\'");
            binds.push(Bind::Text(target_pattern(t)));
        }
        if let Some(s) = f.since {
            sql.push_str(" AND at >= ?");
            binds.push(Bind::Int(s.timestamp_millis()));
        }
        if let Some(b) = f.before_seq {
            sql.push_str(" AND seq < ?");
            binds.push(Bind::Int(i64::try_from(b).unwrap_or(i64::MAX)));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        binds.push(Bind::Int(f.limit.min(MAX_AUDIT_PAGE) as i64));
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        let rows = q.fetch_all(&self.reader).await.classify()?;
        let mut entries = audit_bodies(&rows)?;
        // `at` is kept in milliseconds; the filter's own rule decides the
        // sub-millisecond edge.
        entries.retain(|e| f.matches(e));
        Ok(entries)
    }

    async fn audit_chain(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let rows = sqlx::query("SELECT body FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(i64::try_from(after_seq).unwrap_or(i64::MAX))
            .bind(limit.min(MAX_AUDIT_PAGE) as i64)
            .fetch_all(&self.reader)
            .await
            .classify()?;
        audit_bodies(&rows)
    }
}

enum Bind {
    Text(String),
    Int(i64),
}
