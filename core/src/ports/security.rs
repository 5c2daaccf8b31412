//! `SecurityStore`: API tokens and the append-only audit log.

use crate::ids::TokenId;
use crate::security::audit::{AuditEntry, AuditFilter, NewAuditEntry};
use crate::security::token::TokenRecord;
use crate::Result;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[async_trait]
pub trait SecurityStore: Send + Sync {
    /// Stores a new token. `Conflict` if an unrevoked token has the name.
    async fn insert_token(&self, token: &TokenRecord) -> Result<()>;
    /// The token whose secret hashes to `hash`, revoked or not.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;
    /// Every token, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;
    /// Marks a token revoked at `now` and returns it; revoking a revoked
    /// token changes nothing. `NotFound` for an unknown id.
    async fn revoke_token(&self, id: TokenId, now: DateTime<Utc>) -> Result<TokenRecord>;

    /// Appends an entry after the current last one, atomically with respect
    /// to every other appender (in every process), and returns it sealed.
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry>;
    /// Entries answering the filter, newest first, at most `filter.limit`.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// Entries numbered above `after_seq`, oldest first, at most `limit`:
    /// how `audit verify` walks the whole chain.
    async fn audit_chain(&self, after_seq: u64, limit: u32) -> Result<Vec<AuditEntry>>;
}
