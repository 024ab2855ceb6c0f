//! Vulnerabilities: CRUD with remediation SLAs; `overdue` and deadlines are filtered in SQL.

use custos_core::ctx::Access;
use custos_core::filter::{self, DayEdge, parse_id, parse_opt_time_bound, parse_opt_timestamp};
use custos_core::page::cursor;
use custos_core::{Problem, RequestCtx, new_id, timefmt, update};
use custos_db::Tx;
use custos_db::schema::vulnerabilities;
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::*;
use crate::model::*;

fn not_found(id: impl std::fmt::Display) -> IncidentsError {
    Problem::not_found("Vulnerability", id).into()
}

/// The list's cursor kind.
const VULNERABILITIES: &str = "vulnerabilities";

fn open_like() -> Vec<VulnerabilityStatus> {
    VulnerabilityStatus::OPEN_LIKE.to_vec()
}

impl IncidentsService {
    pub async fn list_vulnerabilities(
        &self,
        ctx: &RequestCtx,
        req: pb::ListVulnerabilitiesRequest,
    ) -> Result<pb::ListVulnerabilitiesResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = VulnerabilityFilters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(VULNERABILITIES)?;
        let (org, now) = (ctx.organization_id, timefmt::now());
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org, now)
            .order((vulnerabilities::due_at.asc(), vulnerabilities::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(VulnerabilityRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((vulnerabilities::due_at, vulnerabilities::id), key));
        }
        let rows: Vec<VulnerabilityRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(VULNERABILITIES, &(r.due_at, r.id))),
            || filters.apply(org, now).select(list::row()),
        )
        .await?;
        tx.commit().await?;
        Ok(pb::ListVulnerabilitiesResponse::from_page(page.map(|r| r.to_pb(now))))
    }

    pub async fn get_vulnerability(
        &self,
        ctx: &RequestCtx,
        req: pb::GetVulnerabilityRequest,
    ) -> Result<pb::Vulnerability> {
        let id = parse_id("Vulnerability", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find_vulnerability(&mut tx, ctx, id, false).await?;
        tx.commit().await?;
        Ok(row.to_pb(timefmt::now()))
    }

    pub async fn create_vulnerability(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateVulnerabilityRequest,
    ) -> Result<pb::Vulnerability> {
        let mut tx = self.begin(ctx, Access::Write).await?;
        let fields = self.validate_vulnerability(&mut tx, ctx, req.vulnerability.unwrap_or_default(), None).await?;
        let id = new_id();
        let row: VulnerabilityRow = custos_db::prepared(
            diesel::insert_into(vulnerabilities::table)
                .values((vulnerabilities::id.eq(id), vulnerabilities::organization_id.eq(ctx.organization_id), &fields))
                .returning(VulnerabilityRow::as_returning()),
        )
        .get_result(tx.conn())
        .await?;
        let created = row.to_pb(timefmt::now());
        record_change(&mut tx, ctx, "create", "vulnerability", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_vulnerability(
        &self,
        ctx: &RequestCtx,
        req: pb::UpdateVulnerabilityRequest,
    ) -> Result<pb::Vulnerability> {
        let id = parse_id("Vulnerability", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_vulnerability(&mut tx, ctx, id, true).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::Vulnerability>(current.to_input(), req.vulnerability.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the resource as it stands, nothing recorded.
            tx.commit().await?;
            return Ok(current.to_pb(timefmt::now()));
        };
        let fields = self.validate_vulnerability(&mut tx, ctx, input, Some(&current)).await?;
        let now = timefmt::now();
        let before = current.to_pb(now);
        let row: VulnerabilityRow = diesel::update(
            vulnerabilities::table
                .filter(vulnerabilities::organization_id.eq(ctx.organization_id))
                .filter(vulnerabilities::id.eq(id)),
        )
        .set((&fields, vulnerabilities::updated_at.eq(now)))
        .returning(VulnerabilityRow::as_returning())
        .get_result(tx.conn())
        .await?;
        let after = row.to_pb(now);
        record_change(&mut tx, ctx, "update", "vulnerability", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub async fn delete_vulnerability(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteVulnerabilityRequest,
    ) -> Result<pb::DeleteVulnerabilityResponse> {
        let id = parse_id("Vulnerability", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find_vulnerability(&mut tx, ctx, id, true).await?;
        diesel::delete(
            vulnerabilities::table
                .filter(vulnerabilities::organization_id.eq(ctx.organization_id))
                .filter(vulnerabilities::id.eq(id)),
        )
        .execute(tx.conn())
        .await?;
        record_change(
            &mut tx,
            ctx,
            "delete",
            "vulnerability",
            id,
            snapshot(&current.to_pb(timefmt::now())),
            Value::Null,
        )
        .await?;
        tx.commit().await?;
        Ok(pb::DeleteVulnerabilityResponse {})
    }

    async fn validate_vulnerability(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        input: pb::VulnerabilityInput,
        current: Option<&VulnerabilityRow>,
    ) -> Result<VulnerabilityFields> {
        let now = timefmt::now();
        let severity: Severity = choice("severity", &input.severity)?;
        let status = opt_choice("status", input.status.as_deref())?
            .unwrap_or_else(|| current.map_or(VulnerabilityStatus::Open, |c| c.status));
        let discovered_at = parse_opt_timestamp("discovered_at", input.discovered_at.as_deref())?
            .or_else(|| current.map(|c| c.discovered_at))
            .unwrap_or(now);
        // The SLA is fixed when severity or discovery time change, not by later configuration.
        let (sla_days, due_at) = match current {
            Some(c) if c.severity == severity && c.discovered_at == discovered_at => (c.sla_days, c.due_at),
            _ => {
                let days = self.slas.vuln_days(severity);
                let due_at = discovered_at.checked_add(Duration::days(i64::from(days))).ok_or_else(|| {
                    Problem::invalid_field("discovered_at", format!("its {days}-day SLA would end after the year 9999"))
                })?;
                (i32::try_from(days).unwrap_or(i32::MAX), due_at)
            }
        };
        let given_remediated = parse_opt_timestamp("remediated_at", input.remediated_at.as_deref())?;
        let remediated_at: Option<OffsetDateTime> = if status == VulnerabilityStatus::Remediated {
            let at =
                given_remediated.or_else(|| current.and_then(|c| c.remediated_at)).unwrap_or(now.max(discovered_at));
            if at < discovered_at {
                return Err(
                    Problem::invalid_field("remediated_at", "remediated_at cannot be before discovered_at").into()
                );
            }
            Some(at)
        } else {
            None
        };
        let cve_id = match input.cve_id.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(raw) => {
                let cve = raw.to_ascii_uppercase();
                if !is_cve_id(&cve) {
                    return Err(Problem::invalid_field(
                        "cve_id",
                        format!("{raw:?} is not a CVE identifier (CVE-YYYY-NNNN, four or more digits)"),
                    )
                    .into());
                }
                Some(cve)
            }
        };
        if let Some(score) = input.cvss_score
            && !(0.0..=10.0).contains(&score)
        {
            return Err(Problem::invalid_field("cvss_score", "a CVSS score lies between 0.0 and 10.0").into());
        }
        Ok(VulnerabilityFields {
            title: filter::required_text("title", &input.title, TITLE_MAX)?,
            description: filter::bounded_text("description", &input.description, TEXT_MAX)?,
            severity,
            status,
            cve_id,
            cvss_score: input.cvss_score,
            affected_asset: filter::bounded_text("affected_asset", input.affected_asset.trim(), TITLE_MAX)?,
            discovered_at,
            sla_days,
            due_at,
            remediated_at,
            incident_id: refs::incident(tx, ctx, "incident", input.incident.as_deref()).await?,
            assigned_to: refs::user(tx, ctx, "assigned_to", input.assigned_to.as_deref()).await?,
        })
    }
}

async fn find_vulnerability(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<VulnerabilityRow> {
    let q = vulnerabilities::table
        .filter(vulnerabilities::organization_id.eq(ctx.organization_id))
        .filter(vulnerabilities::id.eq(id))
        .select(VulnerabilityRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    row.optional()?.ok_or_else(|| not_found(id))
}

/// Parsed list filters of vulnerabilities.
struct VulnerabilityFilters {
    severity: Option<Severity>,
    status: Option<VulnerabilityStatus>,
    overdue: Option<bool>,
    incident: Option<Uuid>,
    assigned_to: Option<Uuid>,
    due_after: Option<OffsetDateTime>,
    due_before: Option<OffsetDateTime>,
    search: Option<String>,
}

impl VulnerabilityFilters {
    fn parse(req: &pb::ListVulnerabilitiesRequest) -> Result<Self> {
        Ok(VulnerabilityFilters {
            severity: opt_choice("severity", req.severity.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            overdue: req.overdue,
            incident: opt_uuid("incident", req.incident.as_deref())?,
            assigned_to: opt_uuid("assigned_to", req.assigned_to.as_deref())?,
            due_after: parse_opt_time_bound("due_after", req.due_after.as_deref(), DayEdge::Start)?,
            due_before: parse_opt_time_bound("due_before", req.due_before.as_deref(), DayEdge::End)?,
            search: search_pattern(req.search.as_deref()),
        })
    }

    fn apply(&self, org: Uuid, now: OffsetDateTime) -> vulnerabilities::BoxedQuery<'static, Pg> {
        let mut q = vulnerabilities::table.filter(vulnerabilities::organization_id.eq(org)).into_boxed();
        if let Some(v) = self.severity {
            q = q.filter(vulnerabilities::severity.eq(v));
        }
        if let Some(v) = self.status {
            q = q.filter(vulnerabilities::status.eq(v));
        }
        match self.overdue {
            Some(true) => {
                q = q.filter(vulnerabilities::status.eq_any(open_like())).filter(vulnerabilities::due_at.lt(now))
            }
            Some(false) => {
                q = q.filter(vulnerabilities::status.ne_all(open_like()).or(vulnerabilities::due_at.ge(now)))
            }
            None => {}
        }
        if let Some(i) = self.incident {
            q = q.filter(vulnerabilities::incident_id.eq(i));
        }
        if let Some(u) = self.assigned_to {
            q = q.filter(vulnerabilities::assigned_to.eq(u));
        }
        if let Some(t) = self.due_after {
            q = q.filter(vulnerabilities::due_at.ge(t));
        }
        if let Some(t) = self.due_before {
            q = q.filter(vulnerabilities::due_at.le(t));
        }
        if let Some(p) = &self.search {
            q = q.filter(
                vulnerabilities::title
                    .ilike(p.clone())
                    .or(vulnerabilities::description.ilike(p.clone()))
                    .or(vulnerabilities::affected_asset.ilike(p.clone()))
                    .or(vulnerabilities::cve_id.ilike(p.clone()).assume_not_null()),
            );
        }
        q
    }
}
