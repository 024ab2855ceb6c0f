//! Evidence over REST: multipart uploads and JSON creates, streamed downloads, filters, the
//! chain of custody, integrity verification, and the bad paths.

use custos_testkit::{ServerOptions, TestOrg, TestServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{column, create_framework, create_requirement, id, seed_gdpr_body};

const EV: &str = "/api/compliance/evidence/";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// An incident, inserted directly (its own API is tested in the incidents suite).
pub async fn insert_incident(s: &TestServer, org: &TestOrg, title: &str) -> String {
    let id = uuid::Uuid::now_v7();
    s.superuser_sql(&format!(
        "INSERT INTO incidents (id, organization_id, title, severity, category, data_classification, status)
         VALUES ('{id}', '{}', '{title}', 'HIGH', 'DATA_BREACH', 'CONFIDENTIAL', 'OPEN')",
        org.id
    ))
    .await
    .expect("insert incident");
    id.to_string()
}

pub async fn upload(s: &TestServer, org: &TestOrg, title: &str, content: &[u8]) -> Value {
    let (status, created) = s
        .upload(
            EV,
            &org.editor,
            &[("title", title), ("evidence_type", "LOG_FILE")],
            Some(("auth.log", "text/plain", content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{created}");
    created
}

async fn create(s: &TestServer, org: &TestOrg, body: Value) -> Value {
    let (status, created) = s.post(EV, &org.editor, body).await;
    assert_eq!(status, 201, "{created}");
    created
}

fn actions(e: &Value) -> Vec<String> {
    e["custody_chain"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap().to_owned()).collect()
}

fn blob_files(s: &TestServer) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { walk(&p, out) } else { out.push(p) }
        }
    }
    let mut out = Vec::new();
    walk(&s.blob_dir(), &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_hashes_stores_by_content_and_downloads_with_custody() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let content = b"2026-11-23T10:00:00Z sshd[1]: Failed password for root from 203.0.113.9\n".repeat(1000);
    let incident = insert_incident(&s, &org, "Brute force").await;
    let (status, e) = s
        .upload(
            EV,
            &org.editor,
            &[
                ("title", "SSH logs"),
                ("description", "auth.log from bastion"),
                ("evidence_type", "LOG_FILE"),
                ("incident", &incident),
                ("source", "bastion-1"),
                ("retention_period", "365"),
                ("valid_until", "2099-01-01"),
            ],
            Some(("var/log/auth.log", "text/plain", &content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["file_hash"], sha256_hex(&content));
    assert_eq!(e["file_blake3"], blake3::hash(&content).to_hex().as_str());
    assert_eq!(e["file_size"], content.len());
    assert_eq!(e["file_name"], "auth.log", "only the last path component is kept");
    assert_eq!(e["content_type"], "text/plain");
    assert_eq!(e["status"], "COLLECTED");
    assert_eq!(e["incident"], incident.as_str());
    assert_eq!(e["collected_by"], "editor@acme.test");
    assert_eq!(e["retention_period"], 365);
    assert_eq!(e["is_expired"], false);
    assert_eq!(actions(&e), ["COLLECTED"]);
    let collected = &e["custody_chain"][0];
    assert_eq!(collected["details"]["sha256"], sha256_hex(&content));
    assert_eq!(collected["previous_hash"], "0".repeat(64));
    assert_eq!(collected["actor"], "editor@acme.test");
    // Content-addressed by BLAKE3 under the organisation.
    let path = e["file_path"].as_str().unwrap();
    assert!(path.starts_with(&format!("{}/blake3/", org.id)) && path.ends_with(e["file_blake3"].as_str().unwrap()));
    assert_eq!(std::fs::read(s.blob_dir().join(path)).unwrap(), content);

    let (status, headers, body) = s.download(&format!("{EV}{}/download/", id(&e)), &org.viewer).await;
    assert_eq!(status, 200);
    assert_eq!(body, content);
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["content-length"], content.len().to_string().as_str());
    assert!(headers["content-disposition"].to_str().unwrap().contains("filename=\"auth.log\""));
    use base64::Engine;
    let digest = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&content));
    assert_eq!(headers["repr-digest"], format!("sha-256=:{digest}:").as_str());
    assert_eq!(headers["cache-control"], "no-store");

    let (_, after) = s.get(&format!("{EV}{}/", id(&e)), &org.viewer).await;
    assert_eq!(actions(&after), ["COLLECTED", "ACCESSED"]);
    assert_eq!(after["custody_chain"][1]["actor"], "viewer@acme.test");
    assert_eq!(after["custody_chain"][1]["previous_hash"], after["custody_chain"][0]["record_hash"]);
    assert_eq!(s.audit_count(org.id, "create", "evidence").await, 1);
    assert_eq!(s.audit_count(org.id, "download", "evidence").await, 1);

    // The same bytes again: a second item, one stored object.
    let again = upload(&s, &org, "SSH logs (copy)", &content).await;
    assert_eq!(again["file_path"], e["file_path"]);
    assert_eq!(blob_files(&s).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn json_create_and_every_filter() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let art5 = id(&create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await);
    let art32 = id(&create_requirement(&s, &org, &id(&fw), "Art. 32", json!({})).await);
    let incident = insert_incident(&s, &org, "Phishing").await;
    let today = time::OffsetDateTime::now_utc().date();
    let in_days = |d: i64| (today + time::Duration::days(d)).to_string();

    let policy = create(
        &s,
        &org,
        json!({ "title": "Privacy policy", "evidence_type": "POLICY", "description": "signed by the DPO",
                "compliance_requirements": [art5, art32], "valid_until": in_days(10),
                "collected_at": "2026-01-10T09:00:00Z" }),
    )
    .await;
    assert_eq!(policy["file_path"], Value::Null);
    assert_eq!(policy["compliance_requirements"].as_array().unwrap().len(), 2);
    let screenshot = create(
        &s,
        &org,
        json!({ "title": "Phish landing page", "evidence_type": "SCREENSHOT", "incident": incident,
                "notes": "captured before takedown", "valid_until": in_days(-1),
                "collected_at": "2026-03-01T09:00:00Z" }),
    )
    .await;
    assert_eq!(screenshot["is_expired"], true);
    let report = create(
        &s,
        &org,
        json!({ "title": "Pen test report", "evidence_type": "REPORT", "compliance_requirements": [art32],
                "valid_until": in_days(60), "collected_at": "2026-06-01T09:00:00Z" }),
    )
    .await;
    let by_admin = {
        let (status, e) =
            s.post(EV, &org.admin, json!({ "title": "Board minutes", "evidence_type": "DOCUMENT" })).await;
        assert_eq!(status, 201);
        e
    };

    let titles = |q: &str| {
        let s = &s;
        let token = org.viewer.clone();
        let q = q.to_owned();
        async move {
            let (status, page) = s.get(&format!("{EV}?{q}"), &token).await;
            assert_eq!(status, 200, "{q}: {page}");
            let mut t = column(&page, "title");
            t.sort();
            t
        }
    };
    assert_eq!(titles("").await.len(), 4);
    assert_eq!(titles(&format!("incident={incident}")).await, ["Phish landing page"]);
    assert_eq!(titles("evidence_type=REPORT").await, ["Pen test report"]);
    assert_eq!(titles("status=COLLECTED").await.len(), 4);
    assert_eq!(titles("collected_by=admin@acme.test").await, ["Board minutes"]);
    assert_eq!(titles(&format!("compliance_requirement={art32}")).await, ["Pen test report", "Privacy policy"]);
    assert_eq!(titles(&format!("compliance_requirement={art5}")).await, ["Privacy policy"]);
    assert_eq!(titles("search=dpo").await, ["Privacy policy"], "description");
    assert_eq!(titles("search=TAKEDOWN").await, ["Phish landing page"], "notes");
    assert_eq!(titles("search=pen%20test").await, ["Pen test report"], "title");
    assert_eq!(titles("expiring_within=30").await, ["Privacy policy"]);
    assert_eq!(titles("expiring_within=90").await, ["Pen test report", "Privacy policy"]);
    assert_eq!(titles("expired=true").await, ["Phish landing page"]);
    assert_eq!(titles("expired=false").await, ["Board minutes", "Pen test report", "Privacy policy"]);
    assert_eq!(titles("collected_after=2026-02-01&collected_before=2026-04-01").await, ["Phish landing page"]);
    assert_eq!(
        titles("collected_after=2026-02-01T00:00:00Z&evidence_type=REPORT").await,
        ["Pen test report"],
        "filters combine"
    );
    let _ = (report, by_admin);

    for (q, field) in [
        ("evidence_type=VIDEOTAPE", "evidence_type"),
        ("status=LOST", "status"),
        ("incident=42", "incident"),
        ("compliance_requirement=x", "compliance_requirement"),
        ("expiring_within=soon", "expiring_within"),
        ("expired=maybe", "expired"),
        ("collected_after=yesterday", "collected_after"),
    ] {
        let (status, err) = s.get(&format!("{EV}?{q}"), &org.viewer).await;
        assert_eq!(status, 400, "{q}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{q}");
    }
    let (status, _) = s.get(&format!("{EV}?page=9"), &org.viewer).await;
    assert_eq!(status, 404, "a page past the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_leaves_nothing_behind() {
    let s = TestServer::start_with(ServerOptions { max_upload_bytes: Some(1024), ..Default::default() }).await;
    let org = s.org("acme").await;
    let file = Some(("a.txt", "text/plain", &b"hello"[..]));

    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("evidence_type", "LOG_FILE")], "title"),
        (vec![("title", "x"), ("evidence_type", "TAPE")], "evidence_type"),
        (
            vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("incident", "0190f1e6-0000-7000-8000-000000000000")],
            "incident",
        ),
        (vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("retention_period", "0")], "retention_period"),
        (vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("retention_period", "forever")], "retention_period"),
        (vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("collected_at", "2999-01-01T00:00:00Z")], "collected_at"),
        (vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("valid_until", "next week")], "valid_until"),
        (
            vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("compliance_requirements", "nope")],
            "compliance_requirements",
        ),
        (vec![("title", "x"), ("evidence_type", "LOG_FILE"), ("colour", "red")], "colour"),
    ];
    for (fields, field) in cases {
        let (status, err) = s.upload(EV, &org.editor, &fields, file, &[]).await;
        assert_eq!(status, 400, "{field}: {err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"), "{err}");
    }

    let too_big = vec![7u8; 1025];
    let (status, err) = s
        .upload(EV, &org.editor, &[("title", "x"), ("evidence_type", "LOG_FILE")], Some(("big", "x/y", &too_big)), &[])
        .await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"], "File too large");

    let (status, err) = s
        .upload(
            EV,
            &org.editor,
            &[("title", "x"), ("evidence_type", "LOG_FILE")],
            Some(("a", "text/plain", b"abc")),
            &[("notes", "would be lost")],
        )
        .await;
    assert_eq!(status, 400, "a part after the file: {err}");
    assert!(err["details"].as_str().unwrap().contains("file last"), "{err}");

    let (status, _) = s
        .upload(
            EV,
            &org.viewer,
            &[("title", "x"), ("evidence_type", "LOG_FILE")],
            Some(("a", "text/plain", b"abc")),
            &[],
        )
        .await;
    assert_eq!(status, 403);

    let (status, page) = s.get(EV, &org.viewer).await;
    assert_eq!((status, page["count"].clone()), (reqwest::StatusCode::OK, json!(0)), "no evidence recorded");
    assert!(blob_files(&s).is_empty(), "no object or staging file left: {:?}", blob_files(&s));
    assert_eq!(s.audit_count(org.id, "create", "evidence").await, 0);

    // Exactly at the limit is fine.
    let ok = vec![1u8; 1024];
    let (status, e) = s
        .upload(EV, &org.editor, &[("title", "x"), ("evidence_type", "LOG_FILE")], Some(("ok", "x/y", &ok)), &[])
        .await;
    assert_eq!(status, 201, "{e}");

    // JSON bad paths.
    let (status, err) = s.post(EV, &org.editor, json!({ "title": "x", "evidence_type": 7 })).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'evidence_type'")));
    let (status, _) = s.get(&format!("{EV}not-a-uuid/"), &org.viewer).await;
    assert_eq!(status, 404);
    let (status, _) = s.get(&format!("{EV}{}/", uuid::Uuid::now_v7()), &org.viewer).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn custody_records_chain_and_drive_the_status() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let e = upload(&s, &org, "Firewall config", b"permit any any").await;
    let eid = id(&e);
    let custody = |action: &str, notes: &str| {
        let (s, org, eid) = (&s, &org, eid.clone());
        let body = json!({ "action": action, "notes": notes });
        async move { s.post(&format!("{EV}{eid}/add_custody_record/"), &org.editor, body).await }
    };

    let (status, e) = custody("TRANSFERRED", "Transferred to legal team for review").await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["status"], "COLLECTED");
    let last = &e["custody_chain"][1];
    assert_eq!(last["action"], "TRANSFERRED");
    assert_eq!(last["notes"], "Transferred to legal team for review");
    assert_eq!(last["actor"], "editor@acme.test");
    assert_eq!(last["actor_role"], "editor");
    assert_eq!(last["sequence"], 2);
    assert_eq!(last["previous_hash"], e["custody_chain"][0]["record_hash"]);

    let (_, e) = custody("ANALYZED", "").await;
    assert_eq!(e["status"], "ANALYZED");
    let (_, e) = custody("SEALED", "sealed in bag 17").await;
    assert_eq!(e["status"], "SEALED");
    let (status, err) = s.patch(&format!("{EV}{eid}/"), &org.editor, json!({ "title": "new" })).await;
    assert_eq!(status, 409, "sealed evidence cannot change: {err}");
    let (status, _) = s.delete(&format!("{EV}{eid}/"), &org.editor).await;
    assert_eq!(status, 409, "nor be deleted");
    // Nor disposed of, nor quietly unsealed by another action: only RELEASED unseals it.
    for action in ["DISPOSED", "ANALYZED", "SEALED"] {
        let (status, err) = custody(action, "").await;
        assert_eq!(status, 409, "{action} on sealed evidence: {err}");
        assert_eq!(err["error"], "Evidence is sealed", "{err}");
    }
    let (status, e) = custody("ACCESSED", "inspected in the evidence room").await;
    assert_eq!((status.as_u16(), e["status"].as_str()), (200, Some("SEALED")), "{e}");
    // A routine verification keeps it sealed.
    let (status, v) = s.post(&format!("{EV}{eid}/verify_evidence/"), &org.auditor, json!({})).await;
    assert_eq!((status.as_u16(), v["evidence"]["status"].as_str()), (200, Some("SEALED")), "{v}");
    let (_, e) = custody("RELEASED", "").await;
    assert_eq!(e["status"], "RELEASED");
    let (status, patched) =
        s.patch(&format!("{EV}{eid}/"), &org.editor, json!({ "title": "Firewall config v2" })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["title"], "Firewall config v2");
    assert_eq!(patched["evidence_type"], "LOG_FILE", "PATCH keeps the other fields");

    for (action, why) in [("COLLECTED", "system"), ("VERIFIED", "system"), ("LOST", "unknown")] {
        let (status, err) = custody(action, "").await;
        assert_eq!(status, 400, "{action} ({why}): {err}");
        assert_eq!(err["error"], "Invalid value for 'action'");
    }
    let (status, _) =
        s.post(&format!("{EV}{eid}/add_custody_record/"), &org.viewer, json!({ "action": "ACCESSED" })).await;
    assert_eq!(status, 403);

    let (status, e) = custody("DISPOSED", "shredded per policy").await;
    assert_eq!(status, 200);
    assert_eq!(e["status"], "DISPOSED");
    assert!(e["disposed_at"].is_string());
    assert!(blob_files(&s).is_empty(), "disposal destroys the file");
    assert_eq!(e["file_hash"], sha256_hex(b"permit any any"), "the record keeps the digest");
    let (status, _, _) = s.download(&format!("{EV}{eid}/download/"), &org.viewer).await;
    assert_eq!(status, 409);
    let (status, _) = custody("ACCESSED", "").await;
    assert_eq!(status, 409, "disposed evidence takes no more custody");
    assert_eq!(
        actions(&e),
        ["COLLECTED", "TRANSFERRED", "ANALYZED", "SEALED", "ACCESSED", "VERIFIED", "RELEASED", "DISPOSED"]
    );
    assert_eq!(s.audit_count(org.id, "add_custody_record", "evidence").await, 6);
    assert_eq!(s.audit_count(org.id, "update", "evidence").await, 1);

    // The database itself refuses to rewrite custody, even for its superuser.
    let err = s.superuser_sql(&format!("UPDATE custody_records SET notes = 'x' WHERE evidence_id = '{eid}'")).await;
    assert!(err.unwrap_err().to_string().contains("append-only"));
    let err = s.superuser_sql(&format!("DELETE FROM custody_records WHERE evidence_id = '{eid}'")).await;
    assert!(err.unwrap_err().to_string().contains("append-only"));
}

