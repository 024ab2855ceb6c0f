//! Legal holds as every deleting path sees them: one question, "is this held?", asked in the
//! deleting transaction.
//!
//! The holds themselves live in the `holds` crate; domain crates that delete or dispose data
//! (incidents, evidence, retention runs, DSR erasure) depend only on this trait, so a hold is
//! enforced in exactly one place and no domain crate depends on another.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::error::Problem;

/// Something a legal hold can cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// An incident, and with it everything the hold preserves about it.
    Incident(Uuid),
    /// An evidence item (held directly, or through its incident).
    Evidence(Uuid),
    /// A custodian or data subject identifier (an e-mail address, a subject id), for DSR erasure.
    Subject(String),
}

impl fmt::Display for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Held::Incident(id) => write!(f, "Incident {id}"),
            Held::Evidence(id) => write!(f, "Evidence {id}"),
            Held::Subject(who) => write!(f, "Data of {who:?}"),
        }
    }
}

/// A hold that covers something, as named in the refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRef {
    pub id: Uuid,
    pub case_name: String,
    pub case_number: String,
}

impl fmt::Display for HoldRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "legal hold '{}'", self.case_name)?;
        if !self.case_number.is_empty() {
            write!(f, " (case {})", self.case_number)?;
        }
        write!(f, " [{}]", self.id)
    }
}

pub type HoldFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<HoldRef>, Problem>> + Send + 'a>>;

/// The holds covering each of several items, keyed by item id (an item no hold covers is absent).
pub type HoldsByIdFuture<'a> = Pin<Box<dyn Future<Output = Result<HashMap<Uuid, Vec<HoldRef>>, Problem>> + Send + 'a>>;

/// Answers which unreleased holds cover a resource, inside the caller's transaction `C`, so a
/// hold added concurrently either commits first (and is seen) or waits for the deletion.
pub trait HoldCheck<C: ?Sized>: Send + Sync {
    /// The holds covering `target`, after locking what placing a hold on it locks: for a
    /// deleting path, which then refuses if any (see [`ensure_not_held`]).
    fn holds_on<'a>(&'a self, conn: &'a mut C, organization_id: Uuid, target: &'a Held) -> HoldFuture<'a>;

    /// The holds covering each of `evidence_ids` (directly or through its incident), oldest first,
    /// without locking anything: for showing them (an evidence item lists its holds), by the same
    /// rule the deleting paths are refused by.
    fn holds_on_evidence<'a>(
        &'a self,
        conn: &'a mut C,
        organization_id: Uuid,
        evidence_ids: &'a [Uuid],
    ) -> HoldsByIdFuture<'a>;

    /// The holds covering each of `incident_ids`, oldest first, without locking anything: for a
    /// batch that has locked the incidents itself (a retention run), or for showing them.
    fn holds_on_incidents<'a>(
        &'a self,
        conn: &'a mut C,
        organization_id: Uuid,
        incident_ids: &'a [Uuid],
    ) -> HoldsByIdFuture<'a>;
}

/// Refuses with 409 naming every hold when `target` is held; `action` says what was refused
/// ("delete", "dispose of", "erase").
pub async fn ensure_not_held<C: ?Sized>(
    check: &dyn HoldCheck<C>,
    conn: &mut C,
    organization_id: Uuid,
    target: &Held,
    action: &str,
) -> Result<(), Problem> {
    let holds = check.holds_on(conn, organization_id, target).await?;
    if holds.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = holds.iter().map(ToString::to_string).collect();
    Err(Problem::state_conflict(
        "Resource is under legal hold",
        format!("Cannot {action} {target}: it is preserved by {}; release the hold first", names.join(", ")),
    ))
}
