//! Reports: every role reads; editors and admins prepare and generate; admins sign off and
//! publish. Only a DRAFT changes; approved content is frozen.

use std::collections::HashMap;
use std::sync::Arc;

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{
    bounded_text, choice, opt_actor, opt_choice, opt_uuid, parse_id, required_text, search_pattern,
};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, hex, new_id, timefmt, update};
use custos_db::schema::{compliance_reports as reports, organizations, report_sign_offs as sign_offs, users};
use custos_db::{Db, Tx, list, refs};
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

use crate::content;
use crate::model::{Decision, ReportRow, ReportStatus, ReportType, SignOffRow};

custos_db::service_error! {
    pub enum ReportsError {}
}

type Result<T, E = ReportsError> = std::result::Result<T, E>;

custos_core::page_responses! {
    pb::ListComplianceReportsResponse { pb::ComplianceReport } + next_cursor;
}

const REPORTS: &str = "compliance_reports";
/// The kind of a report's generation job.
pub const GENERATE_JOB: &str = "reports.generate";

#[derive(Clone)]
pub struct ReportsService {
    db: Db,
    waker: Option<Arc<Notify>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct GenerateJob {
    report: Uuid,
}

impl ReportRow {
    fn to_pb(&self, signoffs: Vec<SignOffRow>) -> pb::ComplianceReport {
        pb::ComplianceReport {
            id: self.id.to_string(),
            title: self.title.clone(),
            description: self.description.clone(),
            summary: self.summary.clone(),
            report_type: self.report_type.to_string(),
            status: self.status.to_string(),
            framework: self.framework_id.map(|f| f.to_string()),
            prepared_by: self.prepared_by.clone(),
            content: self.content.clone().unwrap_or_default(),
            content_sha256: self.content_sha256.clone(),
            generated_at: self.generated_at.map(timefmt::timestamp),
            job_id: self.job_id.map(|j| j.to_string()),
            sign_offs: signoffs
                .into_iter()
                .map(|s| pb::ReportSignOff {
                    sequence: s.sequence,
                    decision: s.decision.to_string(),
                    comment: s.comment,
                    signer: s.signer,
                    signed_at: timefmt::timestamp(s.signed_at),
                    content_sha256: s.content_sha256,
                })
                .collect(),
            published_at: self.published_at.map(timefmt::timestamp),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        }
    }

    fn to_input(&self) -> pb::ComplianceReportInput {
        pb::ComplianceReportInput {
            title: self.title.clone(),
            description: self.description.clone(),
            summary: self.summary.clone(),
            report_type: self.report_type.to_string(),
            framework: self.framework_id.map(|f| f.to_string()),
        }
    }

    fn audited(&self) -> Value {
        json!({
            "title": self.title, "report_type": self.report_type.to_string(), "status": self.status.to_string(),
            "framework": self.framework_id, "content_sha256": self.content_sha256,
            "generated_at": self.generated_at.map(timefmt::timestamp),
        })
    }
}

struct Fields {
    title: String,
    description: String,
    summary: String,
    report_type: ReportType,
    framework: Option<Uuid>,
}

fn validate(input: pb::ComplianceReportInput) -> Result<Fields> {
    let report_type: ReportType = choice("report_type", input.report_type.trim())?;
    let framework = opt_uuid("framework", input.framework.as_deref())?;
    if report_type == ReportType::StatementOfApplicability && framework.is_none() {
        return Err(Problem::invalid_field("framework", "a Statement of Applicability is of one framework").into());
    }
    Ok(Fields {
        title: required_text("title", input.title.trim(), 300)?,
        description: bounded_text("description", &input.description, 5000)?,
        summary: bounded_text("summary", &input.summary, 20_000)?,
        report_type,
        framework,
    })
}

struct Filters {
    framework: Option<Uuid>,
    report_type: Option<ReportType>,
    status: Option<ReportStatus>,
    prepared_by: Option<String>,
    search: Option<String>,
}

impl Filters {
    fn apply(&self, org: Uuid) -> reports::BoxedQuery<'static, Pg> {
        let mut q = reports::table.filter(reports::organization_id.eq(org)).into_boxed();
        if let Some(f) = self.framework {
            q = q.filter(reports::framework_id.eq(f));
        }
        if let Some(t) = self.report_type {
            q = q.filter(reports::report_type.eq(t));
        }
        if let Some(s) = self.status {
            q = q.filter(reports::status.eq(s));
        }
        if let Some(p) = &self.prepared_by {
            q = q.filter(reports::prepared_by.eq(p.clone()));
        }
        if let Some(p) = &self.search {
            q = q.filter(
                reports::title
                    .ilike(p.clone())
                    .or(reports::description.ilike(p.clone()))
                    .or(reports::summary.ilike(p.clone())),
            );
        }
        q
    }
}

