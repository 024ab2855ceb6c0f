//! The audit trail through the running gateway: entries for every change, proofs checked by an
//! independent implementation, tampering caught, tenants kept apart.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use custos_testkit::audit_sql::{edit_fields, remove_content};
use custos_testkit::{TestOrg, TestServer};
use diesel_async::RunQueryDsl;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{audit_entries, create_framework, create_requirement, id, seed_gdpr_body};

// ---- an independent RFC 9162 verifier: written from the RFC, sharing no code with Custos ----

fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for p in parts {
        hasher.update(p);
    }
    *hasher.finalize().as_bytes()
}

fn unhex(s: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

/// RFC 9162 §2.1.3.2, transcribed.
fn rfc_verify_inclusion(leaf_index: u64, tree_size: u64, leaf: [u8; 32], path: &[[u8; 32]], root: [u8; 32]) -> bool {
    if leaf_index >= tree_size {
        return false;
    }
    let (mut f_n, mut s_n) = (leaf_index, tree_size - 1);
    let mut r = leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n % 2 == 1 || f_n == s_n {
            r = h(&[&[1], p, &r]);
            if f_n % 2 == 0 {
                while f_n % 2 == 0 && f_n != 0 {
                    f_n /= 2;
                    s_n /= 2;
                }
            }
        } else {
            r = h(&[&[1], &r, p]);
        }
        f_n /= 2;
        s_n /= 2;
    }
    s_n == 0 && r == root
}

/// RFC 9162 §2.1.4.2, transcribed.
fn rfc_verify_consistency(
    first: u64,
    second: u64,
    first_hash: [u8; 32],
    second_hash: [u8; 32],
    proof: &[[u8; 32]],
) -> bool {
    let mut path = proof.to_vec();
    if first.is_power_of_two() {
        path.insert(0, first_hash);
    }
    let (mut f_n, mut s_n) = (first - 1, second - 1);
    while f_n % 2 == 1 {
        f_n /= 2;
        s_n /= 2;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n % 2 == 1 || f_n == s_n {
            fr = h(&[&[1], c, &fr]);
            sr = h(&[&[1], c, &sr]);
            if f_n % 2 == 0 {
                while f_n % 2 == 0 && f_n != 0 {
                    f_n /= 2;
                    s_n /= 2;
                }
            }
        } else {
            sr = h(&[&[1], &sr, c]);
        }
        f_n /= 2;
        s_n /= 2;
    }
    fr == first_hash && sr == second_hash && s_n == 0
}

/// Opens a C2SP signed note with a raw Ed25519 public key; returns (origin, size, root).
fn open_note(note: &str, key_name: &str, public_key: &[u8; 32]) -> Option<(String, u64, [u8; 32])> {
    let (body, sigs) = note.split_once("\n\n")?;
    let body = format!("{body}\n");
    let line = sigs.lines().find(|l| l.starts_with(&format!("— {key_name} ")))?;
    let blob = B64.decode(line.rsplit(' ').next()?).ok()?;
    let key = VerifyingKey::from_bytes(public_key).ok()?;
    let sig = Signature::from_slice(&blob[4..]).ok()?;
    key.verify(body.as_bytes(), &sig).ok()?;
    let mut lines = body.lines();
    let origin = lines.next()?.to_owned();
    let size = lines.next()?.parse().ok()?;
    let root: [u8; 32] = B64.decode(lines.next()?).ok()?.try_into().ok()?;
    Some((origin, size, root))
}

// ---- helpers ----

pub(crate) async fn checkpoint(s: &TestServer, org: &TestOrg) -> Value {
    let (status, cp) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
    assert_eq!(status, 201, "{cp}");
    cp
}

pub(crate) async fn entries(s: &TestServer, org: &TestOrg, query: &str) -> Vec<Value> {
    let (status, page) = s.get(&format!("/api/compliance/audit-log/{query}"), &org.auditor).await;
    assert_eq!(status, 200, "{query}: {page}");
    page["results"].as_array().unwrap().clone()
}

/// `n` changes to audit: frameworks `F0`, `F1`, …
pub(crate) async fn create_frameworks(s: &TestServer, org: &TestOrg, n: usize) {
    for i in 0..n {
        create_framework(s, org, json!({ "name": format!("F{i}"), "framework_type": "CUSTOM" })).await;
    }
}

/// Verifies over REST. The run records its start and result in the log: they are integrated
/// before this returns, so that the log stands still for whatever the test does next.
pub(crate) async fn verify(s: &TestServer, org: &TestOrg) -> Value {
    let (status, report) = s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({})).await;
    assert_eq!(status, 200, "{report}");
    checkpoint(s, org).await;
    report
}

/// Verifies as a plain check that records no run, for tests that tamper with the head and need
/// the log to stay exactly as they made it.
async fn verify_quietly(s: &TestServer, org: &TestOrg) -> Value {
    let depth = custos_audit_chain::verify::Depth::Content;
    let r = s.app().audit.chain().verify(org.id, None, depth).await.expect("verify");
    json!({ "ok": r.ok, "first_bad_seq": r.first_bad_seq, "problem": r.problem })
}

/// The organisation's log exported as `custos audit export` writes it, verified offline against
/// the server's pinned key: `(report, the export's text)`.
async fn export_verified_offline(s: &TestServer, org: &TestOrg) -> (custos_audit_chain::export::FileReport, String) {
    let chain = s.app().audit.chain();
    let mut export = Vec::new();
    chain.export(org.id, &mut export, |_, _| {}).await.expect("export");
    let pinned = vec![chain.signer().verifier()];
    let report = custos_audit_chain::export::verify_file(&export[..], pinned, |_, _| {}).expect("readable");
    (report, String::from_utf8(export).unwrap())
}

