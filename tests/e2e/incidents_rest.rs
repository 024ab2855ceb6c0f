//! Incidents over REST: CRUD, the seed's SLAs, filters, validation, tenancy, roles, audit and
//! legal holds.

use custos_testkit::{ServerOptions, Slas, TestOrg, TestServer};
use serde_json::{Value, json};
use time::Duration;

use crate::{audit_entries, id, ids, parse_ts, sorted_ids, superuser_sql, ts, user_id};

const INC: &str = "/api/compliance/incidents/";

fn at(id: &str) -> String {
    format!("{INC}{id}/")
}

pub async fn create_incident(s: &TestServer, org: &TestOrg, body: Value) -> Value {
    let (status, created) = s.post(INC, &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn breach_body() -> Value {
    json!({
        "title": "Customer database exposed",
        "description": "An S3 bucket with customer exports was public",
        "severity": "CRITICAL",
        "category": "DATA_BREACH",
        "data_classification": "CONFIDENTIAL",
        "occurred_at": "2024-03-01T08:00:00Z",
        "detected_at": "2024-03-01T09:00:00+00:00",
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_with_seed_slas_and_one_audit_entry_per_change() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let editor = user_id(&s, &org, "editor").await;
    let viewer = user_id(&s, &org, "viewer").await;

    let inc = create_incident(&s, &org, breach_body()).await;
    assert_eq!(inc["title"], "Customer database exposed");
    assert_eq!(inc["severity"], "CRITICAL");
    assert_eq!(inc["category"], "DATA_BREACH");
    assert_eq!(inc["data_classification"], "CONFIDENTIAL");
    assert_eq!(inc["status"], "OPEN");
    assert_eq!(inc["occurred_at"], "2024-03-01T08:00:00.000000Z");
    assert_eq!(inc["detected_at"], "2024-03-01T09:00:00.000000Z");
    assert_eq!(inc["response_due_at"], "2024-03-01T09:15:00.000000Z", "CRITICAL: 15 minutes");
    assert_eq!(inc["resolution_due_at"], "2024-03-01T13:00:00.000000Z", "4 hours");
    assert_eq!(inc["sla_breached"], true, "detected in 2024, never answered");
    assert_eq!(inc["responded_at"], Value::Null);
    assert_eq!(inc["resolved_at"], Value::Null);
    assert_eq!(inc["reported_by"], format!("user:{editor}"));
    assert_eq!(inc["assigned_to"], Value::Null);
    uuid::Uuid::parse_str(&id(&inc)).expect("uuid id");
    assert_eq!(s.audit_count(org.id, "create", "incident").await, 1);

    let (status, got) = s.get(&at(&id(&inc)), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(got, inc);
    let (status, got) = s.get(&at(&id(&inc)), &org.auditor).await;
    assert_eq!(status, 200);
    assert_eq!(got, inc);

    // PATCH: only the named fields change; taking it up stamps responded_at; reported_by stays.
    let (status, patched) =
        s.patch(&at(&id(&inc)), &org.admin, json!({ "status": "INVESTIGATING", "assigned_to": viewer })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "INVESTIGATING");
    assert_eq!(patched["assigned_to"], viewer.as_str());
    assert_eq!(patched["title"], inc["title"]);
    assert_eq!(patched["occurred_at"], inc["occurred_at"]);
    assert_eq!(patched["reported_by"], inc["reported_by"]);
    assert!(patched["responded_at"].is_string());
    assert_eq!(patched["resolved_at"], Value::Null);
    assert_eq!(s.audit_count(org.id, "update", "incident").await, 1);

    // Resolving sets resolved_at when not given; reopening clears it.
    let (_, resolved) = s.patch(&at(&id(&inc)), &org.editor, json!({ "status": "RESOLVED" })).await;
    assert_eq!(resolved["status"], "RESOLVED");
    let resolved_at = parse_ts(&resolved["resolved_at"]);
    assert!((time::OffsetDateTime::now_utc() - resolved_at).abs() < Duration::minutes(1));
    assert_eq!(resolved["responded_at"], patched["responded_at"], "the first response is kept");
    // Resolved before it was (by the stamp) responded to: refused, unless the response is set too.
    let (status, err) = s
        .patch(&at(&id(&inc)), &org.editor, json!({ "status": "CLOSED", "resolved_at": "2024-03-01T10:00:00Z" }))
        .await;
    assert_eq!(status, 400, "{err}");
    let (_, closed) = s
        .patch(
            &at(&id(&inc)),
            &org.editor,
            json!({ "status": "CLOSED", "responded_at": "2024-03-01T09:10:00Z", "resolved_at": "2024-03-01T10:00:00Z" }),
        )
        .await;
    assert_eq!(closed["resolved_at"], "2024-03-01T10:00:00.000000Z", "{closed}");
    let (_, reopened) = s.patch(&at(&id(&inc)), &org.editor, json!({ "status": "INVESTIGATING" })).await;
    assert_eq!(reopened["resolved_at"], Value::Null);

    // PUT replaces every writable field: what is not sent takes its default.
    let (status, replaced) = s
        .put(
            &at(&id(&inc)),
            &org.editor,
            json!({ "title": "Bucket exposed", "severity": "LOW", "category": "POLICY_VIOLATION" }),
        )
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["title"], "Bucket exposed");
    assert_eq!(replaced["description"], "");
    assert_eq!(replaced["severity"], "LOW");
    assert_eq!(replaced["data_classification"], "CONFIDENTIAL", "unset optional choices keep their value");
    assert_eq!(replaced["status"], "INVESTIGATING");
    assert_eq!(replaced["occurred_at"], Value::Null);
    assert_eq!(replaced["detected_at"], inc["detected_at"], "detected_at is kept when not given");
    assert_eq!(replaced["assigned_to"], Value::Null);
    // Lowering the severity keeps the deadlines that were running (issue 27's decision; this
    // assertion said "LOW: 30 minutes", 09:30, before it).
    assert_eq!(replaced["response_due_at"], "2024-03-01T09:15:00.000000Z", "CRITICAL's 15 minutes stand");
    assert_eq!(s.audit_count(org.id, "update", "incident").await, 5);

    // The audit trail holds the API's before/after images.
    let entries = audit_entries(&s, &org, &id(&inc)).await;
    assert_eq!(entries.len(), 6);
    assert_eq!(entries[5]["action"], "create");
    assert_eq!(entries[5]["before"], Value::Null);
    assert_eq!(entries[5]["after"], inc);
    assert_eq!(entries[4]["action"], "update");
    assert_eq!(entries[4]["before"], inc);
    assert_eq!(entries[4]["after"]["status"], "INVESTIGATING");
    assert_eq!(entries[0]["after"]["title"], "Bucket exposed");

    let (status, _) = s.delete(&at(&id(&inc)), &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(s.audit_count(org.id, "delete", "incident").await, 1);
    let entries = audit_entries(&s, &org, &id(&inc)).await;
    assert_eq!(entries[0]["action"], "delete");
    assert_eq!(entries[0]["before"]["title"], "Bucket exposed");
    assert_eq!(entries[0]["after"], Value::Null);
    let (status, err) = s.get(&at(&id(&inc)), &org.viewer).await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = s.delete(&at(&id(&inc)), &org.editor).await;
    assert_eq!(status, 404);
    let (status, _) = s.get(&at("not-a-uuid"), &org.viewer).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn sla_deadlines_and_breaches() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let base = json!({ "title": "t", "category": "MALWARE" });
    let with = |extra: Value| {
        let mut b = base.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    // Response SLA by severity: 15 minutes for CRITICAL, 30 for the others; resolution 4 hours.
    for (severity, minutes) in [("CRITICAL", 15), ("HIGH", 30), ("MEDIUM", 30), ("LOW", 30)] {
        let inc = create_incident(&s, &org, with(json!({ "severity": severity }))).await;
        let detected = parse_ts(&inc["detected_at"]);
        assert!((time::OffsetDateTime::now_utc() - detected).abs() < Duration::minutes(1), "defaults to now");
        assert_eq!(parse_ts(&inc["response_due_at"]) - detected, Duration::minutes(minutes), "{severity}");
        assert_eq!(parse_ts(&inc["resolution_due_at"]) - detected, Duration::hours(4));
        assert_eq!(inc["sla_breached"], false, "{severity} just detected");
    }
    // Unanswered past the response deadline: breached (CRITICAL after 20 minutes, not HIGH).
    let late =
        create_incident(&s, &org, with(json!({ "severity": "CRITICAL", "detected_at": ts(-Duration::minutes(20)) })))
            .await;
    assert_eq!(late["sla_breached"], true);
    let fine =
        create_incident(&s, &org, with(json!({ "severity": "HIGH", "detected_at": ts(-Duration::minutes(20)) }))).await;
    assert_eq!(fine["sla_breached"], false);
    // Answered in time but unresolved past 4 hours: breached.
    let slow = create_incident(
        &s,
        &org,
        with(json!({
            "severity": "HIGH", "status": "INVESTIGATING",
            "detected_at": ts(-Duration::hours(5)), "responded_at": ts(-Duration::hours(5) + Duration::minutes(10)),
        })),
    )
    .await;
    assert_eq!(slow["sla_breached"], true);
    // Answered and resolved in time, long ago: not breached.
    let done = create_incident(
        &s,
        &org,
        with(json!({
            "severity": "CRITICAL", "status": "RESOLVED",
            "detected_at": "2024-03-01T09:00:00Z", "responded_at": "2024-03-01T09:10:00Z",
            "resolved_at": "2024-03-01T12:00:00Z",
        })),
    )
    .await;
    assert_eq!(done["sla_breached"], false);
    // Resolved, but after the 4 hours.
    let (_, late_fix) = s.patch(&at(&id(&done)), &org.editor, json!({ "resolved_at": "2024-03-01T13:00:01Z" })).await;
    assert_eq!(late_fix["sla_breached"], true);
    // Responded late (CRITICAL, 16 minutes), resolved in time.
    let (_, late_answer) = s
        .patch(
            &at(&id(&done)),
            &org.editor,
            json!({ "resolved_at": "2024-03-01T12:00:00Z", "responded_at": "2024-03-01T09:16:00Z" }),
        )
        .await;
    assert_eq!(late_answer["sla_breached"], true);
    // Recorded after the fact as resolved, with no response time: responded by its resolution
    // at the latest, so resolved in 40 minutes is within both SLAs.
    let backfilled = create_incident(
        &s,
        &org,
        with(json!({
            "severity": "HIGH", "status": "RESOLVED",
            "detected_at": "2024-03-01T09:00:00Z", "resolved_at": "2024-03-01T09:20:00Z",
        })),
    )
    .await;
    assert_eq!(backfilled["responded_at"], backfilled["resolved_at"], "{backfilled}");
    assert_eq!(backfilled["sla_breached"], false, "{backfilled}");
    // A response after the resolution is refused.
    let (status, err) = s
        .post(
            "/api/compliance/incidents/",
            &org.editor,
            with(json!({
                "severity": "HIGH", "status": "RESOLVED", "detected_at": "2024-03-01T09:00:00Z",
                "responded_at": "2024-03-01T10:00:00Z", "resolved_at": "2024-03-01T09:30:00Z",
            })),
        )
        .await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'responded_at'")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slas_are_configurable() {
    let slas = Slas {
        incident_critical_response_minutes: 60,
        incident_normal_response_minutes: 120,
        incident_resolution_hours: 24,
        ..Slas::default()
    };
    let s = TestServer::start_with(ServerOptions { slas: Some(slas), ..Default::default() }).await;
    let org = s.org("acme").await;
    let body =
        json!({ "title": "t", "severity": "CRITICAL", "category": "OTHER", "detected_at": "2024-03-01T09:00:00Z" });
    let critical = create_incident(&s, &org, body).await;
    assert_eq!(critical["response_due_at"], "2024-03-01T10:00:00.000000Z");
    assert_eq!(critical["resolution_due_at"], "2024-03-02T09:00:00.000000Z");
    let body =
        json!({ "title": "t", "severity": "MEDIUM", "category": "OTHER", "detected_at": "2024-03-01T09:00:00Z" });
    let medium = create_incident(&s, &org, body).await;
    assert_eq!(medium["response_due_at"], "2024-03-01T11:00:00.000000Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_filter_selects_exactly_its_incidents() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let viewer = user_id(&s, &org, "viewer").await;
    let a = create_incident(
        &s,
        &org,
        json!({
            "title": "Phishing wave", "description": "Mails impersonating payroll", "severity": "HIGH",
            "category": "PHISHING", "data_classification": "INTERNAL", "assigned_to": viewer,
            "occurred_at": "2024-01-10T08:00:00Z", "detected_at": "2024-01-10T09:00:00Z",
        }),
    )
    .await;
    let b = create_incident(
        &s,
        &org,
        json!({
            "title": "Ransomware on file server", "description": "Encrypted share", "severity": "CRITICAL",
            "category": "MALWARE", "data_classification": "RESTRICTED", "status": "CONTAINED",
            "occurred_at": "2024-02-10T08:00:00Z", "detected_at": "2024-02-12T09:00:00Z",
        }),
    )
    .await;
    let c = create_incident(
        &s,
        &org,
        json!({
            "title": "Website down", "description": "Payroll portal unreachable", "severity": "LOW",
            "category": "SERVICE_OUTAGE", "data_classification": "PUBLIC", "status": "CLOSED",
            "detected_at": "2024-03-05T09:00:00Z",
        }),
    )
    .await;
    let by_assignee = format!("assigned_to={viewer}");
    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("", vec![&a, &b, &c]),
        ("severity=CRITICAL", vec![&b]),
        ("category=PHISHING", vec![&a]),
        ("data_classification=PUBLIC", vec![&c]),
        ("status=CONTAINED", vec![&b]),
        ("status=OPEN", vec![&a]),
        (&by_assignee, vec![&a]),
        ("occurred_after=2024-02-01", vec![&b]),
        ("occurred_before=2024-01-10", vec![&a]),
        ("occurred_before=2024-01-10T07:59:59Z", vec![]),
        ("detected_after=2024-02-12T09:00:00Z", vec![&b, &c]),
        ("detected_before=2024-02-12", vec![&a, &b]),
        ("detected_after=2024-02-01&detected_before=2024-02-28", vec![&b]),
        ("search=payroll", vec![&a, &c]),
        ("search=RANSOM", vec![&b]),
        ("search=payroll&severity=LOW", vec![&c]),
        ("search=nothing-like-this", vec![]),
    ];
    for (query, expected) in cases {
        let (status, page) = s.get(&format!("{INC}?{query}"), &org.viewer).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), sorted_ids(&expected), "{query}");
        assert_eq!(page["count"], expected.len(), "{query}");
    }
    // Newest detection first.
    let (_, page) = s.get(INC, &org.viewer).await;
    assert_eq!(crate::column(&page, "id"), [id(&c), id(&b), id(&a)]);

    // Bad filters are 400s naming the parameter, never an empty list.
    for (query, field) in [
        ("severity=SEVERE", "severity"),
        ("category=data_breach", "category"),
        ("data_classification=SECRET", "data_classification"),
        ("status=DONE", "status"),
        ("assigned_to=bob", "assigned_to"),
        ("occurred_after=2024-13-01", "occurred_after"),
        ("occurred_before=yesterday", "occurred_before"),
        ("detected_after=2024-02-30", "detected_after"),
        ("detected_before=12/02/2024", "detected_before"),
        ("page=0", "page"),
    ] {
        let (status, err) = s.get(&format!("{INC}?{query}"), &org.viewer).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{query}");
    }

    // Pagination: capped at 100, neighbours as links, past the end is a 404.
    let (_, page) = s.get(&format!("{INC}?page_size=2"), &org.viewer).await;
    assert_eq!(page["count"], 3);
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert!(page["next"].as_str().unwrap().ends_with("page=2"), "{page}");
    let (status, page) = s.get(&format!("{INC}?page_size=2&page=2"), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(page["results"].as_array().unwrap().len(), 1);
    assert_eq!(page["next"], Value::Null);
    let (status, _) = s.get(&format!("{INC}?page_size=2&page=3"), &org.viewer).await;
    assert_eq!(status, 404);
    let (status, page) = s.get(&format!("{INC}?page_size=1000"), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(page["results"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_a_400_naming_the_field_and_changes_nothing() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("other").await;
    let stranger = user_id(&s, &other, "viewer").await;
    let ok = json!({ "title": "t", "severity": "HIGH", "category": "OTHER" });
    let with = |extra: Value| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let cases = [
        (json!({ "severity": "HIGH", "category": "OTHER" }), "title"),
        (with(json!({ "title": "   " })), "title"),
        (json!({ "title": "t", "category": "OTHER" }), "severity"),
        (with(json!({ "severity": "URGENT" })), "severity"),
        (with(json!({ "category": "FIRE" })), "category"),
        (with(json!({ "data_classification": "TOP_SECRET" })), "data_classification"),
        (with(json!({ "status": "PENDING" })), "status"),
        (with(json!({ "occurred_at": "2024-03-01" })), "occurred_at"),
        (with(json!({ "detected_at": "2024-03-01 09:00" })), "detected_at"),
        (with(json!({ "resolved_at": "soon" })), "resolved_at"),
        (with(json!({ "occurred_at": "2024-03-02T00:00:00Z", "detected_at": "2024-03-01T00:00:00Z" })), "detected_at"),
        (
            with(
                json!({ "status": "RESOLVED", "detected_at": "2024-03-02T00:00:00Z", "resolved_at": "2024-03-01T00:00:00Z" }),
            ),
            "resolved_at",
        ),
        (
            with(json!({ "detected_at": "2024-03-02T00:00:00Z", "responded_at": "2024-03-01T00:00:00Z" })),
            "responded_at",
        ),
        (with(json!({ "assigned_to": "bob" })), "assigned_to"),
        (with(json!({ "assigned_to": uuid::Uuid::now_v7().to_string() })), "assigned_to"),
        (with(json!({ "assigned_to": stranger })), "assigned_to"),
        (with(json!({ "severity": 3 })), "severity"),
    ];
    for (body, field) in cases {
        let (status, err) = s.post(INC, &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}: {err}");
    }
    let inc = create_incident(
        &s,
        &org,
        with(json!({ "occurred_at": "2024-03-01T08:00:00Z", "detected_at": "2024-03-01T09:00:00Z" })),
    )
    .await;
    // A PATCH is validated against the merged result.
    let (status, err) = s.patch(&at(&id(&inc)), &org.editor, json!({ "occurred_at": "2024-03-01T10:00:00Z" })).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "Invalid value for 'detected_at'");
    let (status, err) = s.patch(&at(&id(&inc)), &org.editor, json!({ "severity": "NOPE" })).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(s.audit_count(org.id, "update", "incident").await, 0);
    assert_eq!(s.audit_count(org.id, "create", "incident").await, 1);
    let (_, page) = s.get(INC, &org.viewer).await;
    assert_eq!(page["count"], 1);
    // A detection late in the year 9999 is valid: its deadlines stop at the end of that year.
    let late = create_incident(&s, &org, with(json!({ "detected_at": "9999-12-31T23:00:00Z" }))).await;
    assert_eq!(late["resolution_due_at"], "9999-12-31T23:59:59.999999Z", "{late}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_are_isolated_and_roles_enforced() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let inc = create_incident(&s, &a, json!({ "title": "t", "severity": "HIGH", "category": "OTHER" })).await;
    let path = at(&id(&inc));

    let (status, _) = s.get(&path, &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) = s.patch(&path, &b.admin, json!({ "title": "mine" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.put(&path, &b.admin, json!({ "title": "mine", "severity": "LOW", "category": "OTHER" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&path, &b.admin).await;
    assert_eq!(status, 404);
    let (_, page) = s.get(INC, &b.admin).await;
    assert_eq!(page["count"], 0);

    // Viewers and auditors read; only editors and admins write.
    for token in [&a.viewer, &a.auditor] {
        let (status, _) = s.get(&path, token).await;
        assert_eq!(status, 200);
        let (status, _) = s.post(INC, token, json!({ "title": "t", "severity": "HIGH", "category": "OTHER" })).await;
        assert_eq!(status, 403);
        let (status, _) = s.patch(&path, token, json!({ "title": "x" })).await;
        assert_eq!(status, 403);
        let (status, _) = s.delete(&path, token).await;
        assert_eq!(status, 403);
    }
    let (status, _) = s.call(reqwest::Method::GET, INC, None, None).await;
    assert_eq!(status, 401);
    let (_, got) = s.get(&path, &a.viewer).await;
    assert_eq!(got, inc, "nothing changed");
    assert_eq!(s.audit_count(a.id, "update", "incident").await, 0);
    assert_eq!(s.audit_count(a.id, "delete", "incident").await, 0);
    let (status, _) = s.patch(&path, &a.admin, json!({ "title": "x" })).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_incident_cannot_be_deleted_until_the_hold_is_released() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let inc = create_incident(&s, &org, json!({ "title": "t", "severity": "HIGH", "category": "DATA_BREACH" })).await;
    let other = create_incident(&s, &org, json!({ "title": "u", "severity": "LOW", "category": "OTHER" })).await;
    let hold = uuid::Uuid::now_v7();
    superuser_sql(
        &s,
        &format!(
            "INSERT INTO legal_holds (id, organization_id, case_name, case_number, status, start_date, created_by)
             VALUES ('{hold}', '{org}', 'Doe v. Acme', 'C-42', 'ACTIVE', '2024-01-01', 'user:test');
             INSERT INTO legal_hold_items (organization_id, hold_id, resource_type, resource_id, added_by)
             VALUES ('{org}', '{hold}', 'incident', '{inc}', 'user:test')",
            org = org.id,
            inc = id(&inc)
        ),
    )
    .await;

    let (status, err) = s.delete(&at(&id(&inc)), &org.editor).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "Resource is under legal hold");
    let details = err["details"].as_str().unwrap();
    assert!(
        details.contains("Doe v. Acme") && details.contains("C-42") && details.contains(&hold.to_string()),
        "{details}"
    );
    let (status, _) = s.get(&at(&id(&inc)), &org.viewer).await;
    assert_eq!(status, 200, "still there");
    assert_eq!(s.audit_count(org.id, "delete", "incident").await, 0);
    // The hold covers only its item.
    let (status, _) = s.delete(&at(&id(&other)), &org.editor).await;
    assert_eq!(status, 204);
    // Editing a held incident is allowed (holds preserve, they do not freeze).
    let (status, _) = s.patch(&at(&id(&inc)), &org.editor, json!({ "status": "INVESTIGATING" })).await;
    assert_eq!(status, 200);

    superuser_sql(&s, &format!("UPDATE legal_holds SET status = 'RELEASED', released_at = now() WHERE id = '{hold}'"))
        .await;
    let (status, _) = s.delete(&at(&id(&inc)), &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(s.audit_count(org.id, "delete", "incident").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn openapi_lists_the_incident_response_endpoints() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (status, doc) = s.get("/api/schema/", &org.viewer).await;
    assert_eq!(status, 200);
    let paths = &doc["paths"];
    for resource in ["incidents", "vulnerabilities", "compliance-checkpoints", "incident-response-plans"] {
        let list = format!("/api/compliance/{resource}/");
        for method in ["get", "post"] {
            assert!(paths[&list][method].is_object(), "{method} {list}");
        }
        let one = format!("/api/compliance/{resource}/{{id}}/");
        for method in ["get", "put", "patch", "delete"] {
            assert!(paths[&one][method].is_object(), "{method} {one}");
        }
    }
}

/// Raising severity starts the new severity's clocks at the escalation; a deadline already met
/// stays met, one already missed stays missed; lowering severity keeps the deadlines.
#[tokio::test(flavor = "multi_thread")]
async fn escalation_restarts_the_clocks_and_keeps_what_was_met_or_missed() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let now = time::OffsetDateTime::now_utc();
    let close = |v: &Value, expected: time::OffsetDateTime| {
        let got = parse_ts(v);
        assert!((got - expected).abs() < Duration::minutes(1), "{got} is not about {expected}");
    };
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap();
    let body = |severity: &str, detected: time::OffsetDateTime| json!({ "title": "Phishing wave", "severity": severity, "category": "PHISHING", "detected_at": rfc(detected) });

    // Detected 10 minutes ago as LOW: 30 minutes to respond, 4 hours to resolve.
    let detected = now - Duration::minutes(10);
    let inc = create_incident(&s, &org, body("LOW", detected)).await;
    assert_eq!(inc["severity_changed_at"], Value::Null);
    close(&inc["response_due_at"], detected + Duration::minutes(30));
    // Escalated to CRITICAL now: 15 minutes from now, and 4 hours from now.
    let (status, critical) = s.patch(&at(&id(&inc)), &org.editor, json!({ "severity": "CRITICAL" })).await;
    assert_eq!(status, 200, "{critical}");
    close(&critical["severity_changed_at"], now);
    close(&critical["response_due_at"], now + Duration::minutes(15));
    close(&critical["resolution_due_at"], now + Duration::hours(4));
    assert_eq!(critical["sla_breached"], false);
    // Lowered again: the deadlines stand.
    let (_, lowered) = s.patch(&at(&id(&inc)), &org.editor, json!({ "severity": "MEDIUM" })).await;
    assert_eq!(lowered["response_due_at"], critical["response_due_at"]);
    assert_eq!(lowered["resolution_due_at"], critical["resolution_due_at"]);
    assert!(parse_ts(&lowered["severity_changed_at"]) >= parse_ts(&critical["severity_changed_at"]));
    // Any other change leaves the clocks alone.
    let (_, retitled) = s.patch(&at(&id(&inc)), &org.editor, json!({ "title": "Phishing wave (HR)" })).await;
    assert_eq!(retitled["response_due_at"], critical["response_due_at"]);
    assert_eq!(retitled["severity_changed_at"], lowered["severity_changed_at"]);

    // Responded to in time, then escalated: the response deadline was met and stays met.
    let detected = now - Duration::hours(1);
    let mut met = body("HIGH", detected);
    met["status"] = json!("INVESTIGATING");
    met["responded_at"] = json!(rfc(detected + Duration::minutes(10)));
    let met = create_incident(&s, &org, met).await;
    let (_, escalated) = s.patch(&at(&id(&met)), &org.editor, json!({ "severity": "CRITICAL" })).await;
    assert_eq!(escalated["response_due_at"], met["response_due_at"], "a met deadline stays");
    close(&escalated["resolution_due_at"], now + Duration::hours(4));
    assert_eq!(escalated["sla_breached"], false);

    // Left unanswered past its deadline, then escalated: the breach stays on the record.
    let detected = now - Duration::hours(2);
    let missed = create_incident(&s, &org, body("LOW", detected)).await;
    assert_eq!(missed["sla_breached"], true);
    let (_, escalated) = s.patch(&at(&id(&missed)), &org.editor, json!({ "severity": "HIGH" })).await;
    assert_eq!(escalated["response_due_at"], missed["response_due_at"], "a missed deadline stays");
    assert_eq!(escalated["sla_breached"], true);
    close(&escalated["resolution_due_at"], now + Duration::hours(4));

    // The audit trail shows the clocks move with the escalation.
    let entries = audit_entries(&s, &org, &id(&inc)).await;
    let escalation = entries.iter().find(|e| e["after"]["severity"] == "CRITICAL").expect("escalation recorded");
    assert_eq!(escalation["before"]["response_due_at"], inc["response_due_at"]);
    assert_eq!(escalation["after"]["response_due_at"], critical["response_due_at"]);
}