#[tokio::test(flavor = "multi_thread")]
async fn verification_catches_corrupted_missing_files_and_forged_custody() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let content = b"quarterly access review export".to_vec();
    let e = upload(&s, &org, "Access review", &content).await;
    let eid = id(&e);
    let verify = |token: &str| {
        let (s, eid, token) = (&s, eid.clone(), token.to_owned());
        async move {
            s.post(
                &format!("{EV}{eid}/verify_evidence/"),
                &token,
                json!({ "verification_notes": "Evidence verified and authenticated" }),
            )
            .await
        }
    };

    let (status, v) = verify(&org.auditor).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "MATCH");
    assert_eq!(v["custody_chain_valid"], true);
    assert_eq!(v["expected_sha256"], v["actual_sha256"]);
    assert_eq!(v["evidence"]["status"], "VERIFIED");
    assert!(v["evidence"]["last_verified_at"].is_string());
    let record = v["evidence"]["custody_chain"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(record["action"], "VERIFIED");
    assert_eq!(record["actor"], "auditor@acme.test");
    assert_eq!(record["notes"], "Evidence verified and authenticated");
    assert_eq!(record["details"]["result"], "MATCH");
    let (status, _) = verify(&org.viewer).await;
    assert_eq!(status, 403, "viewers do not verify");

    // Corrupt the stored object behind Custos's back.
    let path = s.blob_dir().join(e["file_path"].as_str().unwrap());
    std::fs::write(&path, b"quarterly access review exporT").unwrap();
    let (status, v) = verify(&org.editor).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "MISMATCH");
    assert_eq!(v["expected_sha256"], sha256_hex(&content));
    assert_eq!(v["actual_sha256"], sha256_hex(b"quarterly access review exporT"));
    assert_ne!(v["expected_blake3"], v["actual_blake3"]);
    assert_eq!(v["evidence"]["status"], "COMPROMISED");
    let failed = v["evidence"]["custody_chain"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(failed["action"], "VERIFICATION_FAILED");
    assert_eq!(failed["details"]["expected"]["sha256"], sha256_hex(&content));
    assert_eq!(failed["details"]["actual"]["sha256"], sha256_hex(b"quarterly access review exporT"));

    // Compromised evidence stays so until a verification finds it intact: no action clears it.
    for action in ["ANALYZED", "SEALED", "RELEASED"] {
        let (status, err) =
            s.post(&format!("{EV}{eid}/add_custody_record/"), &org.editor, json!({ "action": action })).await;
        assert_eq!(status, 409, "{action} on compromised evidence: {err}");
    }
    std::fs::remove_file(&path).unwrap();
    let (_, v) = verify(&org.editor).await;
    assert_eq!(v["result"], "MISSING");
    assert_eq!(v["evidence"]["status"], "COMPROMISED");
    let (status, _, _) = s.download(&format!("{EV}{eid}/download/"), &org.viewer).await;
    assert_eq!(status, 409, "a missing object is reported, not streamed empty");

    // A forged custody record (triggers off, as a hostile superuser) breaks the chain.
    let other = upload(&s, &org, "Other", b"other bytes").await;
    let mut conn = s.db.superuser().await;
    use diesel_async::RunQueryDsl;
    diesel::sql_query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!(
        "UPDATE custody_records SET actor = 'someone-else@acme.test' WHERE evidence_id = '{}' AND seq = 1",
        id(&other)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let (_, v) = s.post(&format!("{EV}{}/verify_evidence/", id(&other)), &org.editor, json!({})).await;
    assert_eq!(v["result"], "MATCH", "the file is intact");
    assert_eq!(v["custody_chain_valid"], false);
    assert_eq!(v["evidence"]["status"], "COMPROMISED");
    let failed = v["evidence"]["custody_chain"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(failed["details"]["custody_chain_error"], "record 1 does not match its hash");

    // The row's digests repointed at other content (as the owner role could): the file matches
    // them, but the COLLECTED record committed to the original's.
    let third = upload(&s, &org, "Third", b"original bytes").await;
    let swapped = upload(&s, &org, "Swapped", b"replacement bytes").await;
    diesel::sql_query(format!(
        "UPDATE evidence SET (file_path, file_hash, file_blake3, file_size) =
           (SELECT file_path, file_hash, file_blake3, file_size FROM evidence WHERE id = '{}') WHERE id = '{}'",
        id(&swapped),
        id(&third)
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let (_, v) = s.post(&format!("{EV}{}/verify_evidence/", id(&third)), &org.editor, json!({})).await;
    assert_eq!((v["result"].as_str(), v["custody_chain_valid"].as_bool()), (Some("MATCH"), Some(false)), "{v}");
    assert_eq!(v["evidence"]["status"], "COMPROMISED");
    let failed = v["evidence"]["custody_chain"].as_array().unwrap().last().unwrap().clone();
    assert!(failed["details"]["custody_chain_error"].as_str().unwrap().contains("COLLECTED"), "{failed}");

    let (_, metadata_only) =
        s.post(EV, &org.editor, json!({ "title": "Interview", "evidence_type": "INTERVIEW" })).await;
    let (status, err) = s.post(&format!("{EV}{}/verify_evidence/", id(&metadata_only)), &org.editor, json!({})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(s.audit_count(org.id, "verify_evidence", "evidence").await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn update_replaces_links_and_delete_removes_item_and_unshared_file() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let r1 = id(&create_requirement(&s, &org, &id(&fw), "Art. 5", json!({})).await);
    let r2 = id(&create_requirement(&s, &org, &id(&fw), "Art. 6", json!({})).await);
    let e = upload(&s, &org, "DPIA", b"dpia v1").await;
    let eid = id(&e);
    let (status, e) = s
        .put(
            &format!("{EV}{eid}/"),
            &org.editor,
            json!({ "title": "DPIA 2026", "evidence_type": "DOCUMENT", "compliance_requirements": [r1, r2] }),
        )
        .await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(e["compliance_requirements"].as_array().unwrap().len(), 2);
    assert_eq!(e["file_hash"], sha256_hex(b"dpia v1"), "metadata updates keep the file");
    let (_, e) = s.patch(&format!("{EV}{eid}/"), &org.editor, json!({ "compliance_requirements": [r2] })).await;
    assert_eq!(e["compliance_requirements"], json!([r2]));
    assert_eq!(e["title"], "DPIA 2026");
    let (status, err) = s
        .patch(&format!("{EV}{eid}/"), &org.editor, json!({ "compliance_requirements": [uuid::Uuid::now_v7()] }))
        .await;
    assert_eq!(status, 400, "{err}");
    let (status, _) = s.patch(&format!("{EV}{eid}/"), &org.viewer, json!({ "title": "x" })).await;
    assert_eq!(status, 403);

    let shared = upload(&s, &org, "DPIA copy", b"dpia v1").await;
    let (status, _) = s.delete(&format!("{EV}{eid}/"), &org.editor).await;
    assert_eq!(status, 204);
    assert_eq!(blob_files(&s).len(), 1, "the object is still used by the copy");
    let (status, _) = s.delete(&format!("{EV}{}/", id(&shared)), &org.editor).await;
    assert_eq!(status, 204);
    assert!(blob_files(&s).is_empty(), "the last reference removes the object");
    let (status, _) = s.get(&format!("{EV}{eid}/"), &org.viewer).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&format!("{EV}{eid}/"), &org.editor).await;
    assert_eq!(status, 404);
    assert_eq!(s.audit_count(org.id, "delete", "evidence").await, 2);
    assert_eq!(s.audit_count(org.id, "update", "evidence").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_tenant_cannot_see_or_touch_evidence() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let e = upload(&s, &a, "Acme secret log", b"acme only").await;
    let eid = id(&e);
    let fw = create_framework(&s, &a, seed_gdpr_body()).await;
    let a_req = id(&create_requirement(&s, &a, &id(&fw), "Art. 5", json!({})).await);
    let a_incident = insert_incident(&s, &a, "Acme incident").await;

    let (_, page) = s.get(EV, &b.admin).await;
    assert_eq!(page["count"], 0);
    for path in [format!("{EV}{eid}/"), format!("{EV}{eid}/download/")] {
        let (status, _) = s.get(&path, &b.admin).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _) = s.patch(&format!("{EV}{eid}/"), &b.admin, json!({ "title": "mine" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&format!("{EV}{eid}/"), &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) =
        s.post(&format!("{EV}{eid}/add_custody_record/"), &b.admin, json!({ "action": "DISPOSED" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.post(&format!("{EV}{eid}/verify_evidence/"), &b.admin, json!({})).await;
    assert_eq!(status, 404);
    let (status, err) = s
        .post(EV, &b.editor, json!({ "title": "x", "evidence_type": "DOCUMENT", "compliance_requirements": [a_req] }))
        .await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'compliance_requirements'")));
    let (status, err) =
        s.post(EV, &b.editor, json!({ "title": "x", "evidence_type": "DOCUMENT", "incident": a_incident })).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'incident'")));
    // Identical content in another tenant is its own object.
    let theirs = upload(&s, &b, "Same bytes", b"acme only").await;
    assert_ne!(theirs["file_path"], e["file_path"]);
    let (_, mine) = s.get(&format!("{EV}{eid}/"), &a.viewer).await;
    assert_eq!(actions(&mine), ["COLLECTED"], "nothing happened to it");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_or_disposed_evidence_no_longer_counts_towards_requirements() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let fw = create_framework(&s, &org, seed_gdpr_body()).await;
    let req = id(&create_requirement(&s, &org, &id(&fw), "Art. 32", json!({})).await);
    let today = time::OffsetDateTime::now_utc().date();
    let day = |d: i64| (today + time::Duration::days(d)).to_string();
    for (title, valid_until) in
        [("fresh", Some(day(30))), ("expires today", Some(day(0))), ("stale", Some(day(-1))), ("open-ended", None)]
    {
        create(
            &s,
            &org,
            json!({ "title": title, "evidence_type": "REPORT", "compliance_requirements": [req], "valid_until": valid_until }),
        )
        .await;
    }
    async fn counts(s: &TestServer, token: String, req: String) -> (i64, i64) {
        let (_, r) = s.get(&format!("/api/compliance/requirements/{req}/"), &token).await;
        (r["evidence_count"].as_i64().unwrap(), r["expired_evidence_count"].as_i64().unwrap())
    }
    assert_eq!(counts(&s, org.viewer.clone(), req.clone()).await, (3, 1));

    let (_, page) = s.get(&format!("{EV}?search=open-ended"), &org.viewer).await;
    let open_ended = id(&page["results"][0]);
    let (status, _) =
        s.post(&format!("{EV}{open_ended}/add_custody_record/"), &org.editor, json!({ "action": "DISPOSED" })).await;
    assert_eq!(status, 200);
    assert_eq!(counts(&s, org.viewer.clone(), req.clone()).await, (2, 1), "disposed evidence counts no more");
    let (_, list) = s.get(&format!("/api/compliance/requirements/?framework={}", id(&fw)), &org.viewer).await;
    assert_eq!(list["results"][0]["evidence_count"], 2, "lists carry the counts too");
    // Another tenant's view of the same requirement id: nothing.
    let other = s.org("globex").await;
    let (status, _) = s.get(&format!("/api/compliance/requirements/{req}/"), &other.viewer).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_is_bounded_and_a_damaged_stored_object_is_replaced_by_a_new_upload() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // The parts before the file are bounded in all, like a JSON body, however they are split.
    let part = "x".repeat(60 * 1024);
    let mut fields: Vec<(&str, &str)> = vec![("title", "Bulk"), ("evidence_type", "LOG_FILE")];
    fields.extend(std::iter::repeat_n(("compliance_requirements", part.as_str()), 40));
    let (status, err) = s.upload(EV, &org.editor, &fields, Some(("a.log", "text/plain", b"a")), &[]).await;
    assert_eq!(status, 413, "{err}");
    // So is the number of requirements one item links to, on every transport.
    let many: Vec<String> = (0..1001).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let body = json!({ "title": "Linked", "evidence_type": "REPORT", "compliance_requirements": many });
    let (status, err) = s.post(EV, &org.editor, body).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'compliance_requirements'")));

    // A stored object damaged behind Custos's back, then the same content uploaded again from a
    // good copy: the good copy replaces the damaged object, and both items verify.
    let content = b"signed contract, page 1";
    let first = upload(&s, &org, "Contract", content).await;
    std::fs::write(s.blob_dir().join(first["file_path"].as_str().unwrap()), b"signed contract, page 7").unwrap();
    let second = upload(&s, &org, "Contract (from backup)", content).await;
    assert_eq!(first["file_path"], second["file_path"], "one object for one content");
    for e in [&first, &second] {
        let (status, v) = s.post(&format!("{EV}{}/verify_evidence/", id(e)), &org.auditor, json!({})).await;
        assert_eq!((status.as_u16(), v["result"].as_str()), (200, Some("MATCH")), "{v}");
    }
}

/// What a crash leaves in the store — an object stored but never recorded, or kept after its
/// item's disposal because the removal failed — is swept; what a live item refers to stays.
#[tokio::test(flavor = "multi_thread")]
async fn objects_no_live_item_refers_to_are_swept() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let kept = upload(&s, &org, "Kept", b"still needed").await;
    let disposed = upload(&s, &org, "Disposed", b"should be gone").await;
    // A disposal whose removal of the file did not happen.
    s.superuser_sql(&format!(
        "UPDATE evidence SET status = 'DISPOSED', disposed_at = now() WHERE id = '{}'",
        id(&disposed)
    ))
    .await
    .unwrap();
    // An upload stored under its content key whose item was never committed.
    let stranded = s.blob_dir().join(format!("{}/blake3/ab/ab{}", org.id, "0".repeat(62)));
    std::fs::create_dir_all(stranded.parent().unwrap()).unwrap();
    std::fs::write(&stranded, b"never recorded").unwrap();

    let evidence = &s.app().evidence;
    assert_eq!(evidence.sweep_unreferenced(std::time::Duration::from_secs(3600)).await.unwrap(), 0, "too young");
    assert_eq!(evidence.sweep_unreferenced(std::time::Duration::ZERO).await.unwrap(), 2);
    assert!(!stranded.exists());
    assert!(!s.blob_dir().join(disposed["file_path"].as_str().unwrap()).exists());
    let (status, v) = s.post(&format!("{EV}{}/verify_evidence/", id(&kept)), &org.auditor, json!({})).await;
    assert_eq!((status.as_u16(), v["result"].as_str()), (200, Some("MATCH")), "{v}");
}

/// A HEAD of a download is refused: a download records who accessed the file, which a HEAD
/// (that axum would otherwise route to the GET) must not do.
#[tokio::test(flavor = "multi_thread")]
async fn a_head_of_a_download_is_refused_and_records_no_access() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let e = upload(&s, &org, "Auth log", b"line one\n").await;
    let url = format!("{}{EV}{}/download/", s.base, id(&e));
    let resp = s.http.head(&url).header("authorization", format!("Token {}", org.viewer)).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    let (_, item) = s.get(&format!("{EV}{}/", id(&e)), &org.viewer).await;
    let accessed =
        item["custody_records"].as_array().map_or(0, |r| r.iter().filter(|c| c["action"] == "ACCESSED").count());
    assert_eq!(accessed, 0, "{item}");
}
