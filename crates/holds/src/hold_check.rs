//! Which unreleased legal holds cover a resource: the one implementation of
//! `custos_core::HoldCheck`, asked by every deleting path inside its own transaction.
//!
//! A hold covers what it names — incidents, evidence items, custodian/subject identifiers — and
//! also every evidence item of a held incident: preserving a matter preserves its evidence.

use std::collections::HashMap;

use custos_core::hold::{HoldFuture, HoldsByIdFuture};
use custos_core::{Held, HoldCheck, HoldRef, Problem};
use custos_db::schema::{evidence, incidents, legal_hold_items, legal_holds};
use custos_db::{DbError, PgConn};
use diesel::prelude::*;
use diesel::sql_types::{Array, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

/// Answers from the `legal_holds` tables, in the caller's transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LegalHoldCheck;

/// The identifier form holds store custodians in.
pub fn normalize_identifier(raw: &str) -> String {
    raw.trim().to_lowercase()
}

#[derive(QueryableByName)]
struct ItemHoldRow {
    #[diesel(sql_type = SqlUuid)]
    item_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    hold_id: Uuid,
    #[diesel(sql_type = Text)]
    case_name: String,
    #[diesel(sql_type = Text)]
    case_number: String,
}

/// Unreleased holds covering each of `evidence_ids`, directly or through its incident.
pub async fn holds_on_evidence(
    conn: &mut PgConn,
    organization_id: Uuid,
    evidence_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<HoldRef>>, DbError> {
    let rows: Vec<ItemHoldRow> = diesel::sql_query(
        "SELECT e.id AS item_id, h.id AS hold_id, h.case_name, h.case_number
           FROM evidence e
           JOIN legal_hold_items i ON i.organization_id = e.organization_id
                AND ((i.resource_type = 'evidence' AND i.resource_id = e.id)
                  OR (i.resource_type = 'incident' AND i.resource_id = e.incident_id))
           JOIN legal_holds h ON h.organization_id = i.organization_id AND h.id = i.hold_id
          WHERE e.organization_id = $1 AND e.id = ANY($2) AND h.status = 'ACTIVE'
          ORDER BY h.created_at, h.id",
    )
    .bind::<SqlUuid, _>(organization_id)
    .bind::<Array<SqlUuid>, _>(evidence_ids)
    .load(conn)
    .await?;
    Ok(by_item(rows))
}

/// Unreleased holds covering each of `incident_ids`.
pub async fn holds_on_incidents(
    conn: &mut PgConn,
    organization_id: Uuid,
    incident_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<HoldRef>>, DbError> {
    let rows: Vec<ItemHoldRow> = diesel::sql_query(
        "SELECT i.resource_id AS item_id, h.id AS hold_id, h.case_name, h.case_number
           FROM legal_hold_items i
           JOIN legal_holds h ON h.organization_id = i.organization_id AND h.id = i.hold_id
          WHERE i.organization_id = $1 AND i.resource_type = 'incident' AND i.resource_id = ANY($2)
            AND h.status = 'ACTIVE'
          ORDER BY h.created_at, h.id",
    )
    .bind::<SqlUuid, _>(organization_id)
    .bind::<Array<SqlUuid>, _>(incident_ids)
    .load(conn)
    .await?;
    Ok(by_item(rows))
}

/// Each item's holds, each hold once, in the rows' order.
fn by_item(rows: Vec<ItemHoldRow>) -> HashMap<Uuid, Vec<HoldRef>> {
    let mut out: HashMap<Uuid, Vec<HoldRef>> = HashMap::new();
    for r in rows {
        let holds = out.entry(r.item_id).or_default();
        if !holds.iter().any(|h| h.id == r.hold_id) {
            holds.push(HoldRef { id: r.hold_id, case_name: r.case_name, case_number: r.case_number });
        }
    }
    out
}

/// Locks what placing a hold on `target` locks `FOR SHARE` (the incident, the evidence item and
/// its incident), so that the hold and the caller's deletion serialise: whichever commits first
/// is seen by the other. Every caller deletes or erases, so the lock is what it needs anyway.
async fn lock_target(conn: &mut PgConn, organization_id: Uuid, target: &Held) -> Result<(), DbError> {
    let incident = match target {
        Held::Incident(id) => Some(*id),
        Held::Evidence(id) => evidence::table
            .filter(evidence::organization_id.eq(organization_id))
            .filter(evidence::id.eq(*id))
            .select(evidence::incident_id)
            .for_no_key_update()
            .first::<Option<Uuid>>(conn)
            .await
            .optional()?
            .flatten(),
        Held::Subject(_) => None,
    };
    if let Some(incident) = incident {
        incidents::table
            .filter(incidents::organization_id.eq(organization_id))
            .filter(incidents::id.eq(incident))
            .select(incidents::id)
            .for_no_key_update()
            .first::<Uuid>(conn)
            .await
            .optional()?;
    }
    Ok(())
}

async fn covering(conn: &mut PgConn, organization_id: Uuid, target: &Held) -> Result<Vec<HoldRef>, DbError> {
    lock_target(conn, organization_id, target).await?;
    let active = legal_holds::table
        .filter(legal_holds::organization_id.eq(organization_id))
        .filter(legal_holds::status.eq("ACTIVE"));
    let rows: Vec<(Uuid, String, String)> = match target {
        Held::Evidence(id) => {
            return Ok(holds_on_evidence(conn, organization_id, &[*id]).await?.remove(id).unwrap_or_default());
        }
        Held::Incident(id) => {
            let held = legal_hold_items::table
                .filter(legal_hold_items::organization_id.eq(organization_id))
                .filter(legal_hold_items::resource_type.eq("incident"))
                .filter(legal_hold_items::resource_id.eq(*id))
                .select(legal_hold_items::hold_id);
            active
                .filter(legal_holds::id.eq_any(held))
                .order((legal_holds::created_at.asc(), legal_holds::id.asc()))
                .select((legal_holds::id, legal_holds::case_name, legal_holds::case_number))
                .load(conn)
                .await?
        }
        Held::Subject(who) => {
            active
                .filter(legal_holds::custodians.contains(vec![normalize_identifier(who)]))
                .order((legal_holds::created_at.asc(), legal_holds::id.asc()))
                .select((legal_holds::id, legal_holds::case_name, legal_holds::case_number))
                .load(conn)
                .await?
        }
    };
    Ok(rows.into_iter().map(|(id, case_name, case_number)| HoldRef { id, case_name, case_number }).collect())
}

impl HoldCheck<PgConn> for LegalHoldCheck {
    fn holds_on<'a>(&'a self, conn: &'a mut PgConn, organization_id: Uuid, target: &'a Held) -> HoldFuture<'a> {
        Box::pin(async move { covering(conn, organization_id, target).await.map_err(Problem::from) })
    }

    fn holds_on_evidence<'a>(
        &'a self,
        conn: &'a mut PgConn,
        organization_id: Uuid,
        evidence_ids: &'a [Uuid],
    ) -> HoldsByIdFuture<'a> {
        Box::pin(async move { holds_on_evidence(conn, organization_id, evidence_ids).await.map_err(Problem::from) })
    }

    fn holds_on_incidents<'a>(
        &'a self,
        conn: &'a mut PgConn,
        organization_id: Uuid,
        incident_ids: &'a [Uuid],
    ) -> HoldsByIdFuture<'a> {
        Box::pin(async move { holds_on_incidents(conn, organization_id, incident_ids).await.map_err(Problem::from) })
    }
}
