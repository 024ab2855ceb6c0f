//! Regulatory workflows over REST and gRPC: definitions checked when saved, the built-in
//! templates, instances created with seed 000's body, advanced only along the workflow's
//! transitions with the step's typed data and role, deadlines from the incident's detection (72
//! hours for GDPR, 60 days for HIPAA), overdue instances found, stakeholders, the history, a
//! completed instance read-only, roles, tenancy and an audit entry for every change.

use custos_proto::v1 as pb;
use custos_proto::v1::workflows_service_client::WorkflowsServiceClient;
use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

use crate::{id, user_id};

const WORKFLOWS: &str = "/api/compliance/workflows/";
const INSTANCES: &str = "/api/compliance/workflow-instances/";

fn review_workflow() -> Value {
    json!({
        "name": "Vendor review", "description": "Review a vendor's security", "workflow_type": "RISK_ASSESSMENT",
        "initial_step": "requested",
        "steps": [
            {"name": "requested"},
            {"name": "assess", "fields": [
                {"name": "risk_level", "type": "choice", "required": true, "allowed_values": ["LOW", "HIGH"]},
                {"name": "affected_records", "type": "integer", "required": true}]},
            {"name": "approve", "role": "admin", "is_final": true, "deadline": {"from": "start", "hours": 24}},
            {"name": "reject", "is_final": true}
        ],
        "transitions": [{"from": "requested", "to": "assess"}, {"from": "assess", "to": "approve"},
                        {"from": "assess", "to": "reject"}]
    })
}

async fn incident(s: &TestServer, org: &TestOrg, detected_at: &str) -> String {
    let (status, i) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            json!({"title": "Customer database exposed",
              "description": "S3 bucket public", "severity": "HIGH", "category": "DATA_BREACH",
              "data_classification": "CONFIDENTIAL", "detected_at": detected_at}),
        )
        .await;
    assert_eq!(status, 201, "{i}");
    id(&i)
}

