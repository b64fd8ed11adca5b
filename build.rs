//! Records the git commit chipbench is built from, for `chipbench --version`: the
//! `CHIPBENCH_GIT_COMMIT` environment variable when set (a container build without `.git`), else
//! `git rev-parse HEAD` in a checkout, else the `.cargo_vcs_info.json` that `cargo package` puts
//! into a published crate; unknown otherwise. Cargo reruns this script only when HEAD or the
//! branch it names moves, so editing a source file rebuilds nothing more than it did before.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CHIPBENCH_GIT_COMMIT");
    let given = std::env::var("CHIPBENCH_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty());
    if let Some(commit) = given.or_else(checkout_commit).or_else(packaged_commit) {
        println!("cargo:rustc-env=CHIPBENCH_GIT_COMMIT={}", commit.trim());
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
}

/// `git ARGS` in the package folder, its output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(manifest_dir())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

fn checkout_commit() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"])?;
    // The files that change when HEAD moves: HEAD itself (a checkout), the branch's ref (a
    // commit) and packed-refs (where `git gc` moves refs). Cargo would rerun the script on every
    // build for a path that does not exist, so only existing ones are watched.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = manifest_dir().join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}

/// `"sha1": "..."` of `.cargo_vcs_info.json`, which `cargo package` writes into a published crate
/// (read by hand: a JSON parser as a build dependency would compile for this alone).
fn packaged_commit() -> Option<String> {
    let text =
        std::fs::read_to_string(Path::new(&manifest_dir()).join(".cargo_vcs_info.json")).ok()?;
    let after_key = text.split_once("\"sha1\"")?.1;
    let value = after_key.split('"').nth(1)?;
    value
        .chars()
        .all(|c| c.is_ascii_hexdigit())
        .then(|| value.to_string())
}
