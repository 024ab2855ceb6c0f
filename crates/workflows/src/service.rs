//! Workflows and their instances: every role reads, editors and admins write (a step may ask for
//! admins or auditors). An instance keeps the definition it started from; a completed or
//! cancelled one is read-only.

use std::collections::{BTreeMap, HashMap};

use custos_audit_chain::record_change;
use custos_core::ctx::Access;
use custos_core::filter::{
    bounded_text, choice, opt_choice, opt_uuid, parse_id, parse_opt_timestamp, parse_uuid, required_text,
    search_pattern,
};
use custos_core::page::cursor;
use custos_core::{ListRequest, Problem, RequestCtx, new_id, timefmt, update};
use custos_db::schema::{incidents, workflow_instance_history as history, workflow_instances as instances, workflows};
use custos_db::{Db, Tx, list, refs};
use custos_proto::v1 as pb;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::definition::Definition;
use crate::model::{HistoryRow, InstanceRow, InstanceStatus, WorkflowRow, WorkflowStatus, WorkflowType};

custos_db::service_error! {
    pub enum WorkflowsError {}
}

type Result<T, E = WorkflowsError> = std::result::Result<T, E>;

custos_core::page_responses! {
    pb::ListWorkflowsResponse { pb::Workflow } + next_cursor;
    pb::ListWorkflowInstancesResponse { pb::WorkflowInstance } + next_cursor;
}

const WORKFLOWS: &str = "workflows";
const INSTANCES: &str = "workflow_instances";

#[derive(Clone)]
pub struct WorkflowsService {
    pub(crate) db: Db,
}

fn definition_of(value: &Value) -> Result<Definition> {
    Ok(serde_json::from_value(value.clone()).map_err(Problem::internal)?)
}

impl WorkflowRow {
    fn to_pb(&self, instance_count: i64) -> Result<pb::Workflow> {
        let d = definition_of(&self.definition)?;
        Ok(pb::Workflow {
            id: self.id.to_string(),
            name: self.name.clone(),
            description: self.description.clone(),
            workflow_type: self.workflow_type.to_string(),
            status: self.status.to_string(),
            is_template: self.is_template,
            applicable_frameworks: self.applicable_frameworks.iter().map(Uuid::to_string).collect(),
            initial_step: d.initial_step,
            steps: d.steps,
            transitions: d.transitions,
            template_key: self.template_key.clone(),
            instance_count,
            created_by: self.created_by.clone(),
            created_at: timefmt::timestamp(self.created_at),
            updated_at: timefmt::timestamp(self.updated_at),
        })
    }

    fn to_input(&self) -> Result<pb::WorkflowInput> {
        let d = definition_of(&self.definition)?;
        Ok(pb::WorkflowInput {
            name: self.name.clone(),
            description: self.description.clone(),
            workflow_type: self.workflow_type.to_string(),
            status: Some(self.status.to_string()),
            is_template: Some(self.is_template),
            applicable_frameworks: self.applicable_frameworks.iter().map(Uuid::to_string).collect(),
            initial_step: d.initial_step,
            steps: d.steps,
            transitions: d.transitions,
        })
    }
}

/// A workflow's fields, validated.
pub struct Fields {
    pub name: String,
    pub description: String,
    pub workflow_type: WorkflowType,
    pub status: WorkflowStatus,
    pub is_template: bool,
    pub applicable_frameworks: Vec<Uuid>,
    pub definition: Definition,
}

pub fn validate(input: pb::WorkflowInput) -> Result<Fields> {
    let mut applicable_frameworks = Vec::new();
    for raw in &input.applicable_frameworks {
        let id = parse_uuid("applicable_frameworks", raw)?;
        if !applicable_frameworks.contains(&id) {
            applicable_frameworks.push(id);
        }
    }
    let definition =
        Definition { initial_step: input.initial_step, steps: input.steps, transitions: input.transitions }
            .validate()?;
    Ok(Fields {
        name: required_text("name", input.name.trim(), 200)?,
        description: bounded_text("description", &input.description, 5000)?,
        workflow_type: choice("workflow_type", input.workflow_type.trim())?,
        status: opt_choice("status", input.status.as_deref())?.unwrap_or(WorkflowStatus::Active),
        is_template: input.is_template.unwrap_or(false),
        applicable_frameworks,
        definition,
    })
}

