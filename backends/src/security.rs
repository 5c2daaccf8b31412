//! The [`SecurityStore`] port (tokens and the audit log): in memory here;
//! on SQLite and PostgreSQL in `sqlite/security.rs` and
//! `postgres/security.rs`, beside the state store of the same database (one
//! pool, its own tables).
//!
//! What the SQL stores share is here: how an entry's targets are kept so
//! that one of them can be found with `LIKE`, and the query limits.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::audit::{seal, AuditEntry, AuditFilter, NewAuditEntry};
use tracseq_core::security::token::TokenRecord;
use tracseq_core::{Error, Result, TokenId};

/// Most entries one audit query returns, whatever the caller asks.
pub const MAX_AUDIT_PAGE: u32 = 1_000;

/// An entry's targets as the `targets` column keeps them: joined with
/// spaces and padded with one on each side (targets are ids, names and
/// artifact paths, none of which contain a space).
pub(crate) fn targets_column(targets: &[String]) -> String {
    format!(" {} ", targets.join(" "))
}

/// The `LIKE` pattern (with `\` as the escape) that finds `target` in a
/// [`targets_column`].
pub(crate) fn target_pattern(target: &str) -> String {
    let mut escaped = String::with_capacity(target.len() + 4);
    for c in target.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("% {escaped} %")
}

pub(crate) fn token_not_found(id: TokenId) -> Error {
    Error::not_found(format!("token {id}"))
}

pub(crate) fn token_name_taken(name: &str) -> Error {
    Error::Conflict(format!("an active token is already named '{name}'"))
}

/// Tokens and the audit log in memory (tests): the SQL stores' semantics
/// behind one mutex.
#[derive(Default)]
pub struct MemorySecurityStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    tokens: Vec<TokenRecord>,
    audit: Vec<AuditEntry>,
}

impl MemorySecurityStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every mutation below completes before it can panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl SecurityStore for MemorySecurityStore {
    async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        let mut g = self.lock();
        if g.tokens
            .iter()
            .any(|t| t.id == token.id || t.hash == token.hash)
        {
            return Err(Error::Conflict(format!(
                "token {} already exists",
                token.id
            )));
        }
        if g.tokens
            .iter()
            .any(|t| t.name == token.name && t.revoked_at.is_none())
        {
            return Err(token_name_taken(&token.name));
        }
        g.tokens.push(token.clone());
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        Ok(self.lock().tokens.iter().find(|t| t.hash == hash).cloned())
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        Ok(self.lock().tokens.clone())
    }

    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<TokenRecord> {
        let mut g = self.lock();
        let t = g
            .tokens
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or_else(|| token_not_found(id))?;
        t.revoked_at.get_or_insert(now);
        Ok(t.clone())
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let mut g = self.lock();
        let sealed = seal(g.audit.last().map(|e| (e.seq, e.hash.as_str())), entry)?;
        g.audit.push(sealed.clone());
        Ok(sealed)
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let limit = filter.limit.min(MAX_AUDIT_PAGE) as usize;
        Ok(self
            .lock()
            .audit
            .iter()
            .rev()
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn audit_chain(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>> {
        Ok(self
            .lock()
            .audit
            .iter()
            .filter(|e| e.seq > after_seq)
            .take(limit.min(MAX_AUDIT_PAGE) as usize)
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_found_only_whole() {
        let col = targets_column(&["exp-1".into(), "models/m/1".into()]);
        assert_eq!(col, " exp-1 models/m/1 ");
        assert_eq!(target_pattern("exp-1"), "% exp-1 %");
        assert_eq!(target_pattern("a_b%"), "% a\\_b\\% %");
    }
}
