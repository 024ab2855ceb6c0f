//! The value set and the database rows of legal holds.

use custos_core::timefmt;
use custos_db::choice;
use custos_db::schema::legal_holds;
use diesel::prelude::*;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

choice! {
    pub enum HoldStatus {
        Active = "ACTIVE",
        Released = "RELEASED",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = legal_holds)]
pub struct LegalHoldRow {
    pub id: Uuid,
    pub case_name: String,
    pub case_number: String,
    pub description: String,
    pub status: HoldStatus,
    pub custodians: Vec<String>,
    pub start_date: Date,
    pub end_date: Option<Date>,
    pub created_by: String,
    pub released_at: Option<OffsetDateTime>,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, AsChangeset, Insertable)]
#[diesel(table_name = legal_holds, treat_none_as_null = true)]
pub struct LegalHoldFields {
    pub case_name: String,
    pub case_number: String,
    pub description: String,
    pub custodians: Vec<String>,
    pub start_date: Date,
    pub end_date: Option<Date>,
}

pub fn ts(t: OffsetDateTime) -> String {
    timefmt::timestamp(t)
}
