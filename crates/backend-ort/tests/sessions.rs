//! What an `ort:cpu` session really runs with: threads as ONNX Runtime started them, settings as
//! applied, and the profile parsed into operators. Only one test here profiles, so the check that
//! no trace file is left behind sees no other test's file.

mod common;

use std::collections::BTreeMap;

use chipbench_core::{Backend, SessionOptions};

fn options(threads: Option<usize>, settings: &[(&str, &str)]) -> SessionOptions {
    SessionOptions {
        threads,
        profile: false,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

#[test]
fn the_thread_count_is_what_onnx_runtime_started() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let (source, specs) = common::suite_model("mlp");
    let inputs = &common::samples(&source, &specs, 1)[0];
    let mut reference = None;
    for n in [1, 2, 3] {
        let mut s = ort.load(&source, &cpu, &options(Some(n), &[])).unwrap();
        let settings = s.settings();
        println!("requested {n}: threads {} {settings:?}", s.threads());
        // The calling thread plus the pool's workers, as ONNX Runtime asked for them.
        assert_eq!(s.threads(), n);
        assert_eq!(settings["ort.worker_threads_started"], (n - 1).to_string());
        assert_eq!(settings["ort.intra_threads"], n.to_string());
        let out = s.run(inputs).unwrap();
        match &reference {
            None => reference = Some(out),
            Some(r) => assert_eq!(r[0].to_f64_vec().len(), out[0].to_f64_vec().len()),
        }
    }
    // Parallel execution adds an inter-op pool.
    let s = ort
        .load(
            &source,
            &cpu,
            &options(
                Some(2),
                &[
                    ("ort.execution_mode", "parallel"),
                    ("ort.inter_threads", "3"),
                ],
            ),
        )
        .unwrap();
    println!("parallel 2+3: threads {} {:?}", s.threads(), s.settings());
    assert_eq!(s.settings()["ort.worker_threads_started"], "3");
    assert_eq!(s.threads(), 4);
    // Left to ONNX Runtime, the count is whatever it chose, still counted.
    let s = ort.load(&source, &cpu, &options(None, &[])).unwrap();
    assert_eq!(s.settings()["ort.intra_threads"], "ORT default");
    assert!(s.threads() >= 1);
}

#[test]
fn settings_are_applied_and_recorded() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let (source, specs) = common::suite_model("resnet-mini");
    let inputs = &common::samples(&source, &specs, 1)[0];
    let given = [
        ("ort.spinning", "off"),
        ("ort.arena", "off"),
        ("ort.opt_level", "disable"),
    ];
    let mut plain = ort.load(&source, &cpu, &options(Some(1), &[])).unwrap();
    let mut tuned = ort.load(&source, &cpu, &options(Some(1), &given)).unwrap();
    let settings: BTreeMap<String, String> = tuned.settings();
    for (k, v) in given {
        assert_eq!(settings[k], v);
    }
    assert_eq!(plain.settings()["ort.spinning"], "on");
    assert_eq!(settings["ort.provider"], "CPUExecutionProvider");
    assert!(settings["ort.library"].contains("libonnxruntime"));
    // Without graph optimization the same model gives the same numbers.
    let (a, b) = (plain.run(inputs).unwrap(), tuned.run(inputs).unwrap());
    let diff = a[0]
        .to_f64_vec()
        .iter()
        .zip(b[0].to_f64_vec())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-3, "{diff}");

    let bad = ort
        .load(&source, &cpu, &options(Some(1), &[("ort.spining", "off")]))
        .err()
        .unwrap()
        .to_string();
    assert!(bad.contains("--set ort.spining: unknown key"), "{bad}");
    assert!(bad.starts_with(&source.path.display().to_string()), "{bad}");
}