fn sha256(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes()))
}

fn state(row: &ReportRow, wanted: ReportStatus, what: &str) -> Result<()> {
    if row.status == wanted {
        return Ok(());
    }
    let frozen = matches!(row.status, ReportStatus::Approved | ReportStatus::Published);
    Err(Problem::state_conflict(
        format!("Report is {}", row.status),
        if frozen {
            format!("Report {} is {}: its approved content is frozen and cannot {what}", row.id, row.status)
        } else {
            format!("Report {} is {}: it must be {wanted} to {what}", row.id, row.status)
        },
    )
    .into())
}

impl ReportsService {
    pub fn new(db: Db) -> Self {
        ReportsService { db, waker: None }
    }

    pub fn with_job_waker(mut self, waker: Arc<Notify>) -> Self {
        self.waker = Some(waker);
        self
    }

    async fn signoffs(&self, tx: &mut Tx, org: Uuid, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<SignOffRow>>> {
        let rows: Vec<SignOffRow> = sign_offs::table
            .filter(sign_offs::organization_id.eq(org))
            .filter(sign_offs::report_id.eq_any(ids))
            .order((sign_offs::report_id, sign_offs::sequence))
            .select(SignOffRow::as_select())
            .load(tx.conn())
            .await?;
        let mut out: HashMap<Uuid, Vec<SignOffRow>> = HashMap::new();
        for r in rows {
            out.entry(r.report_id).or_default().push(r);
        }
        Ok(out)
    }

    async fn answer(&self, tx: &mut Tx, org: Uuid, row: ReportRow) -> Result<pb::ComplianceReport> {
        let s = self.signoffs(tx, org, &[row.id]).await?.remove(&row.id).unwrap_or_default();
        Ok(row.to_pb(s))
    }

    /// `GET /api/compliance/reports/` (every role): filters `framework`, `report_type`, `status`,
    /// `prepared_by`, `search`; newest first.
    pub async fn list_compliance_reports(
        &self,
        ctx: &RequestCtx,
        req: pb::ListComplianceReportsRequest,
    ) -> Result<pb::ListComplianceReportsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = Filters {
            framework: opt_uuid("framework", req.framework.as_deref())?,
            report_type: opt_choice("report_type", req.report_type.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            prepared_by: opt_actor(req.prepared_by.as_deref()),
            search: search_pattern(req.search.as_deref()),
        };
        let after = list.after::<(OffsetDateTime, Uuid)>(REPORTS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((reports::created_at.desc(), reports::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(ReportRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((reports::created_at, reports::id), key));
        }
        let rows: Vec<ReportRow> = list::one_shot(q).load(tx.conn()).await?;
        let mut page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(REPORTS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let rows = std::mem::take(&mut page.results);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let mut s = self.signoffs(&mut tx, org, &ids).await?;
        tx.commit().await?;
        let results = rows.into_iter().map(|r| {
            let signed = s.remove(&r.id).unwrap_or_default();
            r.to_pb(signed)
        });
        Ok(pb::ListComplianceReportsResponse::from_page(page.with_results(results.collect())))
    }

    /// `GET /api/compliance/reports/{id}/` (every role).
    pub async fn get_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::GetComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        let out = self.answer(&mut tx, ctx.organization_id, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/reports/` (editors, admins): a DRAFT, to generate.
    pub async fn create_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let f = validate(req.report.unwrap_or_default())?;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        refs::all(&mut tx, ctx, refs::Kind::Framework, "framework", &f.framework.into_iter().collect::<Vec<_>>())
            .await?;
        let row: ReportRow = diesel::insert_into(reports::table)
            .values((
                reports::id.eq(new_id()),
                reports::organization_id.eq(ctx.organization_id),
                reports::title.eq(&f.title),
                reports::description.eq(&f.description),
                reports::summary.eq(&f.summary),
                reports::report_type.eq(f.report_type),
                reports::status.eq(ReportStatus::Draft),
                reports::framework_id.eq(f.framework),
                reports::prepared_by.eq(ctx.actor.label()),
            ))
            .returning(ReportRow::as_returning())
            .get_result(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "create", "compliance_report", row.id, Value::Null, row.audited()).await?;
        tx.commit().await?;
        Ok(row.to_pb(Vec::new()))
    }

    /// `PUT`/`PATCH /api/compliance/reports/{id}/` (editors, admins): a DRAFT only; a changed
    /// framework or type drops the generated content (it no longer describes the report).
    pub async fn update_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find(&mut tx, org, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.clone());
        let Some(input) = update::apply::<_, pb::ComplianceReport>(
            current.to_input(),
            req.report.unwrap_or_default(),
            mask.as_deref(),
        )?
        else {
            let out = self.answer(&mut tx, org, current).await?;
            tx.commit().await?;
            return Ok(out);
        };
        state(&current, ReportStatus::Draft, "change")?;
        let f = validate(input)?;
        refs::all(&mut tx, ctx, refs::Kind::Framework, "framework", &f.framework.into_iter().collect::<Vec<_>>())
            .await?;
        let stale = f.framework != current.framework_id || f.report_type != current.report_type;
        let row: ReportRow =
            diesel::update(reports::table.filter(reports::organization_id.eq(org)).filter(reports::id.eq(id)))
                .set((
                    reports::title.eq(&f.title),
                    reports::description.eq(&f.description),
                    reports::summary.eq(&f.summary),
                    reports::report_type.eq(f.report_type),
                    reports::framework_id.eq(f.framework),
                    reports::content.eq(if stale { None } else { current.content.clone() }),
                    reports::content_sha256.eq(if stale { None } else { current.content_sha256.clone() }),
                    reports::generated_at.eq(if stale { None } else { current.generated_at }),
                    reports::updated_at.eq(timefmt::now()),
                ))
                .returning(ReportRow::as_returning())
                .get_result(tx.conn())
                .await?;
        record_change(&mut tx, ctx, "update", "compliance_report", id, current.audited(), row.audited()).await?;
        let out = self.answer(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `DELETE /api/compliance/reports/{id}/` (editors, admins): never an approved or published
    /// report (the record of what was signed).
    pub async fn delete_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteComplianceReportRequest,
    ) -> Result<pb::DeleteComplianceReportResponse> {
        let id = parse_id("Report", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find(&mut tx, org, id, true).await?;
        if matches!(current.status, ReportStatus::Approved | ReportStatus::Published) {
            return Err(state(&current, ReportStatus::Draft, "be deleted").unwrap_err());
        }
        diesel::delete(reports::table.filter(reports::organization_id.eq(org)).filter(reports::id.eq(id)))
            .execute(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "delete", "compliance_report", id, current.audited(), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteComplianceReportResponse {})
    }

    /// `POST /api/compliance/reports/{id}/generate/` (editors, admins): fills a DRAFT from the
    /// live state as a job (answered with its `job_id`).
    pub async fn generate_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::GenerateComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find(&mut tx, org, id, true).await?;
        state(&current, ReportStatus::Draft, "be generated again")?;
        let job = queue::enqueue(
            &mut tx,
            Some(ctx),
            NewJob {
                organization_id: Some(org),
                kind: GENERATE_JOB.to_owned(),
                parameters: serde_json::to_value(GenerateJob { report: id }).map_err(Problem::internal)?,
                max_attempts: 3,
                created_by: ctx.actor.label(),
                schedule: None,
            },
        )
        .await?
        .ok_or_else(|| Problem::internal("the report's generation job was not queued"))?;
        let row: ReportRow =
            diesel::update(reports::table.filter(reports::organization_id.eq(org)).filter(reports::id.eq(id)))
                .set(reports::job_id.eq(job.id))
                .returning(ReportRow::as_returning())
                .get_result(tx.conn())
                .await?;
        let out = self.answer(&mut tx, org, row).await?;
        tx.commit().await?;
        if let Some(w) = &self.waker {
            w.notify_one();
        }
        Ok(out)
    }

    /// The generation: the content computed and frozen in one transaction (a rerun of a job that
    /// already did it finds the report generated by it, and does nothing).
    pub async fn generate_now(&self, ctx: &RequestCtx, id: Uuid, job: Option<Uuid>) -> Result<ReportRow> {
        let org = ctx.organization_id;
        let mut tx = self.db.begin(org).await?;
        let current = find(&mut tx, org, id, true).await?;
        state(&current, ReportStatus::Draft, "be generated again")?;
        let soa = current.report_type == ReportType::StatementOfApplicability;
        let value = content::compute(&mut tx, org, current.framework_id, soa).await?;
        let text = serde_json::to_string(&value).map_err(Problem::internal)?;
        let digest = sha256(&text);
        let now = timefmt::now();
        let row: ReportRow =
            diesel::update(reports::table.filter(reports::organization_id.eq(org)).filter(reports::id.eq(id)))
                .set((
                    reports::content.eq(&text),
                    reports::content_sha256.eq(&digest),
                    reports::generated_at.eq(now),
                    reports::job_id.eq(job.or(current.job_id)),
                    reports::updated_at.eq(now),
                ))
                .returning(ReportRow::as_returning())
                .get_result(tx.conn())
                .await?;
        record_change(&mut tx, ctx, "generate", "compliance_report", id, current.audited(), row.audited()).await?;
        tx.commit().await?;
        Ok(row)
    }

    /// `POST /api/compliance/reports/{id}/submit/` (editors, admins): DRAFT → IN_REVIEW, once
    /// generated.
    pub async fn submit_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::SubmitComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find(&mut tx, org, id, true).await?;
        state(&current, ReportStatus::Draft, "be submitted")?;
        if current.content.is_none() {
            return Err(
                Problem::state_conflict("Report not generated", "Generate the report before submitting it").into()
            );
        }
        let row = set_status(&mut tx, org, id, ReportStatus::InReview, None).await?;
        record_change(&mut tx, ctx, "submit", "compliance_report", id, current.audited(), row.audited()).await?;
        let out = self.answer(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/reports/{id}/sign_off/` (admins): APPROVED (the content frozen) or
    /// REJECTED (back to DRAFT), recorded with who, when, the comment and the SHA-256 of the exact
    /// content decided on.
    pub async fn sign_off_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::SignOffComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let decision: Decision = choice("decision", req.decision.trim())?;
        let comment = bounded_text("comment", &req.comment, 5000)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        state(&current, ReportStatus::InReview, "be signed off")?;
        let digest = current.content_sha256.clone().unwrap_or_default();
        let last: Option<i32> = sign_offs::table
            .filter(sign_offs::organization_id.eq(org))
            .filter(sign_offs::report_id.eq(id))
            .select(diesel::dsl::max(sign_offs::sequence))
            .first(tx.conn())
            .await?;
        diesel::insert_into(sign_offs::table)
            .values((
                sign_offs::organization_id.eq(org),
                sign_offs::report_id.eq(id),
                sign_offs::sequence.eq(last.unwrap_or(0) + 1),
                sign_offs::decision.eq(decision),
                sign_offs::comment.eq(&comment),
                sign_offs::signer.eq(ctx.actor.label()),
                sign_offs::content_sha256.eq(&digest),
            ))
            .execute(tx.conn())
            .await?;
        let next = if decision == Decision::Approved { ReportStatus::Approved } else { ReportStatus::Draft };
        let row = set_status(&mut tx, org, id, next, None).await?;
        let mut after = row.audited();
        after["sign_off"] = json!({ "decision": decision.to_string(), "comment": comment, "content_sha256": digest });
        record_change(&mut tx, ctx, "sign_off", "compliance_report", id, current.audited(), after).await?;
        let out = self.answer(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/reports/{id}/publish/` (admins): APPROVED → PUBLISHED.
    pub async fn publish_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::PublishComplianceReportRequest,
    ) -> Result<pb::ComplianceReport> {
        let id = parse_id("Report", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Admin).await?;
        let current = find(&mut tx, org, id, true).await?;
        if current.status != ReportStatus::Approved {
            return Err(Problem::state_conflict(
                format!("Report is {}", current.status),
                format!("Report {id} is {}: only an APPROVED report is published", current.status),
            )
            .into());
        }
        let row = set_status(&mut tx, org, id, ReportStatus::Published, Some(timefmt::now())).await?;
        record_change(&mut tx, ctx, "publish", "compliance_report", id, current.audited(), row.audited()).await?;
        let out = self.answer(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `GET /api/compliance/reports/{id}/render/?format=json|text|pdf` (every role): the frozen
    /// content as a document — the report with its content (JSON), the text the command prints,
    /// or the PDF/A-2b a board reads ([`crate::pdf`]). Each carries the content's SHA-256.
    pub async fn render_compliance_report(
        &self,
        ctx: &RequestCtx,
        req: pb::RenderComplianceReportRequest,
    ) -> Result<pb::RenderedReport> {
        let id = parse_id("Report", &req.id)?;
        let format = match req.format.trim() {
            "" | "json" => "json",
            "text" => "text",
            "pdf" => "pdf",
            other => {
                return Err(Problem::invalid_field("format", format!("{other:?} is not json, text or pdf")).into());
            }
        };
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx.organization_id, id, false).await?;
        let report = self.answer(&mut tx, ctx.organization_id, row.clone()).await?;
        let names = if format == "pdf" { people(&mut tx, ctx.organization_id, &report).await? } else { HashMap::new() };
        let organisation: String = if format == "pdf" {
            organizations::table
                .filter(organizations::id.eq(ctx.organization_id))
                .select(organizations::name)
                .first(tx.conn())
                .await?
        } else {
            String::new()
        };
        tx.commit().await?;
        let (Some(text), Some(digest), Some(generated_at)) = (&row.content, &row.content_sha256, row.generated_at)
        else {
            return Err(Problem::state_conflict("Report not generated", "Generate the report first").into());
        };
        let content: Value = serde_json::from_str(text).map_err(Problem::internal)?;
        let (content_type, body) = match format {
            "text" => (
                "text/plain; charset=utf-8",
                content::render_text(
                    &row.title,
                    &row.report_type.to_string(),
                    &timefmt::timestamp(generated_at),
                    digest,
                    &content,
                )
                .into_bytes(),
            ),
            "pdf" => {
                // Laying out thousands of rows and subsetting the font is CPU work: off the runtime.
                let pdf = tokio::task::spawn_blocking(move || {
                    crate::pdf::render(&report, &content, &organisation, generated_at, &names)
                })
                .await
                .map_err(Problem::internal)?
                .map_err(Problem::internal)?;
                ("application/pdf", pdf)
            }
            _ => {
                let mut doc = serde_json::to_value(&report).map_err(Problem::internal)?;
                doc["content"] = content;
                ("application/json", serde_json::to_vec_pretty(&doc).map_err(Problem::internal)?)
            }
        };
        Ok(pb::RenderedReport {
            format: format.to_owned(),
            content_type: content_type.to_owned(),
            body,
            content_sha256: digest.clone(),
        })
    }
}

/// Who the report's actors are (its preparer and signers, `user:<id>`), for a rendering people
/// read: "Name (e-mail)".
async fn people(tx: &mut Tx, org: Uuid, report: &pb::ComplianceReport) -> Result<HashMap<String, String>> {
    let labels = std::iter::once(&report.prepared_by).chain(report.sign_offs.iter().map(|s| &s.signer));
    let ids: Vec<Uuid> =
        labels.filter_map(|l| l.strip_prefix("user:")).filter_map(|id| Uuid::parse_str(id).ok()).collect();
    let found: Vec<(Uuid, String, String)> = users::table
        .filter(users::organization_id.eq(org))
        .filter(users::id.eq_any(&ids))
        .select((users::id, users::display_name, users::email))
        .load(tx.conn())
        .await?;
    Ok(found
        .into_iter()
        .map(|(id, name, email)| {
            let shown = if name.trim().is_empty() { email } else { format!("{name} ({email})") };
            (format!("user:{id}"), shown)
        })
        .collect())
}

async fn set_status(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    status: ReportStatus,
    published_at: Option<OffsetDateTime>,
) -> Result<ReportRow> {
    Ok(diesel::update(reports::table.filter(reports::organization_id.eq(org)).filter(reports::id.eq(id)))
        .set((
            reports::status.eq(status),
            reports::published_at.eq(published_at),
            reports::updated_at.eq(timefmt::now()),
        ))
        .returning(ReportRow::as_returning())
        .get_result(tx.conn())
        .await?)
}

async fn find(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<ReportRow> {
    let q = reports::table
        .filter(reports::organization_id.eq(org))
        .filter(reports::id.eq(id))
        .select(ReportRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Report", id))?)
}

/// The generation job's kind.
pub fn generate_job(service: ReportsService) -> Kind {
    Kind::new(
        GENERATE_JOB,
        Scope::Organization,
        "Generates a compliance report from the live state",
        move |job: Job| {
            let service = service.clone();
            async move {
                let org = job.organization().ok_or_else(|| JobError::fatal("a report belongs to an organisation"))?;
                let params: GenerateJob = job.params()?;
                let ctx = job.ctx(org);
                let row = service
                    .generate_now(&ctx, params.report, Some(job.id()))
                    .await
                    .map_err(|e| JobError::from_problem(e.into()))?;
                job.set_progress(1.0);
                Ok(
                    json!({ "report": row.id, "content_sha256": row.content_sha256, "generated_at": row.generated_at.map(timefmt::timestamp) }),
                )
            }
        },
    )
}
