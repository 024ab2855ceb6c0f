//! Legal holds: preservation orders over incidents, evidence and custodian/subject identifiers.
//!
//! A hold is never deleted, only released (by an admin, with a reason). While it is in force,
//! every deleting path refuses what it covers (see [`crate::hold_check`]).

use std::collections::HashMap;

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{self, opt_choice, opt_text, parse_id, parse_opt_date, parse_uuid, search_pattern};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, timefmt, update};
use custos_db::refs::{self, Kind, Lock};
use custos_db::schema::{evidence, legal_hold_items, legal_holds};
use custos_db::{Db, Tx, list};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::hold_check::normalize_identifier;
use crate::model::{HoldStatus, LegalHoldFields, LegalHoldRow, ts};

custos_db::service_error! {
    pub enum HoldsError {}
}

type Result<T, E = HoldsError> = std::result::Result<T, E>;

const CUSTODIANS_MAX: usize = 1_000;

/// The list's cursor kind.
const HOLDS: &str = "legal_holds";

custos_core::page_responses! {
    pb::ListLegalHoldsResponse { pb::LegalHold } + next_cursor;
}

#[derive(Clone)]
pub struct LegalHoldsService {
    db: Db,
}

/// Who placed, changed or released a hold, as its rows name them (the form evidence custody
/// records name their actors in).
fn actor_name(ctx: &RequestCtx) -> String {
    ctx.actor.email().map(str::to_owned).unwrap_or_else(|| ctx.actor.label())
}

fn not_found(id: impl std::fmt::Display) -> HoldsError {
    Problem::not_found("Legal hold", id).into()
}

fn released(row: &LegalHoldRow) -> HoldsError {
    Problem::state_conflict(
        "Legal hold is released",
        format!("Legal hold '{}' was released; create a new hold instead", row.case_name),
    )
    .into()
}

