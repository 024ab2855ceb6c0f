//! Vulnerabilities over REST: remediation SLAs per severity, overdue and breach computation,
//! filters (overdue in SQL), validation, links to incidents, tenancy, roles and audit.

use custos_testkit::{ServerOptions, Slas, TestOrg, TestServer};
use serde_json::{Value, json};
use time::Duration;

use crate::incidents_rest::create_incident;
use crate::{audit_entries, id, ids, parse_ts, sorted_ids, ts, user_id};

const VULN: &str = "/api/compliance/vulnerabilities/";

fn at(id: &str) -> String {
    format!("{VULN}{id}/")
}

async fn create_vuln(s: &TestServer, org: &TestOrg, body: Value) -> Value {
    let (status, created) = s.post(VULN, &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread")]
async fn remediation_slas_by_severity_overdue_and_breach() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // The seed's SLAs: CRITICAL 3 days, HIGH 14, MEDIUM 30, LOW 90.
    for (severity, days, due) in [
        ("CRITICAL", 3, "2024-03-04T09:00:00.000000Z"),
        ("HIGH", 14, "2024-03-15T09:00:00.000000Z"),
        ("MEDIUM", 30, "2024-03-31T09:00:00.000000Z"),
        ("LOW", 90, "2024-05-30T09:00:00.000000Z"),
    ] {
        let v = create_vuln(
            &s,
            &org,
            json!({ "title": format!("{severity} bug"), "severity": severity, "discovered_at": "2024-03-01T09:00:00Z" }),
        )
        .await;
        assert_eq!(v["sla_days"], days, "{severity}");
        assert_eq!(v["due_at"], due, "{severity}");
        assert_eq!(v["status"], "OPEN");
        assert_eq!(v["overdue"], true, "{severity}: due in 2024, still open");
        assert_eq!(v["sla_breached"], true);
    }
    // Discovered now: due in the future, not overdue.
    let fresh = create_vuln(&s, &org, json!({ "title": "fresh", "severity": "CRITICAL" })).await;
    let discovered = parse_ts(&fresh["discovered_at"]);
    assert!((time::OffsetDateTime::now_utc() - discovered).abs() < Duration::minutes(1));
    assert_eq!(parse_ts(&fresh["due_at"]) - discovered, Duration::days(3));
    assert_eq!(fresh["overdue"], false);
    assert_eq!(fresh["sla_breached"], false);

    // Changing severity or discovery recomputes the deadline; other changes do not.
    let (_, high) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "severity": "HIGH" })).await;
    assert_eq!(high["sla_days"], 14);
    assert_eq!(parse_ts(&high["due_at"]) - discovered, Duration::days(14));
    let four_days_ago = ts(-Duration::days(4));
    let (_, moved) =
        s.patch(&at(&id(&fresh)), &org.editor, json!({ "severity": "CRITICAL", "discovered_at": four_days_ago })).await;
    assert_eq!(moved["sla_days"], 3);
    assert_eq!(parse_ts(&moved["due_at"]) - parse_ts(&moved["discovered_at"]), Duration::days(3));
    assert_eq!(moved["overdue"], true, "discovered 4 days ago, CRITICAL");
    let (_, renamed) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "title": "renamed" })).await;
    assert_eq!(renamed["due_at"], moved["due_at"]);
    // In progress still counts; accepted risk does not.
    let (_, working) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "status": "IN_PROGRESS" })).await;
    assert_eq!(working["overdue"], true);
    let (_, accepted) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "status": "RISK_ACCEPTED" })).await;
    assert_eq!(accepted["overdue"], false);
    assert_eq!(accepted["sla_breached"], false);
    // Remediated now, a day after the deadline: not overdue, but the SLA was breached.
    let (_, fixed) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "status": "REMEDIATED" })).await;
    assert_eq!(fixed["overdue"], false);
    assert!(fixed["remediated_at"].is_string());
    assert_eq!(fixed["sla_breached"], true);
    // Remediated within the deadline: no breach.
    let (_, in_time) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "remediated_at": ts(-Duration::days(3)) })).await;
    assert_eq!(in_time["sla_breached"], false, "{in_time}");
    // Reopened: remediated_at is cleared.
    let (_, reopened) = s.patch(&at(&id(&fresh)), &org.editor, json!({ "status": "OPEN" })).await;
    assert_eq!(reopened["remediated_at"], Value::Null);
    assert_eq!(reopened["overdue"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn vulnerability_slas_are_configurable() {
    let slas = Slas { vuln_critical_days: 1, vuln_low_days: 365, ..Slas::default() };
    let s = TestServer::start_with(ServerOptions { slas: Some(slas), ..Default::default() }).await;
    let org = s.org("acme").await;
    let c =
        create_vuln(&s, &org, json!({ "title": "c", "severity": "CRITICAL", "discovered_at": "2024-03-01T00:00:00Z" }))
            .await;
    assert_eq!((c["sla_days"].clone(), c["due_at"].clone()), (json!(1), json!("2024-03-02T00:00:00.000000Z")));
    let l = create_vuln(&s, &org, json!({ "title": "l", "severity": "LOW", "discovered_at": "2024-03-01T00:00:00Z" }))
        .await;
    assert_eq!(l["due_at"], "2025-03-01T00:00:00.000000Z");
    let m =
        create_vuln(&s, &org, json!({ "title": "m", "severity": "MEDIUM", "discovered_at": "2024-03-01T00:00:00Z" }))
            .await;
    assert_eq!(m["sla_days"], 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_links_audit_tenancy_and_roles() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let viewer = user_id(&s, &org, "viewer").await;
    let inc =
        create_incident(&s, &org, json!({ "title": "Breach", "severity": "HIGH", "category": "DATA_BREACH" })).await;
    let body = json!({
        "title": "XZ backdoor", "description": "liblzma compromised", "severity": "CRITICAL",
        "cve_id": "cve-2024-3094", "cvss_score": 10.0, "affected_asset": "build-server-01",
        "incident": id(&inc), "assigned_to": viewer, "discovered_at": ts(-Duration::hours(1)),
    });
    let v = create_vuln(&s, &org, body).await;
    assert_eq!(v["cve_id"], "CVE-2024-3094", "normalised to upper case");
    assert_eq!(v["cvss_score"], 10.0);
    assert_eq!(v["affected_asset"], "build-server-01");
    assert_eq!(v["incident"], id(&inc).as_str());
    assert_eq!(v["assigned_to"], viewer.as_str());
    assert_eq!(v["remediated_at"], Value::Null);
    let (status, got) = s.get(&at(&id(&v)), &org.auditor).await;
    assert_eq!(status, 200);
    assert_eq!(got, v);

    // The incident cannot be deleted while a vulnerability links to it.
    let (status, err) = s.delete(&format!("/api/compliance/incidents/{}/", id(&inc)), &org.editor).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "Incident has linked records");
    assert_eq!(s.audit_count(org.id, "delete", "incident").await, 0);

    // PUT replaces: the link and the assignee go, defaults come back.
    let (status, put) = s.put(&at(&id(&v)), &org.admin, json!({ "title": "XZ", "severity": "HIGH" })).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["incident"], Value::Null);
    assert_eq!(put["cve_id"], Value::Null);
    assert_eq!(put["discovered_at"], v["discovered_at"], "kept when not given");
    assert_eq!(put["sla_days"], 14);
    let (status, _) = s.delete(&format!("/api/compliance/incidents/{}/", id(&inc)), &org.editor).await;
    assert_eq!(status, 204, "no longer linked");

    let entries = audit_entries(&s, &org, &id(&v)).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1]["action"], "create");
    assert_eq!(entries[1]["resource_type"], "vulnerability");
    assert_eq!(entries[1]["after"], v);
    assert_eq!(entries[0]["before"], v);
    assert_eq!(entries[0]["after"], put);

    // Other tenants see nothing; readers cannot write.
    let b = s.org("globex").await;
    let (status, _) = s.get(&at(&id(&v)), &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) = s.patch(&at(&id(&v)), &b.admin, json!({ "title": "x" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&at(&id(&v)), &b.admin).await;
    assert_eq!(status, 404);
    let (_, page) = s.get(VULN, &b.viewer).await;
    assert_eq!(page["count"], 0);
    for token in [&org.viewer, &org.auditor] {
        let (status, _) = s.post(VULN, token, json!({ "title": "x", "severity": "LOW" })).await;
        assert_eq!(status, 403);
        let (status, _) = s.patch(&at(&id(&v)), token, json!({ "title": "x" })).await;
        assert_eq!(status, 403);
        let (status, _) = s.delete(&at(&id(&v)), token).await;
        assert_eq!(status, 403);
    }
    assert_eq!(s.audit_count(org.id, "update", "vulnerability").await, 1);

    let (status, _) = s.delete(&at(&id(&v)), &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(s.audit_count(org.id, "delete", "vulnerability").await, 1);
    let (status, _) = s.get(&at(&id(&v)), &org.viewer).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_filter_selects_exactly_its_vulnerabilities() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let viewer = user_id(&s, &org, "viewer").await;
    let inc = create_incident(&s, &org, json!({ "title": "i", "severity": "HIGH", "category": "MALWARE" })).await;
    // Overdue: CRITICAL found 10 days ago, open. Due 2024-03-04.
    let a = create_vuln(
        &s,
        &org,
        json!({ "title": "Log4Shell", "severity": "CRITICAL", "cve_id": "CVE-2021-44228",
                "affected_asset": "payments-api", "discovered_at": "2024-03-01T09:00:00Z", "incident": id(&inc) }),
    )
    .await;
    // Not overdue: in progress, due in the future.
    let b = create_vuln(
        &s,
        &org,
        json!({ "title": "Weak TLS", "description": "TLS 1.0 enabled", "severity": "LOW", "status": "IN_PROGRESS",
                "affected_asset": "mail-gateway", "assigned_to": viewer }),
    )
    .await;
    // Past due but remediated: not overdue.
    let c = create_vuln(
        &s,
        &org,
        json!({ "title": "Default password", "severity": "HIGH", "status": "REMEDIATED",
                "discovered_at": "2024-01-01T00:00:00Z", "remediated_at": "2024-01-05T00:00:00Z" }),
    )
    .await;
    assert_eq!(
        (a["overdue"].clone(), b["overdue"].clone(), c["overdue"].clone()),
        (json!(true), json!(false), json!(false))
    );
    assert_eq!(c["sla_breached"], false, "remediated within 14 days");
    let b_due = b["due_at"].as_str().unwrap().to_owned();
    let by_incident = format!("incident={}", id(&inc));
    let by_assignee = format!("assigned_to={viewer}");
    let due_exactly = format!("due_after={b_due}&due_before={b_due}");
    let cases: Vec<(&str, Vec<&Value>)> = vec![
        ("", vec![&a, &b, &c]),
        ("severity=CRITICAL", vec![&a]),
        ("status=IN_PROGRESS", vec![&b]),
        ("status=REMEDIATED", vec![&c]),
        ("overdue=true", vec![&a]),
        ("overdue=false", vec![&b, &c]),
        ("overdue=false&severity=HIGH", vec![&c]),
        (&by_incident, vec![&a]),
        (&by_assignee, vec![&b]),
        ("due_before=2024-03-04", vec![&a, &c]),
        ("due_before=2024-03-03", vec![&c]),
        ("due_after=2024-03-04T09:00:00Z", vec![&a, &b]),
        ("due_after=2024-03-05", vec![&b]),
        (&due_exactly, vec![&b]),
        ("search=log4", vec![&a]),
        ("search=cve-2021", vec![&a]),
        ("search=gateway", vec![&b]),
        ("search=tls 1.0", vec![&b]),
        ("search=password", vec![&c]),
        ("search=zzz", vec![]),
    ];
    for (query, expected) in cases {
        let (status, page) = s.get(&format!("{VULN}?{query}"), &org.viewer).await;
        assert_eq!(status, 200, "{query}: {page}");
        assert_eq!(ids(&page), sorted_ids(&expected), "{query}");
        assert_eq!(page["count"], expected.len(), "{query}");
    }
    // Most urgent first.
    let (_, page) = s.get(VULN, &org.viewer).await;
    assert_eq!(crate::column(&page, "id"), [id(&c), id(&a), id(&b)]);
    // Overdue is decided in SQL, so it pages correctly.
    let (_, page) = s.get(&format!("{VULN}?overdue=false&page_size=1&page=2"), &org.viewer).await;
    assert_eq!(page["count"], 2);
    assert_eq!(crate::column(&page, "id"), [id(&b)]);
    let (status, _) = s.get(&format!("{VULN}?overdue=false&page_size=1&page=3"), &org.viewer).await;
    assert_eq!(status, 404);

    for (query, field) in [
        ("severity=critical", "severity"),
        ("status=FIXED", "status"),
        ("overdue=maybe", "overdue"),
        ("incident=42", "incident"),
        ("assigned_to=x", "assigned_to"),
        ("due_before=2024-02-31", "due_before"),
        ("due_after=tomorrow", "due_after"),
        ("page_size=0", "page_size"),
    ] {
        let (status, err) = s.get(&format!("{VULN}?{query}"), &org.viewer).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_vulnerabilities_are_400s_naming_the_field() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("other").await;
    let foreign = create_incident(&s, &other, json!({ "title": "t", "severity": "LOW", "category": "OTHER" })).await;
    let ok = json!({ "title": "t", "severity": "HIGH" });
    let with = |extra: Value| {
        let mut b = ok.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let cases = [
        (json!({ "severity": "HIGH" }), "title"),
        (json!({ "title": "t" }), "severity"),
        (with(json!({ "severity": "SEVERE" })), "severity"),
        (with(json!({ "status": "DONE" })), "status"),
        (with(json!({ "cve_id": "CVE-24-1" })), "cve_id"),
        (with(json!({ "cve_id": "CVE-2024-123" })), "cve_id"),
        (with(json!({ "cvss_score": 10.1 })), "cvss_score"),
        (with(json!({ "cvss_score": -0.5 })), "cvss_score"),
        (with(json!({ "cvss_score": "high" })), "cvss_score"),
        (with(json!({ "discovered_at": "2024-03-01" })), "discovered_at"),
        // Valid RFC 3339, but beyond the year 9999 in UTC; and one whose SLA would end beyond it.
        (with(json!({ "discovered_at": "9999-12-31T23:30:00-01:00" })), "discovered_at"),
        (with(json!({ "discovered_at": "9999-12-31T00:00:00Z" })), "discovered_at"),
        (with(json!({ "remediated_at": "later" })), "remediated_at"),
        (
            with(
                json!({ "status": "REMEDIATED", "discovered_at": "2024-03-02T00:00:00Z", "remediated_at": "2024-03-01T00:00:00Z" }),
            ),
            "remediated_at",
        ),
        (with(json!({ "incident": "not-a-uuid" })), "incident"),
        (with(json!({ "incident": uuid::Uuid::now_v7().to_string() })), "incident"),
        (with(json!({ "incident": id(&foreign) })), "incident"),
        (with(json!({ "assigned_to": uuid::Uuid::now_v7().to_string() })), "assigned_to"),
    ];
    for (body, field) in cases {
        let (status, err) = s.post(VULN, &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}: {err}");
    }
    assert_eq!(s.audit_count(org.id, "create", "vulnerability").await, 0);
    let (_, page) = s.get(VULN, &org.viewer).await;
    assert_eq!(page["count"], 0);
}
