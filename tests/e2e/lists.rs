//! The list kit, end to end: cursor walks over REST and gRPC, exact and estimated counts, value
//! sets read back as their types, and the one reference check across tenants.

use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};
use tonic::Code;

use crate::{column, create_framework, create_requirement, id, superuser_sql, user_id};

const REQ: &str = "/api/compliance/requirements/";
const EV: &str = "/api/compliance/evidence/";

/// `n` requirements of a new framework, in creation order.
async fn requirements(s: &TestServer, org: &TestOrg, n: usize) -> (String, Vec<String>) {
    let fw = create_framework(s, org, json!({ "name": "Walked", "framework_type": "CUSTOM" })).await;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(id(&create_requirement(s, org, &id(&fw), &format!("W-{i:02}"), json!({})).await));
    }
    (id(&fw), ids)
}

/// `n` evidence items collected a minute apart, newest first (the list's order).
async fn evidence(s: &TestServer, org: &TestOrg, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let at = crate::ts(time::Duration::minutes(-(i as i64) - 10));
        let body = json!({ "title": format!("Item {i:02}"), "evidence_type": "DOCUMENT", "collected_at": at });
        let (status, e) = s.post(EV, &org.editor, body).await;
        assert_eq!(status, 201, "{e}");
        ids.push(id(&e));
    }
    ids
}

