//! Thin tonic adapters over [`IdentityService`] and [`AccessReviewService`].

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::identity_service_server::IdentityService as IdentityApi;
use tonic::{Request, Response, Status};

use crate::IdentityService;
use crate::reviews::AccessReviewService;
use custos_proto::v1::access_reviews_service_server::AccessReviewsService as AccessReviewsApi;

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

#[tonic::async_trait]
impl AccessReviewsApi for AccessReviewService {
    async fn list_access_reviews(
        &self,
        r: Request<pb::ListAccessReviewsRequest>,
    ) -> Reply<pb::ListAccessReviewsResponse> {
        unary(r, async |ctx, m| self.list_access_reviews(&ctx, m).await).await
    }
    async fn get_access_review(&self, r: Request<pb::GetAccessReviewRequest>) -> Reply<pb::AccessReview> {
        unary(r, async |ctx, m| self.get_access_review(&ctx, m).await).await
    }
    async fn start_access_review(&self, r: Request<pb::StartAccessReviewRequest>) -> Reply<pb::AccessReview> {
        unary(r, async |ctx, m| self.start_access_review(&ctx, m).await).await
    }
    async fn sign_off_access_review(&self, r: Request<pb::SignOffAccessReviewRequest>) -> Reply<pb::AccessReview> {
        unary(r, async |ctx, m| self.sign_off_access_review(&ctx, m).await).await
    }
    async fn get_access_review_report(
        &self,
        r: Request<pb::GetAccessReviewReportRequest>,
    ) -> Reply<pb::AccessReviewReport> {
        unary(r, async |ctx, m| self.get_access_review_report(&ctx, m).await).await
    }
    async fn list_stale_access(&self, r: Request<pb::ListStaleAccessRequest>) -> Reply<pb::ListStaleAccessResponse> {
        unary(r, async |ctx, m| self.list_stale_access(&ctx, m).await).await
    }
    async fn get_stale_access(&self, r: Request<pb::GetStaleAccessRequest>) -> Reply<pb::StaleAccessFinding> {
        unary(r, async |ctx, m| self.get_stale_access(&ctx, m).await).await
    }
    async fn resolve_stale_access(&self, r: Request<pb::ResolveStaleAccessRequest>) -> Reply<pb::StaleAccessFinding> {
        unary(r, async |ctx, m| self.resolve_stale_access(&ctx, m).await).await
    }
}
