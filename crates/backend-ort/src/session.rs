//! One ONNX Runtime session on one execution provider, behind chipbench's `Session` trait.

use std::collections::BTreeMap;
use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chipbench_core::spec::check_input;
use chipbench_core::{
    DType, Error as CoreError, Feedback, FeedbackPath, ModelSource, NodePlacement, OperatorTime,
    PreparedInputs, Result, Session, SessionOptions, Tensor, TensorData, TensorInfo,
};
use half::f16;
use ort::AsPointer;
use ort::environment::ThreadManager;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::SessionBuilder;
use ort::session::{IoBinding, Session as OrtRawSession, SessionInputValue};
use ort::value::{DynValue, Tensor as OrtTensor, TensorElementType, TensorRef, ValueType};

use crate::error::{Error, engine_message};
use crate::library::{Runtime, check};
use crate::options::OrtSettings;
use crate::profile;
use crate::provider::Provider;

/// Counts the worker threads ONNX Runtime starts for a session's thread pools: ONNX Runtime has
/// no call that says how many threads it runs with, but it asks this manager for every one.
struct CountingThreads(Arc<AtomicUsize>);

/// Linux's default pthread stack, which ONNX Runtime's own threads would get.
const WORKER_STACK_BYTES: usize = 8 << 20;

impl ThreadManager for CountingThreads {
    type Thread = std::thread::JoinHandle<()>;

    fn create(&self, work: impl FnOnce() + Send + 'static) -> ort::Result<Self::Thread> {
        let thread = std::thread::Builder::new()
            .name("ort-worker".into())
            .stack_size(WORKER_STACK_BYTES)
            .spawn(work)
            .map_err(|e| {
                ort::Error::new(format!("cannot start an ONNX Runtime worker thread: {e}"))
            })?;
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(thread)
    }

    fn join(thread: Self::Thread) -> ort::Result<()> {
        thread
            .join()
            .map_err(|_| ort::Error::new("an ONNX Runtime worker thread panicked"))
    }
}

/// A model prepared by ONNX Runtime on one execution provider.
pub struct OrtSession {
    session: OrtRawSession,
    inputs: Vec<TensorInfo>,
    /// For each input of the ONNX Runtime session, in its order, the index in `inputs`.
    session_order: Vec<usize>,
    outputs: Vec<TensorInfo>,
    /// Output dimensions the model leaves symbolic are learnt from the first inference.
    outputs_resolved: bool,
    threads: usize,
    settings: BTreeMap<String, String>,
    placement: Vec<NodePlacement>,
    profiling: Profiling,
    /// Where the execution providers want each input (in the session's input order) and place
    /// each output: for keeping fed-back outputs where the engine made them.
    input_memory: Vec<MemoryInfo<'static>>,
    output_memory: Vec<MemoryInfo<'static>>,
    /// Host memory, where the outputs the caller reads are bound.
    host_memory: MemoryInfo<'static>,
    /// The I/O binding of [`Session::run_feeding_back`], made on its first call.
    binding: Option<IoBinding>,
}

enum Profiling {
    Off,
    /// Collecting; ONNX Runtime writes the trace when profiling ends.
    On,
    /// Ended and parsed.
    Done(Vec<OperatorTime>),
}

impl OrtSession {
    pub fn load(
        runtime: &Runtime,
        provider: Provider,
        source: &ModelSource,
        options: &SessionOptions,
    ) -> Result<Self> {
        let path = &source.path;
        let fail = |e: Error| CoreError::model(path, crate::log::with_log(e.to_string()));
        if !path.is_file() {
            return Err(CoreError::model(path, "no such file"));
        }
        let ort_settings = OrtSettings::parse(&options.settings).map_err(fail)?;
        let created = Arc::new(AtomicUsize::new(0));
        let builder = configure(runtime, provider, options, &ort_settings, created.clone())
            .map_err(|e| CoreError::Unsupported(format!("{}: {e}", provider.ort_name())))?;
        let profile_prefix = options.profile.then(profile_prefix);
        let mut builder = match &profile_prefix {
            Some(prefix) => builder.with_profiling(prefix).map_err(|e| fail(e.into()))?,
            None => builder,
        };
        let session = builder.commit_from_file(path).map_err(|e| fail(e.into()))?;

        let (inputs, session_order) = bind_inputs(&session, source)?;
        let (outputs, outputs_resolved) =
            output_infos(&session, &session_symbols(&session, &inputs))
                .map_err(|e| CoreError::model(path, e))?;
        let placement = placement(&session).map_err(fail)?;
        let input_memory = io_memory(&session, false).map_err(fail)?;
        let output_memory = io_memory(&session, true).map_err(fail)?;
        let host_memory = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::CPUOutput,
        )
        .map_err(|e| fail(e.into()))?;
        let workers = created.load(Ordering::SeqCst);

