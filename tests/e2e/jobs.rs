//! Jobs and schedules: takeover and resumption after a runner dies, exactly-once schedules across
//! replicas, cancellation, retries with backoff, progress, and the jobs and schedules API with
//! its tenancy and roles over REST and gRPC. The kinds here are a test domain's, declared as a
//! real domain declares its own.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use custos_gateway::App;
use custos_gateway::config::Config;
use custos_gateway::domains::{Domain, Serving};
use custos_jobs::{Job, JobError, Kind, ScheduleDef, Scope};
use custos_proto::v1 as pb;
use custos_proto::v1::jobs_service_client::JobsServiceClient;
use custos_testkit::{ServerOptions, TestOrg, TestServer, test_jobs_config};
use diesel::QueryableByName;
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Code;
use uuid::Uuid;

/// Each step's executions, by job and step: a step done twice shows as 2.
static STEP_RUNS: LazyLock<Mutex<HashMap<(Uuid, u32), u32>>> = LazyLock::new(Default::default);
/// Each ticking job's executions.
static TICKS: LazyLock<Mutex<HashMap<Uuid, u32>>> = LazyLock::new(Default::default);

#[derive(Deserialize)]
struct StepParams {
    steps: u32,
    pause_ms: u64,
}

#[derive(serde::Serialize, Deserialize)]
struct Checkpoint {
    next: u32,
}

/// Does `steps` steps, each once: records it, reports progress, saves a checkpoint, pauses.
async fn stepping(job: Job) -> Result<Value, JobError> {
    let params: StepParams = job.params()?;
    let org = job.organization();
    let resumed_from = job.checkpoint::<Checkpoint>().map(|c| c.next);
    let (mut ran, mut skipped) = (0, 0);
    // From the first step every time: the steps already done are skipped by their records,
    // whatever the checkpoint says.
    for i in 0..params.steps {
        match job.step(&format!("step-{i}"), org, async |_tx| Ok(())).await? {
            Some(()) => {
                *STEP_RUNS.lock().unwrap().entry((job.id(), i)).or_default() += 1;
                ran += 1;
                job.count("done", 1);
            }
            None => skipped += 1,
        }
        job.set_progress(f64::from(i + 1) / f64::from(params.steps));
        job.save_checkpoint(&Checkpoint { next: i + 1 }).await?;
        tokio::time::sleep(Duration::from_millis(params.pause_ms)).await;
    }
    Ok(json!({ "ran": ran, "skipped": skipped, "resumed_from": resumed_from }))
}

fn org_schedule(name: &'static str, kind: &'static str, parameters: Value) -> ScheduleDef {
    let mut def = ScheduleDef::new(name, kind, Scope::Organization, "0 0 1 1 *", "a test schedule");
    def.parameters = parameters;
    def
}

fn serve_jobs(_app: &App, _config: &Config) -> Serving {
    Serving {
        jobs: vec![
            Kind::new("test.steps", Scope::Organization, "steps, each once", stepping),
            Kind::new("test.flaky", Scope::Organization, "fails twice, then succeeds", |job: Job| async move {
                if job.attempt() < 3 {
                    Err(JobError::retry(format!("flaky on attempt {}", job.attempt())))
                } else {
                    Ok(json!({ "attempt": job.attempt() }))
                }
            }),
            Kind::new("test.broken", Scope::Organization, "always fails", |_job: Job| async move {
                Err::<Value, _>(JobError::retry("always broken"))
            })
            .attempts(2),
            Kind::new("test.fatal", Scope::Organization, "fails for good", |_job: Job| async move {
                Err::<Value, _>(JobError::fatal("bad input"))
            }),
        ],
        schedules: vec![
            org_schedule("test-steps", "test.steps", json!({ "steps": 6, "pause_ms": 400 })),
            org_schedule("test-slow", "test.steps", json!({ "steps": 300, "pause_ms": 100 })),
            org_schedule("test-quick", "test.steps", json!({ "steps": 1, "pause_ms": 0 })),
            org_schedule("test-flaky", "test.flaky", json!({})),
            org_schedule("test-broken", "test.broken", json!({})),
            org_schedule("test-fatal", "test.fatal", json!({})),
        ],
        ..Serving::default()
    }
}

