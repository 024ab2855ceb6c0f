//! Thin tonic adapter over [`AuditService`].

use custos_core::RequestCtx;
use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::audit_service_server::AuditService as AuditApi;
use tonic::{Request, Response, Status};

use crate::service::AuditService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuditApi for AuditService {
    async fn list_entries(&self, r: Request<pb::ListAuditEntriesRequest>) -> Reply<pb::ListAuditEntriesResponse> {
        unary(r, async |ctx, m| self.list_entries(&ctx, m).await).await
    }
    async fn get_entry(&self, r: Request<pb::GetAuditEntryRequest>) -> Reply<pb::AuditEntry> {
        unary(r, async |ctx, m| self.get_entry(&ctx, m).await).await
    }
    async fn list_checkpoints(&self, r: Request<pb::ListCheckpointsRequest>) -> Reply<pb::ListCheckpointsResponse> {
        unary(r, async |ctx, m| self.list_checkpoints(&ctx, m).await).await
    }
    async fn latest_checkpoint(&self, r: Request<pb::LatestCheckpointRequest>) -> Reply<pb::AuditCheckpoint> {
        unary(r, async |ctx, m| self.latest_checkpoint(&ctx, m).await).await
    }
    async fn create_checkpoint(&self, r: Request<pb::CreateCheckpointRequest>) -> Reply<pb::AuditCheckpoint> {
        unary(r, async |ctx, m| self.create_checkpoint(&ctx, m).await).await
    }
    async fn get_inclusion_proof(&self, r: Request<pb::InclusionProofRequest>) -> Reply<pb::InclusionProof> {
        unary(r, async |ctx, m| self.get_inclusion_proof(&ctx, m).await).await
    }
    async fn get_consistency_proof(&self, r: Request<pb::ConsistencyProofRequest>) -> Reply<pb::ConsistencyProof> {
        unary(r, async |ctx, m| self.get_consistency_proof(&ctx, m).await).await
    }
    async fn verify_chain(&self, r: Request<pb::VerifyAuditChainRequest>) -> Reply<pb::VerifyAuditChainResponse> {
        unary(r, async |ctx, m| self.verify_chain(&ctx, m).await).await
    }
    async fn start_verification(&self, r: Request<pb::StartAuditVerificationRequest>) -> Reply<pb::AuditVerification> {
        unary(r, async |ctx, m| self.start_verification(&ctx, m).await).await
    }
    async fn list_verifications(
        &self,
        r: Request<pb::ListAuditVerificationsRequest>,
    ) -> Reply<pb::ListAuditVerificationsResponse> {
        unary(r, async |ctx, m| self.list_verifications(&ctx, m).await).await
    }
    async fn get_verification(&self, r: Request<pb::GetAuditVerificationRequest>) -> Reply<pb::AuditVerification> {
        unary(r, async |ctx, m| self.get_verification(&ctx, m).await).await
    }
    async fn resume_verification(
        &self,
        r: Request<pb::ResumeAuditVerificationRequest>,
    ) -> Reply<pb::VerifyAuditChainResponse> {
        unary(r, async |ctx, m| self.resume_verification(&ctx, m).await).await
    }
    async fn withhold_fields(&self, r: Request<pb::WithholdFieldsRequest>) -> Reply<pb::AuditEntry> {
        unary(r, async |ctx, m| self.withhold_fields(&ctx, m).await).await
    }
    /// Public: answers without credentials too.
    async fn get_public_key(&self, r: Request<pb::PublicKeyRequest>) -> Reply<pb::PublicKeyResponse> {
        let ctx = r.extensions().get::<RequestCtx>().cloned();
        self.get_public_key(ctx.as_ref(), r.into_inner())
            .await
            .map(Response::new)
            .map_err(|e| custos_grpc::status(&e.into()))
    }
}
