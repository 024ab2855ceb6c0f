//! Every framework and requirement operation, written once.

use std::collections::HashMap;

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{self, Choice, opt_choice, opt_uuid, parse_id, parse_opt_date, parse_uuid, search_pattern};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::schema::{
    compliance_checkpoints, evidence, evidence_requirements, framework_requirement_counts, frameworks,
    requirement_evidence, requirement_mappings, requirements,
};
use custos_db::{Db, DbError, Tx, list, refs};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::*;

/// The lists' cursor kinds.
const FRAMEWORKS: &str = "frameworks";
const REQUIREMENTS: &str = "requirements";

custos_core::page_responses! {
    pb::ListFrameworksResponse { pb::Framework } + next_cursor;
    pb::ListRequirementsResponse { pb::Requirement } + next_cursor;
}

diesel::define_sql_function!(fn array_to_string(array: Array<Text>, delimiter: Text) -> Text);

const NAME_MAX: usize = 200;
const SHORT_MAX: usize = 100;

custos_db::service_error! {
    pub enum FrameworksError {}
}

pub(crate) type Result<T, E = FrameworksError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct FrameworksService {
    db: Db,
    /// Wakes this process's job runner when a request queues a job (a large import).
    pub(crate) job_waker: Option<std::sync::Arc<tokio::sync::Notify>>,
}

fn framework_not_found(id: impl std::fmt::Display) -> FrameworksError {
    Problem::not_found("Framework", id).into()
}

fn requirement_not_found(id: impl std::fmt::Display) -> FrameworksError {
    Problem::not_found("Requirement", id).into()
}

/// The seed's exact error body for a bad compliance status.
fn invalid_status() -> FrameworksError {
    Problem::invalid("Invalid compliance status", format!("Status must be one of: {}", ComplianceStatus::allowed()))
        .into()
}

