//! Who is calling, on behalf of which organisation, and what they may do.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::Problem;

/// The four roles of the seed's RBAC. Checked in one place: [`RequestCtx::require`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads compliance data.
    Viewer,
    /// Reads and changes compliance data.
    Editor,
    /// Everything, including identity and vault reveal.
    Admin,
    /// Reads everything, requests and approves exports, reads audit proofs; changes nothing else.
    Auditor,
}

/// What an operation needs from the caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read compliance data (every role).
    Read,
    /// Create, change or delete compliance data (editor, admin).
    Write,
    /// Read the audit trail and its proofs (auditor, admin).
    Audit,
    /// Manage identity, tokens and secrets (admin).
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Editor, Role::Admin, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Whether this role grants nothing `other` does not (`self ≤ other`): viewer is within every
    /// role, editor and auditor each within admin, every role within itself; editor and auditor
    /// are incomparable. This is the inclusion of what [`Role::allows`].
    pub fn within(self, other: Role) -> bool {
        self == other || self == Role::Viewer || other == Role::Admin
    }

    /// The greatest role within both (their meet): what a token limited to `self` may do for a
    /// user who holds `other` (editor and auditor meet at viewer). The database's
    /// `custos_role_meet` (migration 000023) is the same.
    pub fn meet(self, other: Role) -> Role {
        if self.within(other) {
            self
        } else if other.within(self) {
            other
        } else {
            Role::Viewer
        }
    }

    pub fn allows(self, access: Access) -> bool {
        match access {
            Access::Read => true,
            Access::Write => matches!(self, Role::Editor | Role::Admin),
            Access::Audit => matches!(self, Role::Auditor | Role::Admin),
            Access::Admin => self == Role::Admin,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = Problem;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            Problem::invalid("Invalid role", format!("Role must be one of: viewer, editor, admin, auditor (got {s:?})"))
        })
    }
}

/// Who did something, as recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A user authenticated by an API token.
    User { user_id: Uuid, email: String, token_id: Uuid },
    /// A caller authenticated by a bearer JWT (e.g. from an SSO provider).
    Jwt { subject: String, email: Option<String> },
    /// An operator running the `custos` CLI on the server.
    Operator { name: String },
    /// A background job of the platform itself.
    System { job: String },
}

impl Actor {
    /// A compact, stable label: `user:<uuid>`, `jwt:<sub>`, `operator:<name>`, `system:<job>`.
    pub fn label(&self) -> String {
        match self {
            Actor::User { user_id, .. } => format!("user:{user_id}"),
            Actor::Jwt { subject, .. } => format!("jwt:{subject}"),
            Actor::Operator { name } => format!("operator:{name}"),
            Actor::System { job } => format!("system:{job}"),
        }
    }

    pub fn user_id(&self) -> Option<Uuid> {
        match self {
            Actor::User { user_id, .. } => Some(*user_id),
            _ => None,
        }
    }

    pub fn email(&self) -> Option<&str> {
        match self {
            Actor::User { email, .. } => Some(email),
            Actor::Jwt { email, .. } => email.as_deref(),
            _ => None,
        }
    }
}

/// Everything an operation knows about its caller. Built once by the gateway's auth layer (or
/// by the CLI for operators) and passed by reference into every service method.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub organization_id: Uuid,
    pub organization_slug: String,
    pub role: Role,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub client_addr: Option<IpAddr>,
}

impl RequestCtx {
    /// Refuses (403) a caller whose role does not grant `access`.
    pub fn require(&self, access: Access) -> Result<(), Problem> {
        if self.role.allows(access) {
            Ok(())
        } else {
            Err(Problem::new(
                crate::ErrorKind::PermissionDenied,
                "You do not have permission to perform this action",
                format!("The {} role cannot do this", self.role),
            ))
        }
    }

    /// A context for an operator acting through the CLI on one organisation (full rights).
    pub fn operator(organization_id: Uuid, organization_slug: impl Into<String>) -> Self {
        let name = std::env::var("USER").unwrap_or_else(|_| "cli".to_owned());
        RequestCtx {
            organization_id,
            organization_slug: organization_slug.into(),
            role: Role::Admin,
            actor: Actor::Operator { name },
            request_id: None,
            client_addr: None,
        }
    }

    /// A context for a background job of the platform acting on one organisation (full rights),
    /// recorded in the audit trail as `system:<job>`.
    pub fn system(organization_id: Uuid, job: impl Into<String>) -> Self {
        RequestCtx {
            organization_id,
            organization_slug: String::new(),
            role: Role::Admin,
            actor: Actor::System { job: job.into() },
            request_id: None,
            client_addr: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_architecture_says() {
        use Access::*;
        let table = [
            (Role::Viewer, [true, false, false, false]),
            (Role::Editor, [true, true, false, false]),
            (Role::Admin, [true, true, true, true]),
            (Role::Auditor, [true, false, true, false]),
        ];
        for (role, expect) in table {
            let got = [Read, Write, Audit, Admin].map(|a| role.allows(a));
            assert_eq!(got, expect, "{role}");
        }
    }

    #[test]
    fn the_role_order_is_the_inclusion_of_what_roles_allow() {
        use Access::*;
        for a in Role::ALL {
            for b in Role::ALL {
                let included = [Read, Write, Audit, Admin].iter().all(|&x| !a.allows(x) || b.allows(x));
                assert_eq!(a.within(b), included, "{a} within {b}");
                let meet = a.meet(b);
                assert!(meet.within(a) && meet.within(b), "{a} ∧ {b} = {meet}");
                assert!(Role::ALL.iter().all(|&c| !(c.within(a) && c.within(b)) || c.within(meet)), "{a} ∧ {b}");
                assert_eq!(meet, b.meet(a));
            }
        }
        assert_eq!(Role::Editor.meet(Role::Auditor), Role::Viewer);
        assert_eq!(Role::Admin.meet(Role::Editor), Role::Editor);
        assert!(!Role::Editor.within(Role::Auditor) && !Role::Auditor.within(Role::Editor));
    }

    #[test]
    fn role_parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("Auditor".parse::<Role>().unwrap(), Role::Auditor);
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidArgument);
    }
}
