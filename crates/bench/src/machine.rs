//! What `hub.json` says about where its figures came from: the build (commit,
//! rustc, profile), the machine (CPU model, cores, memory, kernel), and whether
//! the machine was quiet while the harness ran.
//!
//! # Quiet
//!
//! The harness itself keeps both cores busy, so the load average during a run
//! says little about anyone else. Two figures do:
//!
//! - the 1-minute load average **before** the first run (work that was already
//!   going on), and
//! - the CPU time **other processes** used during the harness: the machine's
//!   busy time (`/proc/stat`) minus this process's (`/proc/self/stat`), as a
//!   share of all cores over the wall time.
//!
//! The machine counts as quiet when the load average before is at most
//! [`QUIET_LOADAVG_PER_CORE`] × cores and others used at most
//! [`QUIET_OTHER_CPU_PERCENT`] % of the machine; both thresholds are written
//! into the report (`quiet_rule`). A [`Watch`] samples the 1-minute load
//! average once a second as well, so a reader sees when something else
//! started. Everything is measured by the tool; nothing in the report is
//! typed in by hand.
//!
//! # Build
//!
//! The commit, whether the sources differed from it (`dirty`), and the rustc
//! version are those of the build, captured by `build.rs` when the binary
//! was compiled: a report names the code that measured, not the state of
//! the checkout while it ran (which may have moved on, or have docs and
//! reports being edited).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::load::procstat::{cpu_seconds, loadavg};

/// Quiet: 1-minute load average before the run, per core, at most this.
pub const QUIET_LOADAVG_PER_CORE: f64 = 0.5;
/// Quiet: other processes' CPU during the run, % of the whole machine, at most this.
pub const QUIET_OTHER_CPU_PERCENT: f64 = 10.0;

/// The machine and build the figures come from.
#[derive(Serialize, Clone, Debug)]
pub struct Machine {
    /// Logical CPUs available to the process.
    pub cores: usize,
    /// Physical memory, bytes.
    pub memory: u64,
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// OS and kernel release, e.g. `linux 6.18.0`.
    pub os: String,
    /// Kernel release alone.
    pub kernel: String,
    /// The commit the binary was built from (`git rev-parse HEAD` at build
    /// time).
    pub commit: Option<String>,
    /// Whether the sources it was built from (`crates/`, `Cargo.toml`,
    /// `Cargo.lock`) differed from that commit.
    pub dirty: Option<bool>,
    /// The compiler that built the binary (`rustc --version`).
    pub rustc: String,
    /// `release` or `debug`.
    pub profile: &'static str,
    /// 1, 5 and 15 minute load averages before the first run.
    pub loadavg_before: Option<[f64; 3]>,
    /// 1-minute load average sampled once a second during the runs: max and mean.
    pub loadavg_1m_max_during: Option<f64>,
    /// See `loadavg_1m_max_during`.
    pub loadavg_1m_mean_during: Option<f64>,
    /// CPU time used by other processes during the runs, % of the whole machine.
    pub other_cpu_percent: Option<f64>,
    /// Whether the figures came from a quiet machine (see `quiet_rule`).
    pub quiet: bool,
    /// The rule `quiet` applied, with its thresholds.
    pub quiet_rule: String,
}

/// Busy and total time of all CPUs, in clock ticks (`/proc/stat`).
fn cpu_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle, total))
}

/// Watches the machine from before the first run to after the last.
pub struct Watch {
    before: Option<[f64; 3]>,
    ticks0: Option<(u64, u64)>,
    self0: Option<f64>,
    stop: mpsc::Sender<()>,
    sampler: JoinHandle<Vec<f64>>,
}

impl Watch {
    /// Starts watching: reads the load average and the CPU counters now.
    pub fn start() -> Watch {
        let before = loadavg();
        let (stop, stopped) = mpsc::channel::<()>();
        let sampler = std::thread::spawn(move || {
            let mut v = Vec::new();
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(Duration::from_secs(1)) {
                v.extend(loadavg().map(|l| l[0]));
            }
            v
        });
        Watch { before, ticks0: cpu_ticks(), self0: cpu_seconds(std::process::id()), stop, sampler }
    }

    /// Stops watching and describes the machine.
    pub fn finish(self, started: Instant) -> Machine {
        let _ = self.stop.send(());
        let samples = self.sampler.join().unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let wall = started.elapsed().as_secs_f64();
        // Ticks are USER_HZ (100 per second) in /proc/stat and /proc/self/stat alike.
        let other_cpu_percent = match (self.ticks0, cpu_ticks(), self.self0, cpu_seconds(std::process::id()))
        {
            (Some((b0, t0)), Some((b1, t1)), Some(s0), Some(s1)) if t1 > t0 => {
                let busy = (b1 - b0) as f64 / 100.0;
                let others = (busy - (s1 - s0)).max(0.0);
                let capacity = (t1 - t0) as f64 / 100.0;
                Some(others / capacity * 100.0)
            }
            _ => None,
        }
        .filter(|_| wall > 0.0);
        let quiet = self.before.is_some_and(|l| l[0] <= QUIET_LOADAVG_PER_CORE * cores as f64)
            && other_cpu_percent.is_some_and(|c| c <= QUIET_OTHER_CPU_PERCENT);
        let mean = (!samples.is_empty()).then(|| samples.iter().sum::<f64>() / samples.len() as f64);
        let (kernel, os) = kernel_os();
        let (commit, dirty) = build();
        Machine {
            cores,
            memory: memory(),
            cpu: cpu_model(),
            os,
            kernel,
            commit,
            dirty,
            rustc: env!("FANOUT_BENCH_RUSTC").to_string(),
            profile: if cfg!(debug_assertions) { "debug" } else { "release" },
            loadavg_before: self.before,
            loadavg_1m_max_during: samples.iter().copied().reduce(f64::max),
            loadavg_1m_mean_during: mean,
            other_cpu_percent,
            quiet,
            quiet_rule: format!(
                "1-minute load average before the first run <= {QUIET_LOADAVG_PER_CORE} x cores, and other \
                 processes' CPU during the runs <= {QUIET_OTHER_CPU_PERCENT} % of the machine"
            ),
        }
    }
}

fn memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|v| v.split_once(':')).map(|(_, v)| v.trim()))
        .unwrap_or("unknown")
        .to_string()
}

fn kernel_os() -> (String, String) {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let os = format!("{} {kernel}", std::env::consts::OS);
    (kernel, os)
}

/// The commit the binary was built from and whether its sources differed
/// from it (see `build.rs`); `None` for a build outside a git checkout.
pub fn build() -> (Option<String>, Option<bool>) {
    let commit = Some(env!("FANOUT_BENCH_COMMIT")).filter(|c| !c.is_empty()).map(str::to_string);
    let dirty = match env!("FANOUT_BENCH_DIRTY") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    (commit, dirty)
}
