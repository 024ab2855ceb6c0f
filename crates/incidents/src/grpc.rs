//! Thin tonic adapter over [`IncidentsService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::incidents_service_server::IncidentsService as IncidentsApi;
use tonic::{Request, Response, Status};

use crate::IncidentsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IncidentsApi for IncidentsService {
    async fn list_incidents(&self, r: Request<pb::ListIncidentsRequest>) -> Reply<pb::ListIncidentsResponse> {
        unary(r, async |ctx, m| self.list_incidents(&ctx, m).await).await
    }
    async fn get_incident(&self, r: Request<pb::GetIncidentRequest>) -> Reply<pb::Incident> {
        unary(r, async |ctx, m| self.get_incident(&ctx, m).await).await
    }
    async fn create_incident(&self, r: Request<pb::CreateIncidentRequest>) -> Reply<pb::Incident> {
        unary(r, async |ctx, m| self.create_incident(&ctx, m).await).await
    }
    async fn update_incident(&self, r: Request<pb::UpdateIncidentRequest>) -> Reply<pb::Incident> {
        unary(r, async |ctx, m| self.update_incident(&ctx, m).await).await
    }
    async fn delete_incident(&self, r: Request<pb::DeleteIncidentRequest>) -> Reply<pb::DeleteIncidentResponse> {
        unary(r, async |ctx, m| self.delete_incident(&ctx, m).await).await
    }
    async fn list_vulnerabilities(
        &self,
        r: Request<pb::ListVulnerabilitiesRequest>,
    ) -> Reply<pb::ListVulnerabilitiesResponse> {
        unary(r, async |ctx, m| self.list_vulnerabilities(&ctx, m).await).await
    }
    async fn get_vulnerability(&self, r: Request<pb::GetVulnerabilityRequest>) -> Reply<pb::Vulnerability> {
        unary(r, async |ctx, m| self.get_vulnerability(&ctx, m).await).await
    }
    async fn create_vulnerability(&self, r: Request<pb::CreateVulnerabilityRequest>) -> Reply<pb::Vulnerability> {
        unary(r, async |ctx, m| self.create_vulnerability(&ctx, m).await).await
    }
    async fn update_vulnerability(&self, r: Request<pb::UpdateVulnerabilityRequest>) -> Reply<pb::Vulnerability> {
        unary(r, async |ctx, m| self.update_vulnerability(&ctx, m).await).await
    }
    async fn delete_vulnerability(
        &self,
        r: Request<pb::DeleteVulnerabilityRequest>,
    ) -> Reply<pb::DeleteVulnerabilityResponse> {
        unary(r, async |ctx, m| self.delete_vulnerability(&ctx, m).await).await
    }
    async fn list_compliance_checkpoints(
        &self,
        r: Request<pb::ListComplianceCheckpointsRequest>,
    ) -> Reply<pb::ListComplianceCheckpointsResponse> {
        unary(r, async |ctx, m| self.list_compliance_checkpoints(&ctx, m).await).await
    }
    async fn get_compliance_checkpoint(
        &self,
        r: Request<pb::GetComplianceCheckpointRequest>,
    ) -> Reply<pb::ComplianceCheckpoint> {
        unary(r, async |ctx, m| self.get_compliance_checkpoint(&ctx, m).await).await
    }
    async fn create_compliance_checkpoint(
        &self,
        r: Request<pb::CreateComplianceCheckpointRequest>,
    ) -> Reply<pb::ComplianceCheckpoint> {
        unary(r, async |ctx, m| self.create_compliance_checkpoint(&ctx, m).await).await
    }
    async fn update_compliance_checkpoint(
        &self,
        r: Request<pb::UpdateComplianceCheckpointRequest>,
    ) -> Reply<pb::ComplianceCheckpoint> {
        unary(r, async |ctx, m| self.update_compliance_checkpoint(&ctx, m).await).await
    }
    async fn delete_compliance_checkpoint(
        &self,
        r: Request<pb::DeleteComplianceCheckpointRequest>,
    ) -> Reply<pb::DeleteComplianceCheckpointResponse> {
        unary(r, async |ctx, m| self.delete_compliance_checkpoint(&ctx, m).await).await
    }
    async fn list_incident_response_plans(
        &self,
        r: Request<pb::ListIncidentResponsePlansRequest>,
    ) -> Reply<pb::ListIncidentResponsePlansResponse> {
        unary(r, async |ctx, m| self.list_incident_response_plans(&ctx, m).await).await
    }
    async fn get_incident_response_plan(
        &self,
        r: Request<pb::GetIncidentResponsePlanRequest>,
    ) -> Reply<pb::IncidentResponsePlan> {
        unary(r, async |ctx, m| self.get_incident_response_plan(&ctx, m).await).await
    }
    async fn create_incident_response_plan(
        &self,
        r: Request<pb::CreateIncidentResponsePlanRequest>,
    ) -> Reply<pb::IncidentResponsePlan> {
        unary(r, async |ctx, m| self.create_incident_response_plan(&ctx, m).await).await
    }
    async fn update_incident_response_plan(
        &self,
        r: Request<pb::UpdateIncidentResponsePlanRequest>,
    ) -> Reply<pb::IncidentResponsePlan> {
        unary(r, async |ctx, m| self.update_incident_response_plan(&ctx, m).await).await
    }
    async fn delete_incident_response_plan(
        &self,
        r: Request<pb::DeleteIncidentResponsePlanRequest>,
    ) -> Reply<pb::DeleteIncidentResponsePlanResponse> {
        unary(r, async |ctx, m| self.delete_incident_response_plan(&ctx, m).await).await
    }
}
