//! `fanout-server`: the fanout WebSocket server.
//!
//! ```text
//! fanout-server --listen 127.0.0.1:8080
//! ```
//!
//! Flags, `FANOUT_*` environment variables and an optional TOML file
//! (`--config`) are described in `docs/config.md`.

#![forbid(unsafe_code)]

use clap::Parser;
use fanout_server::{Cli, LogFormat, Settings};
use tracing::level_filters::LevelFilter;

fn init_logs(s: &Settings) -> Result<(), String> {
    let level: LevelFilter =
        s.log_level.parse().map_err(|_| format!("invalid log level `{}`", s.log_level))?;
    // Colour only on a terminal: log files and collectors get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt().with_max_level(level).with_writer(std::io::stderr).with_ansi(ansi);
    match s.log_format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
    Ok(())
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> std::process::ExitCode {
    let settings = match Settings::from_cli(Cli::parse()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fanout-server: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    if let Err(e) = init_logs(&settings) {
        eprintln!("fanout-server: {e}");
        return std::process::ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let server = match fanout_server::start(settings).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        };
        signal().await;
        match server.shutdown().await {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}
