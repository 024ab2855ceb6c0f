//! Access reviews (seed 004): a review collects findings about who can reach the organisation
//! ([`rules`]: stale users and tokens, unconfirmed admins, tokens of deactivated users, tokens
//! without expiry) as a job; admins decide each finding ([`findings`]: revoked takes the access
//! away at once, retained needs a justification) and sign the review off, after which it and
//! its findings never change (a trigger refuses it too) and the report signed is kept byte for
//! byte with its SHA-256. Admins and auditors read reviews and findings.
//!
//! A review starts from the API (`start_review`), the operator's `custos access-review run`, or
//! the quarterly `access-review` schedule (1 January, April, July and October, as in the seed).

pub mod findings;
pub mod rules;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use custos_audit_chain::{Change, record_change, record_many};
use custos_core::ctx::Access;
use custos_core::filter::{opt_choice, opt_text, parse_id};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt};
use custos_db::schema::{access_reviews as reviews, api_tokens, jobs, stale_access_findings as findings_t, users};
use custos_db::{Db, DbError, Tx, choice, list};
use custos_jobs::queue::{self, NewJob};
use custos_jobs::{Job, JobError, Kind, Scope};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::IdentityService;
use crate::model::RoleName;
use rules::{Facts, TokenFacts, UserFacts};

custos_db::service_error! {
    pub enum AccessReviewError {
        Identity(crate::IdentityError),
    }
}

type Result<T, E = AccessReviewError> = std::result::Result<T, E>;

/// The kind of job that collects a review's findings.
pub const REVIEW_JOB: &str = "identity.access_review";
/// The configured period's default: 90 days.
pub const DEFAULT_STALE_AFTER_DAYS: i32 = 90;
const MAX_STALE_AFTER_DAYS: i32 = 3650;
const COMMENT_MAX: usize = 2000;
const REVIEWS: &str = "access_reviews";
/// The report's format name, in the report itself.
pub const REPORT_FORMAT: &str = "custos-access-review/v1";

custos_core::page_responses! {
    pb::ListAccessReviewsResponse { pb::AccessReview } + next_cursor;
    pb::ListStaleAccessResponse { pb::StaleAccessFinding } + next_cursor;
}

choice! {
    /// Where a review stands.
    pub enum ReviewStatus {
        Running = "running",
        InReview = "in_review",
        SignedOff = "signed_off",
        Failed = "failed",
    }
}

choice! {
    /// What a finding is about.
    pub enum FindingKind {
        UserUnused = "user_unused",
        TokenUnused = "token_unused",
        AdminUnreviewed = "admin_unreviewed",
        TokenOfInactiveUser = "token_of_inactive_user",
        TokenWithoutExpiry = "token_without_expiry",
    }
}

impl FindingKind {
    /// Whether the finding is about a token (else about a user).
    pub fn is_token(self) -> bool {
        matches!(self, FindingKind::TokenUnused | FindingKind::TokenOfInactiveUser | FindingKind::TokenWithoutExpiry)
    }
}

choice! {
    /// Where a finding stands.
    pub enum FindingStatus {
        Open = "open",
        Revoked = "revoked",
        Retained = "retained",
    }
}

/// How access reviews are run here.
#[derive(Debug, Clone, Copy)]
pub struct ReviewSettings {
    /// `CUSTOS_ACCESS_REVIEW_STALE_DAYS`: days without use that make a user or token stale.
    pub stale_after_days: i32,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings { stale_after_days: DEFAULT_STALE_AFTER_DAYS }
    }
}

/// Access reviews and their findings, written once: REST, gRPC, the CLI and the job call them.
#[derive(Clone)]
pub struct AccessReviewService {
    pub(crate) identity: IdentityService,
    settings: ReviewSettings,
    waker: Option<Arc<Notify>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reviews)]
struct ReviewRow {
    id: Uuid,
    status: ReviewStatus,
    stale_after_days: i32,
    started_by: String,
    started_at: OffsetDateTime,
    job_id: Option<Uuid>,
    collected_at: Option<OffsetDateTime>,
    signed_off_by: Option<String>,
    signed_off_at: Option<OffsetDateTime>,
    sign_off_comment: Option<String>,
    report_sha256: Option<String>,
}

