//! `fanout-bench`: fanout's measuring kit.
//!
//! ```text
//! fanout-bench hub [--quick] --out DIR
//! ```
//!
//! runs the in-process scenarios (see `hub.rs`) on the fanout engine, the mutex
//! hub and `tokio::sync::broadcast`, alternating engines round by round in one
//! process, and writes `DIR/hub.json` and `DIR/hub.md` (see `report.rs`).
//!
//! ```text
//! fanout-bench history [--quick] --out DIR
//! ```
//!
//! measures what a topic's history costs (issue 13): publishing with history
//! on vs off, joins from a position at 100,000 subscribers, memory per topic
//! (`history/mod.rs`), and writes `DIR/history.json` and `DIR/history.md`.
//!
//! ```text
//! fanout-bench load [--clients N --rate R --compare fanout,mutex --search …] --out DIR
//! ```
//!
//! runs WebSocket clients against a server and writes a report folder
//! (`load/mod.rs`); `load-worker` is its hidden helper process.

#![deny(unsafe_op_in_unsafe_fn)]

mod alloc;
mod history;
mod hub;
mod load;
mod machine;
mod report;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Parser)]
#[command(
    name = "fanout-bench",
    version,
    about = "fanout's benchmarks: engine vs mutex hub vs tokio broadcast"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// In-process scenarios: fanout, multi_publisher, churn, slow_subscribers, topics, same_topic.
    Hub(hub::HubArgs),
    /// What a topic's history and joins from a position cost: publish on vs off, join latency, memory per topic.
    History(history::HistoryArgs),
    /// WebSocket load test against a server: clients, publisher, report with plots.
    Load(load::LoadArgs),
    /// A process holding a share of the load test's clients (started by `load`).
    #[command(hide = true)]
    LoadWorker(load::WorkerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hub(args) => match hub::main(&args) {
            Ok(out) => {
                eprintln!("wrote {} and {}", show(&out.0), show(&out.1));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fanout-bench hub: {e}");
                ExitCode::FAILURE
            }
        },
        Command::History(args) => match history::main(&args) {
            Ok(out) => {
                eprintln!("wrote {} and {}", show(&out.0), show(&out.1));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fanout-bench history: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Load(args) => match load::main(args) {
            Ok(out) => {
                eprintln!("wrote {}/report.json, report.md and plots", show(&out));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("fanout-bench load: {e}");
                ExitCode::FAILURE
            }
        },
        Command::LoadWorker(args) => match load::worker_main(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fanout-bench load-worker: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

fn show(p: &Path) -> String {
    p.display().to_string()
}
