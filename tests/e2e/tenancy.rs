//! Tenant isolation: in the service's queries, and again in PostgreSQL row-level security.

use custos_testkit::TestServer;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, RunQueryDsl};
use reqwest::Method;
use serde_json::json;

use crate::{column, create_framework, create_requirement, id, seed_gdpr_body};

#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_cannot_read_or_change_anothers_data() {
    let s = TestServer::start().await;
    let a = s.org("alpha").await;
    let b = s.org("bravo").await;
    let fw = create_framework(&s, &a, seed_gdpr_body()).await;
    let fid = id(&fw);
    let rid = id(&create_requirement(&s, &a, &fid, "Art. 5", json!({})).await);
    let (_, a_user) = s.get("/api/compliance/whoami/", &a.editor).await;

    for token in [&b.admin, &b.auditor] {
        let (_, page) = s.get("/api/compliance/frameworks/", token).await;
        assert_eq!(page["count"], 0);
        let (_, page) = s.get(&format!("/api/compliance/requirements/?framework={fid}"), token).await;
        assert_eq!(page["count"], 0);
        let (_, page) = s.get("/api/compliance/requirements/?search=Art", token).await;
        assert_eq!(page["count"], 0);
        for url in [
            format!("/api/compliance/frameworks/{fid}/"),
            format!("/api/compliance/frameworks/{fid}/requirements/"),
            format!("/api/compliance/frameworks/{fid}/compliance_summary/"),
            format!("/api/compliance/requirements/{rid}/"),
        ] {
            let (status, _) = s.get(&url, token).await;
            assert_eq!(status, 404, "{url}");
        }
    }
    let writes = [
        (Method::PATCH, format!("/api/compliance/frameworks/{fid}/"), json!({ "name": "hijacked" })),
        (
            Method::PUT,
            format!("/api/compliance/frameworks/{fid}/"),
            json!({ "name": "hijacked", "framework_type": "GDPR" }),
        ),
        (Method::DELETE, format!("/api/compliance/frameworks/{fid}/"), json!({})),
        (Method::PATCH, format!("/api/compliance/requirements/{rid}/"), json!({ "title": "hijacked" })),
        (Method::DELETE, format!("/api/compliance/requirements/{rid}/"), json!({})),
        (
            Method::POST,
            format!("/api/compliance/requirements/{rid}/update_status/"),
            json!({ "compliance_status": "NON_COMPLIANT" }),
        ),
        (
            Method::POST,
            format!("/api/compliance/requirements/{rid}/schedule_assessment/"),
            json!({ "assessment_date": "2099-01-01" }),
        ),
    ];
    for (method, url, body) in writes {
        let (status, _) = s.call(method.clone(), &url, Some(&b.admin), Some(&body)).await;
        assert_eq!(status, 404, "{method} {url}");
    }
    // Nor can B attach a requirement to A's framework, or assign B's work to A's user.
    let (status, err) = s
        .post("/api/compliance/requirements/", &b.editor, json!({ "framework": fid, "requirement_id": "X", "title": "x", "requirement_type": "LEGAL", "priority": "LOW" }))
        .await;
    assert_eq!(status, 400, "{err}");
    let b_fw = id(&create_framework(&s, &b, json!({ "name": "B's", "framework_type": "SOX" })).await);
    let (status, err) = s
        .post(
            "/api/compliance/requirements/",
            &b.editor,
            json!({ "framework": b_fw, "requirement_id": "X", "title": "x", "requirement_type": "LEGAL", "priority": "LOW", "assigned_to": a_user["user_id"] }),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "Invalid value for 'assigned_to'");

    // A's data is untouched, and B's audit trail holds nothing of A's.
    let (_, still) = s.get(&format!("/api/compliance/frameworks/{fid}/"), &a.viewer).await;
    assert_eq!(still["name"], "GDPR Compliance Framework");
    assert_eq!(still["updated_at"], fw["updated_at"]);
    let (_, reqs) = s.get("/api/compliance/requirements/", &a.viewer).await;
    assert_eq!(column(&reqs, "compliance_status"), ["NOT_ASSESSED"]);
    assert_eq!(s.audit_count(b.id, "update", "framework").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_hides_other_tenants_even_from_raw_sql() {
    let s = TestServer::start().await;
    let a = s.org("alpha").await;
    let b = s.org("bravo").await;
    create_framework(&s, &a, seed_gdpr_body()).await;
    let b_fw = create_framework(&s, &b, json!({ "name": "Bravo only", "framework_type": "SOX" })).await;

    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = s.db.superuser().await;
    conn.begin_test_transaction().await.unwrap();
    // Exactly what the service does at the start of every request transaction.
    diesel::sql_query("SET LOCAL ROLE custos_app").execute(&mut conn).await.unwrap();
    diesel::sql_query("SELECT set_config('custos.org_id', $1, true)")
        .bind::<Text, _>(a.id.to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    let count = |sql: &'static str| diesel::sql_query(sql);
    let n = |c: Count| c.n;
    // No WHERE clause at all: only tenant A's rows come back.
    assert_eq!(n(count("SELECT count(*) AS n FROM frameworks").get_result(&mut conn).await.unwrap()), 1);
    assert_eq!(n(count("SELECT count(*) AS n FROM organizations").get_result(&mut conn).await.unwrap()), 1);
    assert_eq!(n(count("SELECT count(*) AS n FROM users").get_result(&mut conn).await.unwrap()), 4);
    assert_eq!(n(count("SELECT count(*) AS n FROM api_tokens").get_result(&mut conn).await.unwrap()), 4);
    // Asking for B's rows by id finds nothing.
    let by_id: Count = diesel::sql_query("SELECT count(*) AS n FROM frameworks WHERE id = $1::uuid")
        .bind::<Text, _>(b_fw["id"].as_str().unwrap())
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(by_id.n, 0);
    let by_org: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM {} WHERE organization_id = $1::uuid",
        custos_testkit::audit_sql::ALL_AUDIT_FIELDS
    ))
    .bind::<Text, _>(b.id.to_string())
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(by_org.n, 0);
    // Nor can the role write into B, or edit the audit trail.
    let insert = diesel::sql_query(
        "INSERT INTO frameworks (id, organization_id, name, framework_type) VALUES (gen_random_uuid(), $1::uuid, 'x', 'SOX')",
    )
    .bind::<Text, _>(b.id.to_string())
    .execute(&mut conn)
    .await;
    assert!(insert.is_err(), "RLS WITH CHECK refuses a row for another tenant");
}

