//! Thin tonic adapter over [`LegalHoldsService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::legal_holds_service_server::LegalHoldsService as LegalHoldsApi;
use tonic::{Request, Response, Status};

use crate::LegalHoldsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl LegalHoldsApi for LegalHoldsService {
    async fn list_legal_holds(&self, r: Request<pb::ListLegalHoldsRequest>) -> Reply<pb::ListLegalHoldsResponse> {
        unary(r, async |ctx, m| self.list_legal_holds(&ctx, m).await).await
    }
    async fn get_legal_hold(&self, r: Request<pb::GetLegalHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.get_legal_hold(&ctx, m).await).await
    }
    async fn create_legal_hold(&self, r: Request<pb::CreateLegalHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.create_legal_hold(&ctx, m).await).await
    }
    async fn update_legal_hold(&self, r: Request<pb::UpdateLegalHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.update_legal_hold(&ctx, m).await).await
    }
    async fn add_incident(&self, r: Request<pb::AddIncidentToHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.add_incident(&ctx, m).await).await
    }
    async fn add_evidence(&self, r: Request<pb::AddEvidenceToHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.add_evidence(&ctx, m).await).await
    }
    async fn release_legal_hold(&self, r: Request<pb::ReleaseLegalHoldRequest>) -> Reply<pb::LegalHold> {
        unary(r, async |ctx, m| self.release_legal_hold(&ctx, m).await).await
    }
}
