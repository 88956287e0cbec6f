//! Starting, watching and stopping the server under test.
//!
//! `--spawn-server '<command>'` runs the command through `sh -c 'exec …'` (so
//! the pid we sample is the server's, not the shell's), after replacing
//! `{port}` with a free loopback port, `{engine}` with the engine of the run and
//! `{api_key}` with the publish key. `--compare` builds the command itself from
//! the `fanout-server` binary next to this one (or `--server-bin`).
//!
//! The server is ready when `GET /healthz` answers 200; we poll it every 20 ms
//! for at most 20 s and give up at once if the process exits (a wait on a
//! signal would be better, but a server owes us no readiness signal other than
//! its port). Its stderr goes to `server-<label>.log` in the report folder.
//! With `--nodes N` the command runs N times, each on its own free port.
//! It is stopped with SIGTERM (via `kill`, to need no `libc`), which
//! `fanout-server` answers with a graceful drain, and killed if it is still
//! there 15 s later.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Child;

use super::publisher::Http;

/// A server process we started.
pub struct Spawned {
    child: Child,
    /// Its process id.
    pub pid: u32,
    /// Killed and reaped: its pid may already be another process's.
    gone: bool,
}

/// A free port on 127.0.0.1 (the listener is closed again before the server binds it).
pub fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// The default command for `--compare`: `fanout-server` next to this binary.
pub fn default_command(server_bin: Option<&Path>, max_connections: usize) -> Result<String, String> {
    let bin = match server_bin {
        Some(p) => p.to_path_buf(),
        None => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            exe.with_file_name("fanout-server")
        }
    };
    if !bin.exists() {
        return Err(format!(
            "{} not found: build it (cargo build --release -p fanout-server) or pass --server-bin",
            bin.display()
        ));
    }
    Ok(format!(
        "{} --engine {{engine}} --listen 127.0.0.1:{{port}} --api-key {{api_key}} --max-connections {max_connections} --log-level warn",
        bin.display()
    ))
}

/// Fills the placeholders of a `--spawn-server` command. `{engine}` is the
/// engine's name, except for the cluster labels (`--compare fanout,redis,nats`:
/// the broker's cost): `redis` and `nats` run the fanout engine as a cluster
/// node over the broker on its usual local port; and `fanout-log`, the
/// fanout engine with `--shared-log 512`.
pub fn fill(template: &str, port: u16, engine: &str, api_key: &str) -> String {
    template
        .replace("{port}", &port.to_string())
        .replace("{engine}", engine_flags(engine))
        .replace("{api_key}", api_key)
}

/// What `{engine}` stands for (see [`fill`]).
fn engine_flags(label: &str) -> &str {
    match label {
        "redis" => "fanout --broker redis://127.0.0.1:6379",
        "nats" => "fanout --broker nats://127.0.0.1:4222",
        // The fanout engine with topics and broadcasts through shared logs.
        "fanout-log" => "fanout --shared-log 512",
        other => other,
    }
}

/// Starts `cmd`, waits until it answers `/healthz` on `addr`.
pub async fn spawn(cmd: &str, addr: SocketAddr, log: &Path) -> Result<Spawned, String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!("exec {cmd}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("spawn `{cmd}`: {e}"))?;
    let pid = child.id().ok_or("server exited at once")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("server `{cmd}` exited with {status} (see {})", log.display()));
        }
        if let Ok(mut h) = Http::connect(addr).await {
            if let Ok((200, _)) = h.request("GET", "/healthz", &[], b"").await {
                return Ok(Spawned { child, pid, gone: false });
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill().await;
            return Err(format!("server `{cmd}` did not answer /healthz on {addr} within 20 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Spawned {
    /// SIGKILL, as a crash or an OOM kill would end it; returns once it is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        self.gone = true;
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub async fn stop(mut self) {
        if self.gone {
            return;
        }
        let _ = tokio::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        if tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.is_err() {
            let _ = self.child.kill().await;
        }
    }
}

/// Stops every node at once (each drains its own connections).
pub async fn stop_all(nodes: Vec<Spawned>) {
    futures_util::future::join_all(nodes.into_iter().map(Spawned::stop)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_placeholders() {
        assert_eq!(
            fill("s --listen 127.0.0.1:{port} --engine {engine} -k {api_key}", 9, "mutex", "k"),
            "s --listen 127.0.0.1:9 --engine mutex -k k"
        );
    }
}
