//! Organisation, user and token operations.

use base64::Engine;
use custos_audit_chain::{Change, record};
use custos_core::{ErrorKind, Problem, RequestCtx, Role, new_id, timefmt};
use custos_db::schema::{api_tokens, organizations, users};
use custos_db::{Db, DbError, Tx};
use custos_proto::v1 as pb;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::CredentialChanges;

/// The prefix every Custos API token starts with, so secret scanners can recognise one.
pub const TOKEN_PREFIX: &str = "cst_";

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("organisation {0:?} not found")]
    UnknownOrganization(String),
    #[error("organisation {0:?} already exists")]
    OrganizationExists(String),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No such user in the caller's organisation (or a malformed id).
    #[error("user {0} not found")]
    UserNotFound(String),
    /// No such API token the caller may see in their organisation (or a malformed id).
    #[error("API token {0} not found")]
    TokenNotFound(String),
    /// The change would leave the organisation without an active admin.
    #[error("user {0} is the organisation's last active admin")]
    LastAdmin(Uuid),
    /// A token asked for with more rights than the caller holds.
    #[error("a {asked} token was asked for by a caller acting as {held}")]
    RoleAboveOwn { asked: Role, held: Role },
    /// A caller authenticated by a bearer JWT has no user row to own a token.
    #[error("a bearer-token caller has no user to own a token")]
    NoUserToOwn,
    /// Tokens are not issued to a deactivated user.
    #[error("user {0} is deactivated")]
    UserInactive(Uuid),
    /// The caller's role may see this but not do it.
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    #[error(transparent)]
    Rejected(#[from] Problem),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for IdentityError {
    fn from(e: diesel::result::Error) -> Self {
        IdentityError::Db(e.into())
    }
}

impl From<IdentityError> for Problem {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::UnknownOrganization(slug) => Problem::new(
                ErrorKind::NotFound,
                "Organisation not found",
                format!("No organisation with slug {slug:?}"),
            ),
            IdentityError::OrganizationExists(slug) => {
                Problem::conflict("Organisation already exists", format!("The slug {slug:?} is taken"))
            }
            IdentityError::Invalid { field, reason } => Problem::invalid_field(field, reason),
            IdentityError::UserNotFound(id) => Problem::not_found("User", id),
            IdentityError::TokenNotFound(id) => Problem::not_found("API token", id),
            IdentityError::LastAdmin(id) => Problem::state_conflict(
                "Last active admin",
                format!(
                    "User {id} is the organisation's last active admin and can be neither demoted nor deactivated; \
                     make another user admin first"
                ),
            ),
            IdentityError::RoleAboveOwn { asked, held } => Problem::new(
                ErrorKind::PermissionDenied,
                "You do not have permission to perform this action",
                format!(
                    "A token cannot have more rights than its creator: you act as {held}, which does not include {asked}"
                ),
            ),
            IdentityError::NoUserToOwn => Problem::invalid_field(
                "user_id",
                "You are authenticated by a bearer token, which has no Custos user to own an API token; \
                 an admin may name the owner with user_id",
            ),
            IdentityError::UserInactive(id) => Problem::state_conflict(
                "User is deactivated",
                format!("User {id} is deactivated; reactivate them first"),
            ),
            IdentityError::NotAllowed(why) => {
                Problem::new(ErrorKind::PermissionDenied, "You do not have permission to perform this action", why)
            }
            IdentityError::Rejected(p) => p,
            IdentityError::Db(e) => e.into(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A freshly issued API token: the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub organization_id: Uuid,
    pub role: Role,
    pub user_created: bool,
}

#[derive(Clone)]
pub struct IdentityService {
    pub(crate) db: Db,
    pub(crate) changes: CredentialChanges,
}

impl IdentityService {
    pub fn new(db: Db) -> Self {
        IdentityService { db, changes: CredentialChanges::default() }
    }

