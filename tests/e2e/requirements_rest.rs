//! Requirements over REST: CRUD, every filter, the nested list, status and assessment actions.

use custos_testkit::TestServer;
use serde_json::{Value, json};

use crate::{column, create_framework, create_requirement, id, seed_gdpr_body};

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

#[tokio::test(flavor = "multi_thread")]
async fn requirement_crud_and_validation() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let fid = id(&fw);
    let (_, me) = s.get("/api/compliance/whoami/", &org.editor).await;
    let editor_id = me["user_id"].as_str().unwrap().to_owned();

    let req = create_requirement(
        &s,
        &org,
        &fid,
        "Art. 32",
        json!({ "title": "Security of processing", "description": "Appropriate technical measures",
                "assigned_to": editor_id, "next_assessment_date": "2030-01-01", "section": "Chapter IV" }),
    )
    .await;
    assert_eq!(req["framework"], fw["id"]);
    assert_eq!(req["framework_name"], "GDPR Compliance Framework");
    assert_eq!(req["compliance_status"], "NOT_ASSESSED");
    assert_eq!(req["is_implemented"], false);
    assert_eq!(req["assigned_to"], editor_id);
    assert_eq!(req["next_assessment_date"], "2030-01-01");
    assert_eq!(req["last_assessment_date"], Value::Null);
    let url = format!("/api/compliance/requirements/{}/", id(&req));

    let (status, got) = s.get(&url, &org.viewer).await;
    assert_eq!((status, got.clone()), (reqwest::StatusCode::OK, req.clone()));
    let (_, fw_now) = s.get(&format!("/api/compliance/frameworks/{fid}/"), &org.viewer).await;
    assert_eq!(fw_now["requirements_count"], 1);

    // Duplicate identifier within a framework: 409.
    let (status, err) = s
        .post("/api/compliance/requirements/", &org.editor, json!({ "framework": fid, "requirement_id": "Art. 32", "title": "dup", "requirement_type": "LEGAL", "priority": "LOW" }))
        .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "Duplicate requirement");

    let bad = [
        (json!({ "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW" }), "framework"),
        (
            json!({ "framework": "not-a-uuid", "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW" }),
            "framework",
        ),
        (
            json!({ "framework": uuid::Uuid::now_v7(), "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW" }),
            "framework",
        ),
        (json!({ "framework": fid, "title": "t", "requirement_type": "LEGAL", "priority": "LOW" }), "requirement_id"),
        (json!({ "framework": fid, "requirement_id": "X", "requirement_type": "LEGAL", "priority": "LOW" }), "title"),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LAW", "priority": "LOW" }),
            "requirement_type",
        ),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "URGENT" }),
            "priority",
        ),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW", "compliance_status": "DONE" }),
            "compliance_status",
        ),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW", "assigned_to": uuid::Uuid::now_v7() }),
            "assigned_to",
        ),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW", "next_assessment_date": "soon" }),
            "next_assessment_date",
        ),
        (
            json!({ "framework": fid, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW", "is_implemented": 1 }),
            "is_implemented",
        ),
    ];
    for (body, field) in bad {
        let (status, err) = s.post("/api/compliance/requirements/", &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{body}: {err}");
    }

    // PATCH: a change of status dates the assessment; unassigning with null.
    let (status, patched) =
        s.patch(&url, &org.editor, json!({ "compliance_status": "NON_COMPLIANT", "assigned_to": null })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["compliance_status"], "NON_COMPLIANT");
    assert_eq!(patched["assigned_to"], Value::Null);
    assert_eq!(patched["last_assessment_date"], today().to_string());
    assert_eq!(patched["title"], "Security of processing");

    // PUT replaces; moving to another tenant's or unknown framework is refused.
    let (status, put) = s
        .put(&url, &org.editor, json!({ "framework": fid, "requirement_id": "Art. 32", "title": "Security", "requirement_type": "TECHNICAL", "priority": "CRITICAL" }))
        .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["priority"], "CRITICAL");
    assert_eq!(put["description"], "");
    assert_eq!(put["compliance_status"], "NON_COMPLIANT", "PUT without a status keeps the assessed one");

    let (status, _) = s.delete(&url, &org.editor).await;
    assert_eq!(status, 204);
    let (status, _) = s.get(&url, &org.viewer).await;
    assert_eq!(status, 404);
    let (status, _) = s.get("/api/compliance/requirements/not-a-uuid/", &org.viewer).await;
    assert_eq!(status, 404);
    for action in ["create", "update", "delete"] {
        assert_eq!(
            s.audit_count(org.id, action, "requirement").await,
            if action == "update" { 2 } else { 1 },
            "{action}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requirement_filters() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let gdpr = id(&create_framework(&s, &org, seed_gdpr_body()).await);
    let iso = id(&create_framework(&s, &org, json!({ "name": "ISO 27001", "framework_type": "ISO27001" })).await);
    let (_, me) = s.get("/api/compliance/whoami/", &org.editor).await;
    let editor = me["user_id"].as_str().unwrap().to_owned();
    let past = (today() - time::Duration::days(3)).to_string();
    let future = (today() + time::Duration::days(30)).to_string();
    create_requirement(&s, &org, &gdpr, "Art. 5", json!({ "title": "Principles", "requirement_type": "LEGAL", "priority": "CRITICAL", "compliance_status": "COMPLIANT", "is_implemented": true, "next_assessment_date": past })).await;
    create_requirement(&s, &org, &gdpr, "Art. 33", json!({ "title": "Breach notification", "description": "notify within 72 hours", "requirement_type": "PROCEDURAL", "priority": "HIGH", "assigned_to": editor, "next_assessment_date": future })).await;
    create_requirement(&s, &org, &iso, "A.8.16", json!({ "title": "Monitoring activities", "requirement_type": "TECHNICAL", "priority": "MEDIUM", "compliance_status": "PARTIALLY_COMPLIANT", "assigned_to": editor })).await;
    create_requirement(&s, &org, &iso, "A.5.1", json!({ "title": "Policies for information security", "requirement_type": "ORGANIZATIONAL", "priority": "LOW", "is_implemented": true })).await;

    let ids = |q: String| {
        let s = &s;
        let token = org.viewer.clone();
        async move {
            let (status, page) = s.get(&format!("/api/compliance/requirements/{q}"), &token).await;
            assert_eq!(status, 200, "{q}: {page}");
            column(&page, "requirement_id")
        }
    };
    assert_eq!(ids(String::new()).await.len(), 4);
    assert_eq!(ids(format!("?framework={gdpr}")).await, ["Art. 5", "Art. 33"]);
    assert_eq!(ids(format!("?framework={}", uuid::Uuid::now_v7())).await, Vec::<String>::new());
    assert_eq!(ids("?compliance_status=COMPLIANT".into()).await, ["Art. 5"]);
    assert_eq!(ids("?compliance_status=NOT_ASSESSED".into()).await, ["Art. 33", "A.5.1"]);
    assert_eq!(ids("?requirement_type=TECHNICAL".into()).await, ["A.8.16"]);
    assert_eq!(ids("?priority=HIGH".into()).await, ["Art. 33"]);
    assert_eq!(ids("?is_implemented=true".into()).await, ["Art. 5", "A.5.1"]);
    assert_eq!(ids("?is_implemented=false".into()).await, ["Art. 33", "A.8.16"]);
    assert_eq!(ids(format!("?assigned_to={editor}")).await, ["Art. 33", "A.8.16"]);
    assert_eq!(ids("?overdue=true".into()).await, ["Art. 5"]);
    assert_eq!(ids("?overdue=false".into()).await, ["Art. 33", "A.8.16", "A.5.1"]);
    assert_eq!(ids("?search=72 hours".into()).await, ["Art. 33"]);
    assert_eq!(ids("?search=a.8".into()).await, ["A.8.16"]);
    assert_eq!(ids("?search=POLICIES".into()).await, ["A.5.1"]);
    assert_eq!(ids(format!("?framework={iso}&is_implemented=true")).await, ["A.5.1"]);

    for (q, param) in [
        ("?framework=xyz", "framework"),
        ("?requirement_type=LAW", "requirement_type"),
        ("?priority=urgent", "priority"),
        ("?is_implemented=1", "is_implemented"),
        ("?assigned_to=bob", "assigned_to"),
        ("?overdue=perhaps", "overdue"),
    ] {
        let (status, err) = s.get(&format!("/api/compliance/requirements/{q}"), &org.viewer).await;
        assert_eq!(status, 400, "{q}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{param}'"), "{q}");
    }
    let (status, err) = s.get("/api/compliance/requirements/?compliance_status=GOOD", &org.viewer).await;
    assert_eq!(status, 400);
    assert_eq!(
        err,
        json!({ "error": "Invalid compliance status", "details": "Status must be one of: COMPLIANT, PARTIALLY_COMPLIANT, NON_COMPLIANT, NOT_ASSESSED" })
    );

    // The nested list: its framework only, with its two filters; 404 for an unknown framework.
    let nested = |q: String| {
        let s = &s;
        let token = org.viewer.clone();
        async move {
            let (status, page) = s.get(&format!("/api/compliance/frameworks/{q}"), &token).await;
            (status, page)
        }
    };
    let (status, page) = nested(format!("{iso}/requirements/")).await;
    assert_eq!(status, 200);
    assert_eq!(column(&page, "requirement_id"), ["A.8.16", "A.5.1"]);
    let (_, page) = nested(format!("{iso}/requirements/?compliance_status=PARTIALLY_COMPLIANT")).await;
    assert_eq!(column(&page, "requirement_id"), ["A.8.16"]);
    let (_, page) = nested(format!("{gdpr}/requirements/?priority=CRITICAL")).await;
    assert_eq!(column(&page, "requirement_id"), ["Art. 5"]);
    let (_, page) = nested(format!("{gdpr}/requirements/?id={iso}")).await;
    assert_eq!(column(&page, "requirement_id"), ["Art. 5", "Art. 33"], "the path wins over a query parameter");
    // A filter this list does not take is refused, not ignored (which would answer with everything).
    let (status, err) = nested(format!("{gdpr}/requirements/?framework={iso}")).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Unknown parameter")), "{err}");
    assert!(err["details"].as_str().unwrap().contains("compliance_status"), "it names what it takes: {err}");
    let (status, _) = nested(format!("{gdpr}/requirements/?priority=NOPE")).await;
    assert_eq!(status, 400);
    let (status, _) = nested(format!("{}/requirements/", uuid::Uuid::now_v7())).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_status_and_schedule_assessment() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fid = id(&create_framework(&s, &org, seed_gdpr_body()).await);
    let rid = id(&create_requirement(&s, &org, &fid, "Art. 30", json!({})).await);
    let status_url = format!("/api/compliance/requirements/{rid}/update_status/");
    let schedule_url = format!("/api/compliance/requirements/{rid}/schedule_assessment/");

    for bad in [json!({ "compliance_status": "DONE" }), json!({ "compliance_status": "compliant" }), json!({})] {
        let (status, err) = s.post(&status_url, &org.editor, bad).await;
        assert_eq!(status, 400);
        assert_eq!(
            err,
            json!({ "error": "Invalid compliance status", "details": "Status must be one of: COMPLIANT, PARTIALLY_COMPLIANT, NON_COMPLIANT, NOT_ASSESSED" })
        );
    }
    let (status, updated) = s.post(&status_url, &org.editor, json!({ "compliance_status": "COMPLIANT" })).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["compliance_status"], "COMPLIANT");
    assert_eq!(updated["last_assessment_date"], today().to_string());
    assert_eq!(s.audit_count(org.id, "update_status", "requirement").await, 1);

    let yesterday = (today() - time::Duration::days(1)).to_string();
    for (body, expect) in [
        (json!({ "assessment_date": yesterday }), "Invalid assessment date"),
        (json!({ "assessment_date": "2024-06-31" }), "Invalid value for 'assessment_date'"),
        (json!({ "assessment_date": "June 1st" }), "Invalid value for 'assessment_date'"),
        (json!({}), "Invalid value for 'assessment_date'"),
        (json!({ "assessment_date": 20240601 }), "Invalid value for 'assessment_date'"),
    ] {
        let (status, err) = s.post(&schedule_url, &org.editor, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], expect, "{body}");
    }
    let next = (today() + time::Duration::days(90)).to_string();
    let (status, scheduled) = s.post(&schedule_url, &org.editor, json!({ "assessment_date": next })).await;
    assert_eq!(status, 200);
    assert_eq!(scheduled["next_assessment_date"], next);
    let (status, scheduled) =
        s.post(&schedule_url, &org.editor, json!({ "assessment_date": today().to_string() })).await;
    assert_eq!(status, 200, "today is not in the past: {scheduled}");
    assert_eq!(s.audit_count(org.id, "schedule_assessment", "requirement").await, 2);

    let missing = uuid::Uuid::now_v7();
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{missing}/update_status/"),
            &org.editor,
            json!({ "compliance_status": "COMPLIANT" }),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{missing}/schedule_assessment/"),
            &org.editor,
            json!({ "assessment_date": next }),
        )
        .await;
    assert_eq!(status, 404);
}

