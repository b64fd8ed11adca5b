//! A model placed on a device: weights uploaded once, every intermediate buffer allocated once
//! (buffers of values whose lifetimes do not overlap are shared), one pipeline and bind group
//! per kernel. An inference is one upload per input, one command encoder with one compute pass,
//! one copy per output and one readback.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chipbench_core::{
    DType, OperatorTime, PreparedInputs, Session, Tensor, TensorData, TensorInfo,
};
use half::f16;
use tract_onnx::prelude::Tensor as TractTensor;

use crate::adapter::{Gpu, api_name, device_kind};
use crate::error::WgpuError;
use crate::graph::{ElemType, Origin, Program, ValueId};
use crate::import::tensor_values;
use crate::wgsl;

/// Bytes per element on the device.
fn element_bytes(ty: ElemType) -> usize {
    match ty {
        ElemType::F16 => 2,
        ElemType::F32 | ElemType::I32 | ElemType::Bool => 4,
    }
}

/// Buffer sizes are multiples of 4 bytes (copy alignment) and never zero.
fn padded(bytes: usize) -> u64 {
    (bytes.div_ceil(4) * 4).max(4) as u64
}

struct Dispatch {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    label: String,
    nodes: String,
}

struct InputSlot {
    buffer: Arc<wgpu::Buffer>,
    ty: ElemType,
}

struct OutputSlot {
    buffer: Arc<wgpu::Buffer>,
    staging: wgpu::Buffer,
    ty: ElemType,
    bytes: u64,
}

/// Device timestamps: two per pass.
struct Timer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    count: u32,
    /// Nanoseconds per tick.
    period: f64,
}

pub struct WgpuSession {
    gpu: Arc<Gpu>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    input_slots: Vec<InputSlot>,
    output_slots: Vec<OutputSlot>,
    dispatches: Vec<Dispatch>,
    timer: Option<Timer>,
    /// Time every dispatch in its own pass (operator profile).
    profiling: bool,
    profile_ms: Vec<f64>,
    last_device_time: Option<Duration>,
    discarded_device_times: u64,
    settings: BTreeMap<String, String>,
}

