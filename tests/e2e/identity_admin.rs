//! Identity administration (issue 28): users and API tokens over REST and gRPC — roles, the last
//! admin, token rights capped by their user's role, revocation, expiry, deactivation, tenancy and
//! the hourly `last_used_at` / `last_seen_at`.

use custos_identity::{JwtConfig, JwtKey};
use custos_proto::v1 as pb;
use custos_proto::v1::identity_service_client::IdentityServiceClient;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use diesel::sql_types::{Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tonic::Code;

use crate::{audit_entries, column, id, seed_gdpr_body, superuser_sql, ts, user_id};

const USERS: &str = "/api/compliance/users/";
const TOKENS: &str = "/api/compliance/tokens/";
const WHOAMI: &str = "/api/compliance/whoami/";
const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-characters";

fn user_url(id: &str) -> String {
    format!("{USERS}{id}/")
}

fn revoke_url(id: &str) -> String {
    format!("{TOKENS}{id}/revoke/")
}

/// Creates a token through the API as `token`'s caller; answers (the secret, the token as shown).
async fn create_token(s: &TestServer, token: &str, body: Value) -> (String, Value) {
    let (status, created) = s.post(TOKENS, token, body).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().expect("the secret, once").to_owned();
    (secret, created["api_token"].clone())
}

async fn role_of(s: &TestServer, token: &str) -> String {
    let (status, me) = s.get(WHOAMI, token).await;
    assert_eq!(status, 200, "{me}");
    me["role"].as_str().unwrap().to_owned()
}

/// One timestamp column of one row, read past RLS.
async fn timestamp(s: &TestServer, sql: &str, id: &str) -> Option<OffsetDateTime> {
    #[derive(diesel::QueryableByName)]
    struct At {
        #[diesel(sql_type = Nullable<Timestamptz>)]
        at: Option<OffsetDateTime>,
    }
    let mut conn = s.db.superuser().await;
    diesel::sql_query(sql).bind::<Text, _>(id).get_result::<At>(&mut conn).await.expect(sql).at
}

fn error_field(err: &Value) -> &str {
    err["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn users_are_listed_filtered_searched_and_read_by_admins_and_auditors() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    for token in [&org.admin, &org.auditor] {
        let (status, page) = s.get(USERS, token).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["count"], 4);
        // In e-mail order.
        assert_eq!(
            column(&page, "email"),
            ["admin@acme.test", "auditor@acme.test", "editor@acme.test", "viewer@acme.test"]
        );
        assert!(page["results"].as_array().unwrap().iter().all(|u| u["is_active"] == true));
    }
    let (_, page) = s.get(&format!("{USERS}?role=editor"), &org.admin).await;
    assert_eq!(column(&page, "email"), ["editor@acme.test"]);
    let (_, page) = s.get(&format!("{USERS}?search=AUDIT"), &org.admin).await;
    assert_eq!(column(&page, "role"), ["auditor"]);
    let (_, page) = s.get(&format!("{USERS}?is_active=false"), &org.admin).await;
    assert_eq!(page["count"], 0);
    let (_, page) = s.get(&format!("{USERS}?page_size=3"), &org.admin).await;
    assert_eq!((page["count"].clone(), page["results"].as_array().unwrap().len()), (json!(4), 3));
    let (status, page2) = s.get(page["next"].as_str().unwrap(), &org.admin).await;
    assert_eq!(status, 200, "{page2}");
    assert_eq!(column(&page2, "email"), ["viewer@acme.test"]);

    // The admin has authenticated: seen; the viewer has not yet.
    let (_, admins) = s.get(&format!("{USERS}?role=admin"), &org.admin).await;
    assert!(admins["results"][0]["last_seen_at"].is_string(), "{admins}");
    let viewer_id = user_id(&s, &org, "viewer").await;
    let (status, viewer) = s.get(&user_url(&viewer_id), &org.auditor).await;
    assert_eq!(status, 200, "{viewer}");
    assert_eq!((viewer["email"].as_str(), viewer["role"].as_str()), (Some("viewer@acme.test"), Some("viewer")));

    // Bad input: a 400 naming the parameter; an id that names nothing: 404.
    let (status, err) = s.get(&format!("{USERS}?role=root"), &org.admin).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'role'"), "{err}");
    let (status, err) = s.get(&format!("{USERS}?colour=red"), &org.admin).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Unknown parameter"), "{err}");
    for bad in ["not-a-uuid", "0190a000-0000-7000-8000-000000000000"] {
        let (status, _) = s.get(&user_url(bad), &org.admin).await;
        assert_eq!(status, 404, "{bad}");
    }

    // Viewers and editors do not review access.
    for token in [&org.viewer, &org.editor] {
        let (status, err) = s.get(USERS, token).await;
        assert_eq!(status, 403, "{err}");
        let (status, _) = s.get(&user_url(&viewer_id), token).await;
        assert_eq!(status, 403);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_admins_change_users_and_each_change_is_audited() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let editor_id = user_id(&s, &org, "editor").await;
    // Auditors read but change nothing; viewers and editors neither.
    for token in [&org.auditor, &org.viewer, &org.editor] {
        let (status, err) = s.patch(&user_url(&editor_id), token, json!({ "role": "viewer" })).await;
        assert_eq!(status, 403, "{err}");
    }
    assert_eq!(role_of(&s, &org.editor).await, "editor");

    let (status, user) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "viewer" })).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!((user["role"].as_str(), user["is_active"].as_bool()), (Some("viewer"), Some(true)));
    // At once, although the editor's token was remembered a moment ago (the cache is 5 s).
    assert_eq!(role_of(&s, &org.editor).await, "viewer");
    let (status, _) = s.post("/api/compliance/frameworks/", &org.editor, seed_gdpr_body()).await;
    assert_eq!(status, 403, "a demoted user's token writes no more");

    // The same values again, or nothing at all: no change, nothing recorded.
    let (status, same) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "viewer" })).await;
    assert_eq!((status.as_u16(), &same["updated_at"]), (200, &user["updated_at"]));
    let (status, _) = s.patch(&user_url(&editor_id), &org.admin, json!({})).await;
    assert_eq!(status, 200);
    let entries = audit_entries(&s, &org, &editor_id).await;
    let updates: Vec<&Value> = entries.iter().filter(|e| e["action"] == "update").collect();
    assert_eq!(updates.len(), 1, "{entries:#?}");
    assert_eq!(updates[0]["resource_type"], "user");
    assert_eq!(
        (updates[0]["before"]["role"].as_str(), updates[0]["after"]["role"].as_str()),
        (Some("editor"), Some("viewer"))
    );
    assert_eq!(updates[0]["actor"], format!("user:{}", user_id(&s, &org, "admin").await));

    // Bad input names its field.
    let (status, err) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "root" })).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'role'"), "{err}");
    let (status, err) = s.patch(&user_url(&editor_id), &org.admin, json!({ "is_active": "maybe" })).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'is_active'"), "{err}");
    let (status, err) = s.patch(&user_url(&editor_id), &org.admin, json!({ "password": "x" })).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Unknown parameter"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_active_admin_can_be_neither_demoted_nor_deactivated() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let admin_id = user_id(&s, &org, "admin").await;
    let viewer_id = user_id(&s, &org, "viewer").await;
    let editor_id = user_id(&s, &org, "editor").await;
    for body in
        [json!({ "role": "editor" }), json!({ "is_active": false }), json!({ "role": "auditor", "is_active": false })]
    {
        let (status, err) = s.patch(&user_url(&admin_id), &org.admin, body.clone()).await;
        assert_eq!(status, 409, "{body}: {err}");
        assert_eq!(err["error"], "Last active admin");
        assert!(err["details"].as_str().unwrap().contains("last active admin"), "{err}");
    }
    // A second admin, deactivated, does not count.
    let (status, _) = s.patch(&user_url(&viewer_id), &org.admin, json!({ "role": "admin" })).await;
    assert_eq!(status, 200);
    let (status, err) = s.patch(&user_url(&viewer_id), &org.admin, json!({ "is_active": false })).await;
    assert_eq!(status, 200, "{err}");
    for body in [json!({ "role": "viewer" }), json!({ "is_active": false })] {
        let (status, err) = s.patch(&user_url(&admin_id), &org.admin, body).await;
        assert_eq!((status.as_u16(), err["error"].as_str()), (409, Some("Last active admin")), "{err}");
    }
    // With another active admin, the first may step down; then the other is the last.
    let (status, _) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "admin" })).await;
    assert_eq!(status, 200);
    let (status, me) = s.patch(&user_url(&admin_id), &org.admin, json!({ "role": "auditor" })).await;
    assert_eq!((status.as_u16(), me["role"].as_str()), (200, Some("auditor")), "{me}");
    assert_eq!(role_of(&s, &org.admin).await, "auditor");
    let (status, err) = s.patch(&user_url(&editor_id), &org.editor, json!({ "is_active": false })).await;
    assert_eq!(status, 409, "{err}");
    let (_, admins) = s.get(&format!("{USERS}?role=admin&is_active=true"), &org.editor).await;
    assert_eq!(column(&admins, "email"), ["editor@acme.test"]);

    // Two admins demoting each other at the same moment: one wins, the other is the last admin.
    let (status, _) = s.patch(&user_url(&admin_id), &org.editor, json!({ "role": "admin" })).await;
    assert_eq!(status, 200);
    for _ in 0..5 {
        let (editor_url, admin_url) = (user_url(&editor_id), user_url(&admin_id));
        let (one, other) = tokio::join!(
            s.patch(&editor_url, &org.admin, json!({ "role": "viewer" })),
            s.patch(&admin_url, &org.editor, json!({ "role": "viewer" })),
        );
        let mut statuses = [one.0.as_u16(), other.0.as_u16()];
        statuses.sort();
        // The loser may also have been demoted already and be refused as a non-admin (403).
        assert!(statuses == [200, 403] || statuses == [200, 409], "{statuses:?}: {} {}", one.1, other.1);
        let (_, admins) = s.get(&format!("{USERS}?role=admin&is_active=true"), &org.auditor).await;
        assert_eq!(admins["count"], 1, "exactly one admin left: {admins}");
        // Both admins again for the next round.
        let (winner_token, loser) = if one.0 == 200 { (&org.admin, &editor_id) } else { (&org.editor, &admin_id) };
        let (status, _) = s.patch(&user_url(loser), winner_token, json!({ "role": "admin" })).await;
        assert_eq!(status, 200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_created_with_their_secret_once_listed_without_it_and_revoked() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let viewer_id = user_id(&s, &org, "viewer").await;
    let (status, created) = s.post(TOKENS, &org.viewer, json!({ "name": "ci pipeline" })).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    let token = created["api_token"].clone();
    assert!(secret.starts_with("cst_") && secret.starts_with(token["token_prefix"].as_str().unwrap()));
    assert_eq!(token["user_id"], viewer_id.as_str());
    assert_eq!(token["user_email"], "viewer@acme.test");
    assert_eq!((token["role"].as_str(), token["effective_role"].as_str()), (Some("viewer"), Some("viewer")));
    assert_eq!((token["active"].as_bool(), token["last_used_at"].is_null()), (Some(true), true));
    assert!(token.get("token_hash").is_none() && token.get("token").is_none(), "{token}");
    assert_eq!(role_of(&s, &secret).await, "viewer");

    // Listings never carry a secret; non-admins see their own tokens only.
    let (status, mine) = s.get(TOKENS, &org.viewer).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(column(&mine, "name"), ["test", "ci pipeline"]);
    for token in [&org.admin, &org.auditor] {
        let (status, all) = s.get(TOKENS, token).await;
        assert_eq!((status.as_u16(), all["count"].as_i64()), (200, Some(5)), "{all}");
        let text = all.to_string();
        for secret in [&secret, &org.admin, &org.viewer, &org.editor, &org.auditor] {
            assert!(!text.contains(secret.as_str()), "a secret in a listing");
        }
        assert!(
            all["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|t| t.get("token").is_none() && t.get("token_hash").is_none())
        );
    }
    let (_, page) = s.get(&format!("{TOKENS}?user={viewer_id}"), &org.auditor).await;
    assert_eq!(column(&page, "name"), ["test", "ci pipeline"]);
    let (_, page) = s.get(&format!("{TOKENS}?search=PIPELINE"), &org.admin).await;
    assert_eq!(column(&page, "name"), ["ci pipeline"]);
    let (_, page) =
        s.get(&format!("{TOKENS}?search={}", &token["token_prefix"].as_str().unwrap()[4..]), &org.admin).await;
    assert_eq!(column(&page, "name"), ["ci pipeline"], "found by its prefix");
    // An editor asking for another's tokens still sees only their own (none of them named so).
    let (_, page) = s.get(&format!("{TOKENS}?user={viewer_id}"), &org.editor).await;
    assert_eq!(page["count"], 0);
    let (status, err) = s.get(&format!("{TOKENS}?user=nobody"), &org.admin).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'user'"), "{err}");

    // The owner revokes it: refused at once (the cache is 5 s), listed inactive, audited.
    let (status, revoked) = s.post(&revoke_url(&id(&token)), &org.viewer, json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string() && revoked["active"] == false, "{revoked}");
    let (status, _) = s.get(WHOAMI, &secret).await;
    assert_eq!(status, 401, "a revoked token is refused");
    let (_, active) = s.get(&format!("{TOKENS}?active=true"), &org.viewer).await;
    assert_eq!(column(&active, "name"), ["test"]);
    let (_, inactive) = s.get(&format!("{TOKENS}?active=false"), &org.viewer).await;
    assert_eq!(column(&inactive, "name"), ["ci pipeline"]);
    // Again: nothing changes.
    let (status, again) = s.post(&revoke_url(&id(&token)), &org.viewer, json!({})).await;
    assert_eq!((status.as_u16(), &again["revoked_at"]), (200, &revoked["revoked_at"]));
    let entries = audit_entries(&s, &org, &id(&token)).await;
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    // Newest first: the refused use after the revocation is recorded too.
    assert_eq!(actions, ["login_failed", "revoke", "create"]);
    assert_eq!(entries[0]["after"]["reason"], "token revoked");
    assert_eq!(entries[2]["after"]["token_prefix"], token["token_prefix"]);
    assert!(entries.iter().all(|e| !e.to_string().contains(&secret)), "the secret is in no entry");
    // The viewer's own first token still works.
    assert_eq!(role_of(&s, &org.viewer).await, "viewer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_never_has_more_rights_than_its_creator_or_its_user() {
    let s = TestServer::start_with(ServerOptions {
        jwt: Some(JwtConfig { key: JwtKey::Hs256(HS_SECRET.into()), issuer: None, audience: None }),
        ..Default::default()
    })
    .await;
    let org = s.org("acme").await;
    let viewer_id = user_id(&s, &org, "viewer").await;
    let editor_id = user_id(&s, &org, "editor").await;
    // More than one holds: 403 (editor and auditor are incomparable).
    for (token, role) in
        [(&org.viewer, "editor"), (&org.editor, "admin"), (&org.editor, "auditor"), (&org.auditor, "editor")]
    {
        let (status, err) = s.post(TOKENS, token, json!({ "name": "x", "role": role })).await;
        assert_eq!(status, 403, "{role}: {err}");
        assert!(err["details"].as_str().unwrap().contains("more rights than its creator"), "{err}");
    }
    // Within: fine, and the default is the creator's own role.
    let (editor_viewer, t) = create_token(&s, &org.editor, json!({ "name": "read only", "role": "viewer" })).await;
    assert_eq!(t["effective_role"], "viewer");
    assert_eq!(role_of(&s, &editor_viewer).await, "viewer");
    // A viewer-limited token of an admin cannot mint an admin token.
    let (admin_viewer, _) = create_token(&s, &org.admin, json!({ "name": "limited", "role": "viewer" })).await;
    let (status, _) = s.post(TOKENS, &admin_viewer, json!({ "name": "escalate", "role": "admin" })).await;
    assert_eq!(status, 403);
    let (_, t) = create_token(&s, &admin_viewer, json!({ "name": "default" })).await;
    assert_eq!(t["role"], "viewer", "the default is the creator's effective role");

    // Admins create tokens for others, within both their role and the owner's.
    let (for_viewer, t) = create_token(&s, &org.admin, json!({ "name": "for viewer", "user_id": viewer_id })).await;
    assert_eq!((t["user_id"].as_str(), t["role"].as_str()), (Some(viewer_id.as_str()), Some("viewer")));
    assert_eq!(role_of(&s, &for_viewer).await, "viewer");
    let (status, err) =
        s.post(TOKENS, &org.admin, json!({ "name": "x", "user_id": viewer_id, "role": "editor" })).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'role'"), "{err}");
    // Non-admins do not.
    let (status, err) = s.post(TOKENS, &org.editor, json!({ "name": "x", "user_id": viewer_id })).await;
    assert_eq!(status, 403, "{err}");

    // Bad input names its field.
    for (body, field) in [
        (json!({ "name": "x", "expires_at": ts(time::Duration::minutes(-1)) }), "expires_at"),
        (json!({ "name": "x", "expires_at": "tomorrow" }), "expires_at"),
        (json!({ "name": "  " }), "name"),
        (json!({}), "name"),
        (json!({ "name": "x", "role": "root" }), "role"),
        (json!({ "name": "x", "user_id": "nobody" }), "user_id"),
        (json!({ "name": "x", "user_id": "0190a000-0000-7000-8000-000000000000" }), "user_id"),
    ] {
        let (status, err) = s.post(TOKENS, &org.admin, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(error_field(&err), format!("Invalid value for '{field}'"), "{body}: {err}");
    }
    // The secret is never the client's to choose: a `token` sent back, as output-only fields
    // may be, is ignored.
    let (secret, _) = create_token(&s, &org.admin, json!({ "name": "x", "token": "cst_mine" })).await;
    assert_ne!(secret, "cst_mine");

    // A bearer-token caller has no user row to own a token; an admin one may name the owner.
    let jwt = |role: &str| {
        let claims = json!({ "sub": "sso|1", "org": "acme", "role": role, "exp": OffsetDateTime::now_utc().unix_timestamp() + 300 });
        jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(HS_SECRET.as_bytes())).unwrap()
    };
    let post_as = |bearer: String, body: Value| {
        let s = &s;
        async move {
            let resp = s.http.post(format!("{}{TOKENS}", s.base)).bearer_auth(bearer).json(&body).send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    let (status, err) = post_as(jwt("editor"), json!({ "name": "x" })).await;
    assert_eq!((status, error_field(&err)), (400, "Invalid value for 'user_id'"), "{err}");
    assert!(err["details"].as_str().unwrap().contains("bearer token"), "{err}");
    let (status, created) = post_as(jwt("admin"), json!({ "name": "sso-made", "user_id": editor_id })).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["api_token"]["role"], "editor");
    let (status, _) = post_as(jwt("editor"), json!({ "name": "x", "user_id": editor_id })).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_acts_with_its_role_capped_by_its_users_current_role() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let editor_id = user_id(&s, &org, "editor").await;
    let (editor_token, t) = create_token(&s, &org.editor, json!({ "name": "writer", "role": "editor" })).await;
    assert_eq!(t["effective_role"], "editor");
    let (status, _) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "auditor" })).await;
    assert_eq!(status, 200);
    // Editor ∧ auditor = viewer: neither the old rights nor the new ones.
    assert_eq!(role_of(&s, &editor_token).await, "viewer");
    let (status, _) = s.post("/api/compliance/frameworks/", &editor_token, seed_gdpr_body()).await;
    assert_eq!(status, 403);
    let (status, _) = s.get("/api/compliance/audit-log/", &editor_token).await;
    assert_eq!(status, 403);
    let (_, page) = s.get(&format!("{TOKENS}?search=writer"), &org.admin).await;
    assert_eq!(
        (page["results"][0]["role"].as_str(), page["results"][0]["effective_role"].as_str()),
        (Some("editor"), Some("viewer"))
    );
    // The token made by the operator follows its user's role, whatever it is.
    assert_eq!(role_of(&s, &org.editor).await, "auditor");
    let (status, _) = s.patch(&user_url(&editor_id), &org.admin, json!({ "role": "admin" })).await;
    assert_eq!(status, 200);
    assert_eq!(role_of(&s, &editor_token).await, "editor", "promotion does not go beyond the token's own role");
    assert_eq!(role_of(&s, &org.editor).await, "admin");
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_expired_and_deactivated_users_tokens_are_refused() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let editor_id = user_id(&s, &org, "editor").await;
    // Expired.
    let (expiring, t) =
        create_token(&s, &org.viewer, json!({ "name": "short", "expires_at": ts(time::Duration::seconds(2)) })).await;
    assert!(t["expires_at"].is_string());
    assert_eq!(role_of(&s, &expiring).await, "viewer");
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    // Expiry is the database's to decide: a remembered lookup is at most 5 s old, so ask after that.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (status, _) = s.get(WHOAMI, &expiring).await;
    assert_eq!(status, 401, "an expired token is refused");
    let (_, page) = s.get(&format!("{TOKENS}?active=false"), &org.viewer).await;
    assert_eq!(column(&page, "name"), ["short"]);

    // Revoked (by an admin).
    let (revoked, t) = create_token(&s, &org.viewer, json!({ "name": "to revoke" })).await;
    assert_eq!(role_of(&s, &revoked).await, "viewer");
    let (status, _) = s.post(&revoke_url(&id(&t)), &org.admin, json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = s.get(WHOAMI, &revoked).await;
    assert_eq!(status, 401, "a revoked token is refused");

    // A deactivated user's tokens, every one of them, at once; reactivated, they work again.
    let (second, _) = create_token(&s, &org.editor, json!({ "name": "second" })).await;
    assert_eq!(role_of(&s, &second).await, "editor");
    let (status, user) = s.patch(&user_url(&editor_id), &org.admin, json!({ "is_active": false })).await;
    assert_eq!((status.as_u16(), user["is_active"].as_bool()), (200, Some(false)), "{user}");
    for token in [&org.editor, &second] {
        let (status, _) = s.get(WHOAMI, token).await;
        assert_eq!(status, 401, "a deactivated user's token is refused");
    }
    let (status, err) = s.post(TOKENS, &org.admin, json!({ "name": "x", "user_id": editor_id })).await;
    assert_eq!(status, 409, "no token for a deactivated user: {err}");
    let (_, page) = s.get(&format!("{USERS}?is_active=false"), &org.auditor).await;
    assert_eq!(column(&page, "email"), ["editor@acme.test"]);
    let (status, _) = s.patch(&user_url(&editor_id), &org.admin, json!({ "is_active": true })).await;
    assert_eq!(status, 200);
    assert_eq!(role_of(&s, &second).await, "editor");
    assert_eq!(s.audit_count(org.id, "update", "user").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_owner_or_an_admin_revokes_a_token() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (editor_token, t) = create_token(&s, &org.editor, json!({ "name": "editor's" })).await;
    // A viewer cannot see it (404); an auditor sees it but may not (403).
    let (status, _) = s.post(&revoke_url(&id(&t)), &org.viewer, json!({})).await;
    assert_eq!(status, 404);
    let (status, err) = s.post(&revoke_url(&id(&t)), &org.auditor, json!({})).await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(role_of(&s, &editor_token).await, "editor", "still works");
    let (status, _) = s.post(&revoke_url("not-a-uuid"), &org.admin, json!({})).await;
    assert_eq!(status, 404);
    let (status, _) = s.post(&revoke_url(&id(&t)), &org.admin, json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = s.get(WHOAMI, &editor_token).await;
    assert_eq!(status, 401);
    assert_eq!(s.audit_count(org.id, "revoke", "api_token").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn last_used_at_and_last_seen_at_are_written_at_most_hourly() {
    // No remembered lookups: every request asks the database.
    let s = TestServer::start_with(ServerOptions { auth_cache_seconds: Some(0), ..Default::default() }).await;
    let org = s.org("acme").await;
    let (secret, t) = create_token(&s, &org.viewer, json!({ "name": "hourly" })).await;
    let token_id = id(&t);
    let viewer_id = user_id(&s, &org, "viewer").await;
    let used = "SELECT last_used_at AS at FROM api_tokens WHERE id = $1::uuid";
    let seen = "SELECT last_seen_at AS at FROM users WHERE id = $1::uuid";
    assert_eq!(timestamp(&s, used, &token_id).await, None);
    role_of(&s, &secret).await;
    let first = timestamp(&s, used, &token_id).await.expect("marked used");
    let first_seen = timestamp(&s, seen, &viewer_id).await.expect("marked seen");
    for _ in 0..3 {
        role_of(&s, &secret).await;
    }
    assert_eq!(timestamp(&s, used, &token_id).await, Some(first), "not moved within the hour");
    assert_eq!(timestamp(&s, seen, &viewer_id).await, Some(first_seen), "not moved within the hour");
    let (_, page) = s.get(&format!("{TOKENS}?search=hourly"), &org.viewer).await;
    assert!(page["results"][0]["last_used_at"].is_string(), "{page}");

    // Over an hour ago: the next use moves both.
    superuser_sql(
        &s,
        &format!(
            "UPDATE api_tokens SET last_used_at = now() - interval '61 minutes' WHERE id = '{token_id}';
             UPDATE users SET last_seen_at = now() - interval '61 minutes' WHERE id = '{viewer_id}'"
        ),
    )
    .await;
    let old = timestamp(&s, used, &token_id).await.unwrap();
    role_of(&s, &secret).await;
    let moved = timestamp(&s, used, &token_id).await.unwrap();
    assert!(moved > old + time::Duration::minutes(60), "{old} → {moved}");
    let seen_now = timestamp(&s, seen, &viewer_id).await.unwrap();
    assert!(seen_now > OffsetDateTime::now_utc() - time::Duration::minutes(1), "{seen_now}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_cannot_read_or_change_anothers_users_or_tokens() {
    let s = TestServer::start().await;
    let a = s.org("alpha").await;
    let b = s.org("bravo").await;
    let a_editor = user_id(&s, &a, "editor").await;
    let (a_secret, a_token) = create_token(&s, &a.editor, json!({ "name": "alpha's" })).await;
    let a_token = id(&a_token);

    // REST: B's admin sees only B, and A's ids name nothing.
    let (_, users) = s.get(USERS, &b.admin).await;
    assert!(column(&users, "email").iter().all(|e| e.ends_with("@bravo.test")), "{users}");
    let (_, tokens) = s.get(TOKENS, &b.admin).await;
    assert_eq!(tokens["count"], 4);
    let (_, tokens) = s.get(&format!("{TOKENS}?user={a_editor}"), &b.admin).await;
    assert_eq!(tokens["count"], 0);
    let (status, _) = s.get(&user_url(&a_editor), &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) = s.patch(&user_url(&a_editor), &b.admin, json!({ "is_active": false })).await;
    assert_eq!(status, 404);
    let (status, _) = s.post(&revoke_url(&a_token), &b.admin, json!({})).await;
    assert_eq!(status, 404);
    let (status, err) = s.post(TOKENS, &b.admin, json!({ "name": "x", "user_id": a_editor })).await;
    assert_eq!((status.as_u16(), error_field(&err)), (400, "Invalid value for 'user_id'"), "{err}");

    // gRPC: the same.
    let mut c = IdentityServiceClient::new(s.grpc(Some(&b.admin)).await);
    let err = c.get_user(pb::GetUserRequest { id: a_editor.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .update_user(pb::UpdateUserRequest {
            id: a_editor.clone(),
            user: Some(pb::UserInput { role: "viewer".into(), is_active: Some(false) }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = c.revoke_api_token(pb::RevokeApiTokenRequest { id: a_token.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let list = c.list_users(pb::ListUsersRequest::default()).await.unwrap().into_inner();
    assert!(list.results.iter().all(|u| u.email.ends_with("@bravo.test")));
    let list = c
        .list_api_tokens(pb::ListApiTokensRequest { user: Some(a_editor.clone()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.count, 0);

    // A is untouched.
    let (_, user) = s.get(&user_url(&a_editor), &a.admin).await;
    assert_eq!((user["role"].as_str(), user["is_active"].as_bool()), (Some("editor"), Some(true)));
    assert_eq!(role_of(&s, &a_secret).await, "editor");
    assert_eq!(s.audit_count(b.id, "update", "user").await, 0);
    assert_eq!(s.audit_count(a.id, "revoke", "api_token").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_administration_over_grpc() {
    let s = TestServer::start().await;
    let org: TestOrg = s.org("acme").await;
    let mut admin = IdentityServiceClient::new(s.grpc(Some(&org.admin)).await);
    let mut viewer = IdentityServiceClient::new(s.grpc(Some(&org.viewer)).await);

    let users = admin
        .list_users(pb::ListUsersRequest { role: Some("viewer".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.count, 1);
    let viewer_user = users.results[0].clone();
    let got = admin.get_user(pb::GetUserRequest { id: viewer_user.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.email, "viewer@acme.test");
    let err = viewer.list_users(pb::ListUsersRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err =
        admin.list_users(pb::ListUsersRequest { role: Some("root".into()), ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A partial update by mask.
    let changed = admin
        .update_user(pb::UpdateUserRequest {
            id: viewer_user.id.clone(),
            user: Some(pb::UserInput { role: "editor".into(), is_active: None }),
            update_mask: Some(custos_proto::FieldMask { paths: vec!["role".into()] }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((changed.role.as_str(), changed.is_active), ("editor", true));
    let me = admin.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    let err = admin
        .update_user(pb::UpdateUserRequest {
            id: me.user_id.clone().unwrap(),
            user: Some(pb::UserInput { role: "admin".into(), is_active: Some(false) }),
            update_mask: Some(custos_proto::FieldMask { paths: vec!["is_active".into()] }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "the last admin");

    // Tokens: the secret once, then listed and revoked.
    let created = viewer
        .create_api_token(pb::CreateApiTokenRequest { name: "grpc".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(created.token.starts_with("cst_"));
    let token = created.api_token.unwrap();
    assert_eq!(token.effective_role, "editor", "the viewer is an editor now");
    let err = viewer
        .create_api_token(pb::CreateApiTokenRequest {
            name: "x".into(),
            role: Some("admin".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = viewer
        .create_api_token(pb::CreateApiTokenRequest {
            name: "x".into(),
            expires_at: Some("2000-01-01T00:00:00Z".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mine = viewer.list_api_tokens(pb::ListApiTokensRequest::default()).await.unwrap().into_inner();
    assert_eq!(mine.count, 2);
    let err = viewer
        .revoke_api_token(pb::RevokeApiTokenRequest { id: id_of_admins_token(&mut admin).await })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let revoked =
        viewer.revoke_api_token(pb::RevokeApiTokenRequest { id: token.id.clone() }).await.unwrap().into_inner();
    assert!(revoked.revoked_at.is_some() && !revoked.active);
    let err = IdentityServiceClient::new(s.grpc(Some(&created.token)).await)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
}

async fn id_of_admins_token(admin: &mut IdentityServiceClient<custos_testkit::GrpcChannel>) -> String {
    let me = admin.who_am_i(pb::WhoAmIRequest {}).await.unwrap().into_inner();
    let list = admin
        .list_api_tokens(pb::ListApiTokensRequest { user: me.user_id, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    list.results[0].id.clone()
}
