//! Stale-access findings: listed and read by admins and auditors, decided by admins.
//!
//! `revoked` takes the access away in the deciding transaction — the token revoked, or the
//! user deactivated or demoted through the same checks as any change of a user (never the
//! last active admin) — and the process's authenticators forget what they remembered, so the
//! next request with that access is refused. Open findings of the same review that the
//! revocation made moot (the same token; every finding about a user now deactivated) are
//! closed with it, saying by which. `retained` needs a justification. A finding of a
//! signed-off review never changes.

use custos_audit_chain::{Change, record_change, record_many};
use custos_core::ctx::Access;
use custos_core::filter::{bounded_text, choice, opt_choice, opt_text, opt_uuid, parse_id};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, Role, timefmt};
use custos_db::schema::{access_reviews as reviews, api_tokens, stale_access_findings as findings_t};
use custos_db::{Tx, choice, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{AccessReviewService, FindingKind, FindingStatus, FromPage, Result, ReviewStatus};
use crate::admin::{find_user, lock_users, revoke_token, set_user_access};
use crate::model::{RoleName, TokenRow};

/// The event a review emits when its last open finding is decided (or it found none).
pub const SIGN_OFF_DUE: &str = "access_review.sign_off_due";
const FINDINGS: &str = "stale_access_findings";
const JUSTIFICATION_MAX: usize = 2000;

choice! {
    /// A decision on a finding.
    pub enum Resolution {
        Revoked = "revoked",
        Retained = "retained",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = findings_t)]
pub(crate) struct FindingRow {
    pub id: Uuid,
    pub review_id: Uuid,
    pub kind: FindingKind,
    pub user_id: Uuid,
    pub token_id: Option<Uuid>,
    pub user_email: String,
    pub user_role: RoleName,
    pub token_prefix: Option<String>,
    pub token_name: Option<String>,
    pub last_activity_at: Option<OffsetDateTime>,
    pub reason: String,
    pub status: FindingStatus,
    pub action: Option<String>,
    pub justification: Option<String>,
    pub resolved_by: Option<String>,
    pub resolved_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
}

impl FindingRow {
    fn to_pb(&self) -> pb::StaleAccessFinding {
        pb::StaleAccessFinding {
            id: self.id.to_string(),
            review: self.review_id.to_string(),
            kind: self.kind.to_string(),
            user_id: self.user_id.to_string(),
            user_email: self.user_email.clone(),
            user_role: self.user_role.to_string(),
            token_id: self.token_id.map(|t| t.to_string()),
            token_prefix: self.token_prefix.clone(),
            token_name: self.token_name.clone(),
            last_activity_at: self.last_activity_at.map(timefmt::timestamp),
            reason: self.reason.clone(),
            status: self.status.to_string(),
            action: self.action.clone(),
            justification: self.justification.clone(),
            resolved_by: self.resolved_by.clone(),
            resolved_at: self.resolved_at.map(timefmt::timestamp),
            created_at: timefmt::timestamp(self.created_at),
        }
    }

    /// What the audit trail records of a finding.
    pub(crate) fn audited(&self) -> Value {
        json!({
            "id": self.id,
            "review": self.review_id,
            "kind": self.kind.to_string(),
            "user_id": self.user_id,
            "token_id": self.token_id,
            "status": self.status.to_string(),
            "action": self.action,
            "justification": self.justification,
            "resolved_by": self.resolved_by,
        })
    }

    /// The finding as a signed report shows it.
    pub(crate) fn reported(&self) -> Value {
        json!({
            "id": self.id,
            "kind": self.kind.to_string(),
            "user": { "id": self.user_id, "email": self.user_email, "role": self.user_role.to_string() },
            "token": self.token_id.map(|id| json!({ "id": id, "prefix": self.token_prefix, "name": self.token_name })),
            "last_activity_at": self.last_activity_at.map(timefmt::timestamp),
            "reason": self.reason,
            "decision": self.status.to_string(),
            "action": self.action,
            "justification": self.justification,
            "decided_by": self.resolved_by,
            "decided_at": self.resolved_at.map(timefmt::timestamp),
        })
    }
}

/// Parsed list filters of findings.
struct Filters {
    review: Option<Uuid>,
    status: Option<FindingStatus>,
    kind: Option<FindingKind>,
    user: Option<Uuid>,
}

impl Filters {
    fn parse(req: &pb::ListStaleAccessRequest) -> Result<Self> {
        Ok(Filters {
            review: opt_uuid("review", req.review.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            kind: opt_choice("kind", req.kind.as_deref())?,
            user: opt_uuid("user", req.user.as_deref())?,
        })
    }

    fn apply(&self, org: Uuid) -> findings_t::BoxedQuery<'static, Pg> {
        let mut q = findings_t::table.filter(findings_t::organization_id.eq(org)).into_boxed();
        if let Some(review) = self.review {
            q = q.filter(findings_t::review_id.eq(review));
        }
        if let Some(status) = self.status {
            q = q.filter(findings_t::status.eq(status));
        }
        if let Some(kind) = self.kind {
            q = q.filter(findings_t::kind.eq(kind));
        }
        if let Some(user) = self.user {
            q = q.filter(findings_t::user_id.eq(user));
        }
        q
    }
}

/// Every finding of a review, in the order it found them.
pub(crate) async fn of_review(tx: &mut Tx, org: Uuid, review: Uuid) -> Result<Vec<FindingRow>> {
    Ok(findings_t::table
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::review_id.eq(review))
        .order((findings_t::created_at.asc(), findings_t::id.asc()))
        .select(FindingRow::as_select())
        .load(tx.conn())
        .await?)
}