fn deadlines_map(value: &Value) -> BTreeMap<String, OffsetDateTime> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let t = OffsetDateTime::parse(v.as_str()?, &time::format_description::well_known::Rfc3339).ok()?;
                    Some((k.clone(), t))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn deadlines_json(map: &BTreeMap<String, OffsetDateTime>) -> Value {
    Value::Object(map.iter().map(|(k, v)| (k.clone(), json!(timefmt::timestamp(*v)))).collect())
}

/// What "overdue" compares: the earlier of the due date and the current step's deadline.
fn current_due(due_date: Option<OffsetDateTime>, step_due: Option<OffsetDateTime>) -> Option<OffsetDateTime> {
    match (due_date, step_due) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl InstanceRow {
    fn to_pb(
        &self,
        workflow_name: &str,
        history: Vec<HistoryRow>,
        now: OffsetDateTime,
    ) -> Result<pb::WorkflowInstance> {
        let d = definition_of(&self.definition)?;
        let deadlines = deadlines_map(&self.deadlines);
        let open = self.status == InstanceStatus::InProgress;
        Ok(pb::WorkflowInstance {
            id: self.id.to_string(),
            workflow: self.workflow_id.to_string(),
            workflow_name: workflow_name.to_owned(),
            title: self.title.clone(),
            description: self.description.clone(),
            related_incident: self.related_incident.map(|i| i.to_string()),
            assigned_to: self.assigned_to.map(|u| u.to_string()),
            due_date: self.due_date.map(timefmt::timestamp),
            status: self.status.to_string(),
            current_step: self.current_step.clone(),
            current_step_due_at: deadlines.get(&self.current_step).map(|t| timefmt::timestamp(*t)),
            is_overdue: open && self.current_due_at.is_some_and(|t| t < now),
            step_deadlines: deadlines
                .iter()
                .map(|(step, at)| pb::StepDue { step: step.clone(), due_at: timefmt::timestamp(*at) })
                .collect(),
            stakeholders: self.stakeholders.iter().map(Uuid::to_string).collect(),
            step_data: self.step_data.to_string(),
            history: history
                .into_iter()
                .map(|h| pb::WorkflowHistoryEntry {
                    sequence: h.sequence,
                    from_step: h.from_step,
                    to_step: h.to_step,
                    actor: h.actor,
                    at: timefmt::timestamp(h.at),
                    data: h.data.to_string(),
                })
                .collect(),
            next_steps: if open { d.next_steps(&self.current_step) } else { Vec::new() },
            started_at: timefmt::timestamp(self.started_at),
            completed_at: self.completed_at.map(timefmt::timestamp),
            created_by: self.created_by.clone(),
            updated_at: timefmt::timestamp(self.updated_at),
        })
    }

    fn audited(&self) -> Value {
        json!({
            "workflow": self.workflow_id, "title": self.title, "status": self.status.to_string(),
            "current_step": self.current_step, "assigned_to": self.assigned_to, "due_date": self.due_date.map(timefmt::timestamp),
            "related_incident": self.related_incident, "stakeholders": self.stakeholders, "deadlines": self.deadlines,
        })
    }
}

struct WorkflowFilters {
    workflow_type: Option<WorkflowType>,
    status: Option<WorkflowStatus>,
    is_template: Option<bool>,
    framework: Option<Uuid>,
    search: Option<String>,
}

impl WorkflowFilters {
    fn apply(&self, org: Uuid) -> workflows::BoxedQuery<'static, Pg> {
        let mut q = workflows::table.filter(workflows::organization_id.eq(org)).into_boxed();
        if let Some(t) = self.workflow_type {
            q = q.filter(workflows::workflow_type.eq(t));
        }
        if let Some(s) = self.status {
            q = q.filter(workflows::status.eq(s));
        }
        if let Some(t) = self.is_template {
            q = q.filter(workflows::is_template.eq(t));
        }
        if let Some(f) = self.framework {
            q = q.filter(workflows::applicable_frameworks.contains(vec![f]));
        }
        if let Some(p) = &self.search {
            q = q.filter(workflows::name.ilike(p.clone()).or(workflows::description.ilike(p.clone())));
        }
        q
    }
}

