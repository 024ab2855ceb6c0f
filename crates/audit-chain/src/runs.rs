//! Verification runs: a verification that saves its progress as it goes, so that anyone can
//! watch it, and that carries on from where it stopped after a crash, a killed process or a
//! dropped connection, instead of starting over.
//!
//! A run is a row of `audit_verifications`. The runner holding it saves, at most every
//! [`SAVE_EVERY`], how far it has got and the verifier's state there ([`Resume`]: the chain hash
//! and the tree's compact range), authenticated with a key derived from the checkpoint signing
//! key, so that whoever can write to the database cannot forge a half-done verification. Saving
//! is also the runner's heartbeat: once a run has not been saved for [`LEASE`], it is
//! *interrupted* and [`AuditChain::resume_verification`] may take it over, in a new snapshot,
//! checking on the way everything written since. A run's start, resumptions and result are
//! recorded in the audit chain. One run of each depth may be live per organisation at a time.
//! Heartbeats and their checks use this process's clock.
//!
//! A run is [`Launch::Attached`] to a caller who waits on it (the synchronous API call, the
//! CLI), who resumes it if it stops — it may have been stopped on purpose — or runs in the
//! [`Launch::Background`], where the server finishes it: [`AuditChain::resume_interrupted`]
//! (the platform's `audit.verification_resumer` job, at start and every few minutes) resumes
//! every background run whose lease has lapsed, on whichever replica runs that job.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use custos_core::{RequestCtx, new_id};
use custos_db::schema::audit_verifications;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::task::AbortOnDropHandle;
use uuid::Uuid;

use crate::encoding::Hash;
use crate::sequencer::{AuditChain, ChainError};
use crate::verify::{Depth, Pass, Resume, VerifyReport};

/// How long a run's runner may go without saving before the run counts as interrupted.
pub const LEASE: Duration = Duration::from_secs(60);
/// How often a runner saves its progress (and so shows it is alive).
pub const SAVE_EVERY: Duration = Duration::from_millis(500);

/// The audit trail's name for the server resuming interrupted background runs.
pub const RESUMER_JOB: &str = "audit-verification-resumer";

/// Who carries a run to its end, and so resumes it after an interruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    /// A caller waits on it and resumes it if it stops.
    Attached,
    /// It runs on the server, which resumes it once its lease lapses.
    Background,
}

const STATE_VERSION: &[u8; 4] = b"CVR1";
const STATE_KEY_CONTEXT: &str = "custos-audit 2026-12 verification run state";

/// A row of `audit_verifications`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = audit_verifications, treat_none_as_null = true)]
pub struct RunRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub requested_by: String,
    pub depth: String,
    pub days: Option<i32>,
    pub status: String,
    pub first_seq: i64,
    pub tree_size: i64,
    pub next_seq: i64,
    pub entries_checked: i64,
    pub checkpoints_checked: i64,
    pub resume_state: Option<Vec<u8>>,
    pub runner: Uuid,
    pub resumes: i32,
    pub first_bad_seq: Option<i64>,
    pub problem: Option<String>,
    pub notes: Vec<String>,
    pub started_at: OffsetDateTime,
    pub heartbeat_at: OffsetDateTime,
    pub finished_at: Option<OffsetDateTime>,
    /// Started in the background: the server resumes it when interrupted.
    pub background: bool,
}

impl RunRow {
    /// `running`, `interrupted` (running, but its runner stopped saving), `passed` or `failed`.
    pub fn status_now(&self, now: OffsetDateTime) -> &str {
        if self.status == "running" && self.lapsed(now) { "interrupted" } else { &self.status }
    }

    fn lapsed(&self, now: OffsetDateTime) -> bool {
        now - self.heartbeat_at > LEASE
    }

    fn depth(&self) -> Depth {
        Depth::structure_only(self.depth == "structure")
    }

