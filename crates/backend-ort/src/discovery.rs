//! Where the ONNX Runtime library comes from. The steps, in order:
//! 1. `--ort-lib PATH`, else the `ORT_DYLIB_PATH` environment variable: an explicit choice, used
//!    even when it turns out to be broken (then the error says so; nothing else is tried);
//! 2. a project-local copy installed by `scripts/setup-ort.sh` in `.ort/gpu/` or `.ort/cpu/`
//!    (the GPU build first, as it also has the CPU provider, but only where its CUDA provider can
//!    load: on a host without CUDA the CPU build is the newer and the right one);
//! 3. the `onnxruntime` package of the `python3` on `PATH`.
//!
//! Every step is evaluated and reported, so `chipbench backends` shows what else is installed.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The CUDA provider plugin beside a GPU build of the library.
const CUDA_PLUGIN: &str = "libonnxruntime_providers_cuda.so";

/// The places searched, so tests can point the search at folders of their own.
#[derive(Clone, Debug)]
pub struct SearchPlaces {
    /// `--ort-lib PATH`.
    pub flag: Option<PathBuf>,
    /// The value of `ORT_DYLIB_PATH`.
    pub env: Option<OsString>,
    /// Folders that may hold `gpu/` and `cpu/` installs of `scripts/setup-ort.sh`.
    pub project_dirs: Vec<PathBuf>,
    /// The Python interpreter asked where its `onnxruntime` package lives; `None` skips the step.
    pub python: Option<OsString>,
}

impl SearchPlaces {
    /// The standard places: the flag, `ORT_DYLIB_PATH`, `./.ort` and the `.ort` of the checkout
    /// chipbench was built from, and `python3`.
    pub fn standard(flag: Option<PathBuf>) -> Self {
        let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.ort");
        // Absolute where they exist, and once when the current folder is the checkout.
        let mut project_dirs: Vec<PathBuf> = Vec::new();
        for dir in [PathBuf::from(".ort"), built_from] {
            let dir = dir.canonicalize().unwrap_or(dir);
            if !project_dirs.contains(&dir) {
                project_dirs.push(dir);
            }
        }
        SearchPlaces {
            flag,
            env: std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()),
            project_dirs,
            python: Some("python3".into()),
        }
    }
}

/// Which discovery step a library came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    ProjectLocal,
    Python,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Flag => "--ort-lib",
            Source::Env => "ORT_DYLIB_PATH",
            Source::ProjectLocal => "project-local copy (scripts/setup-ort.sh)",
            Source::Python => "python3's onnxruntime package",
        })
    }
}

/// A library file to try, and the step that named it.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    pub source: Source,
}

/// The outcome of the search: one line per step, and the library chosen (the first found).
#[derive(Clone, Debug)]
pub struct Discovery {
    pub steps: Vec<String>,
    pub chosen: Option<Candidate>,
    /// Libraries found but not used, and why (a GPU build whose CUDA provider cannot load).
    pub passed_over: Vec<String>,
}

impl Discovery {
    pub fn run(places: &SearchPlaces) -> Self {
        let mut steps = Vec::new();
        let mut found: Vec<Candidate> = Vec::new();

        let explicit = match (&places.flag, &places.env) {
            (Some(path), _) => Some(Candidate {
                path: path.clone(),
                source: Source::Flag,
            }),
            (None, Some(value)) => Some(Candidate {
                path: PathBuf::from(value),
                source: Source::Env,
            }),
            (None, None) => None,
        };
        steps.push(match &explicit {
            Some(c) => format!("1. {}: {}", c.source, c.path.display()),
            None => "1. --ort-lib / ORT_DYLIB_PATH: not set".to_string(),
        });
        found.extend(explicit);

        let mut local = Vec::new();
        let mut passed_over = Vec::new();
        for dir in &places.project_dirs {
            for flavour in ["gpu", "cpu"] {
                let folder = dir.join(flavour);
                let cuda_plugin = folder.join(CUDA_PLUGIN);
                match find_library_in(&folder) {
                    Some(path) if flavour == "gpu" && cuda_plugin.exists() => {
                        match crate::library::loads(&cuda_plugin) {
                            Ok(()) => {
                                local.push(format!("{}: found", path.display()));
                                found.push(Candidate {
                                    path,
                                    source: Source::ProjectLocal,
                                });
                            }
                            Err(e) => {
                                let why = format!(
                                    "{}: found, passed over: its CUDA provider cannot load here ({e})",
                                    path.display()
                                );
                                local.push(why.clone());
                                passed_over.push(why);
                            }
                        }
                    }
                    Some(path) => {
                        local.push(format!("{}: found", path.display()));
                        found.push(Candidate {
                            path,
                            source: Source::ProjectLocal,
                        });
                    }
                    None => local.push(format!("{}: none", folder.display())),
                }
            }
        }
        steps.push(format!("2. {}: {}", Source::ProjectLocal, local.join("; ")));

        steps.push(match &places.python {
            None => format!("3. {}: not searched", Source::Python),
            Some(python) => match python_library(python) {
                Ok(path) => {
                    let line = format!("3. {}: {}", Source::Python, path.display());
                    found.push(Candidate {
                        path,
                        source: Source::Python,
                    });
                    line
                }
                Err(reason) => format!("3. {}: {reason}", Source::Python),
            },
        });

        let chosen = found.into_iter().next();
        Discovery {
            steps,
            chosen,
            passed_over,
        }
    }

