//! Who is calling: the bearer token of a request, checked against the
//! security store through a short-lived cache.
//!
//! `/predict` must not pay a database round trip per request (a SQLite read
//! costs about what a whole prediction does), so a token found active is
//! kept in memory for `api.token_cache_ms` (1 s by default; 0 looks every
//! request up). Revoking through this process drops the entry at once; in
//! other replicas the revocation takes effect when their entry ages out.
//! Unknown tokens are never cached, so a token created in one replica works
//! in all of them on its first use.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tracseq_core::ports::SecurityStore;
use tracseq_core::security::token::{hash_secret, looks_like_secret, Inactive, TokenRecord};
use tracseq_core::security::Caller;
use tracseq_core::{Result, TokenId};

/// Most tokens the cache holds; past it, it starts over (an attacker
/// cannot grow it: only valid tokens enter).
const MAX_CACHED: usize = 10_000;

/// Why a request has no caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A header that is not a bearer token of ours, or a token nobody issued.
    Unknown,
    Revoked,
    Expired,
}

impl Denial {
    /// The message a client reads (never the token).
    pub fn message(self) -> &'static str {
        match self {
            Denial::Missing => {
                "this route needs an API token: send 'Authorization: Bearer <token>'"
            }
            Denial::Unknown => "the API token is not valid",
            Denial::Revoked => "the API token has been revoked",
            Denial::Expired => "the API token has expired",
        }
    }

    /// RFC 6750's `error` for the `WWW-Authenticate` header.
    pub fn www_authenticate(self) -> &'static str {
        match self {
            Denial::Missing => "Bearer realm=\"tracseq-ml\"",
            _ => "Bearer realm=\"tracseq-ml\", error=\"invalid_token\"",
        }
    }
}

struct Cached {
    token: TokenRecord,
    /// Who the token names, built once: a hit only checks the token is
    /// still active and clones this.
    caller: Caller,
    fetched: Instant,
}

/// The SHA-256 of a secret, as bytes: the cache's key (the store keys
/// tokens by its hex form, [`hash_secret`], computed on a miss only).
type SecretDigest = [u8; 32];

/// Active tokens by the digest of their secret.
pub struct TokenCache {
    max_age: Duration,
    entries: RwLock<HashMap<SecretDigest, Cached>>,
}

impl TokenCache {
    pub fn new(max_age: Duration) -> Self {
        TokenCache {
            max_age,
            entries: RwLock::default(),
        }
    }

    /// The caller of a cached token, or why it may not call; `None` when
    /// the cache does not hold it (or holds it too long).
    fn cached(
        &self,
        key: &SecretDigest,
        now: DateTime<Utc>,
    ) -> Option<std::result::Result<Caller, Denial>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        let c = entries
            .get(key)
            .filter(|c| c.fetched.elapsed() < self.max_age)?;
        Some(verdict(&c.token, now).map(|()| c.caller.clone()))
    }

    fn remember(&self, key: SecretDigest, token: TokenRecord) {
        if self.max_age.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED {
            entries.clear();
        }
        entries.insert(
            key,
            Cached {
                caller: caller_of(&token),
                token,
                fetched: Instant::now(),
            },
        );
    }

    /// Drops a token this process just revoked.
    pub fn forget(&self, id: TokenId) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.retain(|_, c| c.token.id != id);
    }

    /// The caller behind an `Authorization` header value.
    pub async fn authenticate(
        &self,
        store: &Arc<dyn SecurityStore>,
        header: Option<&[u8]>,
        now: DateTime<Utc>,
    ) -> Result<std::result::Result<Caller, Denial>> {
        let Some(header) = header else {
            return Ok(Err(Denial::Missing));
        };
        let Some(secret) = bearer(header) else {
            return Ok(Err(Denial::Unknown));
        };
        let key: SecretDigest = Sha256::digest(secret.as_bytes()).into();
        if let Some(verdict) = self.cached(&key, now) {
            return Ok(verdict);
        }
        let Some(token) = store.token_by_hash(&hash_secret(secret)).await? else {
            return Ok(Err(Denial::Unknown));
        };
        let verdict = verdict(&token, now).map(|()| caller_of(&token));
        if verdict.is_ok() {
            self.remember(key, token);
        }
        Ok(verdict)
    }
}

/// Whether `token` may call at `now`.
fn verdict(token: &TokenRecord, now: DateTime<Utc>) -> std::result::Result<(), Denial> {
    token.check_active(now).map_err(|e| match e {
        Inactive::Revoked => Denial::Revoked,
        Inactive::Expired => Denial::Expired,
    })
}