struct InstanceFilters {
    workflow: Option<Uuid>,
    status: Option<InstanceStatus>,
    assigned_to: Option<Uuid>,
    incident: Option<Uuid>,
    overdue: Option<bool>,
    search: Option<String>,
    now: OffsetDateTime,
}

impl InstanceFilters {
    fn apply(&self, org: Uuid) -> instances::BoxedQuery<'static, Pg> {
        let mut q = instances::table.filter(instances::organization_id.eq(org)).into_boxed();
        if let Some(w) = self.workflow {
            q = q.filter(instances::workflow_id.eq(w));
        }
        if let Some(s) = self.status {
            q = q.filter(instances::status.eq(s));
        }
        if let Some(u) = self.assigned_to {
            q = q.filter(instances::assigned_to.eq(u));
        }
        if let Some(i) = self.incident {
            q = q.filter(instances::related_incident.eq(i));
        }
        match self.overdue {
            Some(true) => {
                q = q
                    .filter(instances::status.eq(InstanceStatus::InProgress))
                    .filter(instances::current_due_at.lt(self.now))
            }
            Some(false) => {
                q = q.filter(
                    instances::status
                        .ne(InstanceStatus::InProgress)
                        .or(instances::current_due_at.is_null())
                        .or(instances::current_due_at.ge(self.now)),
                )
            }
            None => {}
        }
        if let Some(p) = &self.search {
            q = q.filter(
                instances::title
                    .ilike(p.clone())
                    .or(instances::description.ilike(p.clone()))
                    .or(instances::current_step.ilike(p.clone())),
            );
        }
        q
    }
}

impl WorkflowsService {
    pub fn new(db: Db) -> Self {
        WorkflowsService { db }
    }

