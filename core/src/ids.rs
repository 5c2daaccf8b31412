//! Newtype identifiers so a job id can never be passed where a trial id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Identifier of a ", $what, " (UUIDv7: sortable by creation time).")]
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> crate::Result<Self> {
                Uuid::parse_str(s).map(Self).map_err(|_| {
                    crate::Error::Invalid(format!(concat!("'{}' is not a valid ", $what, " id"), s))
                })
            }
        }
    };
}

uuid_id!(JobId, "job");
uuid_id!(ExperimentId, "experiment");
uuid_id!(TrialId, "trial");
uuid_id!(DatasetId, "dataset");
uuid_id!(TokenId, "token");
uuid_id!(PromotionId, "promotion request");
uuid_id!(DeploymentId, "deployment");
uuid_id!(RequestId, "prediction request");
uuid_id!(AlertId, "alert");

/// A worker's name: chosen by the operator or generated, unique in a fleet.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkerId(pub String);

impl WorkerId {
    pub fn generate(prefix: &str) -> Self {
        let id = Uuid::new_v4().simple().to_string();
        WorkerId(format!("{prefix}-{}", &id[..8]))
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl WorkerId {
    /// What parsing accepts, as a regular expression (for the OpenAPI document).
    pub const PATTERN: &'static str = "^[A-Za-z0-9_.:-]{1,128}$";
}

impl FromStr for WorkerId {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if ok {
            Ok(WorkerId(s.to_string()))
        } else {
            Err(crate::Error::Invalid(format!(
                "worker id '{}' must be 1-128 characters of [A-Za-z0-9-_.:]",
                crate::error::excerpt(s, 100)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = JobId::new();
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
        assert!(matches!(
            "nope".parse::<JobId>(),
            Err(crate::Error::Invalid(_))
        ));
        assert!("w-1".parse::<WorkerId>().is_ok());
        assert!("bad id".parse::<WorkerId>().is_err());
        assert!("".parse::<WorkerId>().is_err());
    }

    #[test]
    fn v7_ids_sort_by_creation() {
        let a = ExperimentId::new();
        let b = ExperimentId::new();
        assert!(a < b);
    }
}