    /// What this service tells authenticators when a user or token changes: hand it to the
    /// process's [`crate::Authenticator`] so that the change holds at once
    /// ([`crate::Authenticator::with_credential_changes`]).
    pub fn credential_changes(&self) -> CredentialChanges {
        self.changes.clone()
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates an organisation (operator command). The new tenant's first audit entry records it.
    pub async fn create_organization(&self, slug: &str, name: &str) -> Result<Organization, IdentityError> {
        let slug = slug.trim().to_ascii_lowercase();
        let valid_slug = !slug.is_empty()
            && slug.len() <= 63
            && slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !slug.starts_with('-');
        if !valid_slug {
            return Err(IdentityError::Invalid {
                field: "slug",
                reason: "use 1–63 lowercase letters, digits and dashes, not starting with a dash".into(),
            });
        }
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(IdentityError::Invalid { field: "name", reason: "1–200 characters".into() });
        }
        if self.db.organization_by_slug(&slug).await?.is_some() {
            return Err(IdentityError::OrganizationExists(slug));
        }
        let id = new_id();
        let ctx = RequestCtx::operator(id, slug.clone());
        let mut tx = self.db.begin(id).await?;
        let org: Organization = diesel::insert_into(organizations::table)
            .values((organizations::id.eq(id), organizations::slug.eq(&slug), organizations::name.eq(name)))
            .returning(Organization::as_returning())
            .get_result(tx.conn())
            .await
            .map_err(|e| {
                let e = DbError::from(e);
                if e.is_unique_violation() { IdentityError::OrganizationExists(slug.clone()) } else { e.into() }
            })?;
        record(
            &mut tx,
            &ctx,
            Change {
                action: "create",
                resource_type: "organization",
                resource_id: org.id.to_string(),
                before: serde_json::Value::Null,
                after: json!({ "id": org.id, "slug": org.slug, "name": org.name }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    pub async fn organization(&self, slug: &str) -> Result<(Uuid, String), IdentityError> {
        self.db
            .organization_by_slug(slug)
            .await?
            .map(|(id, _)| (id, slug.to_owned()))
            .ok_or_else(|| IdentityError::UnknownOrganization(slug.to_owned()))
    }

    /// Every organisation's id and slug (operator commands). The restricted role sees none, so
    /// this reads as the connecting user; with a restricted `DATABASE_URL` it returns nothing.
    pub async fn all_organizations(&self) -> Result<Vec<(Uuid, String)>, IdentityError> {
        let mut conn = self.db.conn().await?;
        let rows = organizations::table
            .order(organizations::slug.asc())
            .select((organizations::id, organizations::slug))
            .load(&mut conn)
            .await
            .map_err(DbError::from)?;
        Ok(rows)
    }

    /// Issues a new API token for `email` in the organisation, creating the user if missing and
    /// setting their role (a change of role is audited as such).
    pub async fn issue_token(
        &self,
        org_slug: &str,
        email: &str,
        role: Role,
        token_name: &str,
    ) -> Result<IssuedToken, IdentityError> {
        self.issue_token_expiring(org_slug, email, role, token_name, None).await
    }

    /// [`IdentityService::issue_token`], the token expiring at `expires_at` (in the future) if given.
    pub async fn issue_token_expiring(
        &self,
        org_slug: &str,
        email: &str,
        role: Role,
        token_name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<IssuedToken, IdentityError> {
        if expires_at.is_some_and(|e| e <= timefmt::now()) {
            return Err(IdentityError::Invalid { field: "expires_at", reason: "must be in the future".into() });
        }
        let email = email.trim();
        if !email.contains('@') || email.starts_with('@') || email.len() > 254 {
            return Err(IdentityError::Invalid {
                field: "email",
                reason: format!("{email:?} is not an e-mail address"),
            });
        }
        let (org_id, slug) = self.organization(org_slug).await?;
        let ctx = RequestCtx::operator(org_id, slug);
        let mut tx = self.db.begin(org_id).await?;
        let (user_id, user_created) = upsert_user(&mut tx, &ctx, email, role).await?;

        let NewSecret { token, prefix, hash } = NewSecret::generate();
        let token_id = new_id();
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(token_id),
                api_tokens::organization_id.eq(org_id),
                api_tokens::user_id.eq(user_id),
                api_tokens::name.eq(token_name),
                api_tokens::token_prefix.eq(&prefix),
                api_tokens::token_hash.eq(hash.to_vec()),
                api_tokens::expires_at.eq(expires_at),
            ))
            .execute(tx.conn())
            .await
            .map_err(DbError::from)?;
        record(
            &mut tx,
            &ctx,
            Change {
                action: "create",
                resource_type: "api_token",
                resource_id: token_id.to_string(),
                before: serde_json::Value::Null,
                // The secret never enters the audit trail; its prefix identifies it.
                after: json!({
                    "id": token_id,
                    "user_id": user_id,
                    "name": token_name,
                    "token_prefix": prefix,
                    "expires_at": expires_at.map(timefmt::timestamp),
                }),
            },
        )
        .await?;
        tx.commit().await?;
        // The user's role may have changed.
        self.changes.changed();
        Ok(IssuedToken { token, token_id, user_id, organization_id: org_id, role, user_created })
    }

    /// Who the caller is (any role).
    pub async fn who_am_i(
        &self,
        ctx: &RequestCtx,
        _req: pb::WhoAmIRequest,
    ) -> Result<pb::WhoAmIResponse, IdentityError> {
        Ok(pb::WhoAmIResponse {
            organization_id: ctx.organization_id.to_string(),
            organization_slug: ctx.organization_slug.clone(),
            role: ctx.role.as_str().to_owned(),
            actor: ctx.actor.label(),
            user_id: ctx.actor.user_id().map(|u| u.to_string()),
            email: ctx.actor.email().map(str::to_owned),
        })
    }
}

/// A new token's secret, the prefix listings show and the hash that is stored.
pub(crate) struct NewSecret {
    pub token: String,
    pub prefix: String,
    pub hash: [u8; 32],
}

impl NewSecret {
    pub fn generate() -> Self {
        let secret: [u8; 32] = rand::random();
        let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        let hash = hash_token(&token);
        NewSecret { token, prefix, hash }
    }
}

/// BLAKE3 of a token: tokens are 256-bit random, so a fast hash is as safe as a slow one.
pub fn hash_token(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

async fn upsert_user(tx: &mut Tx, ctx: &RequestCtx, email: &str, role: Role) -> Result<(Uuid, bool), IdentityError> {
    let existing: Option<(Uuid, String)> = users::table
        .filter(users::organization_id.eq(ctx.organization_id))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email)
                .sql(")"),
        )
        .select((users::id, users::role))
        .first(tx.conn())
        .await
        .optional()
        .map_err(DbError::from)?;
    match existing {
        Some((id, old_role)) if old_role == role.as_str() => Ok((id, false)),
        Some((id, old_role)) => {
            diesel::update(
                users::table.filter(users::id.eq(id)).filter(users::organization_id.eq(ctx.organization_id)),
            )
            .set((users::role.eq(role.as_str()), users::updated_at.eq(timefmt::now())))
            .execute(tx.conn())
            .await
            .map_err(DbError::from)?;
            record(
                tx,
                ctx,
                Change {
                    action: "role_change",
                    resource_type: "user",
                    resource_id: id.to_string(),
                    before: json!({ "id": id, "email": email, "role": old_role }),
                    after: json!({ "id": id, "email": email, "role": role.as_str() }),
                },
            )
            .await?;
            Ok((id, false))
        }
        None => {
            let id = new_id();
            diesel::insert_into(users::table)
                .values((
                    users::id.eq(id),
                    users::organization_id.eq(ctx.organization_id),
                    users::email.eq(email),
                    users::role.eq(role.as_str()),
                ))
                .execute(tx.conn())
                .await
                .map_err(DbError::from)?;
            record(
                tx,
                ctx,
                Change {
                    action: "create",
                    resource_type: "user",
                    resource_id: id.to_string(),
                    before: serde_json::Value::Null,
                    after: json!({ "id": id, "email": email, "role": role.as_str(), "is_active": true }),
                },
            )
            .await?;
            Ok((id, true))
        }
    }
}
