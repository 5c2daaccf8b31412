//! API tokens: a random secret shown once, stored only as its SHA-256.
//!
//! The secret is 256 random bits from the operating system, so a plain
//! SHA-256 (not a slow password hash) is enough to make the stored value
//! useless to someone who reads the table: there is nothing to guess. It
//! also keeps the check on every request to one hash and one lookup.

use super::{Actor, Role};
use crate::ids::TokenId;
use crate::{Error, Result};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Every secret starts with this, so a leaked token is recognisable by
/// secret scanners and in logs.
pub const PREFIX: &str = "tsq_";
/// Random bytes in a secret.
const SECRET_BYTES: usize = 32;

/// A token as stored: never the secret, only its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    /// Lower-case hex SHA-256 of the secret.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who created it: a token's name, or `cli` for the command line.
    pub created_by: String,
}

/// Why a known token is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inactive {
    Revoked,
    Expired,
}

impl TokenRecord {
    /// Whether the token may be used at `now`.
    pub fn check_active(&self, now: DateTime<Utc>) -> std::result::Result<(), Inactive> {
        if self.revoked_at.is_some() {
            Err(Inactive::Revoked)
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Err(Inactive::Expired)
        } else {
            Ok(())
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            id: self.id,
            name: self.name.clone(),
        }
    }

    /// The record as listed: everything but the hash.
    pub fn public_view(&self, now: DateTime<Utc>) -> serde_json::Value {
        let state = match self.check_active(now) {
            Ok(()) => "active",
            Err(Inactive::Revoked) => "revoked",
            Err(Inactive::Expired) => "expired",
        };
        serde_json::json!({
            "id": self.id, "name": self.name, "role": self.role,
            "created_at": self.created_at, "expires_at": self.expires_at,
            "revoked_at": self.revoked_at, "created_by": self.created_by, "state": state,
        })
    }
}

/// A secret token. Its `Debug` is redacted so it cannot reach a log by
/// accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A newly created token: the record to store and the secret to show once.
#[derive(Debug)]
pub struct Issued {
    pub record: TokenRecord,
    pub secret: Secret,
}

/// What a caller asks for when creating a token.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    pub expires_in: Option<Duration>,
    pub created_by: String,
}

/// Creates a token with a fresh secret from the operating system's RNG.
pub fn issue(req: TokenRequest, now: DateTime<Utc>) -> Result<Issued> {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    issue_with_secret(req, now, &bytes)
}

fn issue_with_secret(req: TokenRequest, now: DateTime<Utc>, random: &[u8]) -> Result<Issued> {
    crate::types::validate_name("token name", &req.name)?;
    if let Some(d) = req.expires_in {
        if d <= Duration::zero() {
            return Err(Error::Invalid("expires must be a positive duration".into()));
        }
    }
    let secret = Secret(format!("{PREFIX}{}", hex::encode(random)));
    let record = TokenRecord {
        id: TokenId::new(),
        name: req.name,
        role: req.role,
        hash: hash_secret(secret.expose()),
        created_at: now,
        expires_at: req.expires_in.map(|d| now + d),
        revoked_at: None,
        created_by: req.created_by,
    };
    Ok(Issued { record, secret })
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    crate::digest::sha256_hex(secret.as_bytes())
}

