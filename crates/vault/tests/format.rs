//! The formats of FORMAT.md, built here independently of the crate (straight from RustCrypto's
//! and BLAKE3's primitives and the document), and checked against what the crate reads and
//! writes — so a change to either side that breaks stored data fails here. The fixed vectors
//! pin the bytes themselves (stored ciphertexts must open in every later version); all but the
//! BLAKE3 key id were also reproduced with libsodium and Python's `cryptography`.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use custos_vault::{
    DataKey, FieldContext, KeyProvider, LocalKeyProvider, MasterKey, MasterKeys, WrapContext, WrappedKey,
    decrypt_field, encrypt_field,
};
use hkdf::Hkdf;
use sha2::Sha256;
use uuid::Uuid;

const ORG: Uuid = Uuid::from_u128(0x0197_c3a4_1f2e_7d3c_9b1a_5e6f_7a8b_9c0d);
const DATA_KEY_ID: Uuid = Uuid::from_u128(0x0197_c3a4_2222_7333_8444_5555_6666_7777);
const NONCE: [u8; 24] = *b"a fixed nonce for tests!";

fn data_key_bytes() -> [u8; 32] {
    std::array::from_fn(|i| i as u8 + 1)
}

fn master_bytes() -> [u8; 32] {
    std::array::from_fn(|i| 0xa0 + i as u8)
}

/// XChaCha20-Poly1305: ciphertext || tag.
fn aead(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let mut out = plaintext.to_vec();
    let tag = XChaCha20Poly1305::new(key.into()).encrypt_in_place_detached(nonce.into(), aad, &mut out).unwrap();
    out.extend_from_slice(&tag);
    out
}

/// A sealed field exactly as FORMAT.md describes it.
fn seal_by_the_book(key: &[u8; 32], record: &str, field: &str, nonce: &[u8; 24], plaintext: &[u8]) -> Vec<u8> {
    let mut aad = b"custos-field/v1".to_vec();
    aad.extend_from_slice(ORG.as_bytes());
    aad.extend_from_slice(DATA_KEY_ID.as_bytes());
    aad.extend_from_slice(&(record.len() as u32).to_be_bytes());
    aad.extend_from_slice(record.as_bytes());
    aad.extend_from_slice(&(field.len() as u32).to_be_bytes());
    aad.extend_from_slice(field.as_bytes());
    let sealed = aead(key, nonce, &aad, plaintext);
    [&b"CV\x01\x01"[..], DATA_KEY_ID.as_bytes(), nonce, &sealed].concat()
}

fn kek_by_the_book(master: &[u8]) -> ([u8; 8], [u8; 32]) {
    let id: [u8; 8] = blake3::derive_key("custos master key id v1", master)[..8].try_into().unwrap();
    let mut kek = [0u8; 32];
    Hkdf::<Sha256>::new(Some(b"custos"), master).expand(b"custos kek v1", &mut kek).unwrap();
    (id, kek)
}

fn wrap_by_the_book(master: &[u8], key: &[u8; 32], nonce: &[u8; 24]) -> Vec<u8> {
    let (id, kek) = kek_by_the_book(master);
    let aad = [&b"custos-data-key/v1"[..], ORG.as_bytes(), DATA_KEY_ID.as_bytes()].concat();
    let sealed = aead(&kek, nonce, &aad, key);
    [&b"CW\x01\x01"[..], &id, nonce, &sealed].concat()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sealed_fields_are_as_documented() {
    let key = DataKey::from_bytes(&data_key_bytes());
    let ctx = FieldContext { organization: ORG, data_key: DATA_KEY_ID, record: "secret:1", field: "value" };
    let by_the_book = seal_by_the_book(&data_key_bytes(), "secret:1", "value", &NONCE, b"hello");
    assert_eq!(
        hex(&by_the_book),
        "43560101\
         0197c3a4222273338444555566667777\
         61206669786564206e6f6e636520666f7220746573747321\
         c393ee1fb4\
         4c2d679269387f2d8e09a3d1d51ff417",
        "the fixed vector (FORMAT.md)"
    );
    assert_eq!(&decrypt_field(&key, &ctx, &by_the_book).unwrap()[..], b"hello");

    // And what the crate writes, opened by the book.
    let ours = encrypt_field(&key, &ctx, b"hello");
    let nonce: [u8; 24] = ours[20..44].try_into().unwrap();
    assert_eq!(ours, seal_by_the_book(&data_key_bytes(), "secret:1", "value", &nonce, b"hello"));
}

#[test]
fn wrapped_keys_are_as_documented() {
    let master = MasterKey::from_bytes(&master_bytes()).unwrap();
    let (id, _) = kek_by_the_book(&master_bytes());
    assert_eq!(master.id().to_string(), hex(&id));
    assert_eq!(master.id().to_string(), "b38678a6772fe3e6", "the fixed vector (FORMAT.md)");
    let by_the_book = wrap_by_the_book(&master_bytes(), &data_key_bytes(), &NONCE);
    assert_eq!(by_the_book.len(), 84);
    assert_eq!(
        hex(&by_the_book),
        "43570101\
         b38678a6772fe3e6\
         61206669786564206e6f6e636520666f7220746573747321\
         ad890c4e999fa97fd0bacc0bda248b9db45dffcafb77a8cf73e59b19cf01a15d\
         d5546b3c73bfce2897f00f1bd106cecf",
        "the fixed vector (FORMAT.md)"
    );
    let provider = LocalKeyProvider::new(&MasterKeys::new(master, []));
    let ctx = WrapContext { organization: ORG, data_key: DATA_KEY_ID };
    let unwrapped = provider.unwrap(&WrappedKey::from_bytes(&by_the_book).unwrap(), &ctx).unwrap();
    assert_eq!(unwrapped.expose_secret(), &data_key_bytes());

    let ours = provider.wrap(&DataKey::from_bytes(&data_key_bytes()), &ctx).unwrap().to_bytes();
    let nonce: [u8; 24] = ours[12..36].try_into().unwrap();
    assert_eq!(ours, wrap_by_the_book(&master_bytes(), &data_key_bytes(), &nonce));
}

#[test]
fn blind_indexes_and_pseudonyms_are_as_documented() {
    let index = custos_vault::BlindIndex::new(&DataKey::from_bytes(&[0x11; 32]), "contact.email");
    assert_eq!(
        index.index_hex(custos_vault::Normalize::Email, " Jane@Example.com "),
        "10c7aa86a1061068ebe6d5e6ac61ccb1"
    );
    let pseudonyms = custos_vault::Pseudonymizer::new(&DataKey::from_bytes(&[0x22; 32]), "dsr");
    assert_eq!(pseudonyms.token("value"), "pseudo_kpq663qp645cwi4n");
}
