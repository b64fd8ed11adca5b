//! Micro-benchmarks of an adapter, for the roofline: achieved matrix-product throughput of the
//! backend's own kernel (and of a naive kernel, as a baseline), and device-to-device copy
//! bandwidth. Durations come from GPU timestamp queries around the compute pass where the
//! adapter has them, else from the host clock around submission and completion (which then
//! includes submission overhead); every figure says which.

use std::time::Instant;

use chipbench_core::Device;

use crate::WgpuBackend;
use crate::adapter::Gpu;
use crate::error::WgpuError;
use crate::graph::{ElemType, Expr, Gemm, Kernel, Origin, Program, Step, View};
use crate::wgsl;

/// Which matrix-product kernel to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    /// The tiled kernel the backend runs models with.
    Tiled,
    /// One output per invocation, operands read straight from memory: the baseline.
    Naive,
}

/// Storage type of the operands; accumulation is always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    F32,
    F16,
}

/// The clock a duration was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamp queries at the start and end of the compute pass.
    GpuTimestamps,
    /// The host monotonic clock around submission and completion.
    HostWallClock,
}

impl Clock {
    pub fn describe(self) -> &'static str {
        match self {
            Clock::GpuTimestamps => "measured: GPU timestamp queries around the compute pass",
            Clock::HostWallClock => {
                "measured: host monotonic clock around submit and wait (includes submission overhead)"
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MatmulThroughput {
    pub kernel: MatmulKernel,
    pub precision: Precision,
    /// Square matrices of this side.
    pub size: usize,
    pub runs: usize,
    /// Median duration of one product, in seconds.
    pub median_s: f64,
    /// `2 * size³` floating-point operations per median duration, in units of 10⁹ per second.
    pub gflops: f64,
    pub clock: Clock,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CopyBandwidth {
    /// Bytes copied per run.
    pub bytes: u64,
    pub runs: usize,
    pub median_s: f64,
    /// Bytes read plus bytes written per median duration, in units of 10⁹ per second.
    pub gb_per_s: f64,
    pub clock: Clock,
}

impl WgpuBackend {
    /// Achieved throughput of a `size x size x size` product of seeded data: one warm-up run,
    /// then the median of `runs`.
    pub fn matmul_throughput(
        &self,
        device: &Device,
        kernel: MatmulKernel,
        precision: Precision,
        size: usize,
        runs: usize,
    ) -> Result<MatmulThroughput, WgpuError> {
        let gpu = self.gpu(device)?;
        let ty = match precision {
            Precision::F32 => ElemType::F32,
            Precision::F16 if gpu.f16 => ElemType::F16,
            Precision::F16 => {
                return Err(WgpuError::Gpu {
                    context: "f16 matrix product".into(),
                    reason: "the adapter lacks SHADER_F16".into(),
                });
            }
        };
        let (program, step) = square_product(size, ty);
        let shader = match kernel {
            MatmulKernel::Tiled => wgsl::shader(&program, &step),
            MatmulKernel::Naive => wgsl::naive_gemm_shader(&program, &step),
        }
        .map_err(|reason| WgpuError::Gpu {
            context: "matrix product kernel".into(),
            reason,
        })?;
        let pipeline = gpu.pipeline(&shader.source, "matmul benchmark")?;
        let bytes_per = if ty == ElemType::F16 { 2 } else { 4 };
        let operand = |seed: usize| -> Vec<u8> {
            let values = (0..size * size).map(move |i| ((i * 7 + seed) % 13) as f32 / 13.0 - 0.5);
            match ty {
                ElemType::F16 => values
                    .flat_map(|v| half::f16::from_f32(v).to_bits().to_le_bytes())
                    .collect(),
                _ => values.flat_map(f32::to_le_bytes).collect(),
            }
        };
        let a = storage(&gpu, &operand(1));
        let b = storage(&gpu, &operand(5));
        let c = storage(&gpu, &vec![0u8; size * size * bytes_per]);
        let buffers = [&a, &b, &c];
        let entries: Vec<wgpu::BindGroupEntry> = shader
            .bindings
            .iter()
            .enumerate()
            .map(|(i, &v)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: buffers[v].as_entire_binding(),
            })
            .collect();
        let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("matmul benchmark"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let (median_s, clock) = time_pass(&gpu, runs, |pass| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            let [x, y, z] = shader.workgroups;
            pass.dispatch_workgroups(x, y, z);
        })?;
        let flops = 2.0 * (size as f64).powi(3);
        Ok(MatmulThroughput {
            kernel,
            precision,
            size,
            runs,
            median_s,
            gflops: flops / median_s / 1e9,
            clock,
        })
    }

    /// Bandwidth of a compute-shader copy of `bytes` (rounded up to 16) from one buffer to
    /// another: one warm-up run, then the median of `runs`.
    pub fn copy_bandwidth(
        &self,
        device: &Device,
        bytes: u64,
        runs: usize,
    ) -> Result<CopyBandwidth, WgpuError> {
        let gpu = self.gpu(device)?;
        let vectors = bytes.div_ceil(16).max(1);
        let bytes = vectors * 16;
        let source = storage(&gpu, &vec![1u8; bytes as usize]);
        let target = storage(&gpu, &vec![0u8; bytes as usize]);
        let groups = wgsl::grid(vectors.div_ceil(256) as usize);
        let code = format!(
            "@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;\n\
             @group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;\n\
             @compute @workgroup_size(256)\n\
             fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {{\n  \
             let i = (wg.y * {}u + wg.x) * 256u + li;\n  if (i < {vectors}u) {{ dst[i] = src[i]; }}\n}}\n",
            groups[0]
        );
        let pipeline = gpu.pipeline(&code, "copy benchmark")?;
        let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("copy benchmark"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: source.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: target.as_entire_binding(),
                },
            ],
        });
        let (median_s, clock) = time_pass(&gpu, runs, |pass| {
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        })?;
        Ok(CopyBandwidth {
            bytes,
            runs,
            median_s,
            gb_per_s: 2.0 * bytes as f64 / median_s / 1e9,
            clock,
        })
    }
}