/// The requirement tree stays a tree within one framework: no requirement under its own
/// descendant, and none moved to another framework away from its children.
#[tokio::test(flavor = "multi_thread")]
async fn the_requirement_tree_has_no_loops_and_stays_in_its_framework() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let gdpr = id(&create_framework(&s, &org, seed_gdpr_body()).await);
    let iso = id(&create_framework(&s, &org, json!({ "name": "ISO 27001", "framework_type": "ISO27001" })).await);
    let a = id(&create_requirement(&s, &org, &gdpr, "Art. 5", json!({})).await);
    let b = id(&create_requirement(&s, &org, &gdpr, "Art. 5.1", json!({ "parent": a })).await);
    let c = id(&create_requirement(&s, &org, &gdpr, "Art. 5.1.a", json!({ "parent": b })).await);
    for (target, parent) in [(&a, &b), (&a, &c), (&b, &c)] {
        let (status, err) =
            s.patch(&format!("/api/compliance/requirements/{target}/"), &org.editor, json!({ "parent": parent })).await;
        assert_eq!(status, 400, "{target} under {parent}: {err}");
        assert_eq!(err["error"], "Invalid value for 'parent'");
    }
    // Re-parenting that keeps a tree is fine.
    let (status, moved) =
        s.patch(&format!("/api/compliance/requirements/{c}/"), &org.editor, json!({ "parent": a })).await;
    assert_eq!((status.as_u16(), moved["parent"].as_str()), (200, Some(a.as_str())), "{moved}");
    // A requirement with children stays in its framework; a leaf may move (without its parent).
    let (status, err) =
        s.patch(&format!("/api/compliance/requirements/{a}/"), &org.editor, json!({ "framework": iso })).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (409, Some("Requirement has children")), "{err}");
    let (status, moved) = s
        .patch(&format!("/api/compliance/requirements/{b}/"), &org.editor, json!({ "framework": iso, "parent": null }))
        .await;
    assert_eq!((status.as_u16(), moved["framework"].as_str()), (200, Some(iso.as_str())), "{moved}");
}

