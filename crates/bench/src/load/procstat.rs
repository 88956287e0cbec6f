//! Process and machine figures from `/proc`: RSS, CPU time, cores, memory.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` in clock ticks; the tick is
//! `USER_HZ`, which Linux fixes at 100 for user space on every architecture we
//! run on, so no `sysconf` call (and no `libc`) is needed. A sampler turns two
//! readings a second apart into a percentage of one core (200 % = both cores of
//! this machine). A process that exited reads as `None`, never as zero.

use std::time::Instant;

use serde::Serialize;

const USER_HZ: f64 = 100.0;

/// Resident set size of `pid`, bytes (`VmRSS` in `/proc/PID/status`).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU seconds (user + system) that `pid` has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')' field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / USER_HZ)
}

/// CPU use between successive calls, as a percentage of one core.
pub struct CpuMeter {
    pids: Vec<u32>,
    last: Option<(Instant, f64)>,
}

impl CpuMeter {
    /// Meters the sum of `pids`.
    pub fn new(pids: Vec<u32>) -> Self {
        let mut m = CpuMeter { pids, last: None };
        m.sample();
        m
    }

    fn total(&self) -> Option<f64> {
        self.pids.iter().map(|&p| cpu_seconds(p)).sum()
    }

    /// Total CPU seconds so far.
    pub fn seconds(&self) -> Option<f64> {
        self.total()
    }

    /// Percentage of one core since the last call (`None` on the first, or if gone).
    pub fn sample(&mut self) -> Option<f64> {
        let now = Instant::now();
        let cpu = self.total()?;
        let pct = self.last.map(|(t, c)| {
            let dt = now.duration_since(t).as_secs_f64();
            if dt > 0.0 {
                (cpu - c) / dt * 100.0
            } else {
                0.0
            }
        });
        self.last = Some((now, cpu));
        pct
    }
}

/// The machine the figures come from.
#[derive(Serialize, Clone, Debug)]
pub struct Machine {
    /// Logical CPUs available.
    pub cores: usize,
    /// Physical memory, bytes.
    pub memory_bytes: u64,
    /// CPU model name.
    pub cpu: String,
    /// Kernel release.
    pub os: String,
    /// This process's open-files limit.
    pub open_files_limit: Option<u64>,
    /// The commit `fanout-bench` was built from (at build time; see
    /// `build.rs`); the server it starts is a binary of its own, named in
    /// the report's command.
    pub commit: Option<String>,
    /// Whether the sources of that build differed from the commit.
    pub dirty: Option<bool>,
    /// `/proc/loadavg` (1, 5, 15 min) when the report was written: the machine
    /// is shared, and a high figure means other work competed for the cores.
    pub loadavg: Option<[f64; 3]>,
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = s.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

impl Machine {
    /// Reads the figures of this machine.
    pub fn this() -> Machine {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                let l = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_string();
                l.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kb| kb * 1024);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| format!("Linux {}", s.trim()))
            .unwrap_or_else(|_| std::env::consts::OS.into());
        let (commit, dirty) = crate::machine::build();
        Machine {
            cores,
            memory_bytes,
            cpu,
            os,
            open_files_limit: super::limits::open_files_limit(),
            commit,
            dirty,
            loadavg: loadavg(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(cpu_seconds(me).unwrap() >= 0.0);
        assert!(Machine::this().memory_bytes > 0);
    }
}
