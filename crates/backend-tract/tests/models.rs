//! The tract backend on the built-in suite and on models with the traits of real exports.

use std::path::{Path, PathBuf};

use chipbench_backend_tract::TractBackend;
use chipbench_core::spec::random_inputs;
use chipbench_core::{
    Backend, DType, ModelSource, PreparedInputs, Session, SessionOptions, Tensor, TensorInfo,
};
use chipbench_optimize::{fixtures, model, suite::Suite};

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

fn load(
    path: &Path,
    inputs: Vec<TensorInfo>,
    threads: Option<usize>,
) -> chipbench_core::Result<Box<dyn Session>> {
    let backend = TractBackend;
    let device = backend.devices().unwrap().remove(0);
    let options = SessionOptions {
        threads,
        ..Default::default()
    };
    backend.load(
        &ModelSource {
            path: path.to_path_buf(),
            inputs,
        },
        &device,
        &options,
    )
}

fn f32_input(name: &str, shape: &[usize]) -> TensorInfo {
    TensorInfo {
        name: name.into(),
        dtype: DType::F32,
        shape: shape.to_vec(),
    }
}

/// Saves a fixture into a temp folder and loads it with the given inputs.
fn fixture(
    model: chipbench_optimize::onnx::ModelProto,
    inputs: Vec<TensorInfo>,
) -> (tempfile::TempDir, chipbench_core::Result<Box<dyn Session>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fixture.onnx");
    model::save(&model, &path).unwrap();
    let session = load(&path, inputs, None);
    (dir, session)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.as_slice::<f32>().unwrap().to_vec()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= 1e-5 * (1.0 + y.abs()))
}

#[test]
fn every_suite_model_runs_with_the_declared_output_shapes() {
    let suite = Suite::load(&models_dir()).unwrap();
    for m in &suite.models {
        let bound = m.bound_inputs().unwrap();
        let mut session = load(&m.path(&models_dir()), bound.clone(), Some(2)).unwrap();
        assert_eq!(session.threads(), 2, "{}", m.name);
        let outputs = session
            .run(&random_inputs(&m.inputs, &bound, 0, 0))
            .unwrap();
        assert_eq!(outputs.len(), session.outputs().len());
        for (t, info) in outputs.iter().zip(session.outputs()) {
            assert_eq!(t.shape(), info.shape.as_slice(), "{} {}", m.name, info.name);
            assert!(!t.has_non_finite(), "{}", m.name);
            let v = t.to_f64_vec();
            let rms = (v.iter().map(|x| x * x).sum::<f64>() / v.len() as f64).sqrt();
            assert!(
                rms > 1e-3 && rms < 1e3,
                "{}: output rms {rms} is degenerate",
                m.name
            );
        }
    }
}

#[test]
fn prepared_inputs_give_the_outputs_of_run_and_the_window_says_what_it_holds() {
    let suite = Suite::load(&models_dir()).unwrap();
    for m in &suite.models {
        let bound = m.bound_inputs().unwrap();
        let mut session = load(&m.path(&models_dir()), bound.clone(), Some(1)).unwrap();
        let (a, b) = (
            random_inputs(&m.inputs, &bound, 0, 0),
            random_inputs(&m.inputs, &bound, 0, 1),
        );
        let prepared_a = session.prepare_inputs(&a).unwrap();
        let prepared_b = session.prepare_inputs(&b).unwrap();
        let expected_a = session.run(&a).unwrap();
        assert_eq!(
            session.run_prepared(&prepared_a).unwrap(),
            expected_a,
            "{}",
            m.name
        );
        assert_eq!(
            session.run_prepared(&prepared_b).unwrap(),
            session.run(&b).unwrap(),
            "{}",
            m.name
        );
        // The prepared tensors are shared with each inference, never consumed by one.
        assert_eq!(
            session.run_prepared(&prepared_a).unwrap(),
            expected_a,
            "{}",
            m.name
        );
    }
    let m = suite.model("mlp").unwrap();
    let bound = m.bound_inputs().unwrap();
    let mut session = load(&m.path(&models_dir()), bound.clone(), None).unwrap();
    assert!(
        session
            .timed_window()
            .contains("inputs converted into tract tensors once before warm-up"),
        "{}",
        session.timed_window()
    );
    let host = random_inputs(&m.inputs, &bound, 0, 0);
    assert_eq!(
        session
            .run_prepared(&PreparedInputs::host(&host))
            .unwrap_err()
            .to_string(),
        "inference failed: the inputs were not prepared by a tract session"
    );
    let wrong = Tensor::from_vec(vec![1, 783], vec![0.0f32; 783]).unwrap();
    let e = session.prepare_inputs(&[wrong]).unwrap_err().to_string();
    assert!(e.starts_with("input 'input':"), "{e}");
    let e = session.prepare_inputs(&[]).unwrap_err().to_string();
    assert_eq!(e, "inference failed: 0 inputs given, the model takes 1");
}