impl LegalHoldsService {
    pub fn new(db: Db) -> Self {
        LegalHoldsService { db }
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.db.begin_as(ctx, access).await?)
    }

    pub async fn list_legal_holds(
        &self,
        ctx: &RequestCtx,
        req: pb::ListLegalHoldsRequest,
    ) -> Result<pb::ListLegalHoldsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = HoldFilters::parse(&req)?;
        let after = list.after::<(OffsetDateTime, Uuid)>(HOLDS)?;
        let org = ctx.organization_id;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((legal_holds::created_at.desc(), legal_holds::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(LegalHoldRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((legal_holds::created_at, legal_holds::id), key));
        }
        let rows: Vec<LegalHoldRow> = list::one_shot(q).load(tx.conn()).await?;
        let mut page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(HOLDS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let results = to_pb(&mut tx, ctx, std::mem::take(&mut page.results)).await?;
        tx.commit().await?;
        Ok(pb::ListLegalHoldsResponse::from_page(page.with_results(results)))
    }

    pub async fn get_legal_hold(&self, ctx: &RequestCtx, req: pb::GetLegalHoldRequest) -> Result<pb::LegalHold> {
        let id = parse_id("Legal hold", &req.id)?;
        let mut tx = self.begin(ctx, Access::Read).await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let hold = one_pb(&mut tx, ctx, row).await?;
        tx.commit().await?;
        Ok(hold)
    }

    pub async fn create_legal_hold(&self, ctx: &RequestCtx, req: pb::CreateLegalHoldRequest) -> Result<pb::LegalHold> {
        let fields = validate(req.legal_hold.unwrap_or_default())?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let id = custos_core::new_id();
        custos_db::prepared(diesel::insert_into(legal_holds::table).values((
            legal_holds::id.eq(id),
            legal_holds::organization_id.eq(ctx.organization_id),
            &fields,
            legal_holds::status.eq(HoldStatus::Active),
            legal_holds::created_by.eq(actor_name(ctx)),
        )))
        .execute(tx.conn())
        .await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let created = one_pb(&mut tx, ctx, row).await?;
        record_change(&mut tx, ctx, "create", "legal_hold", id, Value::Null, snapshot(&created)).await?;
        tx.commit().await?;
        Ok(created)
    }

    pub async fn update_legal_hold(&self, ctx: &RequestCtx, req: pb::UpdateLegalHoldRequest) -> Result<pb::LegalHold> {
        let id = parse_id("Legal hold", &req.id)?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        let released_hold = (current.status == HoldStatus::Released).then(|| released(&current));
        let before = one_pb(&mut tx, ctx, current).await?;
        let mask = req.update_mask.as_ref().map(|m| m.paths.as_slice());
        let Some(input) =
            update::apply::<_, pb::LegalHold>(to_input(&before), req.legal_hold.unwrap_or_default(), mask)?
        else {
            // Nothing to change (a PATCH of {}): the hold as it stands, nothing recorded.
            tx.commit().await?;
            return Ok(before);
        };
        if let Some(refusal) = released_hold {
            return Err(refusal);
        }
        let fields = validate(input)?;
        diesel::update(
            legal_holds::table
                .filter(legal_holds::organization_id.eq(ctx.organization_id))
                .filter(legal_holds::id.eq(id)),
        )
        .set((&fields, legal_holds::updated_at.eq(timefmt::now())))
        .execute(tx.conn())
        .await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let after = one_pb(&mut tx, ctx, row).await?;
        record_change(&mut tx, ctx, "update", "legal_hold", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Places an incident — and with it all its evidence — under the hold.
    pub async fn add_incident(&self, ctx: &RequestCtx, req: pb::AddIncidentToHoldRequest) -> Result<pb::LegalHold> {
        let id = parse_id("Legal hold", &req.id)?;
        let incident = parse_uuid("incident_id", req.incident_id.trim())?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        // SHARE conflicts with the incident's deletion and with evidence disposal (which lock
        // it FOR UPDATE / NO KEY UPDATE): whichever commits first is seen by the other. What is
        // put under a hold is the object of the request: unknown here, it is a 404.
        if !refs::exists(&mut tx, ctx.organization_id, Kind::Incident, incident, Lock::Share).await? {
            return Err(Problem::not_found("Incident", incident).into());
        }
        let hold = self.add_item(&mut tx, ctx, id, "incident", incident).await?;
        tx.commit().await?;
        Ok(hold)
    }

    pub async fn add_evidence(&self, ctx: &RequestCtx, req: pb::AddEvidenceToHoldRequest) -> Result<pb::LegalHold> {
        let id = parse_id("Legal hold", &req.id)?;
        let item = parse_uuid("evidence_id", req.evidence_id.trim())?;
        let mut tx = self.begin(ctx, Access::Write).await?;
        if !refs::exists(&mut tx, ctx.organization_id, Kind::Evidence, item, Lock::Share).await? {
            return Err(Problem::not_found("Evidence", item).into());
        }
        // Locked above: no disposal can come in between.
        let disposed_at: Option<OffsetDateTime> = evidence::table
            .filter(evidence::organization_id.eq(ctx.organization_id))
            .filter(evidence::id.eq(item))
            .select(evidence::disposed_at)
            .first(tx.conn())
            .await?;
        if disposed_at.is_some() {
            return Err(Problem::state_conflict(
                "Evidence has been disposed of",
                format!("Evidence {item} was disposed of; there is nothing left to preserve"),
            )
            .into());
        }
        let hold = self.add_item(&mut tx, ctx, id, "evidence", item).await?;
        tx.commit().await?;
        Ok(hold)
    }

    async fn add_item(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        id: Uuid,
        resource_type: &'static str,
        resource_id: Uuid,
    ) -> Result<pb::LegalHold> {
        let current = find(tx, ctx, id, true).await?;
        if current.status == HoldStatus::Released {
            return Err(released(&current));
        }
        let before = one_pb(tx, ctx, current.clone()).await?;
        let inserted = diesel::insert_into(legal_hold_items::table)
            .values((
                legal_hold_items::organization_id.eq(ctx.organization_id),
                legal_hold_items::hold_id.eq(id),
                legal_hold_items::resource_type.eq(resource_type),
                legal_hold_items::resource_id.eq(resource_id),
                legal_hold_items::added_by.eq(actor_name(ctx)),
            ))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
        // Adding what is already held changes nothing, so it records nothing.
        if inserted == 0 {
            return Ok(before);
        }
        diesel::update(
            legal_holds::table
                .filter(legal_holds::organization_id.eq(ctx.organization_id))
                .filter(legal_holds::id.eq(id)),
        )
        .set(legal_holds::updated_at.eq(timefmt::now()))
        .execute(tx.conn())
        .await?;
        let row = find(tx, ctx, id, false).await?;
        let after = one_pb(tx, ctx, row).await?;
        record_change(tx, ctx, &format!("add_{resource_type}"), "legal_hold", id, snapshot(&before), snapshot(&after))
            .await?;
        Ok(after)
    }

    /// Ends a hold (admins only): what it covered may be deleted again.
    pub async fn release_legal_hold(
        &self,
        ctx: &RequestCtx,
        req: pb::ReleaseLegalHoldRequest,
    ) -> Result<pb::LegalHold> {
        let id = parse_id("Legal hold", &req.id)?;
        let reason = filter::required_text("reason", &req.reason, 2_000)?;
        let mut tx = self.begin(ctx, Access::Admin).await?;
        let current = find(&mut tx, ctx, id, true).await?;
        if current.status == HoldStatus::Released {
            return Err(released(&current));
        }
        let before = one_pb(&mut tx, ctx, current).await?;
        let now = timefmt::now();
        diesel::update(
            legal_holds::table
                .filter(legal_holds::organization_id.eq(ctx.organization_id))
                .filter(legal_holds::id.eq(id)),
        )
        .set((
            legal_holds::status.eq(HoldStatus::Released),
            legal_holds::released_at.eq(now),
            legal_holds::released_by.eq(actor_name(ctx)),
            legal_holds::release_reason.eq(&reason),
            legal_holds::updated_at.eq(now),
        ))
        .execute(tx.conn())
        .await?;
        let row = find(&mut tx, ctx, id, false).await?;
        let after = one_pb(&mut tx, ctx, row).await?;
        record_change(&mut tx, ctx, "release", "legal_hold", id, snapshot(&before), snapshot(&after)).await?;
        tx.commit().await?;
        Ok(after)
    }
}

fn validate(input: pb::LegalHoldInput) -> Result<LegalHoldFields> {
    let start_date = parse_opt_date("start_date", input.start_date.as_deref())?.unwrap_or_else(timefmt::today);
    let end_date = parse_opt_date("end_date", input.end_date.as_deref())?;
    if end_date.is_some_and(|end| end < start_date) {
        return Err(Problem::invalid_field("end_date", "must not be before start_date").into());
    }
    if input.custodians.len() > CUSTODIANS_MAX {
        return Err(Problem::invalid_field("custodians", format!("at most {CUSTODIANS_MAX} identifiers")).into());
    }
    let mut custodians: Vec<String> = Vec::new();
    for raw in &input.custodians {
        let who = normalize_identifier(raw);
        if who.is_empty() || who.len() > 320 || who.chars().any(char::is_control) {
            return Err(Problem::invalid_field("custodians", format!("{raw:?} is not an identifier")).into());
        }
        if !custodians.contains(&who) {
            custodians.push(who);
        }
    }
    Ok(LegalHoldFields {
        case_name: filter::required_text("case_name", &input.case_name, 200)?,
        case_number: filter::bounded_text("case_number", &input.case_number, 100)?,
        description: filter::bounded_text("description", &input.description, 20_000)?,
        custodians,
        start_date,
        end_date,
    })
}

async fn find(tx: &mut Tx, ctx: &RequestCtx, id: Uuid, lock: bool) -> Result<LegalHoldRow> {
    let query = legal_holds::table
        .filter(legal_holds::organization_id.eq(ctx.organization_id))
        .filter(legal_holds::id.eq(id))
        .select(LegalHoldRow::as_select());
    let found = if lock {
        query.for_update().first(tx.conn()).await.optional()?
    } else {
        query.first(tx.conn()).await.optional()?
    };
    found.ok_or_else(|| not_found(id))
}

async fn one_pb(tx: &mut Tx, ctx: &RequestCtx, row: LegalHoldRow) -> Result<pb::LegalHold> {
    let id = row.id;
    to_pb(tx, ctx, vec![row]).await?.pop().ok_or_else(|| not_found(id))
}

async fn to_pb(tx: &mut Tx, ctx: &RequestCtx, rows: Vec<LegalHoldRow>) -> Result<Vec<pb::LegalHold>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let items: Vec<(Uuid, String, Uuid)> = legal_hold_items::table
        .filter(legal_hold_items::organization_id.eq(ctx.organization_id))
        .filter(legal_hold_items::hold_id.eq_any(&ids))
        .order((legal_hold_items::added_at.asc(), legal_hold_items::resource_id.asc()))
        .select((legal_hold_items::hold_id, legal_hold_items::resource_type, legal_hold_items::resource_id))
        .load(tx.conn())
        .await?;
    let mut by_hold: HashMap<Uuid, (Vec<String>, Vec<String>)> = HashMap::new();
    for (hold, kind, item) in items {
        let entry = by_hold.entry(hold).or_default();
        if kind == "incident" { &mut entry.0 } else { &mut entry.1 }.push(item.to_string());
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let (incidents, evidence) = by_hold.remove(&r.id).unwrap_or_default();
            pb::LegalHold {
                id: r.id.to_string(),
                is_active: r.status == HoldStatus::Active,
                case_name: r.case_name,
                case_number: r.case_number,
                description: r.description,
                status: r.status.to_string(),
                custodians: r.custodians,
                start_date: timefmt::date(r.start_date),
                end_date: r.end_date.map(timefmt::date),
                created_by: r.created_by,
                released_at: r.released_at.map(ts),
                released_by: r.released_by,
                release_reason: r.release_reason,
                incidents,
                evidence,
                created_at: ts(r.created_at),
                updated_at: ts(r.updated_at),
            }
        })
        .collect())
}

