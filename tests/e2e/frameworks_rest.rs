//! Frameworks over REST: the seed's example, CRUD, filters, pagination and the summary.

use custos_testkit::TestServer;
use serde_json::{Value, json};

use crate::{column, create_framework, create_requirement, id, seed_gdpr_body};

#[tokio::test(flavor = "multi_thread")]
async fn seed_curl_example_creates_a_gdpr_framework() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (status, fw) = s.post("/api/compliance/frameworks/", &org.editor, seed_gdpr_body()).await;
    assert_eq!(status, 201, "{fw}");
    assert_eq!(fw["name"], "GDPR Compliance Framework");
    assert_eq!(fw["framework_type"], "GDPR");
    assert_eq!(fw["framework_type_display"], "General Data Protection Regulation");
    assert_eq!(fw["version"], "1.0");
    assert_eq!(fw["applicable_regions"], json!(["EU", "EEA", "UK"]));
    assert_eq!(fw["industry_sectors"], json!(["Technology", "Healthcare"]));
    assert_eq!(fw["is_active"], true);
    assert_eq!(fw["effective_date"], "2018-05-25");
    assert_eq!(fw["review_date"], Value::Null);
    assert_eq!(fw["requirements_count"], 0);
    assert!(fw["created_at"].as_str().unwrap().ends_with('Z'));
    uuid::Uuid::parse_str(fw["id"].as_str().unwrap()).expect("uuid id");

    let (status, got) = s.get(&format!("/api/compliance/frameworks/{}/", id(&fw)), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(got, fw);
    assert_eq!(s.audit_count(org.id, "create", "framework").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_framework_type_has_its_display_name() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let expected = [
        ("GDPR", "General Data Protection Regulation"),
        ("HIPAA", "Health Insurance Portability and Accountability Act"),
        ("SOX", "Sarbanes-Oxley Act"),
        ("ISO27001", "ISO/IEC 27001 Information Security Management"),
        ("NIST_CSF", "NIST Cybersecurity Framework"),
        ("SOC2", "SOC 2 Trust Services Criteria"),
        ("PCI_DSS", "Payment Card Industry Data Security Standard"),
        ("ISO20000", "ISO/IEC 20000 IT Service Management"),
        ("CCPA", "California Consumer Privacy Act"),
        ("NIST_SP_800_53", "NIST SP 800-53 Security and Privacy Controls"),
        ("NIST_SP_800_171", "NIST SP 800-171 Protecting Controlled Unclassified Information"),
        ("ISO27701", "ISO/IEC 27701 Privacy Information Management"),
        ("DORA", "Digital Operational Resilience Act"),
        ("NIS2", "NIS 2 Directive"),
        ("CIS_CONTROLS", "CIS Critical Security Controls"),
        ("FEDRAMP", "FedRAMP"),
        ("CUSTOM", "Custom Framework"),
    ];
    for (t, display) in expected {
        let fw = create_framework(&s, &org, json!({ "name": format!("{t} programme"), "framework_type": t })).await;
        assert_eq!(fw["framework_type_display"], display);
    }
    let (status, err) =
        s.post("/api/compliance/frameworks/", &org.editor, json!({ "name": "x", "framework_type": "GDPR2" })).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "Invalid value for 'framework_type'");
    assert!(
        err["details"]
            .as_str()
            .unwrap()
            .contains("GDPR, HIPAA, SOX, ISO27001, NIST_CSF, SOC2, PCI_DSS, ISO20000, CCPA, NIST_SP_800_53, NIST_SP_800_171, ISO27701, DORA, NIS2, CIS_CONTROLS, FEDRAMP, CUSTOM")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_validates_fields() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let cases = [
        (json!({ "framework_type": "GDPR" }), "name"),
        (json!({ "name": "  ", "framework_type": "GDPR" }), "name"),
        (json!({ "name": "x" }), "framework_type"),
        (json!({ "name": "x", "framework_type": "GDPR", "effective_date": "25/05/2018" }), "effective_date"),
        (json!({ "name": "x", "framework_type": "GDPR", "review_date": "2018-02-30" }), "review_date"),
        (
            json!({ "name": "x", "framework_type": "GDPR", "effective_date": "2020-01-01", "review_date": "2019-01-01" }),
            "review_date",
        ),
        (json!({ "name": "x", "framework_type": "GDPR", "is_active": "yes" }), "is_active"),
        (json!({ "name": "x", "framework_type": "GDPR", "applicable_regions": "EU" }), "applicable_regions"),
        (json!({ "name": "x".repeat(201), "framework_type": "GDPR" }), "name"),
    ];
    for (body, field) in cases {
        let (status, err) = s.post("/api/compliance/frameworks/", &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}: {err}");
        assert!(err["details"].is_string());
    }
    // A NUL character, which PostgreSQL cannot hold in text: refused, and nothing created.
    let (status, err) = s
        .post("/api/compliance/frameworks/", &org.editor, json!({ "name": "a\u{0}b", "framework_type": "GDPR" }))
        .await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid text")), "{err}");
    // Malformed JSON and a non-object body.
    let resp = s
        .http
        .post(format!("{}/api/compliance/frameworks/", s.base))
        .header("Authorization", format!("Token {}", org.editor))
        .header("Content-Type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "Malformed JSON");
    let (status, err) = s.post("/api/compliance/frameworks/", &org.editor, json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"], "Malformed request");
    // Nothing was created by any of them.
    let (_, page) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(page["count"], 0);
    assert_eq!(s.audit_count(org.id, "create", "framework").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_replaces_patch_updates_delete_removes() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut body = seed_gdpr_body();
    body["review_date"] = json!("2024-05-25");
    let fw = create_framework(&s, &org, body).await;
    let url = format!("/api/compliance/frameworks/{}/", id(&fw));
    create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await;

    // PATCH changes only what it names; null clears a nullable field.
    let (status, patched) =
        s.patch(&url, &org.editor, json!({ "description": "Updated", "review_date": null, "id": "ignored" })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["description"], "Updated");
    assert_eq!(patched["review_date"], Value::Null);
    assert_eq!(patched["name"], "GDPR Compliance Framework");
    assert_eq!(patched["applicable_regions"], json!(["EU", "EEA", "UK"]));
    assert_eq!(patched["requirements_count"], 1);
    assert_eq!(patched["id"], fw["id"]);
    assert_eq!(patched["created_at"], fw["created_at"]);
    assert_ne!(patched["updated_at"], fw["updated_at"]);

    // PATCH validates the merged result like PUT would.
    let (status, err) = s.patch(&url, &org.editor, json!({ "framework_type": "NOPE" })).await;
    assert_eq!(status, 400, "{err}");

    // PUT replaces every writable field: omitted optional ones return to their defaults.
    let (status, put) = s.put(&url, &org.editor, json!({ "name": "Renamed", "framework_type": "CCPA" })).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["name"], "Renamed");
    assert_eq!(put["framework_type_display"], "California Consumer Privacy Act");
    assert_eq!(put["applicable_regions"], json!([]));
    assert_eq!(put["effective_date"], Value::Null);
    assert_eq!(put["is_active"], true);
    let (status, _) = s.put(&url, &org.editor, json!({ "framework_type": "CCPA" })).await;
    assert_eq!(status, 400, "PUT without a name is incomplete");

    let (status, body) = s.delete(&url, &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    let (status, err) = s.get(&url, &org.viewer).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "Framework not found");
    let (status, _) = s.delete(&url, &org.editor).await;
    assert_eq!(status, 404);
    // The requirement went with it, and both deletions are in the audit trail.
    let (_, reqs) = s.get("/api/compliance/requirements/", &org.viewer).await;
    assert_eq!(reqs["count"], 0);
    assert_eq!(s.audit_count(org.id, "update", "framework").await, 2);
    assert_eq!(s.audit_count(org.id, "delete", "framework").await, 1);
    assert_eq!(s.audit_count(org.id, "delete", "requirement").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_by_type_activity_dates_and_search() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_framework(&s, &org, seed_gdpr_body()).await;
    create_framework(
        &s,
        &org,
        json!({ "name": "HIPAA Security Rule", "framework_type": "HIPAA", "is_active": false, "effective_date": "2005-04-20",
                "applicable_regions": ["US"], "industry_sectors": ["Healthcare"], "description": "Safeguards for ePHI" }),
    )
    .await;
    create_framework(
        &s,
        &org,
        json!({ "name": "SOX ITGC", "framework_type": "SOX", "effective_date": "2002-07-30",
                "applicable_regions": ["US"], "industry_sectors": ["Finance"] }),
    )
    .await;
    create_framework(&s, &org, json!({ "name": "Internal baseline", "framework_type": "CUSTOM" })).await;

    let names = |q: &'static str| {
        let s = &s;
        let token = org.viewer.clone();
        async move {
            let (status, page) = s.get(&format!("/api/compliance/frameworks/{q}"), &token).await;
            assert_eq!(status, 200, "{q}: {page}");
            let mut n = column(&page, "name");
            n.sort();
            assert_eq!(page["count"].as_u64().unwrap() as usize, n.len());
            n
        }
    };
    assert_eq!(names("").await.len(), 4);
    assert_eq!(names("?framework_type=HIPAA").await, ["HIPAA Security Rule"]);
    assert_eq!(names("?is_active=false").await, ["HIPAA Security Rule"]);
    assert_eq!(names("?is_active=true").await.len(), 3);
    assert_eq!(names("?effective_date_after=2005-04-20").await, ["GDPR Compliance Framework", "HIPAA Security Rule"]);
    assert_eq!(names("?effective_date_before=2005-04-19").await, ["SOX ITGC"]);
    assert_eq!(
        names("?effective_date_after=2003-01-01&effective_date_before=2010-01-01").await,
        ["HIPAA Security Rule"]
    );
    // search: name, description, regions, sectors; case-insensitive; wildcards are literal.
    assert_eq!(names("?search=itgc").await, ["SOX ITGC"]);
    assert_eq!(names("?search=ePHI").await, ["HIPAA Security Rule"]);
    assert_eq!(names("?search=EEA").await, ["GDPR Compliance Framework"]);
    assert_eq!(names("?search=finance").await, ["SOX ITGC"]);
    assert_eq!(names("?search=healthcare").await, ["GDPR Compliance Framework", "HIPAA Security Rule"]);
    assert_eq!(names("?search=%25").await, Vec::<String>::new());
    assert_eq!(names("?framework_type=SOX&search=healthcare").await, Vec::<String>::new());

    for (q, param) in [
        ("?framework_type=gdpr", "framework_type"),
        ("?is_active=maybe", "is_active"),
        ("?effective_date_after=2020-13-01", "effective_date_after"),
        ("?effective_date_before=yesterday", "effective_date_before"),
        ("?page=abc", "page"),
    ] {
        let (status, err) = s.get(&format!("/api/compliance/frameworks/{q}"), &org.viewer).await;
        assert_eq!(status, 400, "{q}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{param}'"), "{q}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_links_caps_and_edges() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    for i in 0..25 {
        create_framework(&s, &org, json!({ "name": format!("Framework {i:02}"), "framework_type": "CUSTOM" })).await;
    }
    let (status, first) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(first["count"], 25);
    assert_eq!(first["results"].as_array().unwrap().len(), 20, "default page size is 20");
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().unwrap().to_owned();
    assert_eq!(next, format!("{}/api/compliance/frameworks/?page=2", s.base));
    let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["count", "next", "previous", "results"]);

    let (status, second) = s.get(&next, &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(second["results"].as_array().unwrap().len(), 5);
    assert_eq!(second["next"], Value::Null);
    assert_eq!(second["previous"], format!("{}/api/compliance/frameworks/", s.base));
    let mut all = column(&first, "name");
    all.extend(column(&second, "name"));
    all.dedup();
    assert_eq!(all.len(), 25, "pages neither overlap nor skip");

    // Other parameters survive in the links.
    let (_, p) = s.get("/api/compliance/frameworks/?page_size=10&framework_type=CUSTOM&page=2", &org.viewer).await;
    assert_eq!(p["next"], format!("{}/api/compliance/frameworks/?page_size=10&framework_type=CUSTOM&page=3", s.base));
    assert_eq!(p["previous"], format!("{}/api/compliance/frameworks/?page_size=10&framework_type=CUSTOM", s.base));

    let (_, big) = s.get("/api/compliance/frameworks/?page_size=5000", &org.viewer).await;
    assert_eq!(big["results"].as_array().unwrap().len(), 25);
    let (status, _) = s.get("/api/compliance/frameworks/?page=3&page_size=10", &org.viewer).await;
    assert_eq!(status, 200, "the last, partial page");
    let (status, err) = s.get("/api/compliance/frameworks/?page=4&page_size=10", &org.viewer).await;
    assert_eq!(status, 404, "{err}");
    assert_eq!(err["error"], "Invalid page");
    let (status, _) = s.get("/api/compliance/frameworks/?page=0", &org.viewer).await;
    assert_eq!(status, 400);
    let (status, _) = s.get("/api/compliance/frameworks/?page_size=0", &org.viewer).await;
    assert_eq!(status, 400);
    let (status, _) = s.get("/api/compliance/frameworks/?page=-1", &org.viewer).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn page_size_is_capped_at_one_hundred() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let catalogs = custos_frameworks_catalog();
    let ctx = custos_core::RequestCtx::operator(org.id, "acme");
    s.app().frameworks.seed(&ctx, &catalogs).await.expect("seed");
    let (status, page) = s.get("/api/compliance/requirements/?page_size=1000", &org.viewer).await;
    assert_eq!(status, 200);
    let total: usize = catalogs.iter().map(|c| c.requirements.len()).sum();
    assert!(total > 100);
    assert_eq!(page["count"], total);
    assert_eq!(page["results"].as_array().unwrap().len(), 100);
    assert_eq!(page["next"], format!("{}/api/compliance/requirements/?page_size=1000&page=2", s.base));
}

fn custos_frameworks_catalog() -> Vec<custos_frameworks::catalog::CatalogFramework> {
    custos_frameworks::catalog::builtin().expect("built-in catalogue")
}

#[tokio::test(flavor = "multi_thread")]
async fn compliance_summary_counts_live_state() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let fid = id(&fw);
    let url = format!("/api/compliance/frameworks/{fid}/compliance_summary/");
    let (status, empty) = s.get(&url, &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(
        empty,
        json!({ "total_requirements": 0, "compliant": 0, "partially_compliant": 0, "non_compliant": 0,
                "not_assessed": 0, "implemented": 0, "overdue_assessments": 0, "compliance_percentage": 0.0 })
    );

    let yesterday = (time::OffsetDateTime::now_utc().date() - time::Duration::days(1)).to_string();
    let statuses = [
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "COMPLIANT",
        "PARTIALLY_COMPLIANT",
        "PARTIALLY_COMPLIANT",
        "NON_COMPLIANT",
        "NOT_ASSESSED",
    ];
    for (i, status) in statuses.iter().enumerate() {
        let extra = json!({
            "compliance_status": status,
            "is_implemented": i < 10,
            "next_assessment_date": if i < 2 { Value::String(yesterday.clone()) } else { Value::Null },
        });
        create_requirement(&s, &org, &fid, &format!("R{i}"), extra).await;
    }
    let (status, summary) = s.get(&url, &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(
        summary,
        json!({ "total_requirements": 12, "compliant": 8, "partially_compliant": 2, "non_compliant": 1,
                "not_assessed": 1, "implemented": 10, "overdue_assessments": 2, "compliance_percentage": 66.7 })
    );
    let keys: Vec<_> = summary.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "total_requirements",
            "compliant",
            "partially_compliant",
            "non_compliant",
            "not_assessed",
            "implemented",
            "overdue_assessments",
            "compliance_percentage"
        ]
    );
    let (status, _) =
        s.get(&format!("/api/compliance/frameworks/{}/compliance_summary/", uuid::Uuid::now_v7()), &org.viewer).await;
    assert_eq!(status, 404);
}

/// Score history: the daily snapshot (once per framework and day, whatever the reruns), an admin's
/// snapshot on demand, the series oldest first with its change, mapped coverage included; roles,
/// tenancy and bad input.
#[tokio::test(flavor = "multi_thread")]
async fn score_history_is_kept_daily_and_on_demand() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let fw = crate::create_framework(&s, &org, crate::seed_gdpr_body()).await;
    let fw_id = crate::id(&fw);
    let a = crate::create_requirement(&s, &org, &fw_id, "Art. 30", json!({})).await;
    crate::create_requirement(&s, &org, &fw_id, "Art. 32", json!({})).await;
    let path = format!("/api/compliance/frameworks/{fw_id}/score_history/");

    let job = s.run_schedule(&org.admin, "score-snapshot").await;
    assert_eq!(job["result"]["taken"], 1, "{job}");
    assert_eq!(s.run_schedule(&org.admin, "score-snapshot").await["result"]["taken"], 0, "once a day");
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{}/update_status/", crate::id(&a)),
            &org.editor,
            json!({"compliance_status": "COMPLIANT"}),
        )
        .await;
    assert_eq!(status.as_u16() / 100, 2);
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(&path, token, json!({})).await.0, 403);
    }
    let (status, snap) = s.post(&path, &org.admin, json!({})).await;
    assert_eq!(status, 201, "{snap}");
    assert_eq!((snap["source"].clone(), snap["compliance_percentage"].clone()), (json!("manual"), json!(50.0)));
    let (status, history) = s.get(&path, &org.viewer).await;
    assert_eq!(status, 200, "{history}");
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!(
        (points[0]["source"].clone(), points[0]["compliance_percentage"].clone()),
        (json!("schedule"), json!(0.0))
    );
    assert_eq!(history["change"], 50.0);
    assert_eq!(points[1]["compliance_percentage_with_mapped"], 50.0);
    let (_, future) = s.get(&format!("{path}?after=2999-01-01"), &org.viewer).await;
    assert_eq!(future["points"].as_array().unwrap().len(), 0);
    assert_eq!(s.get(&format!("{path}?after=yesterday"), &org.viewer).await.0, 400);
    assert_eq!(s.get(&path, &other.admin).await.0, 404);
    assert_eq!(s.post(&path, &other.admin, json!({})).await.0, 404);
    assert_eq!(s.audit_count(org.id, "score_snapshot", "framework").await, 2);
}
