//! Thin tonic adapter over [`IncidentsService`]: decode, call, encode.

use custos_core::grpc::unary;
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
}