impl WgpuSession {
    pub(crate) fn new(
        gpu: Arc<Gpu>,
        mut program: Program,
        inputs: Vec<TensorInfo>,
        outputs: Vec<TensorInfo>,
        profile: bool,
        timestamps: bool,
    ) -> Result<WgpuSession, WgpuError> {
        let node_count: usize = program.steps.iter().map(|s| s.nodes.len()).sum();
        crate::fuse::fuse(
            &mut program,
            gpu.limits.max_storage_buffers_per_shader_stage as usize,
        );
        let buffers = allocate(&gpu, &program)?;
        let mut dispatches = Vec::new();
        for step in &program.steps {
            if program.values[step.output].numel() == 0 {
                continue;
            }
            let label = step.label();
            let nodes = step.nodes.join(", ");
            let shader = wgsl::shader(&program, step).map_err(|reason| WgpuError::Gpu {
                context: format!("{label} ({nodes})"),
                reason,
            })?;
            let pipeline = gpu.pipeline(&shader.source, &label)?;
            let bind_group = bind(&gpu, &pipeline, &shader.bindings, &buffers, &label)?;
            dispatches.push(Dispatch {
                pipeline,
                bind_group,
                workgroups: shader.workgroups,
                label,
                nodes,
            });
        }
        let input_slots = program
            .inputs
            .iter()
            .map(|&v| InputSlot {
                buffer: buffers[v].clone().expect("inputs have buffers"),
                ty: program.values[v].ty,
            })
            .collect();
        let output_slots = program
            .outputs
            .iter()
            .map(|&v| {
                let value = &program.values[v];
                let bytes = padded(value.numel() * element_bytes(value.ty));
                OutputSlot {
                    buffer: buffers[v].clone().expect("outputs have buffers"),
                    staging: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    }),
                    ty: value.ty,
                    bytes,
                }
            })
            .collect();
        // Two queries per kernel must fit in one query set.
        let timing = match (gpu.timestamps, timestamps) {
            (false, _) => Timing::AdapterLacksTimestamps,
            (true, false) => Timing::TurnedOff,
            (true, true) => Timing::Timestamps,
        };
        let profiling = profile
            && timing == Timing::Timestamps
            && 2 * dispatches.len() <= wgpu::QUERY_SET_MAX_QUERIES as usize;
        let passes = if profiling {
            dispatches.len().max(1)
        } else {
            1
        };
        let timer = (timing == Timing::Timestamps).then(|| Timer::new(&gpu, 2 * passes as u32));
        let settings = settings(
            &gpu,
            &program,
            node_count,
            dispatches.len(),
            profile.then_some(profiling),
            timing,
        );
        let profile_ms = vec![0.0; dispatches.len()];
        Ok(WgpuSession {
            gpu,
            inputs,
            outputs,
            input_slots,
            output_slots,
            dispatches,
            timer,
            profiling,
            profile_ms,
            last_device_time: None,
            discarded_device_times: 0,
            settings,
        })
    }

    /// Every input checked and converted into its device layout.
    fn device_inputs(&self, inputs: &[Tensor]) -> Result<DeviceInputs, WgpuError> {
        if inputs.len() != self.inputs.len() {
            return Err(WgpuError::Run(format!(
                "{} inputs given, the model has {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let bytes = self
            .inputs
            .iter()
            .zip(inputs)
            .zip(&self.input_slots)
            .map(|((info, tensor), slot)| {
                chipbench_core::spec::check_input(info, tensor).map_err(|e| WgpuError::Input {
                    name: info.name.clone(),
                    reason: e.to_string(),
                })?;
                to_device(tensor, slot.ty).map_err(|reason| WgpuError::Input {
                    name: info.name.clone(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(DeviceInputs(bytes))
    }

    /// One inference from inputs in their device layout: upload, compute pass, readback.
    fn run_device(&mut self, inputs: &DeviceInputs) -> Result<Vec<Tensor>, WgpuError> {
        let started = Instant::now();
        let fits = inputs.0.len() == self.input_slots.len()
            && inputs
                .0
                .iter()
                .zip(&self.input_slots)
                .all(|(bytes, slot)| bytes.len() as u64 == slot.buffer.size());
        if !fits {
            return Err(WgpuError::Run(
                "the inputs were prepared by a session of another model".into(),
            ));
        }
        for (bytes, slot) in inputs.0.iter().zip(&self.input_slots) {
            self.gpu.queue.write_buffer(&slot.buffer, 0, bytes);
        }
        let device = &self.gpu.device;
        let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("inference"),
        });
        let writes = |pass: u32| {
            self.timer
                .as_ref()
                .map(|t| wgpu::ComputePassTimestampWrites {
                    query_set: &t.queries,
                    beginning_of_pass_write_index: Some(2 * pass),
                    end_of_pass_write_index: Some(2 * pass + 1),
                })
        };
        if self.profiling {
            for (i, d) in self.dispatches.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(&d.label),
                    timestamp_writes: writes(i as u32),
                });
                d.record(&mut pass);
            }
        } else {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("model"),
                timestamp_writes: writes(0),
            });
            for d in &self.dispatches {
                d.record(&mut pass);
            }
        }
        for slot in &self.output_slots {
            encoder.copy_buffer_to_buffer(&slot.buffer, 0, &slot.staging, 0, slot.bytes);
        }
        if let Some(t) = &self.timer {
            encoder.resolve_query_set(&t.queries, 0..t.count, &t.resolve, 0);
            encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.staging, 0, 8 * t.count as u64);
        }
        self.gpu.queue.submit([encoder.finish()]);

        let failures: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        let staging: Vec<&wgpu::Buffer> = self
            .output_slots
            .iter()
            .map(|s| &s.staging)
            .chain(self.timer.as_ref().map(|t| &t.staging))
            .collect();
        for buffer in &staging {
            let failures = failures.clone();
            buffer
                .slice(..)
                .map_async(wgpu::MapMode::Read, move |result| {
                    if let Err(e) = result
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push(e.to_string());
                    }
                });
        }
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| WgpuError::Run(format!("waiting for the device: {e}")))?;
        let host_elapsed = started.elapsed();
        if let Some(errors) = self.gpu.take_errors() {
            unmap_all(&staging);
            return Err(WgpuError::Run(errors));
        }
        if let Some(f) = failures.lock().ok().filter(|f| !f.is_empty()) {
            let message = f.join("; ");
            drop(f);
            unmap_all(&staging);
            return Err(WgpuError::Run(format!("reading results back: {message}")));
        }
        // Every staging buffer is unmapped whatever happens, or the next run could not map it.
        let read = |buffer: &wgpu::Buffer| -> Result<Vec<u8>, WgpuError> {
            let view = buffer
                .slice(..)
                .get_mapped_range()
                .map_err(|e| WgpuError::Run(e.to_string()))?;
            Ok(view.to_vec())
        };
        let outputs: Result<Vec<Vec<u8>>, WgpuError> =
            self.output_slots.iter().map(|s| read(&s.staging)).collect();
        let ticks = self.timer.as_ref().map(|t| read(&t.staging));
        unmap_all(&staging);
        let mut results = Vec::with_capacity(self.outputs.len());
        for ((info, slot), bytes) in self.outputs.iter().zip(&self.output_slots).zip(outputs?) {
            results.push(from_device(&bytes, slot.ty, info)?);
        }
        if let (Some(ticks), Some(t)) = (ticks, &self.timer) {
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&ticks?);
            let period = t.period;
            self.record_device_time(&ticks, period, host_elapsed);
        }
        Ok(results)
    }

    /// Device time of the inference just read back, or a counted discard.
    fn record_device_time(&mut self, ticks: &[u64], period: f64, host: Duration) {
        match pass_durations(ticks, period, host) {
            Some(per_pass) => {
                let total: f64 = per_pass.iter().sum();
                self.last_device_time = Some(Duration::from_nanos(total.round() as u64));
                if self.profiling {
                    for (sum, ns) in self.profile_ms.iter_mut().zip(per_pass) {
                        *sum += ns / 1e6;
                    }
                }
            }
            None => {
                self.last_device_time = None;
                self.discarded_device_times += 1;
            }
        }
    }
}

