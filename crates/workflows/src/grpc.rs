//! Thin tonic adapter over [`WorkflowsService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::workflows_service_server::WorkflowsService as WorkflowsApi;
use tonic::{Request, Response, Status};

use crate::WorkflowsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl WorkflowsApi for WorkflowsService {
    async fn list_workflows(&self, r: Request<pb::ListWorkflowsRequest>) -> Reply<pb::ListWorkflowsResponse> {
        unary(r, async |ctx, m| self.list_workflows(&ctx, m).await).await
    }
    async fn get_workflow(&self, r: Request<pb::GetWorkflowRequest>) -> Reply<pb::Workflow> {
        unary(r, async |ctx, m| self.get_workflow(&ctx, m).await).await
    }
    async fn create_workflow(&self, r: Request<pb::CreateWorkflowRequest>) -> Reply<pb::Workflow> {
        unary(r, async |ctx, m| self.create_workflow(&ctx, m).await).await
    }
    async fn update_workflow(&self, r: Request<pb::UpdateWorkflowRequest>) -> Reply<pb::Workflow> {
        unary(r, async |ctx, m| self.update_workflow(&ctx, m).await).await
    }
    async fn delete_workflow(&self, r: Request<pb::DeleteWorkflowRequest>) -> Reply<pb::DeleteWorkflowResponse> {
        unary(r, async |ctx, m| self.delete_workflow(&ctx, m).await).await
    }
    async fn create_workflow_instance(
        &self,
        r: Request<pb::CreateWorkflowInstanceRequest>,
    ) -> Reply<pb::WorkflowInstance> {
        unary(r, async |ctx, m| self.create_workflow_instance(&ctx, m).await).await
    }
    async fn list_workflow_instances(
        &self,
        r: Request<pb::ListWorkflowInstancesRequest>,
    ) -> Reply<pb::ListWorkflowInstancesResponse> {
        unary(r, async |ctx, m| self.list_workflow_instances(&ctx, m).await).await
    }
    async fn get_workflow_instance(&self, r: Request<pb::GetWorkflowInstanceRequest>) -> Reply<pb::WorkflowInstance> {
        unary(r, async |ctx, m| self.get_workflow_instance(&ctx, m).await).await
    }
    async fn advance_workflow_step(&self, r: Request<pb::AdvanceWorkflowStepRequest>) -> Reply<pb::WorkflowInstance> {
        unary(r, async |ctx, m| self.advance_workflow_step(&ctx, m).await).await
    }
    async fn assign_stakeholder(&self, r: Request<pb::AssignStakeholderRequest>) -> Reply<pb::WorkflowInstance> {
        unary(r, async |ctx, m| self.assign_stakeholder(&ctx, m).await).await
    }
    async fn seed_workflow_templates(
        &self,
        r: Request<pb::SeedWorkflowTemplatesRequest>,
    ) -> Reply<pb::SeedWorkflowTemplatesResponse> {
        unary(r, async |ctx, m| self.seed_workflow_templates(&ctx, m).await).await
    }
    async fn cancel_workflow_instance(
        &self,
        r: Request<pb::CancelWorkflowInstanceRequest>,
    ) -> Reply<pb::WorkflowInstance> {
        unary(r, async |ctx, m| self.cancel_workflow_instance(&ctx, m).await).await
    }
}