        let mut settings = ort_settings.describe();
        settings.insert("ort.provider".into(), provider.ort_name().into());
        settings.insert(
            "ort.library".into(),
            format!(
                "{} ({})",
                runtime.library.path.display(),
                runtime.library.version
            ),
        );
        settings.insert("ort.crate".into(), crate::ORT_CRATE_VERSION.into());
        settings.insert(
            "ort.intra_threads".into(),
            options
                .threads
                .map(|n| n.to_string())
                .unwrap_or_else(|| "ORT default".into()),
        );
        settings.insert("ort.worker_threads_started".into(), workers.to_string());
        settings.insert(
            "ort.profiling".into(),
            if options.profile { "on" } else { "off" }.into(),
        );
        Ok(OrtSession {
            session,
            inputs,
            session_order,
            outputs,
            outputs_resolved,
            threads: 1 + workers,
            settings,
            placement,
            profiling: if options.profile {
                Profiling::On
            } else {
                Profiling::Off
            },
            input_memory,
            output_memory,
            host_memory,
            binding: None,
        })
    }

    /// The ONNX Runtime session itself, configured exactly as chipbench runs it; for comparing
    /// chipbench's overhead with direct calls.
    pub fn raw(&mut self) -> &mut OrtRawSession {
        &mut self.session
    }

    fn end_profiling(&mut self) -> std::result::Result<Vec<OperatorTime>, Error> {
        let path = PathBuf::from(self.session.end_profiling()?);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::library(&path, e));
        let _ = std::fs::remove_file(&path);
        profile::parse(&text?, &path)
    }
}

/// The builder with every option chipbench controls set, the requested provider registered and
/// a failure to register it an error.
fn configure(
    runtime: &Runtime,
    provider: Provider,
    options: &SessionOptions,
    settings: &OrtSettings,
    created_threads: Arc<AtomicUsize>,
) -> std::result::Result<SessionBuilder, Error> {
    let mut b = OrtRawSession::builder(&runtime.environment)?
        .with_optimization_level(settings.opt_level.ort())?
        .with_parallel_execution(settings.parallel)?
        .with_intra_op_spinning(settings.spinning)?
        .with_inter_op_spinning(settings.spinning)?
        .with_thread_manager(CountingThreads(created_threads))?
        .with_config_entry("session.record_ep_graph_assignment_info", "1")?;
    if let Some(n) = options.threads {
        b = b.with_intra_threads(n)?;
    }
    if let Some(n) = settings.inter_threads {
        b = b.with_inter_threads(n)?;
    }
    if !settings.cpu_fallback {
        b = b.with_disable_cpu_fallback()?;
    }
    let mut providers = provider.registrations();
    providers.push(
        ort::ep::CPU::default()
            .with_arena_allocator(settings.arena)
            .build(),
    );
    Ok(b.with_execution_providers(providers)?)
}