    /// What the audit trail records of the run.
    fn snapshot(&self) -> Value {
        json!({
            "status": self.status,
            "depth": self.depth,
            "days": self.days,
            "first_seq": self.first_seq,
            "tree_size": self.tree_size,
            "next_seq": self.next_seq,
            "entries_checked": self.entries_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "resumes": self.resumes,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        })
    }
}

fn depth_name(depth: Depth) -> &'static str {
    match depth {
        Depth::Content => "content",
        Depth::Structure => "structure",
    }
}

/// A verification run held by this process: step it to the end with [`Run::step`] (or
/// [`Run::run_to_end`]), then [`Run::finish`]. Dropped before finishing, it is left to lapse
/// and be resumed, exactly as if the process had died.
pub struct Run {
    chain: AuditChain,
    ctx: RequestCtx,
    row: RunRow,
    pass: Pass,
    saved_at: Instant,
}

impl AuditChain {
    /// Starts a verification run of the caller's organisation.
    pub async fn start_verification(
        &self,
        ctx: &RequestCtx,
        days: Option<u32>,
        depth: Depth,
        launch: Launch,
    ) -> Result<Run, ChainError> {
        let mut tx = self.db.begin(ctx.organization_id).await?;
        // One live run per organisation and depth: a verification is heavy, and a second one
        // over the same log would only repeat the first. Serialised by a lock on that pair, so
        // two starts cannot both find none.
        tx.lock_named(&format!("custos audit verification {} {}", ctx.organization_id, depth_name(depth))).await?;
        let live: Option<Uuid> = audit_verifications::table
            .filter(audit_verifications::organization_id.eq(ctx.organization_id))
            .filter(audit_verifications::depth.eq(depth_name(depth)))
            .filter(audit_verifications::status.eq("running"))
            .filter(audit_verifications::heartbeat_at.gt(custos_core::timefmt::now() - LEASE))
            .select(audit_verifications::id)
            .first(tx.conn())
            .await
            .optional()?;
        if let Some(id) = live {
            return Err(ChainError::VerificationRunning(id));
        }
        // The snapshot is taken once the start is sure to go ahead.
        let pass = self.open_pass(ctx.organization_id, days, depth, None).await?;
        let report = pass.report();
        let now = custos_core::timefmt::now();
        let row = RunRow {
            id: new_id(),
            organization_id: ctx.organization_id,
            requested_by: ctx.actor.label(),
            depth: depth_name(depth).into(),
            days: days.map(|d| d.min(i32::MAX as u32) as i32),
            status: "running".into(),
            first_seq: report.first_seq as i64,
            tree_size: report.tree_size as i64,
            next_seq: report.first_seq as i64,
            entries_checked: 0,
            checkpoints_checked: 0,
            resume_state: None,
            runner: new_id(),
            resumes: 0,
            first_bad_seq: None,
            problem: None,
            notes: Vec::new(),
            started_at: now,
            heartbeat_at: now,
            finished_at: None,
            background: launch == Launch::Background,
        };
        diesel::insert_into(audit_verifications::table).values(&row).execute(tx.conn()).await?;
        crate::record_change(&mut tx, ctx, "create", "audit_verification", row.id, Value::Null, row.snapshot()).await?;
        tx.commit().await?;
        Ok(Run { chain: self.clone(), ctx: ctx.clone(), row, pass, saved_at: Instant::now() })
    }