impl AccessReviewService {
    /// `GET /api/compliance/stale-access/` (admins, auditors): filters `review`, `status`,
    /// `kind`, `user`; oldest first, each review's findings in the order it found them.
    pub async fn list_stale_access(
        &self,
        ctx: &RequestCtx,
        req: pb::ListStaleAccessRequest,
    ) -> Result<pb::ListStaleAccessResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(FINDINGS)?;
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Audit).await?;
        let mut q = filters
            .apply(org)
            .order((findings_t::created_at.asc(), findings_t::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(FindingRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((findings_t::created_at, findings_t::id), key));
        }
        let rows: Vec<FindingRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(FINDINGS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        let results = page.results.iter().map(FindingRow::to_pb).collect();
        Ok(pb::ListStaleAccessResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/stale-access/{id}/` (admins, auditors).
    pub async fn get_stale_access(
        &self,
        ctx: &RequestCtx,
        req: pb::GetStaleAccessRequest,
    ) -> Result<pb::StaleAccessFinding> {
        let id = parse_id("Stale access finding", &req.id)?;
        let mut tx = self.db().begin_as(ctx, Access::Audit).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb())
    }

    /// `POST /api/compliance/stale-access/{id}/resolve/` (admins): see the module's text.
    pub async fn resolve_stale_access(
        &self,
        ctx: &RequestCtx,
        req: pb::ResolveStaleAccessRequest,
    ) -> Result<pb::StaleAccessFinding> {
        let id = parse_id("Stale access finding", &req.id)?;
        let resolution: Resolution = choice("resolution", &req.resolution)?;
        let justification = match opt_text(req.justification.as_deref()) {
            Some(j) => Some(bounded_text("justification", j, JUSTIFICATION_MAX)?),
            None => None,
        };
        if resolution == Resolution::Retained && justification.is_none() {
            return Err(Problem::invalid_field("justification", "retaining access needs a justification").into());
        }
        let demote_to: Option<RoleName> = opt_choice("demote_to", req.demote_to.as_deref())?;
        if demote_to == Some(RoleName::Admin) {
            return Err(Problem::invalid_field("demote_to", "a role below admin: viewer, editor or auditor").into());
        }
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Admin).await?;
        // Decisions change users: serialised with every other change of the organisation's
        // users (the last-admin rule), by an admin still active.
        lock_users(&mut tx, ctx).await?;
        let current = find(&mut tx, org, id, true).await?;
        if demote_to.is_some() && (resolution == Resolution::Retained || current.kind.is_token()) {
            return Err(Problem::invalid_field(
                "demote_to",
                "only for revoking a finding about a user (user_unused, admin_unreviewed)",
            )
            .into());
        }
        let review_status: ReviewStatus = reviews::table
            .filter(reviews::organization_id.eq(org))
            .filter(reviews::id.eq(current.review_id))
            .select(reviews::status)
            .for_share()
            .first(tx.conn())
            .await?;
        if review_status == ReviewStatus::SignedOff {
            return Err(Problem::state_conflict(
                "Access review signed off",
                format!("Finding {id} belongs to review {}, which is signed off: it never changes", current.review_id),
            )
            .into());
        }
        if current.status != FindingStatus::Open {
            return Err(Problem::state_conflict(
                "Finding already decided",
                format!(
                    "Finding {id} was decided {} by {} at {}",
                    current.status,
                    current.resolved_by.as_deref().unwrap_or("?"),
                    current.resolved_at.map(timefmt::timestamp).unwrap_or_default()
                ),
            )
            .into());
        }
        let now = timefmt::now();
        let (status, action, covers) = match resolution {
            Resolution::Retained => (FindingStatus::Retained, None, Covers::Nothing),
            Resolution::Revoked => {
                let (action, covers) = revoke(&mut tx, ctx, &current, demote_to, now).await?;
                (FindingStatus::Revoked, Some(action), covers)
            }
        };
        let resolver = ctx.actor.label();
        let after: FindingRow =
            diesel::update(findings_t::table.filter(findings_t::organization_id.eq(org)).filter(findings_t::id.eq(id)))
                .set((
                    findings_t::status.eq(status),
                    findings_t::action.eq(&action),
                    findings_t::justification.eq(&justification),
                    findings_t::resolved_by.eq(&resolver),
                    findings_t::resolved_at.eq(now),
                ))
                .returning(FindingRow::as_returning())
                .get_result(tx.conn())
                .await?;
        record_change(&mut tx, ctx, "resolve", "stale_access_finding", id, current.audited(), after.audited()).await?;
        close_covered(&mut tx, ctx, &after, covers, now).await?;
        // The review's findings by status, once: whether any is still open, and the counts the
        // sign-off-due event carries when none is.
        let by_status: Vec<(FindingStatus, i64)> = findings_t::table
            .filter(findings_t::organization_id.eq(org))
            .filter(findings_t::review_id.eq(current.review_id))
            .group_by(findings_t::status)
            .select((findings_t::status, diesel::dsl::count_star()))
            .load(tx.conn())
            .await?;
        let n = |s| by_status.iter().find(|(x, _)| *x == s).map_or(0, |(_, n)| *n);
        if n(FindingStatus::Open) == 0 {
            let payload = json!({
                "review": current.review_id,
                "findings": n(FindingStatus::Revoked) + n(FindingStatus::Retained),
                "revoked": n(FindingStatus::Revoked),
                "retained": n(FindingStatus::Retained),
            });
            custos_db::outbox::emit(&mut tx, org, SIGN_OFF_DUE, payload).await?;
        }
        tx.commit().await?;
        if resolution == Resolution::Revoked {
            // The access is gone from the next request on, here at once.
            self.identity.changes.changed();
        }
        Ok(after.to_pb())
    }
}

/// Which other open findings of the review a revocation made moot.
enum Covers {
    Nothing,
    Token(Uuid),
    User(Uuid),
}

/// Takes the finding's access away; answers what was done and what else it covers.
async fn revoke(
    tx: &mut Tx,
    ctx: &RequestCtx,
    finding: &FindingRow,
    demote_to: Option<RoleName>,
    now: OffsetDateTime,
) -> Result<(String, Covers)> {
    if let Some(token_id) = finding.token_id {
        let token: TokenRow = api_tokens::table
            .filter(api_tokens::organization_id.eq(ctx.organization_id))
            .filter(api_tokens::id.eq(token_id))
            .select(TokenRow::as_select())
            .for_update()
            .first(tx.conn())
            .await?;
        if token.revoked_at.is_some() {
            return Ok(("already_revoked".into(), Covers::Token(token_id)));
        }
        revoke_token(tx, ctx, &token, now).await?;
        return Ok(("token_revoked".into(), Covers::Token(token_id)));
    }
    let user = find_user(tx, ctx, finding.user_id, true).await?;
    // An unconfirmed admin loses admin rights; an unused account is closed.
    let demote_to = demote_to.or((finding.kind == FindingKind::AdminUnreviewed).then_some(RoleName::Viewer));
    match demote_to {
        None if !user.is_active => Ok(("already_deactivated".into(), Covers::User(user.id))),
        None => {
            set_user_access(tx, ctx, &user, user.role, false).await?;
            Ok(("user_deactivated".into(), Covers::User(user.id)))
        }
        Some(role)
            if user.role == role || (user.role != RoleName::Admin && finding.kind == FindingKind::AdminUnreviewed) =>
        {
            Ok((format!("already_{}", user.role), Covers::Nothing))
        }
        Some(role) if !Role::from(role).within(Role::from(user.role)) => Err(Problem::invalid_field(
            "demote_to",
            format!("{role} is not below the role of {}, {}", user.email, user.role),
        )
        .into()),
        Some(role) => {
            set_user_access(tx, ctx, &user, role, user.is_active).await?;
            Ok((format!("user_demoted_to_{role}"), Covers::Nothing))
        }
    }
}

/// Closes the review's other open findings that `by`'s revocation made moot.
async fn close_covered(
    tx: &mut Tx,
    ctx: &RequestCtx,
    by: &FindingRow,
    covers: Covers,
    now: OffsetDateTime,
) -> Result<()> {
    let org = ctx.organization_id;
    let q = findings_t::table
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::review_id.eq(by.review_id))
        .filter(findings_t::status.eq(FindingStatus::Open))
        .filter(findings_t::id.ne(by.id))
        .into_boxed();
    let q = match covers {
        Covers::Nothing => return Ok(()),
        Covers::Token(token) => q.filter(findings_t::token_id.eq(token)),
        Covers::User(user) => q.filter(findings_t::user_id.eq(user)),
    };
    let ids: Vec<Uuid> = q.select(findings_t::id).load(tx.conn()).await?;
    if ids.is_empty() {
        return Ok(());
    }
    let before: Vec<FindingRow> = findings_t::table
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::id.eq_any(&ids))
        .select(FindingRow::as_select())
        .load(tx.conn())
        .await?;
    let after: Vec<FindingRow> = diesel::update(
        findings_t::table.filter(findings_t::organization_id.eq(org)).filter(findings_t::id.eq_any(&ids)),
    )
    .set((
        findings_t::status.eq(FindingStatus::Revoked),
        findings_t::action.eq(format!("covered_by_{}", by.id)),
        findings_t::resolved_by.eq(ctx.actor.label()),
        findings_t::resolved_at.eq(now),
    ))
    .returning(FindingRow::as_returning())
    .get_results(tx.conn())
    .await?;
    let changes = before
        .iter()
        .filter_map(|b| after.iter().find(|a| a.id == b.id).map(|a| (b, a)))
        .map(|(b, a)| Change {
            action: "resolve",
            resource_type: "stale_access_finding",
            resource_id: a.id.to_string(),
            before: b.audited(),
            after: a.audited(),
        })
        .collect();
    record_many(tx, ctx, changes).await?;
    Ok(())
}

async fn find(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<FindingRow> {
    let q = findings_t::table
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::id.eq(id))
        .select(FindingRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Stale access finding", id))?)
}
