//! Records what builds `fanout-bench`, for the machine section of its
//! reports: the compiler (`FANOUT_BENCH_RUSTC`), and the commit of the
//! sources (`FANOUT_BENCH_COMMIT`, `FANOUT_BENCH_DIRTY`).
//!
//! The commit is taken when the binary is built, not when it runs: a report
//! names the code that measured, even if the checkout has moved on or is
//! being edited while it runs. `dirty` covers the sources only (`crates/`,
//! the workspace's `Cargo.toml` and `Cargo.lock`): editing docs or writing
//! reports does not make a build dirty. Cargo re-runs this script when any
//! of those sources change, and when the checkout's commit does.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The sources a build of the bench comes from, relative to the workspace.
const SOURCES: [&str; 3] = ["crates", "Cargo.toml", "Cargo.lock"];

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(&rustc)
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FANOUT_BENCH_RUSTC={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-changed=build.rs");

    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_default();
    let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
    status.extend(SOURCES);
    let dirty = git(&status).map(|s| (!s.is_empty()).to_string()).unwrap_or_default();
    println!("cargo:rustc-env=FANOUT_BENCH_COMMIT={commit}");
    println!("cargo:rustc-env=FANOUT_BENCH_DIRTY={dirty}");

    for source in SOURCES {
        watch(&root.join(source));
    }
    // The commit moves with HEAD (a checkout) or with its branch (a commit).
    let absolute = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { root.join(p) };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(absolute) {
        watch(&dir.join("HEAD"));
    }
    if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(absolute) {
        if let Some(branch) =
            git(&["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/"))
        {
            watch(&common.join(branch));
        }
        watch(&common.join("packed-refs"));
    }
}

/// Re-run when `path` changes (a directory: anything in it). Only paths that
/// exist: cargo would re-run on every build for one that does not.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
