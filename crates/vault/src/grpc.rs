//! Thin tonic adapter over [`SecretsService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::secrets_service_server::SecretsService as SecretsApi;
use tonic::{Request, Response, Status};

use crate::secrets::SecretsService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl SecretsApi for SecretsService {
    async fn list_secrets(&self, r: Request<pb::ListSecretsRequest>) -> Reply<pb::ListSecretsResponse> {
        unary(r, async |ctx, m| self.list_secrets(&ctx, m).await).await
    }
    async fn get_secret(&self, r: Request<pb::GetSecretRequest>) -> Reply<pb::Secret> {
        unary(r, async |ctx, m| self.get_secret(&ctx, m).await).await
    }
    async fn create_secret(&self, r: Request<pb::CreateSecretRequest>) -> Reply<pb::Secret> {
        unary(r, async |ctx, m| self.create_secret(&ctx, m).await).await
    }
    async fn update_secret(&self, r: Request<pb::UpdateSecretRequest>) -> Reply<pb::Secret> {
        unary(r, async |ctx, m| self.update_secret(&ctx, m).await).await
    }
    async fn delete_secret(&self, r: Request<pb::DeleteSecretRequest>) -> Reply<pb::DeleteSecretResponse> {
        unary(r, async |ctx, m| self.delete_secret(&ctx, m).await).await
    }
    async fn reveal_secret(&self, r: Request<pb::RevealSecretRequest>) -> Reply<pb::RevealedSecret> {
        unary(r, async |ctx, m| self.reveal_secret(&ctx, m).await).await
    }
    async fn rotate_secret(&self, r: Request<pb::RotateSecretRequest>) -> Reply<pb::Secret> {
        unary(r, async |ctx, m| self.rotate_secret(&ctx, m).await).await
    }
    async fn create_reveal_request(&self, r: Request<pb::CreateRevealRequestRequest>) -> Reply<pb::RevealRequest> {
        unary(r, async |ctx, m| self.create_reveal_request(&ctx, m).await).await
    }
    async fn approve_reveal_request(&self, r: Request<pb::ApproveRevealRequestRequest>) -> Reply<pb::RevealRequest> {
        unary(r, async |ctx, m| self.approve_reveal_request(&ctx, m).await).await
    }
    async fn list_reveal_requests(
        &self,
        r: Request<pb::ListRevealRequestsRequest>,
    ) -> Reply<pb::ListRevealRequestsResponse> {
        unary(r, async |ctx, m| self.list_reveal_requests(&ctx, m).await).await
    }
}
