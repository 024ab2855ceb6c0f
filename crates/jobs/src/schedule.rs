//! Schedules: when each kind of job starts, in cron syntax (UTC), fired exactly once per due
//! time however many replicas run a [`Scheduler`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use custos_core::{RequestCtx, new_id, timefmt};
use custos_db::schema::{job_schedules, organizations};
use custos_db::{Db, DbError};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::job::Scope;
use crate::model::ScheduleRow;
use crate::queue::{self, NewJob};

/// A schedule a domain declares: its name, the kind of job it starts, and its default timing.
#[derive(Debug, Clone)]
pub struct ScheduleDef {
    /// Lowercase letters, digits and dashes (`audit-retention`); `CUSTOS_SCHEDULE_<NAME>` (in
    /// capitals, dashes as underscores) overrides its cron, or turns it `off`.
    pub name: &'static str,
    pub kind: &'static str,
    /// [`Scope::Organization`]: one schedule per organisation (its admins may change it), each
    /// starting that organisation's job. [`Scope::System`]: one for the platform.
    pub scope: Scope,
    /// The cron the platform configured: the built-in default or the environment's.
    pub cron: String,
    pub enabled: bool,
    pub description: &'static str,
    pub parameters: Value,
    /// Also fire whenever a scheduler starts (a platform schedule that recovers what a stopped
    /// server left behind, such as interrupted verifications).
    pub at_start: bool,
}

impl ScheduleDef {
    /// A schedule with its built-in `cron`, which must parse (a programming error otherwise,
    /// caught by the tests that start every domain).
    pub fn new(
        name: &'static str,
        kind: &'static str,
        scope: Scope,
        cron: &str,
        description: &'static str,
    ) -> ScheduleDef {
        ScheduleDef {
            name,
            kind,
            scope,
            cron: cron.to_owned(),
            enabled: true,
            description,
            parameters: Value::Object(Default::default()),
            at_start: false,
        }
    }

    /// Fires also whenever a scheduler starts (platform schedules only).
    pub fn at_start(mut self) -> ScheduleDef {
        self.at_start = self.scope == Scope::System;
        self
    }

    /// The environment variable that configures it.
    pub fn env_var(&self) -> String {
        format!("CUSTOS_SCHEDULE_{}", self.name.to_ascii_uppercase().replace('-', "_"))
    }

    /// Applies the operator's setting, if any: a cron expression, or `off`.
    pub fn configured(mut self, setting: Option<&str>) -> Result<ScheduleDef, String> {
        match setting.map(str::trim) {
            None => {}
            Some(off) if off.eq_ignore_ascii_case("off") => self.enabled = false,
            Some(cron) => {
                parse_cron(cron, true).map_err(|e| format!("{}: {e}", self.env_var()))?;
                self.cron = cron.to_owned();
            }
        }
        Ok(self)
    }
}

/// Parses a cron expression: five fields (minute hour day-of-month month day-of-week), an
/// alias (`@daily`, `@hourly`, …) and, only where `seconds` allows it (the operator's own
/// configuration), a leading seconds field. The error says what is wrong.
pub fn parse_cron(expr: &str, seconds: bool) -> Result<Cron, String> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err("a cron expression is required, e.g. \"0 2 * * *\" (02:00 UTC daily)".into());
    }
    let fields = expr.split_whitespace().count();
    if !expr.starts_with('@') && fields != 5 && !(seconds && fields == 6) {
        return Err(format!(
            "{expr:?} has {fields} fields; use five: minute hour day-of-month month day-of-week (e.g. \"0 2 * * *\")"
        ));
    }
    let parser = CronParser::builder()
        .seconds(if seconds { Seconds::Optional } else { Seconds::Disallowed })
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(expr).map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))?;
    // A pattern no date satisfies (30 February) would never run.
    next_after(&cron, timefmt::now()).ok_or_else(|| format!("{expr:?} never matches a date"))?;
    Ok(cron)
}

/// The first time after `t` that `cron` matches (UTC).
pub fn next_after(cron: &Cron, t: OffsetDateTime) -> Option<OffsetDateTime> {
    let at = chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())?;
    let next = cron.find_next_occurrence(&at, false).ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(next.timestamp_nanos_opt()? as i128).ok()
}

/// Fires due schedules: on every replica, safely (see [`Scheduler::fire_due`]).
#[derive(Clone)]
pub struct Scheduler {
    db: Db,
    defs: Arc<Vec<ScheduleDef>>,
    attempts: Arc<HashMap<String, i32>>,
    wake: Arc<Notify>,
    tick: Duration,
}

/// How often the scheduler brings the schedules in line with the definitions: a new
/// organisation's schedules start within this (its admins' first look at them creates them too).
const SYNC_EVERY: Duration = Duration::from_secs(15);

