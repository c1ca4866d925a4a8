//! Records the commit feedsieve is built from, for `feedsieve --version`.
//!
//! `FEEDSIEVE_COMMIT` set in the build's environment wins (for builds from a source
//! archive); otherwise `git rev-parse` in the source folder; otherwise "unknown".

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !s.trim().is_empty()).then(|| s.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=FEEDSIEVE_COMMIT");
    let commit = match std::env::var("FEEDSIEVE_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_owned(),
        _ => {
            // Build again when HEAD moves: HEAD itself, the branch it names, packed refs.
            if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                let dir = Path::new(&dir);
                println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
                println!("cargo:rerun-if-changed={}", dir.join("packed-refs").display());
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]);
                    let refs = common.as_deref().map_or(dir, Path::new);
                    println!("cargo:rerun-if-changed={}", refs.join(branch).display());
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned())
        }
    };
    println!("cargo:rustc-env=FEEDSIEVE_COMMIT={commit}");
}
