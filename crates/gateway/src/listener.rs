//! The accept loop both listeners run, with the limits a server facing the Internet needs.
//!
//! `axum::serve` sets no timer, so a client whose request head or body never finishes holds its
//! connection (and a file descriptor) for ever: a few thousand such clients (a slowloris) starve
//! the process. Here every connection is bounded, as nginx bounds them
//! (`client_header_timeout`, `keepalive_timeout`, `limit_conn`):
//!
//! - the request head must arrive within [`ConnectionLimits::header_read_timeout`] (hyper's own
//!   timer for HTTP/1, which also runs while a kept-alive connection waits for its next request);
//! - a watchdog closes a connection that has not completed a request head within that time
//!   (this covers the protocol sniffing before HTTP/1 or HTTP/2 is known), one with no request
//!   for [`ConnectionLimits::idle_timeout`] (HTTP/2 pings and other frames do not count, so an
//!   idle connection cannot be kept by pinging), and one whose client stops reading a streamed
//!   answer for that long; never one with a request being handled;
//! - every request body fails when no part of it arrives for the body timeout (gRPC's too);
//! - at most [`ConnectionLimits::max_connections`] connections are open at once (further ones wait
//!   in the kernel's backlog), and at most [`ConnectionLimits::max_connections_per_client`] from
//!   one address (further ones are closed at once), except from trusted proxies;
//! - a JSON body must arrive within [`ConnectionLimits::body_read_timeout`] (enforced by the REST
//!   facade, which answers 408).
//!
//! hyper answers a request head it cannot parse (414 for a URI over 64 KiB, 431 for headers over
//! the buffer, 400 for a malformed line) by itself, with an empty body; [`JsonErrors`] rewrites
//! those answers into the seed's JSON error body, so every error a client sees has one shape.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// Connection limits of both listeners (`CUSTOS_HTTP_*` variables; see `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `CUSTOS_HTTP_HEADER_TIMEOUT_SECS` (default 15): a request head must arrive within this.
    pub header_read_timeout: Duration,
    /// `CUSTOS_HTTP_BODY_TIMEOUT_SECS` (default 60): a JSON body must arrive within this; an
    /// upload may pause no longer than this between two chunks.
    pub body_read_timeout: Duration,
    /// `CUSTOS_HTTP_IDLE_TIMEOUT_SECS` (default 75): a connection with no request in hand that
    /// moves no byte for this long is closed.
    pub idle_timeout: Duration,
    /// `CUSTOS_MAX_CONNECTIONS` (default: 10,000, or fewer if the process may open fewer files).
    pub max_connections: usize,
    /// `CUSTOS_MAX_CONNECTIONS_PER_CLIENT` (default 256); trusted proxies are not limited.
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(15),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            max_connections_per_client: 256,
        }
    }
}

impl ConnectionLimits {
    /// Raises the process's open-file limit to its hard limit (as Go's runtime does) and lowers
    /// `max_connections` to what then fits, keeping room for the database pool, evidence files
    /// and the other listener.
    pub fn fit_to_file_limit(mut self) -> Self {
        if let Some(files) = raise_file_limit() {
            let room = files.saturating_sub(256) / 2;
            if (room as usize) < self.max_connections {
                tracing::warn!(
                    open_files = files,
                    max_connections = room,
                    "CUSTOS_MAX_CONNECTIONS lowered to fit the open-file limit (per listener)"
                );
                self.max_connections = (room as usize).max(16);
            }
        }
        self
    }
}

#[cfg(unix)]
fn raise_file_limit() -> Option<u64> {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        // rlim_t is u64 on Linux, but not on every unix.
        #[allow(clippy::unnecessary_cast)]
        Some(limit.rlim_cur as u64)
    }
}

#[cfg(not(unix))]
fn raise_file_limit() -> Option<u64> {
    None
}

/// How one listener speaks: REST takes HTTP/1.1 and HTTP/2; gRPC gets large HTTP/2 windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
}

