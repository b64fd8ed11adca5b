//! `chipbench roofline`: measures this host's ceilings — peak fp32 and int8 matmul throughput
//! through a backend (tract, on generated MatMul / MatMulInteger models) and memory bandwidth
//! (STREAM triad) — and stores them with the host fingerprint under
//! `bench-results/roofline/<fingerprint>.json`, where `chipbench bench` finds them. With
//! `--project`, prints the roofline lower bounds of the suite's models on the catalog chips.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chipbench_backend_wgpu::{MatmulKernel, Precision as WgpuPrecision, WgpuBackend};
use chipbench_core::result::{Projections, RunResult};
use chipbench_core::{Backend, Device, DeviceKind};
use chipbench_optimize::suite::Suite;
use chipbench_optimize::{ModelStats, infer_shapes};
use chipbench_probe::catalog::{self, Precision};
use chipbench_probe::ceilings::{self, CpuBudget, MatmulModels};
use chipbench_probe::projection::{self, Workload};
use chipbench_probe::roofline::{self, Ceilings, DeviceCeilings, SCHEMA};
use clap::Args;

use crate::cmd::backends::{self, EngineArgs};
use crate::cmd::models;
use crate::hardware::RESULTS_DIR;
use crate::{Outcome, UsageError};

#[derive(Args)]
pub struct RooflineArgs {
    /// CPU thread counts to measure at (default: 1 and the physical cores); `chipbench bench`
    /// bounds a cell with the ceilings of its own thread count.
    #[arg(long, value_delimiter = ',', value_name = "N[,N...]")]
    threads: Vec<usize>,
    /// Smaller problems and shorter timing, for smoke tests (ceilings come out lower).
    #[arg(long)]
    quick: bool,
    /// Where to store the ceilings (default: bench-results/roofline/<host fingerprint>.json).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print the roofline lower bounds of models on the catalog chips instead of measuring.
    #[arg(long)]
    project: bool,
    /// With --project: the model variants of this run.json (default: the built-in suite, each
    /// model at fp32, fp16 and int8).
    #[arg(long, value_name = "RUN_JSON", requires = "project")]
    run: Option<PathBuf>,
    /// Folder of the built-in suite (default: ./models, else the one generated in the cache).
    #[arg(long, value_name = "DIR")]
    suite: Option<PathBuf>,
    /// Also measure software GPU adapters (Mesa lavapipe: a GPU API run by the CPU), at small
    /// sizes; by default their cells are bounded by the CPU's ceilings.
    #[arg(long)]
    software_adapters: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engines: EngineArgs,
}

pub fn run(args: RooflineArgs) -> anyhow::Result<Outcome> {
    if args.project {
        project(&args)
    } else {
        measure(&args)
    }
}