/// Nanoseconds of each pass from its (begin, end) timestamp pair, or `None` when the inference's
/// timestamps are implausible: a pass whose end is not after its start, or passes that add up to
/// more than the host's end-to-end time of the same inference.
fn pass_durations(ticks: &[u64], period: f64, host: Duration) -> Option<Vec<f64>> {
    let per_pass: Vec<f64> = ticks
        .chunks_exact(2)
        .map(|pair| (pair[1] > pair[0]).then(|| (pair[1] - pair[0]) as f64 * period))
        .collect::<Option<_>>()?;
    let total: f64 = per_pass.iter().sum();
    (total <= host.as_nanos() as f64).then_some(per_pass)
}

fn unmap_all(buffers: &[&wgpu::Buffer]) {
    for b in buffers {
        b.unmap();
    }
}

impl Dispatch {
    fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

impl Timer {
    fn new(gpu: &Gpu, count: u32) -> Timer {
        let device = &gpu.device;
        let bytes = 8 * count as u64;
        Timer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            staging: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            count,
            period: gpu.queue.get_timestamp_period() as f64,
        }
    }
}

/// What a session runs one prepared inference on: each input checked and converted into its
/// device layout once (bytes padded to whole words).
struct DeviceInputs(Vec<Vec<u8>>);

