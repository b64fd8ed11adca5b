//! The CPU's compute ceilings measured through a backend: the fastest run of square `MatMul`
//! (fp32) and `MatMulInteger` (u8 x i8 -> i32) models (`chipbench_optimize::matmul` writes
//! them), beside the memory and cache bandwidths of [`crate::roofline`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chipbench_core::result::CpuCache;
use chipbench_core::{
    Backend, DType, Device, ModelSource, Result, SessionOptions, Tensor, TensorInfo,
};

use crate::roofline::{self, DeviceCeilings};

/// The square matmul models of one size.
pub struct MatmulModels {
    pub size: usize,
    pub fp32: PathBuf,
    pub int8: PathBuf,
}

/// How long the CPU's ceilings are measured.
pub struct CpuBudget {
    /// Timing of each model (at least 5 runs).
    pub per_model: Duration,
    /// The size of each STREAM triad array (several times the last-level cache).
    pub array_bytes: usize,
    /// STREAM triad repetitions.
    pub repetitions: usize,
    /// Timing of each cache level and kernel.
    pub per_cache_level: Duration,
}

/// The CPU's ceilings at `threads` threads: the best rate of `models` through `backend` on
/// `device`, the STREAM triad and each cache level's bandwidth.
pub fn measure_cpu(
    backend: &dyn Backend,
    device: &Device,
    models: &[MatmulModels],
    threads: usize,
    budget: &CpuBudget,
    caches: &[CpuCache],
) -> Result<DeviceCeilings> {
    let mut fp32 = (0.0, String::new());
    let mut int8 = (0.0, String::new());
    for m in models {
        let n = m.size;
        let ops = 2.0 * (n * n * n) as f64;
        let info = |dtype| {
            vec![TensorInfo {
                name: "a".into(),
                dtype,
                shape: vec![n, n],
            }]
        };
        let f32_input = Tensor::from_vec(vec![n, n], vec![0.25f32; n * n])?;
        let u8_input = Tensor::from_vec(
            vec![n, n],
            (0..n * n).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )?;
        let (rate, how) = fastest(
            backend,
            device,
            &m.fp32,
            info(DType::F32),
            f32_input,
            threads,
            ops,
            budget.per_model,
        )?;
        if rate > fp32.0 {
            fp32 = (rate, format!("{how}; best at MatMul {n}x{n}x{n} fp32"));
        }
        let (rate, how) = fastest(
            backend,
            device,
            &m.int8,
            info(DType::U8),
            u8_input,
            threads,
            ops,
            budget.per_model,
        )?;
        if rate > int8.0 {
            int8 = (
                rate,
                format!("{how}; best at MatMulInteger {n}x{n}x{n} u8 x i8 -> i32"),
            );
        }
    }
    let sizes: Vec<String> = models.iter().map(|m| m.size.to_string()).collect();
    let memory = roofline::stream_triad(threads, budget.array_bytes, budget.repetitions);
    let cache_bandwidth = roofline::cache_bandwidths(caches, threads, budget.per_cache_level);
    let mut provenance = BTreeMap::new();
    provenance.insert(
        "fp32_gflops".into(),
        format!("{} (sizes tried: {})", fp32.1, sizes.join(", ")),
    );
    provenance.insert(
        "int8_gops".into(),
        format!("{} (sizes tried: {})", int8.1, sizes.join(", ")),
    );
    provenance.insert(
        "fp16_gflops".into(),
        "not measured: tract has no fp16 matmul path worth a ceiling on this CPU".into(),
    );
    provenance.insert("memory_gbs".into(), memory.method);
    provenance.insert("cache_bandwidth".into(), roofline::CACHE_METHOD.into());
    Ok(DeviceCeilings {
        backend: backend.name().into(),
        device: device.id.clone(),
        device_name: device.name.clone(),
        device_kind: device.kind,
        threads: Some(threads),
        fp32_gflops: Some(fp32.0),
        fp16_gflops: None,
        int8_gops: Some(int8.0),
        memory_gbs: Some(memory.gbs),
        cache_bandwidth,
        provenance,
    })
}

/// Operations per second of the fastest run (a ceiling: noise only slows a run down) after
/// three warm-up runs, timing for `budget` and at least 5 runs.
#[allow(clippy::too_many_arguments)]
fn fastest(
    backend: &dyn Backend,
    device: &Device,
    path: &Path,
    inputs: Vec<TensorInfo>,
    data: Tensor,
    threads: usize,
    ops: f64,
    budget: Duration,
) -> Result<(f64, String)> {
    let source = ModelSource {
        path: path.to_path_buf(),
        inputs,
    };
    let options = SessionOptions {
        threads: Some(threads),
        ..SessionOptions::default()
    };
    let mut session = backend.load(&source, device, &options)?;
    // Converted once, so that each timed run is the engine's (see `Session::timed_window`).
    let data = session.prepare_inputs(&[data])?;
    for _ in 0..3 {
        session.run_prepared(&data)?;
    }
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while (start.elapsed() < budget || runs < 5) && runs < 500 {
        let t = Instant::now();
        session.run_prepared(&data)?;
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    let how = format!(
        "measured: {} on {} (threads: {}), fastest of {runs} runs by the host monotonic clock, outputs retrieved; \
         one run holds {}",
        backend.name(),
        device.name,
        session.threads(),
        session.timed_window()
    );
    Ok((ops / best / 1e9, how))
}