/// Runs `sql` as the database superuser with the append-only triggers off: an attacker with full
/// control of the database.
pub(crate) async fn tamper(s: &TestServer, sql: &str) {
    let mut conn = s.db.superuser().await;
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    diesel::sql_query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Swaps entries `a` and `b` wholesale (ids, contents, index rows), leaving their places.
async fn swap(s: &TestServer, org: uuid::Uuid, a: i64, b: i64) {
    tamper(s, &custos_testkit::audit_sql::swap_entries(org, a, b)).await;
}

/// Removes entries `[lo, hi)` from the log, keeping the rest of the runs that held them.
async fn cut_from_log(s: &TestServer, org: uuid::Uuid, lo: i64, hi: i64) {
    tamper(
        s,
        &format!(
            "DO $$ DECLARE r audit_log; n int; a int; b int;
             BEGIN
               FOR r IN SELECT * FROM audit_log WHERE organization_id = '{org}'
                          AND first_seq < {hi} AND first_seq + length(leaf_hashes) / 32 > {lo} LOOP
                 n := length(r.leaf_hashes) / 32;
                 a := greatest({lo} - r.first_seq, 0);
                 b := least({hi} - r.first_seq, n);
                 DELETE FROM audit_log WHERE organization_id = r.organization_id AND first_seq = r.first_seq;
                 IF a > 0 THEN
                   INSERT INTO audit_log VALUES (r.organization_id, r.first_seq, r.sequenced_at,
                     substring(r.event_ids FOR a * 16), substring(r.leaf_hashes FOR a * 32), substring(r.chain_hashes FOR a * 32));
                 END IF;
                 IF b < n THEN
                   INSERT INTO audit_log VALUES (r.organization_id, r.first_seq + b, r.sequenced_at,
                     substring(r.event_ids FROM b * 16 + 1), substring(r.leaf_hashes FROM b * 32 + 1), substring(r.chain_hashes FROM b * 32 + 1));
                 END IF;
               END LOOP;
             END $$"
        ),
    )
    .await;
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread")]
async fn every_change_is_one_entry_with_before_and_after() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let fid = id(&fw);
    let (_, patched) =
        s.patch(&format!("/api/compliance/frameworks/{fid}/"), &org.editor, json!({ "version": "2.0" })).await;
    let req = create_requirement(&s, &org, &fid, "Art. 5", json!({})).await;
    let (_, assessed) = s
        .post(
            &format!("/api/compliance/requirements/{}/update_status/", id(&req)),
            &org.editor,
            json!({ "compliance_status": "COMPLIANT" }),
        )
        .await;
    // A refused change leaves no entry.
    let (status, _) = s
        .post(
            &format!("/api/compliance/requirements/{}/update_status/", id(&req)),
            &org.editor,
            json!({ "compliance_status": "NOPE" }),
        )
        .await;
    assert_eq!(status, 400);
    checkpoint(&s, &org).await;

    let fw_entries = entries(&s, &org, &format!("?resource_type=framework&resource_id={fid}")).await;
    assert_eq!(fw_entries.len(), 2, "create and update, newest first");
    let (update, create) = (&fw_entries[0], &fw_entries[1]);
    assert_eq!(create["action"], "create");
    assert_eq!(create["before"], Value::Null);
    assert_eq!(create["after"], fw);
    assert_eq!(update["action"], "update");
    assert_eq!(update["before"], fw);
    assert_eq!(update["after"], patched);
    assert!(update["seq"].as_i64().unwrap() > create["seq"].as_i64().unwrap());
    assert!(create["actor"].as_str().unwrap().starts_with("user:"));
    assert_eq!(create["actor_detail"]["role"], "editor");
    assert!(create["request_id"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(create["client_addr"], "127.0.0.1");
    assert_eq!(create["leaf_hash"].as_str().unwrap().len(), 64);

    let req_entries = entries(&s, &org, &format!("?resource_id={}", id(&req))).await;
    let actions: Vec<&str> = req_entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["update_status", "create"]);
    assert_eq!(req_entries[0]["after"], assessed);
    assert_eq!(req_entries[0]["before"]["compliance_status"], "NOT_ASSESSED");

    // Token creation and user creation are recorded too; the token secret is not.
    let tokens = entries(&s, &org, "?resource_type=api_token").await;
    assert_eq!(tokens.len(), 4);
    assert!(tokens.iter().all(|t| !t.to_string().contains(&org.admin)));
    let report = verify(&s, &org).await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Rows the database changes on its own when requirements go (`ON DELETE SET NULL` / `CASCADE`):
/// a checkpoint's framework, a child requirement's parent, evidence's links. Each is an entry.
#[tokio::test(flavor = "multi_thread")]
async fn changes_the_database_cascades_are_audited_too() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let other = create_framework(&s, &org, json!({ "name": "Other", "framework_type": "CUSTOM" })).await;
    let art5 = id(&create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await);
    let art32 = id(&create_requirement(&s, &org, &id(&fw), "Art. 32", json!({})).await);
    let child = id(&create_requirement(&s, &org, &id(&fw), "Art. 5.1", json!({ "parent": art5 })).await);
    let kept = id(&create_requirement(&s, &org, &id(&other), "C.2", json!({})).await);
    let (status, cp) = s
        .post("/api/compliance/compliance-checkpoints/", &org.editor, json!({ "name": "audit", "framework": id(&fw) }))
        .await;
    assert_eq!(status, 201, "{cp}");
    let body = json!({ "title": "Policy", "evidence_type": "POLICY", "compliance_requirements": [art32, kept] });
    let (status, evidence) = s.post("/api/compliance/evidence/", &org.editor, body).await;
    assert_eq!(status, 201, "{evidence}");

    // One requirement first: its child loses its parent.
    let (status, _) = s.delete(&format!("/api/compliance/requirements/{art5}/"), &org.editor).await;
    assert_eq!(status, 204);
    let latest = |entries: Vec<Value>| entries.into_iter().next().expect("an entry");
    let orphaned = latest(audit_entries(&s, &org, &child).await);
    assert_eq!(
        (orphaned["action"].as_str(), orphaned["resource_type"].as_str()),
        (Some("update"), Some("requirement"))
    );
    assert_eq!(
        (orphaned["before"].clone(), orphaned["after"].clone()),
        (json!({ "parent": art5 }), json!({ "parent": null }))
    );
    let (_, now) = s.get(&format!("/api/compliance/requirements/{child}/"), &org.viewer).await;
    assert_eq!(now["parent"], Value::Null, "the entry says what the database did");

    // Then the framework: the checkpoint loses it, the evidence its link to Art. 32.
    let (status, _) = s.delete(&format!("/api/compliance/frameworks/{}/", id(&fw)), &org.editor).await;
    assert_eq!(status, 204);
    let unlinked = latest(audit_entries(&s, &org, &id(&cp)).await);
    assert_eq!(unlinked["action"], "update");
    assert_eq!(
        (unlinked["before"].clone(), unlinked["after"].clone()),
        (json!({ "framework": id(&fw) }), json!({ "framework": null }))
    );
    let relinked = latest(audit_entries(&s, &org, &id(&evidence)).await);
    assert_eq!((relinked["action"].as_str(), relinked["resource_type"].as_str()), (Some("update"), Some("evidence")));
    let mut links = vec![art32.clone(), kept.clone()];
    links.sort();
    assert_eq!(relinked["before"], json!({ "compliance_requirements": links }));
    assert_eq!(relinked["after"], json!({ "compliance_requirements": [kept] }));
    let (_, now) = s.get(&format!("/api/compliance/evidence/{}/", id(&evidence)), &org.viewer).await;
    assert_eq!(now["compliance_requirements"], relinked["after"]["compliance_requirements"]);
    // Deleted rows are entries of their own, not updates; the other framework's rows have none.
    assert_eq!(latest(audit_entries(&s, &org, &art32).await)["action"], "delete");
    assert_eq!(audit_entries(&s, &org, &kept).await.len(), 1, "only its creation");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_change_leaves_no_entry() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let ctx = custos_core::RequestCtx::operator(org.id, "acme");
    let mut tx = s.db_pool().begin(org.id).await.unwrap();
    custos_audit_chain::record(
        &mut tx,
        &ctx,
        custos_audit_chain::Change {
            action: "create",
            resource_type: "probe",
            resource_id: "1".into(),
            before: Value::Null,
            after: json!({}),
        },
    )
    .await
    .unwrap();
    drop(tx); // rolled back
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(s.audit_count(org.id, "create", "probe").await, 0);
}

/// Through the API: a change whose entry cannot be written fails and leaves nothing; a change
/// that fails after its entry was written (here at commit) takes the entry with it.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_and_its_entry_stand_or_fall_together() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let frameworks = |name: &'static str| {
        let s = &s;
        let org = &org;
        async move {
            let (_, page) = s.get(&format!("/api/compliance/frameworks/?search={name}"), &org.viewer).await;
            page["count"].as_i64().unwrap()
        }
    };
    crate::superuser_sql(
        &s,
        "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER test_refuse_audit BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION test_refuse();",
    )
    .await;
    let body = json!({ "name": "unaudited", "framework_type": "CUSTOM" });
    let (status, err) = s.post("/api/compliance/frameworks/", &org.editor, body).await;
    assert!(status.is_server_error(), "{status}: {err}");
    assert!(err["error"].is_string(), "{err}");
    assert_eq!(frameworks("unaudited").await, 0, "the change failed with its entry");

    crate::superuser_sql(
        &s,
        "DROP TRIGGER test_refuse_audit ON audit_entries;
         CREATE CONSTRAINT TRIGGER test_refuse_commit AFTER INSERT ON frameworks
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_refuse();",
    )
    .await;
    let body = json!({ "name": "uncommitted", "framework_type": "CUSTOM" });
    let (status, err) = s.post("/api/compliance/frameworks/", &org.editor, body).await;
    assert!(status.is_server_error(), "{status}: {err}");
    assert_eq!(frameworks("uncommitted").await, 0);
    assert_eq!(s.audit_count(org.id, "create", "framework").await, 0, "the entry went with the change");

    crate::superuser_sql(&s, "DROP TRIGGER test_refuse_commit ON frameworks").await;
    create_framework(&s, &org, json!({ "name": "recorded", "framework_type": "CUSTOM" })).await;
    assert_eq!(s.audit_count(org.id, "create", "framework").await, 1);
    assert_eq!(frameworks("recorded").await, 1);
}

