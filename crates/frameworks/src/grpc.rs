//! Thin tonic adapter over [`FrameworksService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_server::FrameworksService as FrameworksApi;
use tonic::{Request, Response, Status};

use crate::FrameworksService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl FrameworksApi for FrameworksService {
    async fn list_frameworks(&self, r: Request<pb::ListFrameworksRequest>) -> Reply<pb::ListFrameworksResponse> {
        unary(r, async |ctx, m| self.list_frameworks(&ctx, m).await).await
    }
    async fn get_framework(&self, r: Request<pb::GetFrameworkRequest>) -> Reply<pb::Framework> {
        unary(r, async |ctx, m| self.get_framework(&ctx, m).await).await
    }
    async fn create_framework(&self, r: Request<pb::CreateFrameworkRequest>) -> Reply<pb::Framework> {
        unary(r, async |ctx, m| self.create_framework(&ctx, m).await).await
    }
    async fn update_framework(&self, r: Request<pb::UpdateFrameworkRequest>) -> Reply<pb::Framework> {
        unary(r, async |ctx, m| self.update_framework(&ctx, m).await).await
    }
    async fn delete_framework(&self, r: Request<pb::DeleteFrameworkRequest>) -> Reply<pb::DeleteFrameworkResponse> {
        unary(r, async |ctx, m| self.delete_framework(&ctx, m).await).await
    }
    async fn get_score_history(&self, r: Request<pb::GetScoreHistoryRequest>) -> Reply<pb::ScoreHistory> {
        unary(r, async |ctx, m| self.get_score_history(&ctx, m).await).await
    }
    async fn take_score_snapshot(&self, r: Request<pb::TakeScoreSnapshotRequest>) -> Reply<pb::ScoreSnapshot> {
        unary(r, async |ctx, m| self.take_score_snapshot(&ctx, m).await).await
    }
    async fn get_compliance_summary(&self, r: Request<pb::ComplianceSummaryRequest>) -> Reply<pb::ComplianceSummary> {
        unary(r, async |ctx, m| self.get_compliance_summary(&ctx, m).await).await
    }
    async fn list_framework_requirements(
        &self,
        r: Request<pb::ListFrameworkRequirementsRequest>,
    ) -> Reply<pb::ListRequirementsResponse> {
        unary(r, async |ctx, m| self.list_framework_requirements(&ctx, m).await).await
    }
    async fn list_requirements(&self, r: Request<pb::ListRequirementsRequest>) -> Reply<pb::ListRequirementsResponse> {
        unary(r, async |ctx, m| self.list_requirements(&ctx, m).await).await
    }
    async fn get_requirement(&self, r: Request<pb::GetRequirementRequest>) -> Reply<pb::Requirement> {
        unary(r, async |ctx, m| self.get_requirement(&ctx, m).await).await
    }
    async fn create_requirement(&self, r: Request<pb::CreateRequirementRequest>) -> Reply<pb::Requirement> {
        unary(r, async |ctx, m| self.create_requirement(&ctx, m).await).await
    }
    async fn update_requirement(&self, r: Request<pb::UpdateRequirementRequest>) -> Reply<pb::Requirement> {
        unary(r, async |ctx, m| self.update_requirement(&ctx, m).await).await
    }
    async fn delete_requirement(
        &self,
        r: Request<pb::DeleteRequirementRequest>,
    ) -> Reply<pb::DeleteRequirementResponse> {
        unary(r, async |ctx, m| self.delete_requirement(&ctx, m).await).await
    }
    async fn update_requirement_status(&self, r: Request<pb::UpdateStatusRequest>) -> Reply<pb::Requirement> {
        unary(r, async |ctx, m| self.update_requirement_status(&ctx, m).await).await
    }
    async fn schedule_assessment(&self, r: Request<pb::ScheduleAssessmentRequest>) -> Reply<pb::Requirement> {
        unary(r, async |ctx, m| self.schedule_assessment(&ctx, m).await).await
    }
    async fn list_requirement_mappings(
        &self,
        r: Request<pb::ListRequirementMappingsRequest>,
    ) -> Reply<pb::ListRequirementMappingsResponse> {
        unary(r, async |ctx, m| self.list_requirement_mappings(&ctx, m).await).await
    }
    async fn apply_mapping(&self, r: Request<pb::ApplyMappingRequest>) -> Reply<pb::ApplyMappingResponse> {
        unary(r, async |ctx, m| self.apply_mapping(&ctx, m).await).await
    }
    async fn import_framework(&self, r: Request<pb::ImportFrameworkRequest>) -> Reply<pb::ImportFrameworkResponse> {
        unary(r, async |ctx, m| self.import_framework(&ctx, m).await).await
    }
    async fn export_framework(&self, r: Request<pb::ExportFrameworkRequest>) -> Reply<pb::ExportFrameworkResponse> {
        unary(r, async |ctx, m| self.export_framework(&ctx, m).await).await
    }
}
