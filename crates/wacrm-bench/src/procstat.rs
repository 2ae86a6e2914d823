//! A process's resident memory and CPU time, from `/proc` (Linux).

use std::time::{Duration, Instant};

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Resident set size, bytes.
    pub rss: u64,
    /// User + system CPU time so far.
    pub cpu: Duration,
    /// When it was read.
    pub at: Instant,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`, 100 on Linux).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Reads a process; `None` when it is gone or this is not Linux.
pub fn read(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat; here indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second();
    Some(Reading {
        rss: rss_kb * 1024,
        cpu: Duration::from_millis((utime + stime) * 1000 / ticks),
        at: Instant::now(),
    })
}

/// CPU use between two readings, in cores (1.0 = one core busy).
pub fn cores(from: &Reading, to: &Reading) -> f64 {
    let wall = to.at.duration_since(from.at).as_secs_f64();
    if wall <= 0.0 {
        return 0.0;
    }
    to.cpu.saturating_sub(from.cpu).as_secs_f64() / wall
}

/// Samples a process every `every` until stopped; the highest RSS seen.
pub async fn peak_rss(pid: u32, every: Duration, stop: tokio_util::sync::CancellationToken) -> u64 {
    let mut peak = 0;
    loop {
        if let Some(r) = read(pid) {
            peak = peak.max(r.rss);
        }
        tokio::select! {
            _ = stop.cancelled() => return peak,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