/// The cursor of the first page of `url`'s listing.
async fn page_cursor(s: &TestServer, org: &TestOrg, url: &str) -> String {
    let (_, page) = s.get(url, &org.auditor).await;
    let next = page["next"].as_str().expect("a next page");
    next.split("cursor=").nth(1).expect("a cursor").split('&').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters_and_cursor_pagination() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    for i in 0..7 {
        create_framework(&s, &org, json!({ "name": format!("Framework {i}"), "framework_type": "CUSTOM" })).await;
    }
    checkpoint(&s, &org).await;
    let (_, me) = s.get("/api/compliance/whoami/", &org.editor).await;
    let editor = format!("user:{}", me["user_id"].as_str().unwrap());

    assert_eq!(entries(&s, &org, "?action=create&resource_type=framework").await.len(), 7);
    assert_eq!(entries(&s, &org, &format!("?actor={editor}")).await.len(), 7);
    assert_eq!(entries(&s, &org, "?search=framework 3").await.len(), 1);
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(entries(&s, &org, &format!("?resource_type=framework&recorded_after={today}")).await.len(), 7);
    assert_eq!(
        entries(&s, &org, &format!("?resource_type=framework&recorded_before={}", today.previous_day().unwrap()))
            .await
            .len(),
        0
    );
    let (status, err) = s.get("/api/compliance/audit-log/?recorded_after=yesterday", &org.auditor).await;
    assert_eq!(status, 400, "{err}");
    // A time that is valid as written but beyond the year 9999 in UTC is a 400, not a crash; the
    // last day there is, as a date, is a bound like any other.
    for bound in ["recorded_before=9999-12-31T23:30:00-05:00", "recorded_after=9999-12-31T23:30:00-05:00"] {
        let (status, err) = s.get(&format!("/api/compliance/audit-log/?{bound}"), &org.auditor).await;
        assert_eq!(status, 400, "{bound}: {err}");
    }
    assert_eq!(entries(&s, &org, "?resource_type=framework&recorded_before=9999-12-31").await.len(), 7);
    // PostgreSQL holds no NUL character: a filter with one is refused, over either transport's text.
    for filter in ["actor=%00", "resource_id=a%00b", "search=x&actor=a%00"] {
        let (status, err) = s.get(&format!("/api/compliance/audit-log/?{filter}"), &org.auditor).await;
        assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid text")), "{filter}: {err}");
    }
    // A search matches the names of fields too: how to find the entries that changed one.
    assert_eq!(entries(&s, &org, "?search=after.framework_type").await.len(), 7);
    // A misspelt filter is refused, not dropped (which would list the whole log); so is an
    // unknown key in a body.
    let (status, err) = s.get("/api/compliance/audit-log/?recorded_from=2024-01-01", &org.auditor).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Unknown parameter")), "{err}");
    let (status, err) =
        s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({ "structureOnly": true })).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Unknown parameter")), "{err}");
    // A path segment that is no id of its kind names nothing.
    for path in ["/api/compliance/audit-log/abc/", "/api/compliance/audit-log/verifications/not-a-run/"] {
        let (status, err) = s.get(path, &org.auditor).await;
        assert_eq!(status, 404, "{path}: {err}");
    }
    let (status, err) = s
        .post("/api/compliance/audit-log/abc/withhold/", &org.admin, json!({ "fields": ["actor"], "reason": "x" }))
        .await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = s.get("/api/compliance/audit-log/?cursor=garbage", &org.auditor).await;
    assert_eq!(status, 400);

    // Walk the whole log three at a time: newest first, no overlaps, no gaps.
    let mut url = "/api/compliance/audit-log/?page_size=3".to_owned();
    let mut seqs = Vec::new();
    loop {
        let (status, page) = s.get(&url, &org.auditor).await;
        assert_eq!(status, 200);
        assert_eq!(page["previous"], Value::Null);
        seqs.extend(page["results"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    let expected: Vec<i64> = (0..seqs.len() as i64).rev().collect();
    assert_eq!(seqs, expected);

    // A date range two at a time: newest recorded first, by recording time then sequence number
    // (ties included), every entry in the range once, and a cursor of the other kind refused.
    let all: Vec<Value> = entries(&s, &org, "?page_size=100").await;
    let (oldest, newest) = (all.last().unwrap()["recorded_at"].clone(), all[1]["recorded_at"].clone());
    let range = format!(
        "/api/compliance/audit-log/?page_size=2&recorded_after={}&recorded_before={}",
        oldest.as_str().unwrap(),
        newest.as_str().unwrap()
    );
    let mut url = range.clone();
    let mut walked: Vec<(String, i64)> = Vec::new();
    loop {
        let (status, page) = s.get(&url, &org.auditor).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e["recorded_at"].as_str().unwrap().to_owned(), e["seq"].as_i64().unwrap())),
        );
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    let mut expected: Vec<(String, i64)> = all
        .iter()
        .map(|e| (e["recorded_at"].as_str().unwrap().to_owned(), e["seq"].as_i64().unwrap()))
        .filter(|(at, _)| at.as_str() >= oldest.as_str().unwrap() && at.as_str() <= newest.as_str().unwrap())
        .collect();
    expected.sort_by(|a, b| b.cmp(a));
    assert_eq!(walked, expected);
    assert!(walked.len() >= all.len() - 1, "the range spans all but the newest entries");
    let seq_cursor = page_cursor(&s, &org, "/api/compliance/audit-log/?page_size=1").await;
    let (status, err) = s.get(&format!("{range}&cursor={seq_cursor}"), &org.auditor).await;
    assert_eq!(status, 400, "{err}");
    // Crafted time cursors: beyond any time, and a time PostgreSQL does not hold.
    for forged in ["at:170141183460469231731687303715884105727.1", "at:-300000000000000000.1"] {
        let (status, err) = s.get(&format!("{range}&cursor={}", B64URL.encode(forged)), &org.auditor).await;
        assert_eq!(status, 400, "{forged}: {err}");
    }

    let (status, entry) = s.get(&format!("/api/compliance/audit-log/{}/", seqs[0]), &org.admin).await;
    assert_eq!(status, 200);
    assert_eq!(entry["seq"], seqs[0]);
    let (status, _) = s.get("/api/compliance/audit-log/99999/", &org.auditor).await;
    assert_eq!(status, 404);
    // Only auditors and admins read the trail.
    for token in [&org.viewer, &org.editor] {
        let (status, _) = s.get("/api/compliance/audit-log/", token).await;
        assert_eq!(status, 403);
        let (status, _) = s.post("/api/compliance/audit-log/verify/", token, json!({})).await;
        assert_eq!(status, 403);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn proofs_verify_with_an_independent_implementation() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let (status, key) = s.call(Method::GET, "/api/compliance/audit-log/public-key/", None, None).await;
    assert_eq!(status, 200, "the public key is public");
    assert_eq!(key["algorithm"], "Ed25519");
    let public: [u8; 32] = B64.decode(key["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let key_name = key["key_name"].as_str().unwrap().to_owned();
    let (_, mine) = s.get("/api/compliance/audit-log/public-key/", &org.auditor).await;
    assert_eq!(mine["origin"], format!("{key_name}/{}", org.id));

    let first_cp = checkpoint(&s, &org).await;
    let first_size = first_cp["tree_size"].as_u64().unwrap();
    for i in 0..37 {
        create_framework(&s, &org, json!({ "name": format!("F{i}"), "framework_type": "CUSTOM" })).await;
    }
    let cp = checkpoint(&s, &org).await;
    let size = cp["tree_size"].as_u64().unwrap();
    assert!(size > first_size + 36);
    let (origin, signed_size, signed_root) =
        open_note(cp["note"].as_str().unwrap(), &key_name, &public).expect("signature verifies");
    assert_eq!((origin, signed_size), (format!("{key_name}/{}", org.id), size));
    assert_eq!(signed_root, unhex(cp["root_hash"].as_str().unwrap()));

    for seq in [0, 1, first_size, size / 2, size - 1] {
        let (status, proof) =
            s.get(&format!("/api/compliance/audit-log/proofs/inclusion/?seq={seq}"), &org.auditor).await;
        assert_eq!(status, 200, "{proof}");
        assert_eq!(proof["tree_size"], size);
        let (_, entry) = s.get(&format!("/api/compliance/audit-log/{seq}/"), &org.auditor).await;
        assert_eq!(proof["leaf_hash"], entry["leaf_hash"]);
        let path: Vec<[u8; 32]> =
            proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
        let leaf = unhex(proof["leaf_hash"].as_str().unwrap());
        assert!(rfc_verify_inclusion(seq, size, leaf, &path, signed_root), "inclusion of {seq}");
        assert!(!rfc_verify_inclusion(seq, size, h(&[b"other"]), &path, signed_root));
        let bytes = serde_json::to_vec(&proof["proof"]).unwrap().len();
        assert!(bytes < 1024, "proof of {bytes} bytes");
    }
    let (status, proof) =
        s.get(&format!("/api/compliance/audit-log/proofs/consistency/?first={first_size}"), &org.auditor).await;
    assert_eq!(status, 200, "{proof}");
    let path: Vec<[u8; 32]> = proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
    let first_root = unhex(first_cp["root_hash"].as_str().unwrap());
    assert_eq!(proof["first_root"], first_cp["root_hash"]);
    assert!(rfc_verify_consistency(first_size, size, first_root, signed_root, &path));
    assert!(!rfc_verify_consistency(first_size, size, h(&[b"x"]), signed_root, &path));

    for bad in ["?seq=-1", &format!("?seq={size}&tree_size={size}"), &format!("?seq=0&tree_size={}", size + 100)] {
        let (status, err) = s.get(&format!("/api/compliance/audit-log/proofs/inclusion/{bad}"), &org.auditor).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let (status, _) = s.get("/api/compliance/audit-log/proofs/consistency/?first=0", &org.auditor).await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inclusion_proof_needs_its_seq() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 2).await;
    checkpoint(&s, &org).await;
    let (status, err) = s.get("/api/compliance/audit-log/proofs/inclusion/", &org.auditor).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"], "Invalid value for 'seq'");
    let (status, proof) = s.get("/api/compliance/audit-log/proofs/inclusion/?seq=0", &org.auditor).await;
    assert_eq!(status, 200, "{proof}");
    assert_eq!(proof["seq"], 0);
    use custos_proto::v1 as pb;
    use custos_proto::v1::audit_service_client::AuditServiceClient;
    let mut c = AuditServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let err = c.get_inclusion_proof(pb::InclusionProofRequest { seq: None, tree_size: None }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "Invalid value for 'seq'");
}

#[tokio::test(flavor = "multi_thread")]
async fn tampering_is_detected_and_named() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 10).await;
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    let org_id = org.id;

    let expect_bad = async |seq: i64, what: &str| {
        let report = verify(&s, &org).await;
        assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(seq)), "{report}");
        assert!(report["problem"].as_str().unwrap().contains(what), "{report}");
    };

    // 1. Edit a field of entry 6.
    let edit =
        edit_fields(org_id, 6, "replace($F, 'after.name' || chr(9) || '\"', 'after.name' || chr(9) || '\"forged ')");
    tamper(&s, &edit).await;
    expect_bad(6, "hash mismatch").await;
    tamper(&s, &edit_fields(org_id, 6, "replace($F, '\"forged ', '\"')")).await;
    assert_eq!(verify(&s, &org).await["ok"], true, "restoring the field restores the entry");

    // 2. Edit what listings filter entry 4 on, leaving its fields alone; then drop its index row.
    let index_of = |seq: i64| format!("organization_id = '{org_id}' AND seq = {seq}");
    tamper(&s, &format!("UPDATE audit_index SET action = action || '-forged' WHERE {}", index_of(4))).await;
    expect_bad(4, "indexed action").await;
    tamper(&s, &format!("UPDATE audit_index SET action = replace(action, '-forged', '') WHERE {}", index_of(4))).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    tamper(&s, &format!("DELETE FROM audit_index WHERE {}", index_of(9))).await;
    expect_bad(9, "index row of entry 9 is missing").await;

    // 3. Delete entry 7's content but keep its place in the log.
    tamper(&s, &remove_content(org_id, 7)).await;
    expect_bad(7, "content of entry 7 is missing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_too_damaged_to_read_is_a_failed_verification_not_an_error() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 3).await;
    checkpoint(&s, &org).await;
    // The stored contents are no longer a list of entries, as a superuser could leave them.
    tamper(&s, "ALTER TABLE audit_contents DROP CONSTRAINT audit_content_run_shape").await;
    tamper(&s, &format!("UPDATE audit_contents SET fields = '{{{{x}},{{y}}}}' WHERE organization_id = '{}'", org.id))
        .await;
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(0)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("malformed"), "{report}");
    // The run ends as failed, not left running to be resumed into the same error.
    let (status, runs) = s.get("/api/compliance/audit-log/verifications/", &org.auditor).await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["results"][0]["status"], "failed", "{runs}");
    // A window whose anchor (the entry before it) is gone from the log fails there, too.
    let total = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    cut_from_log(&s, org.id, total - 2, total - 1).await;
    tamper(
        &s,
        &format!(
            "UPDATE audit_index SET recorded_at = recorded_at - interval '30 days' WHERE organization_id = '{}' AND seq < {}",
            org.id,
            total - 1
        ),
    )
    .await;
    let (status, report) = s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({ "days": 1 })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(total - 2)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("missing from the log"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_recorded_in_the_v2_encoding_verify_beside_v3_ones() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 2).await;
    // Two entries exactly as the v2 encoder wrote them (a user's email changed), recorded as a
    // writer records them, between v3 entries.
    let v2: Value =
        serde_json::from_str(include_str!("../../crates/audit-chain/testdata/v2_entry.json")).expect("the v2 entry");
    let mut tx = s.app().db.begin(org.id).await.unwrap();
    for _ in 0..2 {
        diesel::sql_query(format!(
            "INSERT INTO audit_entries (organization_id, event_id, fields, salts, digest)
             VALUES ('{}', '{}', $1, decode('{}', 'hex'), decode('{}', 'hex'))",
            org.id,
            uuid::Uuid::now_v7(),
            v2["salts"].as_str().unwrap(),
            v2["digest"].as_str().unwrap()
        ))
        .bind::<diesel::sql_types::Text, _>(v2["fields"].as_str().unwrap())
        .execute(tx.conn())
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    create_frameworks(&s, &org, 2).await;
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);

    let old = entries(&s, &org, "?actor=user:1").await;
    assert_eq!(old.len(), 2, "{old:?}");
    assert_eq!(old[0]["after"], json!({"email": "new@example.com", "note": "tab\there", "role": "admin"}));
    let seq = old[1]["seq"].as_i64().unwrap();

    // Withholding a v2 entry's field keeps its leaf, and the log verifies, online and offline.
    let url = format!("/api/compliance/audit-log/{seq}/withhold/");
    let (status, redacted) =
        s.post(&url, &org.admin, json!({ "fields": ["after.email"], "reason": "GDPR Art. 17" })).await;
    assert_eq!(status, 200, "{redacted}");
    assert_eq!(redacted["leaf_hash"], old[1]["leaf_hash"]);
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    let mut export = Vec::new();
    s.app().audit.chain().export(org.id, &mut export, |_, _| {}).await.expect("export");
    let offline = custos_audit_chain::export::verify_file(&export[..], vec![], |_, _| {}).expect("readable");
    assert!(offline.ok, "{offline:?}");
    let salt_markers: Vec<u8> = String::from_utf8_lossy(&export)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok()?["entry"]["salts"].as_str().map(str::to_owned))
        .map(|salts| B64.decode(salts).unwrap()[0])
        .collect();
    for (marker, what) in [(0x01, "v2 seeded"), (0x02, "v2 withheld"), (0x03, "v3 seeded")] {
        assert!(salt_markers.contains(&marker), "a {what} entry is exported: {salt_markers:?}");
    }

    // An edit to a v2 entry is caught and named.
    tamper(&s, &edit_fields(org.id, seq, "replace($F, '\"admin\"', '\"root\"')")).await;
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(seq)), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deleted_swapped_and_truncated_entries_are_detected() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 10).await;
    checkpoint(&s, &org).await;
    let org_id = org.id;
    let problem = |r: &Value| r["problem"].as_str().unwrap_or_default().to_owned();

    // Swap two entries' positions.
    swap(&s, org_id, 3, 8).await;
    let report = verify(&s, &org).await;
    assert_eq!(report["first_bad_seq"], 3, "{report}");
    assert!(problem(&report).contains("reordering: entry 3 holds the content of entry 8"), "{report}");
    swap(&s, org_id, 3, 8).await;
    assert_eq!(verify(&s, &org).await["ok"], true, "swapping back restores it");

    // Delete one in the middle.
    cut_from_log(&s, org_id, 5, 6).await;
    let report = verify(&s, &org).await;
    assert_eq!(report["first_bad_seq"], 5, "{report}");
    assert!(problem(&report).contains("gap"), "{report}");
}

