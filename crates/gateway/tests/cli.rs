//! The `custos` binary as operators use it: real processes against a real database.

use std::process::{Command, Output};

use base64::Engine as _;

use custos_testkit::TestDb;
use diesel::sql_types::BigInt;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;

fn custos(args: &[&str], database_url: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.args(args).env_remove("DATABASE_URL").env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run custos")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure an operator can read: non-zero exit, one `error:` line, no panic.
fn assert_clean_failure(o: &Output, mentions: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    // Warnings (e.g. about a generated signing key) and a verification's progress may precede
    // the one error line.
    let informational =
        |l: &str| l.starts_with("WARNING:") || l.contains(": verification ") || l.contains(" entries verified, up to ");
    let lines: Vec<_> = err.lines().filter(|l| !l.trim().is_empty() && !informational(l)).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(mentions), "{err}");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.superuser().await;
    diesel::sql_query(sql).get_result::<Count>(&mut conn).await.expect(sql).n
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "--help"],
        vec!["org", "create", "--help"],
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
        vec!["seed", "--help"],
        vec!["jobs", "--help"],
        vec!["jobs", "run", "--help"],
        vec!["jobs", "list", "--help"],
        vec!["framework", "import", "--help"],
        vec!["framework", "export", "--help"],
        vec!["access-review", "run", "--help"],
        vec!["retention", "execute", "--help"],
        vec!["policy", "validate", "--help"],
        vec!["policy", "apply", "--help"],
        vec!["archive", "verify", "--help"],
        vec!["archive", "restore", "--help"],
        vec!["check-compliance-status", "--help"],
        vec!["report", "--help"],
    ] {
        let o = custos(&args, None);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: custos"), "{args:?}");
    }
    let serve = stdout(&custos(&["serve", "--help"], None));
    for var in
        ["DATABASE_URL", "CUSTOS_HTTP_ADDR", "CUSTOS_GRPC_ADDR", "CUSTOS_DATA_DIR", "CUSTOS_RATE_LIMIT_AUTH_PER_HOUR"]
    {
        assert!(serve.contains(var), "{var} documented in serve --help");
    }
}