impl Scheduler {
    /// `attempts`: each kind's attempts; `wake`: the local runner's, woken when a job is fired.
    pub fn new(
        db: Db,
        defs: Vec<ScheduleDef>,
        attempts: HashMap<String, i32>,
        wake: Arc<Notify>,
        tick: Duration,
    ) -> Scheduler {
        Scheduler { db, defs: Arc::new(defs), attempts: Arc::new(attempts), wake, tick }
    }

    /// Until `shutdown`: keeps the schedules in line with their definitions, and fires the
    /// due ones every tick.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.defs.is_empty() {
            return;
        }
        let mut synced: Option<Instant> = None;
        // It syncs first: the loop need not again at once.
        match self.due_at_start().await {
            Ok(()) => synced = Some(Instant::now()),
            Err(e) => tracing::warn!(error = %e, "cannot fire the schedules that run at start"),
        }
        loop {
            if synced.is_none_or(|at| at.elapsed() >= SYNC_EVERY) {
                match self.sync().await {
                    Ok(()) => synced = Some(Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "cannot bring the job schedules up to date"),
                }
            }
            match self.fire_due().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(fired = n, "schedules fired"),
                Err(e) => tracing::warn!(error = %e, "cannot fire due schedules"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.tick) => {}
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => return,
            }
        }
    }

    /// Brings the schedules up to date, and makes those that also run at start due now.
    async fn due_at_start(&self) -> Result<(), DbError> {
        self.sync().await?;
        let names: Vec<&str> = self.defs.iter().filter(|d| d.at_start).map(|d| d.name).collect();
        if names.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_system().await?;
        diesel::update(
            job_schedules::table
                .filter(job_schedules::name.eq_any(&names))
                .filter(job_schedules::organization_id.is_null())
                .filter(job_schedules::enabled.eq(true)),
        )
        .set(job_schedules::next_run_at.eq(Some(timefmt::now())))
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Creates the missing schedule rows (the platform's, and each organisation's) and applies
    /// the configured timing to the rows no admin has changed.
    pub async fn sync(&self) -> Result<(), DbError> {
        sync_all(&self.db, &self.defs).await
    }

    /// Fires every due schedule once, each in a transaction of its own: the schedule row is
    /// locked (`FOR UPDATE SKIP LOCKED`: a replica firing the same schedule skips it, and finds
    /// it no longer due once this commits), its job queued, its next time set. The unique index
    /// on (schedule, due time) would refuse a second job even if two replicas disagreed on the
    /// time. A schedule that missed several times while no replica ran fires once, not once per
    /// missed time. How many jobs were queued.
    pub async fn fire_due(&self) -> Result<usize, DbError> {
        let names: Vec<&str> = self.defs.iter().map(|d| d.name).collect();
        let mut fired = 0;
        loop {
            let mut tx = self.db.begin_system().await?;
            let due: Option<ScheduleRow> = job_schedules::table
                .filter(job_schedules::enabled.eq(true))
                .filter(job_schedules::next_run_at.le(timefmt::now()))
                .filter(job_schedules::name.eq_any(&names))
                .order(job_schedules::next_run_at.asc())
                .limit(1)
                .for_update()
                .skip_locked()
                .select(ScheduleRow::as_select())
                .first(tx.conn())
                .await
                .optional()?;
            let Some(row) = due else {
                tx.commit().await?;
                return Ok(fired);
            };
            let Some(def) = self.defs.iter().find(|d| d.name == row.name) else { return Ok(fired) };
            let due_at = row.next_run_at.unwrap_or_else(timefmt::now);
            let ctx = match row.organization_id {
                Some(org) => {
                    tx.set_tenant(org).await?;
                    Some(RequestCtx::system(org, format!("schedule {}", row.name)))
                }
                None => None,
            };
            let job = queue::enqueue(
                &mut tx,
                ctx.as_ref(),
                NewJob {
                    organization_id: row.organization_id,
                    kind: def.kind.to_owned(),
                    parameters: def.parameters.clone(),
                    max_attempts: self.attempts.get(def.kind).copied().unwrap_or(5),
                    created_by: format!("schedule:{}", row.name),
                    schedule: Some((row.name.clone(), due_at)),
                },
            )
            .await?;
            let next = parse_cron(&row.cron, true).ok().and_then(|cron| next_after(&cron, timefmt::now().max(due_at)));
            if next.is_none() {
                tracing::warn!(schedule = %row.name, cron = %row.cron, "schedule's cron never matches again; it stops");
            }
            diesel::update(job_schedules::table.find(row.id))
                .set((
                    job_schedules::last_run_at.eq(Some(due_at)),
                    job_schedules::last_job_id.eq(job.as_ref().map(|j| j.id).or(row.last_job_id)),
                    job_schedules::next_run_at.eq(next),
                ))
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
            if job.is_some() {
                fired += 1;
                self.wake.notify_one();
            }
        }
    }
}