/// Entries no checkpoint covers are said in the report: normal for a moment after a change, a
/// sign of removed checkpoints if it persists.
#[tokio::test(flavor = "multi_thread")]
async fn entries_no_checkpoint_covers_are_noted() {
    let mut s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 3).await;
    let size = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    // The server stopped, so that nothing signs behind the test's back.
    let server = s.server.take().expect("running");
    let app = server.app.clone();
    server.shutdown().await;
    let chain = app.audit.chain();
    let depth = custos_audit_chain::verify::Depth::Content;
    let report = chain.verify(org.id, None, depth).await.unwrap();
    assert!(report.ok && !report.notes.iter().any(|n| n.contains("not yet covered")), "{report:?}");

    // The latest checkpoint removed (as a superuser would): its entries are now unsigned.
    let o = org.id;
    tamper(&s, &format!("DELETE FROM audit_checkpoints WHERE organization_id = '{o}' AND tree_size = {size}")).await;
    let report = chain.verify(org.id, None, depth).await.unwrap();
    assert!(report.ok, "{report:?}");
    let previous: Option<i64> = {
        let mut conn = s.db.superuser().await;
        #[derive(diesel::QueryableByName)]
        struct Max {
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
            n: Option<i64>,
        }
        let max: Max = diesel::sql_query(format!(
            "SELECT max(tree_size) AS n FROM audit_checkpoints WHERE organization_id = '{o}'"
        ))
        .get_result(&mut conn)
        .await
        .unwrap();
        max.n
    };
    let from = previous.unwrap_or(0);
    let expected = format!("entries {from}..{} are not yet covered by a signed checkpoint", size - 1);
    assert!(report.notes.iter().any(|n| n.contains(&expected)), "{expected}: {report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn truncation_and_forged_checkpoints_are_detected() {
    // No background jobs: a scheduled job's audit entry sequenced while the head is tampered
    // with below would make the test's own restorations wrong, not the chain.
    let mut jobs = custos_testkit::test_jobs_config();
    jobs.run = false;
    let s = TestServer::start_with(custos_testkit::ServerOptions { jobs: Some(jobs), ..Default::default() }).await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 6).await;
    let cp = checkpoint(&s, &org).await;
    let size = cp["tree_size"].as_i64().unwrap();
    let org_id = org.id;

    // Forge the checkpoint: a different root, re-signed with a key that is not the server's.
    let forger = custos_audit_chain::note::NoteSigner::new(
        "custos.test/audit",
        ed25519_dalek::SigningKey::from_bytes(&[1u8; 32]),
    );
    let forged = forger.sign(&custos_audit_chain::note::Checkpoint {
        origin: format!("custos.test/audit/{org_id}"),
        size: size as u64,
        root: [0u8; 32],
        extensions: vec![],
    });
    tamper(&s, &format!("UPDATE audit_checkpoints SET note = '{forged}', root_hash = '\\x{}' WHERE organization_id = '{org_id}' AND tree_size = {size}", "00".repeat(32))).await;
    let report = verify_quietly(&s, &org).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_seq"], size - 1, "{report}");
    assert!(report["problem"].as_str().unwrap().contains("bad signature"), "{report}");
    tamper(&s, &format!("UPDATE audit_checkpoints SET note = '{}', root_hash = '\\x{}' WHERE organization_id = '{org_id}' AND tree_size = {size}", cp["note"].as_str().unwrap(), cp["root_hash"].as_str().unwrap())).await;
    assert_eq!(verify_quietly(&s, &org).await["ok"], true);

    // Shrink the head, leaving the log alone: the log holds more than the head admits to.
    tamper(&s, &format!("UPDATE audit_heads SET tree_size = {} WHERE organization_id = '{org_id}'", size - 1)).await;
    let report = verify_quietly(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(size - 1)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("beyond its head"), "{report}");
    tamper(&s, &format!("UPDATE audit_heads SET tree_size = {size} WHERE organization_id = '{org_id}'")).await;
    assert_eq!(verify_quietly(&s, &org).await["ok"], true);

    // Remove the newest entries (and fix up the head to hide it): the checkpoint still covers them.
    cut_from_log(&s, org_id, size - 2, size).await;
    tamper(&s, &format!("UPDATE audit_heads SET tree_size = {} WHERE organization_id = '{org_id}'", size - 2)).await;
    let report = verify_quietly(&s, &org).await;
    assert_eq!(report["ok"], false);
    assert_eq!(report["first_bad_seq"], size - 2, "{report}");
    assert!(report["problem"].as_str().unwrap().contains("missing at the end"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_sees_and_proves_only_its_own_log() {
    let s = TestServer::start().await;
    let a = s.org("alpha").await;
    let b = s.org("bravo").await;
    let fw = create_framework(&s, &a, seed_gdpr_body()).await;
    checkpoint(&s, &a).await;
    checkpoint(&s, &b).await;
    let b_entries = entries(&s, &b, "").await;
    assert!(b_entries.iter().all(|e| !e.to_string().contains(&id(&fw))));
    let b_found = entries(&s, &b, &format!("?resource_id={}", id(&fw))).await;
    assert!(b_found.is_empty());
    // B's proofs are about B's tree; A's checkpoint notes are A's origin.
    let (_, a_cp) = s.get("/api/compliance/audit-log/checkpoints/latest/", &a.auditor).await;
    let (_, b_cp) = s.get("/api/compliance/audit-log/checkpoints/latest/", &b.auditor).await;
    assert!(a_cp["note"].as_str().unwrap().contains(&a.id.to_string()));
    assert!(b_cp["note"].as_str().unwrap().contains(&b.id.to_string()));
    assert_ne!(a_cp["root_hash"], b_cp["root_hash"]);
    // The same sequence number in each log: each auditor gets a proof of their own entry, which
    // verifies against their own checkpoint and not the other's.
    for (auditor, own, other) in [(&a.auditor, &a_cp, &b_cp), (&b.auditor, &b_cp, &a_cp)] {
        let size = own["tree_size"].as_u64().unwrap();
        let (status, proof) =
            s.get(&format!("/api/compliance/audit-log/proofs/inclusion/?seq=0&tree_size={size}"), auditor).await;
        assert_eq!(status, 200, "{proof}");
        let path: Vec<[u8; 32]> =
            proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
        let leaf = unhex(proof["leaf_hash"].as_str().unwrap());
        assert!(rfc_verify_inclusion(0, size, leaf, &path, unhex(own["root_hash"].as_str().unwrap())));
        let other_root = unhex(other["root_hash"].as_str().unwrap());
        assert!(!rfc_verify_inclusion(0, other["tree_size"].as_u64().unwrap(), leaf, &path, other_root));
    }
    let a_size = a_cp["tree_size"].as_i64().unwrap();
    let (status, _) =
        s.get(&format!("/api/compliance/audit-log/proofs/inclusion/?seq={}", a_size - 1), &b.auditor).await;
    assert_eq!(status, 400, "B's log is shorter; A's entries are not in it");
    let (_, cps) = s.get("/api/compliance/audit-log/checkpoints/", &b.auditor).await;
    assert!(cps["results"].as_array().unwrap().iter().all(|c| c["note"].as_str().unwrap().contains(&b.id.to_string())));
}

#[tokio::test(flavor = "multi_thread")]
async fn pruning_keeps_the_rest_verifiable_and_provable() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    for i in 0..9 {
        create_framework(&s, &org, json!({ "name": format!("old {i}"), "framework_type": "CUSTOM" })).await;
    }
    let before = checkpoint(&s, &org).await;
    let boundary = before["tree_size"].as_u64().unwrap();
    let chain = s.app().audit.chain().clone();
    let outcome = chain.prune_before(org.id, time::OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!((outcome.removed, outcome.pruned_before), (boundary, boundary));
    for i in 0..20 {
        create_framework(&s, &org, json!({ "name": format!("new {i}"), "framework_type": "CUSTOM" })).await;
    }
    let after = checkpoint(&s, &org).await;
    let size = after["tree_size"].as_u64().unwrap();

    let report = verify(&s, &org).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["first_seq"], boundary);
    assert!(report["notes"].to_string().contains("pruned"));
    // The pruning is itself in the trail.
    assert_eq!(entries(&s, &org, "?action=prune").await.len(), 1);

    let (_, key) = s.call(Method::GET, "/api/compliance/audit-log/public-key/", None, None).await;
    let public: [u8; 32] = B64.decode(key["public_key"].as_str().unwrap()).unwrap().try_into().unwrap();
    let (_, _, root) = open_note(after["note"].as_str().unwrap(), key["key_name"].as_str().unwrap(), &public).unwrap();
    for seq in [boundary, boundary + 1, boundary + 7, size - 1] {
        let (status, proof) = s
            .get(&format!("/api/compliance/audit-log/proofs/inclusion/?seq={seq}&tree_size={size}"), &org.auditor)
            .await;
        assert_eq!(status, 200, "{seq}: {proof}");
        let path: Vec<[u8; 32]> =
            proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
        assert!(rfc_verify_inclusion(seq, size, unhex(proof["leaf_hash"].as_str().unwrap()), &path, root), "{seq}");
    }
    let (status, err) = s.get("/api/compliance/audit-log/proofs/inclusion/?seq=0", &org.auditor).await;
    assert_eq!(status, 422, "{err}");
    // The old checkpoint stays consistent with the new one.
    let (status, proof) = s
        .get(&format!("/api/compliance/audit-log/proofs/consistency/?first={boundary}&second={size}"), &org.auditor)
        .await;
    assert_eq!(status, 200, "{proof}");
    let path: Vec<[u8; 32]> = proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
    assert!(rfc_verify_consistency(boundary, size, unhex(before["root_hash"].as_str().unwrap()), root, &path));
    // From a tree size before the boundary, the proof would need pruned entries: said so.
    let early = 3;
    let (status, err) = s
        .get(&format!("/api/compliance/audit-log/proofs/consistency/?first={early}&second={size}"), &org.auditor)
        .await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (422, Some("Entry pruned")), "{early}: {err}");
    // An export starts at the boundary and verifies offline from its anchor.
    let (offline, _) = export_verified_offline(&s, &org).await;
    assert!(offline.ok && offline.key_pinned, "{offline:?}");
    assert_eq!(offline.first_seq, boundary, "{offline:?}");
    assert!(offline.entries >= size - boundary, "{offline:?}");
    // Pruning again with nothing old is a no-op.
    let again = chain.prune_before(org.id, time::OffsetDateTime::now_utc() - time::Duration::days(1)).await.unwrap();
    assert_eq!(again.removed, 0);

    // What verification looks for among entries still waiting to be sequenced matches the
    // pruning's entry as stored, and only it.
    let mut conn = s.db.superuser().await;
    #[derive(diesel::QueryableByName)]
    struct Matched {
        #[diesel(sql_type = diesel::sql_types::Text)]
        fields: String,
    }
    let matched: Vec<Matched> = diesel::sql_query(
        "SELECT f AS fields FROM audit_contents c, unnest(c.fields) f WHERE c.organization_id = $1 AND f LIKE $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(org.id)
    .bind::<diesel::sql_types::Text, _>(custos_audit_chain::verify::PRUNE_FIELDS_PATTERN)
    .load(&mut conn)
    .await
    .unwrap();
    assert_eq!(matched.len(), 1);
    assert!(matched[0].fields.contains(&format!("after.pruned_before\t{boundary}\n")), "{}", matched[0].fields);
    // A boundary no recorded pruning accounts for fails, naming the first retained entry.
    checkpoint(&s, &org).await;
    let o = org.id;
    tamper(&s, &format!("UPDATE audit_index SET action = 'update' WHERE organization_id = '{o}' AND action = 'prune'"))
        .await;
    let depth = custos_audit_chain::verify::Depth::Structure;
    let report = chain.verify(org.id, None, depth).await.unwrap();
    assert_eq!(report.first_bad_seq, Some(boundary), "{report:?}");
    assert!(report.problem.as_deref().unwrap().contains("no pruning of them is recorded"), "{report:?}");
}

/// The database itself refuses a pruning beyond retention, whatever its caller asks: entries not
/// yet indexed, entries recorded after the cutoff, or a cutoff in the future.
#[tokio::test(flavor = "multi_thread")]
async fn the_database_refuses_pruning_beyond_retention() {
    let mut s = TestServer::start().await;
    let org = s.org("acme").await;
    for i in 0..5 {
        create_framework(&s, &org, json!({ "name": format!("f{i}"), "framework_type": "CUSTOM" })).await;
    }
    let indexed = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    // The server's sequencer and indexer stopped: more entries, sequenced but not indexed.
    let server = s.server.take().expect("running");
    let app = server.app.clone();
    server.shutdown().await;
    let ctx = custos_core::RequestCtx::operator(org.id, "acme");
    let mut tx = app.db.begin(org.id).await.unwrap();
    for i in 0..3 {
        let after = json!({ "n": i });
        let change = custos_audit_chain::Change {
            action: "create",
            resource_type: "probe",
            resource_id: i.to_string(),
            before: Value::Null,
            after,
        };
        custos_audit_chain::record(&mut tx, &ctx, change).await.unwrap();
    }
    tx.commit().await.unwrap();
    let chain = app.audit.chain();
    while chain.integrate(org.id, true).await.unwrap().sequenced > 0 {}

    let prune = |before: i64, cutoff: &'static str| {
        let db = app.db.clone();
        async move {
            let mut tx = db.begin(org.id).await.unwrap();
            let result = diesel::sql_query("SELECT custos_audit_prune($1, $2, $3::timestamptz)")
                .bind::<diesel::sql_types::Uuid, _>(org.id)
                .bind::<diesel::sql_types::BigInt, _>(before)
                .bind::<diesel::sql_types::Text, _>(cutoff)
                .execute(tx.conn())
                .await;
            // Committed when it goes through, so that what a refusal prevented would show.
            match result {
                Ok(_) => tx.commit().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    let err = prune(indexed + 3, "2000-01-01T00:00:00Z").await.unwrap_err();
    assert!(err.contains("beyond the indexed entries"), "{err}");
    let err = prune(indexed, "2000-01-01T00:00:00Z").await.unwrap_err();
    assert!(err.contains("recorded after the cutoff"), "{err}");
    let err = prune(indexed, "2999-01-01T00:00:00Z").await.unwrap_err();
    assert!(err.contains("in the future"), "{err}");

    // Nothing was removed by the refused calls.
    let report = chain.verify(org.id, None, custos_audit_chain::verify::Depth::Content).await.unwrap();
    assert!(report.ok && report.first_seq == 0, "{report:?}");
    assert_eq!(report.entries_checked as i64, indexed + 3, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_data_can_be_withheld_without_breaking_the_chain() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let cp = checkpoint(&s, &org).await;
    let users = entries(&s, &org, "?resource_type=user&action=create").await;
    let entry = users.iter().find(|e| e["after"]["email"] == "viewer@acme.test").unwrap().clone();
    let seq = entry["seq"].as_i64().unwrap();
    let url = format!("/api/compliance/audit-log/{seq}/withhold/");

    for token in [&org.auditor, &org.editor] {
        let (status, _) = s.post(&url, token, json!({ "fields": ["after.email"], "reason": "GDPR Art. 17" })).await;
        assert_eq!(status, 403);
    }
    for (body, why) in [
        (json!({ "fields": ["after.email"] }), "reason"),
        (json!({ "fields": [], "reason": "x" }), "fields"),
        (json!({ "fields": ["action"], "reason": "x" }), "fields"),
        (json!({ "fields": ["after.shoe_size"], "reason": "x" }), "fields"),
    ] {
        let (status, err) = s.post(&url, &org.admin, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{why}'"));
    }
    let (status, redacted) = s
        .post(&url, &org.admin, json!({ "fields": ["after.email", "client_addr"], "reason": "GDPR Art. 17 request 7" }))
        .await;
    assert_eq!(status, 200, "{redacted}");
    assert_eq!(redacted["withheld_fields"], json!(["after.email", "client_addr"]));
    assert!(redacted["after"].get("email").is_none());
    assert_eq!(redacted["after"]["role"], "viewer");
    assert_eq!(redacted["leaf_hash"], entry["leaf_hash"], "the leaf is unchanged");
    assert!(!redacted.to_string().contains("viewer@acme.test"));

    // The old checkpoint still proves the entry, and the whole chain still verifies.
    let (_, proof) = s
        .get(
            &format!("/api/compliance/audit-log/proofs/inclusion/?seq={seq}&tree_size={}", cp["tree_size"]),
            &org.auditor,
        )
        .await;
    let path: Vec<[u8; 32]> = proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
    assert!(rfc_verify_inclusion(
        seq as u64,
        cp["tree_size"].as_u64().unwrap(),
        unhex(proof["leaf_hash"].as_str().unwrap()),
        &path,
        unhex(cp["root_hash"].as_str().unwrap())
    ));
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    // Withholding more of the same entry later works too, and is itself recorded.
    let (status, again) = s.post(&url, &org.admin, json!({ "fields": ["actor"], "reason": "second request" })).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["actor"], "[withheld]");
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    assert_eq!(entries(&s, &org, "?action=withhold").await.len(), 2);
    // Offline too: the export holds the commitment, not the value, and verifies.
    let (offline, text) = export_verified_offline(&s, &org).await;
    assert!(offline.ok && offline.key_pinned, "{offline:?}");
    assert!(!text.contains("viewer@acme.test"), "the withheld value is not exported");
    // Putting the value back by hand does not restore a verifiable entry without its salt:
    // a guessed value cannot be confirmed against the commitment.
    let mut conn = s.db.superuser().await;
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    diesel::sql_query(edit_fields(
        org.id,
        seq,
        "regexp_replace($F, 'after\\.email\\t![0-9a-f]+', 'after.email' || chr(9) || '\"viewer@acme.test\"')",
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(seq)), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn withholdings_of_one_entry_at_once_keep_each_other() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 4).await;
    checkpoint(&s, &org).await;
    for created in entries(&s, &org, "?resource_type=framework&action=create").await {
        let url = format!("/api/compliance/audit-log/{}/withhold/", created["seq"]);
        let (a, b) = tokio::join!(
            s.post(&url, &org.admin, json!({ "fields": ["after.name"], "reason": "request a" })),
            s.post(&url, &org.admin, json!({ "fields": ["client_addr"], "reason": "request b" })),
        );
        assert_eq!((a.0.as_u16(), b.0.as_u16()), (200, 200), "{} {}", a.1, b.1);
        let (_, now) = s.get(&format!("/api/compliance/audit-log/{}/", created["seq"]), &org.auditor).await;
        assert_eq!(now["withheld_fields"], json!(["after.name", "client_addr"]), "neither undid the other: {now}");
    }
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_api_over_grpc() {
    use custos_proto::v1 as pb;
    use custos_proto::v1::audit_service_client::AuditServiceClient;
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_framework(&s, &org, seed_gdpr_body()).await;
    let mut c = AuditServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let cp = c.create_checkpoint(pb::CreateCheckpointRequest {}).await.unwrap().into_inner();
    let list = c
        .list_entries(pb::ListAuditEntriesRequest { resource_type: Some("framework".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.results.len(), 1);
    let e = &list.results[0];
    let after: Value = serde_json::from_str(&e.after).unwrap();
    assert_eq!(after["name"], "GDPR Compliance Framework");
    let proof = c
        .get_inclusion_proof(pb::InclusionProofRequest { seq: Some(e.seq), tree_size: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(proof.tree_size, cp.tree_size);
    let path: Vec<[u8; 32]> = proof.proof.iter().map(|p| unhex(p)).collect();
    assert!(rfc_verify_inclusion(
        e.seq as u64,
        cp.tree_size as u64,
        unhex(&proof.leaf_hash),
        &path,
        unhex(&cp.root_hash)
    ));
    // A consistency proof from that checkpoint to a later one, checked independently; a bad
    // request is a gRPC status, not a crash.
    create_framework(&s, &org, json!({ "name": "later", "framework_type": "CUSTOM" })).await;
    let later = c.create_checkpoint(pb::CreateCheckpointRequest {}).await.unwrap().into_inner();
    assert!(later.tree_size > cp.tree_size);
    let consistency = c
        .get_consistency_proof(pb::ConsistencyProofRequest { first: cp.tree_size, second: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((consistency.first, consistency.second), (cp.tree_size, later.tree_size));
    assert_eq!(
        (consistency.first_root.as_str(), consistency.second_root.as_str()),
        (cp.root_hash.as_str(), later.root_hash.as_str())
    );
    let path: Vec<[u8; 32]> = consistency.proof.iter().map(|p| unhex(p)).collect();
    assert!(rfc_verify_consistency(
        cp.tree_size as u64,
        later.tree_size as u64,
        unhex(&cp.root_hash),
        unhex(&later.root_hash),
        &path
    ));
    let beyond = pb::ConsistencyProofRequest { first: later.tree_size + 5, second: Some(later.tree_size) };
    let status = c.get_consistency_proof(beyond).await.unwrap_err();
    assert!(
        matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition | tonic::Code::NotFound),
        "{status:?}"
    );
    let report = c
        .verify_chain(pb::VerifyAuditChainRequest { days: Some(30), structure_only: false })
        .await
        .unwrap()
        .into_inner();
    assert!(report.ok, "{report:?}");
    let mut anonymous = AuditServiceClient::new(s.grpc(None).await);
    let key = anonymous.get_public_key(pb::PublicKeyRequest {}).await.unwrap().into_inner();
    assert_eq!(key.algorithm, "Ed25519");
    assert_eq!(
        anonymous.list_entries(pb::ListAuditEntriesRequest::default()).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    let mut viewer = AuditServiceClient::new(s.grpc(Some(&org.viewer)).await);
    assert_eq!(
        viewer.list_entries(pb::ListAuditEntriesRequest::default()).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_entry_committed_long_after_it_was_recorded_is_still_sequenced() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // A change whose transaction stays open while later changes are recorded and sequenced.
    let ctx = custos_core::RequestCtx::operator(org.id, &org.slug);
    let mut slow = s.app().db.begin(org.id).await.unwrap();
    custos_audit_chain::record_change(&mut slow, &ctx, "update", "report", "slow-1", Value::Null, json!({"n": 1}))
        .await
        .unwrap();
    // Later changes are committed and sequenced first, while the straggler's transaction is open.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    create_frameworks(&s, &org, 3).await;
    let before = checkpoint(&s, &org).await["tree_size"].as_i64().unwrap();
    slow.commit().await.unwrap();

    // The background sequencer finds it without anyone asking.
    let mut listed = Vec::new();
    for _ in 0..50 {
        listed = entries(&s, &org, "?resource_id=slow-1").await;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(listed.len(), 1, "the straggler was sequenced and indexed");
    assert!(listed[0]["seq"].as_i64().unwrap() >= before, "it is sequenced after what was already in the tree");
    assert_eq!(listed[0]["after"], json!({"n": 1}));
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_stored_in_runs_reads_verifies_and_proves_across_them() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let ctx = custos_core::RequestCtx::operator(org.id, &org.slug);
    // Bursts of uneven size, each sequenced before the next, so that runs end inside a 256-block
    // as well as at its end (whatever the background sequencer takes in between).
    let mut n = 0;
    for burst in [100, 200, 300, 130] {
        let mut tx = s.app().db.begin(org.id).await.unwrap();
        for _ in 0..burst {
            custos_audit_chain::record_change(
                &mut tx,
                &ctx,
                "update",
                "report",
                &format!("r-{n}"),
                Value::Null,
                json!({ "n": n }),
            )
            .await
            .unwrap();
            n += 1;
        }
        tx.commit().await.unwrap();
        checkpoint(&s, &org).await;
    }
    let cp = checkpoint(&s, &org).await;
    let size = cp["tree_size"].as_i64().unwrap();
    assert!(size >= n, "{size} < {n}");

    #[derive(diesel::QueryableByName)]
    struct Run {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        first_seq: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        len: i64,
    }
    let mut conn = s.db.superuser().await;
    let runs: Vec<Run> = diesel::sql_query(
        "SELECT first_seq, (length(leaf_hashes) / 32)::bigint AS len FROM audit_log WHERE organization_id = $1 ORDER BY first_seq",
    )
    .bind::<diesel::sql_types::Uuid, _>(org.id)
    .load(&mut conn)
    .await
    .unwrap();
    let mut next = 0;
    for run in &runs {
        assert_eq!(run.first_seq, next, "runs follow each other without gaps");
        assert_eq!(run.first_seq / 256, (run.first_seq + run.len - 1) / 256, "a run stays within one 256-block");
        next += run.len;
    }
    assert_eq!(next, size);
    assert!(runs.len() >= 4 && runs.len() < size as usize, "{} runs for {size} entries", runs.len());

    assert_eq!(verify_quietly(&s, &org).await["ok"], true);
    let root = unhex(cp["root_hash"].as_str().unwrap());
    for seq in [0, 99, 100, 255, 256, 257, 511, 512, size - 1] {
        let (status, proof) =
            s.get(&format!("/api/compliance/audit-log/proofs/inclusion/?seq={seq}"), &org.auditor).await;
        assert_eq!(status, 200, "{proof}");
        let (status, entry) = s.get(&format!("/api/compliance/audit-log/{seq}/"), &org.auditor).await;
        assert_eq!(status, 200, "{entry}");
        assert_eq!((entry["seq"].as_i64(), &proof["leaf_hash"]), (Some(seq), &entry["leaf_hash"]));
        let path: Vec<[u8; 32]> =
            proof["proof"].as_array().unwrap().iter().map(|p| unhex(p.as_str().unwrap())).collect();
        assert!(rfc_verify_inclusion(
            seq as u64,
            size as u64,
            unhex(entry["leaf_hash"].as_str().unwrap()),
            &path,
            root
        ));
    }
    // A listing pages through every run, newest first, each entry once.
    let mut seen = Vec::new();
    let mut url = "/api/compliance/audit-log/?page_size=100".to_owned();
    loop {
        let (status, page) = s.get(&url, &org.auditor).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["results"].as_array().unwrap().iter().map(|e| e["seq"].as_i64().unwrap()));
        match page["next"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, (0..size).rev().collect::<Vec<_>>());
    let listed = entries(&s, &org, "?resource_id=r-300").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["after"], json!({ "n": 300 }));

    // Retention removes whole runs: the boundary moves back to the start of the run holding the
    // first entry young enough to keep.
    let young = listed[0]["seq"].as_i64().unwrap();
    let cutoff = time::OffsetDateTime::parse(
        listed[0]["recorded_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let chain = s.app().audit.chain().clone();
    let pruned = chain.prune_before(org.id, cutoff).await.unwrap().pruned_before as i64;
    let holding = runs.iter().rfind(|r| r.first_seq <= young).unwrap();
    assert!(pruned <= young && pruned >= holding.first_seq, "pruned before {pruned}, young entry {young}");
    assert!(runs.iter().any(|r| r.first_seq == pruned), "{pruned} starts a run");
    let report = verify(&s, &org).await;
    assert_eq!((report["ok"].clone(), report["first_seq"].clone()), (json!(true), json!(pruned)), "{report}");
    assert_eq!(entries(&s, &org, "?resource_id=r-300").await.len(), 1, "the young entry is kept");
    let (status, _) = s.get(&format!("/api/compliance/audit-log/{}/", pruned - 1), &org.auditor).await;
    assert_eq!(status, 404, "the entry before the boundary is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_committed_entry_is_sequenced_exactly_once_whatever_order_transactions_commit_in() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let ctx = custos_core::RequestCtx::operator(org.id, &org.slug);
    let record = async |tx: &mut custos_db::Tx, name: &str| {
        custos_audit_chain::record_change(tx, &ctx, "update", "report", name, Value::Null, json!({ "n": name }))
            .await
            .unwrap();
    };
    // A second sequencer with batches of 3, racing the server's own: its batches end inside
    // transactions, and its cursor passes transactions that are still open.
    let chain =
        s.app().audit.chain().with_config(custos_audit_chain::SequencerConfig { batch_size: 3, ..Default::default() });
    let mut early = s.app().db.begin(org.id).await.unwrap();
    record(&mut early, "early-1").await;
    let mut big = s.app().db.begin(org.id).await.unwrap();
    for i in 0..7 {
        record(&mut big, &format!("big-{i}")).await;
    }
    let mut doomed = s.app().db.begin(org.id).await.unwrap();
    record(&mut doomed, "doomed").await;
    for i in 0..5 {
        let mut tx = s.app().db.begin(org.id).await.unwrap();
        record(&mut tx, &format!("quick-{i}")).await;
        tx.commit().await.unwrap();
    }
    chain.sync(org.id).await.unwrap();
    let quick = entries(&s, &org, "?resource_type=report&page_size=100").await;
    let names = |listed: &[Value]| {
        let mut names: Vec<String> = listed.iter().map(|e| e["resource_id"].as_str().unwrap().to_owned()).collect();
        names.sort();
        names
    };
    assert_eq!(names(&quick), ["quick-0", "quick-1", "quick-2", "quick-3", "quick-4"], "only committed entries");

    big.commit().await.unwrap();
    chain.integrate(org.id, false).await.unwrap();
    // The early transaction goes on writing after the cursor has passed it, and commits last.
    record(&mut early, "early-2").await;
    drop(doomed); // rolled back
    chain.sync(org.id).await.unwrap();
    early.commit().await.unwrap();
    chain.sync(org.id).await.unwrap();
    s.app().audit.chain().sync(org.id).await.unwrap();

    let listed = entries(&s, &org, "?resource_type=report&page_size=100").await;
    let mut expected: Vec<String> = ["early-1", "early-2"].iter().map(|n| n.to_string()).collect();
    expected.extend((0..7).map(|i| format!("big-{i}")));
    expected.extend((0..5).map(|i| format!("quick-{i}")));
    expected.sort();
    assert_eq!(names(&listed), expected, "each committed entry once, the rolled-back one never");
    let mut seqs: Vec<i64> = listed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    seqs.sort();
    seqs.dedup();
    assert_eq!(seqs.len(), expected.len());
    let report = verify(&s, &org).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["notes"].as_array().map(Vec::len), Some(0), "nothing left unsequenced: {report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_structure_only_check_catches_what_it_claims_and_says_what_it_skipped() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 10).await;
    checkpoint(&s, &org).await;
    let structure = async || {
        let (status, report) =
            s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({ "structure_only": true })).await;
        assert_eq!(status, 200, "{report}");
        report
    };
    let report = structure().await;
    assert_eq!((report["ok"].clone(), report["content_checked"].clone()), (json!(true), json!(false)), "{report}");
    assert!(report["entries_checked"].as_i64().unwrap() >= 10, "{report}");
    assert!(
        report["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("edited field is not detected")),
        "{report}"
    );
    assert_eq!(verify(&s, &org).await["content_checked"], true);

    // An edited field: only the full check sees it.
    let org_id = org.id;
    tamper(
        &s,
        &edit_fields(org_id, 6, "replace($F, 'after.name' || chr(9) || '\"', 'after.name' || chr(9) || '\"forged ')"),
    )
    .await;
    assert_eq!(structure().await["ok"], true, "a structure-only check does not read fields");
    assert_eq!(verify(&s, &org).await["first_bad_seq"], 6);

    // A deleted entry: both see it, at the right place.
    cut_from_log(&s, org_id, 3, 4).await;
    let report = structure().await;
    assert_eq!((report["ok"].clone(), report["first_bad_seq"].clone()), (json!(false), json!(3)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("gap"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_counter_behind_the_cursor_halts_sequencing_loudly() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_framework(&s, &org, json!({ "name": "F0", "framework_type": "CUSTOM" })).await;
    checkpoint(&s, &org).await;
    s.app().audit.chain().check_transaction_counter().await.expect("a live cluster is ahead of its cursor");
    // As after a restore into another cluster: the cursor stands beyond the ids the database assigns.
    tamper(
        &s,
        &format!(
            "UPDATE audit_heads SET sequenced_xid = sequenced_xid + (1::bigint << 40) WHERE organization_id = '{}'",
            org.id
        ),
    )
    .await;
    create_framework(&s, &org, json!({ "name": "F1", "framework_type": "CUSTOM" })).await;

    let (status, body) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("pg_resetwal --epoch="), "says what to do: {body}");
    let (status, report) = s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({})).await;
    assert_eq!((status.as_u16(), report["ok"].clone()), (200, json!(false)), "{report}");
    assert!(report["problem"].as_str().unwrap().contains("transaction counter"), "{report}");
    let refused = s.app().audit.chain().check_transaction_counter().await.expect_err("start-up refuses");
    assert!(refused.to_string().contains("restored into another cluster"), "{refused}");
}

/// The value of the Prometheus sample `name` (with its labels as written, if any) in `text`.
pub(crate) fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_is_observable_in_metrics() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    create_frameworks(&s, &org, 6).await;
    checkpoint(&s, &org).await;
    assert_eq!(verify(&s, &org).await["ok"], true);
    tamper(&s, &format!("DELETE FROM audit_index WHERE organization_id = '{}' AND seq = 2", org.id)).await;
    let (status, report) = s.post("/api/compliance/audit-log/verify/", &org.auditor, json!({})).await;
    assert_eq!((status.as_u16(), report["ok"].clone()), (200, json!(false)), "{report}");

    let resp = s.raw(Method::GET, "/metrics", Some(&org.viewer), None).await;
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let value = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("no sample {name} in:\n{text}"));
    assert!(value("custos_audit_entries_sequenced_total") >= 6.0, "{text}");
    assert!(value("custos_audit_entries_indexed_total") >= 6.0, "{text}");
    assert!(value("custos_audit_checkpoints_signed_total") >= 1.0, "{text}");
    assert!(value(r#"custos_audit_verifications_total{depth="content",result="passed"}"#) >= 1.0, "{text}");
    assert!(value(r#"custos_audit_verifications_total{depth="content",result="failed"}"#) >= 1.0, "{text}");
    assert!(value("custos_audit_listing_delay_seconds_count") >= 6.0, "{text}");
    // The sequencer's loop finished a pass over every organisation with work, recently.
    let pass = value("custos_audit_sequencer_pass_timestamp_seconds");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    assert!(pass > now - 60.0 && pass <= now + 1.0, "{pass} vs {now}");
}
