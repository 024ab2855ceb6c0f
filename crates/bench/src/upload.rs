//! `custos-bench upload [--mib N]`: evidence file throughput and memory on this machine.
//!
//! Streams an N MiB file (default 1024) through the real gateway into a local-directory blob
//! store — as a REST multipart upload and as a gRPC client-streamed upload — then re-verifies
//! and downloads it. Every path hashes SHA-256 and BLAKE3 on the way and fsyncs what it stores.
//! Peak RSS is the process's high-water mark (client and server share this process, and the
//! client generates the file as it sends it, so no copy of the file is held anywhere).

use std::time::Instant;

use bytes::Bytes;
use custos_proto::v1 as pb;
use custos_proto::v1::evidence_service_client::EvidenceServiceClient;
use custos_proto::v1::upload_evidence_request::Part;
use custos_testkit::{ServerOptions, TestServer};
use futures::StreamExt;

const CHUNK: usize = 1024 * 1024;

fn kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Resets the peak-RSS counter (VmHWM) so each phase reports its own peak.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The `i`-th megabyte of a file that is different on every run (nothing deduplicates).
fn chunk(seed: u64, i: usize) -> Bytes {
    let mut state = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < CHUNK {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    Bytes::from(out)
}

fn report(label: &str, bytes: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  {label:<44} {:>8.0} MB/s  ({:.2} s)   peak RSS {:>4} MiB",
        bytes as f64 / 1e6 / secs,
        secs,
        kib("VmHWM:") / 1024
    );
}

pub async fn run(args: &[String]) {
    let mib: usize = args.iter().position(|a| a == "--mib").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(1024);
    let size = (mib * CHUNK) as u64;
    let s = TestServer::start_with(ServerOptions {
        max_upload_bytes: Some(size + 1),
        rate_limit_auth_per_hour: Some(u32::MAX),
        ..Default::default()
    })
    .await;
    let org = s.org("bench").await;
    println!(
        "custos evidence upload benchmark — {} cores, {mib} MiB file, blob store {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        s.blob_dir().display()
    );
    println!("  baseline RSS after start-up: {} MiB", kib("VmRSS:") / 1024);

    hash_only(mib);

    // REST: multipart/form-data, metadata fields then the streamed file part.
    reset_peak();
    let seed: u64 = rand_seed();
    let boundary = "custos-bench-boundary";
    let head = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nbench\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"evidence_type\"\r\n\r\nDATABASE_EXPORT\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dump.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let body = futures::stream::iter(std::iter::once(Bytes::from(head)))
        .chain(futures::stream::iter(0..mib).map(move |i| chunk(seed, i)))
        .chain(futures::stream::iter(std::iter::once(Bytes::from(tail))))
        .map(Ok::<_, std::io::Error>);
    let started = Instant::now();
    let resp = s
        .http
        .post(format!("{}/api/compliance/evidence/", s.base))
        .header("Authorization", format!("Token {}", org.editor))
        .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    let evidence: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(status, 201, "{evidence}");
    report("REST multipart upload (SHA-256 + BLAKE3, fsync)", size, started);
    let id = evidence["id"].as_str().expect("id").to_owned();

    // gRPC: client-streamed upload.
    reset_peak();
    let seed = rand_seed();
    // The client's HTTP/2 windows match the gRPC listener's (crates/gateway/src/listener.rs:
    // 2 MiB per stream, 8 MiB per connection) instead of h2's 64 KiB. They are the windows of
    // what this client receives; the upload itself is paced by the server's windows. Measured on
    // 2 cores at 29b9ccb, 1 GiB, 8 runs each (issue 27): gRPC upload 318-607 MB/s (median 386)
    // with h2's default client windows, 320-554 MB/s (median 399) with these, within the noise.
    // Set as fixed sizes, not `http2_adaptive_window(true)`: tonic applies that last, and hyper's
    // adaptive mode restarts both windows at 64 KiB, discarding the sizes.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", s.grpc_addr))
        .expect("uri")
        .initial_stream_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(8 * 1024 * 1024)
        .connect()
        .await
        .expect("connect gRPC");
    let authorization: tonic::metadata::AsciiMetadataValue =
        format!("Token {}", org.editor).parse().expect("ascii header");
    let mut client = EvidenceServiceClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        req.metadata_mut().insert("authorization", authorization.clone());
        Ok(req)
    });
    let header = pb::UploadEvidenceRequest {
        part: Some(Part::Header(pb::EvidenceUploadHeader {
            evidence: Some(pb::EvidenceInput {
                title: "bench grpc".into(),
                evidence_type: "DATABASE_EXPORT".into(),
                ..Default::default()
            }),
            file_name: "dump.bin".into(),
            content_type: "application/octet-stream".into(),
        })),
    };
    // 256 KiB messages: well under tonic's 4 MiB message limit (message size made no difference).
    let piece: usize = 256 * 1024;
    let messages =
        futures::stream::iter(std::iter::once(header)).chain(futures::stream::iter(0..mib).flat_map(move |i| {
            let data = chunk(seed, i);
            futures::stream::iter(
                (0..CHUNK / piece)
                    .map(move |p| pb::UploadEvidenceRequest {
                        part: Some(Part::Chunk(data[p * piece..(p + 1) * piece].to_vec())),
                    })
                    .collect::<Vec<_>>(),
            )
        }));
    let started = Instant::now();
    client.upload_evidence(messages).await.expect("grpc upload");
    report("gRPC client-streamed upload", size, started);

    // Verification: re-read and re-hash the stored object.
    reset_peak();
    let started = Instant::now();
    let (status, v) =
        s.post(&format!("/api/compliance/evidence/{id}/verify_evidence/"), &org.editor, serde_json::json!({})).await;
    assert_eq!((status.as_u16(), v["result"].as_str()), (200, Some("MATCH")), "{v}");
    report("verify_evidence (re-read + both digests)", size, started);

    // Download, streamed to nowhere.
    reset_peak();
    let started = Instant::now();
    let resp = s
        .http
        .get(format!("{}/api/compliance/evidence/{id}/download/", s.base))
        .header("Authorization", format!("Token {}", org.viewer))
        .send()
        .await
        .expect("download");
    let mut received = 0u64;
    let mut stream = resp.bytes_stream();
    while let Some(part) = stream.next().await {
        received += part.expect("chunk").len() as u64;
    }
    assert_eq!(received, size);
    report("REST download", size, started);
}

/// The hashing alone, on one core, for reference.
fn hash_only(mib: usize) {
    use sha2::Digest;
    let data = chunk(1, 0);
    let started = Instant::now();
    let mut sha = sha2::Sha256::new();
    let mut b3 = blake3::Hasher::new();
    for _ in 0..mib {
        sha.update(&data);
        b3.update(&data);
    }
    std::hint::black_box((sha.finalize(), b3.finalize()));
    report("hashing only (SHA-256 + BLAKE3, one core, memory)", (mib * CHUNK) as u64, started);
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos() as u64) | 1
}
