//! Access reviews over REST and gRPC: a review collects its findings as a job (stale users and
//! tokens, an unconfirmed admin, a deactivated user's token, tokens without expiry); revoking
//! takes the access away on the next request; retaining needs a justification; the last admin
//! stays; sign-off needs every finding decided, keeps the report byte for byte and makes the
//! review immutable (the database refuses too); the next review counts the admin confirmed;
//! events reach a subscribed webhook; tenancy and roles on every endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use custos_core::Role;
use custos_proto::v1 as pb;
use custos_proto::v1::access_reviews_service_client::AccessReviewsServiceClient;
use custos_testkit::{TestServer, WebhookReceiver};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REVIEWS: &str = "/api/compliance/access-reviews/";
const START: &str = "/api/compliance/access-reviews/start_review/";
const STALE: &str = "/api/compliance/stale-access/";

/// Starts a review as `token` and waits for its findings.
async fn collected(s: &TestServer, token: &str, body: Value) -> Value {
    let (status, review) = s.post(START, token, body).await;
    assert_eq!(status, 202, "{review}");
    assert_eq!(review["status"], "running", "{review}");
    let job = s.wait_for_job(token, review["job_id"].as_str().expect("its job")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, review) = s.get(&format!("{REVIEWS}{}/", review["id"].as_str().unwrap()), token).await;
    assert_eq!(review["status"], "in_review", "{review}");
    review
}

/// The review's findings as (kind, e-mail address, token name) → finding.
async fn findings_of(s: &TestServer, token: &str, review: &str) -> BTreeMap<(String, String, String), Value> {
    let (status, list) = s.get(&format!("{STALE}?review={review}&page_size=100"), token).await;
    assert_eq!(status, 200, "{list}");
    list["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let key = (
                f["kind"].as_str().unwrap().to_owned(),
                f["user_email"].as_str().unwrap().to_owned(),
                f["token_name"].as_str().unwrap_or("").to_owned(),
            );
            (key, f.clone())
        })
        .collect()
}