/// A fresh file-name prefix for one session's profile; ONNX Runtime appends a timestamp and
/// `.json`, and the file is removed once read.
fn profile_prefix() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "chipbench-ort-profile-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The bound inputs, checked against what the model declares (every name known, every model
/// input bound, element types equal, fixed dimensions equal), and for each input of the session,
/// in its order, the index of the bound input.
fn bind_inputs(
    session: &OrtRawSession,
    source: &ModelSource,
) -> Result<(Vec<TensorInfo>, Vec<usize>)> {
    let declared: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
    for info in &source.inputs {
        let outlet = session
            .inputs()
            .iter()
            .find(|o| o.name() == info.name)
            .ok_or_else(|| {
                CoreError::input(
                    &info.name,
                    format!("the model has no such input (it has {declared:?})"),
                )
            })?;
        let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
            return Err(CoreError::input(
                &info.name,
                "the model declares it as a non-tensor",
            ));
        };
        let dtype = dtype_of(*ty).map_err(|e| CoreError::input(&info.name, e))?;
        if dtype != info.dtype {
            return Err(CoreError::input(
                &info.name,
                format!(
                    "the model declares {dtype}, the input is bound as {}",
                    info.dtype
                ),
            ));
        }
        let fits = shape.len() == info.shape.len()
            && shape
                .iter()
                .zip(&info.shape)
                .all(|(&d, &b)| d < 0 || d as usize == b);
        if !fits {
            return Err(CoreError::input(
                &info.name,
                format!(
                    "the model declares shape {:?}, the input is bound as {:?}",
                    &shape[..],
                    info.shape
                ),
            ));
        }
    }
    let session_order = declared
        .iter()
        .map(|name| {
            source
                .inputs
                .iter()
                .position(|i| i.name == *name)
                .ok_or_else(|| {
                    CoreError::input(*name, "the model needs this input but no shape was bound")
                })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((source.inputs.clone(), session_order))
}

/// The sizes of the symbolic dimensions of the inputs (`batch` -> 1), from their bound shapes.
fn session_symbols(session: &OrtRawSession, inputs: &[TensorInfo]) -> BTreeMap<String, usize> {
    let mut symbols = BTreeMap::new();
    for outlet in session.inputs() {
        let (
            ValueType::Tensor {
                dimension_symbols, ..
            },
            Some(info),
        ) = (
            outlet.dtype(),
            inputs.iter().find(|i| i.name == outlet.name()),
        )
        else {
            continue;
        };
        for (symbol, &size) in dimension_symbols.iter().zip(&info.shape) {
            if !symbol.is_empty() {
                symbols.insert(symbol.clone(), size);
            }
        }
    }
    symbols
}

/// Output names, types and shapes; `false` when some dimension is still unknown.
fn output_infos(
    session: &OrtRawSession,
    symbols: &BTreeMap<String, usize>,
) -> std::result::Result<(Vec<TensorInfo>, bool), String> {
    let mut resolved = true;
    let infos = session
        .outputs()
        .iter()
        .map(|outlet| {
            let ValueType::Tensor {
                ty,
                shape,
                dimension_symbols,
            } = outlet.dtype()
            else {
                return Err(format!("output '{}' is not a tensor", outlet.name()));
            };
            let dims = shape
                .iter()
                .zip(dimension_symbols.iter())
                .map(|(&d, symbol)| match d {
                    d if d >= 0 => d as usize,
                    _ => symbols.get(symbol).copied().unwrap_or_else(|| {
                        resolved = false;
                        0
                    }),
                })
                .collect();
            Ok(TensorInfo {
                name: outlet.name().to_string(),
                dtype: dtype_of(*ty)?,
                shape: dims,
            })
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    Ok((infos, resolved))
}

/// Where the session's execution providers want each input (`outputs` false; in the session's
/// input order) or place each output, as memory descriptions of `ort`'s own for binding: `ort`
/// reads them at commit but keeps them private, so the raw C API is the way.
fn io_memory(
    session: &OrtRawSession,
    outputs: bool,
) -> std::result::Result<Vec<MemoryInfo<'static>>, Error> {
    let api = ort::api();
    let count = if outputs {
        session.outputs().len()
    } else {
        session.inputs().len()
    };
    let mut infos: Vec<*const ort::sys::OrtMemoryInfo> = vec![std::ptr::null(); count];
    let query = if outputs {
        api.SessionGetMemoryInfoForOutputs
    } else {
        api.SessionGetMemoryInfoForInputs
    };
    // SAFETY: the session is alive; the memory descriptions belong to it and are only read here,
    // then copied into descriptions of our own.
    unsafe {
        check(query(session.inner().ptr(), infos.as_mut_ptr(), count))?;
        infos
            .iter()
            .map(|&info| {
                if info.is_null() {
                    return Err(Error::Engine(
                        "ONNX Runtime gave no memory description for an input or output".into(),
                    ));
                }
                let mut name: *const c_char = std::ptr::null();
                check((api.MemoryInfoGetName)(info, &mut name))?;
                let mut id = 0;
                check((api.MemoryInfoGetId)(info, &mut id))?;
                let mut memory = ort::sys::OrtMemType::OrtMemTypeDefault;
                check((api.MemoryInfoGetMemType)(info, &mut memory))?;
                let mut kind = ort::sys::OrtAllocatorType::OrtDeviceAllocator;
                check((api.MemoryInfoGetType)(info, &mut kind))?;
                let kind = match kind {
                    ort::sys::OrtAllocatorType::OrtArenaAllocator => AllocatorType::Arena,
                    ort::sys::OrtAllocatorType::OrtReadOnlyAllocator => AllocatorType::ReadOnly,
                    _ => AllocatorType::Device,
                };
                let device = AllocationDevice::new(&CStr::from_ptr(name).to_string_lossy());
                Ok(MemoryInfo::new(device, id, kind, MemoryType::from(memory))?)
            })
            .collect()
    }
}

/// Whether two memory descriptions are the same device's memory.
fn same_device(a: &MemoryInfo, b: &MemoryInfo) -> bool {
    a.allocation_device() == b.allocation_device() && a.device_id() == b.device_id()
}

/// Nodes per execution provider, as ONNX Runtime assigned them when it partitioned the graph
/// (`session.record_ep_graph_assignment_info`). `ort` has no wrapper; the raw C API is the way.
fn placement(session: &OrtRawSession) -> std::result::Result<Vec<NodePlacement>, Error> {
    let api = ort::api();
    let mut subgraphs: *const *const ort::sys::OrtEpAssignedSubgraph = std::ptr::null();
    let mut count = 0usize;
    let mut placement: Vec<NodePlacement> = Vec::new();
    // SAFETY: the session is alive; the arrays belong to it and are only read here.
    unsafe {
        check((api.Session_GetEpGraphAssignmentInfo)(
            session.inner().ptr(),
            &mut subgraphs,
            &mut count,
        ))?;
        for i in 0..count {
            let subgraph = *subgraphs.add(i);
            let mut name: *const c_char = std::ptr::null();
            check((api.EpAssignedSubgraph_GetEpName)(subgraph, &mut name))?;
            let mut nodes: *const *const ort::sys::OrtEpAssignedNode = std::ptr::null();
            let mut node_count = 0usize;
            check((api.EpAssignedSubgraph_GetNodes)(
                subgraph,
                &mut nodes,
                &mut node_count,
            ))?;
            let provider = CStr::from_ptr(name).to_string_lossy();
            match placement.iter_mut().find(|p| p.provider == provider) {
                Some(p) => p.nodes += node_count,
                None => placement.push(NodePlacement {
                    provider: provider.into_owned(),
                    nodes: node_count,
                }),
            }
        }
    }
    placement.sort_by(|a, b| {
        b.nodes
            .cmp(&a.nodes)
            .then_with(|| a.provider.cmp(&b.provider))
    });
    Ok(placement)
}

impl Session for OrtSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn engine_warnings(&mut self) -> Vec<String> {
        crate::log::drain()
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        self.check_count(inputs)?;
        let values = self
            .session_order
            .iter()
            .map(|&i| input_view(&inputs[i]))
            .collect::<Result<Vec<_>>>()?;
        let tensors = infer(&mut self.session, &values)?;
        drop(values);
        self.learn_output_shapes(&tensors);
        Ok(tensors)
    }

    fn prepare_inputs(&mut self, inputs: &[Tensor]) -> Result<PreparedInputs> {
        self.check_count(inputs)?;
        for (info, t) in self.inputs.iter().zip(inputs) {
            check_input(info, t)?;
        }
        let values = self
            .session_order
            .iter()
            .map(|&i| owned_value(&inputs[i]))
            .collect::<Result<Vec<_>>>()?;
        Ok(PreparedInputs::engine(OrtInputs(values)))
    }

    fn run_prepared(&mut self, inputs: &PreparedInputs) -> Result<Vec<Tensor>> {
        let values = inputs.as_engine::<OrtInputs>().ok_or_else(|| {
            CoreError::Run("the inputs were not prepared by an ONNX Runtime session".into())
        })?;
        let tensors = infer(&mut self.session, &values.0)?;
        self.learn_output_shapes(&tensors);
        Ok(tensors)
    }

    fn timed_window(&self) -> &'static str {
        TIMED_WINDOW
    }

    /// ONNX Runtime's I/O binding: the host inputs are moved into ONNX Runtime tensors (their
    /// buffers taken over, no copy) and bound; each fed-back output is bound to the memory the
    /// session places it in, and the value it comes back as is bound as the next inference's
    /// input, where ONNX Runtime uses it in place when that is the memory the input is wanted in;
    /// the other outputs are bound to host memory and copied into host tensors.
    fn run_feeding_back(
        &mut self,
        inputs: Vec<Option<Tensor>>,
        feedback: &mut Feedback,
    ) -> Result<Vec<Option<Tensor>>> {
        feedback.check_inputs(&inputs, &self.inputs)?;
        let held = feedback.take_engine::<HeldValues>()?;
        let mut values = inputs
            .into_iter()
            .map(|t| t.map(owned_tensor).transpose())
            .collect::<Result<Vec<Option<DynValue>>>>()?;
        if let Some(HeldValues(held)) = held {
            for (&(_, k), value) in feedback.pairs().iter().zip(held) {
                values[k] = Some(value);
            }
        }
        let binding = match &mut self.binding {
            Some(binding) => binding,
            None => self
                .binding
                .insert(self.session.create_binding().map_err(run_error)?),
        };
        // Nothing bound by an inference that failed half-way stays bound.
        binding.clear();
        for (outlet, &k) in self.session.inputs().iter().zip(&self.session_order) {
            let value = values[k]
                .as_ref()
                .ok_or_else(|| CoreError::input(outlet.name(), "neither given nor fed back"))?;
            binding
                .bind_input(outlet.name(), value)
                .map_err(run_error)?;
        }
        for (o, outlet) in self.session.outputs().iter().enumerate() {
            let fed = feedback.pairs().iter().any(|&(out, _)| out == o);
            // Bound afresh every time: a bound output ONNX Runtime already filled would be
            // reused as the next output's buffer, and the cache grows by a token per step.
            let memory = if fed {
                &self.output_memory[o]
            } else {
                &self.host_memory
            };
            binding
                .bind_output_to_device(outlet.name(), memory)
                .map_err(run_error)?;
        }
        let mut outputs = self.session.run_binding(binding).map_err(run_error)?;
        // `self.outputs` lists the session's outputs in its order.
        let mut values = self
            .outputs
            .iter()
            .map(|info| {
                outputs.remove(&info.name).ok_or_else(|| {
                    CoreError::Run(format!(
                        "ONNX Runtime returned no value for output '{}'",
                        info.name
                    ))
                })
            })
            .collect::<Result<Vec<DynValue>>>()?
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        drop(outputs);
        // The binding would otherwise keep this inference's inputs (the previous cache) alive.
        binding.clear();
        if !self.outputs_resolved {
            for (info, value) in self.outputs.iter_mut().zip(&values) {
                let value = value.as_ref().expect("every output is taken below");
                info.shape = value_info(&info.name, value)?.shape;
            }
            self.outputs_resolved = true;
        }
        let mut kept = Vec::with_capacity(feedback.pairs().len());
        let mut kept_infos = Vec::with_capacity(feedback.pairs().len());
        for &(o, _) in feedback.pairs() {
            let value = values[o]
                .take()
                .ok_or_else(|| CoreError::Run(format!("output {o} is fed back twice")))?;
            kept_infos.push(value_info(&self.outputs[o].name, &value)?);
            kept.push(value);
        }
        let host = values
            .iter()
            .map(|v| v.as_ref().map(to_tensor).transpose())
            .collect::<Result<Vec<_>>>()?;
        feedback.hold_engine(HeldValues(kept), kept_infos);
        Ok(host)
    }

    fn feedback_path(&self, pairs: &[(usize, usize)]) -> FeedbackPath {
        let mut copies = 0;
        let mut places = Vec::new();
        for &(o, k) in pairs {
            let Some(memory) = self.output_memory.get(o) else {
                continue;
            };
            let place = format!(
                "{} {}",
                memory.allocation_device().as_str(),
                memory.device_id()
            );
            if !places.contains(&place) {
                places.push(place);
            }
            let wanted = self
                .session_order
                .iter()
                .position(|&i| i == k)
                .and_then(|j| self.input_memory.get(j));
            // ONNX Runtime copies a bound input into the memory the session wants it in when it
            // lies elsewhere, and uses it in place otherwise.
            if wanted.is_some_and(|w| !same_device(w, memory)) {
                copies += 1;
            }
        }
        FeedbackPath {
            copies_per_inference: copies,
            how: format!(
                "kept on the engine: ONNX Runtime I/O binding binds each fed-back output to the \
                 memory the session's execution provider places it in ({}) and binds the value \
                 it comes back as to the next inference as input ({copies} of the {} fed-back \
                 tensors copied between memories per inference, where an input is wanted \
                 elsewhere); the other outputs are bound to host memory and copied into host \
                 tensors, the host inputs moved into ONNX Runtime tensors without a copy",
                places.join(", "),
                pairs.len()
            ),
        }
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn settings(&self) -> BTreeMap<String, String> {
        self.settings.clone()
    }

    fn operator_profile(&mut self) -> Result<Option<Vec<OperatorTime>>> {
        if let Profiling::On = self.profiling {
            let operators = self.end_profiling().map_err(CoreError::from)?;
            self.profiling = Profiling::Done(operators);
        }
        Ok(match &self.profiling {
            Profiling::Done(operators) => Some(operators.clone()),
            _ => None,
        })
    }

    fn placement(&self) -> Option<Vec<NodePlacement>> {
        Some(self.placement.clone())
    }
}

impl Drop for OrtSession {
    /// ONNX Runtime writes the profile when a profiling session is destroyed; a cell that failed
    /// before its profile was read would leave the file behind.
    fn drop(&mut self) {
        if let Profiling::On = self.profiling
            && let Ok(path) = self.session.end_profiling()
        {
            let _ = std::fs::remove_file(Path::new(&path));
        }
    }
}

/// The values of the fed-back outputs a [`Feedback`] holds between two inferences of an ONNX
/// Runtime session, per pair, in the memory the engine made them in.
struct HeldValues(Vec<DynValue>);

fn run_error(e: ort::Error) -> CoreError {
    CoreError::Run(crate::log::with_log(engine_message(e.message())))
}

/// What a session runs one prepared inference on: the inputs as ONNX Runtime tensors of their
/// own (copies made once), in the session's input order.
struct OrtInputs(Vec<SessionInputValue<'static>>);

/// What one timed inference of an ONNX Runtime session holds.
const TIMED_WINDOW: &str = "ONNX Runtime's Session::Run on input values made once before warm-up (ONNX \
     Runtime tensors over copies of the inputs in host memory), then the copy of every output into a host \
     tensor; on a device execution provider (CUDA, TensorRT, a GPU through OpenVINO...) Run itself copies \
     the inputs to the device and the outputs back";

impl OrtSession {
    fn check_count(&self, inputs: &[Tensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(CoreError::Run(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        Ok(())
    }

    /// Output dimensions the model leaves symbolic, from the first outputs.
    fn learn_output_shapes(&mut self, outputs: &[Tensor]) {
        if !self.outputs_resolved {
            for (info, t) in self.outputs.iter_mut().zip(outputs) {
                info.shape = t.shape().to_vec();
            }
            self.outputs_resolved = true;
        }
    }
}

/// One inference, every output copied into a host tensor.
fn infer(session: &mut OrtRawSession, values: &[SessionInputValue<'_>]) -> Result<Vec<Tensor>> {
    let outputs = session
        .run(values)
        .map_err(|e| CoreError::Run(crate::log::with_log(engine_message(e.message()))))?;
    outputs.values().map(|v| to_tensor(&v)).collect()
}

/// A value viewing `t`'s buffer for the length of one call.
fn input_view(t: &Tensor) -> Result<SessionInputValue<'_>> {
    fn view<'a, T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: &[usize],
        data: &'a [T],
    ) -> std::result::Result<SessionInputValue<'a>, ort::Error> {
        TensorRef::from_array_view((shape.to_vec(), data)).map(Into::into)
    }
    let shape = t.shape();
    let value = match t.data() {
        TensorData::F32(v) => view(shape, v),
        TensorData::F16(v) => view(shape, v),
        TensorData::I8(v) => view(shape, v),
        TensorData::U8(v) => view(shape, v),
        TensorData::I32(v) => view(shape, v),
        TensorData::I64(v) => view(shape, v),
        TensorData::Bool(v) => view(shape, v),
    };
    value.map_err(|e| CoreError::Run(engine_message(e.message())))
}

/// A tensor of ONNX Runtime's own holding a copy of `t`.
fn owned_value(t: &Tensor) -> Result<SessionInputValue<'static>> {
    fn owned<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: &[usize],
        data: &[T],
    ) -> std::result::Result<SessionInputValue<'static>, ort::Error> {
        OrtTensor::from_array((shape.to_vec(), data.to_vec())).map(Into::into)
    }
    let shape = t.shape();
    let value = match t.data() {
        TensorData::F32(v) => owned(shape, v),
        TensorData::F16(v) => owned(shape, v),
        TensorData::I8(v) => owned(shape, v),
        TensorData::U8(v) => owned(shape, v),
        TensorData::I32(v) => owned(shape, v),
        TensorData::I64(v) => owned(shape, v),
        TensorData::Bool(v) => owned(shape, v),
    };
    value.map_err(|e| CoreError::Run(engine_message(e.message())))
}

