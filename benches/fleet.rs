//! How long the fleet steps take at scale, against the targets of issue #13: making a plan of
//! 10,000 cells (routing, the split into shards, the id; then the file's bytes) under 1 s, and
//! merging 100 shard runs of 1,000 cells each (reading their run.json text, merging, writing the
//! fleet run's) under 5 s. The cells are generated: 1,000 models of varied MACs on 10 backend
//! devices, each shard's cells with full latency statistics and 20 raw samples. Each step runs 3
//! times; the median wall time (monotonic clock) is printed.
//!
//! Run: `cargo bench --bench fleet`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chipbench_core::DeviceKind;
use chipbench_core::result::{
    BackendRecord, CellResult, Host, ModelRecord, RunConfig, RunResult, SCHEMA, ShardRecord, Status,
};
use chipbench_harness::merge::{ShardRun, merge};
use chipbench_harness::plan::{PlannedCell, cell_id};
use chipbench_harness::shard::{FleetPlan, ShardCounts};

/// `models` models on 10 backend devices: 10 x `models` cells.
fn cells(models: usize) -> Vec<PlannedCell> {
    let mut cells = Vec::with_capacity(models * 10);
    for m in 0..models {
        let model = ModelRecord {
            name: format!("model-{m}"),
            path: format!("models/model-{m}.onnx"),
            sha256: format!("{m:064x}"),
            variant: "fp32".into(),
            recipe: None,
            params: Some(1_000_000),
            macs: Some((m as u64 * 7919) % 5_000 * 1_000_000),
            weight_bytes: None,
            file_bytes: None,
            derivation: None,
        };
        for b in 0..10 {
            let backend = BackendRecord {
                name: ["tract", "ort", "wgpu", "ort-trt", "ort-openvino"][b % 5].into(),
                version: "1".into(),
                device: if b < 5 {
                    "cpu".into()
                } else {
                    format!("gpu{b}")
                },
                device_name: "device".into(),
                device_kind: DeviceKind::Cpu,
                threads: None,
                settings: BTreeMap::new(),
            };
            cells.push(PlannedCell {
                id: cell_id(&model, &backend, "single-stream"),
                model: model.clone(),
                backend,
                scenario: None,
                not_run: None,
            });
        }
    }
    cells
}

fn plan(models: usize, shards: usize) -> FleetPlan {
    let counts = ShardCounts::parse(&[shards.to_string()]).unwrap();
    FleetPlan::new(
        cells(models),
        vec!["--quick".into()],
        false,
        vec![],
        &counts,
        "now".into(),
    )
    .unwrap()
}

/// Shard `k` as its host records it, as run.json text.
fn shard_json(plan: &FleetPlan, k: usize) -> String {
    let samples: Vec<f64> = (0..20).map(|i| 1.0 + i as f64 * 0.01).collect();
    let cells: Vec<CellResult> = plan
        .shard_cells(None, k)
        .map(|c| {
            let mut backend = c.cell.backend.clone();
            backend.threads = Some(8);
            let mut cell = CellResult::not_run(
                c.cell.model.clone(),
                backend,
                "single-stream",
                Status::Ok,
                String::new(),
            );
            cell.error = None;
            cell.latency_ms = chipbench_core::stats::summarize(&samples);
            cell.samples_ms = samples.clone();
            cell.throughput_per_s = Some(900.0);
            cell.provenance
                .insert("latency_ms".into(), "measured: host monotonic clock".into());
            cell
        })
        .collect();
    let run = RunResult {
        schema: SCHEMA.into(),
        run_id: format!("shard-{k}"),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_at: "2026-12-05T06:00:00Z".into(),
        finished_at: Some("2026-12-05T07:00:00Z".into()),
        interrupted: false,
        host: Host {
            hostname: format!("node{k}"),
            ..Host::default()
        },
        config: RunConfig::default(),
        cells,
        idle_baseline: None,
        projections: None,
        speed_checks: Vec::new(),
        peaks: Vec::new(),
        hosts: Vec::new(),
        shard: Some(ShardRecord {
            plan_id: plan.id.clone(),
            index: k,
            count: plan.shard_count(None),
            pool: None,
            host_label: None,
            source: "--shard".into(),
        }),
        fleet: None,
    };
    serde_json::to_string_pretty(&run).unwrap()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let planning = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                let plan = plan(1_000, 8);
                let bytes = serde_json::to_vec_pretty(&plan).unwrap();
                assert_eq!(plan.cells.len(), 10_000);
                std::hint::black_box(bytes);
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "plan of 10,000 cells in 8 shards (route, split, id, file bytes): {:.3} s (target < 1 s)",
        planning.as_secs_f64()
    );

    let plan = plan(10_000, 100);
    let texts: Vec<String> = (0..100).map(|k| shard_json(&plan, k)).collect();
    let megabytes = texts.iter().map(String::len).sum::<usize>() as f64 / 1e6;
    let merging = median(
        (0..3)
            .map(|_| {
                let start = Instant::now();
                let runs = texts
                    .iter()
                    .enumerate()
                    .map(|(k, t)| ShardRun {
                        source: format!("shard-{k}/run.json"),
                        run: serde_json::from_str(t).unwrap(),
                    })
                    .collect();
                let merged = merge(&plan, runs, false, "fleet".into()).unwrap();
                let bytes = serde_json::to_vec_pretty(&merged.run).unwrap();
                assert_eq!(merged.run.cells.len(), 100_000);
                assert!(merged.run.fleet.as_ref().unwrap().missing.is_empty());
                std::hint::black_box(bytes);
                start.elapsed()
            })
            .collect(),
    );
    println!(
        "merge of 100 runs x 1,000 cells ({megabytes:.0} MB of run.json; read, merge, write): {:.3} s (target < 5 s)",
        merging.as_secs_f64()
    );
}
