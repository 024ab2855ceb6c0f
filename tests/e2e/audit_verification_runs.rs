//! Verification runs: progress saved as they go, resumption after an interruption, and the
//! boundaries around both (leases, forged state, tenants, roles).

use custos_audit_chain::SequencerConfig;
use custos_audit_chain::runs::{Launch, RESUMER_JOB, Run};
use custos_audit_chain::verify::Depth;
use custos_core::{RequestCtx, Role};
use custos_testkit::{TestOrg, TestServer};
use diesel::sql_types::Bytea;
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

use crate::audit_chain::{checkpoint, create_frameworks, tamper, verify};

fn auditor(org: &TestOrg) -> RequestCtx {
    RequestCtx { role: Role::Auditor, ..RequestCtx::operator(org.id, &org.slug) }
}

/// Starts a run in steps of 8 entries, checks `steps` of them, saves, and drops it: what a
/// crash or a dropped connection leaves behind. Returns the run's id and how far it got.
async fn interrupted_run(s: &TestServer, org: &TestOrg, steps: usize) -> (String, i64) {
    interrupted_run_launched(s, org, steps, Launch::Attached).await
}

async fn interrupted_run_launched(s: &TestServer, org: &TestOrg, steps: usize, launch: Launch) -> (String, i64) {
    let chain = s.app().audit.chain().with_config(SequencerConfig { verify_batch: 8, ..Default::default() });
    let mut run: Run = chain.start_verification(&auditor(org), None, Depth::Content, launch).await.unwrap();
    for _ in 0..steps {
        assert!(run.step().await.unwrap(), "the log is longer than {steps} steps");
    }
    run.save().await.unwrap();
    let (next, checked, _) = run.progress();
    assert_eq!(checked, next, "a run from the start has checked every entry before its next one");
    (run.id().to_string(), next as i64)
}

/// Makes the run's lease lapse, as if its runner had stopped saving two minutes ago.
async fn lapse(s: &TestServer, id: &str) {
    tamper(s, &format!("UPDATE audit_verifications SET heartbeat_at = now() - interval '2 minutes' WHERE id = '{id}'"))
        .await;
}

async fn run_of(s: &TestServer, org: &TestOrg, id: &str) -> Value {
    let (status, run) = s.get(&format!("/api/compliance/audit-log/verifications/{id}/"), &org.auditor).await;
    assert_eq!(status, 200, "{run}");
    run
}

