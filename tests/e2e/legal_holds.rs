//! Legal holds over REST: CRUD and filters, what they cover, enforcement on every deleting path
//! that exists, release, and tenancy.

use custos_core::{Held, hold::ensure_not_held};
use custos_testkit::{TestOrg, TestServer};
use serde_json::{Value, json};

use crate::evidence_rest::{insert_incident, upload};
use crate::{column, id};

const HOLDS: &str = "/api/compliance/legal-holds/";
const EV: &str = "/api/compliance/evidence/";

/// An evidence item (a screenshot) of `incident`.
async fn evidence_of(s: &TestServer, org: &TestOrg, incident: &str, title: &str) -> Value {
    let body = json!({ "title": title, "evidence_type": "SCREENSHOT", "incident": incident });
    let (status, e) = s.post(EV, &org.editor, body).await;
    assert_eq!(status, 201, "{e}");
    e
}

/// The sequence number of the audit entry that recorded the creation of evidence `e`.
async fn creation_entry(s: &TestServer, org: &TestOrg, e: &Value) -> i64 {
    let (status, _) = s.post("/api/compliance/audit-log/checkpoints/", &org.auditor, json!({})).await;
    assert_eq!(status, 201);
    let (_, page) = s
        .get(
            &format!("/api/compliance/audit-log/?resource_type=evidence&resource_id={}&action=create", id(e)),
            &org.auditor,
        )
        .await;
    page["results"][0]["seq"].as_i64().expect("the create entry is sequenced")
}