/// An ONNX Runtime tensor that takes `t`'s buffer over, without a copy.
fn owned_tensor(t: Tensor) -> Result<DynValue> {
    fn owned<T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static>(
        shape: Vec<usize>,
        data: Vec<T>,
    ) -> std::result::Result<DynValue, ort::Error> {
        OrtTensor::from_array((shape, data)).map(|t| t.into_dyn())
    }
    let (shape, data) = t.into_parts();
    let value = match data {
        TensorData::F32(v) => owned(shape, v),
        TensorData::F16(v) => owned(shape, v),
        TensorData::I8(v) => owned(shape, v),
        TensorData::U8(v) => owned(shape, v),
        TensorData::I32(v) => owned(shape, v),
        TensorData::I64(v) => owned(shape, v),
        TensorData::Bool(v) => owned(shape, v),
    };
    value.map_err(|e| CoreError::Run(engine_message(e.message())))
}

/// The name, element type and shape of an output value, read without touching its data.
fn value_info(name: &str, value: &DynValue) -> Result<TensorInfo> {
    let ValueType::Tensor { ty, shape, .. } = value.dtype() else {
        return Err(CoreError::Run(format!("output '{name}' is not a tensor")));
    };
    Ok(TensorInfo {
        name: name.to_string(),
        dtype: dtype_of(*ty).map_err(CoreError::Run)?,
        shape: shape.iter().map(|&d| d.max(0) as usize).collect(),
    })
}