/// What one timed inference of a wgpu session holds.
const TIMED_WINDOW: &str = "wgpu from inputs checked and converted once before warm-up into their device \
     layout: the upload of every input (Queue::write_buffer), one command encoder with the model's compute \
     pass (one pass per kernel under --operator-times), a copy of every output to a staging buffer, the submission, \
     the wait for the device, the readback and the conversion of every output into a host tensor";

impl Session for WgpuSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> chipbench_core::Result<Vec<Tensor>> {
        let inputs = self.device_inputs(inputs)?;
        Ok(self.run_device(&inputs)?)
    }

    fn prepare_inputs(&mut self, inputs: &[Tensor]) -> chipbench_core::Result<PreparedInputs> {
        Ok(PreparedInputs::engine(self.device_inputs(inputs)?))
    }

    fn run_prepared(&mut self, inputs: &PreparedInputs) -> chipbench_core::Result<Vec<Tensor>> {
        let inputs = inputs.as_engine::<DeviceInputs>().ok_or_else(|| {
            chipbench_core::Error::Run("the inputs were not prepared by a wgpu session".into())
        })?;
        Ok(self.run_device(inputs)?)
    }

    fn timed_window(&self) -> &'static str {
        TIMED_WINDOW
    }

    /// One host thread submits; the device (or, for a software rasterizer, the driver's own
    /// worker threads) does the work.
    fn threads(&self) -> usize {
        1
    }

    fn settings(&self) -> BTreeMap<String, String> {
        self.settings.clone()
    }

    fn last_device_time(&self) -> Option<Duration> {
        self.last_device_time
    }

    fn discarded_device_times(&self) -> u64 {
        self.discarded_device_times
    }

    fn operator_profile(&mut self) -> chipbench_core::Result<Option<Vec<OperatorTime>>> {
        if !self.profiling {
            return Ok(None);
        }
        let total: f64 = self.profile_ms.iter().sum();
        let provider = format!("wgpu:{}", self.gpu.info.name);
        Ok(Some(
            self.dispatches
                .iter()
                .zip(&self.profile_ms)
                .map(|(d, &ms)| OperatorTime {
                    op_type: d.label.clone(),
                    node: d.nodes.clone(),
                    provider: provider.clone(),
                    total_ms: ms,
                    share: if total > 0.0 { ms / total } else { 0.0 },
                })
                .collect(),
        ))
    }
}

/// One buffer per input, weight and output; intermediates share buffers when their lifetimes
/// (from the step that writes them to the last step that reads them) do not overlap.
fn allocate(gpu: &Gpu, program: &Program) -> Result<Vec<Option<Arc<wgpu::Buffer>>>, WgpuError> {
    let device = &gpu.device;
    let storage =
        wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    let max = gpu
        .limits
        .max_storage_buffer_binding_size
        .min(gpu.limits.max_buffer_size);
    let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let mut buffers: Vec<Option<Arc<wgpu::Buffer>>> = vec![None; program.values.len()];
    let mut last_read = vec![None; program.values.len()];
    for (i, step) in program.steps.iter().enumerate() {
        for v in step.inputs.iter().chain(&step.operands) {
            last_read[v.value] = Some(i);
        }
    }
    let new_buffer = |bytes: u64, label: &str| -> Result<Arc<wgpu::Buffer>, WgpuError> {
        if bytes > max {
            return Err(WgpuError::Gpu {
                context: label.to_string(),
                reason: format!(
                    "{bytes} bytes exceed the adapter's storage buffer limit of {max} bytes"
                ),
            });
        }
        Ok(Arc::new(device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: storage,
            mapped_at_creation: false,
        })))
    };
    for (id, value) in program.values.iter().enumerate() {
        let bytes = padded(value.numel() * element_bytes(value.ty));
        match &value.origin {
            Origin::Input => buffers[id] = Some(new_buffer(bytes, "input")?),
            Origin::Const(t) if last_read[id].is_some() => {
                let data = const_bytes(t, value.ty).map_err(|reason| WgpuError::Gpu {
                    context: "weights".into(),
                    reason,
                })?;
                let buffer = new_buffer(bytes, "weights")?;
                gpu.queue.write_buffer(&buffer, 0, &data);
                buffers[id] = Some(buffer);
            }
            Origin::Computed if program.outputs.contains(&id) => {
                buffers[id] = Some(new_buffer(bytes, "output")?)
            }
            _ => {}
        }
    }
    // Pooled intermediates, assigned in execution order.
    let mut free: Vec<Arc<wgpu::Buffer>> = Vec::new();
    for (i, step) in program.steps.iter().enumerate() {
        let out = step.output;
        if buffers[out].is_none() {
            let value = &program.values[out];
            let bytes = padded(value.numel() * element_bytes(value.ty));
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.size() >= bytes)
                .min_by_key(|(_, b)| b.size())
                .map(|(k, _)| k);
            buffers[out] = Some(match best {
                Some(k) => free.swap_remove(k),
                None => new_buffer(bytes, "intermediate")?,
            });
        }
        let mut released: Vec<ValueId> = step
            .inputs
            .iter()
            .chain(&step.operands)
            .map(|v| v.value)
            .filter(|&v| last_read[v] == Some(i) && is_pooled(program, v))
            .collect();
        released.sort_unstable();
        released.dedup();
        for v in released {
            if let Some(b) = buffers[v].clone() {
                free.push(b);
            }
        }
    }
    if let Some(error) = pollster::block_on(scope.pop()) {
        return Err(WgpuError::Gpu {
            context: "allocating buffers".into(),
            reason: error.to_string(),
        });
    }
    Ok(buffers)
}

