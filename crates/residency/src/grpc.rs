//! Thin tonic adapter over [`ResidencyService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::data_residency_service_server::DataResidencyService as DataResidencyApi;
use tonic::{Request, Response, Status};

use crate::ResidencyService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl DataResidencyApi for ResidencyService {
    async fn list_data_residency(
        &self,
        r: Request<pb::ListDataResidencyRequest>,
    ) -> Reply<pb::ListDataResidencyResponse> {
        unary(r, async |ctx, m| self.list_data_residency(&ctx, m).await).await
    }
    async fn get_data_residency(&self, r: Request<pb::GetDataResidencyRequest>) -> Reply<pb::DataResidency> {
        unary(r, async |ctx, m| self.get_data_residency(&ctx, m).await).await
    }
    async fn create_data_residency(&self, r: Request<pb::CreateDataResidencyRequest>) -> Reply<pb::DataResidency> {
        unary(r, async |ctx, m| self.create_data_residency(&ctx, m).await).await
    }
    async fn update_data_residency(&self, r: Request<pb::UpdateDataResidencyRequest>) -> Reply<pb::DataResidency> {
        unary(r, async |ctx, m| self.update_data_residency(&ctx, m).await).await
    }
    async fn list_policy_violations(
        &self,
        r: Request<pb::ListPolicyViolationsRequest>,
    ) -> Reply<pb::ListPolicyViolationsResponse> {
        unary(r, async |ctx, m| self.list_policy_violations(&ctx, m).await).await
    }
    async fn get_policy_violation(&self, r: Request<pb::GetPolicyViolationRequest>) -> Reply<pb::PolicyViolation> {
        unary(r, async |ctx, m| self.get_policy_violation(&ctx, m).await).await
    }
}
