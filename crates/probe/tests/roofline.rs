//! Ceilings files, the bound they put on a cell, and projections onto catalog chips.

use std::collections::BTreeMap;

use chipbench_core::DeviceKind;
use chipbench_core::result::{CellRoofline, Host};
use chipbench_probe::catalog::{self, Precision};
use chipbench_probe::projection::{self, Workload};
use chipbench_probe::roofline::{self, Ceilings, DeviceCeilings, SCHEMA};

fn ceilings() -> Ceilings {
    let cpu = |threads, fp32| DeviceCeilings {
        backend: "tract".into(),
        device: "cpu".into(),
        device_name: "CPU (x86_64)".into(),
        device_kind: DeviceKind::Cpu,
        threads: Some(threads),
        fp32_gflops: Some(fp32),
        fp16_gflops: None,
        int8_gops: Some(fp32 * 2.0),
        memory_gbs: Some(20.0),
        cache_bandwidth: Vec::new(),
        provenance: BTreeMap::new(),
    };
    Ceilings {
        schema: SCHEMA.into(),
        host: Host {
            fingerprint: "00000000000000ff".into(),
            ..Host::default()
        },
        measured_at: "2026-11-28T12:00:00Z".into(),
        devices: vec![cpu(1, 50.0), cpu(2, 100.0)],
    }
}

fn cell(precision: &str, flops: f64, bytes: f64, latency_s: f64) -> CellRoofline {
    CellRoofline {
        precision: precision.into(),
        flops_per_inference: flops,
        bytes_per_inference: bytes,
        arithmetic_intensity: flops / bytes,
        achieved_gflops: flops / latency_s / 1e9,
        bound_gflops: None,
        bound_by: None,
        fraction_of_bound: None,
        ceilings: String::new(),
    }
}

#[test]
fn a_cell_is_bounded_by_the_ceilings_of_its_device_and_threads() {
    let c = ceilings();
    // 1 GFLOP on 10 MB: intensity 100, compute-bound at 2 threads (100 GFLOP/s).
    let mut r = cell("fp32", 1e9, 1e7, 0.02);
    roofline::bound_cell(
        &mut r,
        Some((&c, "x.json")),
        DeviceKind::Cpu,
        "CPU (x86_64)",
        Some(2),
    );
    assert_eq!(r.bound_gflops, Some(100.0));
    assert_eq!(r.bound_by.as_deref(), Some("compute"));
    assert!((r.fraction_of_bound.unwrap() - 0.5).abs() < 1e-12);
    assert!(r.ceilings.starts_with("measured: x.json"), "{}", r.ceilings);

    // Intensity 1: memory-bound at 20 GB/s.
    let mut r = cell("int8", 1e6, 1e6, 1e-3);
    roofline::bound_cell(
        &mut r,
        Some((&c, "x.json")),
        DeviceKind::Cpu,
        "CPU (x86_64)",
        Some(1),
    );
    assert_eq!(
        (r.bound_gflops, r.bound_by.as_deref()),
        (Some(20.0), Some("memory"))
    );

    let mut r = cell("fp32", 1e9, 1e7, 0.02);
    roofline::bound_cell(
        &mut r,
        Some((&c, "x.json")),
        DeviceKind::Cpu,
        "CPU (x86_64)",
        Some(8),
    );
    assert!(
        r.bound_gflops.is_none() && r.ceilings.contains("at 8 threads"),
        "{}",
        r.ceilings
    );
    let mut r = cell("fp16", 1e9, 1e7, 0.02);
    roofline::bound_cell(
        &mut r,
        Some((&c, "x.json")),
        DeviceKind::Cpu,
        "CPU (x86_64)",
        Some(2),
    );
    assert!(r.bound_gflops.is_none() && r.ceilings.contains("no fp16 compute ceiling"));
    let mut r = cell("fp32", 1e9, 1e7, 0.02);
    roofline::bound_cell(&mut r, None, DeviceKind::Cpu, "CPU (x86_64)", Some(2));
    assert!(r.ceilings.contains("run `chipbench roofline`"));
    let mut r = cell("fp32", 1e9, 1e7, 0.02);
    roofline::bound_cell(
        &mut r,
        Some((&c, "x.json")),
        DeviceKind::SoftwareRasterizer,
        "llvmpipe",
        None,
    );
    assert_eq!(
        r.bound_gflops,
        Some(100.0),
        "a software rasterizer is bounded by the whole CPU"
    );
}

