//! The audit log's entries and their hash chain.
//!
//! Each entry carries the hash of the one before it, and its own hash covers
//! its sequence number, that previous hash and everything it records. A
//! changed, removed or reordered row therefore breaks the chain at that row,
//! and [`verify`] names the first one that does. The stores only append
//! (their databases refuse updates and deletes of audit rows); the chain is
//! what lets someone who reads the log trust that nobody went around them.

use super::Actor;
use crate::Result;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How a recorded request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done (2xx).
    Ok,
    /// Refused for who the caller is: no token, an unknown or inactive
    /// one (401), or a role without the permission (403).
    Denied,
    /// Attempted and refused for what it asked (4xx) or failed (5xx).
    Failed,
}

impl Outcome {
    pub fn of_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            401 | 403 => Outcome::Denied,
            _ => Outcome::Failed,
        }
    }
}

/// What happened, before the store gives it a place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAuditEntry {
    pub at: DateTime<Utc>,
    /// The token that acted; `None` when no valid token was presented.
    pub actor: Option<Actor>,
    /// What was attempted, e.g. `datasets.create` or `tokens.revoke`.
    pub action: String,
    /// The ids and names acted on (path parameters and created records).
    pub targets: Vec<String>,
    pub outcome: Outcome,
    /// The HTTP status answered (0 for actions outside a request).
    pub status: u16,
    pub request_id: String,
    /// The client's address, when the action came over the network.
    pub client: Option<String>,
    /// Why, for denials and failures (never a secret or the request body).
    pub detail: Option<String>,
}

/// An entry in its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, …: a gap is a removed entry.
    pub seq: u64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an entry at `seq` after `prev_hash`: SHA-256 over the JSON
/// of the three, fields in their declared order.
pub fn entry_hash(seq: u64, prev_hash: &str, entry: &NewAuditEntry) -> Result<String> {
    #[derive(Serialize)]
    struct Hashed<'a> {
        seq: u64,
        prev_hash: &'a str,
        entry: &'a NewAuditEntry,
    }
    let bytes = serde_json::to_vec(&Hashed {
        seq,
        prev_hash,
        entry,
    })?;
    Ok(crate::digest::sha256_hex(&bytes))
}

/// The entry that follows `last` (or starts the chain).
pub fn seal(last: Option<(u64, &str)>, entry: NewAuditEntry) -> Result<AuditEntry> {
    let (seq, prev_hash) = match last {
        Some((seq, hash)) => (seq + 1, hash.to_string()),
        None => (1, GENESIS.to_string()),
    };
    let hash = entry_hash(seq, &prev_hash, &entry)?;
    Ok(AuditEntry {
        seq,
        entry,
        prev_hash,
        hash,
    })
}

/// The first entry that does not follow from the one before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: u64,
    pub reason: String,
}

/// Where a verification continues from: the last good entry's number and
/// hash (`(0, GENESIS)` at the start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: u64,
    pub hash: String,
}

impl Default for ChainHead {
    fn default() -> Self {
        ChainHead {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }
}

/// Checks `entries` (in order) against each other and against `head`, the
/// entry before them, and moves `head` to the last good one. Verifying a
/// long log page by page gives the same answer as verifying it whole.
pub fn verify(head: &mut ChainHead, entries: &[AuditEntry]) -> std::result::Result<(), ChainBreak> {
    for e in entries {
        let broken = |reason: String| Err(ChainBreak { seq: e.seq, reason });
        if e.seq != head.seq + 1 {
            return broken(format!(
                "expected entry {} after entry {}, found entry {}: entries are missing or out of order",
                head.seq + 1,
                head.seq,
                e.seq
            ));
        }
        if e.prev_hash != head.hash {
            return broken(format!(
                "its prev_hash does not match the hash of entry {}",
                head.seq
            ));
        }
        match entry_hash(e.seq, &e.prev_hash, &e.entry) {
            Ok(h) if h == e.hash => {}
            Ok(_) => return broken("its content does not match its hash: it was changed".into()),
            Err(err) => return broken(format!("it cannot be hashed: {err}")),
        }
        head.seq = e.seq;
        head.hash = e.hash.clone();
    }
    Ok(())
}

/// `GET /audit`'s question: newest first, each filter optional.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// A token's name or id.
    pub actor: Option<String>,
    pub action: Option<String>,
    /// One of the entry's targets.
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only entries numbered below this (the cursor of the next page).
    pub before_seq: Option<u64>,
    pub limit: u32,
}

