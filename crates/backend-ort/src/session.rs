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
use ort::session::builder::SessionBuilder;
use ort::session::{Session as OrtRawSession, SessionInputValue};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use crate::error::{Error, engine_message};
use crate::library::{Runtime, check};
use crate::options::OrtSettings;
use crate::profile;
use crate::provider::Provider;

mod binding;

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
    /// Where the execution providers want each input and place each output, and the I/O
    /// binding of [`Session::run_feeding_back`].
    memory: binding::Placement,
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
        let memory = binding::Placement::of(&session).map_err(fail)?;
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
            memory,
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

    /// ONNX Runtime's I/O binding (see [`binding`]).
    fn run_feeding_back(
        &mut self,
        inputs: Vec<Option<Tensor>>,
        feedback: &mut Feedback,
    ) -> Result<Vec<Option<Tensor>>> {
        self.run_bound(inputs, feedback)
    }

    fn feedback_path(&self, pairs: &[(usize, usize)]) -> FeedbackPath {
        self.bound_path(pairs)
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
    binding::owned_tensor(t.clone()).map(Into::into)
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
