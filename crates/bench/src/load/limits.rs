//! Open-file limits, and how N clients are spread over processes and addresses.
//!
//! # The limit
//!
//! Every WebSocket client holds one file descriptor. On this project's machines
//! a process may open at most 20,000 files and the limit cannot be raised, so
//! the load tester reads its own soft limit from `/proc/self/limits` (the same
//! figure `ulimit -n` shows) before it opens anything, and plans:
//!
//! - each worker process gets at most `limit - RESERVED` clients (the reserve
//!   covers stdio, the tokio runtime, and a margin);
//! - the number of workers is the larger of what the limit needs and what
//!   `--workers` asks for.
//!
//! The plan is printed, so a user sees at once when N needs several workers.
//! The server's own limit is the server's business: a server on this machine
//! also holds one descriptor per client, so 15,000 clients need the server and
//! the clients in different processes (which they always are: clients live in
//! `load-worker` processes).
//!
//! # Source addresses
//!
//! A TCP connection to `127.0.0.1:port` is identified by its 4-tuple; with one
//! source address the clients share one range of ~28k ephemeral ports
//! (`/proc/sys/net/ipv4/ip_local_port_range`) with everything else on the
//! machine, and TIME_WAIT from an earlier run eats into it. Client `i` binds
//! `127.0.0.(2 + i % 254)` before it connects (the whole 127/8 is loopback on
//! Linux), so each address carries at most N/254 connections and the port range
//! never runs dry.

use std::net::Ipv4Addr;

/// Descriptors kept aside per worker for stdio, the runtime and a margin.
pub const RESERVED: u64 = 100;

/// The soft limit on open files of this process, from `/proc/self/limits`.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let v = line["Max open files".len()..].split_whitespace().next()?;
    if v == "unlimited" {
        return Some(u64::MAX);
    }
    v.parse().ok()
}

/// How clients are split over worker processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Clients per worker, in order; client ids run on across workers.
    pub per_worker: Vec<usize>,
    /// Most clients one worker may hold under the limit.
    pub per_worker_cap: usize,
}

/// Splits `clients` over at least `min_workers` processes, none above the cap
/// that `limit` allows.
pub fn plan(clients: usize, min_workers: usize, limit: Option<u64>) -> Result<Plan, String> {
    let limit = limit.unwrap_or(1024);
    if limit <= RESERVED + 1 {
        return Err(format!("open-files limit {limit} leaves no room for clients"));
    }
    let cap = (limit - RESERVED).min(usize::MAX as u64) as usize;
    let needed = clients.div_ceil(cap).max(1);
    let workers = needed.max(min_workers.max(1)).min(clients.max(1));
    let base = clients / workers;
    let extra = clients % workers;
    let per_worker = (0..workers).map(|w| base + usize::from(w < extra)).collect();
    Ok(Plan { per_worker, per_worker_cap: cap })
}

/// The source address of client `id`: 127.0.0.2 … 127.0.0.255.
pub fn source_addr(id: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (id % 254) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_in_one_worker_under_the_limit() {
        let p = plan(1000, 1, Some(20_000)).unwrap();
        assert_eq!(p.per_worker, vec![1000]);
    }

    #[test]
    fn splits_when_the_limit_needs_it() {
        let p = plan(45_000, 1, Some(20_000)).unwrap();
        assert_eq!(p.per_worker.len(), 3);
        assert_eq!(p.per_worker.iter().sum::<usize>(), 45_000);
        assert!(p.per_worker.iter().all(|&n| n <= p.per_worker_cap));
    }

    #[test]
    fn honours_more_workers_and_never_more_than_clients() {
        assert_eq!(plan(10, 4, Some(20_000)).unwrap().per_worker, vec![3, 3, 2, 2]);
        assert_eq!(plan(2, 4, Some(20_000)).unwrap().per_worker, vec![1, 1]);
    }

    #[test]
    fn source_addresses_stay_in_range() {
        assert_eq!(source_addr(0), Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(source_addr(253), Ipv4Addr::new(127, 0, 0, 255));
        assert_eq!(source_addr(254), Ipv4Addr::new(127, 0, 0, 2));
    }
}
