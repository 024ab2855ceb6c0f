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
    /// `(table name, the SELECT of all its columns diesel generates)` for each table.
    macro_rules! selects {
        ($($t:ident),+ $(,)?) => {
            vec![$((stringify!($t), diesel::debug_query::<Pg, _>(&$t::table.select($t::all_columns)).to_string())),+]
        };
    }
    let tables: Vec<(&str, String)> = selects![
        organizations,
        users,
        api_tokens,
        frameworks,
        requirements,
        audit_log,
        audit_contents,
        audit_entries,
        audit_index,
        audit_heads,
        audit_tree_nodes,
        audit_checkpoints,
        incidents,
        legal_holds,
        legal_hold_items,
        incident_response_plans,
        vulnerabilities,
        compliance_checkpoints,
        evidence,
        evidence_requirements,
        custody_records,
        requirement_evidence,
        requirement_evidence_items,
        requirement_mappings,
        framework_import_uploads,
        vault_data_keys,
        secrets,
        secret_versions,
        secret_reveal_requests,
        notification_channels,
        notification_deliveries,
        notification_outbox,
        access_reviews,
        stale_access_findings,
        retention_policies,
        compliance_reports,
        report_sign_offs,
        framework_score_snapshots,
        workflows,
        workflow_instances,
        workflow_instance_history,
        compliance_policies,
        compliance_policy_versions,
        data_residency,
        policy_violations,
        retention_runs,
        retention_run_items,
        vault_master_keys,
        framework_requirement_counts,
        jobs,
        job_steps,
        job_schedules,
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
