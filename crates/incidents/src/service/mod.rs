//! Every incident-response operation, written once. One submodule per resource; what they share
//! (errors, the transaction, audit, reference checks, filter parsing) is here.

mod checkpoints;
mod incidents;
mod plans;
mod vulnerabilities;

use custos_audit_chain::{record_change, snapshot};
use custos_core::ctx::Access;
use custos_core::filter::{Choice, parse_uuid};
use custos_core::{Problem, RequestCtx};
use custos_db::schema::users;
use custos_db::{Db, Holds, Tx};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use crate::sla::Slas;

custos_db::service_error! {
    pub enum IncidentsError {}
}

type Result<T, E = IncidentsError> = std::result::Result<T, E>;

const TITLE_MAX: usize = 500;
const TEXT_MAX: usize = 20_000;

#[derive(Clone)]
pub struct IncidentsService {
    db: Db,
    holds: Holds,
    slas: Slas,
}

impl IncidentsService {
    pub fn new(db: Db, holds: Holds, slas: Slas) -> Self {
        IncidentsService { db, holds, slas }
    }

    pub fn slas(&self) -> &Slas {
        &self.slas
    }

    async fn begin(&self, ctx: &RequestCtx, access: Access) -> Result<Tx> {
        Ok(self.db.begin_as(ctx, access).await?)
    }
}

/// An optional value of a closed set; blank is absent.
fn opt_choice<C: Choice>(field: &str, raw: Option<&str>) -> Result<Option<C>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => Ok(Some(C::parse_field(field, raw)?)),
    }
}

/// A required value of a closed set.
fn choice<C: Choice>(field: &str, raw: &str) -> Result<C> {
    if raw.trim().is_empty() {
        return Err(Problem::invalid_field(field, format!("This field is required: one of {}", C::allowed())).into());
    }
    Ok(C::parse_field(field, raw.trim())?)
}

fn opt_uuid(field: &str, raw: Option<&str>) -> Result<Option<Uuid>> {
    match raw.map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => Ok(Some(parse_uuid(field, raw)?)),
    }
}

fn search_pattern(raw: Option<&str>) -> Option<String> {
    raw.map(str::trim).filter(|s| !s.is_empty()).map(custos_core::filter::contains_pattern)
}

/// A user reference (`assigned_to`, `owner`, …): a user of the caller's organisation, else 400.
async fn user_ref(tx: &mut Tx, ctx: &RequestCtx, field: &str, raw: Option<&str>) -> Result<Option<Uuid>> {
    let Some(user) = opt_uuid(field, raw)? else { return Ok(None) };
    let found: Option<Uuid> = users::table
        .filter(users::organization_id.eq(ctx.organization_id))
        .filter(users::id.eq(user))
        .select(users::id)
        .first(tx.conn())
        .await
        .optional()?;
    Ok(Some(found.ok_or_else(|| Problem::invalid_field(field, format!("No user with id {user}")))?))
}
