//! Notification channels over REST and gRPC: e-mail and webhook channels with their
//! subscriptions, a webhook's signing secret shown once and kept encrypted, a test send through a
//! real local receiver that checks the signature, deliveries recorded (failures too), tenancy
//! and roles.

use std::time::Duration;

use custos_notify::signature;
use custos_proto::v1 as pb;
use custos_proto::v1::notifications_service_client::NotificationsServiceClient;
use custos_testkit::{TestServer, WebhookReceiver};
use serde_json::{Value, json};

const CHANNELS: &str = "/api/compliance/notification-channels/";

#[tokio::test(flavor = "multi_thread")]
async fn webhook_channels_sign_their_test_sends_and_record_every_delivery() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let other = s.org("globex").await;
    let receiver = WebhookReceiver::start().await;
    let url = format!("{}/hooks/custos", receiver.url());

    let body = json!({"name": "SOC webhook", "kind": "webhook", "url": url,
                      "event_types": ["secret.rotation_due", "incident.sla_breached"]});
    for token in [&org.editor, &org.viewer, &org.auditor] {
        assert_eq!(s.post(CHANNELS, token, body.clone()).await.0, 403);
    }
    let (status, created) = s.post(CHANNELS, &org.admin, body.clone()).await;
    assert_eq!(status, 201, "{created}");
    let secret = created["signing_secret"].as_str().expect("the signing secret, this once").to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{secret}");
    let id = created["id"].as_str().unwrap().to_owned();
    // Never again, and never in clear in the database.
    let (_, got) = s.get(&format!("{CHANNELS}{id}/"), &org.auditor).await;
    assert!(got["signing_secret"].is_null(), "{got}");
    assert_eq!(s.get(&format!("{CHANNELS}{id}/"), &org.viewer).await.0, 403);
    assert_eq!(s.get(&format!("{CHANNELS}{id}/"), &other.admin).await.0, 404);
    assert_eq!(s.post(CHANNELS, &org.admin, body).await.0, 409);

    // Bad input: a clear 400 each.
    for bad in [
        json!({"name": "x", "kind": "pager"}),
        json!({"name": "x", "kind": "webhook"}),
        json!({"name": "x", "kind": "webhook", "url": "ftp://example.com/x"}),
        json!({"name": "x", "kind": "email", "recipients": ["not-an-address"]}),
        json!({"name": "x", "kind": "email", "recipients": []}),
        json!({"name": "x", "kind": "email", "recipients": ["a@example.com"], "event_types": ["everything"]}),
    ] {
        let (status, err) = s.post(CHANNELS, &org.admin, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }

    // A test send: signed so the receiver can verify it, with its idempotency key.
    let (status, delivery) = s.post(&format!("{CHANNELS}{id}/test/"), &org.admin, json!({})).await;
    assert_eq!(status, 200, "{delivery}");
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    let request = &got[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/hooks/custos"));
    let header = request.header(signature::HEADER).expect("signed");
    assert!(signature::verify(secret.as_bytes(), header, &request.body), "{header}");
    assert!(!signature::verify(b"whsec_wrong", header, &request.body));
    assert_eq!(request.header(signature::IDEMPOTENCY_HEADER), delivery["id"].as_str());
    assert_eq!(request.header(signature::EVENT_HEADER), Some("test"));
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent["organization"], org.id.to_string());

    // A receiver that fails: the delivery is recorded as failed, with why.
    receiver.set_status(500);
    let (_, failed) = s.post(&format!("{CHANNELS}{id}/test/"), &org.admin, json!({})).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(failed["last_error"].as_str().unwrap().contains("500"), "{failed}");
    let (_, list) = s.get(&format!("{CHANNELS}{id}/deliveries/"), &org.auditor).await;
    let statuses: Vec<&str> =
        list["results"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["failed", "delivered"], "{list}");
    assert_eq!(s.post(&format!("{CHANNELS}{id}/test/"), &org.editor, json!({})).await.0, 403);
    assert_eq!(s.post(&format!("{CHANNELS}{id}/test/"), &other.admin, json!({})).await.0, 404);

    // Subscriptions and filters; updates keep the kind; another organisation sees nothing.
    let (status, email) = s
        .post(CHANNELS, &org.admin, json!({"name": "CISO mail", "kind": "email", "recipients": ["CISO@acme.test"], "event_types": ["audit.verification_failed"]}))
        .await;
    assert_eq!(status, 201, "{email}");
    assert_eq!(email["recipients"], json!(["ciso@acme.test"]));
    assert!(email["signing_secret"].is_null());
    let (_, subscribed) = s.get(&format!("{CHANNELS}?event_type=secret.rotation_due"), &org.auditor).await;
    assert_eq!(subscribed["count"], 1, "{subscribed}");
    let (_, mails) = s.get(&format!("{CHANNELS}?kind=email"), &org.admin).await;
    assert_eq!(mails["count"], 1, "{mails}");
    assert_eq!(s.get(&format!("{CHANNELS}?kind=pager"), &org.admin).await.0, 400);
    let (_, none) = s.get(CHANNELS, &other.admin).await;
    assert_eq!(none["count"], 0);
    let email_id = email["id"].as_str().unwrap();
    assert_eq!(s.patch(&format!("{CHANNELS}{email_id}/"), &org.admin, json!({"kind": "webhook"})).await.0, 400);
    let (status, patched) = s.patch(&format!("{CHANNELS}{email_id}/"), &org.admin, json!({"is_active": false})).await;
    assert_eq!((status.as_u16(), patched["is_active"].clone()), (200, json!(false)));

    // gRPC: the same rules.
    let mut viewer = NotificationsServiceClient::new(s.grpc(Some(&org.viewer)).await);
    let denied = viewer.list_notification_channels(pb::ListNotificationChannelsRequest::default()).await.unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let mut auditor = NotificationsServiceClient::new(s.grpc(Some(&org.auditor)).await);
    let listed =
        auditor.list_notification_channels(pb::ListNotificationChannelsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.results.len(), 2);
    assert!(listed.results.iter().all(|c| c.signing_secret.is_none()));
    let mut stranger = NotificationsServiceClient::new(s.grpc(Some(&other.admin)).await);
    let hidden = stranger.test_notification_channel(pb::TestNotificationChannelRequest { id: id.clone() }).await;
    assert_eq!(hidden.unwrap_err().code(), tonic::Code::NotFound);

    // Deleted, with its deliveries.
    assert_eq!(s.delete(&format!("{CHANNELS}{id}/"), &org.editor).await.0, 403);
    assert_eq!(s.delete(&format!("{CHANNELS}{id}/"), &org.admin).await.0.as_u16() / 100, 2);
    assert_eq!(s.get(&format!("{CHANNELS}{id}/deliveries/"), &org.admin).await.0, 404);
}