fn is_pooled(program: &Program, v: ValueId) -> bool {
    matches!(program.values[v].origin, Origin::Computed) && !program.outputs.contains(&v)
}

fn bind(
    gpu: &Gpu,
    pipeline: &wgpu::ComputePipeline,
    values: &[ValueId],
    buffers: &[Option<Arc<wgpu::Buffer>>],
    label: &str,
) -> Result<wgpu::BindGroup, WgpuError> {
    let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let entries: Vec<wgpu::BindGroupEntry> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let buffer = buffers[v].as_ref().ok_or_else(|| WgpuError::Gpu {
                context: label.to_string(),
                reason: format!("value {v} has no buffer"),
            })?;
            Ok(wgpu::BindGroupEntry {
                binding: i as u32,
                resource: buffer.as_entire_binding(),
            })
        })
        .collect::<Result<_, WgpuError>>()?;
    let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    match pollster::block_on(scope.pop()) {
        Some(error) => Err(WgpuError::Gpu {
            context: format!("bindings of {label}"),
            reason: error.to_string(),
        }),
        None => Ok(group),
    }
}

/// A model constant in its device layout, padded to whole words.
fn const_bytes(t: &TractTensor, ty: ElemType) -> Result<Vec<u8>, String> {
    let mut bytes: Vec<u8> = match ty {
        ElemType::F32 => bytemuck::cast_slice(&tensor_values::<f32>(t)?).to_vec(),
        ElemType::F16 => {
            let halves: Vec<u16> = tensor_values::<tract_onnx::prelude::f16>(t)?
                .iter()
                .map(|h| h.to_bits())
                .collect();
            bytemuck::cast_slice(&halves).to_vec()
        }
        ElemType::I32 | ElemType::Bool => {
            let ints: Vec<i32> = tensor_values::<i64>(t)?
                .into_iter()
                .map(|x| {
                    i32::try_from(x)
                        .map_err(|_| format!("constant value {x} beyond the 32-bit range"))
                })
                .collect::<Result<_, _>>()?;
            bytemuck::cast_slice(&ints).to_vec()
        }
    };
    bytes.resize(padded(bytes.len()) as usize, 0);
    Ok(bytes)
}

