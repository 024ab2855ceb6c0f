//! Thin tonic adapter over [`RetentionService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::compliance_policies_service_server::CompliancePoliciesService as CompliancePoliciesApi;
use custos_proto::v1::retention_service_server::RetentionService as RetentionApi;
use tonic::{Request, Response, Status};

use crate::RetentionService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RetentionApi for RetentionService {
    async fn list_retention_policies(
        &self,
        r: Request<pb::ListRetentionPoliciesRequest>,
    ) -> Reply<pb::ListRetentionPoliciesResponse> {
        unary(r, async |ctx, m| self.list_retention_policies(&ctx, m).await).await
    }
    async fn get_retention_policy(&self, r: Request<pb::GetRetentionPolicyRequest>) -> Reply<pb::RetentionPolicy> {
        unary(r, async |ctx, m| self.get_retention_policy(&ctx, m).await).await
    }
    async fn create_retention_policy(
        &self,
        r: Request<pb::CreateRetentionPolicyRequest>,
    ) -> Reply<pb::RetentionPolicy> {
        unary(r, async |ctx, m| self.create_retention_policy(&ctx, m).await).await
    }
    async fn update_retention_policy(
        &self,
        r: Request<pb::UpdateRetentionPolicyRequest>,
    ) -> Reply<pb::RetentionPolicy> {
        unary(r, async |ctx, m| self.update_retention_policy(&ctx, m).await).await
    }
    async fn delete_retention_policy(
        &self,
        r: Request<pb::DeleteRetentionPolicyRequest>,
    ) -> Reply<pb::DeleteRetentionPolicyResponse> {
        unary(r, async |ctx, m| self.delete_retention_policy(&ctx, m).await).await
    }
    async fn explain_retention(&self, r: Request<pb::ExplainRetentionRequest>) -> Reply<pb::RetentionExplanation> {
        unary(r, async |ctx, m| self.explain_retention(&ctx, m).await).await
    }
    async fn execute_retention_policy(&self, r: Request<pb::ExecuteRetentionPolicyRequest>) -> Reply<pb::RetentionRun> {
        unary(r, async |ctx, m| self.execute_retention_policy(&ctx, m).await).await
    }
    async fn list_retention_runs(
        &self,
        r: Request<pb::ListRetentionRunsRequest>,
    ) -> Reply<pb::ListRetentionRunsResponse> {
        unary(r, async |ctx, m| self.list_retention_runs(&ctx, m).await).await
    }
    async fn get_retention_run(&self, r: Request<pb::GetRetentionRunRequest>) -> Reply<pb::RetentionRun> {
        unary(r, async |ctx, m| self.get_retention_run(&ctx, m).await).await
    }
    async fn list_retention_run_items(
        &self,
        r: Request<pb::ListRetentionRunItemsRequest>,
    ) -> Reply<pb::ListRetentionRunItemsResponse> {
        unary(r, async |ctx, m| self.list_retention_run_items(&ctx, m).await).await
    }
    async fn restore_retention_run(
        &self,
        r: Request<pb::RestoreRetentionRunRequest>,
    ) -> Reply<pb::RestoreRetentionRunResponse> {
        unary(r, async |ctx, m| self.restore_retention_run(&ctx, m).await).await
    }
}

#[tonic::async_trait]
impl CompliancePoliciesApi for RetentionService {
    async fn list_compliance_policies(
        &self,
        r: Request<pb::ListCompliancePoliciesRequest>,
    ) -> Reply<pb::ListCompliancePoliciesResponse> {
        unary(r, async |ctx, m| self.list_compliance_policies(&ctx, m).await).await
    }
    async fn get_compliance_policy(&self, r: Request<pb::GetCompliancePolicyRequest>) -> Reply<pb::CompliancePolicy> {
        unary(r, async |ctx, m| self.get_compliance_policy(&ctx, m).await).await
    }
    async fn create_compliance_policy(
        &self,
        r: Request<pb::CreateCompliancePolicyRequest>,
    ) -> Reply<pb::CompliancePolicy> {
        unary(r, async |ctx, m| self.create_compliance_policy(&ctx, m).await).await
    }
    async fn update_compliance_policy(
        &self,
        r: Request<pb::UpdateCompliancePolicyRequest>,
    ) -> Reply<pb::CompliancePolicy> {
        unary(r, async |ctx, m| self.update_compliance_policy(&ctx, m).await).await
    }
    async fn delete_compliance_policy(
        &self,
        r: Request<pb::DeleteCompliancePolicyRequest>,
    ) -> Reply<pb::DeleteCompliancePolicyResponse> {
        unary(r, async |ctx, m| self.delete_compliance_policy(&ctx, m).await).await
    }
    async fn validate_compliance_policy(
        &self,
        r: Request<pb::ValidateCompliancePolicyRequest>,
    ) -> Reply<pb::PolicyValidation> {
        unary(r, async |ctx, m| self.validate_compliance_policy(&ctx, m).await).await
    }
    async fn dry_run_compliance_policy(
        &self,
        r: Request<pb::DryRunCompliancePolicyRequest>,
    ) -> Reply<pb::PolicyApplied> {
        unary(r, async |ctx, m| self.dry_run_compliance_policy(&ctx, m).await).await
    }
    async fn apply_compliance_policy(&self, r: Request<pb::ApplyCompliancePolicyRequest>) -> Reply<pb::PolicyApplied> {
        unary(r, async |ctx, m| self.apply_compliance_policy(&ctx, m).await).await
    }
    async fn rollback_compliance_policy(
        &self,
        r: Request<pb::RollbackCompliancePolicyRequest>,
    ) -> Reply<pb::PolicyApplied> {
        unary(r, async |ctx, m| self.rollback_compliance_policy(&ctx, m).await).await
    }
    async fn list_policy_versions(
        &self,
        r: Request<pb::ListPolicyVersionsRequest>,
    ) -> Reply<pb::ListPolicyVersionsResponse> {
        unary(r, async |ctx, m| self.list_policy_versions(&ctx, m).await).await
    }
}