static JOBS_TEST: Domain = Domain { name: "jobs-test", serve: serve_jobs, cli: None };

fn serve_ticking(_app: &App, _config: &Config) -> Serving {
    Serving {
        jobs: vec![Kind::new("test.tick", Scope::System, "counts its runs", |job: Job| async move {
            *TICKS.lock().unwrap().entry(job.id()).or_default() += 1;
            Ok(Value::Null)
        })],
        // Every second: an operator's schedule may have a seconds field.
        schedules: vec![ScheduleDef::new("test-tick", "test.tick", Scope::System, "* * * * * *", "every second")],
        ..Serving::default()
    }
}

static TICKING: Domain = Domain { name: "ticking", serve: serve_ticking, cli: None };

async fn server() -> TestServer {
    TestServer::start_with(ServerOptions { extra_domains: vec![&JOBS_TEST], ..Default::default() }).await
}

async fn run_schedule(s: &TestServer, org: &TestOrg, name: &str) -> String {
    let (status, job) = s.post(&format!("/api/compliance/schedules/{name}/run/"), &org.admin, json!({})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["status"], "queued", "{job}");
    job["id"].as_str().unwrap().to_owned()
}

async fn job(s: &TestServer, org: &TestOrg, id: &str) -> Value {
    let (status, job) = s.get(&format!("/api/compliance/jobs/{id}/"), &org.admin).await;
    assert_eq!(status, 200, "{job}");
    job
}

/// Polls the job until `done` says so (30 s at most).
async fn wait_for(s: &TestServer, org: &TestOrg, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let job = job(s, org, id).await;
        if done(&job) {
            return job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "waited 30 s for the job to be {what}: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ended(s: &TestServer, org: &TestOrg, id: &str) -> Value {
    wait_for(s, org, id, "finished", |j| ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap()))
        .await
}

fn step_runs(id: &str) -> Vec<u32> {
    let id = Uuid::parse_str(id).unwrap();
    let runs = STEP_RUNS.lock().unwrap();
    let mut steps: Vec<(u32, u32)> =
        runs.iter().filter(|((job, _), _)| *job == id).map(|((_, i), n)| (*i, *n)).collect();
    steps.sort();
    steps.into_iter().map(|(_, n)| n).collect()
}

