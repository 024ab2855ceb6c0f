//! `cargo test -p xtask tidy`: the layering of the workspace, checked over `cargo metadata`.
//!
//! Every workspace crate is classified once, in [`LAYERS`]:
//!
//! * **domain** — one bounded context each (its service, rows, gRPC adapter);
//! * **kernel** — what every domain crate builds on (`core`, `db`, `proto`, `grpc`);
//! * **edge** — the composition root (`gateway`);
//! * **tooling** — tests, benchmarks and developer commands.
//!
//! and the rules are: no domain crate depends on another (but on the shared platform crates
//! `custos-audit-chain`, `custos-jobs` and `custos-vault`, see [`SHARED`]); `custos-core` knows no transport and no database; kernel crates depend on no
//! domain crate and not on the gateway; only the gateway's tooling depends on the gateway.
//!
//! No dependencies (xtask builds in seconds): `cargo metadata` runs as a subprocess and its JSON
//! is read by the small reader at the end of this file.

use std::process::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Domain,
    Kernel,
    Edge,
    Tooling,
}

use Layer::{Domain, Edge, Kernel, Tooling};

/// Every workspace crate, by package name. A crate missing here fails the test: whoever adds one
/// decides where it sits. Names listed but not (or not yet) in the workspace are fine.
const LAYERS: &[(&str, Layer)] = &[
    ("custos-audit-chain", Domain),
    ("custos-identity", Domain),
    ("custos-frameworks", Domain),
    ("custos-incidents", Domain),
    ("custos-evidence", Domain),
    ("custos-holds", Domain),
    ("custos-jobs", Domain),
    ("custos-vault", Domain),
    ("custos-notify", Domain),
    ("custos-retention", Domain),
    ("custos-residency", Domain),
    ("custos-workflows", Domain),
    ("custos-reports", Domain),
    ("custos-core", Kernel),
    ("custos-db", Kernel),
    ("custos-proto", Kernel),
    ("custos-grpc", Kernel),
    ("custos-oscal", Kernel),
    ("custos-yaml", Kernel),
    ("custos-blobs", Kernel),
    ("custos-pdf", Kernel),
    ("custos-gateway", Edge),
    ("custos-testkit", Tooling),
    ("custos-bench", Tooling),
    ("custos-e2e", Tooling),
    ("xtask", Tooling),
];

/// The domain crates every other domain crate may depend on: the platform's own services.
/// Every change is audited in its own transaction (`custos_audit_chain::record`, called before
/// the commit, ARCHITECTURE.md "Every change is audited in its own transaction"), so the audit
/// trail is the shared audit kernel every service writes through; long and periodic work is a
/// job (`custos-jobs`: a domain's long operation queues one, and its kind reports progress and
/// does steps through it), and the jobs record their own changes in the audit trail, so
/// `custos-jobs` sits above `custos-audit-chain` (which therefore cannot use it); data that must
/// be encrypted is encrypted through the vault (`custos-vault`: data keys under the master key,
/// field encryption, blind indexes, masking — what secrets, exports and DSR records use), whose
/// key rotation is a job, so it sits above both; where files may be stored is decided by data
/// residency (`custos-residency`: every write of a file — evidence, archives, exports — is placed
/// by it, and what breaks a rule is recorded by it), which records in the audit trail. All are
/// domain crates too (with their own APIs), and none depends on any other domain crate, which
/// rule 1 checks like any other.
const SHARED: &[&str] = &["custos-audit-chain", "custos-jobs", "custos-vault", "custos-residency"];

const CORE: &str = "custos-core";
const GATEWAY: &str = "custos-gateway";

/// What `custos-core` must not depend on: it knows no transport (gRPC, HTTP) and no database.
const CORE_FORBIDDEN: &[&str] = &[
    "tonic",
    "tonic-types",
    "tonic-prost",
    "tonic-health",
    "tonic-reflection",
    "prost",
    "axum",
    "http",
    "hyper",
    "hyper-util",
    "tower",
    "tower-http",
    "diesel",
    "diesel-async",
    "diesel_migrations",
    "deadpool",
];

fn layer(name: &str) -> Option<Layer> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|&(_, l)| l)
}

struct Dep {
    name: String,
    /// A normal or build dependency: part of what the crate ships, not only of its tests.
    shipped: bool,
}

struct Package {
    name: String,
    manifest: String,
    deps: Vec<Dep>,
}