async fn resume(s: &TestServer, org: &TestOrg, id: &str) -> (u16, Value) {
    let (status, body) =
        s.post(&format!("/api/compliance/audit-log/verifications/{id}/resume/"), &org.auditor, json!({})).await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_verification_resumes_where_it_stopped() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 40).await;
    checkpoint(&s, &org).await;
    let (id, stopped_at) = interrupted_run(&s, &org, 2).await;
    assert_eq!(stopped_at, 16);

    // Its progress is there for anyone to watch; its runner still holds it.
    let run = run_of(&s, &org, &id).await;
    assert_eq!((run["status"].clone(), run["resumable"].clone()), (json!("running"), json!(false)), "{run}");
    assert_eq!((run["next_seq"].as_i64(), run["entries_checked"].as_i64()), (Some(16), Some(16)), "{run}");
    let size = run["tree_size"].as_i64().unwrap();
    assert!(size > 40, "{run}");
    assert!((run["progress"].as_f64().unwrap() - 16.0 / size as f64).abs() < 1e-9, "{run}");
    let (status, body) = resume(&s, &org, &id).await;
    assert_eq!(status, 409, "a run whose runner is alive is not taken over: {body}");
    assert!(body["details"].as_str().unwrap().contains("still running"), "{body}");

    // Once its lease lapses it is interrupted; the log grows meanwhile.
    lapse(&s, &id).await;
    let run = run_of(&s, &org, &id).await;
    assert_eq!((run["status"].clone(), run["resumable"].clone()), (json!("interrupted"), json!(true)), "{run}");
    create_frameworks(&s, &org, 5).await;
    let grown = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();

    let (status, report) = resume(&s, &org, &id).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["ok"].clone(), report["verification_id"].clone()), (json!(true), json!(id)), "{report}");
    assert_eq!(report["tree_size"].as_i64(), Some(grown), "what was written since is verified too: {report}");
    assert_eq!(report["entries_checked"].as_i64(), Some(grown), "each entry once, the first 16 before: {report}");
    assert!(report["checkpoints_checked"].as_i64().unwrap() >= 2, "{report}");
    assert!(
        report["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with("resumed at entry 16")),
        "{report}"
    );
    let run = run_of(&s, &org, &id).await;
    assert_eq!(
        (run["status"].clone(), run["resumes"].clone(), run["progress"].clone()),
        (json!("passed"), json!(1), json!(1.0))
    );
    assert!(run["finished_at"].is_string() && run["resumable"] == false, "{run}");
    let (status, body) = resume(&s, &org, &id).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["details"].as_str().unwrap().contains("already finished (passed)"), "{body}");

    // Its start, resumption and result are in the audit trail, in that order.
    checkpoint(&s, &org).await;
    let (status, page) = s.get(&format!("/api/compliance/audit-log/?resource_id={id}"), &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    let actions: Vec<&str> =
        page["results"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["update_status", "resume", "create"], "{page}");
    let result = &page["results"][0];
    assert_eq!(
        (result["before"]["status"].clone(), result["after"]["status"].clone()),
        (json!("running"), json!("passed"))
    );

    // Every finished verification is listed, newest first, one page at a time.
    verify(&s, &org).await;
    let (status, page) = s.get("/api/compliance/audit-log/verifications/?page_size=1", &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["results"][0]["status"], "passed");
    assert_ne!(page["results"][0]["id"], json!(id), "newest first");
    let next = page["next"].as_str().expect("a link to the second page");
    let next = &next[next.find("/api/").expect("an API link")..];
    let (_, next) = s.get(next, &org.auditor).await;
    assert_eq!(next["results"][0]["id"], json!(id), "{next}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resumed_verification_catches_later_tampering_and_refuses_a_forged_state() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 40).await;
    checkpoint(&s, &org).await;

    // A saved state that was altered — here to skip ahead — does not authenticate.
    let (forged, _) = interrupted_run(&s, &org, 2).await;
    lapse(&s, &forged).await;
    tamper(
        &s,
        &format!(
            "UPDATE audit_verifications SET resume_state = overlay(resume_state PLACING '\\x0000000000000020'::bytea FROM 46 FOR 8),
                    next_seq = 32 WHERE id = '{forged}'"
        ),
    )
    .await;
    let (status, body) = resume(&s, &org, &forged).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["details"].as_str().unwrap().contains("does not authenticate"), "{body}");
    // Nor does another run's state, even a genuine one.
    let (other, _) = interrupted_run(&s, &org, 1).await;
    lapse(&s, &other).await;
    let mut conn = s.db.superuser().await;
    #[derive(diesel::QueryableByName)]
    struct State {
        #[diesel(sql_type = Bytea)]
        resume_state: Vec<u8>,
    }
    let genuine: State =
        diesel::sql_query(format!("SELECT resume_state FROM audit_verifications WHERE id = '{other}'"))
            .get_result(&mut conn)
            .await
            .unwrap();
    diesel::sql_query(format!("UPDATE audit_verifications SET resume_state = $1 WHERE id = '{forged}'"))
        .bind::<Bytea, _>(&genuine.resume_state)
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, body) = resume(&s, &org, &forged).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["details"].as_str().unwrap().contains("belongs to another run"), "{body}");

    // An entry beyond where the run stopped, edited meanwhile, is caught and named. One before
    // it is not read again (that part was verified before the interruption, and the report says
    // so): the resumed run names the later one, a new run the earlier.
    let (id, stopped_at) = interrupted_run(&s, &org, 2).await;
    lapse(&s, &id).await;
    let org_id = org.id;
    for seq in [10, 30] {
        tamper(
            &s,
            &custos_testkit::audit_sql::edit_fields(
                org_id,
                seq,
                "replace($F, 'after.name' || chr(9) || '\"', 'after.name' || chr(9) || '\"forged ')",
            ),
        )
        .await;
    }
    assert!(stopped_at > 10 && stopped_at < 30);
    let (status, report) = resume(&s, &org, &id).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(30)), "{report}");
    let run = run_of(&s, &org, &id).await;
    assert_eq!((run["status"].clone(), run["first_bad_seq"].clone()), (json!("failed"), json!(30)), "{run}");
    assert!(run["problem"].as_str().unwrap().contains("hash mismatch"), "{run}");
    assert_eq!(verify(&s, &org).await["first_bad_seq"], 10);
    // Each failed verification is an event for the notification channels, with where it failed.
    #[derive(diesel::QueryableByName)]
    struct Event {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: Value,
    }
    let events: Vec<Event> = diesel::sql_query(format!(
        "SELECT payload FROM notification_outbox WHERE organization_id = '{org_id}'
            AND event_type = 'audit.verification_failed' ORDER BY created_at"
    ))
    .load(&mut conn)
    .await
    .unwrap();
    let bad: Vec<Value> = events.iter().map(|e| e.payload["first_bad_seq"].clone()).collect();
    assert_eq!(bad, [json!(30), json!(10)]);
    assert_eq!(events[0].payload["verification"], json!(id));
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_runs_belong_to_their_tenant_and_need_an_auditor() {
    let s = TestServer::start().await;
    let acme = s.org("acme").await;
    let globex = s.org("globex").await;
    create_frameworks(&s, &acme, 20).await;
    checkpoint(&s, &acme).await;
    let (id, _) = interrupted_run(&s, &acme, 1).await;

    // While it is live, a second run of the same depth is refused; another depth, or another
    // tenant, may run beside it.
    for path in ["/api/compliance/audit-log/verifications/", "/api/compliance/audit-log/verify/"] {
        let (status, body) = s.post(path, &acme.auditor, json!({})).await;
        assert_eq!(status, 409, "{path}: {body}");
        assert!(body["details"].as_str().unwrap().contains(&id), "names the running one: {body}");
    }
    let (status, body) =
        s.post("/api/compliance/audit-log/verifications/", &acme.auditor, json!({ "structure_only": true })).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = s.post("/api/compliance/audit-log/verifications/", &globex.auditor, json!({})).await;
    assert_eq!(status, 202, "{body}");
    lapse(&s, &id).await;

    // Another tenant's auditor neither sees nor resumes it.
    let path = format!("/api/compliance/audit-log/verifications/{id}/");
    let (status, body) = s.get(&path, &globex.auditor).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.post(&format!("{path}resume/"), &globex.auditor, json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (_, page) = s.get("/api/compliance/audit-log/verifications/", &globex.auditor).await;
    let listed: Vec<&str> = page["results"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert!(!listed.contains(&id.as_str()) && listed.len() == 1, "only its own run: {page}");
    assert_eq!(run_of(&s, &acme, &id).await["status"], "interrupted", "untouched by the other tenant");

    // Viewers and editors may not verify, watch or resume.
    for token in [&acme.viewer, &acme.editor] {
        assert_eq!(s.get(&path, token).await.0, 403);
        assert_eq!(s.get("/api/compliance/audit-log/verifications/", token).await.0, 403);
        assert_eq!(s.post(&format!("{path}resume/"), token, json!({})).await.0, 403);
        assert_eq!(s.post("/api/compliance/audit-log/verify/", token, json!({})).await.0, 403);
    }

    // Bad ids and cursors are clear errors: an id that is none names nothing.
    let (status, body) = s.get("/api/compliance/audit-log/verifications/not-a-run/", &acme.auditor).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string() && !body["details"].is_null(), "{body}");
    let (status, _) = s.get("/api/compliance/audit-log/verifications/?cursor=bogus", &acme.auditor).await;
    assert_eq!(status, 400);
    let (status, _) =
        s.get(&format!("/api/compliance/audit-log/verifications/{}/", uuid::Uuid::now_v7()), &acme.auditor).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verification_started_in_the_background_is_watched_to_its_result() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 12).await;
    let size = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();

    let (status, run) =
        s.post("/api/compliance/audit-log/verifications/", &org.auditor, json!({ "structure_only": true })).await;
    assert_eq!(status, 202, "{run}");
    assert_eq!((run["status"].clone(), run["content_checked"].clone()), (json!("running"), json!(false)), "{run}");
    assert_eq!(run["tree_size"].as_i64(), Some(size), "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    let mut watched = run;
    for _ in 0..200 {
        watched = run_of(&s, &org, &id).await;
        if watched["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(watched["status"], "passed", "{watched}");
    assert_eq!((watched["entries_checked"].as_i64(), watched["next_seq"].as_i64()), (Some(size), Some(size)));
    assert!(watched["notes"].to_string().contains("edited field is not detected"), "{watched}");

    assert_eq!(s.post("/api/compliance/audit-log/verifications/", &org.viewer, json!({})).await.0, 403);
    let (status, body) =
        s.post("/api/compliance/audit-log/verifications/", &org.auditor, json!({ "days": "many" })).await;
    assert_eq!(status, 400, "{body}");
    // The last 4,294,967,295 days are the whole log, not an overflow.
    let (status, report) = s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({ "days": u32::MAX })).await;
    assert_eq!(
        (status.as_u16(), report["ok"].clone(), report["first_seq"].clone()),
        (200, json!(true), json!(0)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_that_lost_its_run_to_a_resumption_stops() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 20).await;
    checkpoint(&s, &org).await;
    let chain = s.app().audit.chain().with_config(SequencerConfig { verify_batch: 8, ..Default::default() });
    let mut stale = chain.start_verification(&auditor(&org), None, Depth::Content, Launch::Attached).await.unwrap();
    assert!(stale.step().await.unwrap());
    stale.save().await.unwrap();
    let id = stale.id().to_string();

    // It stalls past its lease; another runner takes the run over and finishes it.
    lapse(&s, &id).await;
    let (status, report) = resume(&s, &org, &id).await;
    assert_eq!((status, report["ok"].clone()), (200, json!(true)), "{report}");

    // The stale runner may neither save over it nor record a result of its own.
    let lost = stale.save().await.expect_err("the run is no longer this runner's");
    assert!(lost.to_string().contains("taken over by another runner"), "{lost}");
    let lost = stale.finish().await.expect_err("nor can it finish the run");
    assert!(lost.to_string().contains("taken over by another runner"), "{lost}");
    let run = run_of(&s, &org, &id).await;
    assert_eq!((run["status"].clone(), run["resumes"].clone()), (json!("passed"), json!(1)), "{run}");
}

/// Polls run `id` until it has a result (or a generous deadline passes) and returns it.
async fn finished(s: &TestServer, org: &TestOrg, id: &str) -> Value {
    let mut run = run_of(s, org, id).await;
    for _ in 0..400 {
        if run["finished_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        run = run_of(s, org, id).await;
    }
    run
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_resumes_its_interrupted_background_runs_when_it_starts() {
    let mut s = TestServer::start().await;
    let acme = s.org("acme").await;
    let globex = s.org("globex").await;
    for org in [&acme, &globex] {
        create_frameworks(&s, org, 30).await;
        checkpoint(&s, org).await;
    }
    // The server stopped in the middle of background runs of two tenants, of a run an auditor
    // was waiting on, and of a background run whose saved state was altered since.
    let (acme_bg, stopped_at) = interrupted_run_launched(&s, &acme, 2, Launch::Background).await;
    lapse(&s, &acme_bg).await;
    let (attached, _) = interrupted_run(&s, &acme, 1).await;
    lapse(&s, &attached).await;
    let (globex_bg, _) = interrupted_run_launched(&s, &globex, 1, Launch::Background).await;
    lapse(&s, &globex_bg).await;
    let (forged, _) = interrupted_run_launched(&s, &globex, 2, Launch::Background).await;
    lapse(&s, &forged).await;
    tamper(
        &s,
        &format!(
            "UPDATE audit_verifications SET resume_state = overlay(resume_state PLACING '\\x0000000000000020'::bytea FROM 46 FOR 8)
              WHERE id = '{forged}'"
        ),
    )
    .await;
    assert_eq!(run_of(&s, &acme, &acme_bg).await["background"], true);
    assert_eq!(run_of(&s, &acme, &attached).await["background"], false);

    s.restart().await;

    // Both tenants' background runs are carried on from where they stopped, to their result.
    for (org, id) in [(&acme, &acme_bg), (&globex, &globex_bg)] {
        let run = finished(&s, org, id).await;
        assert_eq!((run["status"].clone(), run["resumes"].clone()), (json!("passed"), json!(1)), "{run}");
    }
    let run = run_of(&s, &acme, &acme_bg).await;
    let resumed_at = format!("resumed at entry {stopped_at}:");
    assert!(run["notes"].as_array().unwrap().iter().any(|n| n.as_str().unwrap().starts_with(&resumed_at)), "{run}");
    // The resumption and the result are the server's, in the audit trail; the start stays the
    // auditor's.
    checkpoint(&s, &acme).await;
    let (status, page) = s.get(&format!("/api/compliance/audit-log/?resource_id={acme_bg}"), &acme.auditor).await;
    assert_eq!(status, 200, "{page}");
    let trail: Vec<(&str, &str)> = page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    let resumer = format!("system:{RESUMER_JOB}");
    assert_eq!(trail.len(), 3, "{page}");
    assert_eq!(trail[..2], [("update_status", resumer.as_str()), ("resume", resumer.as_str())], "{page}");
    assert_eq!(trail[2].0, "create");
    assert!(trail[2].1.starts_with("operator:"), "{page}");

    // The run someone waited on is theirs to resume; the altered one cannot be resumed at all.
    assert_eq!(run_of(&s, &acme, &attached).await["status"], "interrupted");
    let run = run_of(&s, &globex, &forged).await;
    assert_eq!((run["status"].clone(), run["resumes"].clone()), (json!("interrupted"), json!(0)), "{run}");
    let swept = s.app().audit.chain().resume_interrupted(&Default::default()).await.unwrap();
    assert_eq!(swept.len(), 1, "only the altered run is left: {swept:?}");
    let (id, outcome) = &swept[0];
    assert_eq!(id.to_string(), forged);
    let refused = outcome.as_ref().expect_err("its state does not authenticate");
    assert!(refused.to_string().contains("does not authenticate"), "{refused}");
    let skip = std::iter::once(*id).collect();
    assert!(s.app().audit.chain().resume_interrupted(&skip).await.unwrap().is_empty());
}
