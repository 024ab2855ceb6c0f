//! Thin tonic adapter over [`IdentityService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::identity_service_server::IdentityService as IdentityApi;
use tonic::{Request, Response, Status};

use crate::IdentityService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl IdentityApi for IdentityService {
    async fn who_am_i(&self, r: Request<pb::WhoAmIRequest>) -> Reply<pb::WhoAmIResponse> {
        unary(r, async |ctx, m| self.who_am_i(&ctx, m).await).await
    }
    async fn list_users(&self, r: Request<pb::ListUsersRequest>) -> Reply<pb::ListUsersResponse> {
        unary(r, async |ctx, m| self.list_users(&ctx, m).await).await
    }
    async fn get_user(&self, r: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        unary(r, async |ctx, m| self.get_user(&ctx, m).await).await
    }
    async fn update_user(&self, r: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        unary(r, async |ctx, m| self.update_user(&ctx, m).await).await
    }
    async fn list_api_tokens(&self, r: Request<pb::ListApiTokensRequest>) -> Reply<pb::ListApiTokensResponse> {
        unary(r, async |ctx, m| self.list_api_tokens(&ctx, m).await).await
    }
    async fn create_api_token(&self, r: Request<pb::CreateApiTokenRequest>) -> Reply<pb::CreateApiTokenResponse> {
        unary(r, async |ctx, m| self.create_api_token(&ctx, m).await).await
    }
    async fn revoke_api_token(&self, r: Request<pb::RevokeApiTokenRequest>) -> Reply<pb::ApiToken> {
        unary(r, async |ctx, m| self.revoke_api_token(&ctx, m).await).await
    }
}