impl ReviewRow {
    fn audited(&self) -> Value {
        json!({
            "id": self.id,
            "status": self.status.to_string(),
            "stale_after_days": self.stale_after_days,
            "started_by": self.started_by,
            "job_id": self.job_id,
            "collected_at": self.collected_at.map(timefmt::timestamp),
            "signed_off_by": self.signed_off_by,
            "signed_off_at": self.signed_off_at.map(timefmt::timestamp),
            "sign_off_comment": self.sign_off_comment,
            "report_sha256": self.report_sha256,
        })
    }
}

/// What reads add to a review: its findings' counts and, while running, its job's fate.
#[derive(Debug, Default, Clone)]
struct ReviewExtras {
    counts: HashMap<FindingStatus, i32>,
    /// The job ended without collecting (failed or cancelled), and why.
    job_failed: Option<Option<String>>,
}

fn review_pb(row: &ReviewRow, extras: &ReviewExtras) -> pb::AccessReview {
    let count = |s| extras.counts.get(&s).copied().unwrap_or(0);
    let (status, error) = match (&row.status, &extras.job_failed) {
        (ReviewStatus::Running, Some(error)) => {
            (ReviewStatus::Failed, Some(error.clone().unwrap_or_else(|| "its job ended without collecting".into())))
        }
        (status, _) => (*status, None),
    };
    pb::AccessReview {
        id: row.id.to_string(),
        status: status.to_string(),
        stale_after_days: row.stale_after_days,
        started_by: row.started_by.clone(),
        started_at: timefmt::timestamp(row.started_at),
        collected_at: row.collected_at.map(timefmt::timestamp),
        findings: count(FindingStatus::Open) + count(FindingStatus::Revoked) + count(FindingStatus::Retained),
        open_findings: count(FindingStatus::Open),
        revoked: count(FindingStatus::Revoked),
        retained: count(FindingStatus::Retained),
        job_id: row.job_id.map(|j| j.to_string()),
        error,
        signed_off_by: row.signed_off_by.clone(),
        signed_off_at: row.signed_off_at.map(timefmt::timestamp),
        sign_off_comment: row.sign_off_comment.clone(),
        report_sha256: row.report_sha256.clone(),
    }
}

/// Jobs that ended without doing their work.
const ENDED_BADLY: [&str; 2] = ["failed", "cancelled"];

/// Parsed list filters of reviews.
struct ReviewFilters {
    status: Option<ReviewStatus>,
}

impl ReviewFilters {
    fn apply(&self, org: Uuid) -> reviews::BoxedQuery<'static, Pg> {
        let mut q = reviews::table.filter(reviews::organization_id.eq(org)).into_boxed();
        let job_ended_badly = || {
            diesel::dsl::exists(
                jobs::table.filter(jobs::id.nullable().eq(reviews::job_id)).filter(jobs::status.eq_any(ENDED_BADLY)),
            )
        };
        match self.status {
            None => {}
            Some(ReviewStatus::Running) => {
                q = q.filter(reviews::status.eq(ReviewStatus::Running)).filter(diesel::dsl::not(job_ended_badly()))
            }
            Some(ReviewStatus::Failed) => {
                q = q.filter(
                    reviews::status
                        .eq(ReviewStatus::Failed)
                        .or(reviews::status.eq(ReviewStatus::Running).and(job_ended_badly())),
                )
            }
            Some(s) => q = q.filter(reviews::status.eq(s)),
        }
        q
    }
}

impl AccessReviewService {
    pub fn new(identity: IdentityService, settings: ReviewSettings) -> Self {
        AccessReviewService { identity, settings, waker: None }
    }

    /// Wakes the job runner when a review is started (else it finds the job at its next poll).
    pub fn with_job_waker(mut self, waker: Arc<Notify>) -> Self {
        self.waker = Some(waker);
        self
    }

    pub fn settings(&self) -> ReviewSettings {
        self.settings
    }

    pub(crate) fn db(&self) -> &Db {
        &self.identity.db
    }

