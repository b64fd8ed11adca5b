//! What a user sees when ONNX Runtime is missing, broken, too old, or lacks a provider: one-line
//! errors naming the file and the fix, and never an abort. The fake libraries are compiled with
//! the system C compiler (the one Rust links with), so no old ONNX Runtime has to be downloaded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use chipbench_backend_ort::{Error, OrtBackend, SearchPlaces, library};
use chipbench_core::{Backend, Device, DeviceKind, SessionOptions};

/// A shared library exporting `OrtGetApiBase` whose version string is `version` and whose
/// `GetApi` returns nothing, as an ONNX Runtime that lacks the requested API does.
const FAKE_ORT: &str = r#"
#include <stddef.h>
#include <stdint.h>
typedef struct { const void* (*GetApi)(uint32_t); const char* (*GetVersionString)(void); } OrtApiBase;
static const void* get_api(uint32_t version) { (void)version; return NULL; }
static const char* version_string(void) { return FAKE_VERSION; }
static const OrtApiBase base = { get_api, version_string };
const OrtApiBase* OrtGetApiBase(void) { return &base; }
"#;

fn compile(dir: &Path, name: &str, source: &str, defines: &[&str]) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).unwrap();
    let lib = dir.join(format!("{name}.so"));
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&c)
        .args(defines)
        .output()
        .expect("a C compiler (cc) is needed to build the fake libraries");
    assert!(
        out.status.success(),
        "cc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

fn nowhere() -> SearchPlaces {
    SearchPlaces {
        flag: None,
        env: None,
        project_dirs: vec![PathBuf::from("/nonexistent-chipbench/.ort")],
        python: None,
    }
}

#[test]
fn no_library_makes_the_backend_unavailable_with_the_steps_and_the_fix() {
    let backend = OrtBackend::with_search(nowhere());
    let reason = backend.devices().unwrap_err().0;
    assert!(
        reason.starts_with("libonnxruntime not found (1. --ort-lib / ORT_DYLIB_PATH: not set;"),
        "{reason}"
    );
    assert!(
        reason.contains("/nonexistent-chipbench/.ort/cpu: none"),
        "{reason}"
    );
    assert!(reason.contains("scripts/setup-ort.sh"), "{reason}");
    assert!(!reason.contains('\n'));
    assert_eq!(backend.version(), "(no library)");
    let steps = backend.discovery();
    assert_eq!(steps.len(), 4, "{steps:?}");
    assert!(
        steps[3].starts_with("not usable: libonnxruntime not found"),
        "{steps:?}"
    );
}

#[test]
fn an_explicit_path_to_a_missing_file_is_reported_not_replaced() {
    let backend = OrtBackend::with_search(SearchPlaces {
        flag: Some("/nonexistent-chipbench/libonnxruntime.so".into()),
        ..SearchPlaces::standard(None)
    });
    assert_eq!(
        backend.devices().unwrap_err().0,
        "/nonexistent-chipbench/libonnxruntime.so: no such file"
    );
}

#[test]
fn a_file_that_is_not_a_library_is_an_error_with_the_loader_message() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("libonnxruntime.so");
    std::fs::write(&text, "not a shared library\n").unwrap();
    let e = library::inspect(&text).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("{}: cannot be loaded: ", text.display())),
        "{e}"
    );
    // The dlopen message is kept: it is what tells a user why.
    assert!(
        e.contains("invalid ELF header") || e.contains("file too short"),
        "{e}"
    );

    let other = compile(
        dir.path(),
        "libnot_ort",
        "int chipbench_not_ort(void) { return 0; }",
        &[],
    );
    let e = library::inspect(&other).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: not an ONNX Runtime library (it has no OrtGetApiBase)",
            other.display()
        )
    );
}

