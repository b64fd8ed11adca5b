//! Whole models: every model of the built-in suite on wgpu against tract on the same seeded
//! inputs, the suite's fp16 variant, device timestamps and the operator profile, the single
//! error for unsupported operators, and the reason given when there is no adapter.

mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use chipbench_backend_wgpu::WgpuBackend;
use chipbench_core::spec::random_inputs;
use chipbench_core::{Backend, DType, ModelSource, SessionOptions};
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::DataType;
use chipbench_optimize::suite::Suite;
use common::{agreement, backend, device, model, run_both, spec, weight};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

/// Suite model `name` on wgpu against tract: cosine >= 0.9999, max relative error <= 1e-3.
fn suite_model_matches_tract(name: &str) {
    let Some(d) = device() else { return };
    let suite = Suite::load(&models_dir()).expect("models/suite.toml");
    let m = suite.model(name).expect("a suite model");
    let bound = m.bound_inputs().expect("suite dims bind every input");
    let started = Instant::now();
    let (actual, expected) = run_both(&d, &m.path(&models_dir()), &m.inputs, &bound, None);
    eprintln!(
        "{name}: load + first inference on {} and tract in {:?}",
        d.name,
        started.elapsed()
    );
    for (i, (a, e)) in actual.iter().zip(&expected).enumerate() {
        let agree = agreement(a, e);
        assert!(
            agree.cosine >= 0.9999 && agree.max_rel_err <= 1e-3,
            "{name} output {i}: {agree:?}"
        );
    }
}

#[test]
fn mlp_matches_tract() {
    suite_model_matches_tract("mlp");
}

#[test]
fn mobilenet_matches_tract() {
    suite_model_matches_tract("mobilenet-v2-0.5");
}

#[test]
fn resnet_matches_tract() {
    suite_model_matches_tract("resnet-mini");
}

#[test]
fn bert_matches_tract() {
    suite_model_matches_tract("bert-tiny");
}

/// The fp16 variant (f16 weights and activations, f32 at the graph's edges) against the fp32
/// model on tract. f16 keeps 11 significant bits, so the tolerance is wider than for f32.
#[test]
fn fp16_variant_stays_close_to_the_fp32_reference() {
    let Some(d) = device() else { return };
    let suite = Suite::load(&models_dir()).expect("models/suite.toml");
    let m = suite.model("resnet-mini").expect("resnet-mini");
    let bound = m.bound_inputs().expect("bound inputs");
    let fp32 = m.path(&models_dir());
    let source = chipbench_optimize::model::load(&fp32).expect("resnet-mini loads");
    let recipe: chipbench_optimize::variants::recipe::Recipe =
        "fp16".parse().expect("the fp16 recipe");
    let no_runs = |_: &chipbench_optimize::ModelProto, _: &[Vec<chipbench_core::Tensor>]| {
        Err::<Vec<Vec<chipbench_core::Tensor>>, String>("fp16 needs no calibration".into())
    };
    let derived = chipbench_optimize::variants::derive(
        &chipbench_optimize::variants::Source {
            model: &source,
            model_dir: None,
            specs: &m.inputs,
            bound: &bound,
        },
        &recipe,
        &Default::default(),
        &mut { no_runs },
    )
    .expect("fp16 variant");
    let dir = tempfile::tempdir().expect("temporary folder");
    let fp16 = dir.path().join("resnet-mini-fp16.onnx");
    chipbench_optimize::model::save(&derived.model, &fp16).expect("variant written");

    let session = backend()
        .load_session(
            &ModelSource {
                path: fp16.clone(),
                inputs: bound.clone(),
            },
            &d,
            &SessionOptions::default(),
        )
        .expect("fp16 variant loads");
    let storage = chipbench_core::Session::settings(&session)
        .get("f16")
        .cloned()
        .unwrap_or_default();
    eprintln!("f16 on {}: {storage}", d.name);
    let (actual, expected) = run_both(&d, &fp16, &m.inputs, &bound, Some(&fp32));
    for (a, e) in actual.iter().zip(&expected) {
        let agree = agreement(a, e);
        assert!(
            agree.cosine >= 0.999 && agree.max_rel_err <= 3e-2,
            "fp16 variant: {agree:?}"
        );
    }
}

