//! The edge as a hostile or careless client meets it: stalled connections (a slowloris), bodies
//! that never finish, too many connections from one address, bodies that are not JSON, request
//! heads too large to parse, paths that are not UTF-8, and gRPC errors a standard client reads.

use std::time::Duration;

use custos_gateway::config::ConnectionLimits;
use custos_proto::v1 as pb;
use custos_proto::v1::frameworks_service_client::FrameworksServiceClient;
use custos_testkit::{ServerOptions, TestServer};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::Code;
use tonic_types::StatusExt;

fn limits(header_secs: u64, max_connections: usize, per_client: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(header_secs),
        body_read_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_connections,
        max_connections_per_client: per_client,
    }
}

async fn start(limits: ConnectionLimits) -> TestServer {
    TestServer::start_with(ServerOptions { connections: Some(limits), ..Default::default() }).await
}

fn http_addr(s: &TestServer) -> std::net::SocketAddr {
    s.server.as_ref().expect("running").http_addr
}

/// Waits (up to a minute: a generous bound, not a speed claim) until the server closes `stream`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Reads a whole HTTP/1.1 answer from a connection the server closes after it.
async fn read_answer(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

async fn health_ok(s: &TestServer) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    matches!(client.get(format!("{}/health/", s.base)).send().await, Ok(r) if r.status() == 200)
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_connections_are_closed_and_health_answers_again() {
    // 50 connections at most: 300 stalled clients are six times what the server holds.
    let s = start(limits(1, 50, 1_000)).await;
    assert!(health_ok(&s).await);
    let addr = http_addr(&s);
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        match i % 3 {
            // A head that never ends (a slowloris).
            0 => stream.write_all(b"GET /health/ HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap(),
            // A body that never comes.
            1 => stream
                .write_all(b"POST /api/compliance/frameworks/ HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
                .await
                .unwrap(),
            // Nothing at all (not even which protocol).
            _ => {}
        }
        stalled.push(stream);
    }
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(closed_by_server(stream).await, "stalled connection {i} was never closed");
    }
    assert!(health_ok(&s).await, "health answers once the stalled connections are gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_holds_at_most_its_share_of_connections() {
    let s = start(limits(30, 1_000, 20)).await;
    let addr = http_addr(&s);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /health/ HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(stream);
    }
    // Let the server accept them all before the next one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra.write_all(b"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), extra.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "the 21st connection from one address is closed unanswered");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(health_ok(&s).await, "the address is served again once its connections close");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_stops_arriving_is_a_408_and_an_idle_connection_is_closed() {
    let s = start(limits(5, 1_000, 1_000)).await;
    let org = s.org("acme").await;
    let mut stream = TcpStream::connect(http_addr(&s)).await.unwrap();
    let head = format!(
        "POST /api/compliance/frameworks/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":",
        org.editor
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/json"), "{text}");
    assert!(text.contains("\"error\":\"Request body timeout\""), "{text}");

    // A kept-alive connection that sends nothing more is closed.
    let mut idle = TcpStream::connect(http_addr(&s)).await.unwrap();
    idle.write_all(b"GET /health/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut idle).await, "an idle kept-alive connection is closed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_endpoint_refuses_other_media_types_with_415() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let url = format!("{}/api/compliance/frameworks/", s.base);
    let body = crate::seed_gdpr_body().to_string();
    for content_type in [Some("text/plain"), Some("application/xml"), Some("application/x-www-form-urlencoded"), None] {
        let mut req = s.http.post(&url).header("authorization", format!("Token {}", org.editor)).body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 415, "{content_type:?}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["error"], "Unsupported media type", "{problem}");
        assert!(problem["details"].as_str().unwrap().contains("application/json"), "{problem}");
    }
    let resp = s
        .http
        .post(&url)
        .header("authorization", format!("Token {}", org.editor))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Nothing was created by the refused requests.
    let (_, page) = s.call(Method::GET, "/api/compliance/frameworks/", Some(&org.viewer), None).await;
    assert_eq!(page["count"], 1);
    // An action with no body needs no Content-Type.
    let (status, _) = s.call(Method::POST, "/api/compliance/audit-log/checkpoints/", Some(&org.auditor), None).await;
    assert!(status == 201 || status == 403, "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_before_any_handler_are_json_too() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    // 414: a 64 KiB query (raw: HTTP client libraries refuse to build such a URL).
    let mut stream = TcpStream::connect(http_addr(&s)).await.unwrap();
    let line = format!("GET /api/compliance/frameworks/?search={} HTTP/1.1\r\nHost: x\r\n\r\n", "x".repeat(64 * 1024));
    stream.write_all(line.as_bytes()).await.unwrap();
    let (status, head, problem) = read_answer(&mut stream).await;
    assert_eq!(status, 414, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(problem["error"], "URI too long");

    // 431: a 1 MiB header, sent while the answer is read.
    let mut stream = TcpStream::connect(http_addr(&s)).await.unwrap();
    let (mut reader, mut writer) = stream.split();
    let send = async move {
        let mut head = b"GET /api/compliance/frameworks/ HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 1024 * 1024));
        head.extend_from_slice(b"\r\n\r\n");
        let _ = writer.write_all(&head).await;
    };
    let receive = async move {
        let mut raw = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut raw)).await;
        raw
    };
    let ((), raw) = tokio::join!(send, receive);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(body).unwrap()["error"], "Request header fields too large");

    // A path that is not UTF-8, percent-encoded: a JSON 404.
    let (status, problem) = s.call(Method::GET, "/api/compliance/frameworks/%FF%FE/", Some(&org.viewer), None).await;
    assert_eq!(status, 404, "{problem}");
    assert!(problem["error"].is_string(), "{problem}");
    // The same bytes raw on the request line: a JSON 400 or 404, never text.
    let mut stream = TcpStream::connect(http_addr(&s)).await.unwrap();
    stream.write_all(b"GET /api/compliance/frameworks/\xff\xfe/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 400") || head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    assert!(serde_json::from_str::<Value>(body).unwrap()["error"].is_string(), "{body}");

    // A malformed request line.
    let mut stream = TcpStream::connect(http_addr(&s)).await.unwrap();
    stream.write_all(b"GET\x01 / HTTP/1.1\r\n\r\n").await.unwrap();
    let (status, head, body) = read_answer(&mut stream).await;
    assert_eq!(status, 400, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(body["error"], "Malformed request");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_errors_are_google_rpc_status_and_an_oversized_message_is_resource_exhausted() {
    let s = TestServer::start().await;
    let org = s.org("acme").await;
    let mut editor = FrameworksServiceClient::new(s.grpc(Some(&org.editor)).await);
    let err = editor
        .create_framework(pb::CreateFrameworkRequest {
            framework: Some(pb::FrameworkInput {
                name: "GDPR".into(),
                framework_type: "NOPE".into(),
                version: "1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let details = err.check_error_details().expect("grpc-status-details-bin is a google.rpc.Status");
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "INVALID_ARGUMENT");
    assert_eq!(info.domain, "custos");
    assert_eq!(info.metadata["error"], err.message());
    let violations = &details.bad_request().expect("BadRequest").field_violations;
    assert_eq!(violations[0].field, "framework_type");
    assert!(violations[0].description.contains("GDPR"), "{violations:?}");

    let err = editor.get_framework(pb::GetFrameworkRequest { id: uuid::Uuid::now_v7().to_string() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.check_error_details().unwrap().error_info().unwrap().reason, "NOT_FOUND");

    // Over the 4 MiB a message may be (the frameworks service takes documents of up to 64 MiB
    // for imports; the incidents service has the default).
    let mut incidents =
        custos_proto::v1::incidents_service_client::IncidentsServiceClient::new(s.grpc(Some(&org.editor)).await);
    let err = incidents
        .create_incident(pb::CreateIncidentRequest {
            incident: Some(pb::IncidentInput {
                title: "Big".into(),
                description: "x".repeat(5 * 1024 * 1024),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.check_error_details().unwrap().error_info().unwrap().reason, "PAYLOAD_TOO_LARGE");
    let (_, page) = s.call(Method::GET, "/api/compliance/incidents/", Some(&org.viewer), None).await;
    assert_eq!(page["count"], 0, "{}", json!(page));
}

/// A gRPC call whose messages stop coming (tonic calls the handler on the headers, then waits)
/// is ended at the body timeout, not held with its connection for ever.
#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_stream_that_stops_sending_is_ended_at_the_body_timeout() {
    use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
    use custos_proto::v1::upload_evidence_request::Part;
    let s = start(limits(5, 1_000, 1_000)).await;
    let org = s.org("acme").await;
    let mut editor = EvidenceServiceClient::new(s.grpc(Some(&org.editor)).await);
    let header = pb::UploadEvidenceRequest {
        part: Some(Part::Header(pb::EvidenceUploadHeader {
            evidence: Some(pb::EvidenceInput {
                title: "Stalled".into(),
                evidence_type: "SCREENSHOT".into(),
                ..Default::default()
            }),
            file_name: "a.png".into(),
            content_type: "image/png".into(),
        })),
    };
    let first = pb::UploadEvidenceRequest { part: Some(Part::Chunk(vec![1, 2, 3])) };
    // Two messages, then nothing, never ending.
    let stalling = futures::stream::iter([header, first]).chain(futures::stream::pending());
    let outcome = tokio::time::timeout(Duration::from_secs(60), editor.upload_evidence(stalling)).await;
    let status = outcome.expect("the server ended the call").expect_err("a stalled upload fails");
    assert_ne!(status.code(), Code::Ok);
    let (_, page) = s.call(Method::GET, "/api/compliance/evidence/", Some(&org.viewer), None).await;
    assert_eq!(page["count"], 0, "nothing recorded");
}

/// An HTTP/2 connection with no request is closed at the idle timeout even while its client
/// pings it (pings are not requests).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_even_when_its_client_pings() {
    let s = start(limits(5, 1_000, 1_000)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc_addr))
        .unwrap()
        .http2_keep_alive_interval(Duration::from_millis(300))
        .keep_alive_while_idle(true)
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    let closed = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("custos_connections_closed_total") && l.contains("reason=\"idle_timeout\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let org = s.org("acme").await;
    let mut seen = 0.0;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let text = s
            .http
            .get(format!("{}/metrics", s.base))
            .header("authorization", format!("Token {}", org.viewer))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        seen = closed(&text);
        if seen >= 1.0 {
            break;
        }
    }
    assert!(seen >= 1.0, "the pinging idle connection was closed");
    // The client reconnects on its next call.
    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
}
