//! Evidence on an S3-compatible object store, end to end. Needs a server: run
//! `cargo xtask test-s3` (starts moto's S3 server) or set `CUSTOS_TEST_S3_URL`
//! (`s3://bucket/prefix`) and the `AWS_*` variables yourself, then run this ignored test.

use custos_testkit::{ServerOptions, TestServer};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::id;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs an S3-compatible server: CUSTOS_TEST_S3_URL and AWS_* (see cargo xtask test-s3)"]
async fn evidence_round_trips_through_an_s3_compatible_store() {
    let url = std::env::var("CUSTOS_TEST_S3_URL").expect("CUSTOS_TEST_S3_URL=s3://bucket/prefix");
    let prefix = format!("{}/run-{}", url.trim_end_matches('/'), uuid::Uuid::now_v7().simple());
    let s = TestServer::start_with(ServerOptions { blob_store: Some(prefix.clone()), ..Default::default() }).await;
    let store = custos_blobs::BlobStore::from_url(&prefix).expect("S3 store");
    let org = s.org("acme").await;
    // Larger than one 5 MiB multipart part, so the multipart path is exercised.
    let content: Vec<u8> = (0..12 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let (status, e) = s
        .upload(
            "/api/compliance/evidence/",
            &org.editor,
            &[("title", "S3 dump"), ("evidence_type", "DATABASE_EXPORT")],
            Some(("dump.bin", "application/octet-stream", &content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{e}");
    let sha: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(e["file_hash"], sha);
    let eid = id(&e);
    let key = e["file_path"].as_str().unwrap().to_owned();
    assert!(store.exists(&key).await.unwrap(), "the object is in the bucket under its content address");
    assert!(!store.exists(&format!("uploads/{eid}")).await.unwrap());

    // Identical content deduplicates onto the same object.
    let (status, copy) = s
        .upload(
            "/api/compliance/evidence/",
            &org.editor,
            &[("title", "S3 dump again"), ("evidence_type", "DATABASE_EXPORT")],
            Some(("dump.bin", "application/octet-stream", &content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "{copy}");
    assert_eq!(copy["file_path"], e["file_path"]);

    let (status, _, body) = s.download(&format!("/api/compliance/evidence/{eid}/download/"), &org.viewer).await;
    assert_eq!(status, 200);
    assert!(body == content, "downloaded bytes differ");
    let (status, v) =
        s.post(&format!("/api/compliance/evidence/{eid}/verify_evidence/"), &org.auditor, json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"], "MATCH");

    // Deleting both items removes the object.
    for item in [&eid, &id(&copy)] {
        let (status, _) = s.delete(&format!("/api/compliance/evidence/{item}/"), &org.editor).await;
        assert_eq!(status, 204);
    }
    assert!(!store.exists(&key).await.unwrap(), "the last reference removed the object");
    let (status, again) = s
        .upload(
            "/api/compliance/evidence/",
            &org.editor,
            &[("title", "after delete"), ("evidence_type", "DATABASE_EXPORT")],
            Some(("dump.bin", "application/octet-stream", &content)),
            &[],
        )
        .await;
    assert_eq!(status, 201, "re-upload after removal stores the object anew: {again}");
    let (_, v) =
        s.post(&format!("/api/compliance/evidence/{}/verify_evidence/", id(&again)), &org.auditor, json!({})).await;
    assert_eq!(v["result"], "MATCH");
}
