//! Authentication, roles and rate limits over REST.

use custos_identity::{JwtConfig, JwtKey};
use custos_testkit::{ServerOptions, TestServer};
use jsonwebtoken::{EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{create_framework, create_requirement, id, seed_gdpr_body};

const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-characters";

fn jwt(claims: Value, key: &EncodingKey, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("encode jwt")
}

fn exp_in(secs: i64) -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() + secs
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_credentials_are_401() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let url = "/api/compliance/frameworks/";
    let (status, err) = s.call(Method::GET, url, None, None).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"], "Authentication credentials were not provided");
    let (status, err) = s.call(Method::GET, url, Some("cst_not-a-real-token"), None).await;
    assert_eq!(status, 401);
    assert_eq!(err["error"], "Authentication failed");
    for header in ["Basic dXNlcjpwYXNz", "Token", &format!("Bearer {}", org.admin), &org.admin] {
        let resp = s.http.get(format!("{}{url}", s.base)).header("Authorization", header).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{header}");
        assert!(resp.headers().contains_key("www-authenticate"));
    }
    // A POST without credentials changes nothing.
    let (status, _) = s.call(Method::POST, url, None, Some(&seed_gdpr_body())).await;
    assert_eq!(status, 401);
    let (_, page) = s.get(url, &org.viewer).await;
    assert_eq!(page["count"], 0);
    // Health needs no credentials.
    let (status, health) = s.call(Method::GET, "/health/", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_and_auditors_cannot_write() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let fid = id(&fw);
    let rid = id(&create_requirement(&s, &org, &fid, "Art. 5", json!({})).await);
    let (_, fw) = s.get(&format!("/api/compliance/frameworks/{fid}/"), &org.viewer).await;
    let writes: Vec<(Method, String, Value)> = vec![
        (Method::POST, "/api/compliance/frameworks/".into(), seed_gdpr_body()),
        (Method::PUT, format!("/api/compliance/frameworks/{fid}/"), seed_gdpr_body()),
        (Method::PATCH, format!("/api/compliance/frameworks/{fid}/"), json!({ "name": "x" })),
        (Method::DELETE, format!("/api/compliance/frameworks/{fid}/"), json!({})),
        (
            Method::POST,
            "/api/compliance/requirements/".into(),
            json!({ "framework": fid, "requirement_id": "Z", "title": "z", "requirement_type": "LEGAL", "priority": "LOW" }),
        ),
        (
            Method::PUT,
            format!("/api/compliance/requirements/{rid}/"),
            json!({ "framework": fid, "requirement_id": "Z", "title": "z", "requirement_type": "LEGAL", "priority": "LOW" }),
        ),
        (Method::PATCH, format!("/api/compliance/requirements/{rid}/"), json!({ "title": "x" })),
        (Method::DELETE, format!("/api/compliance/requirements/{rid}/"), json!({})),
        (
            Method::POST,
            format!("/api/compliance/requirements/{rid}/update_status/"),
            json!({ "compliance_status": "COMPLIANT" }),
        ),
        (
            Method::POST,
            format!("/api/compliance/requirements/{rid}/schedule_assessment/"),
            json!({ "assessment_date": "2099-01-01" }),
        ),
    ];
    for token in [&org.viewer, &org.auditor] {
        for (method, url, body) in &writes {
            let (status, err) = s.call(method.clone(), url, Some(token), Some(body)).await;
            assert_eq!(status, 403, "{method} {url}: {err}");
            assert_eq!(err["error"], "You do not have permission to perform this action");
        }
    }
    // Nothing changed, and every role can read.
    for token in [&org.viewer, &org.auditor, &org.editor, &org.admin] {
        let (status, got) = s.get(&format!("/api/compliance/frameworks/{fid}/"), token).await;
        assert_eq!(status, 200);
        assert_eq!(got, fw);
    }
    // Admins write like editors.
    let (status, _) =
        s.patch(&format!("/api/compliance/frameworks/{fid}/"), &org.admin, json!({ "version": "2.0" })).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_jwt_hs256_names_org_and_role() {
    let s = TestServer::start_with(ServerOptions {
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(HS_SECRET.into()),
            issuer: Some("https://sso.example".into()),
            audience: None,
        }),
        ..Default::default()
    })
    .await;
    let org = s.org("acme").await;
    let key = EncodingKey::from_secret(HS_SECRET.as_bytes());
    let hs = jsonwebtoken::Algorithm::HS256;
    let bearer = |claims: Value| format!("Bearer {}", jwt(claims, &key, hs));
    let call = |auth: String, method: Method, body: Option<Value>| {
        let s = &s;
        async move {
            let mut req =
                s.http.request(method, format!("{}/api/compliance/frameworks/", s.base)).header("Authorization", auth);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let editor = json!({ "sub": "sso|42", "org": "acme", "role": "editor", "email": "e@acme.test", "iss": "https://sso.example", "exp": exp_in(300) });
    let (status, created) = call(bearer(editor.clone()), Method::POST, Some(seed_gdpr_body())).await;
    assert_eq!(status, 201, "{created}");
    let viewer =
        json!({ "sub": "sso|43", "org": "acme", "role": "viewer", "iss": "https://sso.example", "exp": exp_in(300) });
    let (status, page) = call(bearer(viewer.clone()), Method::GET, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["count"], 1);
    let (status, _) = call(bearer(viewer), Method::POST, Some(seed_gdpr_body())).await;
    assert_eq!(status, 403);
    // The audit trail names the SSO subject.
    let (status, me) = s
        .http
        .get(format!("{}/api/compliance/whoami/", s.base))
        .header("Authorization", bearer(editor.clone()))
        .send()
        .await
        .map(|r| (r.status(), r))
        .unwrap();
    assert_eq!(status, 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["actor"], "jwt:sso|42");
    assert_eq!(me["organization_id"], org.id.to_string());

    let bad = [
        json!({ "sub": "x", "org": "acme", "role": "editor", "iss": "https://sso.example", "exp": exp_in(-600) }),
        json!({ "sub": "x", "org": "nope", "role": "editor", "iss": "https://sso.example", "exp": exp_in(300) }),
        json!({ "sub": "x", "org": "acme", "role": "root", "iss": "https://sso.example", "exp": exp_in(300) }),
        json!({ "sub": "x", "org": "acme", "role": "editor", "iss": "https://evil.example", "exp": exp_in(300) }),
        json!({ "sub": "x", "role": "editor", "iss": "https://sso.example", "exp": exp_in(300) }),
        // A configured issuer is required, not only compared when present.
        json!({ "sub": "x", "org": "acme", "role": "editor", "exp": exp_in(300) }),
        // Not yet valid.
        json!({ "sub": "x", "org": "acme", "role": "editor", "iss": "https://sso.example", "exp": exp_in(7200), "nbf": exp_in(3600) }),
    ];
    for claims in bad {
        let (status, err) = call(bearer(claims.clone()), Method::GET, None).await;
        assert_eq!(status, 401, "{claims}: {err}");
    }
    let forged = jwt(editor, &EncodingKey::from_secret(b"another-secret-of-at-least-32-characters!"), hs);
    let (status, _) = call(format!("Bearer {forged}"), Method::GET, None).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_jwt_rs256_with_provider_public_key() {
    let public = include_bytes!("fixtures/jwt-test-rsa-public.pem").to_vec();
    let private = include_bytes!("fixtures/jwt-test-rsa-private.pem");
    let s = TestServer::start_with(ServerOptions {
        jwt: Some(JwtConfig { key: JwtKey::Rs256Pem(public), issuer: None, audience: Some("custos".into()) }),
        ..Default::default()
    })
    .await;
    s.org("acme").await;
    let key = EncodingKey::from_rsa_pem(private).unwrap();
    let rs = jsonwebtoken::Algorithm::RS256;
    let good =
        jwt(json!({ "sub": "u1", "org": "acme", "role": "auditor", "aud": "custos", "exp": exp_in(300) }), &key, rs);
    let resp = s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(&good).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let wrong_aud =
        jwt(json!({ "sub": "u1", "org": "acme", "role": "auditor", "aud": "other", "exp": exp_in(300) }), &key, rs);
    let resp =
        s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(&wrong_aud).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // A configured audience is required: a token the provider signed for no audience is refused.
    let no_aud = jwt(json!({ "sub": "u1", "org": "acme", "role": "admin", "exp": exp_in(300) }), &key, rs);
    let resp = s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(&no_aud).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // An HS256 token signed with the public key (algorithm confusion) is refused.
    let confused = jwt(
        json!({ "sub": "u1", "org": "acme", "role": "admin", "aud": "custos", "exp": exp_in(300) }),
        &EncodingKey::from_secret(include_bytes!("fixtures/jwt-test-rsa-public.pem")),
        jsonwebtoken::Algorithm::HS256,
    );
    let resp =
        s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(&confused).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn authenticated_rate_limit_is_per_principal_with_retry_after() {
    let s = TestServer::start_with(ServerOptions { rate_limit_auth_per_hour: Some(5), ..Default::default() }).await;
    let org = s.org("acme").await;
    for i in 0..5 {
        let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
        assert_eq!(status, 200, "request {i}");
    }
    let resp = s.raw(Method::GET, "/api/compliance/frameworks/", Some(&org.viewer), None).await;
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"], "Request was throttled");
    // Another principal has its own budget.
    let (status, _) = s.get("/api/compliance/frameworks/", &org.editor).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_rate_limit_is_per_address() {
    let s = TestServer::start_with(ServerOptions { rate_limit_anon_per_hour: Some(3), ..Default::default() }).await;
    let org = s.org("acme").await;
    for _ in 0..3 {
        let (status, _) = s.call(Method::GET, "/api/compliance/frameworks/", None, None).await;
        assert_eq!(status, 401);
    }
    let resp = s.raw(Method::GET, "/api/compliance/frameworks/", None, None).await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    // Guessing tokens draws on the same budget.
    let (status, _) = s.call(Method::GET, "/api/compliance/frameworks/", Some("cst_guess"), None).await;
    assert_eq!(status, 429);
    // Authenticated callers from the same address are not affected, nor is the health probe.
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 200);
    let (status, _) = s.call(Method::GET, "/health/", None, None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_stored_hashed_and_track_last_use() {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut conn = s.db.superuser().await;
    let rows: Vec<(Vec<u8>, String, Option<time::OffsetDateTime>)> = custos_db::schema::api_tokens::table
        .select((
            custos_db::schema::api_tokens::token_hash,
            custos_db::schema::api_tokens::token_prefix,
            custos_db::schema::api_tokens::last_used_at,
        ))
        .load(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for (hash, prefix, last_used) in &rows {
        assert_eq!(hash.len(), 32);
        assert!(!org.admin.as_bytes().windows(hash.len()).any(|w| w == hash.as_slice()));
        assert!(prefix.starts_with("cst_") && prefix.len() < 16, "only a short prefix is kept");
        assert!(last_used.is_none());
    }
    s.get("/api/compliance/frameworks/", &org.viewer).await;
    let used: i64 = custos_db::schema::api_tokens::table
        .filter(custos_db::schema::api_tokens::last_used_at.is_not_null())
        .count()
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(used, 1);
    // The token secret is in no audit entry.
    #[derive(diesel::QueryableByName)]
    struct Fields {
        #[diesel(sql_type = diesel::sql_types::Text)]
        fields: String,
    }
    let audit: Vec<Fields> =
        diesel::sql_query(format!("SELECT fields FROM {}", custos_testkit::audit_sql::ALL_AUDIT_FIELDS))
            .load(&mut conn)
            .await
            .unwrap();
    assert!(!audit.is_empty() && audit.iter().all(|f| !f.fields.contains(&org.viewer)));
    assert_eq!(s.audit_count(org.id, "create", "api_token").await, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_logins_are_audited_in_their_organisation() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start_with(ServerOptions {
        jwt: Some(JwtConfig { key: JwtKey::Hs256(HS_SECRET.into()), issuer: None, audience: None }),
        ..Default::default()
    })
    .await;
    let org = s.org("acme").await;
    let mut conn = s.db.superuser().await;
    diesel::sql_query("UPDATE api_tokens SET revoked_at = now() WHERE user_id = (SELECT id FROM users WHERE email = 'viewer@acme.test')")
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE api_tokens SET expires_at = now() - interval '1 day' WHERE user_id = (SELECT id FROM users WHERE email = 'editor@acme.test')")
        .execute(&mut conn)
        .await
        .unwrap();
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 401);
    let (status, _) = s.get("/api/compliance/frameworks/", &org.editor).await;
    assert_eq!(status, 401);
    let (status, _) = s.get("/api/compliance/frameworks/", "cst_unknown").await;
    assert_eq!(status, 401);
    let bad_role = jwt(
        json!({ "sub": "sso|9", "org": "acme", "role": "superuser", "exp": exp_in(60) }),
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
        jsonwebtoken::Algorithm::HS256,
    );
    let resp = s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(bad_role).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // Signed with the server's key but expired: recorded. Forged with another key: its claims
    // name no one reliably, so it is refused and recorded nowhere.
    let claims = json!({ "sub": "sso|7", "org": "acme", "role": "admin", "exp": exp_in(-3600) });
    let expired = jwt(claims.clone(), &EncodingKey::from_secret(HS_SECRET.as_bytes()), jsonwebtoken::Algorithm::HS256);
    let forged = jwt(claims, &EncodingKey::from_secret(b"not-the-server-secret"), jsonwebtoken::Algorithm::HS256);
    // The expired one twice: a credential refused again within a minute is recorded once.
    for token in [expired.clone(), expired, forged] {
        let resp =
            s.http.get(format!("{}/api/compliance/frameworks/", s.base)).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status(), 401);
    }

    assert_eq!(s.audit_count(org.id, "login_failed", "api_token").await, 2);
    assert_eq!(s.audit_count(org.id, "login_failed", "bearer_token").await, 2);
    let (status, _) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
    assert_eq!(status, 201);
    let (_, page) = s.get("/api/compliance/audit-log/?action=login_failed", &org.auditor).await;
    let reasons: Vec<String> =
        page["results"].as_array().unwrap().iter().map(|e| e["after"]["reason"].as_str().unwrap().to_owned()).collect();
    assert_eq!(reasons, ["bearer token expired", "unknown role \"superuser\"", "token expired", "token revoked"]);
    assert!(page["results"].as_array().unwrap().iter().all(|e| e["client_addr"] == "127.0.0.1"));
}

/// A token that authenticated is reused for `CUSTOS_AUTH_CACHE_SECONDS`; revoking it takes
/// effect within that interval.
#[tokio::test(flavor = "multi_thread")]
async fn revoked_tokens_stop_working_within_the_cache_interval() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start_with(ServerOptions { auth_cache_seconds: Some(1), ..Default::default() }).await;
    let org = s.org("acme").await;
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 200);
    let mut conn = s.db.superuser().await;
    diesel::sql_query("UPDATE api_tokens SET revoked_at = now() WHERE user_id = (SELECT id FROM users WHERE email = 'viewer@acme.test')")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 401, "the revocation holds once the interval has passed");
    let (status, _) = s.get("/api/compliance/frameworks/", &org.editor).await;
    assert_eq!(status, 200, "other tokens are unaffected");
}

/// Behind a trusted proxy, the audit trail records the client's address, not the proxy's; a
/// client that is not a trusted proxy cannot claim another address.
#[tokio::test(flavor = "multi_thread")]
async fn the_client_address_comes_through_trusted_proxies_only() {
    for (trusted, expected) in [(vec!["127.0.0.1/32".parse().unwrap()], "203.0.113.7"), (vec![], "127.0.0.1")] {
        let s = TestServer::start_with(ServerOptions { trusted_proxies: trusted, ..Default::default() }).await;
        let org = s.org("acme").await;
        let resp = s
            .http
            .post(format!("{}/api/compliance/frameworks/", s.base))
            .header("Authorization", format!("Token {}", org.editor))
            .header("X-Forwarded-For", "198.51.100.1, 203.0.113.7")
            .json(&json!({ "name": "Behind a proxy", "framework_type": "CUSTOM" }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let (status, _) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
        assert_eq!(status, 201);
        let (_, page) = s.get("/api/compliance/audit-log/?resource_type=framework&action=create", &org.auditor).await;
        assert_eq!(page["results"][0]["client_addr"], expected, "{page}");
    }
}

/// A refused token is remembered for `CUSTOS_AUTH_CACHE_SECONDS` too, so the same bad token sent
/// again and again costs no lookup; after the interval it is looked up afresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_token_is_answered_from_memory_for_the_cache_interval() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start_with(ServerOptions { auth_cache_seconds: Some(4), ..Default::default() }).await;
    let org = s.org("acme").await;
    let viewer =
        "UPDATE api_tokens SET revoked_at = {} WHERE user_id = (SELECT id FROM users WHERE email = 'viewer@acme.test')";
    let mut conn = s.db.superuser().await;
    diesel::sql_query(viewer.replace("{}", "now()")).execute(&mut conn).await.unwrap();
    let refused_at = std::time::Instant::now();
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 401);
    // Reinstated behind Custos's back: within the interval the refusal stands, unlooked-up.
    diesel::sql_query(viewer.replace("{}", "NULL")).execute(&mut conn).await.unwrap();
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert!(refused_at.elapsed() < std::time::Duration::from_secs(3), "the check ran within the interval");
    assert_eq!(status, 401, "answered from the remembered refusal");
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    let (status, _) = s.get("/api/compliance/frameworks/", &org.viewer).await;
    assert_eq!(status, 200, "looked up again once the interval has passed");
}