/// Device time where the adapter has timestamp queries: positive, below the host's end-to-end
/// time, none discarded; absent (and said so) where it has not.
#[test]
fn device_time_and_operator_profile() {
    let Some(d) = device() else { return };
    let suite = Suite::load(&models_dir()).expect("models/suite.toml");
    let m = suite.model("mlp").expect("mlp");
    let bound = m.bound_inputs().expect("bound");
    let source = ModelSource {
        path: m.path(&models_dir()),
        inputs: bound.clone(),
    };
    let options = SessionOptions {
        profile: true,
        ..Default::default()
    };
    let mut session = backend().load(&source, &d, &options).expect("mlp loads");
    let inputs = random_inputs(&m.inputs, &bound, 1, 0);
    let has_timestamps = session.settings()["device_time"].starts_with("GPU timestamp");
    for _ in 0..3 {
        let t = Instant::now();
        session.run(&inputs).expect("runs");
        let host = t.elapsed();
        match session.last_device_time() {
            Some(device) => {
                assert!(has_timestamps);
                assert!(
                    !device.is_zero() && device <= host,
                    "device {device:?}, host {host:?}"
                );
            }
            None => assert!(!has_timestamps || session.discarded_device_times() > 0),
        }
    }
    if has_timestamps {
        assert_eq!(session.discarded_device_times(), 0);
        let profile = session
            .operator_profile()
            .expect("profile")
            .expect("profiled by timestamps");
        assert!(!profile.is_empty());
        let shares: f64 = profile.iter().map(|o| o.share).sum();
        assert!((shares - 1.0).abs() < 1e-9, "shares sum to {shares}");
        assert!(
            profile.iter().any(|o| o.op_type.starts_with("MatMul")),
            "{profile:?}"
        );
    } else {
        assert!(session.operator_profile().expect("profile").is_none());
    }
}

/// `wgpu.timestamps=off`: no timestamp queries, so no device time and no profile, and the
/// settings say why; a bad value is refused at load.
#[test]
fn timestamps_can_be_turned_off() {
    let Some(d) = device() else { return };
    let suite = Suite::load(&models_dir()).expect("models/suite.toml");
    let m = suite.model("mlp").expect("mlp");
    let bound = m.bound_inputs().expect("bound");
    let source = ModelSource {
        path: m.path(&models_dir()),
        inputs: bound.clone(),
    };
    let set = |value: &str| SessionOptions {
        profile: true,
        settings: [("wgpu.timestamps".to_string(), value.to_string())].into(),
        ..Default::default()
    };
    let mut session = backend().load(&source, &d, &set("off")).expect("mlp loads");
    session
        .run(&random_inputs(&m.inputs, &bound, 1, 0))
        .expect("runs");
    assert_eq!(session.last_device_time(), None);
    assert!(session.operator_profile().expect("profile").is_none());
    assert_eq!(
        session.settings()["device_time"],
        "off (wgpu.timestamps=off)"
    );
    let err = backend()
        .load(&source, &d, &set("sometimes"))
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("wgpu.timestamps") && err.contains("expected on or off"),
        "{err}"
    );
}

#[test]
fn a_model_with_unsupported_operators_fails_with_one_error_naming_them_all() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("unsupported");
    g.input("x", DataType::Float, &["1", "1", "4", "6"]);
    g.input("grid", DataType::Float, &["1", "3", "3", "2"]);
    let idx = g.initializer(chipbench_optimize::onnx::TensorProto::from_i64(
        "idx",
        &[1, 1, 1, 6],
        &[0, 3, 1, 2, 0, 1],
    ));
    let updates = weight(&mut g, "updates", &[1, 1, 1, 6], 4);
    g.node(
        "ScatterElements",
        "scatter",
        &["x", &idx, &updates],
        vec![chipbench_optimize::onnx::AttributeProto::int("axis", 2)],
    );
    g.node("GridSample", "sample", &["x", "grid"], vec![]);
    g.node("Relu", "relu", &["sample"], vec![]);
    g.output("scatter", DataType::Float, &["?"]);
    g.output("relu", DataType::Float, &["?"]);
    let m = model(
        g,
        vec![
            spec("x", DType::F32, &[1, 1, 4, 6]),
            spec("grid", DType::F32, &[1, 3, 3, 2]),
        ],
    );
    let err = backend()
        .load(&m.source(), &d, &SessionOptions::default())
        .err()
        .expect("load fails")
        .to_string();
    assert!(err.contains(&m.path.display().to_string()), "{err}");
    assert!(err.contains("ScatterElements"), "{err}");
    assert!(err.contains("GridSample"), "{err}");
    assert!(
        !err.contains("Relu"),
        "a supported operator is not listed: {err}"
    );
}

