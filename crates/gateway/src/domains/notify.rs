//! Notifications: the channels' endpoints and gRPC service.

use custos_jobs::{ScheduleDef, Scope};
use custos_proto::v1::notifications_service_server::NotificationsServiceServer;
use http::StatusCode;

use super::{Domain, GrpcService, Serving};
use crate::config::Config;
use crate::op;
use crate::rest::Endpoint;
use crate::rest::openapi::ApiDescription;
use crate::server::App;

pub const DOMAIN: Domain = Domain { name: "notify", serve, cli: None };

/// Every minute, each organisation's outbox is delivered (and failures retried when due).
pub const DELIVERY_SCHEDULE: &str = "notification-delivery";

const CHANNELS: &str = "/api/compliance/notification-channels/";
const CHANNEL: &str = "/api/compliance/notification-channels/{id}/";

fn serve(app: &App, _config: &Config) -> Serving {
    let s = &app.notify;
    let taken = "A channel with this name exists";
    Serving {
        endpoints: vec![
            Endpoint::get(
                CHANNELS,
                "List notification channels (admins, auditors)",
                op!(s, list_notification_channels),
            )
            .list(),
            Endpoint::post(
                CHANNELS,
                "Create a channel: e-mail recipients or a webhook (its signing secret is answered this once)",
                op!(s, create_notification_channel),
            )
            .body_field("channel")
            .created()
            .fails(StatusCode::CONFLICT, taken),
            Endpoint::get(CHANNEL, "Get a notification channel", op!(s, get_notification_channel)),
            Endpoint::put(CHANNEL, "Replace a notification channel", op!(s, update_notification_channel))
                .body_field("channel")
                .fails(StatusCode::CONFLICT, taken),
            Endpoint::patch(CHANNEL, "Partially update a notification channel", op!(s, update_notification_channel))
                .body_field("channel")
                .fails(StatusCode::CONFLICT, taken),
            Endpoint::delete(
                CHANNEL,
                "Delete a notification channel and its deliveries",
                op!(s, delete_notification_channel),
            ),
            Endpoint::post(
                "/api/compliance/notification-channels/{id}/test/",
                "Send a test notification through the channel now; the delivery as recorded",
                op!(s, test_notification_channel),
            ),
            Endpoint::get(
                "/api/compliance/notification-channels/{id}/deliveries/",
                "The channel's deliveries, newest first",
                op!(s, list_notification_deliveries),
            ),
        ],
        description: ApiDescription {
            value_sets: vec![],
            required: vec!["NotificationChannelInput.name", "NotificationChannelInput.kind"],
        },
        grpc: vec![GrpcService::new(NotificationsServiceServer::new(app.notify.clone()))],
        jobs: vec![custos_notify::service::delivery_job(app.notify.clone())],
        schedules: vec![ScheduleDef::new(
            DELIVERY_SCHEDULE,
            custos_notify::service::DELIVERY_JOB,
            Scope::Organization,
            "* * * * *",
            "Delivers the organisation's new events to their channels and retries failed deliveries",
        )],
        ..Serving::default()
    }
}
