//! chipbench installed anywhere: the binary alone, run from a folder without `models/` and with a
//! home of its own, generates the built-in suite into its cache, checks it, and reuses it; and
//! the completions, manual page and version it prints for an installation.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

mod common;
use common::printed;

/// A folder to run in (no `models/` there) and a home with nothing in it.
struct Elsewhere {
    work: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Elsewhere {
    fn new() -> Elsewhere {
        Elsewhere {
            work: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Where the suite lands by default: `$HOME/.cache/chipbench/suite`.
    fn suite(&self) -> PathBuf {
        self.home.path().join(".cache/chipbench/suite")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_chipbench"))
            .args(args)
            .current_dir(self.work.path())
            .env("HOME", self.home.path())
            .env_remove("XDG_CACHE_HOME")
            .env_remove("CHIPBENCH_CACHE_DIR")
            .output()
            .expect("the binary runs")
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn committed(file: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(file),
    )
    .unwrap()
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// The acceptance test: `bench --quick -b tract` and `models` from an empty folder with
/// an empty home, the second run from the cache the first filled.
#[test]
fn the_binary_alone_benchmarks_from_an_empty_folder_and_reuses_its_cache() {
    let place = Elsewhere::new();
    let first = place.run(&["bench", "--quick", "-b", "tract", "--quiet"]);
    assert_eq!(first.status.code(), Some(0), "{}", printed(&first));
    let said = stderr(&first);
    assert!(
        said.contains("generated the built-in suite in")
            && said.contains(&place.suite().display().to_string()),
        "{}",
        printed(&first)
    );
    for file in [
        "mlp.onnx",
        "mobilenet-v2-0.5.onnx",
        "resnet-mini.onnx",
        "bert-tiny.onnx",
    ] {
        assert_eq!(
            std::fs::read(place.suite().join(file)).unwrap(),
            committed(file),
            "{file}"
        );
    }
    // The run went where a run goes, in the folder it was started from.
    let runs: Vec<_> = std::fs::read_dir(place.work.path().join("bench-results"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("run.json").is_file())
        .collect();
    assert_eq!(runs.len(), 1, "{}", printed(&first));
    let run: serde_json::Value =
        serde_json::from_slice(&std::fs::read(runs[0].path().join("run.json")).unwrap()).unwrap();
    let cells = run["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 4, "{run:#}");
    assert!(cells.iter().all(|c| c["status"] == "ok"), "{run:#}");

    let stamp = modified(&place.suite().join("mlp.onnx"));
    let listed = place.run(&["models"]);
    assert_eq!(listed.status.code(), Some(0), "{}", printed(&listed));
    assert!(
        !stderr(&listed).contains("generated"),
        "{}",
        printed(&listed)
    );
    for name in ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"] {
        assert!(stdout(&listed).contains(name), "{}", printed(&listed));
    }
    assert!(
        stdout(&listed).contains(&place.suite().display().to_string()),
        "models says where the suite is:\n{}",
        printed(&listed)
    );
    let again = place.run(&["bench", "--quick", "-b", "tract", "-m", "mlp", "--quiet"]);
    assert_eq!(again.status.code(), Some(0), "{}", printed(&again));
    assert!(!stderr(&again).contains("generated"), "{}", printed(&again));
    assert_eq!(
        modified(&place.suite().join("mlp.onnx")),
        stamp,
        "the cached file was rewritten"
    );
}

#[test]
fn a_damaged_cached_file_is_found_by_its_hash_and_regenerated() {
    let place = Elsewhere::new();
    let cache = place.home.path().join("elsewhere");
    let cache_arg = cache.to_str().unwrap();
    let first = place.run(&["models", "--cache-dir", cache_arg]);
    assert_eq!(first.status.code(), Some(0), "{}", printed(&first));
    let damaged = cache.join("suite/resnet-mini.onnx");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[5000] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();

    // The variable names the same root as the option did.
    let repaired = Command::new(env!("CARGO_BIN_EXE_chipbench"))
        .arg("models")
        .current_dir(place.work.path())
        .env("CHIPBENCH_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert_eq!(repaired.status.code(), Some(0), "{}", printed(&repaired));
    let said = stderr(&repaired);
    assert!(
        said.contains(&damaged.display().to_string())
            && said.contains("expected")
            && said.contains("regenerated"),
        "{}",
        printed(&repaired)
    );
    assert!(!said.contains("mlp.onnx"), "only the damaged file: {said}");
    assert_eq!(
        std::fs::read(&damaged).unwrap(),
        committed("resnet-mini.onnx")
    );
    assert!(!place.suite().exists(), "--cache-dir was not followed");
}

/// A `models/` folder in the working directory, and `--suite`, still win over the cache.
#[test]
fn a_local_models_folder_and_suite_option_win_over_the_cache() {
    let place = Elsewhere::new();
    let generated = place.run(&["models", "generate", "--out", "models"]);
    assert_eq!(generated.status.code(), Some(0), "{}", printed(&generated));
    let listed = place.run(&["models"]);
    assert_eq!(listed.status.code(), Some(0), "{}", printed(&listed));
    assert!(
        stdout(&listed).contains("models in models;"),
        "{}",
        printed(&listed)
    );
    let other = place.work.path().join("models");
    let given = place.run(&["models", "--suite", other.to_str().unwrap()]);
    assert_eq!(given.status.code(), Some(0), "{}", printed(&given));
    assert!(!place.suite().exists(), "the cache was filled anyway");
}

#[test]
fn completions_and_the_manual_page_generate_and_mention_bench() {
    let place = Elsewhere::new();
    for shell in ["bash", "zsh", "fish"] {
        let o = place.run(&["completions", shell]);
        assert_eq!(o.status.code(), Some(0), "{shell}: {}", printed(&o));
        assert!(stdout(&o).contains("bench"), "{shell}: {}", printed(&o));
        assert!(stdout(&o).contains("cache-dir"), "{shell}: {}", printed(&o));
    }
    let page = place.run(&["man"]);
    assert_eq!(page.status.code(), Some(0), "{}", printed(&page));
    assert!(
        stdout(&page).starts_with(".ie") || stdout(&page).contains(".TH chipbench"),
        "{}",
        printed(&page)
    );
    assert!(stdout(&page).contains("bench"), "{}", printed(&page));
    assert!(
        !stdout(&page).contains("worker"),
        "the internal command is not documented"
    );

    let pages = place.work.path().join("man1");
    let o = place.run(&["man", "--out", pages.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let bench_page = std::fs::read_to_string(pages.join("chipbench-bench.1")).unwrap();
    assert!(bench_page.contains("quick"), "{bench_page}");
}

#[test]
fn the_version_names_the_commit_and_the_backends() {
    let o = Elsewhere::new().run(&["--version"]);
    assert_eq!(o.status.code(), Some(0), "{}", printed(&o));
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("chipbench {}\n", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("\ncommit: "), "{text}");
    assert!(text.contains("backends: tract, ort, wgpu"), "{text}");
}