#[test]
fn mismatched_inputs_are_errors_not_panics() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("tiny");
    g.input("x", DataType::Float, &["2", "3"]);
    let w = weight(&mut g, "w", &[3, 4], 1);
    g.node("MatMul", "y", &["x", &w], vec![]);
    g.output("y", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 3])]);
    let mut session = backend()
        .load(&m.source(), &d, &SessionOptions::default())
        .expect("loads");
    let wrong = random_inputs(
        &[spec("x", DType::F32, &[3, 2])],
        &m.bound()
            .iter()
            .map(|i| {
                let mut i = i.clone();
                i.shape = vec![3, 2];
                i
            })
            .collect::<Vec<_>>(),
        1,
        0,
    );
    let err = session
        .run(&wrong)
        .expect_err("wrong shape is refused")
        .to_string();
    assert!(err.contains("input 'x'"), "{err}");
    let err = session
        .prepare_inputs(&wrong)
        .expect_err("wrong shape is refused ahead too")
        .to_string();
    assert!(err.contains("input 'x'"), "{err}");
    let missing = ModelSource {
        path: m.path.with_file_name("absent.onnx"),
        inputs: m.bound(),
    };
    let err = backend()
        .load(&missing, &d, &SessionOptions::default())
        .err()
        .expect("no file")
        .to_string();
    assert!(
        err.contains("absent.onnx") && err.contains("no such file"),
        "{err}"
    );
}

/// Inputs converted once into their device layout give the outputs `run` gives (f32 for mlp, i64
/// narrowed to i32 for bert-tiny), and stay usable for any number of inferences; a session of
/// another model refuses them.
#[test]
fn prepared_inputs_give_the_outputs_of_run() {
    let Some(d) = device() else { return };
    let suite = Suite::load(&models_dir()).expect("models/suite.toml");
    let mut sessions = Vec::new();
    for name in ["mlp", "bert-tiny"] {
        let m = suite.model(name).expect("a suite model");
        let bound = m.bound_inputs().expect("bound");
        let source = ModelSource {
            path: m.path(&models_dir()),
            inputs: bound.clone(),
        };
        let mut session = backend()
            .load(&source, &d, &SessionOptions::default())
            .expect("loads");
        let inputs = random_inputs(&m.inputs, &bound, 2, 0);
        let prepared = session.prepare_inputs(&inputs).expect("prepared");
        let expected = session.run(&inputs).expect("runs");
        for _ in 0..2 {
            assert_eq!(
                session.run_prepared(&prepared).expect("runs"),
                expected,
                "{name}"
            );
        }
        assert!(
            session
                .timed_window()
                .starts_with("wgpu from inputs checked and converted once before warm-up"),
            "{}",
            session.timed_window()
        );
        sessions.push((session, prepared));
    }
    let (mlp, bert) = sessions.split_at_mut(1);
    let err = mlp[0]
        .0
        .run_prepared(&bert[0].1)
        .expect_err("another model's inputs")
        .to_string();
    assert!(
        err.contains("prepared by a session of another model"),
        "{err}"
    );
}

/// No adapter is not an error of the run: the backend says why it is unavailable.
#[test]
fn no_adapter_gives_a_reason() {
    let backend = WgpuBackend::with_backends(wgpu::Backends::empty());
    let reason = backend.devices().expect_err("no backend, no adapter").0;
    assert!(reason.contains("no graphics adapter"), "{reason}");
}
