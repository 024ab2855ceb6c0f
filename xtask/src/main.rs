//! Developer tasks.
//!
//! * `cargo xtask run` — serve a local Custos: with `DATABASE_URL` set, against that database;
//!   otherwise a private PostgreSQL cluster under `target/custos-pg` is created and started. Then
//!   migrate, create a `demo` organisation, seed the catalogue, print an admin token and serve.
//! * `cargo xtask test [ARGS]` — the whole test suite against real PostgreSQL: the server named by
//!   `CUSTOS_TEST_DATABASE_URL`/`DATABASE_URL`, else the one on 127.0.0.1:5432, else a private
//!   cluster. Each test makes its own database. Extra ARGS go to the test runner. Schemathesis
//!   and compliance-trestle (the tests' OSCAL validator) are installed with pip when missing, and
//!   so is aiosmtpd (the tests' SMTP server, `tests/tools/smtp_sink.py`); poppler-utils (the
//!   report tests' PDF reader) is installed with apt-get when missing.
//! * `cargo xtask test-s3` — the evidence tests that need an S3-compatible object store, against
//!   moto's S3 server (installed with pip when missing) on a free local port.
//! * `cargo xtask pg start|stop|url` — manage the private cluster by hand.
//!
//! And a test the suite runs: `cargo test -p xtask tidy` checks the workspace's layering (`tidy.rs`).

mod pg;
#[cfg(test)]
mod tidy;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => run(),
        Some("test") => test(&args[1..]),
        Some("test-s3") => test_s3(),
        Some("pg") => pg_command(args.get(1).map(String::as_str)),
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <run | test [ARGS] | test-s3 | bench audit [--entries N] | bench upload [--mib N] | bench lists [--sizes N,…] | bench jobs [--jobs N] | bench catalogue [--requirements N] | bench vault [--rows N] | bench retention [--incidents N] | pg start|stop|url>"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn status(cmd: &mut Command) -> Result {
    let st = cmd.status().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if st.success() { Ok(()) } else { Err(format!("{cmd:?} failed ({st})")) }
}