    /// The steps in one line, for error messages.
    pub fn summary(&self) -> String {
        self.steps.join("; ")
    }
}

/// The ONNX Runtime library in `dir`: the most specific file name wins
/// (`libonnxruntime.so.1.32.0` over its links `libonnxruntime.so.1` and `libonnxruntime.so`);
/// provider plugins (`libonnxruntime_providers_*.so`) are not it.
pub fn find_library_in(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| {
            name.starts_with("libonnxruntime.")
                && (name.contains(".so") || name.ends_with(".dylib"))
        })
        .collect();
    names.sort_by_key(|name| (name.len(), name.clone()));
    names.pop().map(|name| dir.join(name))
}

/// Asks `python` where its `onnxruntime` package is, without importing it (an import would load
/// the library into that Python process and take much longer).
fn python_library(python: &OsString) -> Result<PathBuf, String> {
    const FIND: &str = "import importlib.util as u; s = u.find_spec('onnxruntime'); \
                        print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')";
    let out = Command::new(python)
        .args(["-c", FIND])
        .output()
        .map_err(|e| format!("{} cannot run: {e}", python.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            python.to_string_lossy(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let package = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if package.is_empty() {
        return Err("no onnxruntime package installed".into());
    }
    let capi = Path::new(&package).join("capi");
    find_library_in(&capi).ok_or_else(|| format!("{}: no libonnxruntime in it", capi.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"").unwrap();
    }

    #[test]
    fn the_most_specific_library_name_wins_and_plugins_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so",
            "libonnxruntime.so.1",
            "libonnxruntime.so.1.32.0",
            "libonnxruntime_providers_shared.so",
            "VERSION",
        ] {
            touch(dir.path(), name);
        }
        assert_eq!(
            find_library_in(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.32.0"))
        );
        let empty = tempfile::tempdir().unwrap();
        touch(empty.path(), "libonnxruntime_providers_cuda.so");
        assert_eq!(find_library_in(empty.path()), None);
    }

    #[test]
    fn an_explicit_path_wins_even_when_a_local_copy_exists() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cpu")).unwrap();
        touch(&dir.path().join("cpu"), "libonnxruntime.so.1.32.0");
        let places = SearchPlaces {
            flag: None,
            env: Some("/nowhere/libonnxruntime.so".into()),
            project_dirs: vec![dir.path().to_path_buf()],
            python: None,
        };
        let d = Discovery::run(&places);
        assert_eq!(
            d.chosen,
            Some(Candidate {
                path: "/nowhere/libonnxruntime.so".into(),
                source: Source::Env
            })
        );
        assert_eq!(d.steps.len(), 3);
        assert!(
            d.steps[1].contains("cpu/libonnxruntime.so.1.32.0: found"),
            "{:?}",
            d.steps
        );
        assert!(d.steps[1].contains("gpu: none"), "{:?}", d.steps);
    }

    #[test]
    fn the_gpu_install_is_preferred_over_the_cpu_one() {
        let dir = tempfile::tempdir().unwrap();
        for flavour in ["cpu", "gpu"] {
            std::fs::create_dir(dir.path().join(flavour)).unwrap();
            touch(&dir.path().join(flavour), "libonnxruntime.so.1");
        }
        let places = SearchPlaces {
            flag: None,
            env: None,
            project_dirs: vec![dir.path().to_path_buf()],
            python: None,
        };
        let chosen = Discovery::run(&places).chosen.unwrap();
        assert_eq!(chosen.path, dir.path().join("gpu/libonnxruntime.so.1"));
        assert_eq!(chosen.source, Source::ProjectLocal);
    }

    #[test]
    fn a_gpu_install_whose_cuda_provider_cannot_load_is_passed_over() {
        let dir = tempfile::tempdir().unwrap();
        for flavour in ["cpu", "gpu"] {
            std::fs::create_dir(dir.path().join(flavour)).unwrap();
            touch(&dir.path().join(flavour), "libonnxruntime.so.1");
        }
        // An empty file: the loader rejects it as it rejects a plugin whose CUDA is missing.
        touch(&dir.path().join("gpu"), CUDA_PLUGIN);
        let places = SearchPlaces {
            flag: None,
            env: None,
            project_dirs: vec![dir.path().to_path_buf()],
            python: None,
        };
        let d = Discovery::run(&places);
        assert_eq!(
            d.chosen.unwrap().path,
            dir.path().join("cpu/libonnxruntime.so.1")
        );
        assert!(
            d.steps[1].contains("passed over: its CUDA provider cannot load here"),
            "{:?}",
            d.steps
        );
    }

    #[test]
    fn nothing_found_reports_every_step() {
        let places = SearchPlaces {
            flag: None,
            env: None,
            project_dirs: vec![PathBuf::from("/nonexistent-chipbench")],
            python: Some("/nonexistent-chipbench/python3".into()),
        };
        let d = Discovery::run(&places);
        assert_eq!(d.chosen, None);
        assert!(d.steps[0].ends_with("not set"));
        assert!(d.steps[2].contains("cannot run"), "{:?}", d.steps);
    }
}
