//! Thin tonic adapter over [`NotifyService`]: decode, call, encode.

use custos_grpc::unary;
use custos_proto::v1 as pb;
use custos_proto::v1::notifications_service_server::NotificationsService as NotificationsApi;
use tonic::{Request, Response, Status};

use crate::NotifyService;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl NotificationsApi for NotifyService {
    async fn list_notification_channels(
        &self,
        r: Request<pb::ListNotificationChannelsRequest>,
    ) -> Reply<pb::ListNotificationChannelsResponse> {
        unary(r, async |ctx, m| self.list_notification_channels(&ctx, m).await).await
    }
    async fn get_notification_channel(
        &self,
        r: Request<pb::GetNotificationChannelRequest>,
    ) -> Reply<pb::NotificationChannel> {
        unary(r, async |ctx, m| self.get_notification_channel(&ctx, m).await).await
    }
    async fn create_notification_channel(
        &self,
        r: Request<pb::CreateNotificationChannelRequest>,
    ) -> Reply<pb::NotificationChannel> {
        unary(r, async |ctx, m| self.create_notification_channel(&ctx, m).await).await
    }
    async fn update_notification_channel(
        &self,
        r: Request<pb::UpdateNotificationChannelRequest>,
    ) -> Reply<pb::NotificationChannel> {
        unary(r, async |ctx, m| self.update_notification_channel(&ctx, m).await).await
    }
    async fn delete_notification_channel(
        &self,
        r: Request<pb::DeleteNotificationChannelRequest>,
    ) -> Reply<pb::DeleteNotificationChannelResponse> {
        unary(r, async |ctx, m| self.delete_notification_channel(&ctx, m).await).await
    }
    async fn test_notification_channel(
        &self,
        r: Request<pb::TestNotificationChannelRequest>,
    ) -> Reply<pb::NotificationDelivery> {
        unary(r, async |ctx, m| self.test_notification_channel(&ctx, m).await).await
    }
    async fn list_notification_deliveries(
        &self,
        r: Request<pb::ListNotificationDeliveriesRequest>,
    ) -> Reply<pb::ListNotificationDeliveriesResponse> {
        unary(r, async |ctx, m| self.list_notification_deliveries(&ctx, m).await).await
    }
}