    async fn instance_counts(&self, tx: &mut Tx, org: Uuid, ids: &[Uuid]) -> Result<HashMap<Uuid, i64>> {
        let rows: Vec<(Uuid, i64)> = instances::table
            .filter(instances::organization_id.eq(org))
            .filter(instances::workflow_id.eq_any(ids))
            .group_by(instances::workflow_id)
            .select((instances::workflow_id, diesel::dsl::count_star()))
            .load(tx.conn())
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// `GET /api/compliance/workflows/` (every role): filters `workflow_type`, `status`,
    /// `is_template`, `applicable_frameworks`, `search`; oldest first.
    pub async fn list_workflows(
        &self,
        ctx: &RequestCtx,
        req: pb::ListWorkflowsRequest,
    ) -> Result<pb::ListWorkflowsResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = WorkflowFilters {
            workflow_type: opt_choice("workflow_type", req.workflow_type.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            is_template: req.is_template,
            framework: opt_uuid("applicable_frameworks", req.applicable_frameworks.as_deref())?,
            search: search_pattern(req.search.as_deref()),
        };
        let after = list.after::<(OffsetDateTime, Uuid)>(WORKFLOWS)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((workflows::created_at.asc(), workflows::id.asc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(WorkflowRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::after((workflows::created_at, workflows::id), key));
        }
        let rows: Vec<WorkflowRow> = list::one_shot(q).load(tx.conn()).await?;
        let page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(WORKFLOWS, &(r.created_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let ids: Vec<Uuid> = page.results.iter().map(|r| r.id).collect();
        let counts = self.instance_counts(&mut tx, org, &ids).await?;
        tx.commit().await?;
        let results = page
            .results
            .iter()
            .map(|r| r.to_pb(counts.get(&r.id).copied().unwrap_or(0)))
            .collect::<Result<Vec<_>>>()?;
        Ok(pb::ListWorkflowsResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/workflows/{id}/` (every role).
    pub async fn get_workflow(&self, ctx: &RequestCtx, req: pb::GetWorkflowRequest) -> Result<pb::Workflow> {
        let id = parse_id("Workflow", &req.id)?;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find_workflow(&mut tx, ctx.organization_id, id, false).await?;
        let counts = self.instance_counts(&mut tx, ctx.organization_id, &[id]).await?;
        tx.commit().await?;
        row.to_pb(counts.get(&id).copied().unwrap_or(0))
    }

    /// `POST /api/compliance/workflows/` (editors, admins): the definition is checked (400
    /// naming what is wrong: unknown steps, unreachable ones, dead ends, no final step).
    pub async fn create_workflow(&self, ctx: &RequestCtx, req: pb::CreateWorkflowRequest) -> Result<pb::Workflow> {
        let fields = validate(req.workflow.unwrap_or_default())?;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let row = self.insert_workflow(&mut tx, ctx, &fields, None).await?;
        tx.commit().await?;
        row.to_pb(0)
    }

    /// Inserts a workflow, audited (templates pass their key).
    pub(crate) async fn insert_workflow(
        &self,
        tx: &mut Tx,
        ctx: &RequestCtx,
        fields: &Fields,
        template_key: Option<&str>,
    ) -> Result<WorkflowRow> {
        refs::all(tx, ctx, refs::Kind::Framework, "applicable_frameworks", &fields.applicable_frameworks).await?;
        let definition = serde_json::to_value(&fields.definition).map_err(Problem::internal)?;
        let row: WorkflowRow = diesel::insert_into(workflows::table)
            .values((
                workflows::id.eq(new_id()),
                workflows::organization_id.eq(ctx.organization_id),
                workflows::name.eq(&fields.name),
                workflows::description.eq(&fields.description),
                workflows::workflow_type.eq(fields.workflow_type),
                workflows::status.eq(fields.status),
                workflows::is_template.eq(fields.is_template),
                workflows::applicable_frameworks.eq(&fields.applicable_frameworks),
                workflows::definition.eq(&definition),
                workflows::template_key.eq(template_key),
                workflows::created_by.eq(ctx.actor.label()),
            ))
            .returning(WorkflowRow::as_returning())
            .get_result(tx.conn())
            .await
            .map_err(|e| name_taken(e.into(), &fields.name))?;
        record_change(tx, ctx, "create", "workflow", row.id, Value::Null, row.to_pb(0).map(audited)?).await?;
        Ok(row)
    }

    /// `PUT`/`PATCH /api/compliance/workflows/{id}/` (editors, admins). Running instances keep
    /// the definition they started from.
    pub async fn update_workflow(&self, ctx: &RequestCtx, req: pb::UpdateWorkflowRequest) -> Result<pb::Workflow> {
        let id = parse_id("Workflow", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find_workflow(&mut tx, org, id, true).await?;
        let counts = self.instance_counts(&mut tx, org, &[id]).await?;
        let n = counts.get(&id).copied().unwrap_or(0);
        let mask = req.update_mask.as_ref().map(|m| m.paths.clone());
        let Some(input) =
            update::apply::<_, pb::Workflow>(current.to_input()?, req.workflow.unwrap_or_default(), mask.as_deref())?
        else {
            tx.commit().await?;
            return current.to_pb(n);
        };
        let fields = validate(input)?;
        refs::all(&mut tx, ctx, refs::Kind::Framework, "applicable_frameworks", &fields.applicable_frameworks).await?;
        let definition = serde_json::to_value(&fields.definition).map_err(Problem::internal)?;
        let row: WorkflowRow =
            diesel::update(workflows::table.filter(workflows::organization_id.eq(org)).filter(workflows::id.eq(id)))
                .set((
                    workflows::name.eq(&fields.name),
                    workflows::description.eq(&fields.description),
                    workflows::workflow_type.eq(fields.workflow_type),
                    workflows::status.eq(fields.status),
                    workflows::is_template.eq(fields.is_template),
                    workflows::applicable_frameworks.eq(&fields.applicable_frameworks),
                    workflows::definition.eq(&definition),
                    workflows::updated_at.eq(timefmt::now()),
                ))
                .returning(WorkflowRow::as_returning())
                .get_result(tx.conn())
                .await
                .map_err(|e| name_taken(e.into(), &fields.name))?;
        record_change(
            &mut tx,
            ctx,
            "update",
            "workflow",
            id,
            current.to_pb(n).map(audited)?,
            row.to_pb(n).map(audited)?,
        )
        .await?;
        tx.commit().await?;
        row.to_pb(n)
    }

    /// `DELETE /api/compliance/workflows/{id}/` (editors, admins): only one no instance was ever
    /// started from (retire it instead).
    pub async fn delete_workflow(
        &self,
        ctx: &RequestCtx,
        req: pb::DeleteWorkflowRequest,
    ) -> Result<pb::DeleteWorkflowResponse> {
        let id = parse_id("Workflow", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find_workflow(&mut tx, org, id, true).await?;
        let n = self.instance_counts(&mut tx, org, &[id]).await?.get(&id).copied().unwrap_or(0);
        if n > 0 {
            return Err(Problem::state_conflict(
                "Workflow has instances",
                format!(
                    "{n} instance(s) were started from workflow {:?}: set its status to RETIRED instead",
                    current.name
                ),
            )
            .into());
        }
        diesel::delete(workflows::table.filter(workflows::organization_id.eq(org)).filter(workflows::id.eq(id)))
            .execute(tx.conn())
            .await?;
        record_change(&mut tx, ctx, "delete", "workflow", id, current.to_pb(0).map(audited)?, Value::Null).await?;
        tx.commit().await?;
        Ok(pb::DeleteWorkflowResponse {})
    }

    /// `POST /api/compliance/workflows/{id}/create_instance/` (editors, admins), seed 000's body.
    /// Deadlines anchored to the incident run from its detection time.
    pub async fn create_workflow_instance(
        &self,
        ctx: &RequestCtx,
        req: pb::CreateWorkflowInstanceRequest,
    ) -> Result<pb::WorkflowInstance> {
        let id = parse_id("Workflow", &req.id)?;
        let title = required_text("title", req.title.trim(), 300)?;
        let description = bounded_text("description", &req.description, 5000)?;
        let due_date = parse_opt_timestamp("due_date", req.due_date.as_deref())?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let workflow = find_workflow(&mut tx, org, id, false).await?;
        if workflow.status != WorkflowStatus::Active {
            return Err(Problem::state_conflict(
                "Workflow not active",
                format!("Workflow {:?} is {}: instances start from ACTIVE workflows", workflow.name, workflow.status),
            )
            .into());
        }
        let incident = refs::incident(&mut tx, ctx, "related_incident", req.related_incident.as_deref()).await?;
        let assigned_to = refs::user(&mut tx, ctx, "assigned_to", req.assigned_to.as_deref()).await?;
        let detected: Option<OffsetDateTime> = match incident {
            Some(i) => incidents::table
                .filter(incidents::organization_id.eq(org))
                .filter(incidents::id.eq(i))
                .select(incidents::detected_at)
                .first::<Option<OffsetDateTime>>(tx.conn())
                .await
                .optional()?
                .flatten(),
            None => None,
        };
        let definition = definition_of(&workflow.definition)?;
        let now = timefmt::now();
        let mut deadlines = definition.initial_deadlines(now, detected);
        if let Some(at) = definition.entry_deadline(&definition.initial_step, now) {
            deadlines.insert(definition.initial_step.clone(), at);
        }
        let instance_id = new_id();
        let row: InstanceRow = diesel::insert_into(instances::table)
            .values((
                instances::id.eq(instance_id),
                instances::organization_id.eq(org),
                instances::workflow_id.eq(id),
                instances::title.eq(&title),
                instances::description.eq(&description),
                instances::related_incident.eq(incident),
                instances::assigned_to.eq(assigned_to),
                instances::due_date.eq(due_date),
                instances::status.eq(InstanceStatus::InProgress),
                instances::current_step.eq(&definition.initial_step),
                instances::definition.eq(&workflow.definition),
                instances::deadlines.eq(deadlines_json(&deadlines)),
                instances::current_due_at.eq(current_due(due_date, deadlines.get(&definition.initial_step).copied())),
                instances::created_by.eq(ctx.actor.label()),
                instances::started_at.eq(now),
            ))
            .returning(InstanceRow::as_returning())
            .get_result(tx.conn())
            .await?;
        append_history(&mut tx, org, instance_id, None, &definition.initial_step, ctx, json!({})).await?;
        record_change(&mut tx, ctx, "create", "workflow_instance", instance_id, Value::Null, row.audited()).await?;
        let out = self.instance_pb(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// One instance as answered: with its workflow's name and its whole history.
    async fn instance_pb(&self, tx: &mut Tx, org: Uuid, row: InstanceRow) -> Result<pb::WorkflowInstance> {
        let name = workflow_name(tx, org, row.workflow_id).await?;
        let h = load_history(tx, org, &[row.id]).await?.remove(&row.id).unwrap_or_default();
        row.to_pb(&name, h, timefmt::now())
    }

    /// `GET /api/compliance/workflow-instances/` (every role): filters `workflow`, `status`,
    /// `assigned_to`, `related_incident`, `overdue`, `search`; newest first.
    pub async fn list_workflow_instances(
        &self,
        ctx: &RequestCtx,
        req: pb::ListWorkflowInstancesRequest,
    ) -> Result<pb::ListWorkflowInstancesResponse> {
        let list = ListRequest::new(req.page, req.page_size, req.cursor.as_deref())?;
        let filters = InstanceFilters {
            workflow: opt_uuid("workflow", req.workflow.as_deref())?,
            status: opt_choice("status", req.status.as_deref())?,
            assigned_to: opt_uuid("assigned_to", req.assigned_to.as_deref())?,
            incident: opt_uuid("related_incident", req.related_incident.as_deref())?,
            overdue: req.overdue,
            search: search_pattern(req.search.as_deref()),
            now: timefmt::now(),
        };
        let after = list.after::<(OffsetDateTime, Uuid)>(INSTANCES)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let mut q = filters
            .apply(org)
            .order((instances::started_at.desc(), instances::id.desc()))
            .offset(list.offset())
            .limit(list.fetch())
            .select(InstanceRow::as_select());
        if let Some(key) = after {
            q = q.filter(list::before((instances::started_at, instances::id), key));
        }
        let rows: Vec<InstanceRow> = list::one_shot(q).load(tx.conn()).await?;
        let mut page = list::page(
            &mut tx,
            &list,
            rows,
            |r| Some(cursor(INSTANCES, &(r.started_at, r.id))),
            || filters.apply(org).select(list::row()),
        )
        .await?;
        let rows = std::mem::take(&mut page.results);
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let wf_ids: Vec<Uuid> = rows.iter().map(|r| r.workflow_id).collect();
        let names: HashMap<Uuid, String> = workflows::table
            .filter(workflows::organization_id.eq(org))
            .filter(workflows::id.eq_any(&wf_ids))
            .select((workflows::id, workflows::name))
            .load::<(Uuid, String)>(tx.conn())
            .await?
            .into_iter()
            .collect();
        let mut histories = load_history(&mut tx, org, &ids).await?;
        tx.commit().await?;
        let now = timefmt::now();
        let results = rows
            .into_iter()
            .map(|r| {
                let name = names.get(&r.workflow_id).cloned().unwrap_or_default();
                let h = histories.remove(&r.id).unwrap_or_default();
                r.to_pb(&name, h, now)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(pb::ListWorkflowInstancesResponse::from_page(page.with_results(results)))
    }

    /// `GET /api/compliance/workflow-instances/{id}/` (every role), with its whole history.
    pub async fn get_workflow_instance(
        &self,
        ctx: &RequestCtx,
        req: pb::GetWorkflowInstanceRequest,
    ) -> Result<pb::WorkflowInstance> {
        let id = parse_id("Workflow instance", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        let row = find_instance(&mut tx, org, id, false).await?;
        let out = self.instance_pb(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/workflow-instances/{id}/advance_step/`, seed 000's body: a move the
    /// definition allows, by the step's role, with exactly the step's data (400 saying what is
    /// allowed or expected); entering a final step completes the instance.
    pub async fn advance_workflow_step(
        &self,
        ctx: &RequestCtx,
        req: pb::AdvanceWorkflowStepRequest,
    ) -> Result<pb::WorkflowInstance> {
        let id = parse_id("Workflow instance", &req.id)?;
        let data: Map<String, Value> = match req.step_data.trim() {
            "" => Map::new(),
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => m,
                _ => return Err(Problem::invalid_field("step_data", "a JSON object of the step's fields").into()),
            },
        };
        let next = req.next_step.trim().to_owned();
        if next.is_empty() {
            return Err(Problem::invalid_field("next_step", "required").into());
        }
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Read).await?;
        ctx.require(Access::Write).or_else(|e| if ctx.role == custos_core::Role::Auditor { Ok(()) } else { Err(e) })?;
        let current = find_instance(&mut tx, org, id, true).await?;
        ensure_open(&current)?;
        let definition = definition_of(&current.definition)?;
        let stored = definition.check_move(&current.current_step, &next, ctx.role, &data)?;
        let now = timefmt::now();
        let mut deadlines = deadlines_map(&current.deadlines);
        if let Some(at) = definition.entry_deadline(&next, now) {
            deadlines.insert(next.clone(), at);
        }
        let is_final = definition.step(&next).is_some_and(|s| s.is_final);
        let mut step_data = current.step_data.as_object().cloned().unwrap_or_default();
        step_data.insert(next.clone(), Value::Object(stored.clone()));
        let (status, completed_at, due) = if is_final {
            (InstanceStatus::Completed, Some(now), None)
        } else {
            (InstanceStatus::InProgress, None, current_due(current.due_date, deadlines.get(&next).copied()))
        };
        let row: InstanceRow =
            diesel::update(instances::table.filter(instances::organization_id.eq(org)).filter(instances::id.eq(id)))
                .set((
                    instances::current_step.eq(&next),
                    instances::status.eq(status),
                    instances::completed_at.eq(completed_at),
                    instances::deadlines.eq(deadlines_json(&deadlines)),
                    instances::current_due_at.eq(due),
                    instances::step_data.eq(Value::Object(step_data)),
                    instances::updated_at.eq(now),
                ))
                .returning(InstanceRow::as_returning())
                .get_result(tx.conn())
                .await?;
        append_history(&mut tx, org, id, Some(&current.current_step), &next, ctx, Value::Object(stored)).await?;
        record_change(&mut tx, ctx, "advance_step", "workflow_instance", id, current.audited(), row.audited()).await?;
        let out = self.instance_pb(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/workflow-instances/{id}/assign_stakeholder/` (editors, admins).
    pub async fn assign_stakeholder(
        &self,
        ctx: &RequestCtx,
        req: pb::AssignStakeholderRequest,
    ) -> Result<pb::WorkflowInstance> {
        let id = parse_id("Workflow instance", &req.id)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find_instance(&mut tx, org, id, true).await?;
        ensure_open(&current)?;
        let raw = req.stakeholder_id.trim();
        if raw.is_empty() {
            return Err(Problem::invalid_field("stakeholder_id", "required").into());
        }
        let user = refs::user(&mut tx, ctx, "stakeholder_id", Some(raw)).await?.unwrap_or_default();
        let mut row = current.clone();
        if !current.stakeholders.contains(&user) {
            let mut stakeholders = current.stakeholders.clone();
            stakeholders.push(user);
            row = diesel::update(
                instances::table.filter(instances::organization_id.eq(org)).filter(instances::id.eq(id)),
            )
            .set((instances::stakeholders.eq(stakeholders), instances::updated_at.eq(timefmt::now())))
            .returning(InstanceRow::as_returning())
            .get_result(tx.conn())
            .await?;
            record_change(
                &mut tx,
                ctx,
                "assign_stakeholder",
                "workflow_instance",
                id,
                current.audited(),
                row.audited(),
            )
            .await?;
        }
        let out = self.instance_pb(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// `POST /api/compliance/workflow-instances/{id}/cancel/` (editors, admins): with a reason,
    /// kept in the history.
    pub async fn cancel_workflow_instance(
        &self,
        ctx: &RequestCtx,
        req: pb::CancelWorkflowInstanceRequest,
    ) -> Result<pb::WorkflowInstance> {
        let id = parse_id("Workflow instance", &req.id)?;
        let reason = required_text("reason", req.reason.trim(), 2000)?;
        let org = ctx.organization_id;
        let mut tx = self.db.begin_as(ctx, Access::Write).await?;
        let current = find_instance(&mut tx, org, id, true).await?;
        ensure_open(&current)?;
        let row: InstanceRow =
            diesel::update(instances::table.filter(instances::organization_id.eq(org)).filter(instances::id.eq(id)))
                .set((
                    instances::status.eq(InstanceStatus::Cancelled),
                    instances::current_due_at.eq(None::<OffsetDateTime>),
                    instances::updated_at.eq(timefmt::now()),
                ))
                .returning(InstanceRow::as_returning())
                .get_result(tx.conn())
                .await?;
        let step = current.current_step.clone();
        append_history(&mut tx, org, id, Some(&step), &step, ctx, json!({ "cancelled": reason })).await?;
        record_change(&mut tx, ctx, "cancel", "workflow_instance", id, current.audited(), row.audited()).await?;
        let out = self.instance_pb(&mut tx, org, row).await?;
        tx.commit().await?;
        Ok(out)
    }
}

fn audited(w: pb::Workflow) -> Value {
    serde_json::to_value(w).unwrap_or(Value::Null)
}

fn ensure_open(row: &InstanceRow) -> Result<()> {
    if row.status == InstanceStatus::InProgress {
        return Ok(());
    }
    Err(Problem::state_conflict(
        format!("Workflow instance is {}", row.status.to_string().to_lowercase().replace('_', " ")),
        format!("Instance {} is {}: it is read-only", row.id, row.status),
    )
    .into())
}

async fn append_history(
    tx: &mut Tx,
    org: Uuid,
    instance: Uuid,
    from: Option<&str>,
    to: &str,
    ctx: &RequestCtx,
    data: Value,
) -> Result<()> {
    let last: Option<i32> = history::table
        .filter(history::organization_id.eq(org))
        .filter(history::instance_id.eq(instance))
        .select(diesel::dsl::max(history::sequence))
        .first(tx.conn())
        .await?;
    diesel::insert_into(history::table)
        .values((
            history::organization_id.eq(org),
            history::instance_id.eq(instance),
            history::sequence.eq(last.unwrap_or(0) + 1),
            history::from_step.eq(from),
            history::to_step.eq(to),
            history::actor.eq(ctx.actor.label()),
            history::data.eq(data),
        ))
        .execute(tx.conn())
        .await?;
    Ok(())
}

async fn load_history(tx: &mut Tx, org: Uuid, ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<HistoryRow>>> {
    let rows: Vec<HistoryRow> = history::table
        .filter(history::organization_id.eq(org))
        .filter(history::instance_id.eq_any(ids))
        .order((history::instance_id, history::sequence))
        .select(HistoryRow::as_select())
        .load(tx.conn())
        .await?;
    let mut out: HashMap<Uuid, Vec<HistoryRow>> = HashMap::new();
    for r in rows {
        out.entry(r.instance_id).or_default().push(r);
    }
    Ok(out)
}

async fn workflow_name(tx: &mut Tx, org: Uuid, id: Uuid) -> Result<String> {
    Ok(workflows::table
        .filter(workflows::organization_id.eq(org))
        .filter(workflows::id.eq(id))
        .select(workflows::name)
        .first(tx.conn())
        .await?)
}

async fn find_workflow(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<WorkflowRow> {
    let q = workflows::table
        .filter(workflows::organization_id.eq(org))
        .filter(workflows::id.eq(id))
        .select(WorkflowRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Workflow", id))?)
}

async fn find_instance(tx: &mut Tx, org: Uuid, id: Uuid, lock: bool) -> Result<InstanceRow> {
    let q = instances::table
        .filter(instances::organization_id.eq(org))
        .filter(instances::id.eq(id))
        .select(InstanceRow::as_select());
    let row = if lock { q.for_update().first(tx.conn()).await } else { q.first(tx.conn()).await };
    Ok(row.optional()?.ok_or_else(|| Problem::not_found("Workflow instance", id))?)
}

fn name_taken(e: custos_db::DbError, name: &str) -> WorkflowsError {
    e.unique_as_conflict("Workflow exists", format!("A workflow named {name:?} exists")).into()
}