async fn create_hold(s: &TestServer, token: &str, body: Value) -> Value {
    let (status, hold) = s.post(HOLDS, token, body).await;
    assert_eq!(status, 201, "{hold}");
    hold
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_are_created_listed_filtered_and_updated() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let smith = create_hold(
        &s,
        &org.editor,
        json!({ "case_name": "Smith v. Acme", "case_number": "CV-2026-0042", "description": "Wrongful dismissal",
                "custodians": ["  Alice@Example.com ", "bob@example.com", "alice@example.com"], "end_date": "2099-12-31" }),
    )
    .await;
    assert_eq!(smith["status"], "ACTIVE");
    assert_eq!(smith["is_active"], true);
    assert_eq!(smith["custodians"], json!(["alice@example.com", "bob@example.com"]), "normalised, deduplicated");
    assert_eq!(smith["start_date"], today.as_str(), "defaults to today");
    assert_eq!(smith["created_by"], "editor@acme.test");
    assert_eq!(smith["incidents"], json!([]));
    let regulator = create_hold(
        &s,
        &org.admin,
        json!({ "case_name": "ICO inquiry", "case_number": "ICO-77", "description": "Breach notification review" }),
    )
    .await;
    let old = create_hold(&s, &org.admin, json!({ "case_name": "Old matter", "start_date": "2020-01-01" })).await;
    let (status, _) =
        s.post(&format!("{HOLDS}{}/release/", id(&old)), &org.admin, json!({ "reason": "Settled" })).await;
    assert_eq!(status, 200);

    let names = |q: &str| {
        let (s, token, q) = (&s, org.viewer.clone(), q.to_owned());
        async move {
            let (status, page) = s.get(&format!("{HOLDS}?{q}"), &token).await;
            assert_eq!(status, 200, "{q}: {page}");
            let mut n = column(&page, "case_name");
            n.sort();
            n
        }
    };
    assert_eq!(names("").await.len(), 3);
    assert_eq!(names("status=ACTIVE").await, ["ICO inquiry", "Smith v. Acme"]);
    assert_eq!(names("status=RELEASED").await, ["Old matter"]);
    assert_eq!(names("active=true").await, ["ICO inquiry", "Smith v. Acme"]);
    assert_eq!(names("active=false").await, ["Old matter"]);
    assert_eq!(names("search=smith").await, ["Smith v. Acme"], "case name");
    assert_eq!(names("search=ico-77").await, ["ICO inquiry"], "case number");
    assert_eq!(names("search=dismissal").await, ["Smith v. Acme"], "description");
    assert_eq!(names("custodian=ALICE@example.com").await, ["Smith v. Acme"]);
    for (q, field) in [("status=OPEN", "status"), ("active=perhaps", "active")] {
        let (status, err) = s.get(&format!("{HOLDS}?{q}"), &org.viewer).await;
        assert_eq!(status, 400, "{q}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"));
    }

    let (status, patched) =
        s.patch(&format!("{HOLDS}{}/", id(&regulator)), &org.editor, json!({ "custodians": ["dpo@acme.test"] })).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["custodians"], json!(["dpo@acme.test"]));
    assert_eq!(patched["case_number"], "ICO-77", "PATCH keeps the rest");
    let (status, got) = s.get(&format!("{HOLDS}{}/", id(&smith)), &org.auditor).await;
    assert_eq!((status.as_u16(), got["case_name"].as_str()), (200, Some("Smith v. Acme")));

    // Bad input.
    for (body, field) in [
        (json!({ "case_number": "x" }), "case_name"),
        (json!({ "case_name": "x", "start_date": "2026-05-01", "end_date": "2026-04-01" }), "end_date"),
        (json!({ "case_name": "x", "start_date": "May" }), "start_date"),
        (json!({ "case_name": "x", "custodians": ["  "] }), "custodians"),
    ] {
        let (status, err) = s.post(HOLDS, &org.editor, body).await;
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"], format!("Invalid value for '{field}'"));
    }
    let (status, _) = s.post(HOLDS, &org.viewer, json!({ "case_name": "x" })).await;
    assert_eq!(status, 403);
    let (status, _) = s.get(&format!("{HOLDS}{}/", uuid::Uuid::now_v7()), &org.viewer).await;
    assert_eq!(status, 404);
    let (status, _) = s.delete(&format!("{HOLDS}{}/", id(&smith)), &org.admin).await;
    assert_eq!(status, 405, "holds are released, never deleted");
    assert_eq!(s.audit_count(org.id, "create", "legal_hold").await, 3);
    assert_eq!(s.audit_count(org.id, "update", "legal_hold").await, 1);
    assert_eq!(s.audit_count(org.id, "release", "legal_hold").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn held_evidence_cannot_be_deleted_or_disposed_until_released() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let e = upload(&s, &org, "Mailbox export", b"From: ceo@acme.test").await;
    let eid = id(&e);
    let hold = create_hold(&s, &org.editor, json!({ "case_name": "Smith v. Acme", "case_number": "CV-42" })).await;
    let hid = id(&hold);

    let (status, hold) =
        s.post(&format!("{HOLDS}{hid}/add_evidence/"), &org.editor, json!({ "evidence_id": eid })).await;
    assert_eq!(status, 200, "{hold}");
    assert_eq!(hold["evidence"], json!([eid]));
    let (_, again) = s.post(&format!("{HOLDS}{hid}/add_evidence/"), &org.editor, json!({ "evidence_id": eid })).await;
    assert_eq!(again["evidence"], json!([eid]), "adding twice changes nothing");
    assert_eq!(s.audit_count(org.id, "add_evidence", "legal_hold").await, 1);
    let (_, held) = s.get(&format!("{EV}{eid}/"), &org.viewer).await;
    assert_eq!(held["legal_holds"][0]["case_name"], "Smith v. Acme");

    let (status, err) = s.delete(&format!("{EV}{eid}/"), &org.admin).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "Resource is under legal hold");
    let details = err["details"].as_str().unwrap();
    assert!(details.contains("Smith v. Acme") && details.contains("CV-42") && details.contains(&hid), "{details}");
    let (status, err) =
        s.post(&format!("{EV}{eid}/add_custody_record/"), &org.admin, json!({ "action": "DISPOSED" })).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().starts_with("Cannot dispose of Evidence"));
    let (_, still) = s.get(&format!("{EV}{eid}/"), &org.viewer).await;
    assert_eq!(still["status"], "COLLECTED");

    // Release: admins only, with a reason.
    let (status, _) = s.post(&format!("{HOLDS}{hid}/release/"), &org.editor, json!({ "reason": "done" })).await;
    assert_eq!(status, 403);
    let (status, err) = s.post(&format!("{HOLDS}{hid}/release/"), &org.admin, json!({ "reason": " " })).await;
    assert_eq!((status.as_u16(), err["error"].as_str()), (400, Some("Invalid value for 'reason'")));
    let (status, released) =
        s.post(&format!("{HOLDS}{hid}/release/"), &org.admin, json!({ "reason": "Case settled on 2026-11-20" })).await;
    assert_eq!(status, 200, "{released}");
    assert_eq!(released["status"], "RELEASED");
    assert_eq!(released["is_active"], false);
    assert_eq!(released["released_by"], "admin@acme.test");
    assert_eq!(released["release_reason"], "Case settled on 2026-11-20");
    assert_eq!(released["evidence"], json!([eid]), "what it preserved stays on record");
    for (path, body) in [
        (format!("{HOLDS}{hid}/release/"), json!({ "reason": "again" })),
        (format!("{HOLDS}{hid}/add_evidence/"), json!({ "evidence_id": eid })),
    ] {
        let (status, _) = s.post(&path, &org.admin, body).await;
        assert_eq!(status, 409, "{path}");
    }
    let (status, _) = s.patch(&format!("{HOLDS}{hid}/"), &org.admin, json!({ "description": "x" })).await;
    assert_eq!(status, 409);

    let (status, _) = s.delete(&format!("{EV}{eid}/"), &org.editor).await;
    assert_eq!(status, 204, "released: deletion proceeds");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_incident_preserves_its_evidence() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let incident = insert_incident(&s, &org, "Ransomware").await;
    let e = evidence_of(&s, &org, &incident, "Ransom note").await;
    let moved = evidence_of(&s, &org, &incident, "Ransom envelope").await;
    let unrelated = upload(&s, &org, "Unrelated", b"x").await;
    let hold = create_hold(&s, &org.editor, json!({ "case_name": "Insurer claim" })).await;
    let (status, hold) =
        s.post(&format!("{HOLDS}{}/add_incident/", id(&hold)), &org.editor, json!({ "incident_id": incident })).await;
    assert_eq!(status, 200, "{hold}");
    assert_eq!(hold["incidents"], json!([incident]));
    assert_eq!(s.audit_count(org.id, "add_incident", "legal_hold").await, 1);

    let (status, err) = s.delete(&format!("{EV}{}/", id(&e)), &org.editor).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().contains("Insurer claim"));
    let (status, _) = s.delete(&format!("{EV}{}/", id(&unrelated)), &org.editor).await;
    assert_eq!(status, 204, "evidence of other incidents is not held");
    // Moving held evidence out of its incident would free it: refused, whichever way it is asked.
    let (status, err) = s.patch(&format!("{EV}{}/", id(&moved)), &org.editor, json!({ "incident": null })).await;
    assert_eq!(status, 409, "{err}");
    let other = insert_incident(&s, &org, "Unrelated").await;
    let body = json!({ "title": "Ransom envelope", "evidence_type": "SCREENSHOT", "incident": other });
    let (status, err) = s.put(&format!("{EV}{}/", id(&moved)), &org.editor, body).await;
    assert_eq!(status, 409, "{err}");
    let (status, kept) = s.patch(&format!("{EV}{}/", id(&moved)), &org.editor, json!({ "title": "Envelope" })).await;
    assert_eq!((status.as_u16(), kept["incident"].as_str()), (200, Some(incident.as_str())), "{kept}");

    // The incident itself, through the hold check every deleting path uses.
    let mut tx = s.db_pool().begin(org.id).await.unwrap();
    let incident_id = incident.parse().unwrap();
    let refused = ensure_not_held(&*s.app().holds, tx.conn(), org.id, &Held::Incident(incident_id), "delete").await;
    assert_eq!(refused.unwrap_err().kind, custos_core::ErrorKind::StateConflict);

    for (body, status_expected) in
        [(json!({ "incident_id": uuid::Uuid::now_v7() }), 404), (json!({ "incident_id": "nope" }), 400)]
    {
        let (status, _) = s.post(&format!("{HOLDS}{}/add_incident/", id(&hold)), &org.editor, body).await;
        assert_eq!(status, status_expected);
    }
    let (status, _) = s
        .post(
            &format!("{HOLDS}{}/add_evidence/", id(&hold)),
            &org.editor,
            json!({ "evidence_id": uuid::Uuid::now_v7() }),
        )
        .await;
    assert_eq!(status, 404);
}