fn workspace() -> Vec<Package> {
    let root = crate::pg::workspace_root();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cannot run cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).expect("cargo metadata wrote UTF-8");
    let metadata = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("{}/", root.display());
    let str_of = |v: &Json, key: &str| v.get(key).and_then(Json::str).unwrap_or_default().to_owned();
    metadata
        .get("packages")
        .map(Json::arr)
        .unwrap_or_default()
        .iter()
        .map(|p| Package {
            name: str_of(p, "name"),
            manifest: str_of(p, "manifest_path").trim_start_matches(&prefix).to_owned(),
            deps: p
                .get("dependencies")
                .map(Json::arr)
                .unwrap_or_default()
                .iter()
                // `kind` is null for normal dependencies, "dev" or "build" otherwise.
                .map(|d| Dep { name: str_of(d, "name"), shipped: d.get("kind").and_then(Json::str) != Some("dev") })
                .collect(),
        })
        .collect()
}

/// Every broken rule, each saying what to do about it.
fn violations(packages: &[Package]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, (name, _)) in LAYERS.iter().enumerate() {
        if LAYERS[..i].iter().any(|(n, _)| n == name) {
            out.push(format!("`{name}` is listed twice in LAYERS (xtask/src/tidy.rs): keep one entry"));
        }
    }
    for p in packages {
        let Some(from) = layer(&p.name) else {
            out.push(format!(
                "`{}` ({}) is not classified: add it to LAYERS in xtask/src/tidy.rs as Domain (depends on no \
                 other domain crate but {SHARED:?}), Kernel (depends on no domain crate), Edge or Tooling",
                p.name, p.manifest
            ));
            continue;
        };
        for d in &p.deps {
            let to = layer(&d.name);
            // 1. Domain crates share only what the kernel offers (normal and build dependencies;
            //    a test may reach further).
            if from == Domain && to == Some(Domain) && d.shipped && !SHARED.contains(&d.name.as_str()) {
                out.push(format!(
                    "domain crate `{}` depends on domain crate `{}`: domain crates do not depend on each other \
                     (only on {SHARED:?}). Put what both need in the kernel (a trait in custos-core, as \
                     core::hold::HoldCheck is; tables in custos_db::schema) or compose them in the gateway",
                    p.name, d.name
                ));
            }
            // 2. Core knows no transport and no database.
            if p.name == CORE && d.shipped && CORE_FORBIDDEN.contains(&d.name.as_str()) {
                out.push(format!(
                    "`{CORE}` depends on `{}`: core knows no transport and no database. Move that code to \
                     custos-grpc (gRPC), the gateway (HTTP) or custos-db (database), and keep only \
                     transport-free types in core",
                    d.name
                ));
            }
            // 3. The kernel sits below every domain crate and the gateway. Any kind of dependency
            //    counts: those depend on the kernel, so even a dev-dependency would be a cycle.
            if from == Kernel && matches!(to, Some(Domain | Edge)) {
                out.push(format!(
                    "kernel crate `{}` depends on `{}` ({}): kernel crates depend on no domain crate and not \
                     on the gateway. Move the code needing it into that crate, or what it needs into the kernel",
                    p.name,
                    d.name,
                    if to == Some(Edge) { "the gateway" } else { "a domain crate" }
                ));
            }
            // 4. The gateway composes everything; only its tooling builds on it (any kind of
            //    dependency: the gateway depends on every domain and kernel crate).
            if d.name == GATEWAY && !matches!(from, Edge | Tooling) {
                out.push(format!(
                    "`{}` depends on the gateway `{GATEWAY}`: only the gateway's tooling (testkit, bench, the \
                     e2e tests, xtask) may. Test through custos-testkit from tests/, or move what is needed \
                     out of the gateway into the kernel",
                    p.name
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_layering() {
        let packages = workspace();
        assert!(packages.iter().any(|p| p.name == CORE), "cargo metadata listed no {CORE}");
        let problems = violations(&packages);
        let mut listed: Vec<String> = packages
            .iter()
            .map(|p| format!("{} ({})", p.name, layer(&p.name).map_or("unclassified".into(), |l| format!("{l:?}"))))
            .collect();
        listed.sort();
        println!("tidy: {} crates checked: {}", packages.len(), listed.join(", "));
        assert!(problems.is_empty(), "the layering is broken:\n  - {}", problems.join("\n  - "));
    }

    #[test]
    fn tidy_rules_catch_what_they_name() {
        let pkg = |name: &str, deps: &[(&str, bool)]| Package {
            name: name.into(),
            manifest: format!("crates/{name}/Cargo.toml"),
            deps: deps.iter().map(|&(n, shipped)| Dep { name: n.into(), shipped }).collect(),
        };
        let ok = [
            pkg(
                "custos-evidence",
                &[("custos-audit-chain", true), ("custos-core", true), ("custos-frameworks", false)],
            ),
            pkg("custos-core", &[("tonic", false)]),
            pkg("custos-e2e", &[("custos-gateway", false)]),
        ];
        assert_eq!(violations(&ok), Vec::<String>::new());
        let bad = [
            pkg("custos-evidence", &[("custos-incidents", true)]),
            pkg("custos-core", &[("tonic", true)]),
            pkg("custos-db", &[("custos-holds", false)]),
            pkg("custos-identity", &[("custos-gateway", false)]),
            pkg("custos-newcomer", &[]),
        ];
        let found = violations(&bad);
        assert_eq!(found.len(), 5, "{found:#?}");
        for (problem, names) in
            found.iter().zip(["custos-incidents", "tonic", "custos-holds", "custos-gateway", "LAYERS"])
        {
            assert!(problem.contains(names), "{problem}");
        }
    }

    #[test]
    fn tidy_json_reader() {
        let v =
            parse(r#" {"a": [1, -2.5e3, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00ü", "o": {}} "#).unwrap();
        let a = v.get("a").map(Json::arr).unwrap_or_default();
        assert_eq!(a.len(), 5);
        assert!(matches!(&a[1], Json::Num(n) if n == "-2.5e3"));
        assert!(matches!((&a[2], &a[3], &a[4]), (Json::Bool(true), Json::Bool(false), Json::Null)));
        assert_eq!(v.get("s").and_then(Json::str), Some("q\"\\/\né😀ü"));
        assert!(v.get("o").is_some_and(|o| matches!(o, Json::Obj(f) if f.is_empty())));
        assert!(parse("[1,]").is_err());
        assert!(parse("{\"a\": 1} x").is_err());
        assert!(parse("\"open").is_err());
    }
}

/// A JSON value: just enough to read `cargo metadata`.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }
}

fn parse(text: &str) -> Result<Json, String> {
    let mut p = Reader { s: text.as_bytes(), i: 0 };
    let value = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(value)
}

/// A recursive-descent reader over the bytes of a JSON text (RFC 8259).
struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

impl Reader<'_> {
    fn err(&self, what: &str) -> String {
        format!("cargo metadata JSON: {what} at byte {}", self.i)
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        let found = self.s.get(self.i) == Some(&c);
        self.i += usize::from(found);
        found
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.eat(c) { Ok(()) } else { Err(self.err(&format!("expected '{}'", c as char))) }
    }

    fn word(&mut self, word: &str, value: Json) -> Result<Json, String> {
        if !self.s[self.i..].starts_with(word.as_bytes()) {
            return Err(self.err("expected a value"));
        }
        self.i += word.len();
        Ok(value)
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.expect(b':')?;
                        fields.push((key, self.value()?));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Obj(fields))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value()?);
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',')?;
                    }
                }
                Ok(Json::Arr(items))
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while matches!(self.s.get(self.i), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    self.i += 1;
                }
                Ok(Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned()))
            }
            _ => Err(self.err("expected a value")),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.s.get(self.i) != Some(&b'"') {
            return Err(self.err("expected a string"));
        }
        self.i += 1;
        // Bytes, not chars: UTF-8 passes through as it is; only escapes are decoded.
        let mut out = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else { return Err(self.err("unterminated string")) };
                    self.i += 1;
                    let c = match e {
                        b'"' | b'\\' | b'/' => char::from(e),
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return Err(self.err("invalid escape")),
                    };
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                }
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| self.err("invalid UTF-8"))
    }

    /// The character of a `\uXXXX` escape (after the `u`), joining a UTF-16 surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) && self.s[self.i..].starts_with(b"\\u") {
            self.i += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(self.err("invalid surrogate pair"));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.err("invalid \\u escape"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self.s.get(self.i..self.i + 4).and_then(|h| std::str::from_utf8(h).ok());
        let code =
            digits.and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or_else(|| self.err("invalid \\u escape"))?;
        self.i += 4;
        Ok(code)
    }
}