impl AuditFilter {
    /// Whether `e` answers the filter (the memory store's query, and the
    /// reference the database queries are tested against).
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let actor_ok = self.actor.as_deref().is_none_or(|a| {
            e.entry
                .actor
                .as_ref()
                .is_some_and(|x| x.name == a || x.id.to_string() == a)
        });
        actor_ok
            && self.action.as_deref().is_none_or(|a| e.entry.action == a)
            && self
                .target
                .as_deref()
                .is_none_or(|t| e.entry.targets.iter().any(|x| x == t))
            && self.since.is_none_or(|s| e.entry.at >= s)
            && self.before_seq.is_none_or(|b| e.seq < b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TokenId;

    fn entry(action: &str, n: i64) -> NewAuditEntry {
        NewAuditEntry {
            at: "2026-12-04T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
                + chrono::Duration::seconds(n),
            actor: Some(Actor {
                id: TokenId::new(),
                name: "alice".into(),
            }),
            action: action.into(),
            targets: vec![format!("t{n}")],
            outcome: Outcome::Ok,
            status: 201,
            request_id: format!("r{n}"),
            client: Some("127.0.0.1:5000".into()),
            detail: None,
        }
    }

    fn chain(n: usize) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let last = out.last().map(|e| (e.seq, e.hash.as_str()));
            out.push(seal(last, entry("datasets.create", i as i64)).unwrap());
        }
        out
    }

    #[test]
    fn a_sealed_chain_verifies_whole_and_page_by_page() {
        let log = chain(7);
        assert_eq!(log[0].prev_hash, GENESIS);
        assert_eq!(log[6].seq, 7);
        let mut head = ChainHead::default();
        verify(&mut head, &log).unwrap();
        assert_eq!(head.seq, 7);
        let mut paged = ChainHead::default();
        for page in log.chunks(3) {
            verify(&mut paged, page).unwrap();
        }
        assert_eq!(paged, head);
    }

    #[test]
    fn a_changed_entry_is_named_as_the_first_break() {
        let mut log = chain(5);
        log[2].entry.outcome = Outcome::Denied;
        let err = verify(&mut ChainHead::default(), &log).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.reason.contains("changed"), "{}", err.reason);
    }

    #[test]
    fn a_changed_entry_with_a_recomputed_hash_breaks_the_next_link() {
        let mut log = chain(5);
        log[1].entry.targets = vec!["other".into()];
        log[1].hash = entry_hash(2, &log[1].prev_hash, &log[1].entry).unwrap();
        let err = verify(&mut ChainHead::default(), &log).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.reason.contains("prev_hash"), "{}", err.reason);
    }

    #[test]
    fn a_removed_entry_is_a_gap() {
        let mut log = chain(5);
        log.remove(3);
        let err = verify(&mut ChainHead::default(), &log).unwrap_err();
        assert_eq!(err.seq, 5);
        assert!(err.reason.contains("missing"), "{}", err.reason);
    }

    #[test]
    fn a_removed_first_entry_is_a_gap_at_the_start() {
        let mut log = chain(3);
        log.remove(0);
        assert_eq!(verify(&mut ChainHead::default(), &log).unwrap_err().seq, 2);
    }

    #[test]
    fn an_entry_survives_a_json_round_trip_with_the_same_hash() {
        let log = chain(2);
        let json = serde_json::to_string(&log[1]).unwrap();
        let back: AuditEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back, log[1]);
        let mut head = ChainHead {
            seq: 1,
            hash: log[0].hash.clone(),
        };
        verify(&mut head, &[back]).unwrap();
    }

    #[test]
    fn outcomes_follow_the_status() {
        assert_eq!(Outcome::of_status(201), Outcome::Ok);
        assert_eq!(Outcome::of_status(401), Outcome::Denied);
        assert_eq!(Outcome::of_status(403), Outcome::Denied);
        assert_eq!(Outcome::of_status(404), Outcome::Failed);
        assert_eq!(Outcome::of_status(500), Outcome::Failed);
    }

    #[test]
    fn filters_match_actor_by_name_or_id_action_target_time_and_cursor() {
        let log = chain(4);
        let all = |f: &AuditFilter| log.iter().filter(|e| f.matches(e)).count();
        assert_eq!(all(&AuditFilter::default()), 4);
        let id = log[0].entry.actor.as_ref().unwrap().id.to_string();
        assert_eq!(
            all(&AuditFilter {
                actor: Some(id),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            all(&AuditFilter {
                actor: Some("alice".into()),
                ..Default::default()
            }),
            4
        );
        assert_eq!(
            all(&AuditFilter {
                target: Some("t2".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            all(&AuditFilter {
                action: Some("tokens.create".into()),
                ..Default::default()
            }),
            0
        );
        assert_eq!(
            all(&AuditFilter {
                since: Some(log[2].entry.at),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            all(&AuditFilter {
                before_seq: Some(3),
                ..Default::default()
            }),
            2
        );
    }
}