#[test]
fn ceilings_files_round_trip_and_bad_ones_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = roofline::path_for(dir.path(), "00000000000000ff");
    assert!(path.ends_with("roofline/00000000000000ff.json"));
    ceilings().save(&path).unwrap();
    assert_eq!(Ceilings::load(&path).unwrap(), ceilings());
    std::fs::write(&path, "{ not json").unwrap();
    let err = Ceilings::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("00000000000000ff.json") && err.contains("not a chipbench roofline file"),
        "{err}"
    );
    let err = Ceilings::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.json"), "{err}");
}

#[test]
fn projections_are_roofline_lower_bounds_from_datasheet_figures() {
    let chips = catalog::catalog().unwrap();
    let work = |precision| Workload {
        model: "mlp".into(),
        variant: precision_variant(precision).into(),
        precision,
        flops: 2.0e9,
        bytes: 4.0e6,
        weight_bytes: 3.0e6,
    };
    let p = projection::project(&[work(Precision::Fp32), work(Precision::Int8)], &chips);
    assert_eq!(
        p.label,
        "projection (roofline lower bound from datasheet figures)"
    );
    assert_eq!(p.entries.len(), 2 * chips.len());
    let find = |chip: &str, precision: &str| {
        p.entries
            .iter()
            .find(|e| e.chip == chip && e.precision == precision)
            .unwrap()
    };
    let h100 = find("nvidia-h100-sxm", "fp32");
    // Compute: 2e9 / 67e12 = 29.85 µs; memory: 4e6 / 3.35e12 = 1.19 µs.
    let expected_ms = 2.0e9 / 67e12 * 1e3;
    assert!((h100.latency_lower_bound_ms.unwrap() - expected_ms).abs() < 1e-12);
    assert_eq!(h100.bound_by.as_deref(), Some("compute"));
    assert!((h100.energy_j.unwrap() - expected_ms / 1e3 * 700.0).abs() < 1e-12);
    let edge = find("google-edge-tpu", "fp32");
    assert!(
        edge.latency_lower_bound_ms.is_none()
            && edge
                .note
                .as_deref()
                .unwrap()
                .contains("no published fp32 peak")
    );
    let edge = find("google-edge-tpu", "int8");
    assert!(edge.note.as_deref().unwrap().contains("compute bound only"));
    assert!((edge.latency_lower_bound_ms.unwrap() - 2.0e9 / 4e12 * 1e3).abs() < 1e-12);
    let ascend = find("huawei-ascend-910b", "int8");
    assert!(
        ascend.latency_lower_bound_ms.is_none(),
        "no published figure, no projection"
    );
    for e in &p.entries {
        if let (Some(ms), Some(chip)) = (
            e.latency_lower_bound_ms,
            chips.iter().find(|c| c.id == e.chip),
        ) {
            let peak = chip
                .peak(Precision::from_label(&e.precision).unwrap())
                .unwrap()
                .ops_per_s;
            assert!(
                ms / 1e3 >= e.flops / peak * (1.0 - 1e-12),
                "{}: below its compute bound",
                e.chip
            );
        }
    }
}

fn precision_variant(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Fp16 => "fp16",
        Precision::Int8 => "int8-dynamic",
    }
}

