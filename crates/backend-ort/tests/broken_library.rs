//! A library that reports a supported version but cannot hand out the API makes `ort` panic
//! while starting; the backend turns that into an error, reported the same way every time. Alone
//! in its test binary because a process gets one ONNX Runtime, and here it is the broken one.

use std::path::PathBuf;
use std::process::Command;

use chipbench_backend_ort::{OrtBackend, SearchPlaces, library};
use chipbench_core::Backend;

#[test]
fn a_library_that_cannot_start_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("fake.c");
    std::fs::write(
        &c,
        r#"
#include <stddef.h>
#include <stdint.h>
typedef struct { const void* (*GetApi)(uint32_t); const char* (*GetVersionString)(void); } OrtApiBase;
static const void* get_api(uint32_t version) { (void)version; return NULL; }
static const char* version_string(void) { return "1.32.0"; }
static const OrtApiBase base = { get_api, version_string };
const OrtApiBase* OrtGetApiBase(void) { return &base; }
"#,
    )
    .unwrap();
    let lib: PathBuf = dir.path().join("libonnxruntime.so.1.32.0");
    let status = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&c)
        .status()
        .expect("a C compiler (cc) is needed to build the fake library");
    assert!(status.success());
    // The panic inside `ort` is expected; keep the test output clean of its default report.
    std::panic::set_hook(Box::new(|_| {}));

    let backend = OrtBackend::with_search(SearchPlaces {
        flag: Some(lib.clone()),
        env: None,
        project_dirs: Vec::new(),
        python: None,
    });
    let reason = backend.devices().unwrap_err().0;
    assert!(
        reason.starts_with(&format!(
            "{}: ONNX Runtime failed to start: ",
            lib.display()
        )),
        "{reason}"
    );
    // The outcome is kept: asking again neither retries nor changes the answer.
    let again = library::runtime(&lib)
        .err()
        .expect("still an error")
        .to_string();
    assert_eq!(again, reason);
}
