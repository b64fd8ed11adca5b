//! Every suite model on `ort:cpu` computes what tract computes, on the suite's seeded inputs:
//! fp32 cosine similarity >= 0.99999 and max |y - r| / max |r| <= 1e-4 for every output.

mod common;

use chipbench_backend_tract::TractBackend;
use chipbench_core::{Backend, SessionOptions, Tensor};

const SAMPLES: u64 = 3;

fn agreement(ort: &Tensor, tract: &Tensor) -> (f64, f64) {
    let (y, r) = (ort.to_f64_vec(), tract.to_f64_vec());
    assert_eq!(y.len(), r.len());
    let dot: f64 = y.iter().zip(&r).map(|(a, b)| a * b).sum();
    let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
    let cosine = dot / (norm(&y) * norm(&r));
    let max_err = y
        .iter()
        .zip(&r)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let max_ref = r.iter().map(|b| b.abs()).fold(0.0, f64::max);
    (cosine, max_err / max_ref)
}

#[test]
fn every_suite_model_on_ort_cpu_agrees_with_tract() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    let tract = TractBackend;
    let tract_cpu = common::device(&tract, "cpu");
    let options = SessionOptions {
        threads: Some(1),
        ..Default::default()
    };
    let suite = common::suite();
    assert_eq!(suite.models.len(), 4, "the suite has four models");
    for m in &suite.models {
        let (source, specs) = common::suite_model(&m.name);
        let mut a = ort
            .load(&source, &cpu, &options)
            .unwrap_or_else(|e| panic!("{}: {e}", m.name));
        let mut b = tract.load(&source, &tract_cpu, &options).unwrap();
        assert_eq!(a.outputs().len(), b.outputs().len(), "{}", m.name);
        for inputs in common::samples(&source, &specs, SAMPLES) {
            let (ys, rs) = (a.run(&inputs).unwrap(), b.run(&inputs).unwrap());
            for ((y, r), info) in ys.iter().zip(&rs).zip(a.outputs()) {
                assert_eq!(y.shape(), r.shape(), "{} output {}", m.name, info.name);
                assert_eq!(
                    info.shape,
                    y.shape(),
                    "{}: the declared output shape",
                    m.name
                );
                let (cosine, rel) = agreement(y, r);
                println!(
                    "{:<18} {:<10} cosine {cosine:.9} max rel err {rel:.2e}",
                    m.name, info.name
                );
                assert!(
                    cosine >= 0.99999,
                    "{} {}: cosine {cosine}",
                    m.name,
                    info.name
                );
                assert!(
                    rel <= 1e-4,
                    "{} {}: max relative error {rel}",
                    m.name,
                    info.name
                );
            }
        }
    }
}

#[test]
fn every_suite_model_reports_its_placement_on_the_cpu_provider() {
    let Some(ort) = common::ort_or_skip() else {
        return;
    };
    let cpu = common::device(&ort, "cpu");
    for m in &common::suite().models {
        let (source, _) = common::suite_model(&m.name);
        let session = ort.load(&source, &cpu, &SessionOptions::default()).unwrap();
        let placement = session.placement().expect("ort reports a placement");
        assert_eq!(placement.len(), 1, "{}: {placement:?}", m.name);
        assert_eq!(placement[0].provider, "CPUExecutionProvider");
        assert!(placement[0].nodes >= 3, "{}: {placement:?}", m.name);
        println!("{:<18} {placement:?}", m.name);
    }
}
