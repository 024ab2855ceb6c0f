//! Archive runs end to end: evidence with its files archived into the region residency allows
//! (held items skipped), removed from the hot tables, the archive verified offline with the
//! platform's key (and any change to it refused), restored with its custody chain intact and its
//! file readable again; an archive residency forbids (data copied out of its region) refused,
//! recorded, and nothing removed; a run interrupted between batches, or a batch between its
//! archive and its commit, archives each record exactly once.

use custos_retention::RetentionService;
use custos_retention::archive_file;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use serde_json::{Value, json};

use crate::id;
use crate::residency::Regions;

const POLICIES: &str = "/api/compliance/retention-policies/";
const RUNS: &str = "/api/compliance/retention-runs/";
const EVIDENCE: &str = "/api/compliance/evidence/";

async fn upload(s: &TestServer, org: &TestOrg, title: &str, content: &[u8]) -> String {
    let (status, e) = s
        .upload(
            EVIDENCE,
            &org.editor,
            &[("title", title), ("evidence_type", "LOG_FILE")],
            Some(("a.log", "text/plain", content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{e}");
    id(&e)
}

async fn archive_policy(s: &TestServer, org: &TestOrg) -> String {
    let (status, p) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Old evidence", "policy_type": "EVIDENCE", "retention_period": 1,
                                           "retention_unit": "YEARS", "auto_archive": true}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    id(&p)
}

async fn run(s: &TestServer, org: &TestOrg, policy: &str) -> (Value, Value) {
    let (status, started) = s.post(&format!("{POLICIES}{policy}/execute/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{started}");
    let job = s.wait_for_job(&org.admin, started["job_id"].as_str().unwrap()).await;
    (s.get(&format!("{RUNS}{}/", id(&started)), &org.admin).await.1, job)
}

fn retention(s: &TestServer) -> RetentionService {
    let app = s.app();
    RetentionService::new(app.db.clone(), app.holds.clone(), app.residency.clone())
        .with_archive_signer(app.archive_signer.clone().expect("the server's signing key"))
}

#[tokio::test(flavor = "multi_thread")]
async fn evidence_is_archived_verified_offline_and_restored() {
    let regions = Regions::new();
    let s = TestServer::start_with(ServerOptions { blob_stores: Some(regions.spec()), ..Default::default() }).await;
    let org = s.org("acme").await;
    let (status, _) = s
        .post(
            "/api/compliance/data-residency/",
            &org.admin,
            json!({"primary_region": "eu-west-1",
              "storage_prefix": "acme-eu", "block_cross_region": true}),
        )
        .await;
    assert_eq!(status, 201);
    let kept = upload(&s, &org, "Firewall log", b"2015-03-01 deny tcp 10.0.0.1").await;
    let held = upload(&s, &org, "Held log", b"under a hold").await;
    let recent = upload(&s, &org, "Recent log", b"collected today").await;
    let sealed = upload(&s, &org, "Sealed log", b"sealed for the court").await;
    s.superuser_sql(&format!(
        "UPDATE evidence SET collected_at = '2015-03-01' WHERE id IN ('{kept}', '{held}', '{sealed}')"
    ))
    .await
    .unwrap();
    // Sealed (after verification): deleted by nobody until released, retention included.
    let (_, v) = s.post(&format!("{EVIDENCE}{sealed}/verify_evidence/"), &org.editor, json!({})).await;
    assert_eq!(v["result"], "MATCH", "{v}");
    let (status, seal) =
        s.post(&format!("{EVIDENCE}{sealed}/add_custody_record/"), &org.editor, json!({"action": "SEALED"})).await;
    assert_eq!(status, 200, "{seal}");
    let (_, hold) = s.post("/api/compliance/legal-holds/", &org.editor, json!({"case_name": "Regulator"})).await;
    let (status, _) = s
        .post(
            &format!("/api/compliance/legal-holds/{}/add_evidence/", id(&hold)),
            &org.editor,
            json!({"evidence_id": held}),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 2);
    let policy = archive_policy(&s, &org).await;

    // The preview says what the run does.
    let (_, preview) = s.post(&format!("{POLICIES}{policy}/execute/"), &org.admin, json!({"preview": true})).await;
    assert_eq!((preview["archived"].clone(), preview["skipped"].clone()), (json!(1), json!(3)), "{preview}");
    let reasons: Vec<&str> =
        preview["sample"].as_array().unwrap().iter().filter_map(|i| i["reason"].as_str()).collect();
    assert!(reasons.iter().any(|r| r.starts_with("sealed evidence is kept")), "{reasons:?}");
    let (done, job) = run(&s, &org, &policy).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        (done["archived"].clone(), done["skipped"].clone(), done["status"].clone()),
        (json!(1), json!(3), json!("completed")),
        "{done}"
    );
    // Gone from the hot tables; the held and the recent items stay.
    assert_eq!(s.get(&format!("{EVIDENCE}{kept}/"), &org.admin).await.0, 404);
    assert_eq!(s.get(&format!("{EVIDENCE}{held}/"), &org.admin).await.0, 200);
    assert_eq!(s.get(&format!("{EVIDENCE}{recent}/"), &org.admin).await.0, 200);
    assert_eq!(s.get(&format!("{EVIDENCE}{sealed}/"), &org.admin).await.0, 200);
    assert_eq!(s.audit_count(org.id, "retention_archive", "evidence").await, 1);
    let (_, items) = s.get(&format!("{RUNS}{}/items/?action=archived", id(&done)), &org.admin).await;
    let reason = items["results"][0]["reason"].as_str().unwrap().to_owned();
    let key = reason.strip_prefix("archive eu-west-1:").unwrap_or_else(|| panic!("{reason}"));
    assert!(key.starts_with(&format!("acme-eu/archives/{}/{}/", org.id, id(&done))), "{key}");
    let file = regions.dir("eu-west-1").join(key);
    assert!(file.is_file(), "the archive is in the EU store: {}", file.display());

    // Offline verification with the platform's key; any change refused.
    let key_of_platform = s.app().archive_signer.clone().unwrap().verifier();
    let bytes = std::fs::read(&file).unwrap();
    let verified = archive_file::verify(bytes.as_slice(), std::slice::from_ref(&key_of_platform)).unwrap();
    assert_eq!(verified.manifest.records.len(), 1);
    assert_eq!(verified.manifest.records[0].id.to_string(), kept);
    assert_eq!(verified.manifest.files.len(), 1);
    let at = bytes.windows(8).position(|w| w == b"2015-03-").expect("the file's bytes");
    let mut tampered = bytes.clone();
    tampered[at] = b'X';
    assert!(archive_file::verify(tampered.as_slice(), std::slice::from_ref(&key_of_platform)).is_err());

    // Restored: the item, its custody chain, its links and its file.
    let service = retention(&s);
    let ctx = custos_core::RequestCtx::operator(org.id, "acme");
    assert_eq!(service.restore_archive(&ctx, &file, vec![]).await.unwrap(), (1, 0));
    let (status, back) = s.get(&format!("{EVIDENCE}{kept}/"), &org.admin).await;
    assert_eq!(status, 200, "{back}");
    assert_eq!(back["storage_region"], "eu-west-1");
    let (status, _, content) = s.download(&format!("{EVIDENCE}{kept}/download/"), &org.viewer).await;
    assert_eq!((status.as_u16(), content.as_slice()), (200, b"2015-03-01 deny tcp 10.0.0.1".as_slice()));
    let (_, v) = s.post(&format!("{EVIDENCE}{kept}/verify_evidence/"), &org.auditor, json!({})).await;
    assert_eq!((v["result"].clone(), v["custody_chain_valid"].clone()), (json!("MATCH"), json!(true)), "{v}");
    let (_, after) = s.get(&format!("{RUNS}{}/", id(&done)), &org.admin).await;
    assert_eq!(after["restored"], 1);
    assert_eq!(s.audit_count(org.id, "retention_restore", "evidence").await, 1);
    // Again: nothing twice.
    assert_eq!(service.restore_archive(&ctx, &file, vec![]).await.unwrap(), (0, 1));
    // Another organisation's archive is refused.
    let other = s.org("globex").await;
    let other_ctx = custos_core::RequestCtx::operator(other.id, "globex");
    assert!(service.restore_archive(&other_ctx, &file, vec![]).await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_residency_forbids_is_refused_recorded_and_removes_nothing() {
    let regions = Regions::new();
    let s = TestServer::start_with(ServerOptions { blob_stores: Some(regions.spec()), ..Default::default() }).await;
    let org = s.org("acme").await;
    // Stored in the EU before residency was configured; then the organisation moves to the US
    // and forbids copies across regions.
    let (status, e) = s
        .upload(
            EVIDENCE,
            &org.editor,
            &[("title", "EU log"), ("evidence_type", "LOG_FILE"), ("storage_region", "eu-west-1")],
            Some(("a.log", "text/plain", b"eu data")),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{e}");
    s.superuser_sql(&format!("UPDATE evidence SET collected_at = '2015-03-01' WHERE id = '{}'", id(&e))).await.unwrap();
    let (status, _) = s
        .post(
            "/api/compliance/data-residency/",
            &org.admin,
            json!({"primary_region": "us-east-1",
              "allowed_regions": ["us-east-1", "eu-west-1"], "block_cross_region": true}),
        )
        .await;
    assert_eq!(status, 201);
    let policy = archive_policy(&s, &org).await;
    let (done, job) = run(&s, &org, &policy).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap_or_default().contains("data_residency.block_cross_region")
            || done["error"].as_str().unwrap_or_default().contains("data_residency.block_cross_region"),
        "{job} {done}"
    );
    assert_eq!(done["archived"], 0, "{done}");
    assert_eq!(s.get(&format!("{EVIDENCE}{}/", id(&e)), &org.admin).await.0, 200, "nothing removed");
    let (_, violations) = s.get("/api/compliance/policy-violations/?operation=retention.archive", &org.auditor).await;
    assert!(violations["count"].as_i64().unwrap() >= 1, "{violations}");
    assert_eq!(violations["results"][0]["rule"], "data_residency.block_cross_region");
    assert!(files_under(&regions.dir("us-east-1")).is_empty(), "no archive written");
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.starts_with(dir.join("uploads")) {
                out.push(p);
            }
        }
    }
    out
}

/// Audit-log retention goes through the audit chain's pruning (the rest stays verifiable), and
/// keeps the precedence: a legal hold and a longer audit-log policy each hold entries back.
#[tokio::test(flavor = "multi_thread")]
async fn audit_log_runs_prune_through_the_chain_and_keep_holds_and_longer_retention() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    for i in 0..6 {
        crate::create_framework(&s, &org, json!({"name": format!("f{i}"), "framework_type": "CUSTOM"})).await;
    }
    let chain = s.app().audit.chain().clone();
    while chain.integrate(org.id, true).await.unwrap().sequenced > 0 {}
    // Indexed (the indexer runs behind the sequencer): pruning takes indexed entries only.
    for _ in 0..200 {
        let caught_up = s
            .superuser_sql(&format!(
                "SELECT 1 FROM audit_heads WHERE organization_id = '{}' AND indexed_size = tree_size AND tree_size >= 6",
                org.id
            ))
            .await
            .unwrap();
        if caught_up == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Those entries were recorded a month ago (the index only: what pruning judges by).
    s.superuser_sql(&format!(
        "DO $$ BEGIN PERFORM set_config('session_replication_role', 'replica', true);
           UPDATE audit_index SET recorded_at = recorded_at - interval '30 days' WHERE organization_id = '{}';
         END $$",
        org.id
    ))
    .await
    .unwrap();
    let old: i64 = s
        .superuser_sql(&format!(
            "SELECT 1 FROM audit_index WHERE organization_id = '{}' AND recorded_at < now() - interval '20 days'",
            org.id
        ))
        .await
        .unwrap() as i64;
    assert!(old >= 6, "{old}");
    let (status, err) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Soft audit", "policy_type": "AUDIT_LOGS", "retention_days": 10,
                                           "deletion_method": "soft"}),
        )
        .await;
    assert_eq!(status, 400, "audit entries are only pruned: {err}");
    let (status, p) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Audit 10 days", "policy_type": "AUDIT_LOGS", "retention_days": 10,
                                           "auto_delete": true}),
        )
        .await;
    assert_eq!((status.as_u16(), p["deletion_method"].clone()), (201, json!("hard")), "{p}");
    let policy = id(&p);

    // A hold placed over the period holds every entry since its start.
    let start = (time::OffsetDateTime::now_utc() - time::Duration::days(40)).date().to_string();
    let (_, hold) = s
        .post("/api/compliance/legal-holds/", &org.editor, json!({"case_name": "Litigation", "start_date": start}))
        .await;
    let held = preview(&s, &org, &policy).await;
    assert_eq!(held["hard_deleted"], 0, "{held}");
    assert!(held["limited_by"][0].as_str().unwrap().contains("legal hold \"Litigation\""), "{held}");
    let (status, _) = s
        .post(&format!("/api/compliance/legal-holds/{}/release/", id(&hold)), &org.admin, json!({"reason": "settled"}))
        .await;
    assert_eq!(status, 200);
    // A longer audit-log policy wins.
    let (_, longer) = s
        .post(POLICIES, &org.admin, json!({"name": "Audit 60 days", "policy_type": "AUDIT_LOGS", "retention_days": 60}))
        .await;
    let kept = preview(&s, &org, &policy).await;
    assert_eq!(kept["hard_deleted"], 0, "{kept}");
    assert!(kept["limited_by"][0].as_str().unwrap().contains("\"Audit 60 days\""), "{kept}");
    assert_eq!(s.patch(&format!("{POLICIES}{}/", id(&longer)), &org.admin, json!({"is_active": false})).await.0, 200);
    let due = preview(&s, &org, &policy).await;
    let n = due["hard_deleted"].as_i64().unwrap();
    assert!(n >= 6, "{due}");

    let (done, job) = run(&s, &org, &policy).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(done["hard_deleted"], n, "the run pruned what the preview said: {done}");
    let report = chain.verify(org.id, None, custos_audit_chain::verify::Depth::Content).await.unwrap();
    assert!(report.ok, "what remains verifies: {report:?}");
    assert_eq!(report.first_seq, n as u64, "{report:?}");
    assert!(s.audit_count(org.id, "prune", "audit_log").await >= 1);
}

