//! Data residency over REST and gRPC with two local "regions" (two directories named in
//! CUSTOS_BLOB_STORES): the configuration (seed 004's fields, bad input, roles, tenancy),
//! uploads placed in the primary region under the storage prefix, refusals of writes to
//! disallowed or storeless regions (409 naming the rule, recorded and audited, nothing written),
//! and soft enforcement (allowed, recorded as a violation).

use std::path::{Path, PathBuf};

use custos_proto::v1 as pb;
use custos_proto::v1::data_residency_service_client::DataResidencyServiceClient;
use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
use custos_proto::v1::upload_evidence_request::Part;
use custos_testkit::{ServerOptions, TestOrg, TestServer};
use serde_json::{Value, json};

use crate::id;

const CONFIGS: &str = "/api/compliance/data-residency/";
const VIOLATIONS: &str = "/api/compliance/policy-violations/";

/// Two local "regions": directories named in CUSTOS_BLOB_STORES, removed afterwards.
pub(crate) struct Regions {
    root: PathBuf,
}

impl Regions {
    pub(crate) fn new() -> Regions {
        let root = std::env::temp_dir().join(format!("custos-regions-{}", uuid::Uuid::now_v7().simple()));
        Regions { root }
    }
    pub(crate) fn dir(&self, region: &str) -> PathBuf {
        self.root.join(region)
    }
    pub(crate) fn spec(&self) -> String {
        format!(
            "eu-west-1=file://{},us-east-1=file://{}",
            self.dir("eu-west-1").display(),
            self.dir("us-east-1").display()
        )
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every file under `dir` (relative paths), staging excluded.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.retain(|f| !f.starts_with("uploads"));
    out
}

/// Whether a 400 names `field` as the one at fault.
fn names_field(err: &Value, field: &str) -> bool {
    err["error"].as_str().is_some_and(|e| e.contains(&format!("'{field}'")))
}

async fn upload(s: &TestServer, org: &TestOrg, region: Option<&str>, content: &[u8]) -> (u16, Value) {
    let mut fields = vec![("title", "Server log"), ("evidence_type", "LOG_FILE")];
    if let Some(r) = region {
        fields.push(("storage_region", r));
    }
    let (status, body) = s
        .upload("/api/compliance/evidence/", &org.editor, &fields, Some(("app.log", "text/plain", content)), &[])
        .await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread")]
async fn residency_places_uploads_in_allowed_regions_and_refuses_the_rest() {
    let regions = Regions::new();
    let s = TestServer::start_with(ServerOptions { blob_stores: Some(regions.spec()), ..Default::default() }).await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;

    // Nothing configured: an upload may name any configured region, or none (the default store).
    let (status, page) = s.get(CONFIGS, &org.viewer).await;
    assert_eq!((status.as_u16(), page["count"].clone()), (200, json!(0)), "{page}");
    let (status, e) = upload(&s, &org, Some("us-east-1"), b"before residency").await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["storage_region"], "us-east-1");
    let (status, e) = upload(&s, &org, Some("mars-1"), b"nowhere").await;
    assert_eq!(status, 400, "{e}");
    assert!(names_field(&e, "storage_region"), "{e}");
    assert!(e["details"].as_str().unwrap().contains("eu-west-1, us-east-1"), "{e}");

    // Seed 004's configuration, with a region this server has no store for.
    let seed = json!({"primary_region": "eu-west-1", "allowed_regions": ["eu-west-1", "ap-south-1"],
                      "storage_prefix": "company-data-eu", "enforce_region": true, "block_cross_region": true,
                      "compliance_frameworks": ["GDPR", "CCPA"]});
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(CONFIGS, token, seed.clone()).await.0, 403);
    }
    for (bad, field) in [
        (json!({"allowed_regions": ["eu-west-1"]}), "primary_region"),
        (json!({"primary_region": "mars-1"}), "primary_region"),
        (json!({"primary_region": "EU"}), "primary_region"),
        (json!({"primary_region": "eu-west-1", "allowed_regions": ["Bad Region"]}), "allowed_regions"),
        (json!({"primary_region": "eu-west-1", "storage_prefix": "../escape"}), "storage_prefix"),
        (json!({"primary_region": "eu-west-1", "storage_prefix": "uploads/x"}), "storage_prefix"),
        (json!({"primary_region": "eu-west-1", "enforce_region": "yes"}), "enforce_region"),
    ] {
        let (status, err) = s.post(CONFIGS, &org.admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {err}");
        assert!(names_field(&err, field), "{bad} → {err}");
    }
    let (status, config) = s.post(CONFIGS, &org.admin, seed.clone()).await;
    assert_eq!(status, 201, "{config}");
    assert_eq!(config["allowed_regions"], json!(["eu-west-1", "ap-south-1"]));
    assert_eq!(config["regions_without_store"], json!(["ap-south-1"]));
    assert_eq!(config["compliance_frameworks"], json!(["GDPR", "CCPA"]));
    assert_eq!(config["enforce_region"], true);
    let (status, again) = s.post(CONFIGS, &org.admin, seed.clone()).await;
    assert_eq!(status, 409, "one configuration per organisation: {again}");
    let config_path = format!("{CONFIGS}{}/", id(&config));
    let (status, page) = s.get(CONFIGS, &org.viewer).await;
    assert_eq!((status.as_u16(), page["count"].clone()), (200, json!(1)));
    assert_eq!(s.get(&config_path, &org.viewer).await.0, 200);
    assert_eq!(s.audit_count(org.id, "create", "data_residency").await, 1);

    // Another organisation sees none of it and changes none of it.
    assert_eq!(s.get(CONFIGS, &other.admin).await.1["count"], 0);
    assert_eq!(s.get(&config_path, &other.admin).await.0, 404);
    assert_eq!(s.patch(&config_path, &other.admin, json!({"enforce_region": false})).await.0, 404);
    assert_eq!(s.patch(&config_path, &org.editor, json!({"enforce_region": false})).await.0, 403);

    // An upload naming no region goes to the primary one, under the prefix.
    let eu_before = files(&regions.dir("eu-west-1"));
    let (status, e) = upload(&s, &org, None, b"kept in the EU").await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["storage_region"], "eu-west-1");
    let key = e["file_path"].as_str().unwrap();
    assert!(key.starts_with(&format!("company-data-eu/{}/blake3/", org.id)), "{key}");
    assert!(regions.dir("eu-west-1").join(key).is_file(), "the file is in the EU store");
    assert_eq!(files(&regions.dir("eu-west-1")).len(), eu_before.len() + 1);
    let (status, _, bytes) = s.download(&format!("/api/compliance/evidence/{}/download/", id(&e)), &org.viewer).await;
    assert_eq!((status.as_u16(), bytes.as_slice()), (200, b"kept in the EU".as_slice()));
    let (status, v) =
        s.post(&format!("/api/compliance/evidence/{}/verify_evidence/", id(&e)), &org.editor, json!({})).await;
    assert_eq!((status.as_u16(), v["result"].clone()), (200, json!("MATCH")), "{v}");

    // Refused: a region not allowed, and an allowed region without a store. Nothing is written.
    let us_before = files(&regions.dir("us-east-1"));
    let (status, err) = upload(&s, &org, Some("us-east-1"), b"must not leave the EU").await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["details"]["rule"], "data_residency.allowed_regions", "{err}");
    assert!(err["details"]["message"].as_str().unwrap().contains("us-east-1"), "{err}");
    assert_eq!(files(&regions.dir("us-east-1")), us_before, "nothing stored in the refused region");
    let (status, err) = upload(&s, &org, Some("ap-south-1"), b"no store").await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["details"]["rule"], "data_residency.region_store", "{err}");
    // Only an upload places a file.
    let (status, err) = s
        .post(
            "/api/compliance/evidence/",
            &org.editor,
            json!({"title": "x", "evidence_type": "OTHER", "storage_region": "eu-west-1"}),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert!(names_field(&err, "storage_region"), "{err}");

    // Every refusal is on record and audited.
    assert_eq!(s.get(VIOLATIONS, &org.viewer).await.0, 403);
    assert_eq!(s.get(VIOLATIONS, &org.editor).await.0, 403);
    let (status, page) = s.get(&format!("{VIOLATIONS}?outcome=blocked"), &org.auditor).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["count"], 2, "{page}");
    let rules: Vec<&str> = page["results"].as_array().unwrap().iter().map(|v| v["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["data_residency.region_store", "data_residency.allowed_regions"], "newest first");
    let refused = &page["results"][1];
    assert_eq!(
        (refused["operation"].clone(), refused["region"].clone(), refused["enforcement"].clone()),
        (json!("evidence.upload"), json!("us-east-1"), json!("hard"))
    );
    let editor = crate::user_id(&s, &org, "editor").await;
    assert_eq!(refused["actor"], format!("user:{editor}"), "{refused}");
    assert_eq!(s.get(&format!("{VIOLATIONS}{}/", id(refused)), &org.admin).await.0, 200);
    assert_eq!(s.get(&format!("{VIOLATIONS}{}/", id(refused)), &other.admin).await.0, 404);
    assert_eq!(s.get(VIOLATIONS, &other.admin).await.1["count"], 0);
    assert_eq!(s.audit_count(org.id, "refused", "policy_violation").await, 2);
    assert_eq!(s.get(&format!("{VIOLATIONS}?outcome=maybe"), &org.admin).await.0, 400);

    // Soft enforcement: allowed, and recorded.
    let (status, changed) = s.patch(&config_path, &org.admin, json!({"enforce_region": false})).await;
    assert_eq!((status.as_u16(), changed["enforce_region"].clone()), (200, json!(false)), "{changed}");
    assert_eq!(s.audit_count(org.id, "update", "data_residency").await, 1);
    let (status, e) = upload(&s, &org, Some("us-east-1"), b"soft").await;
    assert_eq!(status, 201, "{e}");
    assert_eq!(e["storage_region"], "us-east-1");
    let (_, page) = s.get(&format!("{VIOLATIONS}?outcome=allowed"), &org.admin).await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!(page["results"][0]["enforcement"], "soft");
    assert_eq!(s.audit_count(org.id, "violation", "policy_violation").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn residency_over_grpc_keeps_roles_tenancy_and_refusals() {
    let regions = Regions::new();
    let s = TestServer::start_with(ServerOptions { blob_stores: Some(regions.spec()), ..Default::default() }).await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let input = pb::DataResidencyInput {
        primary_region: "us-east-1".into(),
        storage_prefix: Some("company-data-us".into()),
        ..Default::default()
    };
    let mut viewer = DataResidencyServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let denied = viewer
        .create_data_residency(pb::CreateDataResidencyRequest { residency: Some(input.clone()) })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut admin = DataResidencyServiceClient::new(s.grpc(Some(&org.admin)).await);
    let config = admin
        .create_data_residency(pb::CreateDataResidencyRequest { residency: Some(input) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.allowed_regions, ["us-east-1"], "the primary region is always allowed");
    assert!(config.enforce_region, "enforced unless said otherwise");
    let listed = viewer.list_data_residency(pb::ListDataResidencyRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.results.len(), 1);
    assert_eq!(listed.results[0], config);
    let mut stranger = DataResidencyServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = stranger.get_data_residency(pb::GetDataResidencyRequest { id: config.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let err = stranger
        .update_data_residency(pb::UpdateDataResidencyRequest {
            id: config.id.clone(),
            residency: Some(pb::DataResidencyInput { primary_region: "eu-west-1".into(), ..Default::default() }),
            update_mask: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // An upload routed to the EU is refused: FAILED_PRECONDITION naming the rule.
    let mut editor = EvidenceServiceClient::new(s.grpc(Some(&org.editor)).await);
    let header = |region: Option<&str>| pb::UploadEvidenceRequest {
        part: Some(Part::Header(pb::EvidenceUploadHeader {
            evidence: Some(pb::EvidenceInput {
                title: "Capture".into(),
                evidence_type: "NETWORK_CAPTURE".into(),
                storage_region: region.map(str::to_owned),
                ..Default::default()
            }),
            file_name: "c.pcap".into(),
            content_type: "application/octet-stream".into(),
        })),
    };
    let chunk = pb::UploadEvidenceRequest { part: Some(Part::Chunk(b"packets".to_vec())) };
    let err = editor
        .upload_evidence(futures::stream::iter(vec![header(Some("eu-west-1")), chunk.clone()]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("rule") || format!("{err:?}").contains("data_residency.allowed_regions"), "{err:?}");
    assert!(files(&regions.dir("eu-west-1")).is_empty());
    let e = editor.upload_evidence(futures::stream::iter(vec![header(None), chunk])).await.unwrap().into_inner();
    assert_eq!(e.storage_region.as_deref(), Some("us-east-1"));
    assert!(e.file_path.as_deref().unwrap().starts_with("company-data-us/"));

    let mut auditor = DataResidencyServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let violations =
        auditor.list_policy_violations(pb::ListPolicyViolationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(violations.count, 1);
    assert_eq!(violations.results[0].rule, "data_residency.allowed_regions");
    let err = viewer.list_policy_violations(pb::ListPolicyViolationsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let none = stranger.list_policy_violations(pb::ListPolicyViolationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(none.count, 0);
}
