//! The security port on PostgreSQL. Every call runs in the store's retry
//! loop; a write retried after an ambiguous failure first checks whether
//! its earlier attempt committed.
//!
//! Audit appends serialise on a transaction-scoped advisory lock keyed by
//! the schema, so appenders in every api replica queue for the chain's last
//! entry instead of forking it.

use super::*;
use crate::security::{
    target_pattern, targets_column, token_name_taken, token_not_found, MAX_AUDIT_PAGE,
};
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::audit::{seal, AuditEntry, AuditFilter, NewAuditEntry};
use tracseq_core::security::token::TokenRecord;
use tracseq_core::TokenId;

fn audit_bodies(rows: &[PgRow]) -> Attempt<Vec<AuditEntry>> {
    rows.iter()
        .map(|r| Ok(serde_json::from_str(r.try_get::<&str, _>("body")?)?))
        .collect()
}

impl PostgresStateStore {
    async fn token_once(&self, id: TokenId) -> Attempt<Option<TokenRecord>> {
        self.fetch_body(
            "SELECT body FROM api_tokens WHERE id = $1::uuid",
            id.to_string(),
        )
        .await
    }

    /// The entry a retried append may already have written.
    async fn appended(&self, entry: &NewAuditEntry) -> Attempt<Option<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT body FROM audit_log WHERE request_id = $1 AND action = $2 ORDER BY seq",
        )
        .bind(&entry.request_id)
        .bind(&entry.action)
        .fetch_all(&self.pool)
        .await?;
        Ok(audit_bodies(&rows)?.into_iter().find(|e| e.entry == *entry))
    }
}

#[async_trait]
impl SecurityStore for PostgresStateStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        let res = self
            .run(|attempt| async move {
                let insert = sqlx::query(
                    "INSERT INTO api_tokens (id, name, hash, created_at, revoked_at, body)
                     VALUES ($1::uuid, $2, $3, $4, $5, $6)",
                )
                .bind(token.id.to_string())
                .bind(&token.name)
                .bind(&token.hash)
                .bind(ms(token.created_at))
                .bind(opt_ms(token.revoked_at))
                .bind(json(token))
                .execute(&self.pool)
                .await;
                match insert {
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let f = Fail::Db(e);
                        if attempt > 0
                            && is_unique_violation(&f)
                            && self.token_once(token.id).await?.as_ref() == Some(token)
                        {
                            return Ok(());
                        }
                        Err(f)
                    }
                }
            })
            .await;
        match res {
            Err(Error::Conflict(_)) => Err(token_name_taken(&token.name)),
            other => other,
        }
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        self.run(|_| {
            self.fetch_body(
                "SELECT body FROM api_tokens WHERE hash = $1",
                hash.to_string(),
            )
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.run(|_| async {
            let rows = sqlx::query("SELECT body FROM api_tokens ORDER BY created_at, id")
                .fetch_all(&self.pool)
                .await?;
            bodies(&rows)
        })
        .await
    }

    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<TokenRecord> {
        // Revoking is idempotent (the first time stays), so a retry is safe.
        self.run(|_| async move {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query("SELECT body FROM api_tokens WHERE id = $1::uuid FOR UPDATE")
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let mut token: TokenRecord = match row {
                Some(r) => body(&r)?,
                None => return Err(token_not_found(id).into()),
            };
            if token.revoked_at.is_none() {
                token.revoked_at = Some(now);
                sqlx::query("UPDATE api_tokens SET revoked_at = $1, body = $2 WHERE id = $3::uuid")
                    .bind(ms(now))
                    .bind(json(&token))
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(token)
        })
        .await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let entry = &entry;
        self.run(|attempt| async move {
            if attempt > 0 {
                if let Some(done) = self.appended(entry).await? {
                    return Ok(done);
                }
            }
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext('tracseq audit_log ' || current_schema()))")
                .execute(&mut *tx)
                .await?;
            let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| -> Attempt<(u64, String)> {
                    Ok((r.try_get::<i64, _>("seq")? as u64, r.try_get("hash")?))
                })
                .transpose()?;
            let sealed = seal(last.as_ref().map(|(s, h)| (*s, h.as_str())), entry.clone())?;
            let e = &sealed.entry;
            sqlx::query(
                "INSERT INTO audit_log (seq, at, actor_id, actor_name, action, targets, request_id, hash, body)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(sealed.seq as i64)
            .bind(ms(e.at))
            .bind(e.actor.as_ref().map(|a| a.id.to_string()))
            .bind(e.actor.as_ref().map(|a| a.name.clone()))
            .bind(&e.action)
            .bind(targets_column(&e.targets))
            .bind(&e.request_id)
            .bind(&sealed.hash)
            .bind(serde_json::to_string(&sealed)?)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(sealed)
        })
        .await
    }

    async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut sql = String::from("SELECT body FROM audit_log WHERE TRUE");
        let mut texts: Vec<String> = Vec::new();
        let mut n = 0;
        let mut param = |sql: &mut String, clause: &str| {
            n += 1;
            sql.push_str(&clause.replace('?', &format!("${n}")));
        };
        if let Some(a) = &f.actor {
            param(&mut sql, " AND (actor_name = ?");
            param(&mut sql, " OR actor_id = ?)");
            texts.push(a.clone());
            texts.push(a.clone());
        }
        if let Some(a) = &f.action {
            param(&mut sql, " AND action = ?");
            texts.push(a.clone());
        }
        if let Some(t) = &f.target {
            param(&mut sql, " AND targets LIKE ? ESCAPE '\\'");
            texts.push(target_pattern(t));
        }
        // Numbers go in as literals: they are ours, not the caller's text.
        if let Some(s) = f.since {
            sql.push_str(&format!(" AND at >= {}", ms(s)));
        }
        if let Some(b) = f.before_seq {
            sql.push_str(&format!(
                " AND seq < {}",
                i64::try_from(b).unwrap_or(i64::MAX)
            ));
        }
        sql.push_str(&format!(
            " ORDER BY seq DESC LIMIT {}",
            f.limit.min(MAX_AUDIT_PAGE)
        ));
        let (sql, texts) = (&sql, &texts);
        let mut entries = self
            .run(|_| async move {
                let mut q = sqlx::query(sql);
                for t in texts {
                    q = q.bind(t);
                }
                audit_bodies(&q.fetch_all(&self.pool).await?)
            })
            .await?;
        // `at` is kept in milliseconds; the filter's own rule decides the
        // sub-millisecond edge.
        entries.retain(|e| f.matches(e));
        Ok(entries)
    }

    async fn audit_chain(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = i64::from(limit.min(MAX_AUDIT_PAGE));
        self.run(|_| async move {
            let rows =
                sqlx::query("SELECT body FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(after)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
            audit_bodies(&rows)
        })
        .await
    }
}