/// The actions recorded in the audit trail about `job`, oldest first.
async fn trail(s: &TestServer, org: &TestOrg, job: &str) -> Vec<String> {
    crate::audit_chain::checkpoint(s, org).await;
    let (status, page) =
        s.get(&format!("/api/compliance/audit-log/?resource_id={job}&page_size=100"), &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    let mut actions: Vec<String> =
        page["results"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect();
    actions.reverse();
    actions
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runner_killed_mid_job_is_taken_over_and_resumes_without_redoing_a_step() {
    let mut s = server().await;
    let org = s.org("acme").await;
    let id = run_schedule(&s, &org, "test-steps").await;
    // Killed once three of its six steps are done (the runner holds it, mid-pause).
    wait_for(&s, &org, &id, "three steps in", |j| j["counters"]["done"].as_i64().unwrap_or(0) >= 3).await;
    let before = job(&s, &org, &id).await;
    assert_eq!(before["status"], "running", "{before}");
    s.kill();
    let killed_at = Instant::now();
    s.restart().await;

    let after = ended(&s, &org, &id).await;
    assert_eq!(after["status"], "succeeded", "{after}");
    // The new runner waited out the dead one's lease (3 s in tests), then took the job over.
    assert!(killed_at.elapsed() >= Duration::from_secs(2), "taken over only once the lease lapsed");
    assert_eq!(after["takeovers"], 1, "{after}");
    assert_eq!(after["attempts"], 2, "{after}");
    let result = &after["result"];
    let skipped = result["skipped"].as_u64().unwrap();
    assert!(skipped >= 3, "the steps done before the kill are skipped: {result}");
    assert_eq!(result["ran"].as_u64().unwrap() + skipped, 6, "{result}");
    assert!(result["resumed_from"].as_u64().unwrap() >= 3, "it resumed from its checkpoint: {result}");
    // Every step ran exactly once, across both runners.
    assert_eq!(step_runs(&id), vec![1; 6]);
    assert_eq!(after["progress"], 1.0);
    // Its creation, start, interruption, resumption and end are in the audit trail.
    assert_eq!(trail(&s, &org, &id).await, ["create", "start", "interrupt", "resume", "succeed"]);
}

#[derive(QueryableByName, Debug)]
struct Fired {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    status: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Uuid>)]
    runner: Option<Uuid>,
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_database_run_each_scheduled_time_exactly_once() {
    use diesel_async::RunQueryDsl;
    let mut s = TestServer::start_with(ServerOptions { extra_domains: vec![&TICKING], ..Default::default() }).await;
    let replica = s.replica().await;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    replica.shutdown().await;
    if let Some(server) = s.server.take() {
        server.shutdown().await;
    }
    let elapsed = started.elapsed().as_secs();

    let mut conn = s.db.superuser().await;
    let fired: Vec<Fired> = diesel::sql_query(
        "SELECT id, status, runner FROM jobs WHERE schedule_name = 'test-tick' ORDER BY scheduled_for",
    )
    .load(&mut conn)
    .await
    .unwrap();
    #[derive(QueryableByName)]
    struct Times {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let distinct: Times =
        diesel::sql_query("SELECT count(DISTINCT scheduled_for) AS n FROM jobs WHERE schedule_name = 'test-tick'")
            .get_result(&mut conn)
            .await
            .unwrap();
    // One job per due second — not one per replica — and each ran once.
    assert!(fired.len() >= 3, "the schedule fired every second: {fired:?}");
    assert!(fired.len() as u64 <= elapsed + 2, "{} jobs in {elapsed} s: fired more than once a second", fired.len());
    assert_eq!(distinct.n, fired.len() as i64, "one job per scheduled time");
    let ticks = TICKS.lock().unwrap();
    for job in &fired {
        if job.status == "succeeded" {
            assert_eq!(ticks.get(&job.id), Some(&1), "job {} ran once", job.id);
        } else {
            // Stopped with the servers: released for the next start, never run twice.
            assert!(["queued", "interrupted"].contains(&job.status.as_str()), "{job:?}");
            assert!(ticks.get(&job.id).copied().unwrap_or(0) <= 1, "{job:?}");
        }
    }
    let runners: std::collections::HashSet<_> = fired.iter().filter_map(|j| j.runner).collect();
    eprintln!("{} scheduled jobs in {elapsed} s, run by {} runners", fired.len(), runners.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_cancels_a_running_job_and_it_stops_at_a_step() {
    let s = server().await;
    let org = s.org("acme").await;
    let id = run_schedule(&s, &org, "test-slow").await;
    let running = wait_for(&s, &org, &id, "under way", |j| j["counters"]["done"].as_i64().unwrap_or(0) >= 2).await;
    // Progress and counters show while it runs (written with each heartbeat or checkpoint).
    assert_eq!(running["status"], "running");
    assert!(running["progress"].as_f64().unwrap() > 0.0, "{running}");
    assert!(running["heartbeat_at"].is_string(), "{running}");

    for role in [&org.viewer, &org.editor, &org.auditor] {
        let (status, body) = s.post(&format!("/api/compliance/jobs/{id}/cancel/"), role, json!({})).await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, asked) = s.post(&format!("/api/compliance/jobs/{id}/cancel/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{asked}");
    assert!(asked["cancel_requested_at"].is_string(), "{asked}");
    assert!(asked["cancel_requested_by"].as_str().unwrap().starts_with("user:"), "{asked}");
    let cancelled = ended(&s, &org, &id).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let done = cancelled["counters"]["done"].as_i64().unwrap();
    assert!(done < 300, "it stopped early: {cancelled}");
    // No step ran twice, and none ran after it stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let runs = step_runs(&id);
    assert!(runs.iter().all(|&n| n == 1), "{runs:?}");
    assert!(runs.len() as i64 <= done + 1, "{} steps ran, {done} counted", runs.len());
    // A finished job cannot be cancelled.
    let (status, body) = s.post(&format!("/api/compliance/jobs/{id}/cancel/"), &org.admin, json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "Job already finished");
    let actions = trail(&s, &org, &id).await;
    assert_eq!(actions.first().map(String::as_str), Some("create"));
    assert!(actions.contains(&"request_cancel".to_owned()) && actions.last().unwrap() == "cancel", "{actions:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_runner_died_after_a_cancel_request_is_cancelled_not_resumed() {
    let mut s = server().await;
    let org = s.org("acme").await;
    let id = run_schedule(&s, &org, "test-slow").await;
    wait_for(&s, &org, &id, "under way", |j| j["counters"]["done"].as_i64().unwrap_or(0) >= 2).await;
    s.kill();
    // Aborted tasks stop at their next await: a step already committing finishes first (done,
    // once). Counted once the killed runner has surely stopped.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let steps_at_kill = step_runs(&id).len();
    // An API-only replica takes the request; nobody holds the job to stop it.
    let api = s.replica_with(|c| c.jobs.run = false).await;
    let response = s
        .http
        .post(format!("http://{}/api/compliance/jobs/{id}/cancel/", api.http_addr))
        .header("Authorization", format!("Token {}", org.admin))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let asked: Value = response.json().await.unwrap();
    assert_eq!(
        (asked["status"].clone(), asked["cancel_requested_at"].is_string()),
        (json!("running"), true),
        "{asked}"
    );
    // The next runner finds the lapsed job asked to stop: it ends it, without running a step.
    s.restart().await;
    let cancelled = ended(&s, &org, &id).await;
    assert_eq!(
        (cancelled["status"].clone(), cancelled["takeovers"].clone()),
        (json!("cancelled"), json!(0)),
        "{cancelled}"
    );
    assert_eq!(step_runs(&id).len(), steps_at_kill, "no step ran after the kill");
    let actions = trail(&s, &org, &id).await;
    assert_eq!(actions[actions.len() - 2..], ["request_cancel".to_owned(), "cancel".to_owned()], "{actions:?}");
    assert!(!actions.contains(&"resume".to_owned()), "{actions:?}");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_job_is_cancelled_at_once_on_a_replica_that_runs_no_jobs() {
    let mut jobs = test_jobs_config();
    jobs.run = false;
    let s = TestServer::start_with(ServerOptions {
        extra_domains: vec![&JOBS_TEST],
        jobs: Some(jobs),
        ..Default::default()
    })
    .await;
    let org = s.org("acme").await;
    let id = run_schedule(&s, &org, "test-steps").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(job(&s, &org, &id).await["status"], "queued", "no runner here");
    let (status, cancelled) = s.post(&format!("/api/compliance/jobs/{id}/cancel/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert!(cancelled["finished_at"].is_string(), "{cancelled}");
    assert_eq!(trail(&s, &org, &id).await, ["create", "cancel"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_are_retried_with_backoff_until_attempts_run_out() {
    let s = server().await;
    let org = s.org("acme").await;
    let flaky = run_schedule(&s, &org, "test-flaky").await;
    let broken = run_schedule(&s, &org, "test-broken").await;
    let fatal = run_schedule(&s, &org, "test-fatal").await;
    let started = Instant::now();

    let flaky = ended(&s, &org, &flaky).await;
    assert_eq!(flaky["status"], "succeeded", "{flaky}");
    assert_eq!(flaky["attempts"], 3, "{flaky}");
    assert_eq!(flaky["error"], Value::Null, "a success clears the last error: {flaky}");
    // Backoff: about 1 s, then about 2 s (±20%), before the third attempt.
    assert!(started.elapsed() >= Duration::from_millis(2400), "retried after {:?}", started.elapsed());
    let flaky_id = flaky["id"].as_str().unwrap();
    assert_eq!(trail(&s, &org, flaky_id).await, ["create", "start", "retry", "start", "retry", "start", "succeed"]);

    let broken = ended(&s, &org, &broken).await;
    assert_eq!((broken["status"].clone(), broken["attempts"].clone()), (json!("failed"), json!(2)), "{broken}");
    assert_eq!(broken["error"], "always broken (gave up after 2 attempts)");

    let fatal = ended(&s, &org, &fatal).await;
    assert_eq!((fatal["status"].clone(), fatal["attempts"].clone()), (json!("failed"), json!(1)), "{fatal}");
    assert_eq!(fatal["error"], "bad input");
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_belong_to_their_organisation_and_to_its_admins_and_auditors() {
    let s = server().await;
    let acme = s.org("acme").await;
    let globex = s.org("globex").await;
    let id = run_schedule(&s, &acme, "test-quick").await;
    ended(&s, &acme, &id).await;

    // Another organisation neither sees nor cancels it.
    let (status, body) = s.get(&format!("/api/compliance/jobs/{id}/"), &globex.admin).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.post(&format!("/api/compliance/jobs/{id}/cancel/"), &globex.admin, json!({})).await;
    assert_eq!(status, 404, "{body}");
    let (status, page) = s.get("/api/compliance/jobs/", &globex.admin).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["results"].as_array().unwrap().iter().all(|j| j["id"] != id.as_str()), "{page}");
    // Its auditors read it; viewers and editors do not.
    let (status, page) = s.get("/api/compliance/jobs/?kind=test.steps", &acme.auditor).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["results"][0]["scope"], "organization");
    for token in [&acme.viewer, &acme.editor] {
        let (status, body) = s.get("/api/compliance/jobs/", token).await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = s.get(&format!("/api/compliance/jobs/{id}/"), token).await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = s.get("/api/compliance/schedules/", token).await;
        assert_eq!(status, 403, "{body}");
    }

    // The same over gRPC.
    let mut client = JobsServiceClient::new(s.grpc(Some(&globex.admin)).await);
    let err = client.get_job(pb::GetJobRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.cancel_job(pb::CancelJobRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let theirs = client.list_jobs(pb::ListJobsRequest::default()).await.unwrap().into_inner();
    assert!(theirs.results.iter().all(|j| j.id != id));
    let mut viewer = JobsServiceClient::new(s.grpc(Some(&acme.viewer)).await);
    let err = viewer.list_jobs(pb::ListJobsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = viewer.run_schedule(pb::RunScheduleRequest { name: "test-quick".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut auditor = JobsServiceClient::new(s.grpc(Some(&acme.auditor)).await);
    let seen = auditor.get_job(pb::GetJobRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((seen.kind.as_str(), seen.status.as_str()), ("test.steps", "succeeded"));
    assert_eq!(serde_json::from_str::<Value>(&seen.result).unwrap()["ran"], 1);
    let err = auditor.cancel_job(pb::CancelJobRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = auditor
        .update_schedule(pb::UpdateScheduleRequest {
            name: "test-quick".into(),
            schedule: Some(pb::ScheduleInput { cron: "0 5 * * *".into(), enabled: true }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut admin = JobsServiceClient::new(s.grpc(Some(&acme.admin)).await);
    let started = admin.run_schedule(pb::RunScheduleRequest { name: "test-quick".into() }).await.unwrap().into_inner();
    assert_eq!(started.kind, "test.steps");
    let err = admin.get_job(pb::GetJobRequest { id: "not-an-id".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jobs_list_filters_by_kind_status_and_time_and_refuses_bad_filters() {
    let s = server().await;
    let org = s.org("acme").await;
    let quick = run_schedule(&s, &org, "test-quick").await;
    let fatal = run_schedule(&s, &org, "test-fatal").await;
    ended(&s, &org, &quick).await;
    ended(&s, &org, &fatal).await;
    let ids = |page: &Value| -> Vec<String> {
        page["results"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, page) = s.get("/api/compliance/jobs/?status=failed", &org.admin).await;
    assert_eq!(ids(&page), vec![fatal.clone()]);
    let (_, page) = s.get("/api/compliance/jobs/?kind=test.steps&status=succeeded", &org.admin).await;
    assert_eq!(ids(&page), vec![quick.clone()]);
    let (_, page) = s.get("/api/compliance/jobs/?created_after=2000-01-01&created_before=2999-12-31", &org.admin).await;
    assert_eq!(page["count"], 2, "{page}");
    assert_eq!(ids(&page), vec![fatal.clone(), quick.clone()], "newest first");
    let (_, page) = s.get("/api/compliance/jobs/?created_before=2000-01-01", &org.admin).await;
    assert_eq!(page["count"], 0, "{page}");
    let (_, page) = s.get("/api/compliance/jobs/?page_size=1&cursor=", &org.admin).await;
    assert_eq!(ids(&page), vec![fatal.clone()]);
    assert!(page["next"].as_str().unwrap().contains("cursor="), "{page}");

    for bad in ["status=done", "created_after=yesterday", "scope=everything", "scope=system&cursor=abc"] {
        let (status, body) = s.get(&format!("/api/compliance/jobs/?{bad}"), &org.admin).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = s.get("/api/compliance/jobs/?status=done", &org.admin).await;
    assert_eq!(status, 400);
    assert!(body["details"].to_string().contains("queued"), "names the allowed values: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_change_disable_and_run_their_schedules_and_bad_cron_is_refused() {
    let s = server().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let (status, page) = s.get("/api/compliance/schedules/", &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    let schedules = page["results"].as_array().unwrap();
    let retention = schedules.iter().find(|s| s["name"] == "audit-retention").expect("the audit retention schedule");
    assert_eq!(retention["cron"], "30 3 * * *");
    assert_eq!(retention["default_cron"], "30 3 * * *");
    assert_eq!((retention["enabled"].clone(), retention["customized"].clone()), (json!(true), json!(false)));
    assert!(retention["next_run_at"].as_str().unwrap().contains("T03:30:00"), "{retention}");
    // Platform schedules are the operator's: not an organisation's to see or change.
    assert!(schedules.iter().all(|s| s["scope"] == "organization"), "{page}");
    let (status, _) = s
        .put(
            "/api/compliance/schedules/evidence-object-sweep/",
            &org.admin,
            json!({"cron": "0 1 * * *", "enabled": true}),
        )
        .await;
    assert_eq!(status, 404);

    let path = "/api/compliance/schedules/audit-retention/";
    let (status, changed) = s.put(path, &org.admin, json!({"cron": "0 5 * * 1", "enabled": true})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!((changed["cron"].clone(), changed["customized"].clone()), (json!("0 5 * * 1"), json!(true)));
    assert!(changed["next_run_at"].as_str().unwrap().contains("T05:00:00"), "{changed}");
    assert!(changed["updated_by"].as_str().unwrap().starts_with("user:"), "{changed}");
    let (status, off) = s.patch(path, &org.admin, json!({"enabled": false})).await;
    assert_eq!(status, 200, "{off}");
    assert_eq!((off["enabled"].clone(), off["cron"].clone()), (json!(false), json!("0 5 * * 1")));
    assert_eq!(off["next_run_at"], Value::Null, "{off}");
    // Another organisation's schedule is untouched.
    let (_, theirs) = s.get("/api/compliance/schedules/", &other.admin).await;
    let theirs = theirs["results"].as_array().unwrap().iter().find(|s| s["name"] == "audit-retention").unwrap().clone();
    assert_eq!((theirs["cron"].clone(), theirs["enabled"].clone()), (json!("30 3 * * *"), json!(true)));

    for (cron, says) in [
        ("61 * * * *", "not a valid cron expression"),
        ("* * * * * *", "6 fields"),
        ("every day", "2 fields"),
        ("", "required"),
        ("0 0 30 2 *", "never matches"),
    ] {
        let (status, body) = s.put(path, &org.admin, json!({"cron": cron, "enabled": true})).await;
        assert_eq!(status, 400, "{cron:?}: {body}");
        assert!(body["details"].to_string().contains(says), "{cron:?}: {body}");
        assert_eq!(body["error"], "Invalid value for 'cron'", "names the field: {body}");
    }
    for token in [&org.viewer, &org.editor, &org.auditor] {
        let (status, _) = s.put(path, token, json!({"cron": "0 1 * * *", "enabled": true})).await;
        assert_eq!(status, 403);
        let (status, _) = s.post("/api/compliance/schedules/audit-retention/run/", token, json!({})).await;
        assert_eq!(status, 403);
    }
    let (status, _) = s.put("/api/compliance/schedules/no-such/", &org.admin, json!({"cron": "0 1 * * *"})).await;
    assert_eq!(status, 404);
    let (status, _) = s.post("/api/compliance/schedules/no-such/run/", &org.admin, json!({})).await;
    assert_eq!(status, 404);
    // A change is audited.
    assert_eq!(s.audit_count(org.id, "update", "job_schedule").await, 2);
    assert_eq!(s.audit_count(other.id, "update", "job_schedule").await, 0);

    // Run now, even while disabled: the organisation's retention runs as a job.
    let id = run_schedule(&s, &org, "audit-retention").await;
    let done = ended(&s, &org, &id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["kind"], "audit.retention");
    assert_eq!(done["result"]["removed"], 0, "{done}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_see_the_platforms_jobs_as_kind_status_and_times_only() {
    let s = server().await;
    let org = s.org("acme").await;
    let queued = s.app().jobs.enqueue_schedule_as_operator("evidence-object-sweep", None).await.unwrap();
    let id = queued.id.to_string();
    let started = Instant::now();
    let seen = loop {
        let (status, page) = s.get("/api/compliance/jobs/?scope=system&kind=evidence.object_sweep", &org.admin).await;
        assert_eq!(status, 200, "{page}");
        let job = page["results"].as_array().unwrap().iter().find(|j| j["id"] == id.as_str()).cloned();
        if let Some(job) = job.filter(|j| j["status"] == "succeeded") {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{page}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(seen["scope"], "system");
    assert!(seen["finished_at"].is_string(), "{seen}");
    // Nothing of what it did or was given.
    assert_eq!(
        (seen["counters"].clone(), seen["parameters"].clone(), seen["result"].clone()),
        (json!({}), json!({}), Value::Null)
    );
    let (status, one) = s.get(&format!("/api/compliance/jobs/{id}/"), &org.admin).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["kind"], "evidence.object_sweep");
    // Not in the organisation's own list, and not for auditors.
    let (_, own) = s.get("/api/compliance/jobs/", &org.admin).await;
    assert!(own["results"].as_array().unwrap().iter().all(|j| j["id"] != id.as_str()), "{own}");
    let (status, _) = s.get("/api/compliance/jobs/?scope=system", &org.auditor).await;
    assert_eq!(status, 403);
    let (status, _) = s.get(&format!("/api/compliance/jobs/{id}/"), &org.auditor).await;
    assert_eq!(status, 404);
    // The operator sees all of it.
    let row = s.app().jobs.operator_job(queued.id).await.unwrap();
    assert!(row.result.unwrap()["unreferenced_removed"].is_number());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_organisation_schedule_fires_a_job_for_each_organisation_in_its_own_scope() {
    // The operator sets the default of every organisation's retention schedule to every
    // second; one organisation's admin turns theirs off.
    let mut jobs = test_jobs_config();
    jobs.schedules = vec![("audit-retention".into(), "* * * * * *".into())];
    let s = TestServer::start_with(ServerOptions { jobs: Some(jobs), ..Default::default() }).await;
    let acme = s.org("acme").await;
    let globex = s.org("globex").await;
    let initech = s.org("initech").await;
    let (status, off) =
        s.patch("/api/compliance/schedules/audit-retention/", &initech.admin, json!({"enabled": false})).await;
    assert_eq!(status, 200, "{off}");
    let started = Instant::now();
    let mut seen = HashMap::new();
    while seen.len() < 2 && started.elapsed() < Duration::from_secs(90) {
        for org in [&acme, &globex] {
            let (_, page) = s.get("/api/compliance/jobs/?kind=audit.retention&status=succeeded", &org.admin).await;
            if let Some(job) = page["results"].as_array().unwrap().first() {
                seen.insert(org.slug.clone(), job.clone());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.len(), 2, "each organisation's schedule fired its own job: {seen:?}");
    for (slug, job) in &seen {
        assert_eq!(job["schedule"], "audit-retention", "{slug}: {job}");
        assert_eq!(job["created_by"], "schedule:audit-retention", "{slug}: {job}");
        assert!(job["scheduled_for"].is_string(), "{job}");
    }
    let (_, page) = s.get("/api/compliance/jobs/?kind=audit.retention", &initech.admin).await;
    assert_eq!(page["count"], 0, "a disabled schedule fires nothing: {page}");
}
