//! Who may do what: roles and the permissions they carry, API tokens and
//! the audit log's hash chain.
//!
//! Pure, like the lifecycles: no clock reads and no I/O. The api decides a
//! request with [`Role::allows`] against its route table, the stores keep
//! [`token::TokenRecord`]s and [`audit::AuditEntry`]s, and `tracseq-ml audit
//! verify` checks a chain with [`audit::verify`]. A role is a fixed set of
//! permissions rather than a configurable list, so what a `predictor` token
//! can reach is the same in every lab and can be read off this file.

pub mod audit;
pub mod token;

use crate::ids::TokenId;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a route needs. Each route names exactly one (the api's route
/// table); each role grants a fixed set of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Metadata: data set schemas, experiments and trials, jobs, the
    /// registry, the fleet, metrics.
    Read,
    /// Contents of stored objects (data sets, models, predictions) through
    /// `/artifacts/{path}`: the lab's data itself, not only its description.
    ReadData,
    /// Create and change: upload data sets, run experiments, ask/tell, cancel.
    Write,
    /// `/predict` and `/batch_predict`.
    Predict,
    /// Approve or reject model promotions.
    Approve,
    /// Tokens and the audit log.
    Admin,
}

impl Permission {
    pub const ALL: [Permission; 6] = [
        Permission::Read,
        Permission::ReadData,
        Permission::Write,
        Permission::Predict,
        Permission::Approve,
        Permission::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::ReadData => "read_data",
            Permission::Write => "write",
            Permission::Predict => "predict",
            Permission::Approve => "approve",
            Permission::Admin => "admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role a token carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads metadata; cannot download data or change anything.
    Viewer,
    /// Works with data: uploads, experiments, ask/tell, downloads, predicts.
    Scientist,
    /// Only predicts: the token lab software is given.
    Predictor,
    /// Reads, and approves or rejects promotions requested by others.
    Approver,
    /// Everything, including tokens and the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Scientist,
        Role::Predictor,
        Role::Approver,
        Role::Admin,
    ];

    /// The permissions this role grants; the one place that says so.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Viewer => &[Read],
            Role::Scientist => &[Read, ReadData, Write, Predict],
            Role::Predictor => &[Predict],
            Role::Approver => &[Read, Approve],
            Role::Admin => &Permission::ALL,
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Scientist => "scientist",
            Role::Predictor => "predictor",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Error;
    fn from_str(s: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                Error::Invalid(format!("role must be one of {}", names.join(", ")))
            })
    }
}

/// Who did something: a token's id and name, as recorded on what it
/// created (`owner`) and in the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub id: TokenId,
    pub name: String,
}

/// The caller of one request, once its token is known and active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub actor: Actor,
    pub role: Role,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_grants_exactly_its_documented_permissions() {
        use Permission::*;
        let grants = |r: Role| -> Vec<Permission> {
            Permission::ALL
                .into_iter()
                .filter(|p| r.allows(*p))
                .collect()
        };
        assert_eq!(grants(Role::Viewer), vec![Read]);
        assert_eq!(grants(Role::Predictor), vec![Predict]);
        assert_eq!(
            grants(Role::Scientist),
            vec![Read, ReadData, Write, Predict]
        );
        assert_eq!(grants(Role::Approver), vec![Read, Approve]);
        assert_eq!(grants(Role::Admin), Permission::ALL.to_vec());
    }

    #[test]
    fn only_admins_manage_tokens_and_only_approvers_and_admins_approve() {
        for role in Role::ALL {
            assert_eq!(role.allows(Permission::Admin), role == Role::Admin);
            assert_eq!(
                role.allows(Permission::Approve),
                matches!(role, Role::Approver | Role::Admin)
            );
        }
    }

    #[test]
    fn roles_parse_from_their_names_and_unknown_names_list_the_choices() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{role}\""));
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(
            err.contains("viewer, scientist, predictor, approver, admin"),
            "{err}"
        );
    }
}