/// A host tensor in the device layout of an input, padded to whole words.
fn to_device(t: &Tensor, ty: ElemType) -> Result<Vec<u8>, String> {
    let ints = |v: Vec<i64>| -> Result<Vec<u8>, String> {
        let narrowed: Vec<i32> = v
            .into_iter()
            .map(|x| {
                i32::try_from(x).map_err(|_| {
                    format!("value {x} is beyond the 32-bit integers the device holds")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(bytemuck::cast_slice(&narrowed).to_vec())
    };
    let mut bytes = match (t.data(), ty) {
        (TensorData::F32(v), ElemType::F32) => bytemuck::cast_slice(v).to_vec(),
        (TensorData::F16(v), ElemType::F16) => {
            bytemuck::cast_slice(&v.iter().map(|h| h.to_bits()).collect::<Vec<u16>>()).to_vec()
        }
        (TensorData::F16(v), ElemType::F32) => {
            bytemuck::cast_slice(&v.iter().map(|h| h.to_f32()).collect::<Vec<f32>>()).to_vec()
        }
        (TensorData::I64(v), ElemType::I32) => ints(v.clone())?,
        (TensorData::I32(v), ElemType::I32) => bytemuck::cast_slice(v).to_vec(),
        (TensorData::I8(v), ElemType::I32) => ints(v.iter().map(|&x| x as i64).collect())?,
        (TensorData::U8(v), ElemType::I32) => ints(v.iter().map(|&x| x as i64).collect())?,
        (TensorData::Bool(v), ElemType::Bool) => ints(v.iter().map(|&x| x as i64).collect())?,
        (data, ty) => return Err(format!("{} data cannot feed a {ty:?} tensor", data.dtype())),
    };
    bytes.resize(padded(bytes.len()) as usize, 0);
    Ok(bytes)
}

/// An output read back from its device layout into the host type the model declares.
fn from_device(bytes: &[u8], ty: ElemType, info: &TensorInfo) -> Result<Tensor, WgpuError> {
    let n: usize = info.shape.iter().product();
    let words = |size: usize| &bytes[..n * size];
    let ints = || -> Vec<i32> { bytemuck::pod_collect_to_vec(words(4)) };
    let data = match (ty, info.dtype) {
        (ElemType::F32, DType::F32) => TensorData::F32(bytemuck::pod_collect_to_vec(words(4))),
        (ElemType::F32, DType::F16) => TensorData::F16(
            bytemuck::pod_collect_to_vec::<u8, f32>(words(4))
                .into_iter()
                .map(f16::from_f32)
                .collect(),
        ),
        (ElemType::F16, DType::F16) => TensorData::F16(
            bytemuck::pod_collect_to_vec::<u8, u16>(words(2))
                .into_iter()
                .map(f16::from_bits)
                .collect(),
        ),
        (ElemType::I32, DType::I64) => TensorData::I64(ints().into_iter().map(i64::from).collect()),
        (ElemType::I32, DType::I32) => TensorData::I32(ints()),
        (ElemType::I32, DType::I8) => TensorData::I8(ints().into_iter().map(|x| x as i8).collect()),
        (ElemType::I32, DType::U8) => TensorData::U8(ints().into_iter().map(|x| x as u8).collect()),
        (ElemType::Bool, DType::Bool) => {
            TensorData::Bool(ints().into_iter().map(|x| x != 0).collect())
        }
        (ty, dtype) => {
            return Err(WgpuError::Run(format!(
                "output '{}': {ty:?} on the device, {dtype} expected",
                info.name
            )));
        }
    };
    Tensor::new(info.shape.clone(), data).map_err(|e| WgpuError::Run(e.to_string()))
}

/// Where device time comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timing {
    Timestamps,
    AdapterLacksTimestamps,
    TurnedOff,
}

/// What the session records with its results. `profile`: whether per-kernel timing was
/// requested, and if so whether it runs.
fn settings(
    gpu: &Gpu,
    program: &Program,
    nodes: usize,
    kernels: usize,
    profile: Option<bool>,
    timing: Timing,
) -> BTreeMap<String, String> {
    let info = &gpu.info;
    let mut s = BTreeMap::new();
    s.insert(
        "adapter".into(),
        format!(
            "{} via {} ({})",
            info.name,
            api_name(info.backend),
            device_kind(info).label()
        ),
    );
    if !info.driver.is_empty() || !info.driver_info.is_empty() {
        s.insert(
            "driver".into(),
            format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        );
    }
    s.insert(
        "kernels".into(),
        format!("{kernels} dispatches for {nodes} lowered model nodes (element-wise nodes fused into epilogues)"),
    );
    let unavailable = match timing {
        Timing::Timestamps => None,
        Timing::AdapterLacksTimestamps => Some("not available: the adapter lacks TIMESTAMP_QUERY"),
        Timing::TurnedOff => Some("off (wgpu.timestamps=off)"),
    };
    s.insert(
        "device_time".into(),
        unavailable
            .unwrap_or("GPU timestamp queries around the inference's compute pass")
            .into(),
    );
    s.insert(
        "wgpu.timestamps".into(),
        if timing == Timing::TurnedOff {
            "off"
        } else {
            "on"
        }
        .into(),
    );
    if let Some(profiling) = profile {
        let text = match (unavailable, profiling) {
            (Some(why), _) => why.to_string(),
            (None, true) => {
                "one compute pass per kernel, timed by GPU timestamps (adds pass overhead)".into()
            }
            (None, false) => format!(
                "not available: more than {} kernels",
                wgpu::QUERY_SET_MAX_QUERIES / 2
            ),
        };
        s.insert("profile".into(), text);
    }
    let has = |ty: ElemType| program.values.iter().any(|v| v.ty == ty);
    if has(ElemType::F16) {
        s.insert(
            "f16".into(),
            "stored as f16 (SHADER_F16), computed in f32".into(),
        );
    } else if program.f16_widened {
        s.insert(
            "f16".into(),
            "the adapter lacks SHADER_F16: the model's f16 tensors are held as f32".into(),
        );
    }
    if has(ElemType::I32) {
        s.insert(
            "integers".into(),
            "held as i32 on the device (WGSL has no 64-bit integers)".into(),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implausible_timestamps_are_discarded() {
        let host = Duration::from_millis(10);
        assert_eq!(
            pass_durations(&[100, 1100, 2000, 2500], 2.0, host),
            Some(vec![2000.0, 1000.0])
        );
        assert_eq!(
            pass_durations(&[100, 100], 1.0, host),
            None,
            "zero duration"
        );
        assert_eq!(
            pass_durations(&[500, 100], 1.0, host),
            None,
            "end before start"
        );
        assert_eq!(
            pass_durations(&[0, 20_000_000], 1.0, host),
            None,
            "longer than the host time"
        );
    }

    #[test]
    fn host_tensors_round_trip_through_device_layouts() {
        let info = |dtype, shape: Vec<usize>| TensorInfo {
            name: "t".into(),
            dtype,
            shape,
        };
        let ids = Tensor::from_vec(vec![3], vec![-5i64, 0, 70_000]).unwrap();
        let bytes = to_device(&ids, ElemType::I32).unwrap();
        assert_eq!(
            from_device(&bytes, ElemType::I32, &info(DType::I64, vec![3])).unwrap(),
            ids
        );
        let halves = Tensor::from_vec(
            vec![3],
            vec![f16::from_f32(1.5), f16::from_f32(-2.0), f16::from_f32(0.25)],
        )
        .unwrap();
        let bytes = to_device(&halves, ElemType::F16).unwrap();
        assert_eq!(bytes.len(), 8, "padded to whole words");
        assert_eq!(
            from_device(&bytes, ElemType::F16, &info(DType::F16, vec![3])).unwrap(),
            halves
        );
        let wide = Tensor::from_vec(vec![1], vec![1i64 << 40]).unwrap();
        assert!(
            to_device(&wide, ElemType::I32)
                .unwrap_err()
                .contains("32-bit")
        );
    }
}