fn key(kind: &str, email: &str, token: &str) -> (String, String, String) {
    (kind.to_owned(), email.to_owned(), token.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn access_reviews_find_stale_access_revoke_it_at_once_and_sign_off_immutably() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let identity = &s.app().identity;
    // A user and their token unused for 200 days; a deactivated user whose token still exists;
    // a fresh token that expires (nothing to find about it).
    let stale = identity.issue_token("acme", "stale@acme.test", Role::Editor, "old laptop").await.unwrap();
    let gone = identity.issue_token("acme", "gone@acme.test", Role::Viewer, "gone's token").await.unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::days(30);
    identity.issue_token_expiring("acme", "ops@acme.test", Role::Editor, "ci", Some(soon)).await.unwrap();
    s.superuser_sql(&format!(
        "UPDATE users SET created_at = now() - interval '300 days', last_seen_at = now() - interval '200 days' WHERE id = '{}'",
        stale.user_id
    ))
    .await
    .unwrap();
    s.superuser_sql(&format!(
        "UPDATE api_tokens SET created_at = now() - interval '300 days', last_used_at = now() - interval '200 days' WHERE id = '{}'",
        stale.token_id
    ))
    .await
    .unwrap();
    let (status, _) =
        s.patch(&format!("/api/compliance/users/{}/", gone.user_id), &org.admin, json!({"is_active": false})).await;
    assert_eq!(status, 200);
    // Events go to a subscribed webhook.
    let receiver = WebhookReceiver::start().await;
    let (status, _) = s
        .post(
            "/api/compliance/notification-channels/",
            &org.admin,
            json!({"name": "reviews", "kind": "webhook", "url": receiver.url(),
                   "event_types": ["access.stale_finding", "access_review.sign_off_due"]}),
        )
        .await;
    assert_eq!(status, 201);

    // Starting: admins only, a sane period.
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(START, token, json!({})).await.0, 403);
    }
    for bad in
        [json!({"stale_after_days": 0}), json!({"stale_after_days": 5000}), json!({"stale_after_days": "ninety"})]
    {
        let (status, err) = s.post(START, &org.admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let review = collected(&s, &org.admin, json!({})).await;
    let id = review["id"].as_str().unwrap().to_owned();
    assert_eq!(review["stale_after_days"], 90);
    assert!(review["started_by"].as_str().unwrap().starts_with("user:"), "{review}");

    let found = findings_of(&s, &org.auditor, &id).await;
    let expected = [
        key("user_unused", "stale@acme.test", ""),
        key("token_unused", "stale@acme.test", "old laptop"),
        key("token_without_expiry", "stale@acme.test", "old laptop"),
        key("admin_unreviewed", "admin@acme.test", ""),
        key("token_of_inactive_user", "gone@acme.test", "gone's token"),
        key("token_without_expiry", "admin@acme.test", "test"),
        key("token_without_expiry", "editor@acme.test", "test"),
        key("token_without_expiry", "viewer@acme.test", "test"),
        key("token_without_expiry", "auditor@acme.test", "test"),
    ];
    assert_eq!(
        found.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        expected.into_iter().collect(),
        "{found:#?}"
    );
    assert_eq!(review["findings"], 9);
    assert_eq!(review["open_findings"], 9);
    let stale_user = &found[&key("user_unused", "stale@acme.test", "")];
    assert!(stale_user["reason"].as_str().unwrap().starts_with("not seen for 200 days"), "{stale_user}");
    assert_eq!(stale_user["status"], "open");
    // Filters, and who may read.
    let (_, by_kind) = s.get(&format!("{STALE}?kind=token_without_expiry"), &org.admin).await;
    assert_eq!(by_kind["count"], 5, "{by_kind}");
    let (_, by_user) = s.get(&format!("{STALE}?user={}", stale.user_id), &org.admin).await;
    assert_eq!(by_user["count"], 3, "{by_user}");
    for bad in ["?kind=everything", "?status=maybe", "?review=not-a-uuid"] {
        assert_eq!(s.get(&format!("{STALE}{bad}"), &org.admin).await.0, 400, "{bad}");
    }
    for token in [&org.editor, &org.viewer] {
        assert_eq!(s.get(STALE, token).await.0, 403);
        assert_eq!(s.get(REVIEWS, token).await.0, 403);
        assert_eq!(s.get(&format!("{REVIEWS}{id}/"), token).await.0, 403);
    }
    let (_, theirs) = s.get(STALE, &other.admin).await;
    assert_eq!(theirs["count"], 0);
    assert_eq!(s.get(&format!("{REVIEWS}{id}/"), &other.admin).await.0, 404);
    let finding = |k: (String, String, String)| found[&k]["id"].as_str().unwrap().to_owned();
    let resolve = |f: &str| format!("{STALE}{f}/resolve/");
    let unused_token = finding(key("token_unused", "stale@acme.test", "old laptop"));
    assert_eq!(s.get(&format!("{STALE}{unused_token}/"), &other.admin).await.0, 404);
    assert_eq!(s.post(&resolve(&unused_token), &other.admin, json!({"resolution": "revoked"})).await.0, 404);

    // Deciding: admins only, with clear refusals of bad decisions.
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(&resolve(&unused_token), token, json!({"resolution": "revoked"})).await.0, 403);
    }
    for bad in [
        json!({"resolution": "maybe"}),
        json!({"resolution": "retained"}),
        json!({"resolution": "retained", "justification": "   "}),
        json!({"resolution": "revoked", "demote_to": "viewer"}),
        json!({}),
    ] {
        let (status, err) = s.post(&resolve(&unused_token), &org.admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let (status, signed) = s.post(&format!("{REVIEWS}{id}/sign_off/"), &org.admin, json!({})).await;
    assert_eq!(status, 409, "open findings: {signed}");
    assert!(signed["details"].as_str().unwrap().contains("9 of the review's 9 findings are still open"), "{signed}");

    // Revoked: the token works up to the decision and not one request after.
    assert_eq!(s.get("/api/compliance/whoami/", &stale.token).await.0, 200);
    let (status, decided) = s.post(&resolve(&unused_token), &org.admin, json!({"resolution": "revoked"})).await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!((decided["status"].as_str(), decided["action"].as_str()), (Some("revoked"), Some("token_revoked")));
    assert_eq!(s.get("/api/compliance/whoami/", &stale.token).await.0, 401);
    // The same token's other finding was closed with it, saying by which.
    let (_, covered) = s
        .get(&format!("{STALE}{}/", finding(key("token_without_expiry", "stale@acme.test", "old laptop"))), &org.admin)
        .await;
    assert_eq!(covered["status"], "revoked");
    assert_eq!(covered["action"], format!("covered_by_{unused_token}"));
    // Decided once.
    assert_eq!(
        s.post(&resolve(&unused_token), &org.admin, json!({"resolution": "retained", "justification": "x"})).await.0,
        409
    );

    // The unused account is deactivated; a deactivated user's token revoked.
    let (_, decided) = s
        .post(
            &resolve(&finding(key("user_unused", "stale@acme.test", ""))),
            &org.admin,
            json!({"resolution": "revoked"}),
        )
        .await;
    assert_eq!(decided["action"], "user_deactivated", "{decided}");
    let (_, user) = s.get(&format!("/api/compliance/users/{}/", stale.user_id), &org.admin).await;
    assert_eq!(user["is_active"], false);
    let (_, decided) = s
        .post(
            &resolve(&finding(key("token_of_inactive_user", "gone@acme.test", "gone's token"))),
            &org.admin,
            json!({"resolution": "revoked"}),
        )
        .await;
    assert_eq!(decided["action"], "token_revoked", "{decided}");
    // The organisation's only admin is not demoted: 409, and the finding stays open.
    let admin_finding = finding(key("admin_unreviewed", "admin@acme.test", ""));
    let (status, err) = s.post(&resolve(&admin_finding), &org.admin, json!({"resolution": "revoked"})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(s.get("/api/compliance/whoami/", &org.admin).await.1["role"], "admin");
    let (status, _) = s
        .post(
            &resolve(&admin_finding),
            &org.admin,
            json!({"resolution": "retained", "justification": "CISO, confirmed by the board"}),
        )
        .await;
    assert_eq!(status, 200);
    // The editor's token is revoked through gRPC; the rest retained.
    let mut admin = AccessReviewsServiceClient::new(s.grpc(Some(&org.admin)).await);
    let mut editor = AccessReviewsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let editor_token = finding(key("token_without_expiry", "editor@acme.test", "test"));
    let denied = editor
        .resolve_stale_access(pb::ResolveStaleAccessRequest {
            id: editor_token.clone(),
            resolution: "revoked".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let bad = admin
        .resolve_stale_access(pb::ResolveStaleAccessRequest {
            id: editor_token.clone(),
            resolution: "retained".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let revoked = admin
        .resolve_stale_access(pb::ResolveStaleAccessRequest {
            id: editor_token.clone(),
            resolution: "revoked".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.action.as_deref(), Some("token_revoked"));
    assert_eq!(s.get("/api/compliance/whoami/", &org.editor).await.0, 401);
    for who in ["admin", "viewer", "auditor"] {
        let f = finding(key("token_without_expiry", &format!("{who}@acme.test"), "test"));
        let (status, _) = s
            .post(
                &resolve(&f),
                &org.admin,
                json!({"resolution": "retained", "justification": "service account, rotated by hand"}),
            )
            .await;
        assert_eq!(status, 200);
    }
    // Every finding decided: the webhook hears the review is ready to sign off.
    let (_, ready) = s.get(&format!("{REVIEWS}{id}/"), &org.auditor).await;
    assert_eq!(
        (ready["open_findings"].clone(), ready["revoked"].clone(), ready["retained"].clone()),
        (json!(0), json!(5), json!(4)),
        "{ready}"
    );

    // Sign-off: admins; the report kept byte for byte; nothing changes afterwards.
    assert_eq!(s.post(&format!("{REVIEWS}{id}/sign_off/"), &org.auditor, json!({})).await.0, 403);
    assert_eq!(s.post(&format!("{REVIEWS}{id}/sign_off/"), &other.admin, json!({})).await.0, 404);
    assert_eq!(s.download(&format!("{REVIEWS}{id}/report/"), &org.auditor).await.0, 409);
    let (status, signed) =
        s.post(&format!("{REVIEWS}{id}/sign_off/"), &org.admin, json!({"comment": "Q4 review"})).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["status"], "signed_off");
    assert_eq!(signed["sign_off_comment"], "Q4 review");
    let sha = signed["report_sha256"].as_str().unwrap().to_owned();
    let (status, headers, body) = s.download(&format!("{REVIEWS}{id}/report/"), &org.auditor).await;
    assert_eq!(status, 200);
    assert_eq!(const_hex::encode(Sha256::digest(&body)), sha);
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/json"));
    let report: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(report["format"], "custos-access-review/v1");
    assert_eq!(report["summary"]["findings"], 9);
    assert_eq!(report["findings"].as_array().unwrap().len(), 9);
    assert_eq!(report["signed_off"]["by"], signed["signed_off_by"]);
    assert_eq!(report["signed_off"]["email"], "admin@acme.test");
    let retained_admin =
        report["findings"].as_array().unwrap().iter().find(|f| f["kind"] == "admin_unreviewed").unwrap();
    assert_eq!(retained_admin["justification"], "CISO, confirmed by the board");
    assert_eq!(s.post(&format!("{REVIEWS}{id}/sign_off/"), &org.admin, json!({})).await.0, 409);
    assert_eq!(
        s.post(&resolve(&admin_finding), &org.admin, json!({"resolution": "revoked"})).await.0,
        409,
        "a signed-off review's findings never change"
    );
    let tamper =
        s.superuser_sql(&format!("UPDATE access_reviews SET sign_off_comment = 'edited' WHERE id = '{id}'")).await;
    assert!(tamper.unwrap_err().to_string().contains("signed off"));
    let tamper = s
        .superuser_sql(&format!(
            "UPDATE stale_access_findings SET justification = 'edited' WHERE id = '{admin_finding}'"
        ))
        .await;
    assert!(tamper.is_err());
    let report_grpc =
        admin.get_access_review_report(pb::GetAccessReviewReportRequest { id: id.clone() }).await.unwrap().into_inner();
    assert_eq!((report_grpc.content.as_bytes(), report_grpc.sha256.as_str()), (body.as_slice(), sha.as_str()));

    // Audited, each decision and the sign-off.
    assert_eq!(s.audit_count(org.id, "sign_off", "access_review").await, 1);
    assert_eq!(s.audit_count(org.id, "collect", "access_review").await, 1);
    assert!(s.audit_count(org.id, "resolve", "stale_access_finding").await >= 9);
    assert_eq!(s.audit_count(org.id, "revoke", "api_token").await, 3);

    // The next review: the admin was confirmed, the revoked access is gone, a shorter period.
    let again = collected(&s, &org.admin, json!({"stale_after_days": 30})).await;
    assert_eq!(again["stale_after_days"], 30);
    let found = findings_of(&s, &org.admin, again["id"].as_str().unwrap()).await;
    assert!(!found.keys().any(|(kind, _, _)| kind == "admin_unreviewed"), "{found:#?}");
    assert!(!found.keys().any(|(_, email, _)| email == "stale@acme.test" || email == "gone@acme.test"), "{found:#?}");
    let (_, listed) = s.get(&format!("{REVIEWS}?status=signed_off"), &org.auditor).await;
    assert_eq!(listed["count"], 1, "{listed}");
    let (_, listed) = s.get(REVIEWS, &org.auditor).await;
    assert_eq!(listed["results"][0]["id"], again["id"], "newest first");
    assert_eq!(s.get(&format!("{REVIEWS}?status=maybe"), &org.auditor).await.0, 400);

    // Events: findings collected (twice) and ready to sign off (once), signed for the receiver.
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    let got = receiver.wait_for(3, Duration::from_secs(10)).await;
    let mut events: Vec<String> = got.iter().map(|r| r.json()["event_type"].as_str().unwrap().to_owned()).collect();
    events.sort();
    assert_eq!(events, ["access.stale_finding", "access.stale_finding", "access_review.sign_off_due"]);
    let first = got
        .iter()
        .map(|r| r.json())
        .find(|e| e["payload"]["review"] == id && e["event_type"] == "access.stale_finding")
        .unwrap();
    assert_eq!(first["payload"]["findings"], 9, "{first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn access_reviews_over_grpc_keep_roles_and_tenancy_and_one_review_collects_at_a_time() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let mut viewer = AccessReviewsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let mut editor = AccessReviewsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let mut auditor = AccessReviewsServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let mut admin = AccessReviewsServiceClient::new(s.grpc(Some(&org.admin)).await);
    let mut stranger = AccessReviewsServiceClient::new(s.grpc(Some(&other.admin)).await);

    let denied = viewer.list_access_reviews(pb::ListAccessReviewsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = editor.start_access_review(pb::StartAccessReviewRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = auditor.start_access_review(pb::StartAccessReviewRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let bad = admin.start_access_review(pb::StartAccessReviewRequest { stale_after_days: Some(-1) }).await.unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);

    // A review whose job has not run yet is collecting: another start is refused.
    let started = admin.start_access_review(pb::StartAccessReviewRequest::default()).await.unwrap().into_inner();
    assert_eq!(started.status, "running");
    let job = started.job_id.clone().unwrap();
    let review = started.id.clone();
    let again = admin.start_access_review(pb::StartAccessReviewRequest::default()).await;
    match again {
        // The runner may already have collected it: then the second start is fine too.
        Err(e) => assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}"),
        Ok(second) => assert_eq!(
            s.wait_for_job(&org.admin, second.into_inner().job_id.as_deref().unwrap()).await["status"],
            "succeeded"
        ),
    }
    assert_eq!(s.wait_for_job(&org.admin, &job).await["status"], "succeeded");
    let got = auditor.get_access_review(pb::GetAccessReviewRequest { id: review.clone() }).await.unwrap().into_inner();
    assert_eq!(got.status, "in_review");
    // Four test tokens without expiry and the unconfirmed admin.
    assert_eq!((got.findings, got.open_findings), (5, 5), "{got:?}");
    let hidden = stranger.get_access_review(pb::GetAccessReviewRequest { id: review.clone() }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let listed = auditor
        .list_stale_access(pb::ListStaleAccessRequest { review: Some(review.clone()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.results.len(), 5);
    let theirs = stranger.list_stale_access(pb::ListStaleAccessRequest::default()).await.unwrap().into_inner();
    assert!(theirs.results.is_empty());
    let f = listed.results[0].id.clone();
    let hidden = stranger.get_stale_access(pb::GetStaleAccessRequest { id: f.clone() }).await.unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let hidden = stranger
        .resolve_stale_access(pb::ResolveStaleAccessRequest {
            id: f.clone(),
            resolution: "revoked".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let early = admin
        .sign_off_access_review(pb::SignOffAccessReviewRequest { id: review.clone(), comment: None })
        .await
        .unwrap_err();
    assert_eq!(early.code(), tonic::Code::FailedPrecondition);
    let no_report =
        auditor.get_access_review_report(pb::GetAccessReviewReportRequest { id: review.clone() }).await.unwrap_err();
    assert_eq!(no_report.code(), tonic::Code::FailedPrecondition);

    // A review whose job failed shows as failed, and another may start.
    s.superuser_sql(&format!(
        "UPDATE access_reviews SET status = 'running', collected_at = NULL WHERE id = '{review}'"
    ))
    .await
    .unwrap();
    s.superuser_sql(&format!("UPDATE jobs SET status = 'failed', error = 'disk on fire' WHERE id = '{job}'"))
        .await
        .unwrap();
    let failed =
        auditor.get_access_review(pb::GetAccessReviewRequest { id: review.clone() }).await.unwrap().into_inner();
    assert_eq!((failed.status.as_str(), failed.error.as_deref()), ("failed", Some("disk on fire")));
    let listed = auditor
        .list_access_reviews(pb::ListAccessReviewsRequest { status: Some("failed".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.results.len(), 1);
    let next = admin
        .start_access_review(pb::StartAccessReviewRequest { stale_after_days: Some(7) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.stale_after_days, 7);
    assert_eq!(s.wait_for_job(&org.admin, next.job_id.as_deref().unwrap()).await["status"], "succeeded");
    assert_eq!(s.audit_count(org.id, "fail", "access_review").await, 1);
}

/// The quarterly schedule runs a review per organisation (here run now by an admin).
#[tokio::test(flavor = "multi_thread")]
async fn the_quarterly_schedule_starts_a_review() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (_, schedules) = s.get("/api/compliance/schedules/", &org.admin).await;
    let schedule = schedules["results"].as_array().unwrap().iter().find(|x| x["name"] == "access-review").cloned();
    let schedule = schedule.unwrap_or_else(|| panic!("{schedules}"));
    assert_eq!(schedule["cron"], "0 0 1 1,4,7,10 *", "{schedule}");
    let job = s.run_schedule(&org.admin, "access-review").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // REST embeds the job's result as JSON.
    let (_, review) = s.get(&format!("{REVIEWS}{}/", job["result"]["review"].as_str().unwrap()), &org.auditor).await;
    assert_eq!(review["status"], "in_review", "{review}");
    assert_eq!(review["findings"], 5);
    assert_eq!(review["started_by"], job["created_by"], "{review}");
}
