//! The value set of roles as stored, and the rows of users and API tokens.

use custos_core::{Role, timefmt};
use custos_db::choice;
use custos_db::schema::{api_tokens, users};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use time::OffsetDateTime;
use uuid::Uuid;

choice! {
    /// A role as the `role` columns hold it (the API's value set of `role`).
    pub enum RoleName {
        Viewer = "viewer",
        Editor = "editor",
        Admin = "admin",
        Auditor = "auditor",
    }
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Role {
        match r {
            RoleName::Viewer => Role::Viewer,
            RoleName::Editor => Role::Editor,
            RoleName::Admin => Role::Admin,
            RoleName::Auditor => Role::Auditor,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> RoleName {
        match r {
            Role::Viewer => RoleName::Viewer,
            Role::Editor => RoleName::Editor,
            Role::Admin => RoleName::Admin,
            Role::Auditor => RoleName::Auditor,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub role: RoleName,
    pub is_active: bool,
    pub last_seen_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl UserRow {
    pub fn to_pb(&self) -> pb::User {
        pb::User {
            id: self.id.to_string(),
            email: self.email.clone(),
            display_name: self.display_name.clone(),
            role: self.role.to_string(),
            is_active: self.is_active,
            last_seen_at: self.last_seen_at.map(timefmt::timestamp),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    /// The writable fields as they stand, the base a partial update overlays.
    pub fn to_input(&self) -> pb::UserInput {
        pb::UserInput { role: self.role.to_string(), is_active: Some(self.is_active) }
    }

    /// What the audit trail records of a user: who, and what they may do (not when they were
    /// last seen, which changes on its own).
    pub fn audited(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "email": self.email,
            "role": self.role.to_string(),
            "is_active": self.is_active,
        })
    }
}

/// An API token row, never its hash.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct TokenRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub token_prefix: String,
    pub role: Option<RoleName>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
    pub last_used_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

impl TokenRow {
    /// The token as the API shows it, given its user's e-mail address and current role.
    pub fn to_pb(&self, user_email: &str, user_role: RoleName, now: OffsetDateTime) -> pb::ApiToken {
        let effective = self.role.map_or(Role::from(user_role), |r| Role::from(r).meet(user_role.into()));
        pb::ApiToken {
            id: self.id.to_string(),
            user_id: self.user_id.to_string(),
            user_email: user_email.to_owned(),
            name: self.name.clone(),
            token_prefix: self.token_prefix.clone(),
            role: self.role.map(|r| r.to_string()),
            effective_role: effective.as_str().to_owned(),
            created_at: timefmt::timestamp(self.created_at),
            expires_at: self.expires_at.map(timefmt::timestamp),
            last_used_at: self.last_used_at.map(timefmt::timestamp),
            revoked_at: self.revoked_at.map(timefmt::timestamp),
            active: self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now),
        }
    }

    /// What the audit trail records of a token: never its secret or hash; its prefix identifies it.
    pub fn audited(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "user_id": self.user_id,
            "name": self.name,
            "token_prefix": self.token_prefix,
            "role": self.role.map(|r| r.to_string()),
            "expires_at": self.expires_at.map(timefmt::timestamp),
            "revoked_at": self.revoked_at.map(timefmt::timestamp),
        })
    }
}