impl FrameworksService {
    pub fn new(db: Db) -> Self {
        FrameworksService { db, job_waker: None }
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.db.begin_as(ctx, access).await?)
    }

    // ---- frameworks -------------------------------------------------------------------------

    pub async fn list_frameworks(
        &self,
        ctx: &RequestCtx,
        req: pb::ListFrameworksRequest,
    ) -> Result<pb::ListFrameworksResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = FrameworkFilters::parse(&req)?;
        let after = list.after::<(String, Uuid)>(FRAMEWORKS)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((frameworks::name.asc(), frameworks::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(FrameworkRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((frameworks::name, frameworks::id), key));
        }
        let rows: Vec<FrameworkRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(FRAMEWORKS, &(r.name.clone(), r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let counts = requirement_counts(&mut tx, ctx, page.results.iter().map(|r| r.id).collect()).await?;
        tx.commit().await?;
        Ok(pb::ListFrameworksResponse::from_page(page.map(|r| r.to_pb(counts.get(&r.id).copied().unwrap_or(0)))))
    }

    pub async fn get_framework(&self, ctx: &RequestCtx, req: pb::GetFrameworkRequest) -> Result<pb::Framework> {
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let framework = load_framework_pb(&mut tx, ctx, id).await?;
        tx.commit().await?;
        Ok(framework)
    }

    pub async fn create_framework(&self, ctx: &RequestCtx, req: pb::CreateFrameworkRequest) -> Result<pb::Framework> {
        let fields = validate_framework(req.framework.unwrap_or_default())?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let id = new_id();
        let row: FrameworkRow = custos_db::prepared(
            diesel::insert_into(frameworks::table)
                .values((frameworks::id.eq(id), frameworks::organization_id.eq(ctx.organization_id), &fields))
                .returning(FrameworkRow::as_returning()),
        )
        .get_result(tx.conn())
        .await?;
        let created = row.to_pb(0);
        record_change(&mut tx, ctx, "create", "framework", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_framework(&self, ctx: &RequestCtx, req: pb::UpdateFrameworkRequest) -> Result<pb::Framework> {
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = lock_framework(&mut tx, ctx, id).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::Framework>(current.to_input(), req.framework.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            let unchanged = framework_pb(&mut tx, ctx, &current).await?;
            tx.commit().await?;
            return Ok(unchanged);
        };
        let fields = validate_framework(input)?;
        let before = framework_pb(&mut tx, ctx, &current).await?;
        diesel::update(
            frameworks::table.filter(frameworks::organization_id.eq(ctx.organization_id)).filter(frameworks::id.eq(id)),
        )
        .set((&fields, frameworks::updated_at.eq(timefmt::now())))
        .execute(tx.conn())
        .await?;
        let after = load_framework_pb(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "update", "framework", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Deletes a framework and, with it, its requirements (each recorded in the audit trail).
    pub async fn delete_framework(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteFrameworkRequest,
    ) -> Result<pb::DeleteFrameworkResponse> {
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = lock_framework(&mut tx, ctx, id).await?;
        let before = framework_pb(&mut tx, ctx, &current).await?;
        // Locked: a link to one of them, or a child of one, made meanwhile would be cascaded
        // away without an entry (their writers' foreign-key checks wait on these locks).
        let doomed: Vec<RequirementRow> = requirements::table
            .filter(requirements::organization_id.eq(ctx.organization_id))
            .filter(requirements::framework_id.eq(id))
            .order((requirements::created_at.asc(), requirements::id.asc()))
            .select(RequirementRow::as_select())
            .for_update()
            .load(tx.conn())
            .await?;
        let doomed_ids: Vec<Uuid> = doomed.iter().map(|r| r.id).collect();
        let detached = Detached::read(&mut tx, ctx, Some(id), &doomed_ids).await?;
        diesel::delete(
            frameworks::table.filter(frameworks::organization_id.eq(ctx.organization_id)).filter(frameworks::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        detached.record(&mut tx, ctx).await?;
        for row in &doomed {
            record_change(
                &mut tx,
                ctx,
                "delete",
                "requirement",
                row.id,
                snapshot(&row.to_pb(&before.name)),
                Value::Null,
            )
            .await?;
        }
        record_change(&mut tx, ctx, "delete", "framework", id, snapshot(&before), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteFrameworkResponse {})
    }

    pub async fn get_compliance_summary(
        &self,
        ctx: &RequestCtx,
        req: pb::ComplianceSummaryRequest,
    ) -> Result<pb::ComplianceSummary> {
        let id = parse_id("Framework", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        find_framework(&mut tx, ctx, id).await?;
        let summary = summary_in(&mut tx, ctx.organization_id, id, req.include_mapped == Some(true)).await?;
        tx.commit().await?;
        Ok(summary)
    }

    // ---- requirements -----------------------------------------------------------------------

    pub async fn list_requirements(
        &self,
        ctx: &RequestCtx,
        req: pb::ListRequirementsRequest,
    ) -> Result<pb::ListRequirementsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = RequirementFilters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(REQUIREMENTS)?;
        let (org, today) = (ctx.organization_id, timefmt::today());
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org, today)
            .inner_join(frameworks::table)
            .order((requirements::created_at.asc(), requirements::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select((RequirementRow::as_select(), frameworks::name));
        if let Some(key) = after {
            q = q.filter(list::after((requirements::created_at, requirements::id), key));
        }
        let rows: Vec<(RequirementRow, String)> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |(r, _)| Some(cursor(REQUIREMENTS, &(r.created_at, r.id))),
            || filters.apply(org, today).select(list::row()),
        )
        .await?;
        let mut page = page.map(|(r, name)| r.to_pb(&name));
        add_evidence_counts(&mut tx, ctx, &mut page.results).await?;
        tx.commit().await?;
        Ok(pb::ListRequirementsResponse::from_page(page))
    }

    /// The requirements of one framework (`/frameworks/{id}/requirements/`): 404 for an unknown
    /// framework, where the flat list's `framework` filter simply matches nothing.
    pub async fn list_framework_requirements(
        &self,
        ctx: &RequestCtx,
        req: pb::ListFrameworkRequirementsRequest,
    ) -> Result<pb::ListRequirementsResponse> {
        let id = parse_id("Framework", &req.id)?;
        {
            let mut tx = self.begin(ctx, Access::Read).await?;
            find_framework(&mut tx, ctx, id).await?;
            tx.commit().await?;
        }
        let flat = pb::ListRequirementsRequest {
            framework: Some(id.to_string()),
            compliance_status: req.compliance_status,
            priority: req.priority,
            page: req.page,
            page_size: req.page_size,
            cursor: req.cursor,
            ..Default::default()
        };
        self.list_requirements(ctx, flat).await
    }

    pub async fn get_requirement(&self, ctx: &RequestCtx, req: pb::GetRequirementRequest) -> Result<pb::Requirement> {
        let id = parse_id("Requirement", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let requirement = load_requirement_pb(&mut tx, ctx, id).await?;
        tx.commit().await?;
        Ok(requirement)
    }

    pub async fn create_requirement(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateRequirementRequest,
    ) -> Result<pb::Requirement> {
        let mut tx = self.begin(ctx, Access::Write).await?;
        let fields = validate_requirement(&mut tx, ctx, req.requirement.unwrap_or_default(), None).await?;
        let id = new_id();
        custos_db::prepared(diesel::insert_into(requirements::table).values((
            requirements::id.eq(id),
            requirements::organization_id.eq(ctx.organization_id),
            &fields,
        )))
        .execute(tx.conn())
        .await
        .map_err(|e| duplicate_requirement(e, &fields.requirement_id))?;
        let created = load_requirement_pb(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "create", "requirement", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_requirement(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateRequirementRequest,
    ) -> Result<pb::Requirement> {
        let id = parse_id("Requirement", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        // Parent changes are serialised per organisation, before any row is locked: two at once
        // could each pass the cycle check and together close a loop (A under B, B under A).
        let names_parent =
            req.requirement.as_ref().and_then(|r| r.parent.as_deref()).is_some_and(|p| !p.trim().is_empty());
        if names_parent {
            tx.lock_named(&format!("custos requirement tree {}", ctx.organization_id)).await?;
        }
        // Its framework before the requirement itself, in the order a framework's deletion locks
        // them (the framework, then its requirements): the reference check below locks the
        // framework too, and taking it after the requirement deadlocked against a deletion.
        lock_framework_of(&mut tx, ctx, id).await?;
        let current = lock_requirement(&mut tx, ctx, id).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::Requirement>(current.to_input(), req.requirement.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            let unchanged = load_requirement_pb(&mut tx, ctx, id).await?;
            tx.commit().await?;
            return Ok(unchanged);
        };
        let fields = validate_requirement(&mut tx, ctx, input, Some(&current)).await?;
        if fields.framework_id != current.framework_id {
            // Its children would be left under a parent in another framework.
            let children: i64 = requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::parent_id.eq(id))
                .count()
                .get_result(tx.conn())
                .await?;
            if children > 0 {
                return Err(Problem::state_conflict(
                    "Requirement has children",
                    format!("Requirement {id} has {children} child requirement(s); move or detach them before moving it to another framework"),
                )
                .into());
            }
        }
        let before = load_requirement_pb(&mut tx, ctx, id).await?;
        // A change of status is an assessment: it dates the assessment, as update_status does.
        let last_assessment = if fields.compliance_status != current.compliance_status {
            Some(timefmt::today())
        } else {
            current.last_assessment_date
        };
        let changes = diesel::update(
            requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::id.eq(id)),
        )
        .set((
            &fields,
            requirements::updated_at.eq(timefmt::now()),
            requirements::last_assessment_date.eq(last_assessment),
        ));
        changes.execute(tx.conn()).await.map_err(|e| duplicate_requirement(e, &fields.requirement_id))?;
        let after = load_requirement_pb(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "update", "requirement", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn delete_requirement(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteRequirementRequest,
    ) -> Result<pb::DeleteRequirementResponse> {
        let id = parse_id("Requirement", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        lock_requirement(&mut tx, ctx, id).await?;
        let before = load_requirement_pb(&mut tx, ctx, id).await?;
        let detached = Detached::read(&mut tx, ctx, None, &[id]).await?;
        diesel::delete(
            requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        detached.record(&mut tx, ctx).await?;
        record_change(&mut tx, ctx, "delete", "requirement", id, snapshot(&before), Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteRequirementResponse {})
    }

    /// Records an assessment outcome; the assessment date becomes today.
    pub async fn update_requirement_status(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateStatusRequest,
    ) -> Result<pb::Requirement> {
        let id = parse_id("Requirement", &req.id)?;
        let status = ComplianceStatus::ALL
            .iter()
            .copied()
            .find(|s| s.as_str() == req.compliance_status)
            .ok_or_else(invalid_status)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        lock_requirement(&mut tx, ctx, id).await?;
        let before = load_requirement_pb(&mut tx, ctx, id).await?;
        diesel::update(
            requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::id.eq(id)),
        )
        .set((
            requirements::compliance_status.eq(status),
            requirements::last_assessment_date.eq(timefmt::today()),
            requirements::updated_at.eq(timefmt::now()),
            // Assessed itself now, not carried over.
            requirements::status_derived_from.eq(None::<Uuid>),
        ))
        .execute(tx.conn())
        .await?;
        let after = load_requirement_pb(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "update_status", "requirement", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Schedules the next assessment: today or a later date.
    pub async fn schedule_assessment(
        &self,
        ctx: &RequestCtx,
        req: pb::ScheduleAssessmentRequest,
    ) -> Result<pb::Requirement> {
        let id = parse_id("Requirement", &req.id)?;
        if req.assessment_date.trim().is_empty() {
            return Err(Problem::invalid_field("assessment_date", "This field is required").into());
        }
        let date = filter::parse_date("assessment_date", &req.assessment_date)?;
        if date < timefmt::today() {
            return Err(Problem::invalid("Invalid assessment date", "assessment_date cannot be in the past").into());
        }
        let mut tx = self.begin(ctx, Access::Write).await?;
        lock_requirement(&mut tx, ctx, id).await?;
        let before = load_requirement_pb(&mut tx, ctx, id).await?;
        diesel::update(
            requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::id.eq(id)),
        )
        .set((requirements::next_assessment_date.eq(date), requirements::updated_at.eq(timefmt::now())))
        .execute(tx.conn())
        .await?;
        let after = load_requirement_pb(&mut tx, ctx, id).await?;
        record_change(&mut tx, ctx, "schedule_assessment", "requirement", id, snapshot(&before), snapshot(&after))
            .await?;
        tx.commit().await?;
        Ok(after)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }
}

fn duplicate_requirement(e: diesel::result::Error, requirement_id: &str) -> FrameworksError {
    DbError::from(e)
        .unique_as_conflict(
            "Duplicate requirement",
            format!("The framework already has a requirement with requirement_id {requirement_id:?}"),
        )
        .into()
}

/// The requirement counts of frameworks, as the triggers keep them (exact, and read in one
/// index lookup per framework however many requirements it has).
async fn requirement_counts(tx: &mut Tx, ctx: &RequestCtx, ids: Vec<Uuid>) -> Result<HashMap<Uuid, i64>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Uuid, i64)> = framework_requirement_counts::table
        .filter(framework_requirement_counts::organization_id.eq(ctx.organization_id))
        .filter(framework_requirement_counts::framework_id.eq_any(ids))
        .select((framework_requirement_counts::framework_id, framework_requirement_counts::requirements))
        .load(tx.conn())
        .await?;
    Ok(rows.into_iter().collect())
}

/// Locks (`FOR KEY SHARE`, as a reference to it does) the framework requirement `id` is in, if
/// there is such a requirement.
async fn lock_framework_of(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<()> {
    let framework: Option<Uuid> = requirements::table
        .filter(requirements::organization_id.eq(ctx.organization_id))
        .filter(requirements::id.eq(id))
        .select(requirements::framework_id)
        .first(tx.conn())
        .await
        .optional()?;
    if let Some(framework) = framework {
        frameworks::table
            .filter(frameworks::organization_id.eq(ctx.organization_id))
            .filter(frameworks::id.eq(framework))
            .select(frameworks::id)
            .for_key_share()
            .first::<Uuid>(tx.conn())
            .await
            .optional()?;
    }
    Ok(())
}

async fn lock_framework(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<FrameworkRow> {
    frameworks::table
        .filter(frameworks::organization_id.eq(ctx.organization_id))
        .filter(frameworks::id.eq(id))
        .select(FrameworkRow::as_select())
        .for_update()
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| framework_not_found(id))
}

/// Reads a framework of the caller's organisation without locking it.
pub(crate) async fn find_framework(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<FrameworkRow> {
    frameworks::table
        .filter(frameworks::organization_id.eq(ctx.organization_id))
        .filter(frameworks::id.eq(id))
        .select(FrameworkRow::as_select())
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| framework_not_found(id))
}

async fn load_framework_pb(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<pb::Framework> {
    let row = find_framework(tx, ctx, id).await?;
    framework_pb(tx, ctx, &row).await
}

/// A framework row as the API shows it (with its live requirement count).
async fn framework_pb(tx: &mut Tx, ctx: &RequestCtx, row: &FrameworkRow) -> Result<pb::Framework> {
    let counts = requirement_counts(tx, ctx, vec![row.id]).await?;
    Ok(row.to_pb(counts.get(&row.id).copied().unwrap_or(0)))
}

async fn lock_requirement(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<RequirementRow> {
    requirements::table
        .filter(requirements::organization_id.eq(ctx.organization_id))
        .filter(requirements::id.eq(id))
        .select(RequirementRow::as_select())
        .for_update()
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| requirement_not_found(id))
}

impl FrameworksService {
    /// One requirement as the API shows it, in `tx` (for other modules of this crate).
    pub(crate) async fn requirement_pb(&self, tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<pb::Requirement> {
        load_requirement_pb(tx, ctx, id).await
    }
}

async fn load_requirement_pb(tx: &mut Tx, ctx: &RequestCtx, id: Uuid) -> Result<pb::Requirement> {
    let (row, name): (RequirementRow, String) = requirements::table
        .inner_join(frameworks::table)
        .filter(requirements::organization_id.eq(ctx.organization_id))
        .filter(requirements::id.eq(id))
        .select((RequirementRow::as_select(), frameworks::name))
        .first(tx.conn())
        .await
        .optional()?
        .ok_or_else(|| requirement_not_found(id))?;
    let mut requirement = [row.to_pb(&name)];
    add_evidence_counts(tx, ctx, &mut requirement).await?;
    let [requirement] = requirement;
    Ok(requirement)
}

/// Fills in how much evidence supports each requirement (the `requirement_evidence` view).
async fn add_evidence_counts(tx: &mut Tx, ctx: &RequestCtx, requirements: &mut [pb::Requirement]) -> Result<()> {
    let ids: Vec<Uuid> = requirements.iter().filter_map(|r| r.id.parse().ok()).collect();
    let counts: HashMap<Uuid, (i64, i64)> = requirement_evidence::table
        .filter(requirement_evidence::organization_id.eq(ctx.organization_id))
        .filter(requirement_evidence::requirement_id.eq_any(&ids))
        .select((
            requirement_evidence::requirement_id,
            (requirement_evidence::current_count, requirement_evidence::expired_count),
        ))
        .load::<(Uuid, (i64, i64))>(tx.conn())
        .await?
        .into_iter()
        .collect();
    for r in requirements {
        if let Some((current, expired)) = r.id.parse().ok().and_then(|id: Uuid| counts.get(&id)) {
            r.evidence_count = *current;
            r.expired_evidence_count = *expired;
        }
    }
    Ok(())
}

fn clean_list(field: &str, values: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let v = filter::required_text(field, &v, SHORT_MAX)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn validate_framework(input: pb::FrameworkInput) -> Result<FrameworkFields> {
    let framework_type = FrameworkType::parse_field("framework_type", input.framework_type.trim())?;
    let effective_date = parse_opt_date("effective_date", input.effective_date.as_deref())?;
    let review_date = parse_opt_date("review_date", input.review_date.as_deref())?;
    if let (Some(e), Some(r)) = (effective_date, review_date)
        && r < e
    {
        return Err(Problem::invalid_field("review_date", "review_date cannot be before effective_date").into());
    }
    Ok(FrameworkFields {
        name: filter::required_text("name", &input.name, NAME_MAX)?,
        framework_type,
        version: filter::bounded_text("version", input.version.trim(), 50)?,
        description: filter::bounded_text("description", &input.description, 20_000)?,
        applicable_regions: clean_list("applicable_regions", input.applicable_regions)?,
        industry_sectors: clean_list("industry_sectors", input.industry_sectors)?,
        is_active: input.is_active.unwrap_or(true),
        effective_date,
        review_date,
    })
}

/// Whether `ancestor` is `requirement` or above it in the tree (bounded: a tree is never deeper
/// than a few levels, and a loop left by anything else must not loop this query).
async fn descends_from(tx: &mut Tx, organization_id: Uuid, requirement: Uuid, ancestor: Uuid) -> Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        found: bool,
    }
    let found: Found = diesel::sql_query(
        "WITH RECURSIVE up(id, parent_id, depth) AS (
           SELECT id, parent_id, 0 FROM requirements WHERE organization_id = $1 AND id = $2
           UNION ALL
           SELECT r.id, r.parent_id, up.depth + 1 FROM requirements r JOIN up ON r.id = up.parent_id
            WHERE r.organization_id = $1 AND up.depth < 1000)
         SELECT EXISTS (SELECT 1 FROM up WHERE id = $3) AS found",
    )
    .bind::<diesel::sql_types::Uuid, _>(organization_id)
    .bind::<diesel::sql_types::Uuid, _>(requirement)
    .bind::<diesel::sql_types::Uuid, _>(ancestor)
    .get_result(tx.conn())
    .await?;
    Ok(found.found)
}

async fn validate_requirement(
    tx: &mut Tx,
    ctx: &RequestCtx,
    input: pb::RequirementInput,
    current: Option<&RequirementRow>,
) -> Result<RequirementFields> {
    let Some(framework_id) = refs::framework(tx, ctx, "framework", Some(&input.framework)).await? else {
        return Err(Problem::invalid_field("framework", "This field is required").into());
    };
    let requirement_type = RequirementType::parse_field("requirement_type", input.requirement_type.trim())?;
    let priority = Priority::parse_field("priority", input.priority.trim())?;
    let compliance_status = opt_choice("compliance_status", input.compliance_status.as_deref())?
        .unwrap_or_else(|| current.map_or(ComplianceStatus::NotAssessed, |c| c.compliance_status));
    let assigned_to = refs::user(tx, ctx, "assigned_to", input.assigned_to.as_deref()).await?;
    let parent_id = match input.parent.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => {
            let parent = parse_uuid("parent", raw)?;
            if current.is_some_and(|c| c.id == parent) {
                return Err(Problem::invalid_field("parent", "a requirement cannot be its own parent").into());
            }
            let found: Option<Uuid> = requirements::table
                .filter(requirements::organization_id.eq(ctx.organization_id))
                .filter(requirements::framework_id.eq(framework_id))
                .filter(requirements::id.eq(parent))
                .select(requirements::id)
                .first(tx.conn())
                .await
                .optional()?;
            let parent = found.ok_or_else(|| {
                Problem::invalid_field("parent", format!("No requirement {parent} in this framework"))
            })?;
            if let Some(current) = current
                && descends_from(tx, ctx.organization_id, parent, current.id).await?
            {
                return Err(Problem::invalid_field(
                    "parent",
                    format!("requirement {parent} is below this one; a requirement cannot be under its own descendant"),
                )
                .into());
            }
            Some(parent)
        }
    };
    let is_applicable = input.is_applicable.unwrap_or(true);
    let applicability_justification =
        filter::bounded_text("applicability_justification", input.applicability_justification.trim(), 5000)?;
    if !is_applicable && applicability_justification.is_empty() {
        return Err(Problem::invalid_field(
            "applicability_justification",
            "a requirement excluded from scope says why (ISO/IEC 27001 6.1.3 d: the Statement of Applicability justifies exclusions)",
        )
        .into());
    }
    Ok(RequirementFields {
        framework_id,
        parent_id,
        requirement_id: filter::required_text("requirement_id", input.requirement_id.trim(), SHORT_MAX)?,
        title: filter::required_text("title", &input.title, 500)?,
        description: filter::bounded_text("description", &input.description, 20_000)?,
        section: filter::bounded_text("section", input.section.trim(), NAME_MAX)?,
        requirement_type,
        priority,
        compliance_status,
        is_implemented: input.is_implemented.unwrap_or(false),
        assigned_to,
        next_assessment_date: parse_opt_date("next_assessment_date", input.next_assessment_date.as_deref())?,
        implementation_notes: filter::bounded_text("implementation_notes", &input.implementation_notes, 20_000)?,
        is_applicable,
        applicability_justification,
    })
}

/// Parsed list filters of frameworks.
struct FrameworkFilters {
    framework_type: Option<FrameworkType>,
    is_active: Option<bool>,
    after: Option<time::Date>,
    before: Option<time::Date>,
    search: Option<String>,
    catalog_key: Option<String>,
}

impl FrameworkFilters {
    fn parse(req: &pb::ListFrameworksRequest) -> Result<Self> {
        Ok(FrameworkFilters {
            framework_type: opt_choice("framework_type", req.framework_type.as_deref())?,
            is_active: req.is_active,
            after: parse_opt_date("effective_date_after", req.effective_date_after.as_deref())?,
            before: parse_opt_date("effective_date_before", req.effective_date_before.as_deref())?,
            search: search_pattern(req.search.as_deref()),
            catalog_key: filter::opt_text(req.catalog_key.as_deref()).map(str::to_owned),
        })
    }

    fn apply(&self, org: Uuid) -> frameworks::BoxedQuery<'static, Pg> {
        let mut q = frameworks::table.filter(frameworks::organization_id.eq(org)).into_boxed();
        if let Some(key) = &self.catalog_key {
            q = q.filter(frameworks::catalog_key.eq(key.clone()));
        }
        if let Some(t) = self.framework_type {
            q = q.filter(frameworks::framework_type.eq(t));
        }
        if let Some(active) = self.is_active {
            q = q.filter(frameworks::is_active.eq(active));
        }
        if let Some(after) = self.after {
            q = q.filter(frameworks::effective_date.ge(after));
        }
        if let Some(before) = self.before {
            q = q.filter(frameworks::effective_date.le(before));
        }
        if let Some(pattern) = &self.search {
            q = q.filter(
                frameworks::name
                    .ilike(pattern.clone())
                    .or(frameworks::description.ilike(pattern.clone()))
                    .or(array_to_string(frameworks::applicable_regions, " ").ilike(pattern.clone()))
                    .or(array_to_string(frameworks::industry_sectors, " ").ilike(pattern.clone())),
            );
        }
        q
    }
}

/// Parsed list filters of requirements.
struct RequirementFilters {
    framework: Option<Uuid>,
    compliance_status: Option<ComplianceStatus>,
    requirement_type: Option<RequirementType>,
    priority: Option<Priority>,
    is_implemented: Option<bool>,
    assigned_to: Option<Uuid>,
    overdue: Option<bool>,
    search: Option<String>,
}

impl RequirementFilters {
    fn parse(req: &pb::ListRequirementsRequest) -> Result<Self> {
        Ok(RequirementFilters {
            framework: opt_uuid("framework", req.framework.as_deref())?,
            compliance_status: match req.compliance_status.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(raw) => {
                    Some(ComplianceStatus::ALL.iter().copied().find(|s| s.as_str() == raw).ok_or_else(invalid_status)?)
                }
            },
            requirement_type: opt_choice("requirement_type", req.requirement_type.as_deref())?,
            priority: opt_choice("priority", req.priority.as_deref())?,
            is_implemented: req.is_implemented,
            assigned_to: opt_uuid("assigned_to", req.assigned_to.as_deref())?,
            overdue: req.overdue,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid, today: time::Date) -> requirements::BoxedQuery<'static, Pg> {
        let mut q = requirements::table.filter(requirements::organization_id.eq(org)).into_boxed();
        if let Some(f) = self.framework {
            q = q.filter(requirements::framework_id.eq(f));
        }
        if let Some(s) = self.compliance_status {
            q = q.filter(requirements::compliance_status.eq(s));
        }
        if let Some(t) = self.requirement_type {
            q = q.filter(requirements::requirement_type.eq(t));
        }
        if let Some(p) = self.priority {
            q = q.filter(requirements::priority.eq(p));
        }
        if let Some(i) = self.is_implemented {
            q = q.filter(requirements::is_implemented.eq(i));
        }
        if let Some(u) = self.assigned_to {
            q = q.filter(requirements::assigned_to.eq(u));
        }
        match self.overdue {
            Some(true) => q = q.filter(requirements::next_assessment_date.lt(today)),
            Some(false) => {
                q = q.filter(
                    requirements::next_assessment_date.is_null().or(requirements::next_assessment_date.ge(today)),
                )
            }
            None => {}
        }
        if let Some(pattern) = &self.search {
            // Through `custos_requirement_search`, so that the trigram indexes serve the ILIKE under RLS
            // (migration 000021 says why): it applies the tenant itself and answers ids only.
            q = q.filter(
                diesel::dsl::sql::<diesel::sql_types::Bool>("requirements.id IN (SELECT custos_requirement_search(")
                    .bind::<Text, _>(pattern.clone())
                    .sql("))"),
            );
        }
        q
    }
}

/// What the database changes elsewhere when requirements (and their framework) are deleted:
/// compliance checkpoints lose their framework, surviving requirements their parent, evidence its
/// links (`ON DELETE SET NULL` / `CASCADE`). Read before the delete and recorded after it, in the
/// same transaction, so that a cascaded change is in the audit trail like any other.
struct Detached {
    /// The deleted framework and the checkpoints that named it.
    checkpoints: Option<(Uuid, Vec<Uuid>)>,
    /// Surviving requirements and the deleted parent each loses.
    orphans: Vec<(Uuid, Uuid)>,
    /// Evidence and its requirement links before the delete (in the API's order), and after.
    evidence: Vec<(Uuid, Vec<String>, Vec<String>)>,
    /// Mappings to or from a deleted requirement, which go with it: (id, what they were).
    mappings: Vec<(Uuid, Value)>,
}

impl Detached {
    async fn read(tx: &mut Tx, ctx: &RequestCtx, framework: Option<Uuid>, doomed: &[Uuid]) -> Result<Detached> {
        let org = ctx.organization_id;
        let checkpoints = match framework {
            Some(fw) => {
                // Locked, as the evidence below: a checkpoint deleted or moved meanwhile is then
                // not recorded as losing a framework it no longer had.
                let ids: Vec<Uuid> = compliance_checkpoints::table
                    .filter(compliance_checkpoints::organization_id.eq(org))
                    .filter(compliance_checkpoints::framework_id.eq(fw))
                    .order(compliance_checkpoints::id)
                    .select(compliance_checkpoints::id)
                    .for_update()
                    .load(tx.conn())
                    .await?;
                Some((fw, ids))
            }
            None => None,
        };
        let orphans: Vec<(Uuid, Option<Uuid>)> = requirements::table
            .filter(requirements::organization_id.eq(org))
            .filter(requirements::parent_id.eq_any(doomed))
            .filter(requirements::id.ne_all(doomed))
            .order(requirements::id)
            .select((requirements::id, requirements::parent_id))
            .for_update()
            .load(tx.conn())
            .await?;
        let linked: Vec<Uuid> = evidence_requirements::table
            .filter(evidence_requirements::organization_id.eq(org))
            .filter(evidence_requirements::requirement_id.eq_any(doomed))
            .select(evidence_requirements::evidence_id)
            .distinct()
            .load(tx.conn())
            .await?;
        // The evidence locked before its links are read: two deletions unlinking the same item
        // at once then each record what the other left.
        let linked: Vec<Uuid> = evidence::table
            .filter(evidence::organization_id.eq(org))
            .filter(evidence::id.eq_any(&linked))
            .order(evidence::id)
            .select(evidence::id)
            .for_update()
            .load(tx.conn())
            .await?;
        let links: Vec<(Uuid, Uuid)> = evidence_requirements::table
            .filter(evidence_requirements::organization_id.eq(org))
            .filter(evidence_requirements::evidence_id.eq_any(&linked))
            .order((evidence_requirements::evidence_id, evidence_requirements::requirement_id))
            .select((evidence_requirements::evidence_id, evidence_requirements::requirement_id))
            .load(tx.conn())
            .await?;
        let mut evidence: Vec<(Uuid, Vec<String>, Vec<String>)> = Vec::new();
        for (e, r) in links {
            if evidence.last().is_none_or(|(last, _, _)| *last != e) {
                evidence.push((e, Vec::new(), Vec::new()));
            }
            let (_, before, after) = evidence.last_mut().expect("pushed");
            before.push(r.to_string());
            if !doomed.contains(&r) {
                after.push(r.to_string());
            }
        }
        // Locked: a mapping can then neither be added to a doomed requirement unrecorded nor
        // recorded as deleted by two deletions at once.
        let mappings: Vec<(Uuid, Uuid, Uuid, String, String)> = requirement_mappings::table
            .filter(requirement_mappings::organization_id.eq(org))
            .filter(
                requirement_mappings::source_requirement_id
                    .eq_any(doomed)
                    .or(requirement_mappings::target_requirement_id.eq_any(doomed)),
            )
            .order(requirement_mappings::id)
            .select((
                requirement_mappings::id,
                requirement_mappings::source_requirement_id,
                requirement_mappings::target_requirement_id,
                requirement_mappings::relationship,
                requirement_mappings::origin,
            ))
            .for_update()
            .load(tx.conn())
            .await?;
        let mappings = mappings
            .into_iter()
            .map(|(id, source, target, relationship, origin)| {
                let was = serde_json::json!({
                    "source_requirement": source, "target_requirement": target,
                    "relationship": relationship, "origin": origin,
                });
                (id, was)
            })
            .collect();
        Ok(Detached {
            checkpoints,
            orphans: orphans.into_iter().filter_map(|(id, parent)| Some((id, parent?))).collect(),
            evidence,
            mappings,
        })
    }

    async fn record(self, tx: &mut Tx, ctx: &RequestCtx) -> Result<()> {
        use serde_json::json;
        if let Some((fw, ids)) = self.checkpoints {
            for id in ids {
                let (before, after) = (json!({ "framework": fw.to_string() }), json!({ "framework": null }));
                record_change(tx, ctx, "update", "compliance_checkpoint", id, before, after).await?;
            }
        }
        for (id, parent) in self.orphans {
            let (before, after) = (json!({ "parent": parent.to_string() }), json!({ "parent": null }));
            record_change(tx, ctx, "update", "requirement", id, before, after).await?;
        }
        for (id, before, after) in self.evidence {
            let (before, after) =
                (json!({ "compliance_requirements": before }), json!({ "compliance_requirements": after }));
            record_change(tx, ctx, "update", "evidence", id, before, after).await?;
        }
        for (id, before) in self.mappings {
            record_change(tx, ctx, "delete", "requirement_mapping", id, before, Value::Null).await?;
        }
        Ok(())
    }
}

/// A framework's live compliance figures, in the caller's transaction (the summary endpoint's,
/// and the score history's snapshots).
pub(crate) async fn summary_in(
    tx: &mut Tx,
    org: Uuid,
    id: Uuid,
    include_mapped: bool,
) -> Result<pb::ComplianceSummary> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        total: i64,
        #[diesel(sql_type = BigInt)]
        compliant: i64,
        #[diesel(sql_type = BigInt)]
        partially: i64,
        #[diesel(sql_type = BigInt)]
        non_compliant: i64,
        #[diesel(sql_type = BigInt)]
        not_assessed: i64,
        #[diesel(sql_type = BigInt)]
        implemented: i64,
        #[diesel(sql_type = BigInt)]
        overdue: i64,
    }
    let row: Row = diesel::sql_query(
        "SELECT count(*) AS total,
                count(*) FILTER (WHERE compliance_status = 'COMPLIANT') AS compliant,
                count(*) FILTER (WHERE compliance_status = 'PARTIALLY_COMPLIANT') AS partially,
                count(*) FILTER (WHERE compliance_status = 'NON_COMPLIANT') AS non_compliant,
                count(*) FILTER (WHERE compliance_status = 'NOT_ASSESSED') AS not_assessed,
                count(*) FILTER (WHERE is_implemented) AS implemented,
                count(*) FILTER (WHERE next_assessment_date < (now() AT TIME ZONE 'UTC')::date) AS overdue
           FROM requirements WHERE organization_id = $1 AND framework_id = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(org)
    .bind::<diesel::sql_types::Uuid, _>(id)
    .get_result(tx.conn())
    .await?;
    let covered =
        if include_mapped { Some(crate::mappings::covered_through_mappings(tx, org, id).await?) } else { None };
    let percent = |n: i64| if row.total == 0 { 0.0 } else { (n as f64 * 1000.0 / row.total as f64).round() / 10.0 };
    Ok(pb::ComplianceSummary {
        covered_through_mappings: covered,
        compliance_percentage_with_mapped: covered.map(|c| percent(row.compliant + c)),
        total_requirements: row.total,
        compliant: row.compliant,
        partially_compliant: row.partially,
        non_compliant: row.non_compliant,
        not_assessed: row.not_assessed,
        implemented: row.implemented,
        overdue_assessments: row.overdue,
        compliance_percentage: percent(row.compliant),
    })
}
