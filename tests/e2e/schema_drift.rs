//! `crates/db/src/schema.rs` is written by hand (diesel's generator needs libpq): this checks it
//! against the migrated database, column by column, so the two cannot drift apart.

use custos_db::schema::*;
use custos_testkit::TestDb;
use diesel::QueryDsl;
use diesel::pg::Pg;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl;

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    column_name: String,
}

/// Column names diesel will use for a table, read from the SQL it generates.
fn diesel_columns(sql: String) -> Vec<String> {
    let select = sql.split(" FROM ").next().unwrap_or_default().trim_start_matches("SELECT ");
    select.split(", ").map(|c| c.rsplit('.').next().unwrap_or(c).trim_matches('"').to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_written_schema_matches_the_migrations() {
    let db = TestDb::new().await;
    let mut conn = db.superuser().await;
    let tables: Vec<(&str, String)> = vec![
        (
            "organizations",
            diesel::debug_query::<Pg, _>(&organizations::table.select(organizations::all_columns)).to_string(),
        ),
        ("users", diesel::debug_query::<Pg, _>(&users::table.select(users::all_columns)).to_string()),
        ("api_tokens", diesel::debug_query::<Pg, _>(&api_tokens::table.select(api_tokens::all_columns)).to_string()),
        ("frameworks", diesel::debug_query::<Pg, _>(&frameworks::table.select(frameworks::all_columns)).to_string()),
        (
            "requirements",
            diesel::debug_query::<Pg, _>(&requirements::table.select(requirements::all_columns)).to_string(),
        ),
        ("audit_queue", diesel::debug_query::<Pg, _>(&audit_queue::table.select(audit_queue::all_columns)).to_string()),
        ("audit_log", diesel::debug_query::<Pg, _>(&audit_log::table.select(audit_log::all_columns)).to_string()),
        ("audit_heads", diesel::debug_query::<Pg, _>(&audit_heads::table.select(audit_heads::all_columns)).to_string()),
        (
            "audit_tree_nodes",
            diesel::debug_query::<Pg, _>(&audit_tree_nodes::table.select(audit_tree_nodes::all_columns)).to_string(),
        ),
        (
            "audit_checkpoints",
            diesel::debug_query::<Pg, _>(&audit_checkpoints::table.select(audit_checkpoints::all_columns)).to_string(),
        ),
        ("incidents", diesel::debug_query::<Pg, _>(&incidents::table.select(incidents::all_columns)).to_string()),
        ("legal_holds", diesel::debug_query::<Pg, _>(&legal_holds::table.select(legal_holds::all_columns)).to_string()),
        (
            "legal_hold_items",
            diesel::debug_query::<Pg, _>(&legal_hold_items::table.select(legal_hold_items::all_columns)).to_string(),
        ),
        (
            "incident_response_plans",
            diesel::debug_query::<Pg, _>(&incident_response_plans::table.select(incident_response_plans::all_columns))
                .to_string(),
        ),
        (
            "vulnerabilities",
            diesel::debug_query::<Pg, _>(&vulnerabilities::table.select(vulnerabilities::all_columns)).to_string(),
        ),
        (
            "compliance_checkpoints",
            diesel::debug_query::<Pg, _>(&compliance_checkpoints::table.select(compliance_checkpoints::all_columns))
                .to_string(),
        ),
    ];
    for (table, sql) in tables {
        let mut expected = diesel_columns(sql);
        let mut actual: Vec<String> = diesel::sql_query(
            "SELECT column_name::text AS column_name FROM information_schema.columns
              WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind::<Text, _>(table)
        .load::<Column>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.column_name)
        .collect();
        expected.sort();
        actual.sort();
        // Column types are exercised by every end-to-end test that reads these rows.
        assert_eq!(expected, actual, "columns of {table}");
    }
}