/// DSR erasure will ask about people, not rows: a hold naming a custodian covers them, in any
/// letter case, until it is released.
#[tokio::test(flavor = "multi_thread")]
async fn custodian_identifiers_are_held_for_erasure_requests() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let hold =
        create_hold(&s, &org.editor, json!({ "case_name": "Doe v. Acme", "custodians": ["jane.doe@example.com"] }))
            .await;
    let check = &*s.app().holds;
    let mut tx = s.db_pool().begin(org.id).await.unwrap();
    let held = check.holds_on(tx.conn(), org.id, &Held::Subject("Jane.Doe@Example.com".into())).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].case_name, "Doe v. Acme");
    let refused =
        ensure_not_held(check, tx.conn(), org.id, &Held::Subject("jane.doe@example.com".into()), "erase").await;
    let problem = refused.unwrap_err();
    assert_eq!(problem.kind, custos_core::ErrorKind::StateConflict);
    assert!(problem.details.as_str().unwrap().contains("Doe v. Acme"));
    let free = check.holds_on(tx.conn(), org.id, &Held::Subject("john@example.com".into())).await.unwrap();
    assert!(free.is_empty());
    tx.commit().await.unwrap();

    let (status, _) =
        s.post(&format!("{HOLDS}{}/release/", id(&hold)), &org.admin, json!({ "reason": "Dismissed" })).await;
    assert_eq!(status, 200);
    let mut tx = s.db_pool().begin(org.id).await.unwrap();
    let after = check.holds_on(tx.conn(), org.id, &Held::Subject("jane.doe@example.com".into())).await.unwrap();
    assert!(after.is_empty(), "a released hold covers nobody");
}