#[test]
fn the_profile_names_the_operators_that_took_the_time() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let (source, specs) = common::suite_model("mobilenet-v2-0.5");
    let inputs = &common::samples(&source, &specs, 1)[0];
    let mut s = ort
        .load(
            &source,
            &cpu,
            &SessionOptions {
                threads: Some(1),
                profile: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(s.settings()["ort.profiling"], "on");
    for _ in 0..3 {
        s.run(inputs).unwrap();
    }
    let ops = s.operator_profile().unwrap().expect("a profile");
    for o in ops.iter().take(5) {
        println!(
            "{:<12} {:<40} {:<22} {:8.3} ms {:5.1} %",
            o.op_type,
            o.node,
            o.provider,
            o.total_ms,
            100.0 * o.share
        );
    }
    assert!(ops.len() >= 20, "{} operators", ops.len());
    assert!(ops.iter().all(|o| o.provider == "CPUExecutionProvider"));
    assert!(
        ops.windows(2).all(|w| w[0].total_ms >= w[1].total_ms),
        "sorted, slowest first"
    );
    assert!((ops.iter().map(|o| o.share).sum::<f64>() - 1.0).abs() < 1e-9);
    // A convolutional network spends most of its time in convolutions.
    let conv: f64 = ops
        .iter()
        .filter(|o| o.op_type.contains("Conv"))
        .map(|o| o.share)
        .sum();
    assert!(conv > 0.5, "convolutions take {conv} of the time");
    // Asking again returns the same profile; later runs are not profiled.
    s.run(inputs).unwrap();
    assert_eq!(s.operator_profile().unwrap().unwrap(), ops);
    let mut plain = ort.load(&source, &cpu, &SessionOptions::default()).unwrap();
    assert_eq!(plain.operator_profile().unwrap(), None);
    // The trace file is read and removed, also when a profiling session ends unread.
    let unread = ort
        .load(
            &source,
            &cpu,
            &SessionOptions {
                profile: true,
                ..Default::default()
            },
        )
        .unwrap();
    drop(unread);
    assert_eq!(profile_files(), Vec::<String>::new());
}

fn profile_files() -> Vec<String> {
    let prefix = format!("chipbench-ort-profile-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

#[test]
fn inputs_that_change_between_runs_are_the_ones_computed_on() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let (source, specs) = common::suite_model("bert-tiny");
    let samples = common::samples(&source, &specs, 2);
    let mut s = ort.load(&source, &cpu, &options(Some(1), &[])).unwrap();
    let (a, b) = (s.run(&samples[0]).unwrap(), s.run(&samples[1]).unwrap());
    assert_ne!(a, b);
    // Back to the first buffers, then copies of them at new addresses: the same results.
    assert_eq!(s.run(&samples[0]).unwrap(), a);
    assert_eq!(s.run(&samples[0].clone()).unwrap(), a);
    assert_eq!(s.run(&samples[1].clone()).unwrap(), b);
}

#[test]
fn prepared_inputs_give_the_outputs_of_run_and_the_window_says_what_it_holds() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    for m in &common::suite().models {
        let (source, specs) = common::suite_model(&m.name);
        let samples = common::samples(&source, &specs, 2);
        let mut s = ort.load(&source, &cpu, &options(Some(1), &[])).unwrap();
        let a = s.prepare_inputs(&samples[0]).unwrap();
        let b = s.prepare_inputs(&samples[1]).unwrap();
        let expected = s.run(&samples[0]).unwrap();
        assert_eq!(s.run_prepared(&a).unwrap(), expected, "{}", m.name);
        assert_eq!(
            s.run_prepared(&b).unwrap(),
            s.run(&samples[1]).unwrap(),
            "{}",
            m.name
        );
        // The prepared values hold copies: the caller's tensors may go.
        drop(samples);
        assert_eq!(s.run_prepared(&a).unwrap(), expected, "{}", m.name);
        assert!(
            s.timed_window().starts_with(
                "ONNX Runtime's Session::Run on input values made once before warm-up"
            ),
            "{}",
            s.timed_window()
        );
        let e = s
            .run_prepared(&chipbench_core::PreparedInputs::host(&[]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "inference failed: the inputs were not prepared by an ONNX Runtime session"
        );
    }
}

#[test]
fn inputs_that_do_not_fit_the_model_are_errors_naming_the_input() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let (source, _) = common::suite_model("mlp");
    let bind = |name: &str, dtype: chipbench_core::DType, shape: Vec<usize>| {
        let source = chipbench_core::ModelSource {
            path: source.path.clone(),
            inputs: vec![chipbench_core::TensorInfo {
                name: name.into(),
                dtype,
                shape,
            }],
        };
        ort.load(&source, &cpu, &options(Some(1), &[]))
            .err()
            .expect("refused")
            .to_string()
    };
    use chipbench_core::DType::{F32, I64};
    assert_eq!(
        bind("pixels", F32, vec![1, 784]),
        "input 'pixels': the model has no such input (it has [\"input\"])"
    );
    assert_eq!(
        bind("input", I64, vec![1, 784]),
        "input 'input': the model declares f32, the input is bound as i64"
    );
    assert_eq!(
        bind("input", F32, vec![1, 785]),
        "input 'input': the model declares shape [-1, 784], the input is bound as [1, 785]"
    );
    let missing = chipbench_core::ModelSource {
        path: source.path.clone(),
        inputs: Vec::new(),
    };
    let e = ort
        .load(&missing, &cpu, &options(Some(1), &[]))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        e,
        "input 'input': the model needs this input but no shape was bound"
    );
    let nowhere = chipbench_core::ModelSource {
        path: "/nonexistent/m.onnx".into(),
        inputs: Vec::new(),
    };
    let e = ort
        .load(&nowhere, &cpu, &options(Some(1), &[]))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(e, "/nonexistent/m.onnx: no such file");
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07garbage that is not a model").unwrap();
    let e = ort
        .load(
            &chipbench_core::ModelSource {
                path: corrupt.clone(),
                inputs: Vec::new(),
            },
            &cpu,
            &options(Some(1), &[]),
        )
        .err()
        .unwrap()
        .to_string();
    println!("{e}");
    assert!(
        e.starts_with(&format!("{}: ", corrupt.display())) && !e.contains('\n'),
        "{e}"
    );
}