/// An event written with the change it is about (a secret's rotation falling due) reaches the
/// subscribed webhook, signed, once; a failing receiver is retried with backoff, each attempt
/// recorded; channels not subscribed hear nothing.
#[tokio::test(flavor = "multi_thread")]
async fn events_reach_subscribed_channels_through_the_outbox_with_retries() {
    use diesel_async::RunQueryDsl;
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let receiver = WebhookReceiver::start().await;
    let other = WebhookReceiver::start().await;
    let (_, subscribed) = s
        .post(CHANNELS, &org.admin, json!({"name": "rotations", "kind": "webhook", "url": receiver.url(), "event_types": ["secret.rotation_due"]}))
        .await;
    let secret = subscribed["signing_secret"].as_str().unwrap().to_owned();
    let channel = subscribed["id"].as_str().unwrap().to_owned();
    s.post(
        CHANNELS,
        &org.admin,
        json!({"name": "incidents", "kind": "webhook", "url": other.url(), "event_types": ["incident.sla_breached"]}),
    )
    .await;
    let (_, created) = s
        .post(
            "/api/compliance/secrets/",
            &org.admin,
            json!({"name": "Partner key", "secret_type": "api_key", "secret_value": "pk_1", "rotation_enabled": true}),
        )
        .await;
    let mut conn = s.db.superuser().await;
    diesel::sql_query("UPDATE secrets SET next_rotation_at = now() - interval '1 day'")
        .execute(&mut conn)
        .await
        .unwrap();

    // The first receiver fails: the delivery stays pending with its attempt recorded.
    receiver.set_status(503);
    assert_eq!(s.run_schedule(&org.admin, "secret-rotation").await["status"], "succeeded");
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let (_, list) = s.get(&format!("{CHANNELS}{channel}/deliveries/"), &org.admin).await;
    let first = &list["results"][0];
    assert_eq!((first["status"].clone(), first["attempts"].clone()), (json!("pending"), json!(1)), "{list}");
    assert!(first["last_error"].as_str().unwrap().contains("503"), "{list}");
    // Retried once due (the backoff, brought forward here): delivered, the same idempotency key.
    receiver.set_status(200);
    diesel::sql_query("UPDATE notification_deliveries SET next_attempt_at = now()").execute(&mut conn).await.unwrap();
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    let got = receiver.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[0].header(signature::IDEMPOTENCY_HEADER), got[1].header(signature::IDEMPOTENCY_HEADER));
    let last = &got[1];
    assert!(signature::verify(secret.as_bytes(), last.header(signature::HEADER).unwrap(), &last.body));
    let event: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(event["event_type"], "secret.rotation_due");
    assert_eq!(event["payload"]["secret"], created["id"], "{event}");
    let (_, list) = s.get(&format!("{CHANNELS}{channel}/deliveries/"), &org.admin).await;
    assert_eq!(
        (list["results"][0]["status"].clone(), list["results"][0]["attempts"].clone()),
        (json!("delivered"), json!(2))
    );
    // Once: a later run sends nothing more; the other channel heard nothing.
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests().len(), 2);
    assert!(other.requests().is_empty());
}