/// Follows a REST cursor walk from `first` to its end: the ids of every page, in order.
async fn walk_rest(s: &TestServer, token: &str, first: &str) -> Vec<String> {
    let (mut seen, mut url) = (Vec::new(), first.to_owned());
    loop {
        let (status, page) = s.get(&url, token).await;
        assert_eq!(status, 200, "{url}: {page}");
        assert_eq!(page["previous"], Value::Null, "cursor walks go forward");
        assert!(page.get("count_is_estimate").is_none(), "a small list's count is exact: {page}");
        seen.extend(column(&page, "id"));
        match page["next"].as_str() {
            Some(next) => {
                assert!(next.contains("cursor="), "{next}");
                url = next.to_owned();
            }
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requirements_and_evidence_walk_by_cursor_over_rest() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (_, reqs) = requirements(&s, &org, 12).await;
    let walked = walk_rest(&s, &org.viewer, &format!("{REQ}?page_size=5&cursor=")).await;
    assert_eq!(walked, reqs, "every requirement once, in creation order");

    // Rows added after the position show up; those before it are not shown again.
    let (status, first) = s.get(&format!("{REQ}?page_size=5&cursor="), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(first["count"], 12);
    let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["count", "next", "previous", "results"]);
    let fw = id(&create_framework(&s, &org, json!({ "name": "Later", "framework_type": "CUSTOM" })).await);
    let later = id(&create_requirement(&s, &org, &fw, "L-1", json!({})).await);
    let rest = walk_rest(&s, &org.viewer, first["next"].as_str().unwrap()).await;
    let mut expected = reqs[5..].to_vec();
    expected.push(later);
    assert_eq!(rest, expected);

    // Filters and page sizes ride along in the links.
    let walked = walk_rest(&s, &org.viewer, &format!("{REQ}?page_size=2&framework={fw}&cursor=")).await;
    assert_eq!(walked.len(), 1);

    let items = evidence(&s, &org, 7).await;
    let walked = walk_rest(&s, &org.viewer, &format!("{EV}?page_size=3&cursor=")).await;
    assert_eq!(walked, items, "every item once, newest collected first");
    // A page-number walk answers the same rows, with page links (the seed's shape).
    let (_, page) = s.get(&format!("{EV}?page_size=3&page=2"), &org.viewer).await;
    assert_eq!(column(&page, "id"), items[3..6].to_vec());
    assert!(page["next"].as_str().unwrap().ends_with("page=3"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn requirements_and_evidence_walk_by_cursor_over_grpc() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (fw, reqs) = requirements(&s, &org, 9).await;
    let items = evidence(&s, &org, 8).await;

    let mut frameworks = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = frameworks
            .list_requirements(pb::ListRequirementsRequest {
                page_size: Some(4),
                cursor: Some(cursor.clone()),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((page.count, page.count_is_estimate, page.next_page, page.previous_page), (9, false, None, None));
        seen.extend(page.results.into_iter().map(|r| r.id));
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen, reqs);
    // One framework's requirements walk the same way; a page-number walk offers a cursor too.
    let by_framework = frameworks
        .list_framework_requirements(pb::ListFrameworkRequirementsRequest {
            id: fw,
            page_size: Some(5),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_framework.next_page, Some(2));
    let rest = frameworks
        .list_requirements(pb::ListRequirementsRequest {
            page_size: Some(5),
            cursor: by_framework.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.results.iter().map(|r| r.id.clone()).collect::<Vec<_>>(), reqs[5..].to_vec());
    assert_eq!(rest.next_cursor, None);

    let mut evidence = EvidenceServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let (mut seen, mut cursor) = (Vec::new(), String::new());
    loop {
        let page = evidence
            .list_evidence(pb::ListEvidenceRequest { page_size: Some(3), cursor: Some(cursor), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((page.count, page.count_is_estimate), (8, false));
        seen.extend(page.results.into_iter().map(|e| e.id));
        match page.next_cursor {
            Some(next) => cursor = next,
            None => break,
        }
    }
    assert_eq!(seen, items);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_or_foreign_cursors_are_refused() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    requirements(&s, &org, 3).await;
    evidence(&s, &org, 3).await;
    let (_, page) = s.get(&format!("{REQ}?page_size=1&cursor="), &org.viewer).await;
    let next = page["next"].as_str().unwrap().to_owned();
    let requirement_cursor = next.split("cursor=").nth(1).unwrap().to_owned();
    for bad in ["nope", "%%%", "cmVxdWlyZW1lbnRzOjEyMy5ub3BlLWEtdXVpZA"] {
        let (status, err) = s.get(&format!("{REQ}?cursor={bad}"), &org.viewer).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"], "Invalid value for 'cursor'");
    }
    // Another list's cursor, and a cursor with a page number.
    let (status, err) = s.get(&format!("{EV}?cursor={requirement_cursor}"), &org.viewer).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "Invalid value for 'cursor'");
    let (status, _) = s.get(&format!("{REQ}?page=2&cursor={requirement_cursor}"), &org.viewer).await;
    assert_eq!(status, 400);

    let mut evidence = EvidenceServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = evidence
        .list_evidence(pb::ListEvidenceRequest { cursor: Some("garbage".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenants_cursor_shows_nothing_of_that_tenant() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let (_, a_reqs) = requirements(&s, &a, 4).await;
    let (_, page) = s.get(&format!("{REQ}?page_size=1&cursor="), &a.viewer).await;
    let next = page["next"].as_str().unwrap().to_owned();
    let (_, b_reqs) = requirements(&s, &b, 3).await;
    // B follows A's link: the position is only a place in the order; B sees its own rows after it.
    let walked = walk_rest(&s, &b.viewer, &next).await;
    assert_eq!(walked, b_reqs);
    assert!(walked.iter().all(|r| !a_reqs.contains(r)));
    // Nor does a search reach the other tenant (the search view applies the tenant itself).
    let (_, found) = s.get(&format!("{REQ}?search=W-0"), &b.viewer).await;
    assert_eq!(found["count"], 3);
    assert!(column(&found, "id").iter().all(|r| b_reqs.contains(r)), "{found}");
}

#[tokio::test(flavor = "multi_thread")]
async fn counts_past_ten_thousand_are_flagged_estimates_and_framework_counts_stay_exact() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = id(&create_framework(&s, &org, json!({ "name": "Big", "framework_type": "CUSTOM" })).await);
    let other = id(&create_framework(&s, &org, json!({ "name": "Other", "framework_type": "CUSTOM" })).await);
    superuser_sql(
        &s,
        &format!(
            "INSERT INTO requirements (id, organization_id, framework_id, requirement_id, title, requirement_type, priority, compliance_status)
             SELECT gen_random_uuid(), '{org}', '{fw}', 'B-' || g, 'Bulk ' || g, 'TECHNICAL', 'LOW',
                    CASE WHEN g <= 30 THEN 'COMPLIANT' ELSE 'NOT_ASSESSED' END
               FROM generate_series(1, 10050) g; ANALYZE requirements",
            org = org.id
        ),
    )
    .await;
    let (status, page) = s.get(&format!("{REQ}?page_size=100"), &org.viewer).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count_is_estimate"], true, "{}", page["count"]);
    assert!(page["count"].as_i64().unwrap() > 10_000, "{}", page["count"]);
    let keys: Vec<_> = page.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys, ["count", "count_is_estimate", "next", "previous", "results"]);
    // A filter matching few stays exact; the framework's count and summary are exact always.
    let (_, compliant) = s.get(&format!("{REQ}?compliance_status=COMPLIANT"), &org.viewer).await;
    assert_eq!(compliant["count"], 30);
    assert!(compliant.get("count_is_estimate").is_none());
    let (_, framework) = s.get(&format!("/api/compliance/frameworks/{fw}/"), &org.viewer).await;
    assert_eq!(framework["requirements_count"], 10_050);
    let (_, summary) = s.get(&format!("/api/compliance/frameworks/{fw}/compliance_summary/"), &org.viewer).await;
    assert_eq!((summary["total_requirements"].as_i64(), summary["compliant"].as_i64()), (Some(10_050), Some(30)));
    // Over gRPC the flag is a field.
    let mut c = FrameworksServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let listed = c.list_requirements(pb::ListRequirementsRequest::default()).await.unwrap().into_inner();
    assert!(listed.count_is_estimate && listed.count > 10_000);

    // The kept counts follow creation, moves and deletion.
    let moved = id(&create_requirement(&s, &org, &fw, "M-1", json!({})).await);
    let (status, _) = s.patch(&format!("{REQ}{moved}/"), &org.editor, json!({ "framework": other })).await;
    assert_eq!(status, 200);
    let (_, listed) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    let counts: Vec<_> =
        listed["results"].as_array().unwrap().iter().map(|f| f["requirements_count"].clone()).collect();
    assert_eq!(counts, [json!(10_050), json!(1)], "Big, Other");
    let (status, _) = s.delete(&format!("{REQ}{moved}/"), &org.editor).await;
    assert_eq!(status, 204);
    let (_, other_now) = s.get(&format!("/api/compliance/frameworks/{other}/"), &org.viewer).await;
    assert_eq!(other_now["requirements_count"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_value_outside_its_set_is_a_server_error_not_a_fallback() {
    // A value the server never writes (damage, or a newer release's value) is not shown as some
    // default: the read fails (500), and the log names the value and its type.
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (status, v) = s
        .post("/api/compliance/vulnerabilities/", &org.editor, json!({ "title": "Old TLS", "severity": "HIGH" }))
        .await;
    assert_eq!(status, 201, "{v}");
    let (_, reqs) = requirements(&s, &org, 1).await;
    superuser_sql(&s, &format!("UPDATE vulnerabilities SET status = 'BOGUS' WHERE id = '{}'", id(&v))).await;
    superuser_sql(&s, &format!("UPDATE requirements SET compliance_status = 'MOSTLY' WHERE id = '{}'", reqs[0])).await;
    for path in [
        format!("/api/compliance/vulnerabilities/{}/", id(&v)),
        "/api/compliance/vulnerabilities/".to_owned(),
        format!("{REQ}{}/", reqs[0]),
        REQ.to_owned(),
    ] {
        let (status, err) = s.get(&path, &org.viewer).await;
        assert_eq!(status, 500, "{path}: {err}");
        assert_eq!(err["error"], "Internal server error", "{path}");
        assert!(
            !err.to_string().contains("BOGUS") && !err.to_string().contains("MOSTLY"),
            "internal causes stay in the log"
        );
    }
    // An update cannot quietly overwrite it with a default either.
    let (status, _) =
        s.patch(&format!("/api/compliance/vulnerabilities/{}/", id(&v)), &org.editor, json!({ "title": "x" })).await;
    assert_eq!(status, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn references_to_another_tenants_ids_are_400s_naming_the_field() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let a_user = user_id(&s, &a, "editor").await;
    let (a_fw, a_reqs) = requirements(&s, &a, 1).await;
    let (status, a_incident) = s
        .post(
            "/api/compliance/incidents/",
            &a.editor,
            json!({ "title": "A's", "severity": "LOW", "category": "OTHER" }),
        )
        .await;
    assert_eq!(status, 201, "{a_incident}");
    let b_fw = id(&create_framework(&s, &b, json!({ "name": "B", "framework_type": "CUSTOM" })).await);
    let cases = [
        (
            REQ,
            json!({ "framework": a_fw, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW" }),
            "framework",
            "framework",
        ),
        (
            REQ,
            json!({ "framework": b_fw, "requirement_id": "X", "title": "t", "requirement_type": "LEGAL", "priority": "LOW", "assigned_to": a_user }),
            "assigned_to",
            "user",
        ),
        (
            "/api/compliance/vulnerabilities/",
            json!({ "title": "t", "severity": "LOW", "incident": id(&a_incident) }),
            "incident",
            "incident",
        ),
        (
            "/api/compliance/compliance-checkpoints/",
            json!({ "name": "n", "framework": a_fw }),
            "framework",
            "framework",
        ),
        (
            "/api/compliance/incident-response-plans/",
            json!({ "name": "n", "incident_type": "OTHER", "severity": "LOW", "primary_contact": a_user }),
            "primary_contact",
            "user",
        ),
        (EV, json!({ "title": "t", "evidence_type": "DOCUMENT", "incident": id(&a_incident) }), "incident", "incident"),
        (
            EV,
            json!({ "title": "t", "evidence_type": "DOCUMENT", "compliance_requirements": [a_reqs[0]] }),
            "compliance_requirements",
            "requirement",
        ),
    ];
    for (path, body, field, noun) in cases {
        let (status, err) = s.post(path, &b.editor, body).await;
        assert_eq!(status, 400, "{path} {field}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{path}");
        assert!(err["details"].as_str().unwrap().starts_with(&format!("No {noun} with id ")), "{err}");
    }
}

/// The search that trigram indexes serve under RLS runs inside an owner-rights function that
/// takes a pattern and applies the tenant itself: `custos_app` can pass no condition of its own
/// into it (an owner-rights view, tried first, let a failing cast in a caller's condition read
/// other tenants' titles out of its error message).
#[tokio::test(flavor = "multi_thread")]
async fn the_search_function_answers_only_the_tenant_s_ids_and_takes_nothing_but_a_pattern() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start().await;
    let (a, b) = (s.org("alpha").await, s.org("beta").await);
    let fa = crate::create_framework(&s, &a, crate::seed_gdpr_body()).await;
    let fb = crate::create_framework(&s, &b, crate::seed_gdpr_body()).await;
    let ra =
        crate::create_requirement(&s, &a, &crate::id(&fa), "A.1", serde_json::json!({ "title": "alpha shared" })).await;
    crate::create_requirement(&s, &b, &crate::id(&fb), "B.1", serde_json::json!({ "title": "BETA TOP SECRET shared" }))
        .await;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let mut conn = s.db.superuser().await;
    let as_tenant =
        format!("SELECT set_config('role', 'custos_app', true), set_config('custos.org_id', '{}', true)", a.id);
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query(&as_tenant).execute(&mut conn).await.unwrap();
    let found: Vec<Id> =
        diesel::sql_query("SELECT custos_requirement_search('%shared%') AS id").load(&mut conn).await.unwrap();
    assert_eq!(found.iter().map(|f| f.id.to_string()).collect::<Vec<_>>(), vec![crate::id(&ra)]);
    // No owner-rights view to put a condition on.
    for view in ["requirement_search", "evidence_search"] {
        let err = diesel::sql_query(format!("SELECT 1 FROM {view} WHERE title::int = 1")).execute(&mut conn).await;
        assert!(err.is_err_and(|e| !e.to_string().contains("TOP SECRET")), "{view}");
        diesel::sql_query("ROLLBACK").execute(&mut conn).await.unwrap();
        diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
        diesel::sql_query(&as_tenant).execute(&mut conn).await.unwrap();
    }
    diesel::sql_query("ROLLBACK").execute(&mut conn).await.unwrap();
    // Through the API, each tenant's search shows its own.
    let (_, page) = s.get("/api/compliance/requirements/?search=shared", &a.viewer).await;
    assert_eq!(page["count"], 1);
    assert_eq!(page["results"][0]["requirement_id"], "A.1");
}
