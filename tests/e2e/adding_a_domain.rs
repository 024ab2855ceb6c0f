//! Adding a domain is one declaration: this throwaway domain, declared here and nowhere else, is
//! served by the gateway's composition as the built-in ones are — its REST endpoints (one of
//! them public), its place in the OpenAPI document, its background task, and its kind of job with
//! the schedule that starts it (listed to the organisation, run through the jobs API). (A real domain also
//! lists itself in `domains::ALL`, has its crate in `Cargo.toml`, and may declare a
//! `GrpcService` and CLI subcommands the same way: see ARCHITECTURE.md, "Adding a domain".)

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use custos_core::Problem;
use custos_gateway::App;
use custos_gateway::config::Config;
use custos_gateway::domains::{Domain, Serving, Task};
use custos_gateway::rest::{Endpoint, Operation};
use custos_jobs::{Job, Kind, ScheduleDef, Scope};
use custos_proto::v1 as pb;
use custos_testkit::{ServerOptions, TestServer};
use reqwest::Method;

const GREETINGS: Domain = Domain { name: "greetings", serve, cli: None };

static TASK_RAN: AtomicBool = AtomicBool::new(false);

fn serve(app: &App, _config: &Config) -> Serving {
    // A new domain builds its own service from what `App` shares; this one borrows identity's.
    let identity = app.identity.clone();
    let whoami = Operation::new("who_am_i", move |ctx, req: pb::WhoAmIRequest| {
        let identity = identity.clone();
        async move { identity.who_am_i(&ctx, req).await.map_err(Problem::from) }
    });
    let audit = app.audit.clone();
    let key = Operation::public("get_public_key", move |ctx, req: pb::PublicKeyRequest| {
        let audit = audit.clone();
        async move { audit.get_public_key(ctx.as_ref(), req).await.map_err(Problem::from) }
    });
    Serving {
        endpoints: vec![
            Endpoint::get("/api/compliance/greetings/", "Who is greeted", whoami),
            Endpoint::get("/api/compliance/greetings/key/", "A public greeting", key).public(),
        ],
        tasks: vec![Task::new("greetings", |_stop| async { TASK_RAN.store(true, Ordering::SeqCst) })],
        jobs: vec![Kind::new("greetings.send", Scope::Organization, "greets", |job: Job| async move {
            job.count("greeted", 1);
            Ok(serde_json::json!({ "greeted": job.organization() }))
        })],
        schedules: vec![ScheduleDef::new(
            "greetings-weekly",
            "greetings.send",
            Scope::Organization,
            "0 9 * * 1",
            "Mondays at 09:00",
        )],
        ..Serving::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_declared_in_one_place_is_served_documented_and_run() {
    let s = TestServer::start_with(ServerOptions { extra_domains: vec![&GREETINGS], ..Default::default() }).await;
    let org = s.org("acme").await;
    let (status, me) = s.call(Method::GET, "/api/compliance/greetings/", Some(&org.viewer), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["organization_slug"], "acme");
    // Authentication, from the edge, as for every endpoint; the public one needs none.
    let (status, _) = s.call(Method::GET, "/api/compliance/greetings/", None, None).await;
    assert_eq!(status, 401);
    let (status, key) = s.call(Method::GET, "/api/compliance/greetings/key/", None, None).await;
    assert_eq!(status, 200, "{key}");
    // Documented, named after its method.
    let (_, doc) = s.call(Method::GET, "/api/schema/", None, None).await;
    assert_eq!(doc["paths"]["/api/compliance/greetings/"]["get"]["operationId"], "whoAmI");
    assert_eq!(doc["paths"]["/api/compliance/greetings/key/"]["get"]["security"], serde_json::json!([]));
    // Its task runs with the server's.
    for _ in 0..100 {
        if TASK_RAN.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(TASK_RAN.load(Ordering::SeqCst), "the domain's task was started");
    // Its schedule is the organisation's, and its job runs on the platform's runner.
    let (status, schedules) = s.call(Method::GET, "/api/compliance/schedules/", Some(&org.admin), None).await;
    assert_eq!(status, 200, "{schedules}");
    let weekly = schedules["results"].as_array().unwrap().iter().find(|s| s["name"] == "greetings-weekly").cloned();
    assert_eq!(weekly.expect("listed")["cron"], "0 9 * * 1");
    let (status, job) = s
        .call(
            Method::POST,
            "/api/compliance/schedules/greetings-weekly/run/",
            Some(&org.admin),
            Some(&serde_json::json!({})),
        )
        .await;
    assert_eq!(status, 201, "{job}");
    let path = format!("/api/compliance/jobs/{}/", job["id"].as_str().unwrap());
    let mut job = job;
    for _ in 0..200 {
        if job["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        job = s.call(Method::GET, &path, Some(&org.admin), None).await.1;
    }
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["greeted"], org.id.to_string());
}
