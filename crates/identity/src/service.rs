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
    #[error(transparent)]
    Db(#[from] DbError),
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
    db: Db,
}

impl IdentityService {
    pub fn new(db: Db) -> Self {
        IdentityService { db }
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

        let secret: [u8; 32] = rand::random();
        let token = format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret));
        let token_id = new_id();
        let prefix: String = token.chars().take(TOKEN_PREFIX.len() + 6).collect();
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(token_id),
                api_tokens::organization_id.eq(org_id),
                api_tokens::user_id.eq(user_id),
                api_tokens::name.eq(token_name),
                api_tokens::token_prefix.eq(&prefix),
                api_tokens::token_hash.eq(hash_token(&token).to_vec()),
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
                after: json!({ "id": token_id, "user_id": user_id, "name": token_name, "token_prefix": prefix }),
            },
        )
        .await?;
        tx.commit().await?;
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