fn measure(args: &RooflineArgs) -> anyhow::Result<Outcome> {
    if args.threads.contains(&0) {
        return Err(UsageError("--threads must be at least 1".into()).into());
    }
    let (host, devices) = crate::cmd::devices::probe_host(&args.engines);
    let mut threads = args.threads.clone();
    if threads.is_empty() {
        threads = vec![1, host.physical_cores.unwrap_or(host.logical_cores)];
    }
    threads.dedup();
    let registry = backends::registry(&args.engines);
    let tract = registry
        .iter()
        .find(|b| b.name() == "tract")
        .context("the tract backend is missing")?;
    let cpu = tract
        .devices()
        .map_err(|r| anyhow::anyhow!("tract is unavailable: {r}"))?
        .into_iter()
        .next()
        .context("tract has no device")?;
    // The ceiling is the best rate over several sizes: no single shape gets a kernel's peak.
    let sizes: &[usize] = if args.quick {
        &[256, 512]
    } else {
        &[256, 512, 1024]
    };
    let llc = host
        .caches
        .iter()
        .map(|c| c.size_bytes as usize)
        .max()
        .unwrap_or(32 << 20);
    let budget = CpuBudget {
        per_model: Duration::from_millis(if args.quick { 200 } else { 1000 }),
        array_bytes: (4 * llc).max(32 << 20),
        repetitions: if args.quick { 3 } else { 10 },
        // Many short repetitions per cache level and kernel within this time.
        per_cache_level: Duration::from_millis(if args.quick { 60 } else { 300 }),
    };

    let dir = std::env::temp_dir().join(format!("chipbench-roofline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let models: anyhow::Result<Vec<MatmulModels>> = sizes
        .iter()
        .map(|&size| {
            let (fp32, int8) = chipbench_optimize::matmul::write(&dir, size)?;
            Ok(MatmulModels { size, fp32, int8 })
        })
        .collect();
    let mut measured = Vec::new();
    let outcome = models.and_then(|m| {
        for &t in &threads {
            if !args.json {
                eprintln!("measuring the CPU at {t} thread(s)...");
            }
            measured.push(ceilings::measure_cpu(
                tract.as_ref(),
                &cpu,
                &m,
                t,
                &budget,
                &host.caches,
            )?);
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;

    let wgpu = WgpuBackend::default();
    let mut skipped = Vec::new();
    for device in wgpu.devices().unwrap_or_default() {
        let software = device.kind == DeviceKind::SoftwareRasterizer;
        if device.kind == DeviceKind::Cpu || (software && !args.software_adapters) {
            skipped.push(format!(
                "{}: not measured: a software rasterizer runs on the CPU, so its cells are bounded by the CPU's \
                 ceilings (--software-adapters measures it)",
                device.name
            ));
            continue;
        }
        if !args.json {
            eprintln!("measuring {}...", device.name);
        }
        let sizes: &[usize] = if software {
            &[64, 128]
        } else if args.quick {
            &[512, 1024]
        } else {
            &[512, 1024, 2048]
        };
        measured.push(gpu_ceilings(
            &wgpu,
            &device,
            sizes,
            if args.quick { 5 } else { 20 },
        ));
    }
    let _ = devices;
    let ceilings = Ceilings {
        schema: SCHEMA.into(),
        measured_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        host,
        devices: measured,
    };
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| roofline::path_for(Path::new(RESULTS_DIR), &ceilings.host.fingerprint));
    ceilings.save(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&ceilings)?);
        return Ok(Outcome::Success);
    }
    println!(
        "{:<10} {:>7}  {:>14}  {:>13}  {:>12}  cache GB/s",
        "device", "threads", "fp32 GFLOP/s", "int8 GOP/s", "memory GB/s"
    );
    let g = |v: Option<f64>| v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into());
    for d in &ceilings.devices {
        let caches: Vec<String> = d
            .cache_bandwidth
            .iter()
            .map(|l| format!("{} {:.0}", l.level, l.gbs))
            .collect();
        println!(
            "{:<10} {:>7}  {:>14}  {:>13}  {:>12}  {}",
            format!("{}:{}", d.backend, d.device),
            d.threads.map(|t| t.to_string()).unwrap_or_default(),
            g(d.fp32_gflops),
            g(d.int8_gops),
            g(d.memory_gbs),
            caches.join(", ")
        );
    }
    for note in skipped {
        println!("wgpu     {note}");
    }
    println!(
        "\nmeasured on this host: compute = 2 x N^3 / fastest run, best over N = {sizes:?}, of square MatMul \
         (fp32) and MatMulInteger (u8 x i8 -> i32) models through tract; memory = STREAM triad over 3 x {} MiB \
         arrays, and over half of each cache level.",
        budget.array_bytes >> 20
    );
    println!(
        "stored: {} (chipbench bench bounds each cell with it)",
        path.display()
    );
    Ok(Outcome::Success)
}

/// A GPU adapter's ceilings through the wgpu backend's micro-benchmarks: the best median rate
/// of its own tiled matmul kernel over `sizes` (fp32, and fp16 where the adapter has it), and
/// the bandwidth of a device-to-device copy.
fn gpu_ceilings(
    wgpu: &WgpuBackend,
    device: &Device,
    sizes: &[usize],
    runs: usize,
) -> DeviceCeilings {
    let mut provenance = BTreeMap::new();
    let mut best = |precision: WgpuPrecision, key: &str| -> Option<f64> {
        let mut top: Option<(f64, String)> = None;
        let mut failure = None;
        for &n in sizes {
            match wgpu.matmul_throughput(device, MatmulKernel::Tiled, precision, n, runs) {
                Ok(t) if top.as_ref().is_none_or(|(g, _)| t.gflops > *g) => {
                    top = Some((
                        t.gflops,
                        format!(
                            "{}; the backend's tiled kernel, median of {} runs, best at {n}x{n}x{n}",
                            t.clock.describe(),
                            t.runs
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => failure = Some(e.to_string()),
            }
        }
        let sizes: Vec<String> = sizes.iter().map(|s| s.to_string()).collect();
        match (top, failure) {
            (Some((gflops, how)), _) => {
                provenance.insert(
                    key.to_string(),
                    format!("{how} (sizes tried: {})", sizes.join(", ")),
                );
                Some(gflops)
            }
            (None, reason) => {
                provenance.insert(
                    key.to_string(),
                    format!("not measured: {}", reason.unwrap_or_default()),
                );
                None
            }
        }
    };
    let fp32 = best(WgpuPrecision::F32, "fp32_gflops");
    let fp16 = best(WgpuPrecision::F16, "fp16_gflops");
    let copy_bytes: u64 = if device.kind == DeviceKind::SoftwareRasterizer {
        16 << 20
    } else {
        256 << 20
    };
    let memory = match wgpu.copy_bandwidth(device, copy_bytes, runs) {
        Ok(c) => {
            provenance.insert(
                "memory_gbs".into(),
                format!(
                    "{}; a compute-shader copy of {} MiB, bytes read + written, median of {} runs",
                    c.clock.describe(),
                    c.bytes >> 20,
                    c.runs
                ),
            );
            Some(c.gb_per_s)
        }
        Err(e) => {
            provenance.insert("memory_gbs".into(), format!("not measured: {e}"));
            None
        }
    };
    provenance.insert(
        "int8_gops".into(),
        "not measured: the wgpu backend has no int8 matmul kernel".into(),
    );
    DeviceCeilings {
        backend: "wgpu".into(),
        device: device.id.clone(),
        device_name: device.name.clone(),
        device_kind: device.kind,
        threads: None,
        fp32_gflops: fp32,
        fp16_gflops: fp16,
        int8_gops: None,
        memory_gbs: memory,
        cache_bandwidth: Vec::new(),
        provenance,
    }
}

fn project(args: &RooflineArgs) -> anyhow::Result<Outcome> {
    let projections = match &args.run {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let run: RunResult = serde_json::from_str(&text).map_err(|e| {
                UsageError(format!("{}: not a chipbench run.json: {e}", path.display()))
            })?;
            run.projections.ok_or_else(|| {
                UsageError(format!(
                    "{}: the run has no projections (no cell had known MACs)",
                    path.display()
                ))
            })?
        }
        None => suite_projections(args.suite.as_deref())?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&projections)?);
    } else {
        print!("{}", table(&projections));
    }
    Ok(Outcome::Success)
}

/// Every suite model at fp32, fp16 and int8: FLOPs from its MACs, weights at the precision's
/// element size, inputs and outputs as declared.
fn suite_projections(suite: Option<&Path>) -> anyhow::Result<Projections> {
    let dir = models::suite_dir(suite)?;
    let suite = Suite::load(&dir)?;
    let mut workloads = Vec::new();
    for m in &suite.models {
        let path = m.path(&dir);
        let proto = chipbench_optimize::model::load(&path)?;
        let bound = m
            .bound_inputs()
            .with_context(|| format!("{}: the suite's input shapes", m.name))?;
        let model_dir = chipbench_optimize::model::model_dir(&path);
        let stats = ModelStats::of(&proto, &bound, Some(model_dir));
        let Some(macs) = stats.macs else { continue };
        let inference = infer_shapes(&proto, &bound, Some(model_dir));
        let input_bytes: usize = bound
            .iter()
            .map(|t| t.shape.iter().product::<usize>() * t.dtype.size_bytes())
            .sum();
        let output_bytes: usize = proto
            .graph
            .iter()
            .flat_map(|g| &g.output)
            .filter_map(|o| {
                let shape = inference.shapes.get(o.name())?;
                let dtype = inference.elem_types.get(o.name())?.to_dtype()?;
                Some(shape.iter().product::<usize>() * dtype.size_bytes())
            })
            .sum();
        for precision in Precision::ALL {
            let weight_bytes = (stats.params * precision.element_bytes()) as f64;
            workloads.push(Workload {
                model: m.name.clone(),
                variant: format!(
                    "{} (weights at {} B/param)",
                    precision.label(),
                    precision.element_bytes()
                ),
                precision,
                flops: 2.0 * macs as f64,
                bytes: weight_bytes + (input_bytes + output_bytes) as f64,
                weight_bytes,
            });
        }
    }
    Ok(projection::project(&workloads, &catalog::catalog()?))
}

/// The projection table: labelled as a projection, never a measurement.
pub fn table(p: &Projections) -> String {
    let mut out = format!("{} — not measured\n", p.label);
    out.push_str(&format!(
        "{:<16} {:<28} {:<30} {:<15} {:>12} {:>7} {:>11}  note\n",
        "model", "variant", "chip", "class", "latency >=", "bound", "energy"
    ));
    for e in &p.entries {
        out.push_str(&format!(
            "{:<16} {:<28} {:<30} {:<15} {:>12} {:>7} {:>11}  {}\n",
            e.model,
            e.variant,
            e.chip,
            e.class,
            e.latency_lower_bound_ms
                .map(fmt_time)
                .unwrap_or_else(|| "-".into()),
            e.bound_by.as_deref().unwrap_or("-"),
            e.energy_j
                .map(|j| format!("{:.3} mJ", j * 1e3))
                .unwrap_or_else(|| "-".into()),
            e.note.as_deref().unwrap_or("")
        ));
    }
    out.push_str(&format!("\n{}\n", p.method));
    out
}

fn fmt_time(ms: f64) -> String {
    if ms >= 1.0 {
        format!("{ms:.3} ms")
    } else {
        format!("{:.3} us", ms * 1e3)
    }
}
