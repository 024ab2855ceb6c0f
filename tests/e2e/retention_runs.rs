//! Retention runs: a preview says what an execution then does, exactly; soft deletion hides the
//! records from every read path and a restore brings them back; holds and longer retentions are
//! skipped with their reasons; a run interrupted between batches resumes without losing or
//! repeating anything; hard deletion; a policy changed mid-run fails the run (found by
//! `?errors=true`); the daily schedule; roles and tenancy over REST and gRPC.

use custos_core::RequestCtx;
use custos_proto::v1 as pb;
use custos_proto::v1::retention_service_client::RetentionServiceClient;
use custos_retention::RetentionService;
use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

use crate::id;

const POLICIES: &str = "/api/compliance/retention-policies/";
const RUNS: &str = "/api/compliance/retention-runs/";
const INCIDENTS: &str = "/api/compliance/incidents/";

async fn policy(s: &TestServer, org: &TestOrg, body: Value) -> String {
    let (status, created) = s.post(POLICIES, &org.admin, body).await;
    assert_eq!(status, 201, "{created}");
    id(&created)
}

async fn incident(s: &TestServer, org: &TestOrg, title: &str, category: &str, resolved_at: Option<&str>) -> String {
    let mut body = json!({"title": title, "description": "d", "severity": "LOW", "category": category,
                          "data_classification": "INTERNAL", "detected_at": "2019-12-01T00:00:00Z"});
    if let Some(at) = resolved_at {
        body["responded_at"] = json!("2019-12-01T01:00:00Z");
        body["resolved_at"] = json!(at);
        body["status"] = json!("RESOLVED");
    }
    let (status, created) = s.post(INCIDENTS, &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    id(&created)
}

async fn execute(s: &TestServer, org: &TestOrg, policy: &str, preview: bool) -> Value {
    let (status, run) = s.post(&format!("{POLICIES}{policy}/execute/"), &org.admin, json!({"preview": preview})).await;
    assert_eq!(status.as_u16() / 100, 2, "{run}");
    if preview {
        return run;
    }
    let job = s.wait_for_job(&org.admin, run["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    s.get(&format!("{RUNS}{}/", id(&run)), &org.admin).await.1
}

fn counts(run: &Value) -> [i64; 5] {
    ["examined", "soft_deleted", "hard_deleted", "archived", "skipped"].map(|k| run[k].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preview_says_what_the_run_does_and_soft_deletion_hides_until_restored() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let old = "2021-01-15T00:00:00Z";
    let yesterday = (time::OffsetDateTime::now_utc() - time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut eligible = Vec::new();
    for i in 1..=3 {
        eligible.push(incident(&s, &org, &format!("old {i}"), "OTHER", Some(old)).await);
    }
    let held = incident(&s, &org, "held", "OTHER", Some(old)).await;
    let breach = incident(&s, &org, "breach", "DATA_BREACH", Some(old)).await;
    let recent = incident(&s, &org, "recent", "OTHER", Some(&yesterday)).await;
    let open = incident(&s, &org, "open", "OTHER", None).await;
    let (_, hold) = s.post("/api/compliance/legal-holds/", &org.editor, json!({"case_name": "Audit 2026"})).await;
    s.post(
        &format!("/api/compliance/legal-holds/{}/add_incident/", id(&hold)),
        &org.editor,
        json!({"incident_id": held}),
    )
    .await;
    let delete = policy(
        &s,
        &org,
        json!({"name": "Incidents", "policy_type": "INCIDENT_DATA", "retention_period": 2,
                                          "retention_unit": "YEARS", "auto_delete": true}),
    )
    .await;
    policy(
        &s,
        &org,
        json!({"name": "Breaches retained", "policy_type": "INCIDENT_DATA", "retention_period": 10,
                            "retention_unit": "YEARS", "incident_categories": ["DATA_BREACH"]}),
    )
    .await;

    // Who may run.
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(&format!("{POLICIES}{delete}/execute/"), token, json!({"preview": true})).await.0, 403);
    }
    assert_eq!(s.post(&format!("{POLICIES}{delete}/execute/"), &other.admin, json!({})).await.0, 404);

    // The preview: three to delete; the held one, the breach (a longer retention) and the recent
    // one skipped with why; the open one not examined.
    let preview = execute(&s, &org, &delete, true).await;
    assert_eq!(preview["preview"], true);
    assert_eq!(counts(&preview), [6, 3, 0, 0, 3], "{preview}");
    let reasons: Vec<&str> = preview["sample"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["action"] == "skipped")
        .map(|i| i["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("legal hold beats any deletion") && r.contains("Audit 2026")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("policy \"Breaches retained\" retains it until 2031-01-15")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("within this policy's retention")), "{reasons:?}");
    // Nothing changed.
    assert_eq!(s.get(&format!("{INCIDENTS}{}/", eligible[0]), &org.viewer).await.0, 200);

    // The execution does exactly what the preview said.
    let run = execute(&s, &org, &delete, false).await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(counts(&run), counts(&preview), "{run}");
    for gone in &eligible {
        assert_eq!(s.get(&format!("{INCIDENTS}{gone}/"), &org.admin).await.0, 404, "hidden from details");
    }
    let (_, list) = s.get(INCIDENTS, &org.admin).await;
    assert_eq!(list["count"], 4, "hidden from lists: {list}");
    for kept in [&held, &breach, &recent, &open] {
        assert_eq!(s.get(&format!("{INCIDENTS}{kept}/"), &org.viewer).await.0, 200);
    }
    let run_id = id(&run);
    let (_, skipped) = s.get(&format!("{RUNS}{run_id}/items/?action=skipped"), &org.auditor).await;
    assert_eq!(skipped["count"], 3, "{skipped}");
    let why: Vec<&str> = skipped["results"].as_array().unwrap().iter().map(|i| i["reason"].as_str().unwrap()).collect();
    assert!(why.iter().any(|r| r.contains("Breaches retained")), "{why:?}");
    assert_eq!(s.audit_count(org.id, "retention_soft_delete", "incident").await, 3);
    // A second run finds nothing more to do.
    let again = execute(&s, &org, &delete, false).await;
    assert_eq!(counts(&again), [3, 0, 0, 0, 3], "{again}");

    // Restore: one record, then the rest; the same again is refused.
    assert_eq!(s.post(&format!("{RUNS}{run_id}/restore/"), &org.editor, json!({})).await.0, 403);
    let (status, one) =
        s.post(&format!("{RUNS}{run_id}/restore/"), &org.admin, json!({"record_id": eligible[0]})).await;
    assert_eq!((status.as_u16(), one["restored"].clone()), (200, json!(1)), "{one}");
    assert_eq!(s.get(&format!("{INCIDENTS}{}/", eligible[0]), &org.viewer).await.0, 200);
    let (_, rest) = s.post(&format!("{RUNS}{run_id}/restore/"), &org.admin, json!({})).await;
    assert_eq!(rest["restored"], 2, "{rest}");
    assert_eq!(rest["run"]["restored"], 3);
    assert_eq!(s.post(&format!("{RUNS}{run_id}/restore/"), &org.admin, json!({"record_id": eligible[0]})).await.0, 409);
    assert_eq!(s.audit_count(org.id, "retention_restore", "incident").await, 3);

    // The log: filters, tenancy, gRPC.
    let (_, log) = s.get(&format!("{RUNS}?policy={delete}"), &org.viewer).await;
    assert_eq!(log["count"], 3, "{log}");
    let (_, previews) = s.get(&format!("{RUNS}?preview=true"), &org.viewer).await;
    assert_eq!(previews["count"], 1);
    let (_, failed) = s.get(&format!("{RUNS}?errors=true"), &org.viewer).await;
    assert_eq!(failed["count"], 0);
    assert_eq!(s.get(&format!("{RUNS}?status=done"), &org.viewer).await.0, 400);
    assert_eq!(s.get(&format!("{RUNS}{run_id}/"), &other.admin).await.0, 404);
    assert_eq!(s.post(&format!("{RUNS}{run_id}/restore/"), &other.admin, json!({})).await.0, 404);
    let (_, theirs) = s.get(RUNS, &other.admin).await;
    assert_eq!(theirs["count"], 0);
    let mut editor = RetentionServiceClient::new(s.grpc(Some(&org.editor)).await);
    let denied = editor
        .execute_retention_policy(pb::ExecuteRetentionPolicyRequest { id: delete.clone(), preview: true })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let runs = editor.list_retention_runs(pb::ListRetentionRunsRequest::default()).await.unwrap().into_inner();
    assert_eq!(runs.results.len(), 3);
    let mut stranger = RetentionServiceClient::new(s.grpc(Some(&other.admin)).await);
    let hidden = stranger.get_retention_run(pb::GetRetentionRunRequest { id: run_id.clone() }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
}

/// A run whose runner stopped after its first batch (here: the first batch done by hand, then
/// a replica takes the job) finishes with every record done once; a run whose policy was
/// deactivated before it ran fails, and `?errors=true` finds it.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_interrupted_between_batches_resumes_without_doing_anything_twice() {
    let mut jobs = custos_testkit::test_jobs_config();
    jobs.run = false;
    let s = TestServer::start_with(custos_testkit::ServerOptions { jobs: Some(jobs), ..Default::default() }).await;
    let org = s.org("acme").await;
    let n = 2_500;
    s.insert_closed_incidents(org.id, n, "2020-01-01T00:00:00Z").await;
    let delete = policy(
        &s,
        &org,
        json!({"name": "Old incidents", "policy_type": "INCIDENT_DATA", "retention_days": 365,
                                          "auto_delete": true}),
    )
    .await;
    let (status, run) = s.post(&format!("{POLICIES}{delete}/execute/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{run}");
    let run_id = uuid::Uuid::parse_str(run["id"].as_str().unwrap()).unwrap();
    // The first batch, committed; then the runner "dies".
    let service = RetentionService::new(s.app().db.clone(), s.app().holds.clone(), s.app().residency.clone());
    let ctx = RequestCtx::system(org.id, "test");
    assert!(service.run_batch(&ctx, run_id).await.unwrap(), "more batches remain");
    let (_, partial) = s.get(&format!("{RUNS}{run_id}/"), &org.admin).await;
    assert_eq!(
        (partial["status"].as_str(), partial["soft_deleted"].as_i64()),
        (Some("running"), Some(1000)),
        "{partial}"
    );
    // A run whose policy is deactivated before its job runs will fail, and be found.
    let doomed = policy(
        &s,
        &org,
        json!({"name": "Doomed", "policy_type": "VULNERABILITY_DATA", "retention_days": 30,
                                          "auto_delete": true}),
    )
    .await;
    let (_, doomed_run) = s.post(&format!("{POLICIES}{doomed}/execute/"), &org.admin, json!({})).await;
    s.patch(&format!("{POLICIES}{doomed}/"), &org.admin, json!({"is_active": false})).await;
    // Another replica takes the jobs and finishes the run from where it stopped.
    let _replica = s.replica_with(|c| c.jobs.run = true).await;
    let job = s.wait_for_job(&org.admin, run["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, done) = s.get(&format!("{RUNS}{run_id}/"), &org.admin).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(counts(&done), [n, n, 0, 0, 0], "{done}");
    let (_, acted) = s.get(&format!("{RUNS}{run_id}/items/?action=soft_deleted&page_size=1"), &org.admin).await;
    assert_eq!(acted["count"], n, "one item per record: {acted}");
    assert_eq!(s.audit_count(org.id, "retention_soft_delete", "incident").await, n);
    let (_, list) = s.get(INCIDENTS, &org.admin).await;
    assert_eq!(list["count"], 0);

    let job = s.wait_for_job(&org.admin, doomed_run["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "failed", "{job}");
    let (_, failed) = s.get(&format!("{RUNS}?errors=true"), &org.auditor).await;
    assert_eq!(failed["count"], 1, "{failed}");
    assert_eq!(failed["results"][0]["status"], "failed");
    assert!(failed["results"][0]["error"].as_str().unwrap().contains("deactivated"), "{failed}");
    assert_eq!(s.audit_count(org.id, "fail", "retention_run").await, 1);
}

/// Hard deletion removes rows for good (an incident that evidence refers to is skipped, saying
/// so); archive runs and inactive policies are refused; the daily schedule runs every policy
/// that deletes by itself.
#[tokio::test(flavor = "multi_thread")]
async fn hard_deletion_failed_runs_and_the_daily_schedule() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let old = "2021-01-15T00:00:00Z";
    let referred = incident(&s, &org, "with evidence", "OTHER", Some(old)).await;
    let lone = incident(&s, &org, "alone", "OTHER", Some(old)).await;
    let (status, _) = s
        .post(
            "/api/compliance/evidence/",
            &org.editor,
            json!({"title": "Log", "evidence_type": "LOG_FILE", "incident": referred}),
        )
        .await;
    assert_eq!(status, 201);
    let hard = policy(
        &s,
        &org,
        json!({"name": "Purge", "policy_type": "INCIDENT_DATA", "retention_days": 30,
                                        "deletion_method": "hard", "auto_delete": true}),
    )
    .await;
    let run = execute(&s, &org, &hard, false).await;
    assert_eq!(counts(&run), [2, 0, 1, 0, 1], "{run}");
    let (_, skipped) = s.get(&format!("{RUNS}{}/items/?action=skipped", id(&run)), &org.admin).await;
    assert!(
        skipped["results"][0]["reason"].as_str().unwrap().contains("evidence or vulnerabilities still refer to it")
    );
    let mut conn = s.db.superuser().await;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    use diesel_async::RunQueryDsl;
    let left: N = diesel::sql_query(format!("SELECT count(*) AS n FROM incidents WHERE id = '{lone}'"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(left.n, 0, "gone from the table itself");
    assert_eq!(s.audit_count(org.id, "retention_hard_delete", "incident").await, 1);

    // Job records: finished jobs past their period are deleted for good; running ones never.
    let (status, jobs_policy) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Job records", "policy_type": "JOB_RECORDS", "retention_days": 7,
                                            "auto_delete": true}),
        )
        .await;
    assert_eq!(status, 201, "{jobs_policy}");
    assert_eq!(jobs_policy["deletion_method"], "hard", "job records have no soft deletion");
    let aged = s
        .superuser_sql(&format!(
            "UPDATE jobs SET finished_at = now() - interval '30 days' WHERE organization_id = '{}' AND status = 'succeeded'",
            org.id
        ))
        .await
        .unwrap();
    assert!(aged >= 1, "the Purge run's job, at least");
    let run = execute(&s, &org, &id(&jobs_policy), false).await;
    assert_eq!(run["hard_deleted"].as_i64(), Some(aged as i64), "{run}");
    let left: N = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM jobs WHERE organization_id = '{}' AND finished_at < now() - interval '7 days'",
        org.id
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(left.n, 0);

    let inactive = policy(
        &s,
        &org,
        json!({"name": "Off", "policy_type": "INCIDENT_DATA", "retention_days": 30, "is_active": false}),
    )
    .await;
    assert_eq!(s.post(&format!("{POLICIES}{inactive}/execute/"), &org.admin, json!({"preview": true})).await.0, 409);

    policy(
        &s,
        &org,
        json!({"name": "Soft", "policy_type": "VULNERABILITY_DATA", "retention_days": 30,
                            "auto_delete": true}),
    )
    .await;

    // The daily schedule runs every active policy that deletes by itself (not archive ones yet).
    let (status, _) = s
        .post("/api/compliance/vulnerabilities/", &org.editor, json!({"title": "Fixed", "severity": "LOW",
                                                                       "status": "REMEDIATED", "remediated_at": "2022-01-01T00:00:00Z",
                                                                       "discovered_at": "2021-12-01T00:00:00Z"}))
        .await;
    assert_eq!(status, 201);
    let job = s.run_schedule(&org.admin, "retention").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, log) = s.get(&format!("{RUNS}?preview=false&status=completed"), &org.auditor).await;
    let by_schedule: Vec<&Value> =
        log["results"].as_array().unwrap().iter().filter(|r| r["job_id"] == job["id"]).collect();
    let names: std::collections::BTreeSet<&str> =
        by_schedule.iter().map(|r| r["policy_name"].as_str().unwrap()).collect();
    let (_, all) = s.get(RUNS, &org.auditor).await;
    assert_eq!(names, ["Job records", "Purge", "Soft"].into_iter().collect(), "{all}");
    let vulns = by_schedule.iter().find(|r| r["policy_name"] == "Soft").unwrap();
    assert_eq!(vulns["soft_deleted"], 1, "{vulns}");
    assert_eq!(s.get("/api/compliance/vulnerabilities/", &org.admin).await.1["count"], 0);
}

/// A legal hold beats any deletion — unless the policy overrides holds and an admin started the
/// run, which the audit trail records; the daily schedule, not an admin, never overrides.
#[tokio::test(flavor = "multi_thread")]
async fn only_an_admins_run_of_an_overriding_policy_deletes_a_held_record() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let old = "2021-01-15T00:00:00Z";
    let held = incident(&s, &org, "held", "OTHER", Some(old)).await;
    let (_, hold) =
        s.post("/api/compliance/legal-holds/", &org.editor, json!({"case_name": "Regulator request"})).await;
    s.post(
        &format!("/api/compliance/legal-holds/{}/add_incident/", id(&hold)),
        &org.editor,
        json!({"incident_id": held}),
    )
    .await;
    let overriding = policy(
        &s,
        &org,
        json!({"name": "Court-ordered purge", "policy_type": "INCIDENT_DATA", "retention_days": 30,
                                              "auto_delete": true, "legal_hold_override": true}),
    )
    .await;
    // The schedule's run is not an admin's: the hold wins.
    let job = s.run_schedule(&org.admin, "retention").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, log) = s.get(&format!("{RUNS}?policy={overriding}"), &org.auditor).await;
    let scheduled = &log["results"][0];
    assert_eq!((scheduled["by_admin"].clone(), scheduled["skipped"].clone()), (json!(false), json!(1)), "{log}");
    assert_eq!(s.get(&format!("{INCIDENTS}{held}/"), &org.viewer).await.0, 200);
    // An admin's run of the same policy deletes it, and says so in the audit trail.
    let run = execute(&s, &org, &overriding, false).await;
    assert_eq!((run["by_admin"].clone(), run["soft_deleted"].clone()), (json!(true), json!(1)), "{run}");
    assert_eq!(s.get(&format!("{INCIDENTS}{held}/"), &org.viewer).await.0, 404);
    let entries = crate::audit_entries(&s, &org, &held).await;
    let deletion = entries.iter().find(|e| e["action"] == "retention_soft_delete").expect("audited");
    assert_eq!(deletion["after"]["held_override"], true, "{deletion}");
}