    /// Takes over an interrupted run and carries on from its last saved state (from its start
    /// when it saved none). Refused while its runner still holds it, once it has finished, or
    /// when its saved state does not authenticate.
    pub async fn resume_verification(&self, ctx: &RequestCtx, id: Uuid) -> Result<Run, ChainError> {
        let mut tx = self.db.begin(ctx.organization_id).await?;
        let before: RunRow = audit_verifications::table
            .filter(audit_verifications::organization_id.eq(ctx.organization_id))
            .filter(audit_verifications::id.eq(id))
            .for_update()
            .select(RunRow::as_select())
            .first(tx.conn())
            .await
            .optional()?
            .ok_or(ChainError::NoSuchVerification(id))?;
        let now = custos_core::timefmt::now();
        if before.status != "running" {
            return Err(ChainError::Unresumable(format!("it has already finished ({})", before.status)));
        }
        if !before.lapsed(now) {
            return Err(ChainError::VerificationBusy(id));
        }
        let resume = match &before.resume_state {
            Some(state) => Some(self.open_state(&before, state)?),
            None => None,
        };
        let days = before.days.map(|d| d.max(0) as u32);
        let pass = self.open_pass(ctx.organization_id, days, before.depth(), resume.as_ref()).await?;
        let mut row = before.clone();
        row.runner = new_id();
        row.resumes += 1;
        row.heartbeat_at = now;
        row.tree_size = pass.report().tree_size as i64;
        // Its row is locked above, so the takeover needs no runner check.
        diesel::update(audit_verifications::table.find(id)).set(&row).execute(tx.conn()).await?;
        crate::record_change(&mut tx, ctx, "resume", "audit_verification", id, before.snapshot(), row.snapshot())
            .await?;
        tx.commit().await?;
        metrics::counter!("custos_audit_verification_resumes_total").increment(1);
        Ok(Run { chain: self.clone(), ctx: ctx.clone(), row, pass, saved_at: Instant::now() })
    }

    /// One run of the caller's organisation.
    pub async fn verification(&self, ctx: &RequestCtx, id: Uuid) -> Result<RunRow, ChainError> {
        let mut tx = self.db.begin(ctx.organization_id).await?;
        let row = audit_verifications::table
            .filter(audit_verifications::organization_id.eq(ctx.organization_id))
            .filter(audit_verifications::id.eq(id))
            .select(RunRow::as_select())
            .first(tx.conn())
            .await
            .optional()?;
        tx.commit().await?;
        row.ok_or(ChainError::NoSuchVerification(id))
    }

