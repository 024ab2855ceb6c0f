//! Evidence and legal holds over gRPC: client-streamed uploads, server-streamed downloads, and
//! the same rules as REST with gRPC status codes.

use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
use custos_proto::v1::legal_holds_service_client::LegalHoldsServiceClient;
use custos_proto::v1::upload_evidence_request::Part;
use custos_testkit::{ServerOptions, TestServer};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tonic::Code;

fn header(title: &str) -> pb::UploadEvidenceRequest {
    pb::UploadEvidenceRequest {
        part: Some(Part::Header(pb::EvidenceUploadHeader {
            evidence: Some(pb::EvidenceInput {
                title: title.into(),
                evidence_type: "NETWORK_CAPTURE".into(),
                ..Default::default()
            }),
            file_name: "capture.pcap".into(),
            content_type: "application/vnd.tcpdump.pcap".into(),
        })),
    }
}

fn chunk(bytes: &[u8]) -> pb::UploadEvidenceRequest {
    pb::UploadEvidenceRequest { part: Some(Part::Chunk(bytes.to_vec())) }
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_download_custody_verify_and_holds_over_grpc() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut editor = EvidenceServiceClient::new(s.grpc(Some(&org.editor)).await);
    // 3 MiB in 64 KiB messages: several multipart chunks' worth of streaming.
    let content: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut messages = vec![header("Packet capture")];
    messages.extend(content.chunks(64 * 1024).map(chunk));
    let e = editor.upload_evidence(futures::stream::iter(messages)).await.unwrap().into_inner();
    let sha: String = Sha256::digest(&content).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(e.file_hash.as_deref(), Some(sha.as_str()));
    assert_eq!(e.file_size, Some(content.len() as i64));
    assert_eq!(e.file_name.as_deref(), Some("capture.pcap"));
    assert_eq!(e.custody_chain.len(), 1);

    let mut viewer = EvidenceServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let mut stream =
        viewer.download_evidence(pb::DownloadEvidenceRequest { id: e.id.clone() }).await.unwrap().into_inner();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.evidence.as_ref().map(|x| x.id.as_str()), Some(e.id.as_str()));
    let mut received = first.chunk;
    while let Some(part) = stream.next().await {
        received.extend(part.unwrap().chunk);
    }
    assert_eq!(received, content);

    let got = viewer.get_evidence(pb::GetEvidenceRequest { id: e.id.clone() }).await.unwrap().into_inner();
    let actions: Vec<_> = got.custody_chain.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["COLLECTED", "ACCESSED"]);
    let list = viewer
        .list_evidence(pb::ListEvidenceRequest { evidence_type: Some("NETWORK_CAPTURE".into()), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.count, 1);

    let with_custody = editor
        .add_custody_record(pb::AddCustodyRecordRequest {
            id: e.id.clone(),
            action: "TRANSFERRED".into(),
            notes: "to counsel".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(with_custody.custody_chain.last().unwrap().notes, "to counsel");
    let verified = editor
        .verify_evidence(pb::VerifyEvidenceRequest { id: e.id.clone(), verification_notes: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(verified.result, "MATCH");
    assert_eq!(verified.evidence.unwrap().status, "VERIFIED");
    let updated = editor
        .update_evidence(pb::UpdateEvidenceRequest {
            id: e.id.clone(),
            evidence: Some(pb::EvidenceInput { notes: "tcpdump -i eth0".into(), ..Default::default() }),
            update_mask: Some(custos_proto::FieldMask::new(["notes"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.notes, "tcpdump -i eth0");
    assert_eq!(updated.title, "Packet capture");

    // Legal holds over gRPC, and the refusal's code.
    let mut holds = LegalHoldsServiceClient::new(s.grpc(Some(&org.admin)).await);
    let hold = holds
        .create_legal_hold(pb::CreateLegalHoldRequest {
            legal_hold: Some(pb::LegalHoldInput { case_name: "Regulator inquiry".into(), ..Default::default() }),
        })
        .await
        .unwrap()
        .into_inner();
    let hold = holds
        .add_evidence(pb::AddEvidenceToHoldRequest { id: hold.id.clone(), evidence_id: e.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hold.evidence, std::slice::from_ref(&e.id));
    let listed = holds
        .list_legal_holds(pb::ListLegalHoldsRequest { active: Some(true), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.count, 1);
    let err = editor.delete_evidence(pb::DeleteEvidenceRequest { id: e.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("legal hold"), "{err:?}");
    let released = holds
        .release_legal_hold(pb::ReleaseLegalHoldRequest { id: hold.id.clone(), reason: "closed".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(released.status, "RELEASED");
    let fetched = holds.get_legal_hold(pb::GetLegalHoldRequest { id: hold.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched, released);
    editor.delete_evidence(pb::DeleteEvidenceRequest { id: e.id.clone() }).await.unwrap();
    let err = viewer.get_evidence(pb::GetEvidenceRequest { id: e.id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_get_clear_grpc_statuses() {
    let s = TestServer::start_with(ServerOptions { max_upload_bytes: Some(100_000), ..Default::default() }).await;
    let org = s.org("acme").await;
    let mut c = EvidenceServiceClient::new(s.grpc(Some(&org.editor)).await);

    let err = c.upload_evidence(futures::stream::iter(vec![chunk(b"no header")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c.upload_evidence(futures::stream::iter(vec![header("a"), chunk(b"x"), header("b")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let big: Vec<_> = std::iter::once(header("big")).chain((0..4).map(|_| chunk(&[0u8; 30_000]))).collect();
    let err = c.upload_evidence(futures::stream::iter(big)).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let mut bad_type = header("x");
    if let Some(Part::Header(h)) = &mut bad_type.part {
        h.evidence.as_mut().unwrap().evidence_type = "TAPE".into();
    }
    let err = c.upload_evidence(futures::stream::iter(vec![bad_type, chunk(b"x")])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "Invalid value for 'evidence_type'");

    let mut viewer = EvidenceServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let err = viewer.upload_evidence(futures::stream::iter(vec![header("v"), chunk(b"x")])).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let list = viewer.list_evidence(pb::ListEvidenceRequest::default()).await.unwrap().into_inner();
    assert_eq!(list.count, 0, "nothing was recorded");
}

#[tokio::test(flavor = "multi_thread")]
async fn legal_hold_rpcs_and_their_status_codes() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let incident = crate::evidence_rest::insert_incident(&s, &org, "Insider threat").await;
    let mut editor = LegalHoldsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let hold = editor
        .create_legal_hold(pb::CreateLegalHoldRequest {
            legal_hold: Some(pb::LegalHoldInput {
                case_name: "HR investigation".into(),
                custodians: vec!["Mallory@Acme.test".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hold.custodians, ["mallory@acme.test"]);
    let hold = editor
        .add_incident(pb::AddIncidentToHoldRequest { id: hold.id.clone(), incident_id: incident.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hold.incidents, std::slice::from_ref(&incident));
    let updated = editor
        .update_legal_hold(pb::UpdateLegalHoldRequest {
            id: hold.id.clone(),
            legal_hold: Some(pb::LegalHoldInput { case_number: "HR-7".into(), ..Default::default() }),
            update_mask: Some(custos_proto::FieldMask::new(["case_number"])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((updated.case_name.as_str(), updated.case_number.as_str()), ("HR investigation", "HR-7"));
    let by_custodian = editor
        .list_legal_holds(pb::ListLegalHoldsRequest {
            custodian: Some("MALLORY@acme.test".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_custodian.count, 1);

    let err = editor
        .release_legal_hold(pb::ReleaseLegalHoldRequest { id: hold.id.clone(), reason: "done".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "only admins release");
    let err = editor
        .add_incident(pb::AddIncidentToHoldRequest { id: hold.id.clone(), incident_id: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err =
        editor.get_legal_hold(pb::GetLegalHoldRequest { id: uuid::Uuid::now_v7().to_string() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let mut admin = LegalHoldsServiceClient::new(s.grpc(Some(&org.admin)).await);
    admin
        .release_legal_hold(pb::ReleaseLegalHoldRequest { id: hold.id.clone(), reason: "Cleared".into() })
        .await
        .unwrap();
    let err = editor
        .add_incident(pb::AddIncidentToHoldRequest { id: hold.id.clone(), incident_id: incident })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "a released hold takes nothing more");
    let other = s.org("globex").await;
    let mut outsider = LegalHoldsServiceClient::new(s.grpc(Some(&other.admin)).await);
    let err = outsider.get_legal_hold(pb::GetLegalHoldRequest { id: hold.id }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "another tenant's hold does not exist for them");
}
