//! The one reference check for ids that name another resource of the caller's organisation — a
//! user, a framework, a requirement, an incident, an evidence item — whichever crate owns it.
//!
//! A reference given in a body (`assigned_to`, `incident`, `framework`, …) must name a row of the
//! caller's tenant: otherwise it is a 400 naming the field (`No incident with id …`), the same
//! answer for an id that exists nowhere and one of another tenant. The check takes no lock: a
//! writer locks its own row first, and a deletion locks the referenced row first, so a lock here
//! would be taken in the opposite order to a concurrent deletion's and deadlock against it (as
//! review found: a checkpoint update against its framework's deletion). The write's own
//! foreign-key check covers the moment between: a reference deleted meanwhile is a 422
//! (`custos_db`'s error mapping), and one kept unchanged is the deletion's to restrict or cascade.

use custos_core::filter::opt_uuid;
use custos_core::{Problem, RequestCtx};
use diesel::QueryableByName;
use diesel::sql_types::{Array, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::{DbError, Tx};

/// What a reference names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Framework,
    Requirement,
    Incident,
    Evidence,
}

impl Kind {
    fn table(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Framework => "frameworks",
            Kind::Requirement => "requirements",
            Kind::Incident => "incidents",
            Kind::Evidence => "evidence",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Framework => "framework",
            Kind::Requirement => "requirement",
            Kind::Incident => "incident",
            Kind::Evidence => "evidence",
        }
    }
}

/// How a found row is locked until the transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// Not at all (the reference checks: see the module's comment).
    None,
    /// Against deletion and any update (a legal hold placed on it waits for, and is seen by,
    /// a deletion or disposal that locks the row `FOR UPDATE` / `FOR NO KEY UPDATE`).
    Share,
}

/// `assigned_to`, `owner`, `primary_contact`, …: a user of the caller's organisation, or none.
pub async fn user(tx: &mut Tx, ctx: &RequestCtx, field: &str, raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    reference(tx, ctx, Kind::User, field, raw).await
}

/// A framework of the caller's organisation, or none.
pub async fn framework(tx: &mut Tx, ctx: &RequestCtx, field: &str, raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    reference(tx, ctx, Kind::Framework, field, raw).await
}

/// A requirement of the caller's organisation, or none.
pub async fn requirement(
    tx: &mut Tx,
    ctx: &RequestCtx,
    field: &str,
    raw: Option<&str>,
) -> Result<Option<Uuid>, Problem> {
    reference(tx, ctx, Kind::Requirement, field, raw).await
}

/// An incident of the caller's organisation, or none.
pub async fn incident(tx: &mut Tx, ctx: &RequestCtx, field: &str, raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    reference(tx, ctx, Kind::Incident, field, raw).await
}

/// An evidence item of the caller's organisation, or none.
pub async fn evidence(tx: &mut Tx, ctx: &RequestCtx, field: &str, raw: Option<&str>) -> Result<Option<Uuid>, Problem> {
    reference(tx, ctx, Kind::Evidence, field, raw).await
}

/// The id in `raw` (blank: none; malformed: 400), which must name a `kind` of the caller's
/// organisation (else 400 naming `field`).
pub async fn reference(
    tx: &mut Tx,
    ctx: &RequestCtx,
    kind: Kind,
    field: &str,
    raw: Option<&str>,
) -> Result<Option<Uuid>, Problem> {
    let Some(id) = opt_uuid(field, raw)? else { return Ok(None) };
    all(tx, ctx, kind, field, &[id]).await?;
    Ok(Some(id))
}

/// Ids (already parsed) that must each name a `kind` of the caller's organisation: a 400 naming
/// `field` and every id that does not.
pub async fn all(tx: &mut Tx, ctx: &RequestCtx, kind: Kind, field: &str, ids: &[Uuid]) -> Result<(), Problem> {
    if ids.is_empty() {
        return Ok(());
    }
    let found = found(tx, ctx.organization_id, kind, ids, Lock::None).await?;
    let missing: Vec<String> = ids.iter().filter(|id| !found.contains(id)).map(ToString::to_string).collect();
    if !missing.is_empty() {
        return Err(Problem::invalid_field(field, format!("No {} with id {}", kind.noun(), missing.join(", "))));
    }
    Ok(())
}

/// Whether `id` names a `kind` of organisation `org`, locked as `lock` when it does: for callers
/// that answer otherwise than 400 (a hold's items are a 404).
pub async fn exists(tx: &mut Tx, org: Uuid, kind: Kind, id: Uuid, lock: Lock) -> Result<bool, DbError> {
    Ok(!found(tx, org, kind, &[id], lock).await?.is_empty())
}

async fn found(tx: &mut Tx, org: Uuid, kind: Kind, ids: &[Uuid], lock: Lock) -> Result<Vec<Uuid>, DbError> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let lock = match lock {
        Lock::None => "",
        Lock::Share => "FOR SHARE",
    };
    // The table and the lock come from the two enums above, never from input. Rows are locked
    // in id order, as every other multi-row lock here, so two checks never wait on each other.
    let sql = format!("SELECT id FROM {} WHERE organization_id = $1 AND id = ANY($2) ORDER BY id {lock}", kind.table());
    let rows: Vec<Found> =
        crate::prepared(diesel::sql_query(sql).bind::<SqlUuid, _>(org).bind::<Array<SqlUuid>, _>(ids.to_vec()))
            .load(tx.conn())
            .await?;
    Ok(rows.into_iter().map(|f| f.id).collect())
}