fn parse(ts: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(ts.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_are_checked_and_instances_advance_only_as_defined() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;

    // Definitions are checked when saved.
    assert_eq!(s.post(WORKFLOWS, &org.viewer, review_workflow()).await.0, 403);
    let mut unreachable = review_workflow();
    unreachable["steps"].as_array_mut().unwrap().push(json!({"name": "orphan", "is_final": true}));
    let mut unknown = review_workflow();
    unknown["transitions"].as_array_mut().unwrap().push(json!({"from": "assess", "to": "ghost"}));
    let mut no_end = review_workflow();
    for step in no_end["steps"].as_array_mut().unwrap() {
        step["is_final"] = json!(false);
    }
    for (bad, expected) in
        [(unreachable, "unreachable"), (unknown, "\"ghost\" is not one of the steps"), (no_end, "no step is final")]
    {
        let (status, err) = s.post(WORKFLOWS, &org.editor, bad).await;
        assert_eq!(status, 400, "{err}");
        assert!(err["details"].as_str().unwrap().contains(expected), "{expected}: {err}");
    }
    let (status, wf) = s.post(WORKFLOWS, &org.editor, review_workflow()).await;
    assert_eq!(status, 201, "{wf}");
    assert_eq!(wf["status"], "ACTIVE");
    assert_eq!(wf["steps"][0]["role"], "editor", "the default role");
    assert_eq!(s.post(WORKFLOWS, &org.editor, review_workflow()).await.0, 409, "the name is taken");
    assert_eq!(s.get(&format!("{WORKFLOWS}{}/", id(&wf)), &other.admin).await.0, 404);
    let (_, page) = s.get(&format!("{WORKFLOWS}?workflow_type=RISK_ASSESSMENT&search=vendor"), &org.viewer).await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(s.get(&format!("{WORKFLOWS}?workflow_type=NOPE"), &org.viewer).await.0, 400);

    // An instance with seed 000's body.
    let assignee = user_id(&s, &org, "editor").await;
    let body = json!({"title": "Review of Acme Cloud", "description": "Annual review", "assigned_to": assignee,
                      "due_date": "2099-02-01T00:00:00Z"});
    assert_eq!(s.post(&format!("{WORKFLOWS}{}/create_instance/", id(&wf)), &org.viewer, body.clone()).await.0, 403);
    assert_eq!(s.post(&format!("{WORKFLOWS}{}/create_instance/", id(&wf)), &other.editor, body.clone()).await.0, 404);
    let (status, bad) = s
        .post(
            &format!("{WORKFLOWS}{}/create_instance/", id(&wf)),
            &org.editor,
            json!({"title": "x", "assigned_to": user_id(&s, &other, "editor").await}),
        )
        .await;
    assert_eq!(status, 400, "another organisation's user: {bad}");
    let (status, inst) = s.post(&format!("{WORKFLOWS}{}/create_instance/", id(&wf)), &org.editor, body).await;
    assert_eq!(status, 201, "{inst}");
    assert_eq!((inst["current_step"].clone(), inst["status"].clone()), (json!("requested"), json!("IN_PROGRESS")));
    assert_eq!(inst["next_steps"], json!(["assess"]));
    assert_eq!(inst["history"].as_array().unwrap().len(), 1);
    let path = format!("{INSTANCES}{}/", id(&inst));

    // Only the moves the workflow allows, with the step's data, typed.
    let advance = |body: Value| {
        let path = format!("{path}advance_step/");
        let token = org.editor.clone();
        let s = &s;
        async move { s.post(&path, &token, body).await }
    };
    let (status, err) = advance(json!({"next_step": "approve"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["details"].as_str().unwrap().contains("allowed: assess"), "{err}");
    for (data, field) in [
        (json!({"risk_level": "HIGH"}), "step_data.affected_records"),
        (json!({"risk_level": "EXTREME", "affected_records": 10}), "step_data.risk_level"),
        (json!({"risk_level": "HIGH", "affected_records": "many"}), "step_data.affected_records"),
        (json!({"risk_level": "HIGH", "affected_records": 10, "colour": "red"}), "step_data.colour"),
    ] {
        let (status, err) = advance(json!({"next_step": "assess", "step_data": data})).await;
        assert_eq!(status, 400, "{err}");
        assert!(err["error"].as_str().unwrap().contains(field), "{field}: {err}");
    }
    let (status, moved) =
        advance(json!({"next_step": "assess", "step_data": {"risk_level": "HIGH", "affected_records": 1000}})).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["current_step"], "assess");
    assert_eq!(moved["step_data"]["assess"]["affected_records"], 1000);
    assert_eq!(s.post(&format!("{path}advance_step/"), &org.viewer, json!({"next_step": "reject"})).await.0, 403);
    // The approval is for admins.
    let (status, err) = advance(json!({"next_step": "approve"})).await;
    assert_eq!(status, 403, "{err}");
    assert!(err["details"].as_str().unwrap().contains("admin role"), "{err}");

    // Stakeholders.
    let auditor = user_id(&s, &org, "auditor").await;
    let (status, with) =
        s.post(&format!("{path}assign_stakeholder/"), &org.editor, json!({"stakeholder_id": auditor})).await;
    assert_eq!((status.as_u16(), with["stakeholders"].clone()), (200, json!([auditor])), "{with}");
    assert_eq!(
        s.post(&format!("{path}assign_stakeholder/"), &org.editor, json!({"stakeholder_id": "nope"})).await.0,
        400
    );
    assert_eq!(
        s.post(&format!("{path}assign_stakeholder/"), &other.admin, json!({"stakeholder_id": auditor})).await.0,
        404
    );

    let (status, done) = s.post(&format!("{path}advance_step/"), &org.admin, json!({"next_step": "approve"})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!((done["status"].clone(), done["next_steps"].clone()), (json!("COMPLETED"), json!([])));
    assert!(done["completed_at"].is_string());
    let steps: Vec<&str> = done["history"].as_array().unwrap().iter().map(|h| h["to_step"].as_str().unwrap()).collect();
    assert_eq!(steps, ["requested", "assess", "approve"]);
    assert_eq!(done["history"][1]["data"]["risk_level"], "HIGH");
    // Read-only once completed.
    let (status, err) = s.post(&format!("{path}advance_step/"), &org.admin, json!({"next_step": "reject"})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(
        s.post(&format!("{path}assign_stakeholder/"), &org.editor, json!({"stakeholder_id": assignee})).await.0,
        409
    );
    assert_eq!(s.audit_count(org.id, "advance_step", "workflow_instance").await, 2);
    assert_eq!(s.audit_count(org.id, "create", "workflow_instance").await, 1);

    // A workflow with instances is retired, not deleted; a retired one starts none.
    assert_eq!(s.delete(&format!("{WORKFLOWS}{}/", id(&wf)), &org.editor).await.0, 409);
    let (status, retired) =
        s.patch(&format!("{WORKFLOWS}{}/", id(&wf)), &org.editor, json!({"status": "RETIRED"})).await;
    assert_eq!((status.as_u16(), retired["instance_count"].clone()), (200, json!(1)), "{retired}");
    assert_eq!(
        s.post(&format!("{WORKFLOWS}{}/create_instance/", id(&wf)), &org.editor, json!({"title": "again"})).await.0,
        409
    );
    // Filters.
    let (_, page) =
        s.get(&format!("{INSTANCES}?status=COMPLETED&assigned_to={assignee}&search=acme"), &org.viewer).await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(s.get(INSTANCES, &other.viewer).await.1["count"], 0);
    assert_eq!(s.get(&format!("{INSTANCES}?overdue=maybe"), &org.viewer).await.0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_compute_deadlines_from_detection_and_overdue_instances_are_found() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    assert_eq!(s.post("/api/compliance/workflows/seed_templates/", &org.editor, json!({})).await.0, 403);
    let (status, seeded) = s.post("/api/compliance/workflows/seed_templates/", &org.admin, json!({})).await;
    assert_eq!(status, 200, "{seeded}");
    assert_eq!(seeded["seeded"].as_array().unwrap().len(), 5, "{seeded}");
    let (_, again) = s.post("/api/compliance/workflows/seed_templates/", &org.admin, json!({})).await;
    assert_eq!((again["seeded"].as_array().unwrap().len(), again["present"].as_array().unwrap().len()), (0, 5));
    let (_, templates) = s.get(&format!("{WORKFLOWS}?is_template=true&page_size=10"), &org.viewer).await;
    let find = |key: &str| {
        templates["results"].as_array().unwrap().iter().find(|w| w["template_key"] == key).cloned().unwrap()
    };
    let gdpr = find("gdpr-breach");
    let hipaa = find("hipaa-breach");

    // Detected four days ago: the authority had to be told a day ago (72 hours).
    let detected = (time::OffsetDateTime::now_utc() - time::Duration::days(4)).replace_nanosecond(0).unwrap();
    let detected_text = detected.format(&time::format_description::well_known::Rfc3339).unwrap();
    let breach = incident(&s, &org, &detected_text).await;
    let (status, inst) = s
        .post(
            &format!("{WORKFLOWS}{}/create_instance/", id(&gdpr)),
            &org.editor,
            json!({"title": "GDPR Breach Response - Incident #12345", "description": "Response to data breach incident",
                     "related_incident": breach}),
        )
        .await;
    assert_eq!(status, 201, "{inst}");
    let due = |inst: &Value, step: &str| {
        inst["step_deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == step)
            .map(|d| parse(&d["due_at"]))
            .unwrap()
    };
    let parsed_detected = parse(&json!(detected_text));
    assert_eq!(due(&inst, "notify_authority") - parsed_detected, time::Duration::hours(72), "{inst}");
    let (_, inst) = s
        .post(
            &format!("{INSTANCES}{}/advance_step/", id(&inst)),
            &org.editor,
            json!({"next_step": "assess", "step_data": {"risk_level": "HIGH", "affected_records": 1000}}),
        )
        .await;
    assert_eq!(inst["is_overdue"], true, "assessment was due 48 hours after detection: {inst}");
    let (_, overdue) = s.get(&format!("{INSTANCES}?overdue=true"), &org.viewer).await;
    assert_eq!(overdue["count"], 1, "{overdue}");
    assert_eq!(s.get(&format!("{INSTANCES}?overdue=false"), &org.viewer).await.1["count"], 0);
    assert_eq!(s.get(&format!("{INSTANCES}?related_incident={breach}"), &org.viewer).await.1["count"], 1);

    // HIPAA: individuals within 60 days of discovery.
    let (_, h) = s
        .post(
            &format!("{WORKFLOWS}{}/create_instance/", id(&hipaa)),
            &org.editor,
            json!({"title": "PHI breach", "related_incident": breach}),
        )
        .await;
    assert_eq!(due(&h, "notify_individuals") - parsed_detected, time::Duration::days(60), "{h}");
    assert_eq!(h["is_overdue"], false);

    // Cancelled with a reason, kept in the history.
    let (status, c) =
        s.post(&format!("{INSTANCES}{}/cancel/", id(&h)), &org.editor, json!({"reason": "duplicate"})).await;
    assert_eq!((status.as_u16(), c["status"].clone()), (200, json!("CANCELLED")), "{c}");
    assert_eq!(c["history"].as_array().unwrap().last().unwrap()["data"]["cancelled"], "duplicate");
    assert_eq!(s.post(&format!("{INSTANCES}{}/cancel/", id(&h)), &org.editor, json!({"reason": "again"})).await.0, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn workflows_over_grpc_keep_roles_and_tenancy() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let input: pb::WorkflowInput = serde_json::from_value(review_workflow()).unwrap();
    let mut viewer = WorkflowsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = viewer.create_workflow(pb::CreateWorkflowRequest { workflow: Some(input.clone()) }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut editor = WorkflowsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let wf = editor.create_workflow(pb::CreateWorkflowRequest { workflow: Some(input) }).await.unwrap().into_inner();
    let inst = editor
        .create_workflow_instance(pb::CreateWorkflowInstanceRequest {
            id: wf.id.clone(),
            title: "Over gRPC".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let bad = editor
        .advance_workflow_step(pb::AdvanceWorkflowStepRequest {
            id: inst.id.clone(),
            next_step: "assess".into(),
            step_data: r#"{"risk_level": "LOW"}"#.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let moved = editor
        .advance_workflow_step(pb::AdvanceWorkflowStepRequest {
            id: inst.id.clone(),
            next_step: "assess".into(),
            step_data: r#"{"risk_level": "LOW", "affected_records": 3}"#.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(moved.current_step, "assess");
    let stored: Value = serde_json::from_str(&moved.step_data).unwrap();
    assert_eq!(stored["assess"]["affected_records"], 3);
    let mut stranger = WorkflowsServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = stranger.get_workflow_instance(pb::GetWorkflowInstanceRequest { id: inst.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = stranger
        .advance_workflow_step(pb::AdvanceWorkflowStepRequest {
            id: inst.id.clone(),
            next_step: "reject".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let listed =
        viewer.list_workflow_instances(pb::ListWorkflowInstancesRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.count, 1);
    let none = stranger.list_workflows(pb::ListWorkflowsRequest::default()).await.unwrap().into_inner();
    assert_eq!(none.count, 0);
}

/// Overdue instances are announced through the notification channels by the daily watch, once
/// per deadline, and audited.
#[tokio::test(flavor = "multi_thread")]
async fn overdue_instances_are_announced_once_to_the_channels() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let receiver = custos_testkit::WebhookReceiver::start().await;
    let (status, channel) = s
        .post("/api/compliance/notification-channels/", &org.admin,
              json!({"name": "Compliance desk", "kind": "webhook", "url": receiver.url(), "event_types": ["workflow.overdue"]}))
        .await;
    assert_eq!(status, 201, "{channel}");
    let (_, wf) = s.post(WORKFLOWS, &org.editor, review_workflow()).await;
    let (_, late) = s
        .post(
            &format!("{WORKFLOWS}{}/create_instance/", id(&wf)),
            &org.editor,
            json!({"title": "Late review", "due_date": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let (_, on_time) = s
        .post(
            &format!("{WORKFLOWS}{}/create_instance/", id(&wf)),
            &org.editor,
            json!({"title": "On time", "due_date": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!((late["is_overdue"].clone(), on_time["is_overdue"].clone()), (json!(true), json!(false)));
    let job = s.run_schedule(&org.admin, "workflow-overdue-watch").await;
    assert_eq!(job["result"], json!({"announced": 1}), "{job}");
    assert_eq!(s.run_schedule(&org.admin, "workflow-overdue-watch").await["result"], json!({"announced": 0}), "once");
    assert_eq!(s.audit_count(org.id, "workflow_overdue", "workflow_instance").await, 1);
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    let got = receiver.wait_for(1, std::time::Duration::from_secs(10)).await;
    let event = got[0].json();
    assert_eq!(event["event_type"], "workflow.overdue");
    assert_eq!(event["payload"]["instance"], late["id"]);
    assert_eq!(event["payload"]["current_step"], "requested");
}
