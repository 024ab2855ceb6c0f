//! Identity administration: the organisation's users (admins and auditors read them, admins
//! change their role and whether they are active) and API tokens (everyone lists, creates and
//! revokes their own; admins everyone's; auditors read them all).
//!
//! Every change is recorded in the audit trail in its own transaction, never with a token's
//! secret or hash (its prefix identifies it), and the process's authenticators are told to
//! forget what they remember ([`crate::auth::CredentialChanges`]), so a demotion, deactivation or
//! revocation holds at once here and within `CUSTOS_AUTH_CACHE_SECONDS` on other replicas.

use std::collections::HashMap;

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{choice, opt_choice, opt_uuid, parse_opt_timestamp, required_text, search_pattern};
use custos_core::page::cursor;
use custos_core::{ListRequest, RequestCtx, Role, new_id, timefmt, update};
use custos_db::schema::{api_tokens, users};
use custos_db::{Tx, list, refs};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{RoleName, TokenRow, UserRow};
use crate::service::{IdentityError, IdentityService, NewSecret};

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// The lists' cursor kinds.
const USERS: &str = "users";
const TOKENS: &str = "api_tokens";

const TOKEN_NAME_MAX: usize = 200;

custos_core::page_responses! {
    pb::ListUsersResponse { pb::User } + next_cursor;
    pb::ListApiTokensResponse { pb::ApiToken } + next_cursor;
}

impl IdentityService {
    // ---- users ------------------------------------------------------------------------------