#[tokio::test(flavor = "multi_thread")]
async fn holds_are_tenant_scoped() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let a_hold = create_hold(&s, &a.editor, json!({ "case_name": "Acme matter", "custodians": ["x@acme.test"] })).await;
    let a_evidence = upload(&s, &a, "Acme log", b"acme").await;
    let b_hold = create_hold(&s, &b.editor, json!({ "case_name": "Globex matter" })).await;

    let (_, page) = s.get(HOLDS, &b.admin).await;
    assert_eq!(column(&page, "case_name"), ["Globex matter"]);
    let (status, _) = s.get(&format!("{HOLDS}{}/", id(&a_hold)), &b.admin).await;
    assert_eq!(status, 404);
    let (status, _) = s.patch(&format!("{HOLDS}{}/", id(&a_hold)), &b.admin, json!({ "case_name": "x" })).await;
    assert_eq!(status, 404);
    let (status, _) = s.post(&format!("{HOLDS}{}/release/", id(&a_hold)), &b.admin, json!({ "reason": "x" })).await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(&format!("{HOLDS}{}/add_evidence/", id(&b_hold)), &b.admin, json!({ "evidence_id": id(&a_evidence) }))
        .await;
    assert_eq!(status, 404, "another tenant's evidence cannot be put under one's hold");
    // Globex's hold check knows nothing of Acme's custodians.
    let mut tx = s.db_pool().begin(b.id).await.unwrap();
    let held = s.app().holds.holds_on(tx.conn(), b.id, &Held::Subject("x@acme.test".into())).await.unwrap();
    assert!(held.is_empty());
}

/// The whole story through the public API only: an incident with evidence, a hold placed on the
/// incident, and every way of deleting either refused until the hold is released.
#[tokio::test(flavor = "multi_thread")]
async fn incident_and_evidence_deletion_through_the_api_respects_holds() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let incident = crate::incidents_rest::create_incident(
        &s,
        &org,
        json!({ "title": "Payroll data leaked", "severity": "CRITICAL", "category": "DATA_BREACH" }),
    )
    .await;
    let iid = id(&incident);
    let (status, evidence) =
        s.post(EV, &org.editor, json!({ "title": "Leak notice", "evidence_type": "EMAIL", "incident": iid })).await;
    assert_eq!(status, 201);
    let hold = create_hold(&s, &org.editor, json!({ "case_name": "Payroll leak", "case_number": "LIT-9" })).await;
    let (status, _) =
        s.post(&format!("{HOLDS}{}/add_incident/", id(&hold)), &org.editor, json!({ "incident_id": iid })).await;
    assert_eq!(status, 200);

    let (status, err) = s.delete(&format!("/api/compliance/incidents/{iid}/"), &org.admin).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"], "Resource is under legal hold");
    assert!(err["details"].as_str().unwrap().contains("LIT-9"));
    let (status, err) = s.delete(&format!("{EV}{}/", id(&evidence)), &org.admin).await;
    assert_eq!(status, 409, "the incident's evidence is held with it: {err}");

    let (status, _) =
        s.post(&format!("{HOLDS}{}/release/", id(&hold)), &org.admin, json!({ "reason": "Closed" })).await;
    assert_eq!(status, 200);
    let (status, err) = s.delete(&format!("/api/compliance/incidents/{iid}/"), &org.admin).await;
    assert_eq!(status, 409, "evidence still links to it: {err}");
    assert_eq!(err["error"], "Incident has linked records");
    let (status, _) = s.delete(&format!("{EV}{}/", id(&evidence)), &org.admin).await;
    assert_eq!(status, 204);
    let (status, _) = s.delete(&format!("/api/compliance/incidents/{iid}/"), &org.admin).await;
    assert_eq!(status, 204);
}