#[test]
fn a_library_older_than_the_api_is_refused_before_ort_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let old = compile(
        dir.path(),
        "libonnxruntime_old",
        FAKE_ORT,
        &["-DFAKE_VERSION=\"1.22.1\""],
    );
    let e = library::inspect(&old).unwrap_err();
    let Error::Library { path, reason } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(path, &old);
    assert!(
        reason.starts_with("ONNX Runtime 1.22.1 is too old: chipbench needs 1.31 or newer"),
        "{reason}"
    );
    // Through the backend: unavailable with that reason, not an abort.
    let backend = OrtBackend::with_search(SearchPlaces {
        flag: Some(old.clone()),
        ..nowhere()
    });
    assert_eq!(backend.devices().unwrap_err().0, e.to_string());
    let new_enough = compile(
        dir.path(),
        "libonnxruntime_new",
        FAKE_ORT,
        &["-DFAKE_VERSION=\"1.32.0\""],
    );
    assert_eq!(library::inspect(&new_enough).unwrap().version, "1.32.0");
}

#[test]
fn a_provider_the_library_lacks_is_named_with_the_fix() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let runtime = ort.runtime().unwrap();
    if runtime
        .providers
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        eprintln!(
            "skipped: this library has CUDA ({}); the test needs a CPU-only build",
            runtime.library.path.display()
        );
        return;
    }
    let ids: Vec<String> = ort.devices().unwrap().into_iter().map(|d| d.id).collect();
    assert!(
        ids.contains(&"cpu".to_string()) && !ids.contains(&"cuda".to_string()),
        "{ids:?}"
    );
    let reason = ort.missing_device_reason("cuda").unwrap();
    assert!(
        reason.contains("has no CUDAExecutionProvider (it has: "),
        "{reason}"
    );
    // The fix: install the GPU build, or why the installed one was passed over.
    assert!(
        reason.contains("scripts/setup-ort.sh --gpu")
            || reason.contains("passed over: its CUDA provider cannot load here"),
        "{reason}"
    );
    let reason = ort.missing_device_reason("npu9").unwrap();
    assert!(
        reason.starts_with("unknown execution provider 'npu9' (known: cpu, cuda, tensorrt"),
        "{reason}"
    );
}

#[test]
fn registering_a_provider_the_library_lacks_fails_the_session_instead_of_running_on_the_cpu() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    if ort
        .runtime()
        .unwrap()
        .providers
        .iter()
        .any(|p| p == "CUDAExecutionProvider")
    {
        eprintln!("skipped: this library has CUDA; the test needs a CPU-only build");
        return;
    }
    // A device the selection would never offer, forced, as a stale or hand-written plan could.
    let cuda = Device {
        id: "cuda".into(),
        name: "CUDAExecutionProvider".into(),
        kind: DeviceKind::DiscreteGpu,
        note: None,
    };
    let (source, _) = common::suite_model("mlp");
    let e = ort
        .load(&source, &cuda, &SessionOptions::default())
        .err()
        .expect("the load fails")
        .to_string();
    assert!(e.starts_with("CUDAExecutionProvider: "), "{e}");
    assert!(
        e.contains("CUDA execution provider is not enabled in this build"),
        "{e}"
    );
}

#[test]
fn a_second_library_in_the_same_process_is_refused() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let loaded = &ort.runtime().unwrap().library.path;
    let dir = tempfile::tempdir().unwrap();
    let other = compile(
        dir.path(),
        "libonnxruntime_other",
        FAKE_ORT,
        &["-DFAKE_VERSION=\"1.32.0\""],
    );
    match library::runtime(&other) {
        Err(Error::AlreadyLoaded {
            loaded: l,
            requested,
        }) => {
            assert_eq!(&l, loaded);
            assert_eq!(requested, other);
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second library was accepted"),
    }
    // The library already loaded, under another name (its soname link), is the same one.
    if let Some(link) = loaded
        .parent()
        .map(|d| d.join("libonnxruntime.so.1"))
        .filter(|l| l.exists())
    {
        assert!(library::runtime(&link).is_ok());
    }
}