    /// `GET /api/compliance/access-reviews/`: newest first (admins, auditors).
    pub async fn list_access_reviews(
        &self,
        ctx: &RequestCtx,
        req: pb::ListAccessReviewsRequest,
    ) -> Result<pb::ListAccessReviewsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = ReviewFilters { status: opt_choice("status", req.status.as_deref())? };
        let after = list.after::<(OffsetDateTime, Uuid)>(REVIEWS)?;
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Audit).await?;
        let mut q = filters
            .apply(org)
            .order((reviews::started_at.desc(), reviews::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(ReviewRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((reviews::started_at, reviews::id), key));
        }
        let rows: Vec<ReviewRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(REVIEWS, &(r.started_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let extras = extras(&mut tx, org, &page.results).await?;
        tx.commit().await?;
        let results =
            page.results.iter().map(|r| review_pb(r, extras.get(&r.id).unwrap_or(&ReviewExtras::default()))).collect();
        Ok(pb::ListAccessReviewsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/access-reviews/{id}/` (admins, auditors).
    pub async fn get_access_review(
        &self,
        ctx: &RequestCtx,
        req: pb::GetAccessReviewRequest,
    ) -> Result<pb::AccessReview> {
        let id = parse_id("Access review", &req.id)?;
        let mut tx = self.db().begin_as(ctx, Access::Audit).await?;
        let row = find_review(&mut tx, ctx.organization_id, id, false).await?;
        let review = shown(&mut tx, ctx.organization_id, &row).await?;
        tx.commit().await?;
        Ok(review)
    }

    /// `POST /api/compliance/access-reviews/start_review/` (admins): the review, running; its
    /// job collects the findings. One review collects at a time: while one does, 409 (a review
    /// whose job failed is marked failed and another may start).
    pub async fn start_access_review(
        &self,
        ctx: &RequestCtx,
        req: pb::StartAccessReviewRequest,
    ) -> Result<pb::AccessReview> {
        let days = match req.stale_after_days {
            None => self.settings.stale_after_days,
            Some(d) if (1..=MAX_STALE_AFTER_DAYS).contains(&d) => d,
            Some(d) => {
                return Err(Problem::invalid_field(
                    "stale_after_days",
                    format!("{d} is not a number of days between 1 and {MAX_STALE_AFTER_DAYS}"),
                )
                .into());
            }
        };
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Admin).await?;
        let running: Option<ReviewRow> = reviews::table
            .filter(reviews::organization_id.eq(org))
            .filter(reviews::status.eq(ReviewStatus::Running))
            .select(ReviewRow::as_select())
            .for_update()
            .first(tx.conn())
            .await
            .optional()?;
        if let Some(running) = running {
            match job_fate(&mut tx, running.job_id).await? {
                None => {
                    return Err(Problem::state_conflict(
                        "An access review is being collected",
                        format!(
                            "Review {} (started by {} at {}) is still collecting its findings; wait for it to finish",
                            running.id,
                            running.started_by,
                            timefmt::timestamp(running.started_at)
                        ),
                    )
                    .into());
                }
                Some(_) => {
                    let failed: ReviewRow = diesel::update(reviews::table.filter(reviews::id.eq(running.id)))
                        .set(reviews::status.eq(ReviewStatus::Failed))
                        .returning(ReviewRow::as_returning())
                        .get_result(tx.conn())
                        .await?;
                    record_change(
                        &mut tx,
                        ctx,
                        "fail",
                        "access_review",
                        running.id,
                        running.audited(),
                        failed.audited(),
                    )
                    .await?;
                }
            }
        }
        let id = new_id();
        let job = queue::enqueue(
            &mut tx,
            Some(ctx),
            NewJob {
                organization_id: Some(org),
                kind: REVIEW_JOB.to_owned(),
                parameters: serde_json::to_value(ReviewJob { review: Some(id), stale_after_days: Some(days) })
                    .map_err(Problem::internal)?,
                max_attempts: JOB_ATTEMPTS,
                created_by: ctx.actor.label(),
                schedule: None,
            },
        )
        .await?
        .ok_or_else(|| Problem::internal("the access review's job was not queued"))?;
        let row = insert_review(&mut tx, ctx, id, days, &ctx.actor.label(), job.id, ReviewStatus::Running)
            .await
            .map_err(|e| {
                e.unique_as_conflict(
                    "An access review is being collected",
                    "Another review was started just now; wait for it to finish".into(),
                )
            })?;
        tx.commit().await?;
        if let Some(waker) = &self.waker {
            waker.notify_one();
        }
        Ok(review_pb(&row, &ReviewExtras::default()))
    }

    /// `POST /api/compliance/access-reviews/{id}/sign_off/` (admins): once every finding is
    /// decided. The report — the review, every finding with its decision, who signed and when —
    /// is written once, kept byte for byte with its SHA-256, and the review never changes again.
    pub async fn sign_off_access_review(
        &self,
        ctx: &RequestCtx,
        req: pb::SignOffAccessReviewRequest,
    ) -> Result<pb::AccessReview> {
        let id = parse_id("Access review", &req.id)?;
        let comment = match opt_text(req.comment.as_deref()) {
            Some(c) => Some(custos_core::filter::bounded_text("comment", c, COMMENT_MAX)?),
            None => None,
        };
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Admin).await?;
        let row = find_review(&mut tx, org, id, true).await?;
        match row.status {
            ReviewStatus::InReview => {}
            ReviewStatus::SignedOff => {
                return Err(Problem::state_conflict(
                    "Access review already signed off",
                    format!(
                        "Review {id} was signed off by {} at {}; a signed-off review never changes",
                        row.signed_off_by.as_deref().unwrap_or("?"),
                        row.signed_off_at.map(timefmt::timestamp).unwrap_or_default()
                    ),
                )
                .into());
            }
            ReviewStatus::Running | ReviewStatus::Failed => {
                return Err(Problem::state_conflict(
                    "Access review not ready",
                    format!("Review {id} has no findings to sign off: its collection is {}", row.status),
                )
                .into());
            }
        }
        let found = findings::of_review(&mut tx, org, id).await?;
        let open = found.iter().filter(|f| f.status == FindingStatus::Open).count();
        if open > 0 {
            return Err(Problem::state_conflict(
                "Findings still open",
                format!(
                    "{open} of the review's {} findings are still open: decide each one (revoked or retained) before signing off",
                    found.len()
                ),
            )
            .into());
        }
        let now = timefmt::now();
        let signer = ctx.actor.label();
        let report = report(ctx, &row, &found, &signer, now, comment.as_deref());
        let text = serde_json::to_string_pretty(&report).map_err(Problem::internal)? + "\n";
        let sha256 = const_hex::encode(Sha256::digest(text.as_bytes()));
        let after: ReviewRow =
            diesel::update(reviews::table.filter(reviews::organization_id.eq(org)).filter(reviews::id.eq(id)))
                .set((
                    reviews::status.eq(ReviewStatus::SignedOff),
                    reviews::signed_off_by.eq(&signer),
                    reviews::signed_off_at.eq(now),
                    reviews::sign_off_comment.eq(&comment),
                    reviews::report.eq(&text),
                    reviews::report_sha256.eq(&sha256),
                ))
                .returning(ReviewRow::as_returning())
                .get_result(tx.conn())
                .await?;
        record_change(&mut tx, ctx, "sign_off", "access_review", id, row.audited(), after.audited()).await?;
        let review = shown(&mut tx, org, &after).await?;
        tx.commit().await?;
        Ok(review)
    }

    /// `GET /api/compliance/access-reviews/{id}/report/`: the signed-off review's report, the
    /// exact bytes whose SHA-256 the review shows (admins, auditors).
    pub async fn get_access_review_report(
        &self,
        ctx: &RequestCtx,
        req: pb::GetAccessReviewReportRequest,
    ) -> Result<pb::AccessReviewReport> {
        let id = parse_id("Access review", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db().begin_as(ctx, Access::Audit).await?;
        find_review(&mut tx, org, id, false).await?;
        let (report, sha256): (Option<String>, Option<String>) = reviews::table
            .filter(reviews::organization_id.eq(org))
            .filter(reviews::id.eq(id))
            .select((reviews::report, reviews::report_sha256))
            .first(tx.conn())
            .await?;
        tx.commit().await?;
        match (report, sha256) {
            (Some(content), Some(sha256)) => Ok(pb::AccessReviewReport { content, sha256 }),
            _ => Err(Problem::state_conflict(
                "Access review not signed off",
                format!("Review {id} has no report yet: it is written when the review is signed off"),
            )
            .into()),
        }
    }

    /// Collects a review's findings (the job's one step, in its transaction): a review started
    /// from the API (`review`) or, for the schedule and the CLI, a new one. Answers the review.
    async fn collect(&self, tx: &mut Tx, ctx: &RequestCtx, job: &Job, params: &ReviewJob) -> Result<Value> {
        let org = ctx.organization_id;
        let days = params.stale_after_days.unwrap_or(self.settings.stale_after_days).clamp(1, MAX_STALE_AFTER_DAYS);
        let row = match params.review {
            Some(id) => {
                let row = find_review(tx, org, id, true).await?;
                if row.status != ReviewStatus::Running {
                    // Marked failed meanwhile (a new review started): nothing to collect.
                    return Ok(json!({ "review": id, "status": row.status.to_string() }));
                }
                row
            }
            None => insert_review(tx, ctx, new_id(), days, job.created_by(), job.id(), ReviewStatus::Running).await?,
        };
        let now = timefmt::now();
        let facts = facts(tx, org, &row, now).await?;
        let found = rules::findings(&facts);
        let mut by_kind: HashMap<String, i64> = HashMap::new();
        let mut rows = Vec::with_capacity(found.len());
        for f in &found {
            *by_kind.entry(f.kind.to_string()).or_default() += 1;
            rows.push((
                findings_t::id.eq(new_id()),
                findings_t::organization_id.eq(org),
                findings_t::review_id.eq(row.id),
                findings_t::kind.eq(f.kind),
                findings_t::user_id.eq(f.user_id),
                findings_t::token_id.eq(f.token.as_ref().map(|t| t.0)),
                findings_t::user_email.eq(f.user_email.clone()),
                findings_t::user_role.eq(f.user_role),
                findings_t::token_prefix.eq(f.token.as_ref().map(|t| t.1.clone())),
                findings_t::token_name.eq(f.token.as_ref().map(|t| t.2.clone())),
                findings_t::last_activity_at.eq(f.last_activity_at),
                findings_t::reason.eq(f.reason.clone()),
            ));
        }
        let mut created: Vec<findings::FindingRow> = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(1000) {
            created.extend(
                diesel::insert_into(findings_t::table)
                    .values(chunk)
                    .returning(findings::FindingRow::as_returning())
                    .get_results::<findings::FindingRow>(tx.conn())
                    .await?,
            );
        }
        let after: ReviewRow = diesel::update(reviews::table.filter(reviews::id.eq(row.id)))
            .set((reviews::status.eq(ReviewStatus::InReview), reviews::collected_at.eq(now)))
            .returning(ReviewRow::as_returning())
            .get_result(tx.conn())
            .await?;
        let mut audited = after.audited();
        audited["findings"] = json!(by_kind);
        record_change(tx, ctx, "collect", "access_review", row.id, row.audited(), audited).await?;
        record_many(
            tx,
            ctx,
            created
                .iter()
                .map(|f| Change {
                    action: "create",
                    resource_type: "stale_access_finding",
                    resource_id: f.id.to_string(),
                    before: Value::Null,
                    after: f.audited(),
                })
                .collect(),
        )
        .await?;
        let summary = json!({
            "review": row.id,
            "stale_after_days": row.stale_after_days,
            "findings": created.len(),
            "by_kind": by_kind,
            "started_by": row.started_by,
        });
        if created.is_empty() {
            // Nothing to decide: ready to sign off at once.
            custos_db::outbox::emit(
                tx,
                org,
                findings::SIGN_OFF_DUE,
                json!({ "review": row.id, "findings": 0, "revoked": 0, "retained": 0 }),
            )
            .await?;
        } else {
            custos_db::outbox::emit(tx, org, STALE_FINDING, summary.clone()).await?;
        }
        Ok(summary)
    }
}

/// The event a review with findings emits when it has collected them.
pub const STALE_FINDING: &str = "access.stale_finding";
const JOB_ATTEMPTS: i32 = 3;

/// The collecting job's parameters: a review started from the API, or none (the schedule, the
/// CLI), and the period (none: the configured one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ReviewJob {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    review: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stale_after_days: Option<i32>,
}

/// The kind of job that collects a review's findings: in one step (one transaction: the
/// findings, the review's new status, their audit entries and the event commit together), so
/// a rerun after a crash finds it done, or does it whole.
pub fn review_job(service: AccessReviewService) -> Kind {
    Kind::new(REVIEW_JOB, Scope::Organization, "Collects an access review's findings", move |job: Job| {
        let service = service.clone();
        async move {
            let org =
                job.organization().ok_or_else(|| JobError::fatal("an access review belongs to an organisation"))?;
            let params: ReviewJob = job.params()?;
            let ctx = job.ctx(org);
            job.set_progress(0.1);
            let done = job
                .step("collect", Some(org), async |tx| {
                    service.collect(tx, &ctx, &job, &params).await.map_err(|e| JobError::from_problem(e.into()))
                })
                .await?;
            job.set_progress(1.0);
            match done {
                Some(summary) => {
                    job.count("findings", summary["findings"].as_i64().unwrap_or(0));
                    Ok(summary)
                }
                // Collected by an earlier run of this job: say which review.
                None => {
                    let mut tx = service.db().begin(org).await?;
                    let review: Option<Uuid> = reviews::table
                        .filter(reviews::organization_id.eq(org))
                        .filter(reviews::job_id.eq(job.id()))
                        .select(reviews::id)
                        .first(tx.conn())
                        .await
                        .optional()
                        .map_err(DbError::from)?;
                    tx.commit().await?;
                    Ok(json!({ "review": review, "collected_earlier": true }))
                }
            }
        }
    })
    .attempts(JOB_ATTEMPTS)
}

async fn insert_review(
    tx: &mut Tx,
    ctx: &RequestCtx,
    id: Uuid,
    days: i32,
    started_by: &str,
    job_id: Uuid,
    status: ReviewStatus,
) -> Result<ReviewRow, DbError> {
    let row: ReviewRow = diesel::insert_into(reviews::table)
        .values((
            reviews::id.eq(id),
            reviews::organization_id.eq(ctx.organization_id),
            reviews::status.eq(status),
            reviews::stale_after_days.eq(days),
            reviews::started_by.eq(started_by),
            reviews::job_id.eq(Some(job_id)),
        ))
        .returning(ReviewRow::as_returning())
        .get_result(tx.conn())
        .await?;
    record_change(tx, ctx, "create", "access_review", id, Value::Null, row.audited()).await?;
    Ok(row)
}

async fn find_review(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<ReviewRow> {
    let q = reviews::table
        .filter(reviews::organization_id.eq(org))
        .filter(reviews::id.eq(id))
        .select(ReviewRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Access review", id))?)
}

/// `None` while the job may still do its work; else why it will not (`Some(error)`).
async fn job_fate(tx: &mut Tx, job: Option<Uuid>) -> Result<Option<Option<String>>, DbError> {
    let Some(job) = job else { return Ok(Some(None)) };
    let row: Option<(String, Option<String>)> =
        jobs::table.filter(jobs::id.eq(job)).select((jobs::status, jobs::error)).first(tx.conn()).await.optional()?;
    Ok(match row {
        Some((status, error)) if ENDED_BADLY.contains(&status.as_str()) => Some(error),
        Some(_) => None,
        None => Some(Some("its job no longer exists".into())),
    })
}

async fn shown(tx: &mut Tx, org: Uuid, row: &ReviewRow) -> Result<pb::AccessReview> {
    let extras = extras(tx, org, std::slice::from_ref(row)).await?;
    Ok(review_pb(row, extras.get(&row.id).unwrap_or(&ReviewExtras::default())))
}

/// The findings' counts of these reviews, and the fate of the running ones' jobs.
async fn extras(tx: &mut Tx, org: Uuid, rows: &[ReviewRow]) -> Result<HashMap<Uuid, ReviewExtras>> {
    let mut out: HashMap<Uuid, ReviewExtras> = HashMap::new();
    if rows.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let counts: Vec<(Uuid, FindingStatus, i64)> = findings_t::table
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::review_id.eq_any(&ids))
        .group_by((findings_t::review_id, findings_t::status))
        .select((findings_t::review_id, findings_t::status, diesel::dsl::count_star()))
        .load(tx.conn())
        .await?;
    for (review, status, n) in counts {
        out.entry(review).or_default().counts.insert(status, i32::try_from(n).unwrap_or(i32::MAX));
    }
    for row in rows.iter().filter(|r| r.status == ReviewStatus::Running) {
        if let Some(fate) = job_fate(tx, row.job_id).await? {
            out.entry(row.id).or_default().job_failed = Some(fate);
        }
    }
    Ok(out)
}

/// What the rules judge, as the organisation stands in `tx`.
async fn facts(tx: &mut Tx, org: Uuid, review: &ReviewRow, now: OffsetDateTime) -> Result<Facts> {
    type UserTuple = (Uuid, String, RoleName, bool, Option<OffsetDateTime>, Option<OffsetDateTime>, OffsetDateTime);
    let user_rows: Vec<UserTuple> = users::table
        .filter(users::organization_id.eq(org))
        .select((
            users::id,
            users::email,
            users::role,
            users::is_active,
            users::last_seen_at,
            users::last_login_at,
            users::created_at,
        ))
        .load(tx.conn())
        .await?;
    let users = user_rows
        .into_iter()
        .map(|(id, email, role, is_active, seen, login, created_at)| UserFacts {
            id,
            email,
            role,
            is_active,
            last_active_at: seen.max(login),
            created_at,
        })
        .collect();
    type TokenTuple = (Uuid, Uuid, String, String, OffsetDateTime, Option<OffsetDateTime>, Option<OffsetDateTime>);
    let token_rows: Vec<TokenTuple> = api_tokens::table
        .filter(api_tokens::organization_id.eq(org))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now)))
        .select((
            api_tokens::id,
            api_tokens::user_id,
            api_tokens::token_prefix,
            api_tokens::name,
            api_tokens::created_at,
            api_tokens::last_used_at,
            api_tokens::expires_at,
        ))
        .load(tx.conn())
        .await?;
    let tokens = token_rows
        .into_iter()
        .map(|(id, user_id, prefix, name, created_at, last_used_at, expires_at)| TokenFacts {
            id,
            user_id,
            prefix,
            name,
            created_at,
            last_used_at,
            expires_at,
        })
        .collect();
    let horizon = rules::confirmation_horizon(review.started_at, review.stale_after_days);
    let confirmed: Vec<Uuid> = findings_t::table
        .inner_join(reviews::table)
        .filter(findings_t::organization_id.eq(org))
        .filter(findings_t::kind.eq(FindingKind::AdminUnreviewed))
        .filter(findings_t::status.eq(FindingStatus::Retained))
        .filter(reviews::status.eq(ReviewStatus::SignedOff))
        .filter(reviews::started_at.gt(horizon))
        .select(findings_t::user_id)
        .distinct()
        .load(tx.conn())
        .await?;
    Ok(Facts {
        now,
        stale_after_days: review.stale_after_days,
        users,
        tokens,
        confirmed_admins: confirmed.into_iter().collect::<HashSet<_>>(),
    })
}

/// The report signed: the review, every finding with its decision, and the sign-off.
fn report(
    ctx: &RequestCtx,
    row: &ReviewRow,
    found: &[findings::FindingRow],
    signer: &str,
    at: OffsetDateTime,
    comment: Option<&str>,
) -> Value {
    let mut by_kind: std::collections::BTreeMap<String, i64> = Default::default();
    for f in found {
        *by_kind.entry(f.kind.to_string()).or_default() += 1;
    }
    let count = |s: FindingStatus| found.iter().filter(|f| f.status == s).count();
    json!({
        "format": REPORT_FORMAT,
        "organization": { "id": ctx.organization_id, "slug": ctx.organization_slug },
        "review": {
            "id": row.id,
            "started_by": row.started_by,
            "started_at": timefmt::timestamp(row.started_at),
            "collected_at": row.collected_at.map(timefmt::timestamp),
            "stale_after_days": row.stale_after_days,
        },
        "summary": {
            "findings": found.len(),
            "revoked": count(FindingStatus::Revoked),
            "retained": count(FindingStatus::Retained),
            "by_kind": by_kind,
        },
        "findings": found.iter().map(findings::FindingRow::reported).collect::<Vec<_>>(),
        "signed_off": {
            "by": signer,
            "email": ctx.actor.email(),
            "at": timefmt::timestamp(at),
            "comment": comment,
        },
    })
}
