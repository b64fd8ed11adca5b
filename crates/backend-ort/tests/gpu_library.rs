//! The GPU build of ONNX Runtime (`scripts/setup-ort.sh --gpu`, or CHIPBENCH_ORT_GPU_LIB), alone
//! in its test binary because a process loads one library. Where CUDA cannot load, the CUDA and
//! TensorRT providers are not offered and the reason is the loader's message; where it can (an
//! NVIDIA machine), every suite model on `ort:cuda` and `ort:tensorrt` agrees with tract.
//! Skipped when no GPU build is installed.

mod common;

use std::path::PathBuf;

use chipbench_backend_ort::{OrtBackend, SearchPlaces};
use chipbench_backend_tract::TractBackend;
use chipbench_core::{Backend, Device, DeviceKind, SessionOptions};

fn gpu_library() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHIPBENCH_ORT_GPU_LIB") {
        return Some(path.into());
    }
    let dir = common::models_dir().parent()?.join(".ort/gpu");
    chipbench_backend_ort::discovery::find_library_in(&dir)
}

#[test]
fn the_gpu_build_offers_cuda_and_tensorrt_only_where_they_register() {
    let Some(library) = gpu_library() else {
        eprintln!("skipped: no GPU build of ONNX Runtime (scripts/setup-ort.sh --gpu)");
        return;
    };
    let ort = OrtBackend::with_search(SearchPlaces {
        flag: Some(library.clone()),
        ..SearchPlaces::standard(None)
    });
    let runtime = ort.runtime().unwrap_or_else(|e| panic!("{e}"));
    for p in [
        "CUDAExecutionProvider",
        "TensorrtExecutionProvider",
        "CPUExecutionProvider",
    ] {
        assert!(
            runtime.providers.iter().any(|q| q == p),
            "{p} missing from {:?}",
            runtime.providers
        );
    }
    let ids: Vec<String> = ort.devices().unwrap().into_iter().map(|d| d.id).collect();
    let cuda_registers = runtime
        .registration
        .iter()
        .any(|(p, r)| p.id() == "cuda" && r.is_ok());
    println!(
        "{} {}: devices {ids:?}",
        library.display(),
        runtime.library.version
    );
    if !cuda_registers {
        assert_eq!(ids, ["cpu"]);
        for id in ["cuda", "tensorrt"] {
            let reason = ort.missing_device_reason(id).unwrap();
            println!("ort:{id}: {reason}");
            assert!(
                reason.contains("but registering it fails here: Failed to load library"),
                "{reason}"
            );
            assert!(
                reason.contains("cannot open shared object file"),
                "{reason}"
            );
            assert!(!reason.contains('\n'), "{reason}");
        }
        // Forced anyway, the session fails: it does not run on the CPU provider instead.
        let forced = Device {
            id: "cuda".into(),
            name: "CUDAExecutionProvider".into(),
            kind: DeviceKind::DiscreteGpu,
            note: None,
        };
        let (source, _) = common::suite_model("mlp");
        let e = ort
            .load(&source, &forced, &SessionOptions::default())
            .err()
            .expect("fails")
            .to_string();
        assert!(
            e.starts_with("CUDAExecutionProvider: Failed to load library"),
            "{e}"
        );
        return;
    }
    // An NVIDIA machine: the suite on the GPU providers, against tract.
    let tract = TractBackend;
    let tract_cpu = common::device(&tract, "cpu");
    for id in ["cuda", "tensorrt"] {
        let device = common::device(&ort, id);
        for m in &common::suite().models {
            let (source, specs) = common::suite_model(&m.name);
            let mut gpu = ort
                .load(&source, &device, &SessionOptions::default())
                .unwrap_or_else(|e| panic!("{id} {}: {e}", m.name));
            let mut reference = tract
                .load(&source, &tract_cpu, &SessionOptions::default())
                .unwrap();
            let placement = gpu.placement().unwrap();
            println!("ort:{id} {:<18} placement {placement:?}", m.name);
            assert!(
                placement
                    .iter()
                    .any(|p| p.provider == device.name && p.nodes > 0),
                "{placement:?}"
            );
            for inputs in common::samples(&source, &specs, 2) {
                let (ys, rs) = (gpu.run(&inputs).unwrap(), reference.run(&inputs).unwrap());
                for (y, r) in ys.iter().zip(&rs) {
                    let (y, r) = (y.to_f64_vec(), r.to_f64_vec());
                    let dot: f64 = y.iter().zip(&r).map(|(a, b)| a * b).sum();
                    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
                    let cosine = dot / (norm(&y) * norm(&r));
                    let max_err = y
                        .iter()
                        .zip(&r)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f64::max);
                    let rel = max_err / r.iter().map(|b| b.abs()).fold(0.0, f64::max);
                    println!(
                        "ort:{id} {:<18} cosine {cosine:.9} max rel err {rel:.2e}",
                        m.name
                    );
                    assert!(
                        cosine >= 0.99999 && rel <= 1e-4,
                        "ort:{id} {}: cosine {cosine}, rel {rel}",
                        m.name
                    );
                }
            }
        }
    }
}
