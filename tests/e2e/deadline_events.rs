//! Deadlines passing become events for the notification channels, once each: an incident's
//! response and resolution SLAs, a vulnerability's remediation SLA (the `sla-watch` schedule),
//! a requirement's next assessment date (the `assessment-watch` schedule); each announcement is
//! in the audit trail, and a rerun announces nothing twice.

use std::time::Duration;

use custos_testkit::{TestServer, WebhookReceiver};
use serde_json::{Value, json};

use crate::{create_framework, create_requirement, id, seed_gdpr_body};

#[tokio::test(flavor = "multi_thread")]
async fn missed_slas_and_overdue_assessments_are_announced_once() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let receiver = WebhookReceiver::start().await;
    let (status, _) = s
        .post(
            "/api/compliance/notification-channels/",
            &org.admin,
            json!({"name": "deadlines", "kind": "webhook", "url": receiver.url(),
                   "event_types": ["incident.sla_breached", "vulnerability.sla_breached", "requirement.assessment_overdue"]}),
        )
        .await;
    assert_eq!(status, 201);

    // A critical incident detected long ago, never responded to; one responded to and resolved
    // in time; a vulnerability past its remediation deadline; one within it.
    let body = |title: &str, extra: Value| {
        let mut b = json!({"title": title, "description": "d", "severity": "CRITICAL", "category": "DATA_BREACH",
                           "data_classification": "CONFIDENTIAL", "detected_at": "2024-03-01T09:00:00Z"});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let (status, late) = s.post("/api/compliance/incidents/", &org.editor, body("Bucket exposed", json!({}))).await;
    assert_eq!(status, 201, "{late}");
    let (status, _) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            body("Handled", json!({"responded_at": "2024-03-01T09:10:00Z", "resolved_at": "2024-03-01T12:00:00Z", "status": "RESOLVED"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, old_bug) = s
        .post(
            "/api/compliance/vulnerabilities/",
            &org.editor,
            json!({"title": "Old bug", "severity": "HIGH", "discovered_at": "2024-03-01T09:00:00Z", "cve_id": "CVE-2024-0001"}),
        )
        .await;
    assert_eq!(status, 201, "{old_bug}");
    let (status, _) =
        s.post("/api/compliance/vulnerabilities/", &org.editor, json!({"title": "New bug", "severity": "LOW"})).await;
    assert_eq!(status, 201);
    // Another organisation's late incident is its own.
    let (status, _) = s.post("/api/compliance/incidents/", &other.editor, body("Theirs", json!({}))).await;
    assert_eq!(status, 201);

    let job = s.run_schedule(&org.admin, "sla-watch").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"], json!({"incident_breaches": 2, "vulnerability_breaches": 1}), "{job}");
    let again = s.run_schedule(&org.admin, "sla-watch").await;
    assert_eq!(again["result"], json!({"incident_breaches": 0, "vulnerability_breaches": 0}), "once: {again}");
    assert_eq!(s.audit_count(org.id, "sla_breached", "incident").await, 2);
    assert_eq!(s.audit_count(org.id, "sla_breached", "vulnerability").await, 1);
    assert_eq!(s.audit_count(other.id, "sla_breached", "incident").await, 0);

    // A requirement whose assessment date has passed; one not yet due.
    let framework = create_framework(&s, &org, seed_gdpr_body()).await;
    let yesterday = (time::OffsetDateTime::now_utc() - time::Duration::days(1)).date().to_string();
    let overdue =
        create_requirement(&s, &org, &id(&framework), "Art. 30", json!({"next_assessment_date": yesterday})).await;
    create_requirement(&s, &org, &id(&framework), "Art. 32", json!({"next_assessment_date": "2099-01-01"})).await;
    let job = s.run_schedule(&org.admin, "assessment-watch").await;
    assert_eq!(job["result"], json!({"announced": 1}), "{job}");
    assert_eq!(s.run_schedule(&org.admin, "assessment-watch").await["result"], json!({"announced": 0}));
    assert_eq!(s.audit_count(org.id, "assessment_overdue", "requirement").await, 1);

    // Delivered, signed, each once.
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    let got = receiver.wait_for(4, Duration::from_secs(10)).await;
    let events: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let of = |t: &str| events.iter().filter(|e| e["event_type"] == t).collect::<Vec<_>>();
    let incident_events = of("incident.sla_breached");
    let mut deadlines: Vec<&str> = incident_events.iter().map(|e| e["payload"]["deadline"].as_str().unwrap()).collect();
    deadlines.sort();
    assert_eq!(deadlines, ["resolution", "response"]);
    assert!(incident_events.iter().all(|e| e["payload"]["incident"] == late["id"]));
    let vuln = of("vulnerability.sla_breached");
    assert_eq!((vuln.len(), vuln[0]["payload"]["vulnerability"].clone()), (1, old_bug["id"].clone()));
    assert_eq!(vuln[0]["payload"]["cve_id"], "CVE-2024-0001");
    let assessment = of("requirement.assessment_overdue");
    assert_eq!(assessment.len(), 1);
    assert_eq!(assessment[0]["payload"]["requirement"], overdue["id"]);
    assert_eq!(assessment[0]["payload"]["next_assessment_date"], yesterday);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 4);
}
