//! CPU time spent by a stage, in this process and in the PostgreSQL server: what a stage costs
//! beside how long it takes. On two cores a stage that needs more than two CPU-seconds per
//! million entries cannot reach a million entries a second, however well it overlaps its parts;
//! these figures show where that bound lies and who spends it.
//!
//! Read from `/proc`, so the server's share is known only when it runs on this machine (as the
//! benchmark's test server does); elsewhere only this process's share is printed.

use std::path::Path;

/// Linux reports `/proc` CPU times in `USER_HZ` ticks, fixed at 100 on every architecture it
/// exposes them for (the kernel rescales its own clock to it).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    /// This process, all its threads.
    own: f64,
    /// Every `postgres` process on this machine, with the children they have reaped (backends
    /// that ended meanwhile); `None` when there is none to read.
    database: Option<f64>,
}

/// User plus system time of a process, with its reaped children's when `children`, in seconds.
fn process_seconds(stat: &Path, children: bool) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The command name (field 2) is parenthesised and may hold spaces: count from after it.
    let fields: Vec<&str> = text.get(text.rfind(')')? + 2..)?.split_whitespace().collect();
    // Fields 14-17 of the line (utime, stime, cutime, cstime) are 11-14 after the name.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let mut total = ticks(11)? + ticks(12)?;
    if children {
        total += ticks(13)? + ticks(14)?;
    }
    Some(total as f64 / TICKS_PER_SECOND)
}

fn database_seconds() -> Option<f64> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let dir = entry.path();
        let is_postgres = std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim_end() == "postgres");
        if let Some(seconds) = is_postgres.then(|| process_seconds(&dir.join("stat"), true)).flatten() {
            *total.get_or_insert(0.0) += seconds;
        }
    }
    total
}

impl CpuClock {
    pub fn now() -> CpuClock {
        CpuClock {
            own: process_seconds(Path::new("/proc/self/stat"), false).unwrap_or(0.0),
            database: database_seconds(),
        }
    }

    /// What was spent since `self`, per million of `entries`, as a line for the report: this
    /// process's share, the database's (with `database`, for a stage that uses it), and the rate
    /// the machine's cores would allow at that cost.
    pub fn per_million_since(&self, entries: u64, database: bool) -> String {
        let now = CpuClock::now();
        let per_million = 1e6 / entries.max(1) as f64;
        let own = (now.own - self.own) * per_million;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let database = now
            .database
            .zip(self.database)
            .filter(|_| database)
            .map(|(after, before)| (after - before).max(0.0) * per_million);
        let total = own + database.unwrap_or(0.0);
        let split =
            database.map_or(String::new(), |database| format!(" + {database:.2} s in PostgreSQL = {total:.2} s"));
        format!(
            "CPU per million entries: {own:.2} s here{split}; {cores} cores at that cost allow at most {:.0} entries/s",
            cores * 1e6 / total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_charged_for_the_work_it_does() {
        let before = CpuClock::now();
        let started = std::time::Instant::now();
        let mut x = 0u64;
        // Spins until the clock has charged a tenth of a second (ticks are 10 ms); a clock that
        // never advances fails after half a minute.
        while CpuClock::now().own - before.own < 0.1 {
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "no CPU time charged");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
        let line = before.per_million_since(1_000_000, false);
        assert!(line.starts_with("CPU per million entries: "), "{line}");
        assert!(line.contains("entries/s"), "{line}");
    }

    #[test]
    fn a_stat_line_is_read_past_a_name_with_spaces_and_parentheses() {
        let dir = std::env::temp_dir().join(format!("custos-bench-cpu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stat = dir.join("stat");
        std::fs::write(&stat, "42 (post gres) x) S 1 2 3 4 5 6 7 8 9 10 250 50 30 20 0 0\n").unwrap();
        assert_eq!(process_seconds(&stat, false), Some(3.0));
        assert_eq!(process_seconds(&stat, true), Some(3.5));
        std::fs::write(&stat, "42 (postgres) S 1 2").unwrap();
        assert_eq!(process_seconds(&stat, false), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
