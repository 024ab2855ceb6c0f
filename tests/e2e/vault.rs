//! The vault on a running server: data keys wrapped under the master key, fields encrypted with
//! them, bound to their organisation, record and field; each key's creation audited, without
//! key material anywhere. (The encryption itself: `crates/vault`'s unit and property tests;
//! master-key rotation through the operator's command: `crates/gateway/tests/cli.rs`.)

use custos_core::RequestCtx;
use custos_testkit::TestServer;
use diesel_async::RunQueryDsl;
use serde_json::Value;

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    kek_id: String,
    #[diesel(sql_type = diesel::sql_types::Integer)]
    len: i32,
}

#[tokio::test(flavor = "multi_thread")]
async fn data_keys_are_wrapped_audited_and_bound_to_their_organisation() {
    let s = TestServer::start().await;
    let a = s.org("acme").await;
    let b = s.org("globex").await;
    let vault = &s.app().vault;
    let secret = b"correct horse battery staple";

    let ctx = RequestCtx::operator(a.id, a.slug.clone());
    let mut tx = s.db_pool().begin(a.id).await.unwrap();
    let (key_id, _) = vault.create_data_key(&mut tx, &ctx, "secret").await.unwrap();
    let sealed = vault.encrypt(&mut tx, a.id, key_id, "secret:1", "value", secret).await.unwrap();
    tx.commit().await.unwrap();
    assert!(!sealed.windows(secret.len()).any(|w| w == secret));

    // It opens in its organisation, for its record and field, and nowhere else.
    let mut tx = s.db_pool().begin(a.id).await.unwrap();
    let opened = vault.decrypt(&mut tx, a.id, key_id, "secret:1", "value", &sealed).await.unwrap();
    assert_eq!(&opened[..], secret);
    assert!(vault.decrypt(&mut tx, a.id, key_id, "secret:2", "value", &sealed).await.is_err());
    assert!(vault.decrypt(&mut tx, a.id, key_id, "secret:1", "notes", &sealed).await.is_err());
    drop(tx);
    // Another organisation does not even see the data key.
    let mut tx = s.db_pool().begin(b.id).await.unwrap();
    assert!(vault.decrypt(&mut tx, b.id, key_id, "secret:1", "value", &sealed).await.is_err());
    drop(tx);

    // Stored: the wrapped key (84 bytes) under the current master key's fingerprint.
    let mut conn = s.db.superuser().await;
    let row: Row = diesel::sql_query("SELECT kek_id, length(wrapped) AS len FROM vault_data_keys")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!((row.kek_id, row.len), (vault.provider().current().to_string(), 84));
    // Outside production a server without a configured master key made one, in its data directory.
    assert!(s.config().data_dir.join(custos_vault::keys::MASTER_KEY_FILE_NAME).is_file());

    // The key's creation is in the organisation's audit trail: purpose and fingerprint only.
    let mut entry = Value::Null;
    for _ in 0..100 {
        let (_, page) = s.get("/api/compliance/audit-log/?resource_type=data_key", &a.auditor).await;
        if let Some(e) = page["results"].as_array().and_then(|r| r.iter().next()) {
            entry = e.clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(entry["action"], "create", "{entry}");
    let after = entry["after"].to_string();
    assert!(after.contains("\"purpose\"") && after.contains("secret") && after.contains("kek_id"), "{after}");
    assert!(!after.contains("wrapped"), "{after}");
}