/// A connection in a transaction that is never committed, as the service role in `org`: what
/// every request runs as.
async fn as_service_role(s: &TestServer, org: uuid::Uuid) -> diesel_async::AsyncPgConnection {
    let mut tx = custos_db::connect_once(&s.db.url).await.unwrap();
    tx.begin_test_transaction().await.unwrap();
    diesel::sql_query("SET LOCAL ROLE custos_app").execute(&mut tx).await.unwrap();
    diesel::sql_query("SELECT set_config('custos.org_id', $1, true)")
        .bind::<Text, _>(org.to_string())
        .execute(&mut tx)
        .await
        .unwrap();
    tx
}

#[tokio::test(flavor = "multi_thread")]
async fn the_service_role_cannot_bypass_rls_or_rewrite_the_audit_trail() {
    let s = TestServer::start().await;
    let a = s.org("alpha").await;
    create_framework(&s, &a, seed_gdpr_body()).await;
    #[derive(diesel::QueryableByName)]
    struct Flags {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolsuper: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolbypassrls: bool,
    }
    let mut conn = s.db.superuser().await;
    let flags: Flags = diesel::sql_query("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'custos_app'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(!flags.rolsuper && !flags.rolbypassrls);
    for statement in [
        "UPDATE audit_entries SET fields = ''",
        "UPDATE audit_index SET action = 'forged'",
        "DELETE FROM audit_index",
        "DELETE FROM audit_entries",
        "TRUNCATE audit_entries",
        "UPDATE audit_contents SET fields = '{}'",
        "DELETE FROM audit_contents",
        "TRUNCATE audit_contents",
        "UPDATE audit_log SET leaf_hashes = chain_hashes",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
        "UPDATE audit_checkpoints SET tree_size = 0",
        "DELETE FROM audit_tree_nodes",
        "UPDATE audit_entries SET xid = 0",
        // The writing transaction's id is the database's to give, not the writer's.
        "INSERT INTO audit_entries (organization_id, event_id, fields, salts, xid)
           VALUES (custos_current_org(), gen_random_uuid(), '', '\\x03', 9223372036854775807)",
    ] {
        let mut tx = as_service_role(&s, a.id).await;
        // The maintenance flag the SECURITY DEFINER functions raise opens nothing to this role:
        // it has no UPDATE or DELETE on these tables to begin with.
        diesel::sql_query("SET LOCAL custos.audit_maintenance = 'on'").execute(&mut tx).await.unwrap();
        let result = diesel::sql_query(statement).execute(&mut tx).await;
        assert!(result.is_err(), "{statement} must be refused");
    }
    // The same entry without a transaction id of its own is what writers write.
    let mut tx = as_service_role(&s, a.id).await;
    diesel::sql_query(
        "INSERT INTO audit_entries (organization_id, event_id, fields, salts) VALUES (custos_current_org(), gen_random_uuid(), '', '\\x03')",
    )
    .execute(&mut tx)
    .await
    .expect("writers insert entries");
}
