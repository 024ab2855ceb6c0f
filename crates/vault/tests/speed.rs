//! Throughput of field encryption, a figure rather than a check (machines differ):
//!
//! `cargo test -p custos-vault --release -- --ignored --nocapture`
//!
//! The target is at least 200,000 encryptions of 1 KiB a second on one core.

use std::hint::black_box;
use std::time::{Duration, Instant};

use custos_vault::{BlindIndex, DataKey, FieldContext, Normalize, decrypt_field, encrypt_field};
use uuid::Uuid;

/// Runs `f` repeatedly for about `budget`, answering calls a second.
fn rate(budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..1_000 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1_000 {
            f();
        }
        calls += 1_000;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

#[test]
#[ignore = "a figure: cargo test -p custos-vault --release -- --ignored --nocapture"]
fn field_encryption_throughput() {
    let key = DataKey::generate();
    let record = format!("secret:{}", Uuid::now_v7());
    let ctx = FieldContext { organization: Uuid::now_v7(), data_key: Uuid::now_v7(), record: &record, field: "value" };
    let plaintext = vec![0x5a_u8; 1024];
    let sealed = encrypt_field(&key, &ctx, &plaintext);
    let budget = Duration::from_secs(2);

    let encrypt = rate(budget, || {
        black_box(encrypt_field(black_box(&key), &ctx, black_box(&plaintext)));
    });
    let decrypt = rate(budget, || {
        black_box(decrypt_field(black_box(&key), &ctx, black_box(&sealed)).unwrap());
    });
    let small = rate(budget, || {
        black_box(encrypt_field(black_box(&key), &ctx, black_box(b"jane.doe@example.com")));
    });
    let index = BlindIndex::new(&key, "contact.email");
    let blind = rate(budget, || {
        black_box(index.index(Normalize::Email, black_box("Jane.Doe@Example.com")));
    });
    let mib = |per_second: f64| per_second * 1024.0 / (1024.0 * 1024.0);
    println!("one core, 1 KiB fields:");
    println!("  encrypt_field  {encrypt:>10.0}/s  {:>6.2} µs  {:>6.0} MiB/s", 1e6 / encrypt, mib(encrypt));
    println!("  decrypt_field  {decrypt:>10.0}/s  {:>6.2} µs  {:>6.0} MiB/s", 1e6 / decrypt, mib(decrypt));
    println!("  encrypt_field of 20 bytes  {small:>10.0}/s  {:>6.2} µs", 1e6 / small);
    println!("  blind index of an email    {blind:>10.0}/s  {:>6.2} µs", 1e6 / blind);
    if cfg!(debug_assertions) {
        println!("  (a debug build: run with --release for the real figure)");
    }
}