#[test]
fn multithreaded_matmuls_give_the_single_thread_result() {
    let suite = Suite::load(&models_dir()).unwrap();
    let m = suite.model("mobilenet-v2-0.5").unwrap();
    let bound = m.bound_inputs().unwrap();
    let inputs = random_inputs(&m.inputs, &bound, 3, 0);
    let one = load(&m.path(&models_dir()), bound.clone(), Some(1))
        .unwrap()
        .run(&inputs)
        .unwrap();
    let two = load(&m.path(&models_dir()), bound, Some(2))
        .unwrap()
        .run(&inputs)
        .unwrap();
    assert!(close(&values(&one[0]), &values(&two[0])));
}

#[test]
fn wrong_shape_annotations_are_ignored_once_inputs_are_bound() {
    let (_dir, session) = fixture(
        fixtures::misdeclared_shapes(),
        vec![f32_input("x", &[2, 4])],
    );
    let mut session = session.unwrap();
    assert_eq!(
        session.outputs()[0].shape,
        vec![2, 4],
        "the real shape, not the declared [1, 4]"
    );
    let x = Tensor::from_vec(
        vec![2, 4],
        vec![1.0f32, 2.0, -3.0, 0.5, 0.0, 1.0, 0.0, -1.0],
    )
    .unwrap();
    let y = session.run(&[x]).unwrap();
    assert!(
        close(&values(&y[0]), &[3.0, 3.0, 0.0, 1.0, 1.0, 1.0, 0.5, 0.0]),
        "{:?}",
        values(&y[0])
    );
}

#[test]
fn weights_in_constant_nodes_are_used() {
    let (_dir, session) = fixture(fixtures::constant_weights(), vec![f32_input("x", &[1, 4])]);
    let y = session
        .unwrap()
        .run(&[Tensor::from_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap()])
        .unwrap();
    // y[j] = 2 (x[j] + x[3] + b[j]), b = [0.5, -0.5, 0]
    assert!(
        close(&values(&y[0]), &[11.0, 11.0, 14.0]),
        "{:?}",
        values(&y[0])
    );
}

#[test]
fn control_flow_runs_or_names_the_missing_operator() {
    let (_dir, session) = fixture(fixtures::if_model(), vec![f32_input("x", &[3])]);
    let mut session = session.unwrap();
    let y = session
        .run(&[Tensor::from_vec(vec![3], vec![1.0f32, 2.0, -1.0]).unwrap()])
        .unwrap();
    assert!(
        close(&values(&y[0]), &[2.0, 4.0, -2.0]),
        "then branch: {:?}",
        values(&y[0])
    );
    let y = session
        .run(&[Tensor::from_vec(vec![3], vec![-1.0f32, -2.0, 1.0]).unwrap()])
        .unwrap();
    assert!(
        close(&values(&y[0]), &[-2.0, -3.0, 0.0]),
        "else branch: {:?}",
        values(&y[0])
    );

    // tract 0.23 has no ONNX `Loop`: the model must fail to load with that operator named.
    let (_dir, session) = fixture(fixtures::loop_model(), vec![f32_input("x", &[1, 3])]);
    let error = session.err().expect("tract cannot run Loop").to_string();
    assert!(
        error.contains("operator not supported by tract: Loop"),
        "{error}"
    );

    let (_dir, session) = fixture(fixtures::lstm_model(), vec![f32_input("x", &[1, 1, 2])]);
    let y = session
        .unwrap()
        .run(&[Tensor::from_vec(vec![1, 1, 2], vec![1.0f32, 1.0]).unwrap()])
        .unwrap();
    assert!(
        (values(&y[1])[0] - 0.36961).abs() < 1e-4,
        "{:?}",
        values(&y[1])
    );
}

#[test]
fn an_unknown_operator_is_named_in_one_line() {
    let (dir, session) = fixture(fixtures::custom_op(), vec![f32_input("x", &[1, 4])]);
    let error = session.err().expect("loading fails").to_string();
    assert!(error.contains("Frobnicate"), "{error}");
    assert!(
        error.contains(&dir.path().join("fixture.onnx").display().to_string()),
        "{error}"
    );
    assert_eq!(error.lines().count(), 1, "{error}");
}

#[test]
fn bad_files_and_inputs_are_clear_errors() {
    let missing = load(Path::new("/nonexistent/model.onnx"), vec![], None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        missing.contains("/nonexistent/model.onnx") && missing.contains("no such file"),
        "{missing}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(models_dir().join("mlp.onnx")).unwrap();
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..1000]).unwrap();
    let error = load(&truncated, vec![f32_input("input", &[1, 784])], None)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("truncated.onnx"), "{error}");

    let mlp = models_dir().join("mlp.onnx");
    let error = load(&mlp, vec![f32_input("pixels", &[1, 784])], None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("pixels") && error.contains("no such input"),
        "{error}"
    );
    let error = load(&mlp, vec![f32_input("input", &[1, 100])], None)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("mlp.onnx"), "{error}");
}