    /// The organisation's users (admins and auditors: auditors review who has access).
    pub async fn list_users(&self, ctx: &RequestCtx, req: pb::ListUsersRequest) -> Result<pb::ListUsersResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = UserFilters::parse(&req)?;
        let after = list.after::<(String, Uuid)>(USERS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let mut q = filters
            .apply(org)
            .order((users::email.asc(), users::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(UserRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((users::email, users::id), key));
        }
        let rows: Vec<UserRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(USERS, &(r.email.clone(), r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::ListUsersResponse::from_page(page.map(|r| r.to_pb())))
    }

    pub async fn get_user(&self, ctx: &RequestCtx, req: pb::GetUserRequest) -> Result<pb::User> {
        let id = parse_user_id(&req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Audit).await?;
        let user = find_user(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(user.to_pb())
    }

    /// Changes a user's role or whether they are active (admins only). The organisation's last
    /// active admin can be neither demoted nor deactivated.
    pub async fn update_user(&self, ctx: &RequestCtx, req: pb::UpdateUserRequest) -> Result<pb::User> {
        let id = parse_user_id(&req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        lock_users(&mut tx, ctx).await?;
        let current = find_user(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) = update::apply::<_, pb::User>(current.to_input(), req.user.unwrap_or_default(), mask)? else {
            // Nothing to change (a PATCH of {}): the user as they stand, nothing recorded.
            tx.commit().await?;
            return Ok(current.to_pb());
        };
        let role: RoleName = choice("role", &input.role)?;
        // As every replacement of an optional flag: absent is the default, active.
        let is_active = input.is_active.unwrap_or(true);
        if role == current.role && is_active == current.is_active {
            // The values it has already: nothing changes, nothing is recorded.
            tx.commit().await?;
            return Ok(current.to_pb());
        }
        let after = set_user_access(&mut tx, ctx, &current, role, is_active).await?;
        tx.commit().await?;
        // The user's tokens act with the new role, or not at all, from the next request on.
        self.changes.changed();
        Ok(after.to_pb())
    }

    // ---- API tokens -------------------------------------------------------------------------

    /// API tokens: admins and auditors see every token of the organisation, anyone else only
    /// their own (a caller authenticated by a bearer JWT, who owns none, sees none).
    pub async fn list_api_tokens(
        &self,
        ctx: &RequestCtx,
        req: pb::ListApiTokensRequest,
    ) -> Result<pb::ListApiTokensResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = TokenFilters::parse(ctx, &req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(TOKENS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((api_tokens::created_at.asc(), api_tokens::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(TokenRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((api_tokens::created_at, api_tokens::id), key));
        }
        let rows: Vec<TokenRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(TOKENS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let owners = owners(&mut tx, ctx, page.results.iter().map(|t| t.user_id).collect()).await?;
        tx.commit().await?;
        let mut results = Vec::with_capacity(page.results.len());
        for row in &page.results {
            // The composite foreign key ties every token to a user of its organisation.
            let (email, role) = owners.get(&row.user_id).ok_or_else(|| {
                IdentityError::Rejected(custos_core::Problem::internal("a listed token's user was not found"))
            })?;
            results.push(row.to_pb(email, *role, filters.now));
        }
        Ok(pb::ListApiTokensResponse::from_page(page.with_results(results)))
    }

    /// Creates an API token and answers its secret, this once. Any user authenticated by an API
    /// token may create tokens for themselves; admins also for another user (`user_id`).
    pub async fn create_api_token(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateApiTokenRequest,
    ) -> Result<pb::CreateApiTokenResponse> {
        ctx.require(Access::Read)?;
        let name = required_text("name", &req.name, TOKEN_NAME_MAX)?;
        let asked: Option<Role> = opt_choice::<RoleName>("role", req.role.as_deref())?.map(Role::from);
        let now = timefmt::now();
        let expires_at = parse_opt_timestamp("expires_at", req.expires_at.as_deref())?;
        if expires_at.is_some_and(|e| e <= now) {
            return Err(IdentityError::Invalid { field: "expires_at", reason: "must be in the future".into() });
        }
        let own = ctx.actor.user_id();
        let mut tx = self.db.begin(ctx.organization_id).await?;
        let owner_id = match opt_uuid("user_id", req.user_id.as_deref())? {
            Some(given) if Some(given) == own => given,
            Some(given) => {
                if !ctx.role.allows(Access::Admin) {
                    return Err(IdentityError::NotAllowed("Only admins create tokens for other users"));
                }
                // A 400 naming user_id for an id of no user of this organisation.
                refs::user(&mut tx, ctx, "user_id", Some(&given.to_string())).await?;
                given
            }
            None => own.ok_or(IdentityError::NoUserToOwn)?,
        };
        let owner = find_user(&mut tx, ctx, owner_id, false).await?;
        if !owner.is_active {
            return Err(IdentityError::UserInactive(owner.id));
        }
        let owner_role = Role::from(owner.role);
        let role = match asked {
            // Asking for more than one holds is a matter of permission (403), as any action
            // beyond one's role is; asking for more than the owner holds is a bad value (400):
            // the caller may have that right, the token could never use it.
            Some(r) if !r.within(ctx.role) => return Err(IdentityError::RoleAboveOwn { asked: r, held: ctx.role }),
            Some(r) if !r.within(owner_role) => {
                return Err(IdentityError::Invalid {
                    field: "role",
                    reason: format!("{r} is beyond the role of the token's user, {owner_role}"),
                });
            }
            Some(r) => r,
            // The caller's own rights, as far as the owner holds them: a token never grants its
            // creator more than they act with (a viewer-limited token cannot mint an admin one).
            None => ctx.role.meet(owner_role),
        };
        let NewSecret { token, prefix, hash } = NewSecret::generate();
        let row: TokenRow = diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(new_id()),
                api_tokens::organization_id.eq(ctx.organization_id),
                api_tokens::user_id.eq(owner.id),
                api_tokens::name.eq(&name),
                api_tokens::token_prefix.eq(&prefix),
                api_tokens::token_hash.eq(hash.to_vec()),
                api_tokens::role.eq(Some(RoleName::from(role))),
                api_tokens::expires_at.eq(expires_at),
            ))
            .returning(TokenRow::as_returning())
            .get_result(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "create", "api_token", row.id, Value::Null, row.audited()).await?;
        tx.commit().await?;
        Ok(pb::CreateApiTokenResponse { token, api_token: Some(row.to_pb(&owner.email, owner.role, now)) })
    }

    /// Revokes a token at once: its owner may, and an admin may revoke any. Revoking a revoked
    /// token changes and records nothing.
    pub async fn revoke_api_token(&self, ctx: &RequestCtx, req: pb::RevokeApiTokenRequest) -> Result<pb::ApiToken> {
        let id = path_id(&req.id).ok_or_else(|| IdentityError::TokenNotFound(req.id.clone()))?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let current: TokenRow = api_tokens::table
            .filter(api_tokens::organization_id.eq(ctx.organization_id))
            .filter(api_tokens::id.eq(id))
            .select(TokenRow::as_select())
            .for_update()
            .first(tx.conn())
            .await
            .optional()?
            .ok_or_else(|| IdentityError::TokenNotFound(id.to_string()))?;
        if Some(current.user_id) != ctx.actor.user_id() && !ctx.role.allows(Access::Admin) {
            // Auditors see every token and are told they may not; anyone else cannot see
            // another's token at all, so for them there is none.
            return Err(if ctx.role.allows(Access::Audit) {
                IdentityError::NotAllowed("Only a token's owner or an admin may revoke it")
            } else {
                IdentityError::TokenNotFound(id.to_string())
            });
        }
        let owner = find_user(&mut tx, ctx, current.user_id, false).await?;
        let now = timefmt::now();
        if current.revoked_at.is_some() {
            tx.commit().await?;
            return Ok(current.to_pb(&owner.email, owner.role, now));
        }
        let after = revoke_token(&mut tx, ctx, &current, now).await?;
        tx.commit().await?;
        self.changes.changed();
        Ok(after.to_pb(&owner.email, owner.role, now))
    }
}

/// Serialises changes of an organisation's users (two admins demoting each other at once would
/// otherwise each see the other still admin, and leave none) and, under that lock, refuses a
/// caller who was an admin when their request was authenticated but has been demoted or
/// deactivated meanwhile by a change that committed first.
pub(crate) async fn lock_users(tx: &mut Tx, ctx: &RequestCtx) -> Result<()> {
    tx.lock_named(&format!("custos users {}", ctx.organization_id)).await?;
    if let Some(me) = ctx.actor.user_id() {
        let caller = find_user(tx, ctx, me, false).await?;
        if !(caller.is_active && caller.role == RoleName::Admin) {
            return Err(IdentityError::NotAllowed("You are no longer an active admin"));
        }
    }
    Ok(())
}

/// Gives `current` (locked, under [`lock_users`]) this role and activity, keeping an active admin
/// in the organisation, and records the change. The caller commits and then tells the
/// authenticators (`CredentialChanges::changed`), so the user's tokens act with the new role, or
/// not at all, from the next request on.
pub(crate) async fn set_user_access(
    tx: &mut Tx,
    ctx: &RequestCtx,
    current: &UserRow,
    role: RoleName,
    is_active: bool,
) -> Result<UserRow> {
    let id = current.id;
    let stays_admin = role == RoleName::Admin && is_active;
    if current.role == RoleName::Admin && current.is_active && !stays_admin {
        let other_admins: i64 = users::table
            .filter(users::organization_id.eq(ctx.organization_id))
            .filter(users::role.eq(RoleName::Admin))
            .filter(users::is_active.eq(true))
            .filter(users::id.ne(id))
            .count()
            .get_result(tx.conn())
            .await?;
        if other_admins == 0 {
            return Err(IdentityError::LastAdmin(id));
        }
    }
    let after: UserRow =
        diesel::update(users::table.filter(users::organization_id.eq(ctx.organization_id)).filter(users::id.eq(id)))
            .set((users::role.eq(role), users::is_active.eq(is_active), users::updated_at.eq(timefmt::now())))
            .returning(UserRow::as_returning())
            .get_result(tx.conn())
            .await?;
    record_change(tx, ctx, "update", "user", id, current.audited(), after.audited()).await?;
    Ok(after)
}

/// Revokes `current` (a token row locked by the caller, not yet revoked) as of `now` and records
/// it. The caller commits and then tells the authenticators.
pub(crate) async fn revoke_token(
    tx: &mut Tx,
    ctx: &RequestCtx,
    current: &TokenRow,
    now: OffsetDateTime,
) -> Result<TokenRow> {
    let after: TokenRow = diesel::update(
        api_tokens::table
            .filter(api_tokens::organization_id.eq(ctx.organization_id))
            .filter(api_tokens::id.eq(current.id)),
    )
    .set(api_tokens::revoked_at.eq(now))
    .returning(TokenRow::as_returning())
    .get_result(tx.conn())
    .await?;
    record_change(tx, ctx, "revoke", "api_token", current.id, current.audited(), after.audited()).await?;
    Ok(after)
}

/// A user id from a path: a malformed one names no one (404).
fn parse_user_id(raw: &str) -> Result<Uuid> {
    path_id(raw).ok_or_else(|| IdentityError::UserNotFound(raw.to_owned()))
}

fn path_id(raw: &str) -> Option<Uuid> {
    Uuid::parse_str(raw.trim()).ok()
}

/// A user of the caller's organisation, locked against concurrent change if `lock`.
pub(crate) async fn find_user(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<UserRow> {
    let q = users::table
        .filter(users::organization_id.eq(ctx.organization_id))
        .filter(users::id.eq(id))
        .select(UserRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| IdentityError::UserNotFound(id.to_string()))
}

/// The e-mail address and current role of each of these users.
async fn owners(tx: &mut Tx, ctx: &RequestCtx, mut ids: Vec<Uuid>) -> Result<HashMap<Uuid, (String, RoleName)>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, (String, RoleName))> = users::table
        .filter(users::organization_id.eq(ctx.organization_id))
        .filter(users::id.eq_any(ids))
        .select((users::id, (users::email, users::role)))
        .load(tx.conn())
        .await?;
    Ok(rows.into_iter().collect())
}

/// Parsed list filters of users.
struct UserFilters {
    role: Option<RoleName>,
    is_active: Option<bool>,
    search: Option<String>,
}

impl UserFilters {
    fn parse(req: &pb::ListUsersRequest) -> Result<Self> {
        Ok(UserFilters {
            role: opt_choice("role", req.role.as_deref())?,
            is_active: req.is_active,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid) -> users::BoxedQuery<'static, Pg> {
        let mut q = users::table.filter(users::organization_id.eq(org)).into_boxed();
        if let Some(role) = self.role {
            q = q.filter(users::role.eq(role));
        }
        if let Some(active) = self.is_active {
            q = q.filter(users::is_active.eq(active));
        }
        if let Some(pattern) = &self.search {
            // An organisation has few users: the ILIKE runs on its rows only, found by index.
            q = q.filter(users::email.ilike(pattern.clone()).or(users::display_name.ilike(pattern.clone())));
        }
        q
    }
}

/// Parsed list filters of API tokens, with whose tokens the caller may see.
struct TokenFilters {
    /// `None`: every user's (admins, auditors); else only this user's.
    visible_to: Option<Uuid>,
    user: Option<Uuid>,
    active: Option<bool>,
    search: Option<String>,
    /// What "expired" is measured against, once for the whole list.
    now: OffsetDateTime,
}

impl TokenFilters {
    fn parse(ctx: &RequestCtx, req: &pb::ListApiTokensRequest) -> Result<Self> {
        let visible_to = if ctx.role.allows(Access::Audit) {
            None
        } else {
            // A bearer-token caller owns no token: the nil id matches none.
            Some(ctx.actor.user_id().unwrap_or(Uuid::nil()))
        };
        Ok(TokenFilters {
            visible_to,
            user: opt_uuid("user", req.user.as_deref())?,
            active: req.active,
            search: search_pattern(req.search.as_deref()),
            now: timefmt::now(),
        })
    }

    fn apply(&self, org: Uuid) -> api_tokens::BoxedQuery<'static, Pg> {
        let mut q = api_tokens::table.filter(api_tokens::organization_id.eq(org)).into_boxed();
        if let Some(own) = self.visible_to {
            q = q.filter(api_tokens::user_id.eq(own));
        }
        if let Some(user) = self.user {
            q = q.filter(api_tokens::user_id.eq(user));
        }
        let now = self.now;
        match self.active {
            Some(true) => {
                q = q.filter(
                    api_tokens::revoked_at
                        .is_null()
                        .and(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now))),
                )
            }
            Some(false) => {
                q = q.filter(api_tokens::revoked_at.is_not_null().or(api_tokens::expires_at.le(now)));
            }
            None => {}
        }
        if let Some(pattern) = &self.search {
            q = q.filter(api_tokens::name.ilike(pattern.clone()).or(api_tokens::token_prefix.ilike(pattern.clone())));
        }
        q
    }
}
