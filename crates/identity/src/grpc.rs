//! Thin tonic adapter over [`IdentityService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::identity_service_server::IdentityService as IdentityApi;
use tonic::{Request, Response, Status};

use crate::IdentityService;

#[tonic::async_trait]
impl IdentityApi for IdentityService {
    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        unary(request, async |ctx, m| self.who_am_i(&ctx, m).await).await
    }
}
