//! The secrets vault (seed 004) over REST and gRPC: values stored encrypted and never answered but
//! by a reveal; reveals only for admins and the owner, with a reason, each reveal and refusal
//! audited; versions and rotation; the two-person rule; tenancy and roles; and no plaintext
//! value or master key anywhere in the database after a full round.

use custos_core::Role;
use custos_proto::v1 as pb;
use custos_proto::v1::secrets_service_client::SecretsServiceClient;
use custos_testkit::{TestOrg, TestServer};
use diesel_async::RunQueryDsl;
use serde_json::{Value, json};

const SECRETS: &str = "/api/compliance/secrets/";

async fn user_id(s: &TestServer, org: &TestOrg, email: &str) -> String {
    let (_, users) = s.get(&format!("/api/compliance/users/?search={email}"), &org.admin).await;
    users["results"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn reveal(s: &TestServer, token: &str, id: &str, query: &str) -> (u16, Value) {
    let (status, body) = s.get(&format!("{SECRETS}{id}/reveal/?{query}"), token).await;
    (status.as_u16(), body)
}

/// The organisation's audit entries of `action` on secrets (waiting for the sequencer).
async fn audited(s: &TestServer, org: &TestOrg, action: &str, at_least: usize) -> Vec<Value> {
    for _ in 0..100 {
        let (_, page) =
            s.get(&format!("/api/compliance/audit-log/?resource_type=secret&action={action}"), &org.auditor).await;
        let rows = page["results"].as_array().cloned().unwrap_or_default();
        if rows.len() >= at_least {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("fewer than {at_least} {action} entries");
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_stored_encrypted_revealed_to_admins_and_owners_with_a_reason_and_audited() {
    // Everything the server logs, down to debug, is searched for the values at the end.
    custos_testkit::init_logging_at("debug");
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let owner = user_id(&s, &org, "editor@acme.test").await;

    // The seed's body; the value never comes back.
    let body = json!({"name": "Stripe API Key", "secret_type": "api_key", "secret_value": "sk_live_51Hx-very-secret",
                      "rotation_enabled": true, "rotation_days": 90, "owner": owner});
    assert_eq!(s.post(SECRETS, &org.viewer, body.clone()).await.0, 403);
    let (status, created) = s.post(SECRETS, &org.editor, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!((created["secret_value"].clone(), created["version"].clone()), (json!("********"), json!(1)));
    assert!(created["next_rotation_at"].is_string() && created["rotation_due"] == false, "{created}");
    assert!(!created.to_string().contains("sk_live"));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(s.post(SECRETS, &org.editor, body.clone()).await.0, 409);
    let (status, err) =
        s.post(SECRETS, &org.editor, json!({"name": "x", "secret_type": "sorcery", "secret_value": "v"})).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["details"].to_string().contains("api_key"), "{err}");
    assert_eq!(s.post(SECRETS, &org.editor, json!({"name": "y", "secret_type": "token"})).await.0, 400);

    // Lists and filters; another organisation sees nothing.
    let (_, list) = s.get(&format!("{SECRETS}?secret_type=api_key&owner={owner}&search=stripe"), &org.viewer).await;
    assert_eq!(list["count"], 1, "{list}");
    let (_, list) = s.get(&format!("{SECRETS}?rotation_due=true"), &org.viewer).await;
    assert_eq!(list["count"], 0, "{list}");
    let (_, list) = s.get(SECRETS, &other.admin).await;
    assert_eq!(list["count"], 0);
    assert_eq!(s.get(&format!("{SECRETS}{id}/"), &other.admin).await.0, 404);

    // Reveal: a reason is required; admins and the owner only; another organisation: 404.
    assert_eq!(reveal(&s, &org.admin, &id, "").await.0, 400);
    let (status, shown) = reveal(&s, &org.admin, &id, "reason=quarterly+key+check").await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(
        (shown["secret_value"].clone(), shown["version"].clone()),
        (json!("sk_live_51Hx-very-secret"), json!(1))
    );
    assert_eq!(reveal(&s, &org.editor, &id, "reason=I+own+it").await.0, 200);
    for token in [&org.viewer, &org.auditor] {
        assert_eq!(reveal(&s, token, &id, "reason=curious").await.0, 403);
    }
    assert_eq!(reveal(&s, &other.admin, &id, "reason=curious").await.0, 404);
    let reveals = audited(&s, &org, "reveal", 2).await;
    assert!(reveals.iter().any(|e| e["after"].to_string().contains("quarterly key check")), "{reveals:?}");
    let refusals = audited(&s, &org, "reveal_refused", 2).await;
    assert!(refusals[0]["after"].to_string().contains("only admins and the secret's owner"), "{refusals:?}");
    assert!(!reveals.iter().chain(&refusals).any(|e| e.to_string().contains("sk_live")));

    // Rotation: a new version; earlier ones to admins only, the last five kept.
    assert_eq!(s.post(&format!("{SECRETS}{id}/rotate/"), &org.viewer, json!({"new_value": "x"})).await.0, 403);
    assert_eq!(s.post(&format!("{SECRETS}{id}/rotate/"), &org.editor, json!({"new_value": ""})).await.0, 400);
    let (status, rotated) =
        s.post(&format!("{SECRETS}{id}/rotate/"), &org.editor, json!({"new_value": "sk_live_v2"})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["version"], 2);
    assert!(rotated["last_rotated_at"].is_string());
    assert_eq!(reveal(&s, &org.editor, &id, "reason=r").await.1["secret_value"], "sk_live_v2");
    assert_eq!(reveal(&s, &org.editor, &id, "reason=r&version=1").await.0, 403);
    assert_eq!(reveal(&s, &org.admin, &id, "reason=r&version=1").await.1["secret_value"], "sk_live_51Hx-very-secret");
    for v in 3..=7 {
        let (status, _) =
            s.post(&format!("{SECRETS}{id}/rotate/"), &org.admin, json!({"new_value": format!("sk_live_v{v}")})).await;
        assert_eq!(status, 200);
    }
    assert_eq!(reveal(&s, &org.admin, &id, "reason=r&version=2").await.0, 404, "only the last five versions are kept");
    assert_eq!(reveal(&s, &org.admin, &id, "reason=r&version=3").await.1["secret_value"], "sk_live_v3");

    // Metadata changes; the value only by rotation; deletion by admins.
    let (status, patched) = s.patch(&format!("{SECRETS}{id}/"), &org.editor, json!({"description": "Payments"})).await;
    assert_eq!((status.as_u16(), patched["description"].clone()), (200, json!("Payments")));
    assert_eq!(s.patch(&format!("{SECRETS}{id}/"), &org.editor, json!({"secret_value": "nope"})).await.0, 400);
    // An editor cannot make someone else (or themselves) the owner, nor lift the two-person rule.
    let viewer_id = user_id(&s, &org, "viewer@acme.test").await;
    assert_eq!(s.patch(&format!("{SECRETS}{id}/"), &org.editor, json!({"owner": viewer_id})).await.0, 403);
    assert_eq!(s.patch(&format!("{SECRETS}{id}/"), &org.editor, json!({"two_person_rule": true})).await.0, 403);
    let (status, moved) = s.patch(&format!("{SECRETS}{id}/"), &org.admin, json!({"owner": viewer_id})).await;
    assert_eq!((status.as_u16(), moved["owner"].clone()), (200, json!(viewer_id)));
    assert_eq!(reveal(&s, &org.editor, &id, "reason=no+longer+mine").await.0, 403);
    assert_eq!(s.patch(&format!("{SECRETS}{id}/"), &org.admin, json!({"owner": owner})).await.0, 200);
    assert_eq!(s.patch(&format!("{SECRETS}{id}/"), &other.admin, json!({"description": "x"})).await.0, 404);

    // gRPC: the same rules.
    let mut viewer = SecretsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let request = pb::RevealSecretRequest { id: id.clone(), reason: "grpc".into(), version: None };
    assert_eq!(viewer.reveal_secret(request.clone()).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    let mut admin = SecretsServiceClient::new(s.grpc(Some(&org.admin)).await);
    assert_eq!(admin.reveal_secret(request.clone()).await.unwrap().into_inner().secret_value, "sk_live_v7");
    let mut stranger = SecretsServiceClient::new(s.grpc(Some(&other.admin)).await);
    assert_eq!(stranger.reveal_secret(request).await.unwrap_err().code(), tonic::Code::NotFound);
    let listed = admin.list_secrets(pb::ListSecretsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.results[0].secret_value, "********");

    // Nothing in any table holds a value or the master key in the clear.
    let master = std::fs::read_to_string(s.config().data_dir.join(custos_vault::keys::MASTER_KEY_FILE_NAME)).unwrap();
    let mut needles: Vec<String> = (2..=7).map(|v| format!("sk_live_v{v}")).collect();
    needles.push("sk_live_51Hx-very-secret".into());
    needles.push(master.trim().to_owned());
    scan_database(&s, &needles).await;
    let logs = custos_testkit::captured_logs();
    assert!(logs.len() > 1_000, "the server's debug logs were captured ({} bytes)", logs.len());
    for needle in &needles {
        assert!(!logs.contains(needle.as_str()), "the server's log output holds a secret in the clear");
    }

    assert_eq!(s.delete(&format!("{SECRETS}{id}/"), &org.editor).await.0, 403);
    assert_eq!(s.delete(&format!("{SECRETS}{id}/"), &org.admin).await.0.as_u16() / 100, 2);
    assert_eq!(s.get(&format!("{SECRETS}{id}/"), &org.admin).await.0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_two_person_rule_needs_another_admins_approval_used_once() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let second =
        s.app().identity.issue_token(&org.slug, "second-admin@acme.test", Role::Admin, "test").await.unwrap().token;
    let body = json!({"name": "Root CA key", "secret_type": "encryption_key", "secret_value": "-----BEGIN KEY-----", "two_person_rule": true});
    let (_, created) = s.post(SECRETS, &org.admin, body).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["two_person_rule"], true);

    let (status, refused) = reveal(&s, &org.admin, &id, "reason=renewal").await;
    assert_eq!(status, 403);
    assert!(refused["details"].to_string().contains("two-person"), "{refused}");
    let requests = format!("{SECRETS}{id}/reveal_requests/");
    assert_eq!(s.post(&requests, &org.admin, json!({})).await.0, 400, "a reason is required");
    let (status, request) = s.post(&requests, &org.admin, json!({"reason": "certificate renewal"})).await;
    assert_eq!(status, 201, "{request}");
    assert_eq!(request["status"], "pending");
    let approve = format!("{requests}{}/approve/", request["id"].as_str().unwrap());
    assert_eq!(s.post(&approve, &org.admin, json!({})).await.0, 403, "not by the requester");
    assert_eq!(s.post(&approve, &org.editor, json!({})).await.0, 403, "admins only");
    let (status, approved) = s.post(&approve, &second, json!({})).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert!(approved["expires_at"].is_string());
    assert_eq!(s.post(&approve, &second, json!({})).await.0, 409, "approved once");
    // The requester reveals once; the approval is then used.
    let (status, shown) = reveal(&s, &org.admin, &id, "reason=renewal").await;
    assert_eq!((status, shown["secret_value"].clone()), (200, json!("-----BEGIN KEY-----")));
    assert_eq!(reveal(&s, &org.admin, &id, "reason=again").await.0, 403);
    // The approver's approval was not for themselves.
    assert_eq!(reveal(&s, &second, &id, "reason=me+too").await.0, 403);
    let (_, list) = s.get(&requests, &org.admin).await;
    assert_eq!(list["results"][0]["status"], "used", "{list}");
    assert_eq!(s.get(&requests, &org.viewer).await.0, 403);
}

/// Every text and byte column of every table of the public schema, searched for each needle
/// (as text, and as bytes in the clear).
async fn scan_database(s: &TestServer, needles: &[String]) {
    #[derive(diesel::QueryableByName)]
    struct Column {
        #[diesel(sql_type = diesel::sql_types::Text)]
        table_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        data_type: String,
    }
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = s.db.superuser().await;
    let columns: Vec<Column> = diesel::sql_query(
        "SELECT c.table_name::text AS table_name, c.column_name::text AS column_name, c.data_type::text AS data_type
           FROM information_schema.columns c JOIN information_schema.tables t
             ON t.table_schema = c.table_schema AND t.table_name = c.table_name
          WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
            AND c.data_type IN ('text', 'bytea', 'jsonb', 'json', 'character varying', 'ARRAY')",
    )
    .load(&mut conn)
    .await
    .unwrap();
    assert!(columns.len() > 50, "{} columns", columns.len());
    for c in &columns {
        for needle in needles {
            let (t, col) = (&c.table_name, &c.column_name);
            let sql = if c.data_type == "bytea" {
                format!("SELECT count(*) AS n FROM \"{t}\" WHERE position(convert_to($1, 'UTF8') IN \"{col}\") > 0")
            } else {
                format!("SELECT count(*) AS n FROM \"{t}\" WHERE strpos(\"{col}\"::text, $1) > 0")
            };
            let n: N = diesel::sql_query(&sql)
                .bind::<diesel::sql_types::Text, _>(needle)
                .get_result(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(n.n, 0, "{}.{} holds a secret in the clear", c.table_name, c.column_name);
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Verifier {
    #[diesel(sql_type = diesel::sql_types::Text)]
    rolpassword: String,
}

/// The daily rotation, run now: a `postgres_role` secret is rotated for a real role of this
/// PostgreSQL (its stored verifier becomes the new password's), other due secrets are reported
/// once, and a rotation that cannot log in is recorded as failed.
#[tokio::test(flavor = "multi_thread")]
async fn due_secrets_are_rotated_for_a_real_postgres_role_and_reported_otherwise() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let role = format!("custos_rot_{}", uuid::Uuid::new_v4().simple());
    let mut conn = s.db.superuser().await;
    diesel::sql_query(format!("CREATE ROLE {role} LOGIN PASSWORD 'initial-password-1'"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url =
        reqwest::Url::parse(&custos_testkit::with_database(&custos_testkit::admin_url(), &s.db.name)).unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("initial-password-1")).unwrap();

    let create = async |name: &str, kind: &str, value: &str| {
        let body = json!({"name": name, "secret_type": kind, "secret_value": value, "rotation_enabled": true, "rotation_days": 30});
        let (status, created) = s.post(SECRETS, &org.admin, body).await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().unwrap().to_owned()
    };
    let database = create("Reporting DB role", "postgres_role", url.as_str()).await;
    let api = create("Partner API key", "api_key", "pk_test_123").await;
    let broken = create("Gone role", "postgres_role", "postgres://custos_no_such_role:x@127.0.0.1:5432/postgres").await;
    diesel::sql_query("UPDATE secrets SET next_rotation_at = now() - interval '1 day'")
        .execute(&mut conn)
        .await
        .unwrap();
    let (_, due) = s.get(&format!("{SECRETS}?rotation_due=true"), &org.viewer).await;
    assert_eq!(due["count"], 3, "{due}");

    let run = async || {
        let (status, job) = s.post("/api/compliance/schedules/secret-rotation/run/", &org.admin, json!({})).await;
        assert_eq!(status.as_u16() / 100, 2, "{job}");
        let id = job["id"].as_str().unwrap().to_owned();
        for _ in 0..300 {
            let (_, j) = s.get(&format!("/api/compliance/jobs/{id}/"), &org.admin).await;
            if j["status"] == "succeeded" || j["status"] == "failed" {
                return j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the rotation job did not end");
    };
    let job = run().await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The role's secret: version 2, a new password, which is the role's password now.
    let (_, rotated) = s.get(&format!("{SECRETS}{database}/"), &org.viewer).await;
    assert_eq!((rotated["version"].clone(), rotated["rotation_due"].clone()), (json!(2), json!(false)), "{rotated}");
    assert!(rotated["rotation_error"].is_null(), "{rotated}");
    let (_, shown) = reveal(&s, &org.admin, &database, "reason=check").await;
    let new_url = reqwest::Url::parse(shown["secret_value"].as_str().unwrap()).unwrap();
    let new_password = new_url.password().unwrap().to_owned();
    assert_ne!(new_password, "initial-password-1");
    assert_eq!(new_url.username(), role);
    let stored: Verifier = diesel::sql_query(format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"))
        .get_result(&mut conn)
        .await
        .unwrap();
    assert!(custos_vault::secret_rotation::scram_matches(&stored.rolpassword, &new_password), "{}", stored.rolpassword);
    assert!(!custos_vault::secret_rotation::scram_matches(&stored.rolpassword, "initial-password-1"));

    // The API key: reported, once; its value untouched.
    let (_, key) = s.get(&format!("{SECRETS}{api}/"), &org.viewer).await;
    assert_eq!((key["version"].clone(), key["rotation_due"].clone()), (json!(1), json!(true)));
    // The unreachable role: failed, said why, still due.
    let (_, failed) = s.get(&format!("{SECRETS}{broken}/"), &org.viewer).await;
    assert!(failed["rotation_error"].as_str().unwrap_or_default().contains("cannot log in"), "{failed}");
    assert_eq!(failed["version"], 1);

    let again = run().await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(audited(&s, &org, "rotation_due", 1).await.len(), 1, "reported once per due period");
    assert!(audited(&s, &org, "rotation_failed", 2).await.len() >= 2);
    let rotations = audited(&s, &org, "rotate", 1).await;
    assert!(rotations.iter().any(|e| e["after"].to_string().contains("automated")), "{rotations:?}");
    assert!(!rotations.iter().any(|e| e.to_string().contains(&new_password)));
    drop(conn);
    let mut conn = s.db.superuser().await;
    let _ = diesel::sql_query(format!("DROP ROLE IF EXISTS {role}")).execute(&mut conn).await;
}