/// [`sync_def`] of every definition, for every organisation, in one system-scope transaction.
pub(crate) async fn sync_all(db: &Db, defs: &[ScheduleDef]) -> Result<(), DbError> {
    let mut tx = db.begin_system().await?;
    for def in defs {
        sync_def(&mut tx, def, None).await?;
    }
    tx.commit().await
}

/// Brings one definition's rows (one organisation's, or all) in line: creates the missing
/// ones, applies the configured cron and enabled flag to those no admin changed.
pub(crate) async fn sync_def(tx: &mut custos_db::Tx, def: &ScheduleDef, only: Option<Uuid>) -> Result<(), DbError> {
    let next = parse_cron(&def.cron, true).ok().and_then(|c| next_after(&c, timefmt::now()));
    let orgs: Vec<Option<Uuid>> = match def.scope {
        Scope::System => vec![None],
        Scope::Organization => match only {
            Some(org) => vec![Some(org)],
            None => organizations::table
                .select(organizations::id)
                .load::<Uuid>(tx.conn())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        },
    };
    for org in orgs {
        diesel::insert_into(job_schedules::table)
            .values((
                job_schedules::id.eq(new_id()),
                job_schedules::organization_id.eq(org),
                job_schedules::name.eq(def.name),
                job_schedules::kind.eq(def.kind),
                job_schedules::cron.eq(&def.cron),
                job_schedules::enabled.eq(def.enabled),
                job_schedules::next_run_at.eq(next),
            ))
            .on_conflict_do_nothing()
            .execute(tx.conn())
            .await?;
    }
    let mut stale = job_schedules::table
        .filter(job_schedules::name.eq(def.name))
        .filter(job_schedules::customized.eq(false))
        .filter(job_schedules::cron.ne(&def.cron).or(job_schedules::enabled.ne(def.enabled)))
        .into_boxed();
    stale = match (def.scope, only) {
        (Scope::System, _) => stale.filter(job_schedules::organization_id.is_null()),
        (Scope::Organization, Some(org)) => stale.filter(job_schedules::organization_id.eq(org)),
        (Scope::Organization, None) => stale.filter(job_schedules::organization_id.is_not_null()),
    };
    let ids: Vec<Uuid> = stale.select(job_schedules::id).load(tx.conn()).await?;
    if !ids.is_empty() {
        diesel::update(job_schedules::table.filter(job_schedules::id.eq_any(ids)))
            .set((
                job_schedules::cron.eq(&def.cron),
                job_schedules::enabled.eq(def.enabled),
                job_schedules::next_run_at.eq(next),
                job_schedules::updated_at.eq(timefmt::now()),
            ))
            .execute(tx.conn())
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_expressions_parse_or_say_why_not() {
        assert!(parse_cron("0 2 * * *", false).is_ok());
        assert!(parse_cron("@daily", false).is_ok());
        assert!(parse_cron("0 0 1 1,4,7,10 *", false).is_ok());
        let six = parse_cron("* * * * * *", false).unwrap_err();
        assert!(six.contains("6 fields"), "{six}");
        assert!(parse_cron("* * * * * *", true).is_ok());
        let bad = parse_cron("61 * * * *", false).unwrap_err();
        assert!(bad.contains("not a valid cron expression"), "{bad}");
        assert!(parse_cron("", false).unwrap_err().contains("required"));
        assert!(parse_cron("0 0 30 2 *", false).unwrap_err().contains("never matches"));
    }

    #[test]
    fn the_next_run_is_in_utc() {
        let cron = parse_cron("0 2 * * *", false).unwrap();
        let t = time::macros::datetime!(2026-12-07 03:00 UTC);
        assert_eq!(next_after(&cron, t), Some(time::macros::datetime!(2026-12-08 02:00 UTC)));
        let t = time::macros::datetime!(2026-12-07 01:59:59 UTC);
        assert_eq!(next_after(&cron, t), Some(time::macros::datetime!(2026-12-07 02:00 UTC)));
    }

    #[test]
    fn the_environment_overrides_or_turns_off() {
        let def = ScheduleDef::new("audit-retention", "audit.retention", Scope::Organization, "30 3 * * *", "");
        assert_eq!(def.env_var(), "CUSTOS_SCHEDULE_AUDIT_RETENTION");
        assert!(!def.clone().configured(Some("off")).unwrap().enabled);
        assert_eq!(def.clone().configured(Some("0 4 * * *")).unwrap().cron, "0 4 * * *");
        assert!(def.configured(Some("nonsense")).unwrap_err().contains("CUSTOS_SCHEDULE_AUDIT_RETENTION"));
    }
}