/// A requirement's update takes its framework's lock before its own row, in the order a
/// framework's deletion takes them: the other order deadlocked (found by the Schemathesis run: a
/// PUT of a requirement racing a DELETE of its framework was a 500).
#[tokio::test(flavor = "multi_thread")]
async fn a_requirement_update_waits_for_its_framework_before_locking_itself() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let req = create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await;
    // A deletion of the framework in progress: the framework row locked.
    let mut held = s.db.superuser().await;
    diesel::sql_query("BEGIN").execute(&mut held).await.unwrap();
    diesel::sql_query(format!("SELECT 1 FROM frameworks WHERE id = '{}' FOR UPDATE", id(&fw)))
        .execute(&mut held)
        .await
        .unwrap();
    let update = {
        let (base, token, rid) = (s.base.clone(), org.editor.clone(), id(&req));
        tokio::spawn(async move {
            reqwest::Client::new()
                .patch(format!("{base}/api/compliance/requirements/{rid}/"))
                .header("authorization", format!("Token {token}"))
                .json(&json!({ "title": "Renamed" }))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!update.is_finished(), "the update waits for the framework");
    // It has not locked the requirement meanwhile: the deletion can take it, as it would.
    diesel::sql_query(format!("SELECT 1 FROM requirements WHERE id = '{}' FOR UPDATE NOWAIT", id(&req)))
        .execute(&mut held)
        .await
        .expect("the requirement is not locked by the waiting update");
    diesel::sql_query("ROLLBACK").execute(&mut held).await.unwrap();
    assert_eq!(update.await.unwrap(), 200);
}