#[test]
fn configuration_errors_are_one_line_without_panics() {
    assert_clean_failure(&custos(&["migrate"], Some("mysql://root@localhost/x")), "DATABASE_URL");
    assert_clean_failure(&custos(&["serve"], None), "DATABASE_URL is not set");
    assert_clean_failure(&custos(&["migrate"], Some("postgres://postgres@127.0.0.1:1/nothing")), "127.0.0.1:1");
    assert_clean_failure(
        &custos(&["org", "create", "acme", "--name", "Acme"], Some("postgres://postgres@127.0.0.1:1/nothing")),
        "cannot reach the database",
    );
    let o = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
        .env("CUSTOS_HTTP_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert_clean_failure(&o, "CUSTOS_HTTP_ADDR");
    for (var, value, mentions) in [
        ("CUSTOS_SMTP_USERNAME", "custos", "CUSTOS_SMTP_USERNAME needs"),
        ("CUSTOS_SMTP_PASSWORD", "s3cret", "needs CUSTOS_SMTP_USERNAME"),
        ("CUSTOS_SMTP_PASSWORD_FILE", "/nonexistent/smtp-password", "CUSTOS_SMTP_PASSWORD_FILE"),
        ("CUSTOS_ACCESS_REVIEW_STALE_DAYS", "0", "CUSTOS_ACCESS_REVIEW_STALE_DAYS"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_custos"))
            .arg("serve")
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
            .env(var, value)
            .output()
            .unwrap();
        assert_clean_failure(&o, mentions);
    }
    let o = custos(
        &["token", "create", "--org", "acme", "--email", "a@b.c", "--role", "root"],
        Some("postgres://postgres@127.0.0.1:1/x"),
    );
    assert_clean_failure(&o, "viewer, editor, admin, auditor");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_flow_migrate_org_token_seed() {
    let db = TestDb::empty().await;
    let url = db.url.clone();
    let run = |args: &[&str]| custos(args, Some(&url));

    let o = run(&["migrate"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("applied"));
    let o = run(&["migrate"]);
    assert!(stdout(&o).contains("up to date"), "{}", stdout(&o));

    let o = run(&["org", "create", "acme", "--name", "Acme Corp"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_clean_failure(&run(&["org", "create", "acme", "--name", "Again"]), "already exists");
    assert_clean_failure(&run(&["org", "create", "Not A Slug", "--name", "x"]), "slug");

    let o = run(&["token", "create", "--org", "acme", "--email", "ciso@acme.test", "--role", "admin"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let token = out.lines().last().unwrap().trim().to_owned();
    assert!(token.starts_with("cst_") && token.len() > 40, "{out}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM api_tokens").await, 1);
    // A second token for the same user with another role changes the role, audited.
    let o = run(&["token", "create", "--org", "acme", "--email", "CISO@acme.test", "--role", "auditor"]);
    assert!(o.status.success());
    assert_ne!(stdout(&o).lines().last().unwrap(), token);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM users").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM users WHERE role = 'auditor'").await, 1);
    assert_eq!(
        count(
            &db,
            &format!(
                "SELECT count(*) AS n FROM {} WHERE E'\\n' || fields LIKE E'%\\naction\\t\"role_change\"\\n%'",
                custos_testkit::audit_sql::ALL_AUDIT_FIELDS
            )
        )
        .await,
        1
    );
    assert_clean_failure(&run(&["token", "create", "--org", "nope", "--email", "a@b.c", "--role", "viewer"]), "nope");
    // An expiring token; an expiry in the past or not a timestamp is refused.
    let expiring = ["token", "create", "--org", "acme", "--email", "ci@acme.test", "--role", "viewer", "--expires-at"];
    let o = run(&[&expiring[..], &["2099-01-01T00:00:00Z"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("expires at 2099-01-01T00:00:00"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM api_tokens WHERE expires_at = '2099-01-01T00:00:00Z'").await, 1);
    assert_clean_failure(&run(&[&expiring[..], &["2001-01-01T00:00:00Z"]].concat()), "expires_at");
    assert_clean_failure(&run(&[&expiring[..], &["soon"]].concat()), "expires-at");

    let builtin = custos_frameworks::catalog::builtin().expect("built-in catalogue");
    let (frameworks, requirements) =
        (builtin.len() as i64, builtin.iter().map(|c| c.requirements.len() as i64).sum::<i64>());
    assert!(frameworks >= 5 && requirements > 400, "{frameworks} frameworks, {requirements} requirements");
    let o = run(&["seed", "--org", "acme"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM frameworks").await, frameworks);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM requirements").await, requirements);
    let audit_before =
        count(&db, &format!("SELECT count(*) AS n FROM {}", custos_testkit::audit_sql::ALL_AUDIT_FIELDS)).await;
    let o = run(&["seed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("0 of 45 requirements created"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM frameworks").await, frameworks, "seeding twice creates nothing");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM requirements").await, requirements);
    assert_eq!(
        count(&db, &format!("SELECT count(*) AS n FROM {}", custos_testkit::audit_sql::ALL_AUDIT_FIELDS)).await,
        audit_before
    );

    // A user's own catalogue file is loaded alongside, and a broken one is refused by name.
    let dir = std::env::temp_dir().join(format!("custos-catalog-{}", db.name));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("internal.yaml"),
        "format: custos-catalog/v1\nkey: internal\nname: Internal controls\nframework_type: CUSTOM\nversion: '1'\nrequirements:\n  - requirement_id: IC-1\n    title: Quarterly access review\n    requirement_type: ADMINISTRATIVE\n    priority: HIGH\n",
    )
    .unwrap();
    // With a mapping of its own to a framework already loaded, and one pair that cannot resolve.
    std::fs::write(
        dir.join("internal--gdpr.yaml"),
        "format: custos-mapping/v1\nkey: internal--gdpr\nname: Internal to GDPR\nsource: internal\ntarget: gdpr\nmappings:\n  - { source: IC-1, target: Art. 32, relationship: subset }\n  - { source: IC-9, target: Art. 32, relationship: equal }\n",
    )
    .unwrap();
    let o = run(&["seed", "--org", "acme", "--no-builtin", "--catalog-dir", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM requirements").await, requirements + 1);
    let out = stdout(&o);
    assert!(out.contains("internal--gdpr — 1 mappings created, 0 present"), "{out}");
    assert!(out.contains("not mapped: internal IC-9 → gdpr Art. 32"), "{out}");
    std::fs::write(dir.join("zz-broken.yaml"), "format: custos-catalog/v1\nkey: [\n").unwrap();
    assert_clean_failure(&run(&["seed", "--org", "acme", "--catalog-dir", dir.to_str().unwrap()]), "zz-broken.yaml");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_migrates_on_start_answers_health_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let db = TestDb::empty().await;
    let data_dir = std::env::temp_dir().join(format!("custos-serve-{}", db.name));
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("CUSTOS_HTTP_ADDR", "127.0.0.1:0")
        .env("CUSTOS_GRPC_ADDR", "127.0.0.1:0")
        .env("CUSTOS_DATA_DIR", &data_dir)
        .env("CUSTOS_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.split("http://").nth(1).unwrap().split('/').next().unwrap().to_owned();
    let health: serde_json::Value = reqwest::get(format!("http://{addr}/health/")).await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert!(data_dir.is_dir(), "CUSTOS_DATA_DIR is created");
    assert_eq!(
        count(&db, "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'frameworks'").await,
        1,
        "migrated on start"
    );

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0: {exit}");
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut logs).unwrap();
    let served = logs.lines().find(|l| l.contains("custos serving")).expect("a log line");
    let line: serde_json::Value = serde_json::from_str(served).expect("JSON logs");
    assert_eq!(line["level"], "INFO");
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// Three incidents of `acme` closed in 2020 (retention long past).
const OLD_INCIDENTS: &str =
    "INSERT INTO incidents (id, organization_id, title, description, severity, category, data_classification, status,
                            reported_by, detected_at, responded_at, resolved_at)
     SELECT gen_random_uuid(), o.id, 'old ' || g, '', 'LOW', 'OTHER', 'INTERNAL', 'CLOSED', 'import', '2019-01-01',
            '2019-01-01', '2020-01-01'
       FROM organizations o, generate_series(1, 3) g WHERE o.slug = 'acme'";

/// A fresh database migrated by `custos migrate`, with the organisation `acme` made by `custos
/// org create`, and the data directory (`custos-<what>-cli-<database>`) the commands share.
async fn migrated_with_acme(what: &str) -> (TestDb, std::path::PathBuf) {
    let db = TestDb::empty().await;
    let dir = std::env::temp_dir().join(format!("custos-{what}-cli-{}", db.name));
    assert!(custos_in(&["migrate"], &db.url, &dir).status.success());
    assert!(custos_in(&["org", "create", "acme", "--name", "Acme"], &db.url, &dir).status.success());
    (db, dir)
}

/// A retention policy of `acme` over incidents kept one year, deleting by `method` with its
/// automatic switch `auto_column` (`auto_delete`, `auto_archive`) on, and `OLD_INCIDENTS` for it.
async fn policy_over_old_incidents(db: &TestDb, name: &str, method: &str, auto_column: &str) -> uuid::Uuid {
    let policy = uuid::Uuid::now_v7();
    let mut conn = db.superuser().await;
    for sql in [
        format!(
            "INSERT INTO retention_policies (id, organization_id, name, policy_type, entity_type, retention_period,
                                             retention_unit, deletion_method, {auto_column})
             SELECT '{policy}', id, '{name}', 'INCIDENT_DATA', 'incident', 1, 'YEARS', '{method}', true
               FROM organizations WHERE slug = 'acme'"
        ),
        OLD_INCIDENTS.to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    policy
}

fn custos_in(args: &[&str], database_url: &str, data_dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("CUSTOS_DATA_DIR", data_dir)
        .env("RUST_LOG", "error")
        .output()
        .expect("run custos")
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_commands_verify_export_and_detect_tampering() {
    let (db, dir) = migrated_with_acme("audit").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    for i in 0..5 {
        let o = run(&["token", "create", "--org", "acme", "--email", &format!("u{i}@acme.test"), "--role", "viewer"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    // Operator commands sign with the server's key and never make one: with none to be found
    // they refuse, leaving nothing behind (a stray key's checkpoint would fail every later
    // verification).
    for command in [&["verify-audit-chain", "--org", "acme"][..], &["audit", "export", "--org", "acme", "--out", "x"]] {
        let o = run(command);
        assert_clean_failure(&o, "no audit signing key");
        // Verification that could not be carried out is not a broken log: exit status 2, not 1.
        let expected = if command[0] == "verify-audit-chain" { 2 } else { 1 };
        assert_eq!(o.status.code(), Some(expected), "{command:?}");
        assert!(!dir.join("audit-signing.key").exists(), "{command:?} made no key");
    }
    // The key the server generated on its first start, where it keeps it.
    let seed = [9u8; 32];
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("audit-signing.key"), base64::engine::general_purpose::STANDARD.encode(seed)).unwrap();
    let server_key =
        custos_audit_chain::note::NoteSigner::new("custos.local/audit", ed25519_dalek::SigningKey::from_bytes(&seed))
            .verifier()
            .to_note_key();
    let o = run(&["verify-audit-chain", "--org", "acme"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("acme: OK — 11 entries"), "{}", stdout(&o));
    assert!(stderr(&o).contains("generated key"), "a generated key is announced loudly");
    let started = stderr(&o);
    let run_id = started
        .split_once("acme: verification ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the run's id is announced: {started}"))
        .to_owned();
    let o = run(&["verify-audit-chain", "--days", "1"]);
    assert!(o.status.success(), "{}", stdout(&o));

    // A run interrupted before it saved any progress is resumed from its start.
    let o = run(&["verify-audit-chain", "--resume", &run_id]);
    assert_clean_failure(&o, "already finished (passed)");
    {
        let mut conn = db.superuser().await;
        diesel::sql_query(format!(
            "UPDATE audit_verifications SET status = 'running', finished_at = NULL, heartbeat_at = now() - interval '5 minutes'
              WHERE id = '{run_id}'"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let o = run(&["verify-audit-chain", "--resume", &run_id]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("acme: OK") && stderr(&o).contains("resumed"), "{}{}", stdout(&o), stderr(&o));
    let o = run(&["verify-audit-chain", "--resume", &uuid::Uuid::now_v7().to_string()]);
    assert_clean_failure(&o, "no verification run");
    let o = run(&["verify-audit-chain", "--org", "acme", "--structure-only"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("(structure only)") && stdout(&o).contains("edited field is not detected"),
        "{}",
        stdout(&o)
    );

    // Export, then verify offline with and without the pinned key.
    let file = dir.join("acme-audit.jsonl");
    let o = run(&["audit", "export", "--org", "acme", "--out", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let key = stdout(&o).lines().find_map(|l| l.strip_prefix("verifier key: ")).unwrap().to_owned();
    assert_eq!(key, server_key, "the export names the server's key");
    assert!(file.is_file() && !dir.join("acme-audit.jsonl.partial").exists(), "renamed into place when complete");
    // After a rotation, the keys it rotated from are named in the header, for verify-file.
    let rotated_from = custos_audit_chain::note::NoteSigner::new(
        "custos.local/audit",
        ed25519_dalek::SigningKey::from_bytes(&[6u8; 32]),
    )
    .verifier()
    .to_note_key();
    let rotated = dir.join("rotated.jsonl");
    let o = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["audit", "export", "--org", "acme", "--out", rotated.to_str().unwrap()])
        .env("DATABASE_URL", &db.url)
        .env("CUSTOS_DATA_DIR", &dir)
        .env("CUSTOS_AUDIT_TRUSTED_KEYS", &rotated_from)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let header: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&rotated).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(header["earlier_verifier_keys"], serde_json::json!([rotated_from]), "{header}");
    assert_eq!(header["verifier_key"], server_key.as_str());
    let offline = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_custos")).args(args).env_remove("DATABASE_URL").output().unwrap()
    };
    let o = offline(&["audit", "verify-file", file.to_str().unwrap(), "--public-key", &key]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The 11 changes, and each of the 4 verification runs' start (or resumption) and result.
    assert!(stdout(&o).contains("19 entries") && stdout(&o).contains("pinned public key"), "{}", stdout(&o));
    let o = offline(&["audit", "verify-file", file.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("only the file's consistency was proven"), "{}", stdout(&o));
    // A different pinned key refuses the file.
    let other = custos_audit_chain::note::NoteSigner::new(
        "custos.local/audit",
        ed25519_dalek::SigningKey::from_bytes(&[4u8; 32]),
    );
    let o = offline(&["audit", "verify-file", file.to_str().unwrap(), "--public-key", &other.verifier().to_note_key()]);
    assert_clean_failure(&o, "bad signature");
    assert_eq!(o.status.code(), Some(1), "not intact");
    let o = offline(&["audit", "verify-file", dir.join("no-such-file.jsonl").to_str().unwrap()]);
    assert_clean_failure(&o, "cannot open");
    assert_eq!(o.status.code(), Some(2), "could not verify");
    // An edited entry in the file is caught and named.
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("u3@acme.test", "mallory@acme.test", 1);
    assert_ne!(text, edited);
    let tampered = dir.join("tampered.jsonl");
    std::fs::write(&tampered, edited).unwrap();
    let o = offline(&["audit", "verify-file", tampered.to_str().unwrap(), "--public-key", &key]);
    assert_clean_failure(&o, "hash mismatch");
    assert!(stderr(&o).contains("FAILED at sequence number"), "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(1));
    // A line that is not what an export writes: not intact either.
    let mangled = dir.join("mangled.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "{not json";
    std::fs::write(&mangled, lines.join("\n") + "\n").unwrap();
    let o = offline(&["audit", "verify-file", mangled.to_str().unwrap(), "--public-key", &key]);
    assert_clean_failure(&o, "FAILED: line 4");
    assert_eq!(o.status.code(), Some(1));

    // Tampering in the database makes verify-audit-chain fail, naming the entry.
    {
        let mut conn = db.superuser().await;
        diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
        diesel::sql_query("UPDATE audit_index SET actor = 'operator:mallory' WHERE seq = 4")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let o = run(&["verify-audit-chain", "--org", "acme"]);
    assert!(!o.status.success());
    assert!(stdout(&o).contains("acme: FAILED at sequence number 4 — hash mismatch"), "{}", stdout(&o));
    assert_clean_failure(&o, "verification failed for acme");
    assert_eq!(o.status.code(), Some(1));
    // An index row that does not repeat its entry is content: the structure-only check passes.
    let o = run(&["verify-audit-chain", "--org", "acme", "--structure-only"]);
    assert!(o.status.success(), "{}", stdout(&o));

    // An export that cannot be completed (here an entry's content is gone) leaves no file behind,
    // finished or partial.
    {
        let mut conn = db.superuser().await;
        diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
        let org: uuid::Uuid = custos_db::schema::organizations::table
            .filter(custos_db::schema::organizations::slug.eq("acme"))
            .select(custos_db::schema::organizations::id)
            .first(&mut conn)
            .await
            .unwrap();
        diesel::sql_query(custos_testkit::audit_sql::remove_content(org, 6)).execute(&mut conn).await.unwrap();
    }
    let broken = dir.join("broken.jsonl");
    let o = run(&["audit", "export", "--org", "acme", "--out", broken.to_str().unwrap()]);
    assert_clean_failure(&o, "entry 6 has no content");
    assert!(!broken.exists() && !dir.join("broken.jsonl.partial").exists(), "nothing left behind");
    let o = run(&["audit", "export", "--org", "acme", "--out", dir.join("no/such/dir.jsonl").to_str().unwrap()]);
    assert_clean_failure(&o, "cannot create");

    // Production refuses to run without a configured key.
    let empty_dir = dir.join("empty");
    let o = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["verify-audit-chain"])
        .env("DATABASE_URL", &db.url)
        .env("CUSTOS_DATA_DIR", &empty_dir)
        .env("CUSTOS_ENV", "production")
        .output()
        .unwrap();
    assert_clean_failure(&o, "CUSTOS_SIGNING_KEY");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_commands_run_a_schedule_here_and_show_every_job() {
    let (db, dir) = migrated_with_acme("jobs").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);

    let o = run(&["jobs", "schedules"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["audit-retention", "evidence-object-sweep", "audit-verification-resumer"] {
        assert!(stdout(&o).contains(name), "{name}: {}", stdout(&o));
    }
    // An organisation's schedule needs its organisation; an unknown one is named.
    assert_clean_failure(&run(&["jobs", "run", "audit-retention"]), "--org");
    assert_clean_failure(&run(&["jobs", "run", "no-such"]), "no schedule");
    assert_clean_failure(&run(&["jobs", "run", "evidence-object-sweep", "--org", "acme"]), "platform job");

    // Run here, to its end (not a terminal: progress lines, not a bar), then shown.
    let o = run(&["jobs", "run", "audit-retention", "--org", "acme"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("\"status\": \"succeeded\""), "{out}");
    assert!(out.contains("\"kind\": \"audit.retention\""), "{out}");
    let o = run(&["jobs", "run", "evidence-object-sweep"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"unreferenced_removed\": 0"), "{}", stdout(&o));
    // Queued only, for a server.
    let o = run(&["jobs", "run", "audit-retention", "--org", "acme", "--detach"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("queued"), "{}", stdout(&o));

    let o = run(&["jobs", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = stdout(&o);
    assert_eq!(list.matches("audit.retention").count(), 2, "{list}");
    assert!(list.contains("evidence.object_sweep") && list.contains("(platform)"), "{list}");
    assert!(list.contains("succeeded") && list.contains("queued"), "{list}");
    let o = run(&["jobs", "list", "--status", "queued"]);
    assert_eq!(stdout(&o).lines().count(), 2, "a header and the queued job: {}", stdout(&o));
    assert_clean_failure(&run(&["jobs", "list", "--status", "done"]), "status");
    let id = stdout(&o).lines().nth(1).unwrap().split_whitespace().next().unwrap().to_owned();
    let o = run(&["jobs", "show", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"organization_id\""), "{}", stdout(&o));
    assert_clean_failure(&run(&["jobs", "show", "nope"]), "not a job id");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM jobs WHERE created_by LIKE 'operator:%'").await, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `custos access-review run` runs a review here, for one organisation or every one in turn,
/// started by the operator; the findings wait for decisions over the API.
#[tokio::test(flavor = "multi_thread")]
async fn access_review_run_reviews_one_organisation_or_every_one() {
    let db = TestDb::empty().await;
    let dir = std::env::temp_dir().join(format!("custos-review-cli-{}", db.name));
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    assert!(run(&["migrate"]).status.success());
    for slug in ["acme", "globex"] {
        assert!(run(&["org", "create", slug, "--name", slug]).status.success());
        let o = run(&["token", "create", "--org", slug, "--email", &format!("admin@{slug}.test"), "--role", "admin"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let o = run(&["access-review", "run", "--org", "acme"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("access review of acme") && out.contains("\"status\": \"succeeded\""), "{out}");
    // The admin's unconfirmed access and their token without expiry.
    assert!(out.contains("\"findings\": 2"), "{out}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM access_reviews WHERE status = 'in_review'").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM access_reviews WHERE started_by LIKE 'operator:%'").await, 1);
    let o = run(&["access-review", "run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("access review of globex"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM access_reviews").await, 3);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM stale_access_findings").await, 6);
    assert_clean_failure(&run(&["access-review", "run", "--org", "nope"]), "nope");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `custos retention execute --policy-id ID [--preview]` and `--all-scheduled`, as seed 004's
/// `execute_retention`.
#[tokio::test(flavor = "multi_thread")]
async fn retention_execute_previews_runs_a_policy_and_every_scheduled_one() {
    let (db, dir) = migrated_with_acme("retention").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    let policy = policy_over_old_incidents(&db, "Old incidents", "soft", "auto_delete").await;
    let id = policy.to_string();
    let o = run(&["retention", "execute", "--policy-id", &id, "--preview"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"soft_deleted\": 3") && stdout(&o).contains("\"preview\": true"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM incidents WHERE deleted_at IS NULL").await, 3);
    let o = run(&["retention", "execute", "--policy-id", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"status\": \"succeeded\""), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM incidents WHERE deleted_at IS NULL").await, 0);
    let o = run(&["retention", "execute", "--all-scheduled"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("retention of acme"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM retention_runs WHERE job_id IS NOT NULL").await, 2);
    assert_clean_failure(&run(&["retention", "execute", "--policy-id", "nope"]), "not a policy id");
    assert_clean_failure(
        &run(&["retention", "execute", "--policy-id", &uuid::Uuid::nil().to_string()]),
        "no retention policy",
    );
    // Neither a policy nor --all-scheduled: clap's usage error.
    let o = run(&["retention", "execute"]);
    assert!(!o.status.success() && stderr(&o).contains("--policy-id"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `custos policy validate --file F` (seed 004's `validate_policy`): the seed's own example is
/// valid (with warnings for the entities not known yet); a broken one lists every problem with
/// its line and column, and exits 1.
#[test]
fn policy_validate_reports_every_problem_with_its_place() {
    let dir = std::env::temp_dir().join(format!("custos-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("gdpr.yaml");
    std::fs::write(
        &good,
        "name: GDPR Compliance Policy\nversion: 1.0.0\ntype: gdpr\nenforcement:\n  level: hard\n  scope: company\n\
         retention:\n  policies:\n    - entity_type: Lead\n      retention_days: 365\n      deletion_method: soft\n",
    )
    .unwrap();
    let o = custos(&["policy", "validate", "--file", good.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("valid: \"GDPR Compliance Policy\" version 1.0.0"), "{out}");
    assert!(out.contains("gdpr.yaml:9:20: warning: $.retention.policies[0].entity_type"), "{out}");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "name: x\nversion: 1\ntype: nope\ncolour: red\n").unwrap();
    let o = custos(&["policy", "validate", "--file", bad.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    for expected in
        ["bad.yaml:3:7: error: $.type", "bad.yaml:4:1: error: $.colour: unknown field", "enforcement is required"]
    {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `custos check-compliance-status` (seed 003's `check_compliance_status`): exit 0 when nothing
/// is overdue, 1 when something is, 2 when it could not check; text and JSON.
#[tokio::test(flavor = "multi_thread")]
async fn check_compliance_status_exits_by_what_it_finds() {
    let (db, dir) = migrated_with_acme("status").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    let o = run(&["check-compliance-status"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("acme: ok"), "{}", stdout(&o));
    assert!(run(&["seed", "--org", "acme"]).status.success());
    let mut conn = db.superuser().await;
    diesel::sql_query(
        "UPDATE requirements SET next_assessment_date = '2020-01-01'
          WHERE id = (SELECT id FROM requirements ORDER BY requirement_id LIMIT 1)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let o = run(&["check-compliance-status", "--org", "acme"]);
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("acme: NEEDS ATTENTION") && stdout(&o).contains("overdue assessments: 1"),
        "{}",
        stdout(&o)
    );
    let o = run(&["check-compliance-status", "--format", "json", "--min-score", "50"]);
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let acme = &report["organizations"][0];
    assert_eq!(acme["overdue_assessments"]["count"], 1, "{report}");
    assert_eq!(acme["overdue_assessments"]["items"][0]["next_assessment_date"], "2020-01-01");
    assert_eq!(acme["frameworks_below_target"].as_array().unwrap().len(), 8, "every seeded framework is at 0 %");
    assert_eq!(report["needs_attention"], true);
    // `custos report` (seed 003's generate_compliance_report): text and JSON, to stdout or a file.
    let o = run(&["report", "--org", "acme", "--framework", "gdpr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Framework: General Data Protection Regulation")
            && stdout(&o).contains("Compliance: 0.0% (0 of 45"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("Overdue assessments ("), "{}", stdout(&o));
    let out = dir.join("report.json");
    let o =
        run(&["report", "--org", "acme", "--type", "gap_analysis", "--format", "json", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(doc["report_type"], "GAP_ANALYSIS");
    assert!(doc["content"]["summary"]["total_requirements"].as_i64().unwrap() > 100, "{}", doc["content"]["summary"]);
    // As PDF, read back by poppler: every seeded GDPR article is a gap, listed over pages.
    let out = dir.join("report.pdf");
    let o = run(&["report", "--org", "acme", "--framework", "GDPR", "--format", "pdf", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = custos_testkit::read_pdf(&std::fs::read(&out).unwrap());
    let pages = read.pages().len();
    assert!(pages > 2, "{}", read.text);
    for expected in
        ["General Data Protection Regulation", "Gaps (45)", "Not assessed", &format!("Page {pages} of {pages}")]
    {
        assert!(read.text.contains(expected), "{expected:?}:\n{}", read.text);
    }
    // To standard output when it is not a terminal (here, a pipe).
    let o = run(&["report", "--org", "acme", "--format", "pdf"]);
    assert!(o.status.success() && o.stdout.starts_with(b"%PDF-1.7"), "{}", stderr(&o));
    assert_clean_failure(&run(&["report", "--org", "acme", "--framework", "nope"]), "is not one of: GDPR");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM compliance_reports WHERE status = 'DRAFT'").await, 4);
    // A reader that stops at once (`| head -0`): the command ends by SIGPIPE like any Unix tool,
    // never a panic.
    let mut child = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["check-compliance-status", "--org", "acme"])
        .env("DATABASE_URL", &db.url)
        .env("CUSTOS_DATA_DIR", &dir)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run custos");
    drop(child.stdout.take());
    let o = child.wait_with_output().expect("wait for custos");
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&o.status), Some(13), "SIGPIPE: {:?}", o.status);
    // Could not check: 2.
    let o = custos(&["check-compliance-status"], Some("postgres://postgres@127.0.0.1:1/nothing"));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(run(&["check-compliance-status", "--min-score", "101"]).status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An archive run from the command line, its archive verified offline (`custos archive verify`:
/// exit 0 intact, 1 not — tampered, or signed by another key) and restored (`custos archive
/// restore`), once.
#[tokio::test(flavor = "multi_thread")]
async fn archive_runs_verify_offline_and_restore() {
    let (db, dir) = migrated_with_acme("archive").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    // The server's key, where a server keeps the one it generated.
    let seed = [5u8; 32];
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("audit-signing.key"), base64::engine::general_purpose::STANDARD.encode(seed)).unwrap();
    let server_key =
        custos_audit_chain::note::NoteSigner::new("custos.local/audit", ed25519_dalek::SigningKey::from_bytes(&seed))
            .verifier()
            .to_note_key();
    let other_key = custos_audit_chain::note::NoteSigner::new(
        "custos.local/audit",
        ed25519_dalek::SigningKey::from_bytes(&[6; 32]),
    )
    .verifier()
    .to_note_key();
    let policy = policy_over_old_incidents(&db, "Archive old incidents", "archive", "auto_archive").await;
    let o = run(&["retention", "execute", "--policy-id", &policy.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"status\": \"succeeded\""), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM incidents").await, 0, "archived out of the hot table");
    let archives: Vec<std::path::PathBuf> = walk(&dir.join("blobs/archives"));
    assert_eq!(archives.len(), 1, "{archives:?}");
    let file = archives[0].to_str().unwrap().to_owned();

    let o = custos(&["archive", "verify", &file, "--public-key", &server_key], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("intact: 3 record(s) and 0 file(s) of incident"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("signed by {server_key}")), "{}", stdout(&o));
    let o = custos(&["archive", "verify", &file, "--public-key", &other_key], None);
    assert_eq!(o.status.code(), Some(1), "another key: {}", stderr(&o));
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(5).position(|w| w == b"old 2").expect("a record");
    bytes[at + 4] = b'9';
    let tampered = dir.join("tampered.tar");
    std::fs::write(&tampered, &bytes).unwrap();
    let o = custos(&["archive", "verify", tampered.to_str().unwrap(), "--public-key", &server_key], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("FAILED") && stderr(&o).contains("does not match its digest"), "{}", stderr(&o));
    assert_eq!(custos(&["archive", "verify", "/no/such.tar"], None).status.code(), Some(2));
    // Restore refuses the tampered copy, then brings the records back, once.
    assert_eq!(run(&["archive", "restore", tampered.to_str().unwrap()]).status.code(), Some(1));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM incidents").await, 0);
    let o = run(&["archive", "restore", &file]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("restored 3 record(s) of acme; 0 present already"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM incidents").await, 3);
    let o = run(&["archive", "restore", &file]);
    assert!(stdout(&o).contains("restored 0 record(s) of acme; 3 present already"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM retention_runs WHERE restored = 3").await, 1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

/// `custos policy validate --policy-id ID` and `custos policy apply ID [--dry-run]` (seed 004's
/// `validate_policy` and `apply_policy`) on a stored document.
#[tokio::test(flavor = "multi_thread")]
async fn policy_apply_dry_runs_then_applies_a_stored_document() {
    let (db, dir) = migrated_with_acme("policy").await;
    let run = |args: &[&str]| custos_in(args, &db.url, &dir);
    let policy = uuid::Uuid::now_v7();
    let content = "name: Old incidents\nversion: v1\ntype: custom\nenforcement: {level: hard, scope: company}\n\
                   retention:\n  policies:\n    - {entity_type: incident, retention_days: 365, deletion_method: soft}\n";
    let mut conn = db.superuser().await;
    for sql in [
        format!(
            "INSERT INTO compliance_policies (id, organization_id, name, version_label, policy_type, enforcement_level,
                                              enforcement_scope, content, content_sha256, document, created_by)
             SELECT '{policy}', id, 'Old incidents', '1', 'custom', 'hard', 'company', '{content}', '', '{{}}', 'test'
               FROM organizations WHERE slug = 'acme'"
        ),
        OLD_INCIDENTS.to_owned(),
    ] {
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }
    let id = policy.to_string();
    let o = run(&["policy", "validate", "--policy-id", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("valid"), "{}", stdout(&o));
    let o = run(&["policy", "apply", &id, "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"records_deleted_now\": 3"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM retention_policies").await, 0, "a dry run keeps nothing");
    let o = run(&["policy", "apply", &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("applied as version 1 (acme)"), "{}", stderr(&o));
    assert_eq!(
        count(&db, &format!("SELECT count(*) AS n FROM retention_policies WHERE managed_by_policy = '{id}'")).await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM compliance_policy_versions").await, 1);
    assert_clean_failure(&run(&["policy", "apply", "nope"]), "not a policy id");
    assert_clean_failure(&run(&["policy", "apply", &uuid::Uuid::nil().to_string()]), "no policy document");
    assert_clean_failure(
        &run(&["policy", "validate", "--policy-id", &uuid::Uuid::nil().to_string()]),
        "no policy document",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn framework_import_and_export_commands() {
    let db = TestDb::empty().await;
    let url = db.url.clone();
    let run = |args: &[&str]| custos(args, Some(&url));
    assert!(run(&["migrate"]).status.success());
    assert!(run(&["org", "create", "acme", "--name", "Acme Corp"]).status.success());
    let library = custos_testkit::fixture("ciso-assistant-library/nist-csf-2.0.yaml");
    let library = library.to_str().unwrap();

    let o = run(&["framework", "import", library, "--org", "acme", "--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("framework created, 134 of 134 requirements created (dry run: nothing kept)"),
        "{}",
        stdout(&o)
    );
    assert_eq!(count(&db, "SELECT count(*) AS n FROM frameworks").await, 0);
    let o = run(&["framework", "import", library, "--org", "acme"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("framework created, 134 of 134 requirements created"), "{}", stdout(&o));
    let o = run(&["framework", "import", library]);
    assert!(stdout(&o).contains("framework present, 0 of 134 requirements created"), "{}", stdout(&o));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM requirements").await, 134);

    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: uuid::Uuid,
    }
    let mut conn = db.superuser().await;
    let id = diesel::sql_query("SELECT id FROM frameworks").get_result::<Id>(&mut conn).await.unwrap().id.to_string();
    let out = std::env::temp_dir().join(format!("custos-export-{}.json", db.name));
    let o = run(&["framework", "export", &id, "--format", "oscal-catalog", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let catalog: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let _ = std::fs::remove_file(&out);
    custos_testkit::validate_oscal(&catalog).expect("valid OSCAL");
    let o = run(&["framework", "export", &id, "--org", "acme"]);
    assert!(stdout(&o).starts_with("format: custos-catalog/v1"), "{}", stdout(&o));
    assert_clean_failure(&run(&["framework", "export", &uuid::Uuid::nil().to_string()]), "not found");
    assert_clean_failure(&run(&["framework", "export", &id, "--format", "xlsx"]), "oscal-catalog");

    // A broken file: every problem, each with its line and column, and nothing imported.
    let broken = std::env::temp_dir().join(format!("custos-broken-{}.yaml", db.name));
    std::fs::write(
        &broken,
        "urn: urn:x:library:t\nobjects:\n  framework:\n    urn: urn:x:framework:t\n    requirement_nodes:\n    - ref_id: A\n    - urn: urn:x:t:b\n      parent_urn: urn:x:t:zz\n",
    )
    .unwrap();
    let o = run(&["framework", "import", broken.to_str().unwrap(), "--org", "acme"]);
    let _ = std::fs::remove_file(&broken);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("2 problems found, nothing was imported"), "{err}");
    assert!(err.contains("line 6, column 7: urn is required"), "{err}");
    assert!(err.contains("line 8, column 19: parent_urn urn:x:t:zz names no node"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM frameworks").await, 1);
}

/// Master-key rotation as an operator does it: configure the new key with the old one beside
/// it, run `custos vault rotate-master-key`; every data key is re-wrapped (a batch committed
/// before an interruption is not done again), ciphertexts untouched and still readable with the
/// new key alone, the old key recorded as retired.
#[tokio::test(flavor = "multi_thread")]
async fn vault_rotate_master_key_rewraps_every_data_key_and_retires_the_old_one() {
    use base64::engine::general_purpose::STANDARD;
    use custos_vault::store::Vault;
    use custos_vault::{LocalKeyProvider, MasterKeys};

    let db = TestDb::empty().await;
    let url = db.url.clone();
    assert!(custos(&["migrate"], Some(&url)).status.success());
    for slug in ["acme", "globex"] {
        assert!(custos(&["org", "create", slug, "--name", slug], Some(&url)).status.success());
    }
    let old = STANDARD.encode(rand::random::<[u8; 32]>());
    let new = STANDARD.encode(rand::random::<[u8; 40]>());
    let data_dir = std::env::temp_dir().join(format!("custos-vault-{}", db.name));
    let provider = |current: &str, previous: Option<&str>| {
        let (current, previous) = (current.to_owned(), previous.map(str::to_owned));
        let lookup = move |name: &str| match name {
            "CUSTOS_MASTER_KEY" => Some(current.clone()),
            "CUSTOS_MASTER_KEY_PREVIOUS" => previous.clone(),
            _ => None,
        };
        let (keys, _) = MasterKeys::from_env(lookup, &data_dir).expect("master keys");
        std::sync::Arc::new(LocalKeyProvider::new(&keys))
    };
    let pool = custos_db::Db::connect(&custos_db::DbConfig::new(url.clone())).unwrap();

    // 700 + 400 data keys under the old master key, each sealing a field.
    let before = Vault::new(pool.clone(), provider(&old, None));
    let old_id = before.provider().current().to_string();
    let mut sealed = Vec::new();
    for (slug, n) in [("acme", 700), ("globex", 400)] {
        let (org, _) = pool.organization_by_slug(slug).await.unwrap().unwrap();
        let ctx = custos_core::RequestCtx::operator(org, slug.to_owned());
        let mut tx = pool.begin(org).await.unwrap();
        for i in 0..n {
            let (id, key) = before.create_data_key(&mut tx, &ctx, "secret").await.unwrap();
            let record = format!("secret:{i}");
            let field = custos_vault::FieldContext { organization: org, data_key: id, record: &record, field: "value" };
            sealed.push((org, id, record.clone(), custos_vault::encrypt_field(&key, &field, record.as_bytes())));
        }
        tx.commit().await.unwrap();
    }

    // An interrupted rotation: one batch of acme's keys committed under the new key.
    let after = Vault::new(pool.clone(), provider(&new, Some(&old)));
    let new_id = after.provider().current().to_string();
    let (acme, _) = pool.organization_by_slug("acme").await.unwrap().unwrap();
    let ctx = custos_core::RequestCtx::operator(acme, "acme".to_owned());
    assert_eq!(custos_vault::rotation::rewrap_batch(&after, &ctx, 250).await.unwrap(), 250);
    let first_batch = count(&db, "SELECT count(*) AS n FROM vault_data_keys WHERE rewrapped_at IS NOT NULL").await;
    assert_eq!(first_batch, 250);

    // Without a master key, the operator's command says so (and mints none).
    let empty = std::env::temp_dir().join(format!("custos-vault-empty-{}", db.name));
    let o = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args(["vault", "status"])
        .env("DATABASE_URL", &url)
        .env("CUSTOS_DATA_DIR", &empty)
        .env_remove("CUSTOS_MASTER_KEY")
        .env_remove("CUSTOS_MASTER_KEY_FILE")
        .output()
        .unwrap();
    assert!(stdout(&o).contains("no master key configured here"), "{}{}", stdout(&o), stderr(&o));
    assert!(!empty.join(custos_vault::keys::MASTER_KEY_FILE_NAME).exists());

    let env = [("CUSTOS_MASTER_KEY", new.as_str()), ("CUSTOS_MASTER_KEY_PREVIOUS", old.as_str())];
    let run = |args: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
        cmd.args(args).env("DATABASE_URL", &url).env("RUST_LOG", "warn").env("CUSTOS_DATA_DIR", &data_dir);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("run custos")
    };
    let o = run(&["vault", "status"]);
    assert!(stdout(&o).contains(&format!("data keys under {old_id}: 850")), "{}{}", stdout(&o), stderr(&o));
    let micros = "(extract(epoch FROM rewrapped_at) * 1000000)::bigint";
    let first_done = count(&db, &format!("SELECT max({micros}) AS n FROM vault_data_keys")).await;
    let o = run(&["vault", "rotate-master-key"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("\"rewrapped\": 850"), "{}", stdout(&o));
    assert_eq!(
        count(&db, &format!("SELECT count(*) AS n FROM vault_data_keys WHERE kek_id = '{new_id}'")).await,
        1_100
    );
    // The first batch was not done again: its keys keep their re-wrap time.
    let kept = format!("SELECT count(*) AS n FROM vault_data_keys WHERE {micros} <= {first_done}");
    assert_eq!(count(&db, &kept).await, 250);
    let o = run(&["vault", "status"]);
    assert!(stdout(&o).contains(&format!("retired master key: {old_id}")), "{}", stdout(&o));

    // The new key alone opens every ciphertext, which were never rewritten.
    let only_new = Vault::new(pool.clone(), provider(&new, None));
    for (org, id, record, ciphertext) in sealed.iter().step_by(97) {
        let mut tx = pool.begin(*org).await.unwrap();
        let opened = only_new.decrypt(&mut tx, *org, *id, record, "value", ciphertext).await.unwrap();
        assert_eq!(&opened[..], record.as_bytes());
    }
    // Every re-wrap is in the organisations' audit trails (as batches).
    assert!(
        count(&db, &format!("SELECT count(*) AS n FROM {}", custos_testkit::audit_sql::ALL_AUDIT_FIELDS)).await > 1_100
    );
    // Nothing left to do: a second run re-wraps nothing.
    let o = run(&["vault", "rotate-master-key"]);
    assert!(stdout(&o).contains("\"rewrapped\": 0"), "{}", stdout(&o));
    let _ = std::fs::remove_dir_all(&data_dir);
}