/// HTTP/2 flow-control windows of the gRPC listener. h2's default of 64 KiB per stream capped a
/// streamed evidence upload at one window per round trip (118 MB/s against REST's ~400 on this
/// machine); with these it runs level with REST (gRPC/REST 1.00, 0.80–1.15, over 8 rounds).
/// Fixed, not adaptive: hyper's window setters turn BDP-based adaptive windows off again, and
/// adaptive mode starts from 64 KiB.
const GRPC_STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const GRPC_CONNECTION_WINDOW: u32 = 8 * 1024 * 1024;

/// Open connections per client address, for the per-client cap.
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { map: self.clone(), ip })
    }
}

struct ClientSlot {
    map: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.map.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What the watchdog of one connection knows: whether a request head ever arrived, how many
/// requests are being handled (until their answer's head) and how many answers are still
/// streaming, when a request last began or ended, and when a byte was last written.
struct Activity {
    started: Instant,
    last_request_ms: AtomicU64,
    last_write_ms: AtomicU64,
    handling: AtomicUsize,
    streaming: AtomicUsize,
    had_request: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_request_ms: AtomicU64::new(0),
            last_write_ms: AtomicU64::new(0),
            handling: AtomicUsize::new(0),
            streaming: AtomicUsize::new(0),
            had_request: AtomicBool::new(false),
        }
    }
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    fn since(&self, mark: &AtomicU64) -> Duration {
        Duration::from_millis(self.now_ms().saturating_sub(mark.load(Ordering::Relaxed)))
    }
    /// Whether the connection should be closed now, and why.
    fn verdict(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        if !self.had_request.load(Ordering::Relaxed) {
            return (self.started.elapsed() >= limits.header_read_timeout).then_some("header_timeout");
        }
        if self.handling.load(Ordering::Relaxed) > 0 {
            // A long computation, or an upload (whose body has its own stall limit).
            return None;
        }
        if self.streaming.load(Ordering::Relaxed) > 0 {
            // An answer being sent: the client must keep reading it.
            return (self.since(&self.last_write_ms) >= limits.idle_timeout).then_some("stalled_reader");
        }
        // Nothing asked: only requests count, not pings or other frames a client may send.
        (self.since(&self.last_request_ms) >= limits.idle_timeout).then_some("idle_timeout")
    }
}

/// Counts a request as handled until its answer's head, then as streaming until its body is
/// done or dropped; each transition marks request activity.
struct Handling(Arc<Activity>);

impl Handling {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.had_request.store(true, Ordering::Relaxed);
        activity.handling.fetch_add(1, Ordering::Relaxed);
        activity.last_request_ms.store(activity.now_ms(), Ordering::Relaxed);
        Handling(activity.clone())
    }
    fn answered(self) -> Streaming {
        self.0.streaming.fetch_add(1, Ordering::Relaxed);
        Streaming(self.0.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request_ms.store(self.0.now_ms(), Ordering::Relaxed);
    }
}

struct Streaming(Arc<Activity>);

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.streaming.fetch_sub(1, Ordering::Relaxed);
        self.0.last_request_ms.store(self.0.now_ms(), Ordering::Relaxed);
    }
}

/// An answer's body, holding its [`Streaming`] mark while it is sent.
struct Answer<B> {
    inner: B,
    _streaming: Streaming,
}

