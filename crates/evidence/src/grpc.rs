//! Thin tonic adapter over [`EvidenceService`]: decode, call, encode.

use bytes::Bytes;
use custos_core::Problem;
use custos_grpc::{ctx, status, unary};
use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_server::EvidenceService as EvidenceApi;
use custos_proto::v1::upload_evidence_request::Part;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt, stream};
use tonic::{Request, Response, Status, Streaming};

use crate::EvidenceService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl EvidenceApi for EvidenceService {
    async fn list_evidence(&self, r: Request<pb::ListEvidenceRequest>) -> Reply<pb::ListEvidenceResponse> {
        unary(r, async |ctx, m| self.list_evidence(&ctx, m).await).await
    }
    async fn get_evidence(&self, r: Request<pb::GetEvidenceRequest>) -> Reply<pb::Evidence> {
        unary(r, async |ctx, m| self.get_evidence(&ctx, m).await).await
    }
    async fn create_evidence(&self, r: Request<pb::CreateEvidenceRequest>) -> Reply<pb::Evidence> {
        unary(r, async |ctx, m| self.create_evidence(&ctx, m).await).await
    }
    async fn upload_evidence(&self, r: Request<Streaming<pb::UploadEvidenceRequest>>) -> Reply<pb::Evidence> {
        let ctx = ctx(&r)?;
        let mut messages = r.into_inner();
        let header = match messages.message().await? {
            Some(pb::UploadEvidenceRequest { part: Some(Part::Header(header)) }) => header,
            _ => return Err(Status::invalid_argument("the first message of an upload must be its header")),
        };
        let chunks = messages.map(|m| match m {
            Ok(pb::UploadEvidenceRequest { part: Some(Part::Chunk(chunk)) }) => Ok(Bytes::from(chunk)),
            Ok(_) => Err("only the first message may be a header".to_owned()),
            Err(status) => Err(status.message().to_owned()),
        });
        match self.upload_evidence(&ctx, header, chunks).await {
            Ok(evidence) => Ok(Response::new(evidence)),
            Err(e) => Err(status(&Problem::from(e))),
        }
    }

    type DownloadEvidenceStream = BoxStream<'static, Result<pb::DownloadEvidenceResponse, Status>>;

    async fn download_evidence(&self, r: Request<pb::DownloadEvidenceRequest>) -> Reply<Self::DownloadEvidenceStream> {
        let ctx = ctx(&r)?;
        let download = self.download_evidence(&ctx, r.into_inner()).await.map_err(|e| status(&Problem::from(e)))?;
        let first = pb::DownloadEvidenceResponse { evidence: Some(download.evidence), chunk: Vec::new() };
        let chunks = download
            .body
            .map_ok(|chunk| pb::DownloadEvidenceResponse { evidence: None, chunk: chunk.to_vec() })
            .map_err(|e| status(&Problem::from(e)));
        Ok(Response::new(stream::once(async { Ok(first) }).chain(chunks).boxed()))
    }
    async fn update_evidence(&self, r: Request<pb::UpdateEvidenceRequest>) -> Reply<pb::Evidence> {
        unary(r, async |ctx, m| self.update_evidence(&ctx, m).await).await
    }
    async fn delete_evidence(&self, r: Request<pb::DeleteEvidenceRequest>) -> Reply<pb::DeleteEvidenceResponse> {
        unary(r, async |ctx, m| self.delete_evidence(&ctx, m).await).await
    }
    async fn add_custody_record(&self, r: Request<pb::AddCustodyRecordRequest>) -> Reply<pb::Evidence> {
        unary(r, async |ctx, m| self.add_custody_record(&ctx, m).await).await
    }
    async fn verify_evidence(&self, r: Request<pb::VerifyEvidenceRequest>) -> Reply<pb::EvidenceVerification> {
        unary(r, async |ctx, m| self.verify_evidence(&ctx, m).await).await
    }
}