fn caller_of(token: &TokenRecord) -> Caller {
    Caller {
        actor: token.actor(),
        role: token.role,
    }
}

/// The secret of `Bearer <secret>` (scheme in any case), if it has the
/// shape of one of ours.
fn bearer(header: &[u8]) -> Option<&str> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, secret) = header.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && looks_like_secret(secret)).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracseq_backends::MemorySecurityStore;
    use tracseq_core::security::token::{issue, TokenRequest};
    use tracseq_core::security::Role;

    async fn store_with(
        role: Role,
        expires: Option<chrono::Duration>,
    ) -> (Arc<dyn SecurityStore>, String, TokenId) {
        let store: Arc<dyn SecurityStore> = Arc::new(MemorySecurityStore::new());
        let issued = issue(
            TokenRequest {
                name: "t".into(),
                role,
                expires_in: expires,
                created_by: "test".into(),
            },
            Utc::now(),
        )
        .unwrap();
        store.insert_token(&issued.record).await.unwrap();
        (
            store,
            format!("Bearer {}", issued.secret.expose()),
            issued.record.id,
        )
    }

    #[tokio::test]
    async fn a_valid_bearer_token_names_its_caller_and_role() {
        let (store, header, id) = store_with(Role::Scientist, None).await;
        let cache = TokenCache::new(Duration::from_secs(1));
        let caller = cache
            .authenticate(&store, Some(header.as_bytes()), Utc::now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((caller.actor.id, caller.role), (id, Role::Scientist));
        let lower = header.replacen("Bearer", "bearer", 1);
        assert!(cache
            .authenticate(&store, Some(lower.as_bytes()), Utc::now())
            .await
            .unwrap()
            .is_ok());
    }

    #[tokio::test]
    async fn missing_malformed_and_unknown_tokens_are_denied() {
        let (store, _, _) = store_with(Role::Admin, None).await;
        let cache = TokenCache::new(Duration::from_secs(1));
        let check = |h: Option<&'static str>| {
            let (cache, store) = (&cache, &store);
            async move {
                cache
                    .authenticate(store, h.map(str::as_bytes), Utc::now())
                    .await
                    .unwrap()
                    .unwrap_err()
            }
        };
        assert_eq!(check(None).await, Denial::Missing);
        assert_eq!(check(Some("Basic dXNlcjpwdw==")).await, Denial::Unknown);
        assert_eq!(check(Some("Bearer")).await, Denial::Unknown);
        let unknown: &'static str =
            Box::leak(format!("Bearer tsq_{}", "0".repeat(64)).into_boxed_str());
        assert_eq!(check(Some(unknown)).await, Denial::Unknown);
    }

    #[tokio::test]
    async fn a_revoked_token_is_refused_on_the_next_request_of_the_revoking_process() {
        let (store, header, id) = store_with(Role::Admin, None).await;
        let cache = TokenCache::new(Duration::from_secs(3600));
        let auth = || cache.authenticate(&store, Some(header.as_bytes()), Utc::now());
        assert!(auth().await.unwrap().is_ok());
        store.revoke_token(id, Utc::now()).await.unwrap();
        cache.forget(id);
        assert_eq!(auth().await.unwrap().unwrap_err(), Denial::Revoked);
    }

    #[tokio::test]
    async fn without_a_cache_another_replicas_revocation_takes_effect_at_once() {
        let (store, header, id) = store_with(Role::Admin, None).await;
        let cache = TokenCache::new(Duration::ZERO);
        assert!(cache
            .authenticate(&store, Some(header.as_bytes()), Utc::now())
            .await
            .unwrap()
            .is_ok());
        store.revoke_token(id, Utc::now()).await.unwrap();
        assert_eq!(
            cache
                .authenticate(&store, Some(header.as_bytes()), Utc::now())
                .await
                .unwrap()
                .unwrap_err(),
            Denial::Revoked
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused_even_from_the_cache() {
        let (store, header, _) = store_with(Role::Viewer, Some(chrono::Duration::hours(1))).await;
        let cache = TokenCache::new(Duration::from_secs(3600));
        let now = Utc::now();
        assert!(cache
            .authenticate(&store, Some(header.as_bytes()), now)
            .await
            .unwrap()
            .is_ok());
        let later = now + chrono::Duration::hours(2);
        assert_eq!(
            cache
                .authenticate(&store, Some(header.as_bytes()), later)
                .await
                .unwrap()
                .unwrap_err(),
            Denial::Expired
        );
    }
}