    /// The caller's organisation's runs, newest first (ids are time-ordered), `limit` of them
    /// from before run `before`.
    pub async fn verifications(
        &self,
        ctx: &RequestCtx,
        before: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<RunRow>, ChainError> {
        let mut q = audit_verifications::table
            .filter(audit_verifications::organization_id.eq(ctx.organization_id))
            .into_boxed::<diesel::pg::Pg>();
        if let Some(id) = before {
            q = q.filter(audit_verifications::id.lt(id));
        }
        let mut tx = self.db.begin(ctx.organization_id).await?;
        let rows =
            q.order(audit_verifications::id.desc()).limit(limit).select(RunRow::as_select()).load(tx.conn()).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The background runs of every organisation whose lease has lapsed, as `(organisation, run)`,
    /// longest interrupted first.
    pub async fn interrupted_background_runs(&self) -> Result<Vec<(Uuid, Uuid)>, ChainError> {
        #[derive(QueryableByName)]
        struct Interrupted {
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            organization_id: Uuid,
            #[diesel(sql_type = diesel::sql_types::Uuid)]
            id: Uuid,
        }
        let mut tx = self.db.begin_untenanted().await?;
        let rows: Vec<Interrupted> =
            diesel::sql_query("SELECT organization_id, id FROM custos_audit_interrupted_verifications($1)")
                .bind::<diesel::sql_types::Timestamptz, _>(custos_core::timefmt::now() - LEASE)
                .load(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(rows.into_iter().map(|r| (r.organization_id, r.id)).collect())
    }

    /// Resumes and finishes, one after another, every interrupted background run not in `skip`;
    /// gives each one's outcome. A run another replica took over first is refused as busy.
    pub async fn resume_interrupted(
        &self,
        skip: &HashSet<Uuid>,
    ) -> Result<Vec<(Uuid, Result<VerifyReport, ChainError>)>, ChainError> {
        let mut outcomes = Vec::new();
        for (org, id) in self.interrupted_background_runs().await? {
            if skip.contains(&id) {
                continue;
            }
            let ctx = RequestCtx::system(org, RESUMER_JOB);
            let outcome = match self.resume_verification(&ctx, id).await {
                // On a task of its own, so that a run that panics fails alone rather than
                // ending the watcher; aborted should the watcher stop waiting (shutting down),
                // which leaves it interrupted for the next start.
                Ok(run) => match AbortOnDropHandle::new(tokio::spawn(run.run_to_end(|_| {}))).await {
                    Ok(finished) => finished.map(|(_, report)| report),
                    Err(e) => Err(ChainError::Corrupt(org, format!("the resumed verification {id} stopped: {e}"))),
                },
                Err(e) => Err(e),
            };
            outcomes.push((id, outcome));
        }
        Ok(outcomes)
    }

    fn state_key(&self) -> Hash {
        self.signer.derive_key(STATE_KEY_CONTEXT)
    }

    /// The saved state of `row`, authenticated and bound to the run, its organisation and depth.
    fn seal_state(&self, row: &RunRow, resume: &Resume) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 16 + 16 + 1 + 32 + 32 + 32 + resume.frontier.len() + 32);
        out.extend_from_slice(STATE_VERSION);
        out.extend_from_slice(row.id.as_bytes());
        out.extend_from_slice(row.organization_id.as_bytes());
        out.push(u8::from(row.depth() == Depth::Structure));
        for n in [resume.first_seq, resume.next_seq, resume.entries_checked, resume.checkpoints_checked] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out.extend_from_slice(&resume.chain);
        out.extend_from_slice(&resume.frontier);
        let mac = blake3::keyed_hash(&self.state_key(), &out);
        out.extend_from_slice(mac.as_bytes());
        out
    }

    fn open_state(&self, row: &RunRow, sealed: &[u8]) -> Result<Resume, ChainError> {
        let refused = |why: &str| ChainError::Unresumable(format!("its saved state {why}"));
        const FIXED: usize = 4 + 16 + 16 + 1 + 32 + 32;
        if sealed.len() < FIXED + 32 || !(sealed.len() - FIXED - 32).is_multiple_of(32) {
            return Err(refused("is malformed"));
        }
        let (body, mac) = sealed.split_at(sealed.len() - 32);
        let expected = blake3::keyed_hash(&self.state_key(), body);
        // blake3::Hash compares in constant time.
        if blake3::Hash::from_bytes(mac.try_into().expect("32 bytes")) != expected {
            return Err(refused("does not authenticate (altered, or saved under another signing key)"));
        }
        let number = |at: usize| u64::from_be_bytes(body[at..at + 8].try_into().expect("8 bytes"));
        let bound = &body[..4] == STATE_VERSION
            && body[4..20] == *row.id.as_bytes()
            && body[20..36] == *row.organization_id.as_bytes()
            && body[36] == u8::from(row.depth() == Depth::Structure);
        if !bound {
            return Err(refused("belongs to another run"));
        }
        let resume = Resume {
            first_seq: number(37),
            next_seq: number(45),
            entries_checked: number(53),
            checkpoints_checked: number(61),
            chain: body[69..101].try_into().expect("32 bytes"),
            frontier: body[101..].to_vec(),
        };
        if resume.first_seq != row.first_seq as u64 {
            return Err(refused("does not match the run"));
        }
        Ok(resume)
    }
}

impl Run {
    pub fn id(&self) -> Uuid {
        self.row.id
    }

    /// The run as last saved.
    pub fn row(&self) -> &RunRow {
        &self.row
    }

    /// `(next sequence number, entries checked, checkpoints checked)` so far.
    pub fn progress(&self) -> (u64, u64, u64) {
        self.pass.progress()
    }

    /// The report so far.
    pub fn report(&self) -> &VerifyReport {
        self.pass.report()
    }