impl<B> hyper::body::Body for Answer<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `stop` turns true, then lets open requests finish (for
/// at most `grace`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    protocol: Protocol,
    limits: ConnectionLimits,
    trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper answers heads over this with 431; 64 KiB of headers is what nginx allows at most
        // by default (4 × 8 KiB large buffers), twice what most servers take.
        .max_buf_size(128 * 1024);
    // No server keep-alive pings: they would count as traffic and keep an idle HTTP/2
    // connection open for ever; the idle timeout closes it instead (clients reconnect), and a
    // dead peer is found the same way.
    builder.http2().timer(TokioTimer::new());
    if protocol == Protocol::Grpc {
        builder
            .http2()
            .initial_stream_window_size(GRPC_STREAM_WINDOW)
            .initial_connection_window_size(GRPC_CONNECTION_WINDOW)
            .max_frame_size(1024 * 1024 - 1);
    }
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = Arc::new(PerClient::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stopped(&mut stop) => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let trusted = trusted_proxies.iter().any(|net| net.contains(&peer.ip()));
        let client_slot = if trusted {
            None
        } else {
            // An IPv6 client is counted by its /64, which it holds whole (as the rate limit does).
            match per_client.admit(crate::edge::limit_key(peer.ip()), limits.max_connections_per_client) {
                Some(slot) => Some(slot),
                None => {
                    metrics::counter!("custos_connections_refused_total", "reason" => "per_client").increment(1);
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(JsonErrors::new(Watched { inner: stream, activity: activity.clone() }));
        let service = hyper::service::service_fn({
            let router = router.clone();
            let activity = activity.clone();
            move |mut req: hyper::Request<Incoming>| {
                let handling = Handling::begin(&activity);
                req.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                let stall = limits.body_read_timeout;
                async move {
                    let req = req.map(|body| axum::body::Body::new(StallGuarded::new(body, stall)));
                    let response = router.oneshot(req).await?;
                    let streaming = handling.answered();
                    Ok::<_, Infallible>(response.map(|inner| Answer { inner, _streaming: streaming }))
                }
            }
        });
        let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
        let conn = graceful.watch(conn);
        let watchdog = watchdog(activity, limits);
        tokio::spawn(async move {
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, %peer, "connection ended with an error");
                    }
                }
                reason = watchdog => {
                    metrics::counter!("custos_connections_closed_total", "reason" => reason).increment(1);
                    tracing::debug!(%peer, reason, "connection closed by the server");
                }
            }
            drop(client_slot);
            drop(permit);
        });
    }
    drop(listener);
    // In-flight requests finish; idle connections close at once.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// How long a shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Resolves (with the reason) when the connection must be closed (see [`Activity::verdict`]).
fn watchdog(activity: Arc<Activity>, limits: ConnectionLimits) -> impl Future<Output = &'static str> {
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4).max(Duration::from_millis(50));
    async move {
        loop {
            tokio::time::sleep(tick).await;
            if let Some(reason) = activity.verdict(&limits) {
                return reason;
            }
        }
    }
}

