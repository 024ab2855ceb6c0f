//! `custos`: see `custos --help`.

use std::process::ExitCode;

use custos_gateway::cli::{Broken, Cli, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An operator command's output may go to a reader that stops early (`| head`, a monitoring
    // probe): end quietly as Unix tools do, by the signal, instead of panicking on the next write
    // (Rust starts with SIGPIPE ignored). Not for `serve`; and the standard library's socket
    // writes use MSG_NOSIGNAL, so a dropped database connection stays an error, not a signal.
    #[cfg(unix)]
    if !cli.is_serve() {
        // SAFETY: before any other thread exists; only restores the default disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let json = std::env::var("CUSTOS_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let default_level = if cli.is_serve() { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    // Verifying commands: 1 when what they checked is not intact, 2 when they could not check.
    let verifies = cli.verifies();
    let could_not = if verifies { ExitCode::from(2) } else { ExitCode::FAILURE };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return could_not;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            if e.downcast_ref::<Broken>().is_some() { ExitCode::FAILURE } else { could_not }
        }
    }
}

/// The error and its causes on one line, for operators.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string().replace('\n', " ")).collect::<Vec<_>>().join(": ")
}
