//! The platform around the API: health, OpenAPI, docs, metrics, request ids, unknown paths, losing
//! database connections.

use custos_testkit::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_and_offline_docs() {
    let s = TestServer::start().await;
    let (status, doc) = s.call(Method::GET, "/api/schema/", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/compliance/frameworks/", vec!["get", "post"]),
        ("/api/compliance/frameworks/{id}/", vec!["get", "put", "patch", "delete"]),
        ("/api/compliance/frameworks/{id}/requirements/", vec!["get"]),
        ("/api/compliance/frameworks/{id}/compliance_summary/", vec!["get"]),
        ("/api/compliance/requirements/", vec!["get", "post"]),
        ("/api/compliance/requirements/{id}/", vec!["get", "put", "patch", "delete"]),
        ("/api/compliance/requirements/{id}/update_status/", vec!["post"]),
        ("/api/compliance/requirements/{id}/schedule_assessment/", vec!["post"]),
    ] {
        for m in methods {
            assert!(paths[path].get(m).is_some(), "{m} {path}");
        }
    }
    let list = &paths["/api/compliance/frameworks/"]["get"];
    let params: Vec<&str> =
        list["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in
        ["framework_type", "is_active", "effective_date_after", "effective_date_before", "search", "page", "page_size"]
    {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["results"]["items"]["$ref"],
        "#/components/schemas/Framework"
    );
    let framework = &doc["components"]["schemas"]["Framework"]["properties"];
    assert_eq!(framework["applicable_regions"]["type"], "array");
    assert!(framework["framework_type"]["description"].as_str().unwrap().contains("GDPR"));
    assert_eq!(
        paths["/api/compliance/frameworks/"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/FrameworkInput"
    );

    let resp = s.raw(Method::GET, "/api/docs/", None, None).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("/api/docs/swagger-ui-bundle.js") && html.contains("/api/schema/"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no external assets");
    let js = s.raw(Method::GET, "/api/docs/swagger-ui-bundle.js", None, None).await;
    assert_eq!(js.status(), 200);
    assert!(js.bytes().await.unwrap().len() > 500_000);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_request_ids_and_unknown_paths() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let resp = s.raw(Method::GET, "/api/compliance/frameworks/", Some(&org.viewer), None).await;
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(!rid.is_empty());
    let resp = s
        .http
        .get(format!("{}/api/compliance/frameworks/", s.base))
        .header("x-request-id", "trace-abc-123")
        .header("Authorization", format!("Token {}", org.viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-abc-123");

    let (status, _) = s.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, 401, "metrics need credentials");
    let resp = s.raw(Method::GET, "/metrics", Some(&org.viewer), None).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(
        text.contains(r#"custos_requests_total{route="/api/compliance/frameworks/",method="GET",status="200"}"#),
        "{text}"
    );
    assert!(
        text.contains("custos_request_duration_seconds_bucket") || text.contains("custos_request_duration_seconds{"),
        "{text}"
    );
    assert!(text.contains("custos_db_pool_connections"));

    let (status, err) = s.call(Method::GET, "/api/compliance/nothing-here/", Some(&org.viewer), None).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"], "Not found");
    let (status, err): (_, Value) = s
        .call(Method::POST, "/api/compliance/frameworks/00000000-0000-0000-0000-000000000000/", Some(&org.editor), None)
        .await;
    assert_eq!(status, 405);
    assert_eq!(err["error"], "Method not allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_survive_the_database_closing_pooled_connections() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let create = async |name: &str| {
        s.post("/api/compliance/frameworks/", &org.editor, json!({ "name": name, "framework_type": "CUSTOM" })).await
    };
    assert_eq!(create("before").await.0, 201);
    // Fill the pool with idle connections, so that more than one dead one awaits the next request.
    let list = async || s.get("/api/compliance/frameworks/", &org.viewer).await.0;
    let filled = futures::future::join_all((0..4).map(|_| list())).await;
    assert!(filled.iter().all(|status| *status == 200), "{filled:?}");
    // What a database restart or an idle-connection timeout does to the pool's connections.
    let closed = s
        .superuser_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            s.db.name
        ))
        .await
        .unwrap();
    assert!(closed > 0, "the pool held connections");
    for i in 0..5 {
        let (status, body) = create(&format!("after {i}")).await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, page) = s.get("/api/compliance/frameworks/", &org.editor).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 6, "{page}");
}

/// The house's naming rule, kept by a test: every REST endpoint calls the service method named
/// after the rpc that takes its request message, and its operation id is that method's name
/// (`UpdateRequirementStatus` ↔ `update_requirement_status` ↔ `updateRequirementStatus`).
#[tokio::test(flavor = "multi_thread")]
async fn every_endpoint_is_named_after_its_rpc() {
    let s = TestServer::start().await;
    let composed = custos_gateway::domains::compose(s.app(), s.config()).expect("every domain composes");
    assert!(composed.endpoints.len() > 60, "every domain's endpoints");
    let mismatches = custos_gateway::rest::descriptors::name_mismatches(&composed.endpoints);
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // What the domains say of their API names real fields.
    assert_eq!(composed.description.unknown_fields(), Vec::<&str>::new());
    let (_, doc) = s.call(Method::GET, "/api/schema/", None, None).await;
    let ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|ops| ops.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    for id in ["updateRequirementStatus", "getComplianceSummary", "listComplianceCheckpoints", "downloadEvidence"] {
        assert!(ids.contains(&id.to_owned()), "{id} in {ids:?}");
    }
    // Public paths come from the endpoints' flag: the signing key answers without credentials,
    // the trail does not.
    let (status, _) = s.call(Method::GET, "/api/compliance/audit-log/public-key/", None, None).await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, "/api/compliance/audit-log/", None, None).await;
    assert_eq!(status, 401);
}