/// Erasure of personal data from the audit trail (withholding fields) is a deleting path too:
/// entries about held evidence keep their fields until the hold is released.
#[tokio::test(flavor = "multi_thread")]
async fn audit_fields_about_held_evidence_cannot_be_withheld() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let e = upload(&s, &org, "CCTV still", b"frame 0001").await;
    let hold = create_hold(&s, &org.editor, json!({ "case_name": "Theft inquiry" })).await;
    let (status, _) =
        s.post(&format!("{HOLDS}{}/add_evidence/", id(&hold)), &org.editor, json!({ "evidence_id": id(&e) })).await;
    assert_eq!(status, 200);
    let seq = creation_entry(&s, &org, &e).await;
    let url = format!("/api/compliance/audit-log/{seq}/withhold/");
    let body = json!({ "fields": ["actor"], "reason": "GDPR Art. 17 request" });

    let (status, err) = s.post(&url, &org.admin, body.clone()).await;
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().contains("Theft inquiry"), "{err}");
    let (status, _) =
        s.post(&format!("{HOLDS}{}/release/", id(&hold)), &org.admin, json!({ "reason": "Closed" })).await;
    assert_eq!(status, 200);
    let (status, entry) = s.post(&url, &org.admin, body).await;
    assert_eq!(status, 200, "released: {entry}");
    assert_eq!(entry["actor"], "[withheld]");
}

/// A hold placed while a withholding is under way: the withholding waits for it and then sees
/// it, rather than erasing what the hold has just begun to preserve.
#[tokio::test(flavor = "multi_thread")]
async fn a_withholding_waits_for_a_hold_being_placed_on_its_evidence_incident() {
    use diesel_async::RunQueryDsl;
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let incident = insert_incident(&s, &org, "Laptop stolen").await;
    let e = evidence_of(&s, &org, &incident, "Police report").await;
    let hold = create_hold(&s, &org.editor, json!({ "case_name": "Theft inquiry" })).await;
    let seq = creation_entry(&s, &org, &e).await;

    // Placing the hold on the incident, as `add_incident` does: the incident locked FOR SHARE,
    // then the item written, in one transaction still open while the withholding starts.
    let mut placing = s.db.superuser().await;
    let sql = async |conn: &mut custos_db::PgConn, sql: String| diesel::sql_query(sql).execute(conn).await.unwrap();
    sql(&mut placing, "BEGIN".into()).await;
    sql(&mut placing, format!("SELECT id FROM incidents WHERE id = '{incident}' FOR SHARE")).await;
    let done = AtomicBool::new(false);
    let url = format!("/api/compliance/audit-log/{seq}/withhold/");
    let withholding = async {
        let answer = s.post(&url, &org.admin, json!({ "fields": ["actor"], "reason": "GDPR Art. 17 request" })).await;
        AtomicBool::store(&done, true, Ordering::SeqCst);
        answer
    };
    let hold_placed = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let waited = !AtomicBool::load(&done, Ordering::SeqCst);
        sql(
            &mut placing,
            format!(
                "INSERT INTO legal_hold_items (organization_id, hold_id, resource_type, resource_id, added_at, added_by)
                 VALUES ('{}', '{}', 'incident', '{incident}', now(), 'test')",
                org.id,
                id(&hold)
            ),
        )
        .await;
        sql(&mut placing, "COMMIT".into()).await;
        waited
    };
    let ((status, err), waited) = tokio::join!(withholding, hold_placed);
    assert!(waited, "the withholding waits for the hold being placed");
    assert_eq!(status, 409, "{err}");
    assert!(err["details"].as_str().unwrap().contains("Theft inquiry"), "{err}");
}