/// Whether `s` has the shape of a secret this platform issues (checked
/// before any lookup, so garbage never reaches the store).
pub fn looks_like_secret(s: &str) -> bool {
    s.strip_prefix(PREFIX).is_some_and(|hex| {
        hex.len() == 2 * SECRET_BYTES && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// A lifetime such as `30d`, `12h`, `45m` or `3600s`, as `--expires` and
/// `expires_in` take it; at most ten years.
/// What [`parse_lifetime`] accepts, as a regular expression (for the
/// OpenAPI document): 1 to 3650 days in s, m, h or d, no leading zeros.
pub const LIFETIME_PATTERN: &str = concat!(
    "^(([1-9][0-9]{0,7}|[12][0-9]{8}|30[0-9]{7}|31[0-4][0-9]{6}|315[0-2][0-9]{5}|3153[0-5][0-9]{4}|315360000)s",
    "|([1-9][0-9]{0,5}|[1-4][0-9]{6}|5[01][0-9]{5}|52[0-4][0-9]{4}|525[0-5][0-9]{3}|5256000)m",
    "|([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-6][0-9]{3}|87[0-5][0-9]{2}|87600)h",
    "|([1-9][0-9]{0,2}|[12][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650)d)$"
);

pub fn parse_lifetime(s: &str) -> Result<Duration> {
    let bad = || {
        Error::Invalid(
            "expires must be a positive whole number followed by s, m, h or d (e.g. 30d), at most 3650d"
                .into(),
        )
    };
    if s.len() > 10 || s.len() < 2 || !s.is_ascii() {
        return Err(bad());
    }
    let (n, unit) = s.split_at(s.len() - 1);
    // Plain digits without a leading zero, as LIFETIME_PATTERN says.
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: i64 = n.parse().map_err(|_| bad())?;
    let d = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    if n <= 0 || d > Duration::days(3650) {
        return Err(bad());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lifetime_pattern_accepts_exactly_what_the_parser_accepts() {
        let re = regex::Regex::new(LIFETIME_PATTERN).unwrap();
        let mut cases: Vec<String> = [
            "", "d", "0d", "01d", "+5d", "-1d", "5x", "5 d", "1.5h", "\u{80}", "5\u{e9}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (unit, max) in [
            ("s", 315_360_000u64),
            ("m", 5_256_000),
            ("h", 87_600),
            ("d", 3_650),
        ] {
            for n in [
                1,
                9,
                10,
                99,
                100,
                max / 7,
                max / 2,
                max - 1,
                max,
                max + 1,
                max * 10,
            ] {
                cases.push(format!("{n}{unit}"));
            }
            for digits in 1..=10 {
                cases.push(format!("{}{unit}", "9".repeat(digits)));
                cases.push(format!("1{}{unit}", "0".repeat(digits)));
            }
        }
        for case in cases {
            assert_eq!(
                re.is_match(&case),
                parse_lifetime(&case).is_ok(),
                "'{case}': the pattern and the parser disagree"
            );
        }
    }

    fn t0() -> DateTime<Utc> {
        "2026-12-04T00:00:00Z".parse().unwrap()
    }

    fn request(expires_in: Option<Duration>) -> TokenRequest {
        TokenRequest {
            name: "lims".into(),
            role: Role::Predictor,
            expires_in,
            created_by: "cli".into(),
        }
    }

    #[test]
    fn an_issued_secret_is_stored_only_as_its_hash() {
        let issued = issue(request(None), t0()).unwrap();
        let secret = issued.secret.expose();
        assert!(looks_like_secret(secret), "{secret}");
        assert_eq!(issued.record.hash, hash_secret(secret));
        let stored = serde_json::to_string(&issued.record).unwrap();
        assert!(!stored.contains(&secret[PREFIX.len()..]), "{stored}");
        assert!(!format!("{issued:?}").contains(&secret[PREFIX.len()..]));
        assert!(!issued
            .record
            .public_view(t0())
            .to_string()
            .contains(&issued.record.hash));
    }

    #[test]
    fn two_secrets_are_never_the_same() {
        let a = issue(request(None), t0()).unwrap();
        let b = issue(request(None), t0()).unwrap();
        assert_ne!(a.secret, b.secret);
        assert_ne!(a.record.id, b.record.id);
    }

    #[test]
    fn a_token_is_active_until_it_expires_or_is_revoked() {
        let mut t = issue(request(Some(Duration::hours(1))), t0())
            .unwrap()
            .record;
        assert_eq!(t.check_active(t0()), Ok(()));
        assert_eq!(t.check_active(t0() + Duration::minutes(59)), Ok(()));
        assert_eq!(
            t.check_active(t0() + Duration::hours(1)),
            Err(Inactive::Expired)
        );
        t.revoked_at = Some(t0());
        assert_eq!(t.check_active(t0()), Err(Inactive::Revoked));
        assert_eq!(t.public_view(t0())["state"], "revoked");
    }

    #[test]
    fn bad_names_and_lifetimes_are_refused() {
        let mut r = request(None);
        r.name = "has space".into();
        assert!(matches!(issue(r, t0()), Err(Error::Invalid(_))));
        assert!(matches!(
            issue(request(Some(Duration::zero())), t0()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn lifetimes_read_seconds_minutes_hours_and_days() {
        assert_eq!(parse_lifetime("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_lifetime("12h").unwrap(), Duration::hours(12));
        assert_eq!(parse_lifetime("45m").unwrap(), Duration::minutes(45));
        assert_eq!(parse_lifetime("3600s").unwrap(), Duration::hours(1));
        for bad in ["", "d", "0d", "-1d", "1w", "1.5h", "3651d", "99999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn only_well_formed_secrets_look_like_secrets() {
        assert!(!looks_like_secret("tsq_abc"));
        assert!(!looks_like_secret(&format!("xyz_{}", "a".repeat(64))));
        assert!(!looks_like_secret(&format!("tsq_{}", "g".repeat(64))));
        assert!(looks_like_secret(&format!("tsq_{}", "a".repeat(64))));
    }
}