fn to_tensor(value: &DynValue) -> Result<Tensor> {
    fn extract<T: ort::value::PrimitiveTensorElementType + Copy>(
        value: &DynValue,
    ) -> Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value
            .try_extract_tensor::<T>()
            .map_err(|e| CoreError::Run(engine_message(e.message())))?;
        Ok((shape.iter().map(|&d| d as usize).collect(), data.to_vec()))
    }
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err(CoreError::Run("an output is not a tensor".into()));
    };
    let (shape, data) = match dtype_of(*ty).map_err(CoreError::Run)? {
        DType::F32 => extract::<f32>(value).map(|(s, d)| (s, TensorData::F32(d)))?,
        DType::F16 => extract::<f16>(value).map(|(s, d)| (s, TensorData::F16(d)))?,
        DType::I8 => extract::<i8>(value).map(|(s, d)| (s, TensorData::I8(d)))?,
        DType::U8 => extract::<u8>(value).map(|(s, d)| (s, TensorData::U8(d)))?,
        DType::I32 => extract::<i32>(value).map(|(s, d)| (s, TensorData::I32(d)))?,
        DType::I64 => extract::<i64>(value).map(|(s, d)| (s, TensorData::I64(d)))?,
        DType::Bool => extract::<bool>(value).map(|(s, d)| (s, TensorData::Bool(d)))?,
    };
    Tensor::new(shape, data)
}

fn dtype_of(ty: TensorElementType) -> std::result::Result<DType, String> {
    Ok(match ty {
        TensorElementType::Float32 => DType::F32,
        TensorElementType::Float16 => DType::F16,
        TensorElementType::Int8 => DType::I8,
        TensorElementType::Uint8 => DType::U8,
        TensorElementType::Int32 => DType::I32,
        TensorElementType::Int64 => DType::I64,
        TensorElementType::Bool => DType::Bool,
        other => {
            return Err(format!(
                "element type {other:?} is not supported by chipbench"
            ));
        }
    })
}
