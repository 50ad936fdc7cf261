//! CPU time from `/proc`, without a libc dependency.
//!
//! Per thread, `/proc/self/task/<tid>/schedstat` gives the time on CPU in
//! nanoseconds where the kernel keeps scheduler statistics; otherwise
//! `stat` gives user plus system time in clock ticks, which Linux exposes at
//! 100 per second on every common configuration (`USER_HZ`): 10 ms
//! resolution, so measure over seconds, not over single requests.

use std::{fs, path::Path, time::Duration};

/// Clock ticks per second in `/proc` (`USER_HZ`).
pub const TICKS_PER_SECOND: u64 = 100;

/// User plus system CPU time of the whole process, if `/proc` is there.
pub fn process() -> Option<Duration> {
    stat_cpu(Path::new("/proc/self/stat"))
}

/// User plus system CPU time of the live threads of this process whose name
/// starts with `prefix` (names are cut to 15 bytes by the kernel).
pub fn threads(prefix: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = task.path();
        let Ok(name) = fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if name.trim_end().starts_with(prefix) {
            total += schedstat_cpu(&dir.join("schedstat"))
                .or_else(|| stat_cpu(&dir.join("stat")))
                .unwrap_or_default();
        }
    }
    Some(total)
}

/// Whether per-thread readings have nanosecond resolution here (else 10 ms).
pub fn precise() -> bool {
    schedstat_cpu(Path::new("/proc/thread-self/schedstat")).is_some()
}

/// The first field of `schedstat`: nanoseconds spent on the CPU.
fn schedstat_cpu(path: &Path) -> Option<Duration> {
    let text = fs::read_to_string(path).ok()?;
    let ns: u64 = text.split_ascii_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

fn stat_cpu(path: &Path) -> Option<Duration> {
    parse_stat(&fs::read_to_string(path).ok()?)
}

/// `utime + stime` from a `stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its closing `)`.
fn parse_stat(line: &str) -> Option<Duration> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3) … utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_odd_command_name_is_parsed() {
        let line = "42 (a (b) c) R 1 1 1 0 -1 4194304 99 0 0 0 7 3 0 0 20 0 1 0 141077 3133440";
        assert_eq!(parse_stat(line), Some(Duration::from_millis(100)));
    }

    #[test]
    fn process_and_thread_cpu_are_readable_here() {
        assert!(process().is_some());
        assert!(threads("no-such-thread-name").is_some_and(|d| d.is_zero()));
    }
}
