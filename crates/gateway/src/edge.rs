//! What every request passes through, on both protocols: a request id, authentication, rate
//! limits and metrics. Also the one mapping of [`ErrorKind`] to HTTP status codes.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use custos_core::{ErrorKind, Problem, RequestCtx};
use custos_identity::Authenticator;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderName, HeaderValue, StatusCode, header};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The one mapping of error kinds to HTTP status codes.
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::StateConflict | ErrorKind::Aborted => StatusCode::CONFLICT,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A request without credentials where they are needed.
pub fn no_credentials() -> Problem {
    Problem::new(
        ErrorKind::Unauthenticated,
        "Authentication credentials were not provided",
        "Send 'Authorization: Token <token>' or 'Authorization: Bearer <jwt>'",
    )
}

/// A problem as a REST response: the seed's `{"error", "details"}` body.
pub fn problem_response(problem: &Problem) -> Response {
    let mut resp = (http_status(problem.kind), axum::Json(problem.body())).into_response();
    if problem.kind == ErrorKind::Unauthenticated {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
    }
    resp
}

/// A problem as a gRPC response (trailers-only), for failures before the service is reached.
fn grpc_problem_response(problem: &Problem) -> Response {
    let status = custos_grpc::status(problem);
    let mut resp = status.into_http::<Body>();
    *resp.status_mut() = StatusCode::OK;
    resp.map(|_| Body::empty())
}

/// tonic refuses a request message over its 4 MiB limit with OUT_OF_RANGE; the gRPC spec (and
/// every other server) answers RESOURCE_EXHAUSTED, which is what clients retry on differently.
/// The refusal comes before any handler runs, as a trailers-only answer, so it is rewritten here
/// into the same status a too-large REST body gets, with its details.
fn oversized_grpc_message(response: Response) -> Response {
    let headers = response.headers();
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v == "11");
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| percent_encoding::percent_decode_str(m).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    if !out_of_range || !message.contains("decoded message length too large") {
        return response;
    }
    grpc_problem_response(&Problem::new(ErrorKind::PayloadTooLarge, "Request message too large", message))
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// The paths anyone may call, without credentials (rate limits still apply): the endpoints and
/// gRPC methods the domains declare public, and the platform's own: liveness, and the API's
/// description — the OpenAPI document, the docs page and gRPC reflection — which hold no tenant
/// data and which tools (a browser, grpcurl) must load before they can send credentials.
#[derive(Debug, Default)]
pub struct PublicPaths {
    exact: std::collections::HashSet<String>,
}

/// The platform's own public paths, and prefixes of them.
const PLATFORM_PUBLIC: &[&str] = &["/api/schema/"];
const PLATFORM_PUBLIC_PREFIXES: &[&str] =
    &["/api/docs", "/grpc.reflection.v1.ServerReflection/", "/grpc.reflection.v1alpha.ServerReflection/"];

impl PublicPaths {
    pub fn of(endpoints: &[crate::rest::Endpoint], grpc: &[crate::domains::GrpcService]) -> Self {
        let mut exact: std::collections::HashSet<String> = PLATFORM_PUBLIC.iter().map(|p| p.to_string()).collect();
        // Public REST endpoints have no path parameters (a public page of one resource would
        // name tenant data); one that had would need a pattern here.
        exact.extend(endpoints.iter().filter(|ep| ep.public).map(|ep| ep.path.to_owned()));
        for service in grpc {
            exact.extend(service.public_methods.iter().map(|m| format!("/{}/{m}", service.name)));
        }
        PublicPaths { exact }
    }

    pub fn contains(&self, path: &str) -> bool {
        is_probe(path) || self.exact.contains(path) || PLATFORM_PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p))
    }
}

/// Paths that are neither authenticated nor rate limited (orchestrator probes hit them often).
fn is_probe(path: &str) -> bool {
    path == "/health/" || path == "/health" || path.starts_with("/grpc.health.v1.Health/")
}

/// The seed's two rate limits: per authenticated principal and per unauthenticated client address.
pub struct RateLimits {
    authenticated: DefaultKeyedRateLimiter<String>,
    anonymous: DefaultKeyedRateLimiter<IpAddr>,
}

impl RateLimits {
    pub fn new(auth_per_hour: u32, anon_per_hour: u32) -> Self {
        let quota = |n: u32| Quota::per_hour(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        RateLimits {
            authenticated: RateLimiter::keyed(quota(auth_per_hour)),
            anonymous: RateLimiter::keyed(quota(anon_per_hour)),
        }
    }

    fn check_authenticated(&self, key: &String) -> Result<(), Duration> {
        self.authenticated.check_key(key).map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }

    fn check_anonymous(&self, ip: IpAddr) -> Result<(), Duration> {
        self.anonymous.check_key(&limit_key(ip)).map_err(|n| n.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys that are back to a full quota, so the limiter's memory stays bounded.
    pub fn shrink(&self) {
        self.authenticated.retain_recent();
        self.anonymous.retain_recent();
    }
}

/// What the anonymous limit counts per: an IPv4 address, or an IPv6 client's /64 (which one
/// client holds whole, and could otherwise rotate through for a fresh budget every request).
pub(crate) fn limit_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

/// The client's address: the connecting one, unless that is a trusted proxy — then the nearest
/// address in `X-Forwarded-For` (read from the right) that is not itself a trusted proxy. Entries
/// left of that one were written by whoever sent the request and prove nothing.
pub fn client_address(peer: Option<IpAddr>, headers: &http::HeaderMap, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in forwarded.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip) => client = ip,
            Ok(ip) => return Some(ip),
            // Malformed: nothing to its left can be trusted either.
            Err(_) => break,
        }
    }
    Some(client)
}