async fn preview(s: &TestServer, org: &TestOrg, policy: &str) -> Value {
    s.post(&format!("{POLICIES}{policy}/execute/"), &org.admin, json!({"preview": true})).await.1
}

/// An archive run interrupted between batches (the runner gone after the first) is finished by
/// another replica: every record archived exactly once — one archive per batch, each verifying,
/// no record in two — and nothing left in the hot table.
#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_archive_run_resumes_without_archiving_anything_twice() {
    let mut jobs = custos_testkit::test_jobs_config();
    jobs.run = false;
    let s = TestServer::start_with(ServerOptions { jobs: Some(jobs), ..Default::default() }).await;
    let org = s.org("acme").await;
    let n = 2_500;
    s.insert_closed_incidents(org.id, n, "2020-01-01T00:00:00Z").await;
    let (status, p) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Archive old incidents", "policy_type": "INCIDENT_DATA",
                                           "retention_days": 365, "auto_archive": true}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let (status, started) = s.post(&format!("{POLICIES}{}/execute/", id(&p)), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{started}");
    let run_id = uuid::Uuid::parse_str(started["id"].as_str().unwrap()).unwrap();
    let ctx = custos_core::RequestCtx::system(org.id, "test");
    assert!(retention(&s).run_batch(&ctx, run_id).await.unwrap(), "more batches remain");
    let _replica = s.replica_with(|c| c.jobs.run = true).await;
    let job = s.wait_for_job(&org.admin, started["job_id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, done) = s.get(&format!("{RUNS}{run_id}/"), &org.admin).await;
    assert_eq!((done["archived"].clone(), done["status"].clone()), (json!(n), json!("completed")), "{done}");
    assert_eq!(s.get("/api/compliance/incidents/", &org.admin).await.1["count"], 0);
    let archives = files_under(&s.blob_dir().join("archives"));
    assert_eq!(archives.len(), 3, "one archive per batch: {archives:?}");
    let key = s.app().archive_signer.clone().unwrap().verifier();
    let mut seen = std::collections::HashSet::new();
    for file in &archives {
        let v = archive_file::verify(std::fs::File::open(file).unwrap(), std::slice::from_ref(&key)).unwrap();
        for r in v.manifest.records {
            assert!(seen.insert(r.id), "{} archived twice", r.id);
        }
    }
    assert_eq!(seen.len(), n as usize);
    assert_eq!(s.audit_count(org.id, "retention_archive", "incident").await, n);
}

/// A crash after a batch's archive is written but before the batch commits (provoked: a deferred
/// trigger fails the commit once): the archive is in the store and nothing was removed; the batch
/// run again rewrites the same archive — one file, never two — then removes the records, each
/// archived exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_whose_commit_fails_after_its_archive_is_written_is_archived_once_when_run_again() {
    let mut jobs = custos_testkit::test_jobs_config();
    jobs.run = false;
    let s = TestServer::start_with(ServerOptions { jobs: Some(jobs), ..Default::default() }).await;
    let org = s.org("acme").await;
    let n = 300;
    s.insert_closed_incidents(org.id, n, "2020-01-01T00:00:00Z").await;
    let (status, p) = s
        .post(
            POLICIES,
            &org.admin,
            json!({"name": "Archive old incidents", "policy_type": "INCIDENT_DATA",
                                           "retention_days": 365, "auto_archive": true}),
        )
        .await;
    assert_eq!(status, 201, "{p}");
    let (status, started) = s.post(&format!("{POLICIES}{}/execute/", id(&p)), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{started}");
    let run_id = uuid::Uuid::parse_str(started["id"].as_str().unwrap()).unwrap();
    // A sequence is not rolled back with the failed transaction: the first commit fails, later ones pass.
    for sql in [
        "CREATE SEQUENCE test_commit_attempts",
        "CREATE FUNCTION test_fail_first_commit() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
         BEGIN
           IF nextval('test_commit_attempts') = 1 THEN RAISE EXCEPTION 'simulated crash at commit'; END IF;
           RETURN NULL;
         END $$",
        "CREATE CONSTRAINT TRIGGER test_crash_at_commit AFTER INSERT ON retention_run_items
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_first_commit()",
    ] {
        s.superuser_sql(sql).await.expect("set up the failing commit");
    }
    let ctx = custos_core::RequestCtx::system(org.id, "test");
    let err = retention(&s).run_batch(&ctx, run_id).await.expect_err("the commit fails");
    let archives = files_under(&s.blob_dir().join("archives"));
    assert_eq!(archives.len(), 1, "the archive was written before the commit ({err}): {archives:?}");
    assert_eq!(s.get("/api/compliance/incidents/", &org.admin).await.1["count"], n, "nothing removed");
    let (_, run) = s.get(&format!("{RUNS}{run_id}/"), &org.admin).await;
    assert_eq!(run["archived"], 0, "{run}");

    while retention(&s).run_batch(&ctx, run_id).await.expect("the batch again") {}
    let again = files_under(&s.blob_dir().join("archives"));
    assert_eq!(again, archives, "the same archive rewritten, not a second one");
    let key = s.app().archive_signer.clone().unwrap().verifier();
    let verified = archive_file::verify(std::fs::File::open(&again[0]).unwrap(), std::slice::from_ref(&key)).unwrap();
    let ids: std::collections::HashSet<_> = verified.manifest.records.iter().map(|r| r.id).collect();
    assert_eq!((verified.manifest.records.len(), ids.len()), (n as usize, n as usize), "each record once");
    assert_eq!(s.get("/api/compliance/incidents/", &org.admin).await.1["count"], 0);
    let (_, run) = s.get(&format!("{RUNS}{run_id}/"), &org.admin).await;
    assert_eq!(run["archived"], n, "{run}");
    assert_eq!(s.audit_count(org.id, "retention_archive", "incident").await, n);
}