/// `C = A x B` for `size x size` matrices stored as `ty`, as a one-step program.
fn square_product(size: usize, ty: ElemType) -> (Program, Step) {
    let mut program = Program {
        values: Vec::new(),
        steps: Vec::new(),
        inputs: vec![0, 1],
        outputs: vec![2],
        f16_widened: false,
    };
    let a = program.add_value(vec![1, size, size], ty, Origin::Input);
    let b = program.add_value(vec![1, size, size], ty, Origin::Input);
    let c = program.add_value(vec![size, size], ty, Origin::Computed);
    let gemm = Gemm {
        batch: 1,
        m: size,
        n: size,
        k: size,
        c_strides: [size * size, size, 1],
    };
    let step = Step {
        nodes: vec!["benchmark".into()],
        kernel: Kernel::Gemm(gemm),
        inputs: vec![
            View::whole(a, &[1, size, size]),
            View::whole(b, &[1, size, size]),
        ],
        operands: vec![],
        epilogue: Expr::Acc,
        output: c,
    };
    (program, step)
}

fn storage(gpu: &Gpu, contents: &[u8]) -> wgpu::Buffer {
    let size = (contents.len().div_ceil(4) * 4).max(4) as u64;
    let buffer = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("benchmark"),
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut padded = contents.to_vec();
    padded.resize(size as usize, 0);
    gpu.queue.write_buffer(&buffer, 0, &padded);
    buffer
}

/// Median duration of one compute pass recorded by `record`, after one warm-up pass.
fn time_pass(
    gpu: &Gpu,
    runs: usize,
    record: impl Fn(&mut wgpu::ComputePass<'_>),
) -> Result<(f64, Clock), WgpuError> {
    let device = &gpu.device;
    let timer = gpu.timestamps.then(|| {
        let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("benchmark"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("benchmark timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("benchmark timestamps readback"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        (queries, resolve, read)
    });
    let period = gpu.queue.get_timestamp_period() as f64;
    let mut samples = Vec::with_capacity(runs);
    for run in 0..=runs {
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("benchmark"),
        });
        {
            let writes = timer
                .as_ref()
                .map(|(q, _, _)| wgpu::ComputePassTimestampWrites {
                    query_set: q,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("benchmark"),
                timestamp_writes: writes,
            });
            record(&mut pass);
        }
        if let Some((q, resolve, read)) = &timer {
            encoder.resolve_query_set(q, 0..2, resolve, 0);
            encoder.copy_buffer_to_buffer(resolve, 0, read, 0, 16);
        }
        let started = Instant::now();
        gpu.queue.submit([encoder.finish()]);
        if let Some((_, _, read)) = &timer {
            read.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| WgpuError::Run(format!("waiting for the device: {e}")))?;
        let host = started.elapsed().as_secs_f64();
        if let Some(errors) = gpu.take_errors() {
            return Err(WgpuError::Run(errors));
        }
        let seconds = match &timer {
            Some((_, _, read)) => {
                let ticks: Vec<u64> = {
                    let bytes = read
                        .slice(..)
                        .get_mapped_range()
                        .map_err(|e| WgpuError::Run(e.to_string()))?;
                    bytemuck::pod_collect_to_vec(&bytes)
                };
                read.unmap();
                (ticks[1] > ticks[0]).then(|| (ticks[1] - ticks[0]) as f64 * period / 1e9)
            }
            None => Some(host),
        };
        if run > 0
            && let Some(s) = seconds
        {
            samples.push(s);
        }
    }
    if samples.is_empty() {
        return Err(WgpuError::Run(
            "every timestamp pair was out of order".into(),
        ));
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    Ok((
        median,
        if timer.is_some() {
            Clock::GpuTimestamps
        } else {
            Clock::HostWallClock
        },
    ))
}
