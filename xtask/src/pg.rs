//! A private PostgreSQL cluster under `target/custos-pg`, for machines with PostgreSQL binaries
//! installed but no server running (or none the developer wants to touch).

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{Result, env, output, status};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn port_open(host: &str, port: u16) -> bool {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok())
}

pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Finds the directory of `initdb`/`pg_ctl`: `PG_BIN`, `pg_config --bindir`, Debian's layout, PATH.
fn bindir() -> Result<PathBuf> {
    if let Some(dir) = env("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    if let Ok((true, out, _)) = output(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(out.trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").exists())
            .collect();
        versions.sort();
        if let Some(newest) = versions.pop() {
            return Ok(newest);
        }
    }
    if let Ok((true, out, _)) = output(Command::new("sh").args(["-c", "command -v initdb"]))
        && let Some(dir) = Path::new(out.trim()).parent()
    {
        return Ok(dir.to_path_buf());
    }
    Err("PostgreSQL binaries (initdb, pg_ctl) not found: install PostgreSQL, set PG_BIN, or set DATABASE_URL".into())
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).map(|(_, out, _)| out.trim() == "0").unwrap_or(false)
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Test clusters trade durability for speed.
    for_tests: bool,
    run_as_postgres: bool,
}

impl Cluster {
    pub fn local(for_tests: bool) -> Result<Cluster> {
        let port = env("CUSTOS_PG_PORT").and_then(|p| p.parse().ok()).unwrap_or(if for_tests { 54330 } else { 54329 });
        let name = if for_tests { "custos-pg-test" } else { "custos-pg" };
        Ok(Cluster {
            bin: bindir()?,
            dir: workspace_root().join("target").join(name),
            port,
            for_tests,
            run_as_postgres: is_root(),
        })
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A command from the PostgreSQL bindir, run as `postgres` when we are root (initdb refuses root).
    fn pg(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.run_as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub fn start(&self) -> Result {
        let data = self.dir.join("data");
        if !data.join("PG_VERSION").exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            if self.run_as_postgres {
                status(Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir))?;
            }
            println!("xtask: creating a private PostgreSQL cluster in {}", data.display());
            status(
                self.pg("initdb")
                    .arg("-D")
                    .arg(&data)
                    .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
                    .stdout(std::process::Stdio::null()),
            )?;
        }
        if port_open("127.0.0.1", self.port) {
            return Ok(());
        }
        let mut options = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        if self.for_tests {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200");
        }
        let log = self.dir.join("postgres.log");
        status(
            self.pg("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-o", &options, "start"])
                .stdout(std::process::Stdio::null()),
        )
        .map_err(|e| format!("{e}; see {}", log.display()))?;
        println!("xtask: PostgreSQL listening on 127.0.0.1:{}", self.port);
        Ok(())
    }

    pub fn stop(&self) -> Result {
        status(self.pg("pg_ctl").arg("-D").arg(self.dir.join("data")).args(["-w", "stop"]))
    }

    pub fn ensure_database(&self, name: &str) -> Result {
        let (ok, _, err) = output(self.pg("createdb").args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            "postgres",
            name,
        ]))?;
        if ok || err.contains("already exists") { Ok(()) } else { Err(err) }
    }
}
