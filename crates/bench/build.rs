//! Records what builds `fanout-bench`, for the machine section of its
//! reports: the compiler (`FANOUT_BENCH_RUSTC`), and the commit of the
//! sources (`FANOUT_BENCH_COMMIT`, `FANOUT_BENCH_DIRTY`).
//!
//! The commit is taken when the binary is built, not when it runs: a report
//! names the code that measured, even if the checkout has moved on or is
//! being edited while it runs. `dirty` covers the sources only (`crates/`,
//! the workspace's `Cargo.toml` and `Cargo.lock`): editing docs or writing
//! reports does not make a build dirty (an untracked file among the sources
//! does). Cargo re-runs this script when any of those sources change, and
//! when the checkout's commit does. Outside fanout's own checkout both are
//! left empty (the reports then say `null`).

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
    // Only inside fanout's own checkout: a copy of the crate elsewhere (a
    // package, a vendored or registry copy) may sit inside some other
    // repository, whose commit says nothing about this code.
    let ours = git(&manifest, &["rev-parse", "--show-prefix"]).is_some_and(|p| p == "crates/bench/");
    let (commit, dirty) = if ours {
        let commit = git(&root, &["rev-parse", "HEAD"]).unwrap_or_default();
        // Untracked sources count: a new module compiles into the binary.
        let mut status = vec!["status", "--porcelain", "--untracked-files=all", "--"];
        status.extend(SOURCES);
        let dirty = git(&root, &status).map(|s| (!s.is_empty()).to_string()).unwrap_or_default();
        (commit, dirty)
    } else {
        (String::new(), String::new())
    };
    println!("cargo:rustc-env=FANOUT_BENCH_COMMIT={commit}");
    println!("cargo:rustc-env=FANOUT_BENCH_DIRTY={dirty}");
    if !ours {
        return;
    }

    for source in SOURCES {
        watch(&root.join(source));
    }
    // The commit moves with HEAD (a checkout, a commit, a reset: each
    // appends to HEAD's log) or with its branch's ref, which may be a loose
    // file, not exist yet (packed, until the next commit writes it), or
    // live in `packed-refs` or a reftable. Not the index: `git status`
    // rewrites it, and cargo would re-run this script on every build.
    let absolute = |p: String| if Path::new(&p).is_absolute() { PathBuf::from(p) } else { root.join(p) };
    if let Some(dir) = git(&root, &["rev-parse", "--git-dir"]).map(absolute) {
        watch(&dir.join("HEAD"));
        watch(&dir.join("logs/HEAD"));
    }
    if let Some(common) = git(&root, &["rev-parse", "--git-common-dir"]).map(absolute) {
        if let Some(branch) =
            git(&root, &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/"))
        {
            // The ref, or the nearest folder on its way that exists.
            let mut at = common.join(branch);
            while !at.exists() && at.pop() {}
            watch(&at);
        }
        watch(&common.join("packed-refs"));
        watch(&common.join("reftable"));
    }
}

/// `git -C dir args…`, its output trimmed; `None` if git fails or is absent.
/// `--no-optional-locks`: never take the index lock from a user committing.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    Command::new("git")
        .arg("--no-optional-locks")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

/// Re-run when `path` changes (a directory: anything in it). Only paths that
/// exist: cargo would re-run on every build for one that does not.
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