fn output(cmd: &mut Command) -> Result<(bool, String, String)> {
    let o = cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    Ok((
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    ))
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn run() -> Result {
    let database_url = match env("DATABASE_URL") {
        Some(url) => url,
        None => {
            let cluster = pg::Cluster::local(false)?;
            cluster.start()?;
            cluster.ensure_database("custos")?;
            cluster.url("custos")
        }
    };
    status(cargo().args(["build", "--quiet", "-p", "custos-gateway", "--bin", "custos"]))?;
    let bin = pg::workspace_root().join("target/debug/custos");
    let custos = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(args).env("DATABASE_URL", &database_url);
        c
    };
    status(&mut custos(&["migrate"]))?;
    let (ok, _, err) = output(&mut custos(&["org", "create", "demo", "--name", "Demo Organisation"]))?;
    if !ok && !err.contains("already exists") {
        return Err(err);
    }
    status(&mut custos(&["seed", "--org", "demo"]))?;
    let (ok, out, err) = output(&mut custos(&[
        "token",
        "create",
        "--org",
        "demo",
        "--email",
        "admin@demo.local",
        "--role",
        "admin",
        "--name",
        "xtask run",
    ]))?;
    if !ok {
        return Err(err);
    }
    let token = out.lines().last().unwrap_or_default().trim().to_owned();
    let http = env("CUSTOS_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into());
    let grpc = env("CUSTOS_GRPC_ADDR").unwrap_or_else(|| "127.0.0.1:50051".into());
    println!();
    println!("  Custos — demo organisation 'demo', catalogue seeded");
    println!("  database  {}", pg::redact(&database_url));
    println!("  REST      http://{http}/api/compliance/");
    println!("  API docs  http://{http}/api/docs/");
    println!("  gRPC      {grpc}   (grpcurl -plaintext {grpc} list)");
    println!("  admin token (shown once):");
    println!("  {token}");
    println!();
    println!("  try: curl -H 'Authorization: Token {token}' http://{http}/api/compliance/frameworks/");
    println!();
    status(&mut custos(&["serve"]))
}

fn test(extra: &[String]) -> Result {
    let url = match env("CUSTOS_TEST_DATABASE_URL").or_else(|| env("DATABASE_URL")) {
        Some(url) => url,
        None if env("CUSTOS_TEST_PRIVATE_PG").is_none() && pg::port_open("127.0.0.1", 5432) => {
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned()
        }
        None => {
            let cluster = pg::Cluster::local(true)?;
            cluster.start()?;
            cluster.url("postgres")
        }
    };
    println!("xtask: tests use PostgreSQL at {}", pg::redact(&url));
    let schemathesis = schemathesis()?;
    let oscal_validator = oscal_validator()?;
    let smtp_server = smtp_server()?;
    pdf_reader()?;
    let nextest = output(cargo().args(["nextest", "--version"])).map(|(ok, _, _)| ok).unwrap_or(false);
    let mut cmd = cargo();
    if nextest {
        cmd.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        cmd.args(["test", "--workspace", "--no-fail-fast"]);
    }
    cmd.args(extra)
        .env("CUSTOS_TEST_DATABASE_URL", &url)
        .env("CUSTOS_SCHEMATHESIS", schemathesis)
        .env("CUSTOS_OSCAL_VALIDATOR", oscal_validator)
        .env("CUSTOS_TEST_SMTP_SERVER", smtp_server);
    status(&mut cmd)
}

/// The Schemathesis executable the OpenAPI fuzz test runs, installed with pip when missing.
fn schemathesis() -> Result<String> {
    if let Some(given) = env("CUSTOS_SCHEMATHESIS") {
        return Ok(given);
    }
    let works = |exe: &str| output(Command::new(exe).arg("--version")).is_ok_and(|(ok, _, _)| ok);
    if works("schemathesis") {
        return Ok("schemathesis".to_owned());
    }
    println!("xtask: installing Schemathesis (pip install schemathesis)");
    status(Command::new("python3").args(["-m", "pip", "install", "--quiet", "schemathesis"]))?;
    // pip puts it in the interpreter's scripts directory, which need not be on PATH.
    let (_, scripts, _) =
        output(Command::new("python3").args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"]))?;
    let installed = format!("{}/schemathesis", scripts.trim());
    for exe in ["schemathesis", installed.as_str()] {
        if works(exe) {
            return Ok(exe.to_owned());
        }
    }
    Err("Schemathesis was installed but cannot be run; set CUSTOS_SCHEMATHESIS to its path".to_owned())
}

/// The command (a prefix: the files to check follow it) with which tests check exported OSCAL
/// documents against a third-party implementation, compliance-trestle's models
/// (`tests/tools/oscal_validate.py`); compliance-trestle is installed with pip when missing.
fn oscal_validator() -> Result<String> {
    if let Some(given) = env("CUSTOS_OSCAL_VALIDATOR") {
        return Ok(given);
    }
    let has_trestle = || output(Command::new("python3").args(["-c", "import trestle.oscal.catalog"]));
    if !has_trestle().is_ok_and(|(ok, _, _)| ok) {
        println!("xtask: installing compliance-trestle (pip install compliance-trestle)");
        let pip = ["-m", "pip", "install", "--quiet", "compliance-trestle"];
        let (ok, _, err) = output(Command::new("python3").args(pip))?;
        if !ok {
            // A distribution's own Python (PEP 668) refuses pip outside a virtual environment.
            if !err.contains("externally-managed-environment") {
                return Err(format!("pip install compliance-trestle failed:\n{err}"));
            }
            status(Command::new("python3").args(pip).arg("--break-system-packages"))?;
        }
        let (ok, _, err) = has_trestle()?;
        if !ok {
            return Err(format!("compliance-trestle was installed but python3 cannot import it: {err}"));
        }
    }
    let script = pg::workspace_root().join("tests/tools/oscal_validate.py");
    Ok(format!("python3 {}", script.display()))
}

/// The real PDF reader the report tests read PDFs back with (poppler's `pdftotext`, `pdfinfo`,
/// `pdffonts`): Debian's poppler-utils, installed with apt-get when missing (or found in
/// `CUSTOS_POPPLER_BIN`).
fn pdf_reader() -> Result {
    let dir = env("CUSTOS_POPPLER_BIN");
    let tool = |name: &str| dir.as_ref().map_or(name.to_owned(), |d| format!("{d}/{name}"));
    let works = || {
        ["pdftotext", "pdfinfo", "pdffonts"]
            .iter()
            .all(|t| output(Command::new(tool(t)).arg("-v")).is_ok_and(|(ok, _, _)| ok))
    };
    if works() {
        return Ok(());
    }
    println!("xtask: installing poppler-utils (apt-get install poppler-utils), the tests' PDF reader");
    let install = || {
        output(
            Command::new("apt-get")
                .args(["install", "-y", "-qq", "--no-install-recommends", "poppler-utils"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if !install().is_ok_and(|(ok, _, _)| ok) {
        // A fresh machine may not have read its package lists yet.
        status(Command::new("apt-get").args(["update", "-qq"]))?;
        let (ok, _, err) = install()?;
        if !ok {
            return Err(format!(
                "apt-get install poppler-utils failed (install it, or set CUSTOS_POPPLER_BIN):\n{err}"
            ));
        }
    }
    if works() { Ok(()) } else { Err("poppler-utils was installed but pdftotext cannot be run".to_owned()) }
}

/// The command (a prefix: `--port 0 --out DIR …` follow it) with which tests start a real SMTP
/// server that stores what it receives (`tests/tools/smtp_sink.py`, see `custos_testkit::SmtpSink`);
/// aiosmtpd is installed with pip when missing.
fn smtp_server() -> Result<String> {
    if let Some(given) = env("CUSTOS_TEST_SMTP_SERVER") {
        return Ok(given);
    }
    let has_aiosmtpd = || output(Command::new("python3").args(["-c", "import aiosmtpd"]));
    if !has_aiosmtpd().is_ok_and(|(ok, _, _)| ok) {
        println!("xtask: installing aiosmtpd (pip install aiosmtpd)");
        let pip = ["-m", "pip", "install", "--quiet", "aiosmtpd"];
        let (ok, _, err) = output(Command::new("python3").args(pip))?;
        if !ok {
            // A distribution's own Python (PEP 668) refuses pip outside a virtual environment.
            if !err.contains("externally-managed-environment") {
                return Err(format!("pip install aiosmtpd failed:\n{err}"));
            }
            status(Command::new("python3").args(pip).arg("--break-system-packages"))?;
        }
        let (ok, _, err) = has_aiosmtpd()?;
        if !ok {
            return Err(format!("aiosmtpd was installed but python3 cannot import it: {err}"));
        }
    }
    let script = pg::workspace_root().join("tests/tools/smtp_sink.py");
    Ok(format!("python3 {}", script.display()))
}

/// Starts moto's S3-compatible server on a free port (installing it with pip if needed), creates
/// a bucket, and runs the ignored S3 evidence test against it.
fn test_s3() -> Result {
    let has_moto = output(Command::new("moto_server").arg("--help")).is_ok_and(|(ok, _, _)| ok);
    if !has_moto {
        println!("xtask: installing moto's S3 server (pip install \"moto[server]\")");
        status(Command::new("python3").args(["-m", "pip", "install", "--quiet", "moto[server]"]))?;
    }
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let mut server = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start moto_server: {e}"))?;
    let result = (|| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !pg::port_open("127.0.0.1", port) {
            if std::time::Instant::now() > deadline {
                return Err("moto_server did not start within 30 s".to_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        create_bucket(port, "custos-test")?;
        let endpoint = format!("http://127.0.0.1:{port}");
        let vars = [
            ("CUSTOS_TEST_S3_URL", "s3://custos-test/ci"),
            ("AWS_ENDPOINT", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ];
        let nextest = output(cargo().args(["nextest", "--version"])).map(|(ok, _, _)| ok).unwrap_or(false);
        let mut cmd = cargo();
        if nextest {
            cmd.args([
                "nextest",
                "run",
                "-p",
                "custos-e2e",
                "--run-ignored",
                "ignored-only",
                "-E",
                "test(/evidence_s3/)",
            ]);
        } else {
            cmd.args(["test", "-p", "custos-e2e", "evidence_s3", "--", "--ignored"]);
        }
        let url = env("CUSTOS_TEST_DATABASE_URL")
            .or_else(|| env("DATABASE_URL"))
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        cmd.env("CUSTOS_TEST_DATABASE_URL", url).envs(vars);
        status(&mut cmd)
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// `PUT /<bucket>` on the local S3 server (path-style; moto needs no signature).
fn create_bucket(port: u16, bucket: &str) -> Result {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    if reply.starts_with("HTTP/1.1 200") || reply.contains("BucketAlreadyOwnedByYou") {
        Ok(())
    } else {
        Err(format!("creating bucket {bucket}: {}", reply.lines().next().unwrap_or_default()))
    }
}

/// `cargo xtask bench audit [--entries N]` / `bench upload [--mib N]` / `bench lists [--sizes …]` / `bench jobs [--jobs N]` / `bench catalogue [--requirements N]` / `bench vault [--rows N]` / `bench reports [--requirements N] [--links L]`: release build of
/// `custos-bench`, against the same PostgreSQL the tests use.
fn bench(args: &[String]) -> Result {
    if !matches!(
        args.first().map(String::as_str),
        Some("audit" | "upload" | "lists" | "jobs" | "catalogue" | "vault" | "retention" | "reports")
    ) {
        return Err(
            "usage: cargo xtask bench audit [--entries N] | bench upload [--mib N] | bench lists [--sizes N,N,…] [--runs N] | bench jobs [--jobs N] [--runs R] [--concurrency C] | bench catalogue [--runs R] [--requirements N] | bench vault [--rows N] [--runs R] | bench retention [--incidents N] [--held-percent P] | bench reports [--requirements N] [--links L] [--runs R]"
                .into(),
        );
    }
    let url = match env("CUSTOS_TEST_DATABASE_URL").or_else(|| env("DATABASE_URL")) {
        Some(url) => url,
        None if pg::port_open("127.0.0.1", 5432) => "postgres://postgres@127.0.0.1:5432/postgres".to_owned(),
        None => {
            let cluster = pg::Cluster::local(true)?;
            cluster.start()?;
            cluster.url("postgres")
        }
    };
    status(
        cargo()
            .args(["run", "--release", "--quiet", "-p", "custos-bench", "--"])
            .args(args)
            .env("CUSTOS_TEST_DATABASE_URL", url),
    )
}

fn pg_command(what: Option<&str>) -> Result {
    let cluster = pg::Cluster::local(false)?;
    match what {
        Some("start") => {
            cluster.start()?;
            println!("{}", cluster.url("postgres"));
            Ok(())
        }
        Some("stop") => cluster.stop(),
        Some("url") => {
            println!("{}", cluster.url("postgres"));
            Ok(())
        }
        _ => Err("usage: cargo xtask pg start|stop|url".into()),
    }
}