/// A request body that fails when no part of it arrives for the body timeout. Every protocol's
/// bodies pass through it: a gRPC call whose message never comes (tonic calls the handler on the
/// headers, then waits) would otherwise hold its connection — the watchdog never closes one with
/// a request in hand — for ever.
struct StallGuarded<B> {
    inner: B,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

/// The error a stalled body ends with (the REST facade answers it 408).
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body arrived for {0:?}")]
pub struct BodyStalled(pub Duration);

impl<B> StallGuarded<B> {
    fn new(inner: B, timeout: Duration) -> Self {
        StallGuarded { inner, timeout, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl<B> hyper::body::Body for StallGuarded<B>
where
    B: hyper::body::Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                let deadline = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(deadline);
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled(this.timeout))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error (or one of its sources) is a stalled body.
pub fn is_stalled(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyStalled>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A TCP stream that notes when bytes are written (a streamed answer's progress).
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.last_write_ms.store(self.activity.now_ms(), Ordering::Relaxed);
        }
        result
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.last_write_ms.store(self.activity.now_ms(), Ordering::Relaxed);
        }
        result
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Rewrites the bodiless answers hyper writes by itself to a request head it cannot parse into
/// the seed's JSON error. Those answers are recognisable: a status line of 400, 414 or 431
/// followed only by `content-length: 0`, `connection: close` and `date` (every answer of ours carries a
/// `content-type`). hyper closes the connection after one, so nothing follows it.
///
/// Such a client is usually still sending (the rest of a 1 MiB header), as is one answered before
/// its body was read (a 413): closing with its bytes unread would make the kernel reset the
/// connection, and a reset can destroy the answer before the client reads it. So, as nginx's
/// `lingering_close` does, every close shuts the write side first and reads and drops what the
/// client still sends for a moment ([`LINGER`], at most [`LINGER_BYTES`]) before the socket
/// closes.
struct JsonErrors<S> {
    inner: S,
    /// Bytes of a replacement answer still to be written.
    pending: Vec<u8>,
    written: usize,
    /// Only the first write of a connection is inspected: a body chunk must never be taken for
    /// an answer head. (A malformed request after a first good one on a kept-alive connection
    /// therefore still gets hyper's bodiless answer; an oversized head is nearly always the
    /// first request of its connection.)
    inspecting: bool,
    linger: Option<Linger>,
}

struct Linger {
    write_shut: bool,
    until: Pin<Box<tokio::time::Sleep>>,
    dropped: usize,
}

const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 4 * 1024 * 1024;

impl<S> JsonErrors<S> {
    fn new(inner: S) -> Self {
        JsonErrors { inner, pending: Vec::new(), written: 0, inspecting: true, linger: None }
    }
}

/// The JSON answer replacing one of hyper's automatic answers, if `head` is one.
fn json_error_for(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status, error, details) = if text.starts_with("HTTP/1.1 431 ") {
        (
            "431 Request Header Fields Too Large",
            "Request header fields too large",
            "The request's headers exceed the 128 KiB this server reads",
        )
    } else if text.starts_with("HTTP/1.1 414 ") {
        ("414 URI Too Long", "URI too long", "The request's path and query exceed 64 KiB")
    } else if text.starts_with("HTTP/1.1 400 ") {
        ("400 Bad Request", "Malformed request", "The request line or a header is not valid HTTP/1.1")
    } else {
        return None;
    };
    let end = text.find("\r\n\r\n")?;
    let lower = text[..end].to_ascii_lowercase();
    let automatic =
        lower.lines().skip(1).all(|l| l == "content-length: 0" || l == "connection: close" || l.starts_with("date: "));
    if !automatic || !lower.contains("content-length: 0") {
        return None;
    }
    let body = serde_json::json!({ "error": error, "details": details }).to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncWrite + Unpin> JsonErrors<S> {
    /// Writes what is left of a replacement answer.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for JsonErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.pending.is_empty() {
            // hyper writes nothing after its error answer; should it, it is swallowed.
            std::task::ready!(self.drain(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        if self.inspecting {
            self.inspecting = false;
            if let Some(replacement) = json_error_for(buf) {
                self.pending = replacement;
                std::task::ready!(self.drain(cx))?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        // Every close lingers, not only after a rewritten answer: hyper also closes after any
        // answer given before the request's body was read (a 413 for a too-large upload), and
        // the client, still sending, must get to read it.
        let this = &mut *self;
        let linger = this.linger.get_or_insert_with(|| Linger {
            write_shut: false,
            until: Box::pin(tokio::time::sleep(LINGER)),
            dropped: 0,
        });
        if !linger.write_shut {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            linger.write_shut = true;
        }
        let mut scratch = [0u8; 8192];
        loop {
            if linger.until.as_mut().poll(cx).is_ready() || linger.dropped >= LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => linger.dropped += buf.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stalled_body_is_told_apart_through_axum_and_to_bytes() {
        // A body that sends nothing, ever.
        let body = http_body_util::StreamBody::new(futures::stream::pending::<
            Result<hyper::body::Frame<bytes::Bytes>, Infallible>,
        >());
        let guarded = axum::body::Body::new(StallGuarded::new(body, Duration::from_millis(50)));
        let err = axum::body::to_bytes(guarded, 1024).await.expect_err("stalled");
        assert!(is_stalled(&err), "{err}");
        let other = axum::body::to_bytes(axum::body::Body::from(vec![0u8; 2048]), 1024).await.unwrap_err();
        assert!(!is_stalled(&other));
    }

    #[test]
    fn only_hyper_s_bodiless_parse_error_answers_are_rewritten() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 05:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(json_error_for(auto).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 431 "));
        assert!(out.contains("content-type: application/json"));
        let body: serde_json::Value = serde_json::from_str(out.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        assert_eq!(body["error"], "Request header fields too large");
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(json_error_for(ours).is_none());
        assert!(json_error_for(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_error_for(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n").is_some());
    }
}