/// E-mail channels send through the configured SMTP server (a real one, started by the test):
/// a test send, and an event from the outbox.
#[tokio::test(flavor = "multi_thread")]
async fn email_channels_send_through_a_real_smtp_server() {
    use diesel_async::RunQueryDsl;
    let sink = custos_testkit::SmtpSink::start().await;
    let smtp = custos_notify::service::SmtpConfig {
        url: Some(sink.url()),
        from: Some("Custos <custos@acme.test>".into()),
        credentials: None,
    };
    let s = TestServer::start_with(custos_testkit::ServerOptions { smtp: Some(smtp), ..Default::default() }).await;
    let org = s.org("acme").await;
    let (status, channel) = s
        .post(CHANNELS, &org.admin, json!({"name": "CISO", "kind": "email", "recipients": ["ciso@acme.test", "dpo@acme.test"], "event_types": ["secret.rotation_due"]}))
        .await;
    assert_eq!(status, 201, "{channel}");
    let id = channel["id"].as_str().unwrap();
    let (_, delivery) = s.post(&format!("{CHANNELS}{id}/test/"), &org.admin, json!({})).await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    let mails = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(mails[0].subject, "[Custos] test");
    assert_eq!(mails[0].to, ["ciso@acme.test", "dpo@acme.test"]);
    assert!(mails[0].body.contains("A test notification from Custos"), "{}", mails[0].body);

    let (_, secret) = s
        .post(
            "/api/compliance/secrets/",
            &org.admin,
            json!({"name": "Key", "secret_type": "api_key", "secret_value": "v", "rotation_enabled": true}),
        )
        .await;
    let mut conn = s.db.superuser().await;
    diesel::sql_query("UPDATE secrets SET next_rotation_at = now() - interval '1 day'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(s.run_schedule(&org.admin, "secret-rotation").await["status"], "succeeded");
    assert_eq!(s.run_schedule(&org.admin, "notification-delivery").await["status"], "succeeded");
    let mails = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(mails[1].subject, "[Custos] secret.rotation_due");
    assert!(mails[1].body.contains(secret["id"].as_str().unwrap()), "{}", mails[1].body);
}

/// An SMTP server that requires a login: the configured credentials are used; wrong ones make a
/// failed delivery that says the server refused.
#[tokio::test(flavor = "multi_thread")]
async fn email_logs_in_to_an_smtp_server_that_requires_it() {
    let sink = custos_testkit::SmtpSink::start_with(&["--auth", "custos:s3cret"]).await;
    for (password, delivered) in [("wrong", false), ("s3cret", true)] {
        let smtp = custos_notify::service::SmtpConfig {
            url: Some(sink.url()),
            from: Some("custos@acme.test".into()),
            credentials: Some(("custos".into(), password.into())),
        };
        let s = TestServer::start_with(custos_testkit::ServerOptions { smtp: Some(smtp), ..Default::default() }).await;
        let org = s.org("acme").await;
        let (_, channel) = s
            .post(CHANNELS, &org.admin, json!({"name": "CISO", "kind": "email", "recipients": ["ciso@acme.test"]}))
            .await;
        let id = channel["id"].as_str().unwrap();
        let (_, delivery) = s.post(&format!("{CHANNELS}{id}/test/"), &org.admin, json!({})).await;
        if delivered {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            let mails = sink.wait_for(1, Duration::from_secs(10)).await;
            assert_eq!(mails[0].to, ["ciso@acme.test"]);
        } else {
            assert_eq!(delivery["status"], "failed", "{delivery}");
            assert!(delivery["last_error"].as_str().unwrap().contains("refused"), "{delivery}");
            assert!(sink.messages().await.is_empty());
        }
    }
}
