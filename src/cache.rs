//! The cache root: where chipbench keeps what it can rebuild, so that a binary copied anywhere
//! (`cargo install`, a release download, a cluster node, a container) needs no files beside it.
//! `suite/` holds the built-in suite when no `models/` folder is at hand.
//!
//! The root is `--cache-dir`, else `$CHIPBENCH_CACHE_DIR`, else `$XDG_CACHE_HOME/chipbench`, else
//! `$HOME/.cache/chipbench` (the XDG base directory rule; two variables need no crate).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `--cache-dir`, a global option: kept here once `main` has parsed it, because the commands
/// reach the suite through `cmd::models::suite_dir` from many places.
static GIVEN: OnceLock<PathBuf> = OnceLock::new();

/// Records `--cache-dir` for [`root`]; called once by `main`.
pub fn set_given(dir: Option<PathBuf>) {
    if let Some(dir) = dir {
        // Only main calls this, once, before any command runs.
        let _ = GIVEN.set(dir);
    }
}

/// The cache root (not created here; whoever writes into it creates what it needs).
pub fn root() -> anyhow::Result<PathBuf> {
    resolve(
        GIVEN.get().map(PathBuf::as_path),
        std::env::var_os("CHIPBENCH_CACHE_DIR").map(PathBuf::from),
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn resolve(
    given: Option<&Path>,
    chipbench_cache_dir: Option<PathBuf>,
    xdg_cache_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> anyhow::Result<PathBuf> {
    let set = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = given {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = set(&chipbench_cache_dir) {
        return Ok(dir);
    }
    // The XDG specification ignores a relative XDG_CACHE_HOME.
    if let Some(dir) = set(&xdg_cache_home).filter(|d| d.is_absolute()) {
        return Ok(dir.join("chipbench"));
    }
    if let Some(home) = set(&home) {
        return Ok(home.join(".cache").join("chipbench"));
    }
    anyhow::bail!(
        "no cache folder: HOME, XDG_CACHE_HOME and CHIPBENCH_CACHE_DIR are all unset; \
         pass --cache-dir DIR (or --suite DIR)"
    )
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::resolve;

    fn some(p: &str) -> Option<PathBuf> {
        Some(PathBuf::from(p))
    }

    #[test]
    fn the_root_follows_the_option_then_the_variables() {
        let given = Path::new("/given");
        assert_eq!(
            resolve(Some(given), some("/c"), some("/x"), some("/h")).unwrap(),
            given
        );
        assert_eq!(
            resolve(None, some("/c"), some("/x"), some("/h")).unwrap(),
            Path::new("/c")
        );
        assert_eq!(
            resolve(None, some(""), some("/x"), some("/h")).unwrap(),
            Path::new("/x/chipbench")
        );
        assert_eq!(
            resolve(None, None, some("relative"), some("/h")).unwrap(),
            Path::new("/h/.cache/chipbench")
        );
        let error = resolve(None, None, None, None).unwrap_err().to_string();
        assert!(error.contains("--cache-dir"), "{error}");
    }
}