#[test]
fn projections_charge_memory_only_beyond_the_chips_on_chip_memory() {
    let chips = catalog::catalog().unwrap();
    let work = |bytes: f64| Workload {
        model: "m".into(),
        variant: "fp32".into(),
        precision: Precision::Fp32,
        flops: 1.0e6,
        bytes,
        weight_bytes: bytes,
    };
    let p = projection::project(&[work(2.1e6), work(205e6)], &chips);
    let core = |bytes: f64| {
        p.entries
            .iter()
            .find(|e| e.chip == "generic-x86-server-core" && e.bytes == bytes)
            .unwrap()
    };
    // The suite's mlp (2.1 MB of weights) stays in a 105 MB cache: compute alone bounds it,
    // 1e6 / 0.128e12 s = 7.8 µs (the mlp measures 20-30 µs on the CI hosts' cores).
    let small = core(2.1e6);
    assert_eq!(small.bound_by.as_deref(), Some("compute"));
    assert!((small.latency_lower_bound_ms.unwrap() - 1.0e6 / 0.128e12 * 1e3).abs() < 1e-12);
    // 100 MB beyond the cache come from memory at 5.49 GB/s on every inference.
    let big = core(205e6);
    assert_eq!(big.bound_by.as_deref(), Some("memory"));
    assert!((big.latency_lower_bound_ms.unwrap() - 100e6 / 5.49e9 * 1e3).abs() < 1e-9);
    // A chip without a published on-chip size cannot be charged any memory traffic.
    let h100 = p
        .entries
        .iter()
        .find(|e| e.chip == "nvidia-h100-sxm" && e.bytes == 205e6)
        .unwrap();
    assert_eq!(h100.bound_by.as_deref(), Some("compute"));
    assert!(
        h100.note
            .as_deref()
            .unwrap()
            .contains("no published on-chip memory size")
    );
}

#[test]
fn a_cell_faster_than_its_own_chips_lower_bound_is_flagged() {
    use chipbench_core::DeviceKind;
    use chipbench_core::result::{BackendRecord, CellResult, LatencyStats, ModelRecord, Status};
    let chips = catalog::catalog().unwrap();
    let core = chips
        .iter()
        .find(|c| c.id == "generic-x86-server-core")
        .unwrap();
    let work = Workload {
        model: "m".into(),
        variant: "fp32".into(),
        precision: Precision::Fp32,
        flops: 1.28e6,
        bytes: 1e6,
        weight_bytes: 1e6,
    };
    // 1.28e6 FLOPs at 0.128 TFLOP/s per core: 10 µs on one core, 5 µs on two.
    let projections = projection::project(&[work], &chips);
    let cell = |threads, min_ms: f64| {
        let model = ModelRecord {
            name: "m".into(),
            variant: "fp32".into(),
            ..ModelRecord::default()
        };
        let backend = BackendRecord {
            name: "tract".into(),
            version: String::new(),
            device: "cpu".into(),
            device_name: "CPU".into(),
            device_kind: DeviceKind::Cpu,
            threads: Some(threads),
            settings: Default::default(),
        };
        let mut c = CellResult::not_run(model, backend, "single-stream", Status::Ok, String::new());
        c.latency_ms = Some(LatencyStats {
            n: 1,
            mean: min_ms,
            stddev: 0.0,
            min: min_ms,
            p50: min_ms,
            p90: min_ms,
            p95: min_ms,
            p99: min_ms,
            p999: min_ms,
            max: min_ms,
            median_ci95: [min_ms, min_ms],
        });
        c
    };
    let checks = projection::check(
        &projections,
        core,
        &[cell(1, 0.011), cell(2, 0.006), cell(1, 0.008)],
        2,
    );
    let found: Vec<(f64, bool)> = checks.iter().map(|c| (c.lower_bound_ms, c.holds)).collect();
    assert_eq!(checks.len(), 3);
    assert!((found[0].0 - 0.01).abs() < 1e-12 && found[0].1);
    assert!((found[1].0 - 0.005).abs() < 1e-12 && found[1].1);
    assert!(
        !found[2].1,
        "8 µs on one core beats a 10 µs lower bound: flagged"
    );
}