    /// Checks the next batch, saving progress when it is due; `false` once there is nothing
    /// more to step through.
    pub async fn step(&mut self) -> Result<bool, ChainError> {
        let more = self.pass.step().await?;
        if more && self.saved_at.elapsed() >= SAVE_EVERY {
            self.save().await?;
        }
        Ok(more)
    }

    /// Saves how far the run has got (and that its runner is alive).
    pub async fn save(&mut self) -> Result<(), ChainError> {
        let (next, entries, checkpoints) = self.pass.progress();
        let mut saved = self.row.clone();
        (saved.next_seq, saved.entries_checked, saved.checkpoints_checked) =
            (next as i64, entries as i64, checkpoints as i64);
        saved.resume_state = self.pass.resume_point().map(|r| self.chain.seal_state(&saved, &r));
        saved.heartbeat_at = custos_core::timefmt::now();
        let mut tx = self.chain.db.begin(saved.organization_id).await?;
        write_held(&mut tx, &saved).await?;
        tx.commit().await?;
        self.row = saved;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Steps to the end, showing `progress` the run after every step.
    pub async fn run_to_end(mut self, mut progress: impl FnMut(&Run)) -> Result<(Uuid, VerifyReport), ChainError> {
        while self.step().await? {
            progress(&self);
        }
        self.finish().await
    }

    /// Checks the end of the log and records the result (in the run and in the audit trail).
    pub async fn finish(mut self) -> Result<(Uuid, VerifyReport), ChainError> {
        while self.pass.step().await? {}
        let (next, _, _) = self.pass.progress();
        let report = self.pass.finish().await?;
        let before = self.row.clone();
        let row = &mut self.row;
        row.status = if report.ok { "passed" } else { "failed" }.into();
        // A pass whose anchor could not be read never reached its first entry.
        row.next_seq = (next as i64).max(row.first_seq);
        row.entries_checked = report.entries_checked as i64;
        row.checkpoints_checked = report.checkpoints_checked as i64;
        row.first_bad_seq = report.first_bad_seq.map(|s| s as i64);
        row.problem = report.problem.clone();
        row.notes = report.notes.clone();
        row.resume_state = None;
        let now = custos_core::timefmt::now();
        (row.heartbeat_at, row.finished_at) = (now, Some(now));
        let mut tx = self.chain.db.begin(row.organization_id).await?;
        write_held(&mut tx, row).await?;
        crate::record_change(
            &mut tx,
            &self.ctx,
            "update_status",
            "audit_verification",
            row.id,
            before.snapshot(),
            row.snapshot(),
        )
        .await?;
        if !report.ok {
            // Whoever subscribed hears of it with the run's outcome, once.
            let event = serde_json::json!({
                "verification": row.id,
                "depth": row.depth,
                "first_bad_seq": row.first_bad_seq,
                "problem": row.problem,
                "entries_checked": row.entries_checked,
            });
            custos_db::outbox::emit(&mut tx, row.organization_id, VERIFICATION_FAILED, event).await?;
        }
        tx.commit().await?;
        metrics::counter!(
            "custos_audit_verifications_total",
            "depth" => row.depth.clone(),
            "result" => row.status.clone()
        )
        .increment(1);
        Ok((row.id, report))
    }
}

/// The event a failed verification emits (notification channels subscribe to it).
pub const VERIFICATION_FAILED: &str = "audit.verification_failed";

/// Writes `row` as it now is, provided its runner still holds the run (a runner that lost it to a
/// resumption must not overwrite the one that took it over).
async fn write_held(tx: &mut custos_db::Tx, row: &RunRow) -> Result<(), ChainError> {
    let updated = diesel::update(
        audit_verifications::table
            .filter(audit_verifications::id.eq(row.id))
            .filter(audit_verifications::runner.eq(row.runner))
            .filter(audit_verifications::status.eq("running")),
    )
    .set(row)
    .execute(tx.conn())
    .await?;
    if updated == 0 { Err(ChainError::VerificationTakenOver(row.id)) } else { Ok(()) }
}
