//! An `ort:cpu` cell measured by the runner carries what ONNX Runtime ran with: threads, settings,
//! node placement and (`--profile`) the top operators, next to accuracy against tract.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chipbench_core::result::{ModelRecord, Status};
use chipbench_runner::{MeasureSettings, ModelUnderTest, StopRule, Sweep, Target, WarmUp};

#[test]
fn a_runner_cell_carries_threads_settings_placement_and_profile() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let tract = chipbench_backend_tract::TractBackend;
    let (source, specs) = common::suite_model("resnet-mini");
    let model = ModelUnderTest {
        record: ModelRecord {
            name: "resnet-mini".into(),
            ..Default::default()
        },
        path: source.path.clone(),
        specs,
        bound: source.inputs.clone(),
        fixed_inputs: BTreeMap::new(),
        real: None,
        reference: source.path.clone(),
        decoding: None,
    };
    let settings = MeasureSettings {
        warmup: WarmUp {
            min_iterations: 2,
            min_duration: Duration::ZERO,
        },
        stop: StopRule {
            min_iterations: 10,
            min_duration: Duration::ZERO,
            max_duration: Duration::from_millis(300),
            ..StopRule::default()
        },
        accuracy_samples: 2,
        operator_times: true,
        backend_settings: BTreeMap::from([("ort.spinning".to_string(), "off".to_string())]),
        ..MeasureSettings::default()
    };
    let reference = Target {
        backend: &tract,
        device: common::device(&tract, "cpu"),
    };
    let mut sweep = Sweep::new(settings, vec![reference]);
    let target = Target {
        backend: &ort,
        device: common::device(&ort, "cpu"),
    };
    let cell = sweep.run_cell(&model, &target, Some(2));
    assert_eq!(cell.status, Status::Ok, "{:?}", cell.error);
    assert_eq!(cell.backend.threads, Some(2));
    assert_eq!(cell.backend.settings["ort.spinning"], "off");
    assert_eq!(cell.backend.version, ort.runtime().unwrap().library.version);
    let placement = cell.placement.as_ref().expect("placement");
    assert_eq!(placement[0].provider, "CPUExecutionProvider");
    let profile = cell.profile.as_ref().expect("profile");
    let warmup = cell.warmup.as_ref().unwrap().iterations;
    assert_eq!(profile.runs, 1 + warmup + cell.samples_ms.len() as u64);
    assert_eq!(profile.by_provider.len(), 1);
    assert_eq!(profile.by_provider[0].provider, "CPUExecutionProvider");
    assert!((profile.by_provider[0].share - 1.0).abs() < 1e-9);
    assert_eq!(
        profile.top_operators.len(),
        chipbench_runner::PROFILE_TOP_OPERATORS
    );
    assert!(profile.top_operators[0].total_ms > 0.0);
    assert!(cell.provenance["latency_ms"].contains("profiler was on"));
    assert!(
        cell.provenance["latency_ms"]
            .contains("ort:cpu: ONNX Runtime's Session::Run on input values made once"),
        "{}",
        cell.provenance["latency_ms"]
    );
    assert!(
        cell.provenance["profile"].starts_with("measured: the engine's own per-operator profiler")
    );
    assert_eq!(cell.device_latency_ms, None);
    let accuracy = cell.accuracy.as_ref().expect("accuracy against tract");
    assert!(accuracy.cosine >= 0.99999, "{accuracy:?}");
}