fn throttled(wait: Duration) -> (Problem, u64) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    (
        Problem::new(ErrorKind::RateLimited, "Request was throttled", format!("Expected available in {secs} seconds")),
        secs.max(1),
    )
}

#[derive(Clone)]
pub struct Edge {
    pub authenticator: Authenticator,
    pub limits: Arc<RateLimits>,
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    pub public: Arc<PublicPaths>,
}

/// Request id, authentication, rate limit and metrics for one request.
pub async fn middleware(State(edge): State<Edge>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let grpc = is_grpc(&req);
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let client = client_address(peer, req.headers(), &edge.trusted_proxies);

    let span = tracing::info_span!("request", request_id = %request_id, %method, %path);

    let mut response = match admit(&edge, &mut req, &path, &request_id, client).await {
        Ok(()) => {
            use tracing::Instrument;
            next.run(req).instrument(span.clone()).await
        }
        Err((problem, retry_after)) => {
            let mut resp = if grpc { grpc_problem_response(&problem) } else { problem_response(&problem) };
            if let Some(secs) = retry_after {
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            resp
        }
    };
    if grpc {
        response = oversized_grpc_message(response);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }

    let status = response.status().as_u16().to_string();
    let route = route_label(&path);
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("custos_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("custos_request_duration_seconds", "route" => route, "method" => method.clone())
        .record(elapsed);
    tracing::info!(parent: &span, status = %status, elapsed_ms = elapsed * 1000.0, "request finished");
    response
}

type Rejection = (Problem, Option<u64>);

async fn admit(
    edge: &Edge,
    req: &mut Request,
    path: &str,
    request_id: &str,
    client: Option<IpAddr>,
) -> Result<(), Rejection> {
    if is_probe(path) {
        return Ok(());
    }
    let anon_check = |edge: &Edge| -> Result<(), Rejection> {
        match client {
            Some(ip) => edge.limits.check_anonymous(ip).map_err(|w| {
                let (p, s) = throttled(w);
                (p, Some(s))
            }),
            None => Ok(()),
        }
    };
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Some(authorization) = authorization else {
        anon_check(edge)?;
        if edge.public.contains(path) {
            return Ok(());
        }
        return Err((no_credentials(), None));
    };
    let attempt = custos_identity::Attempt { request_id: Some(request_id.to_owned()), client_addr: client };
    let principal = match edge.authenticator.authenticate(&authorization, &attempt).await {
        Ok(p) => p,
        Err(problem) => {
            // Failed credentials count against the client address, so guessing tokens is throttled.
            anon_check(edge)?;
            tracing::warn!(error = %problem.details, "authentication failed");
            return Err((problem, None));
        }
    };
    let key = format!("{}:{}", principal.organization_id, principal.actor.label());
    edge.limits.check_authenticated(&key).map_err(|w| {
        let (p, s) = throttled(w);
        (p, Some(s))
    })?;
    req.extensions_mut().insert(RequestCtx {
        organization_id: principal.organization_id,
        organization_slug: principal.organization_slug,
        role: principal.role,
        actor: principal.actor,
        request_id: Some(request_id.to_owned()),
        client_addr: client,
    });
    Ok(())
}

/// A bounded-cardinality route label: ids in the path become `{id}`.
pub fn route_label(path: &str) -> String {
    path.split('/')
        .map(
            |seg| {
                if uuid::Uuid::parse_str(seg).is_ok() || (seg.len() > 20 && seg.contains('-')) { "{id}" } else { seg }
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_labels_hide_ids() {
        assert_eq!(
            route_label("/api/compliance/frameworks/0192d1b4-7a3e-7c1a-9d1e-2f3a4b5c6d7e/requirements/"),
            "/api/compliance/frameworks/{id}/requirements/"
        );
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_forwarded_address_behind_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> =
            ["10.0.0.0/8", "127.0.0.1"].iter().map(|s| crate::config::trusted_proxies(s).unwrap()[0]).collect();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let headers = |xff: &[&str]| {
            let mut h = http::HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let chain = headers(&["198.51.100.1, 203.0.113.7", "10.1.2.3"]);
        // From an untrusted peer, the header is the peer's word only.
        assert_eq!(client_address(Some(ip("192.0.2.5")), &chain, &trusted), Some(ip("192.0.2.5")));
        // Through trusted proxies: the nearest address they did not write themselves.
        assert_eq!(client_address(Some(ip("127.0.0.1")), &chain, &trusted), Some(ip("203.0.113.7")));
        // No header, or a malformed hop: the nearest trusted hop stands.
        assert_eq!(client_address(Some(ip("127.0.0.1")), &headers(&[]), &trusted), Some(ip("127.0.0.1")));
        assert_eq!(
            client_address(Some(ip("127.0.0.1")), &headers(&["203.0.113.7, junk, 10.0.0.9"]), &trusted),
            Some(ip("10.0.0.9"))
        );
        assert_eq!(client_address(None, &chain, &trusted), None);
        // No proxies configured: the header is ignored.
        assert_eq!(client_address(Some(ip("127.0.0.1")), &chain, &[]), Some(ip("127.0.0.1")));
        assert!(crate::config::trusted_proxies("10.0.0.0/8, nope").is_err());
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_slash_64() {
        let key = |s: &str| limit_key(s.parse().unwrap());
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("192.0.2.1"), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn every_kind_has_its_status() {
        assert_eq!(http_status(ErrorKind::InvalidArgument), StatusCode::BAD_REQUEST);
        assert_eq!(http_status(ErrorKind::RateLimited), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(http_status(ErrorKind::Conflict), StatusCode::CONFLICT);
        assert_eq!(http_status(ErrorKind::StateConflict), StatusCode::CONFLICT);
    }
}
