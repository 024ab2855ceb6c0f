//! Which unreleased legal holds cover a resource.

use custos_core::{Held, HoldCheck, HoldRef, Problem, hold::HoldFuture};
use custos_db::schema::{legal_hold_items, legal_holds};
use custos_db::{DbError, PgConn};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

/// Answers from the `legal_holds` tables, in the caller's transaction.
#[derive(Debug, Clone, Copy, Default)]
pub struct LegalHoldCheck;

/// The identifier form holds store custodians in.
pub fn normalize_identifier(raw: &str) -> String {
    raw.trim().to_lowercase()
}

async fn covering(conn: &mut PgConn, organization_id: Uuid, target: &Held) -> Result<Vec<HoldRef>, DbError> {
    let active = legal_holds::table
        .filter(legal_holds::organization_id.eq(organization_id))
        .filter(legal_holds::status.eq("ACTIVE"));
    let rows: Vec<(Uuid, String, String)> = match target {
        Held::Incident(id) | Held::Evidence(id) => {
            let resource_type = if matches!(target, Held::Incident(_)) { "incident" } else { "evidence" };
            let held = legal_hold_items::table
                .filter(legal_hold_items::organization_id.eq(organization_id))
                .filter(legal_hold_items::resource_type.eq(resource_type))
                .filter(legal_hold_items::resource_id.eq(*id))
                .select(legal_hold_items::hold_id);
            active
                .filter(legal_holds::id.eq_any(held))
                .order(legal_holds::created_at.asc())
                .select((legal_holds::id, legal_holds::case_name, legal_holds::case_number))
                .load(conn)
                .await?
        }
        Held::Subject(who) => {
            active
                .filter(legal_holds::custodians.contains(vec![normalize_identifier(who)]))
                .order(legal_holds::created_at.asc())
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
}