fn to_input(h: &pb::LegalHold) -> pb::LegalHoldInput {
    pb::LegalHoldInput {
        case_name: h.case_name.clone(),
        case_number: h.case_number.clone(),
        description: h.description.clone(),
        custodians: h.custodians.clone(),
        start_date: Some(h.start_date.clone()),
        end_date: h.end_date.clone(),
    }
}

struct HoldFilters {
    status: Option<HoldStatus>,
    active: Option<bool>,
    search: Option<String>,
    custodian: Option<String>,
}

impl HoldFilters {
    fn parse(req: &pb::ListLegalHoldsRequest) -> Result<Self> {
        Ok(HoldFilters {
            status: opt_choice("status", req.status.as_deref())?,
            active: req.active,
            search: search_pattern(req.search.as_deref()),
            custodian: opt_text(req.custodian.as_deref()).map(normalize_identifier),
        })
    }

    fn apply(&self, org: Uuid) -> legal_holds::BoxedQuery<'static, Pg> {
        let mut q = legal_holds::table.filter(legal_holds::organization_id.eq(org)).into_boxed();
        if let Some(status) = self.status {
            q = q.filter(legal_holds::status.eq(status));
        }
        match self.active {
            Some(true) => q = q.filter(legal_holds::status.eq(HoldStatus::Active)),
            Some(false) => q = q.filter(legal_holds::status.ne(HoldStatus::Active)),
            None => {}
        }
        if let Some(pattern) = &self.search {
            q = q.filter(
                legal_holds::case_name
                    .ilike(pattern.clone())
                    .or(legal_holds::case_number.ilike(pattern.clone()))
                    .or(legal_holds::description.ilike(pattern.clone())),
            );
        }
        if let Some(who) = &self.custodian {
            q = q.filter(legal_holds::custodians.contains(vec![who.clone()]));
        }
        q
    }
}
