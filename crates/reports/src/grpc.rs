//! Thin tonic adapter over [`ReportsService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::compliance_reports_service_server::ComplianceReportsService as ReportsApi;
use tonic::{Request, Response, Status};

use crate::ReportsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ReportsApi for ReportsService {
    async fn list_compliance_reports(
        &self,
        r: Request<pb::ListComplianceReportsRequest>,
    ) -> Reply<pb::ListComplianceReportsResponse> {
        unary(r, async |ctx, m| self.list_compliance_reports(&ctx, m).await).await
    }
    async fn get_compliance_report(&self, r: Request<pb::GetComplianceReportRequest>) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.get_compliance_report(&ctx, m).await).await
    }
    async fn create_compliance_report(
        &self,
        r: Request<pb::CreateComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.create_compliance_report(&ctx, m).await).await
    }
    async fn update_compliance_report(
        &self,
        r: Request<pb::UpdateComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.update_compliance_report(&ctx, m).await).await
    }
    async fn delete_compliance_report(
        &self,
        r: Request<pb::DeleteComplianceReportRequest>,
    ) -> Reply<pb::DeleteComplianceReportResponse> {
        unary(r, async |ctx, m| self.delete_compliance_report(&ctx, m).await).await
    }
    async fn generate_compliance_report(
        &self,
        r: Request<pb::GenerateComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.generate_compliance_report(&ctx, m).await).await
    }
    async fn submit_compliance_report(
        &self,
        r: Request<pb::SubmitComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.submit_compliance_report(&ctx, m).await).await
    }
    async fn sign_off_compliance_report(
        &self,
        r: Request<pb::SignOffComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.sign_off_compliance_report(&ctx, m).await).await
    }
    async fn publish_compliance_report(
        &self,
        r: Request<pb::PublishComplianceReportRequest>,
    ) -> Reply<pb::ComplianceReport> {
        unary(r, async |ctx, m| self.publish_compliance_report(&ctx, m).await).await
    }
    async fn render_compliance_report(
        &self,
        r: Request<pb::RenderComplianceReportRequest>,
    ) -> Reply<pb::RenderedReport> {
        unary(r, async |ctx, m| self.render_compliance_report(&ctx, m).await).await
    }
}
