//! `embed_migrations!` reads `migrations/` at compile time; a new migration directory must
//! trigger a rebuild, which cargo does not know without this. The migrations' contents are also
//! fingerprinted, so that a template database migrated with an earlier text of a migration is
//! never taken for the current one (see `custos_db::migrations_fingerprint`).
use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read migrations").flatten() {
        let path = entry.path();
        if path.is_dir() { files(&path, out) } else { out.push(path) }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
    let root = Path::new("../../migrations");
    let mut paths = Vec::new();
    files(root, &mut paths);
    paths.sort();
    // FNV-1a over every file's path and bytes: a cache key, not a security boundary.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for path in paths {
        let name = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        for byte in name.bytes().chain([0]).chain(std::fs::read(&path).expect("read migration")).chain([0]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    println!("cargo:rustc-env=CUSTOS_MIGRATIONS_FINGERPRINT={hash:016x}");
}
