//! The contract between the runner and the inference engines it measures.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::feedback::{Feedback, FeedbackPath};
use crate::{Error, Result, Tensor, TensorInfo};

/// What kind of silicon a device is. A software rasterizer is never reported as a GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    Cpu,
    DiscreteGpu,
    IntegratedGpu,
    VirtualGpu,
    /// A GPU API implemented on the CPU (Mesa lavapipe, SwiftShader, WARP): its timings are not
    /// GPU timings.
    SoftwareRasterizer,
    /// A specialised unit reached through a vendor runtime (NPU, TPU, TensorRT engine...).
    Accelerator,
}

impl DeviceKind {
    pub fn label(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "CPU",
            DeviceKind::DiscreteGpu => "discrete GPU",
            DeviceKind::IntegratedGpu => "integrated GPU",
            DeviceKind::VirtualGpu => "virtual GPU",
            DeviceKind::SoftwareRasterizer => "software rasterizer (CPU), not a GPU",
            DeviceKind::Accelerator => "accelerator",
        }
    }
}

/// One place a backend can run a model: `cpu` for tract, an execution provider for ONNX Runtime,
/// an adapter for wgpu.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Device {
    /// Short id, unique within its backend (`cpu`, `cuda`, `0`).
    pub id: String,
    /// Human name (`llvmpipe (LLVM 15.0.6, 256 bits)`, `CUDAExecutionProvider`).
    pub name: String,
    pub kind: DeviceKind,
    /// Anything the user must know to read its figures (e.g. why it is skipped by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Why a backend or device cannot be used here, in words a user can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A model file and the concrete shapes its inputs are bound to.
#[derive(Clone, Debug)]
pub struct ModelSource {
    pub path: PathBuf,
    pub inputs: Vec<TensorInfo>,
}

/// How a session should be configured. Backends report what they actually did through
/// [`Session::threads`] and [`Session::settings`].
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// Requested intra-op threads; `None` lets the backend choose (and report) its default.
    pub threads: Option<usize>,
    /// Collect a per-operator profile where the backend can.
    pub profile: bool,
    /// Backend-specific settings (`key=value` from the command line).
    pub settings: BTreeMap<String, String>,
}

/// Time spent per operator type or node, from a backend's own profiler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorTime {
    pub op_type: String,
    pub node: String,
    /// Where it ran (execution provider, device).
    pub provider: String,
    pub total_ms: f64,
    /// Fraction of the profiled time.
    pub share: f64,
}

/// How many nodes of a model an engine assigned to one of its execution units (an ONNX Runtime
/// execution provider), as the engine reported it after partitioning the graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodePlacement {
    pub provider: String,
    pub nodes: usize,
}

/// An operator a backend has no implementation for, with the model's nodes that use it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Refusal {
    /// The operator as the backend names it, with the reason where there is one.
    pub operator: String,
    /// The nodes of the model that have it (empty where the backend does not say).
    pub nodes: Vec<String>,
}

/// What a backend would make of a model, found by loading it without running an inference
/// (`chipbench backends --coverage`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Coverage {
    /// Every operator has an implementation. `nodes`: the operator nodes it lowered, where the
    /// backend counts them.
    Supported { nodes: Option<usize> },
    /// Operators without an implementation, every one of them.
    Refused {
        nodes: Option<usize>,
        operators: Vec<Refusal>,
    },
    /// The model does not load for another reason (unreadable, shapes that do not bind...).
    Failed { reason: String },
    /// The backend has no device here to load it on.
    Unavailable { reason: String },
}

/// An inference engine.
pub trait Backend: Sync {
    /// Stable short name used on the command line and in results (`tract`, `ort`, `wgpu`).
    fn name(&self) -> &'static str;
    /// Version of the engine that will run the models.
    fn version(&self) -> String;
    /// The devices usable right now, or the reason none is.
    fn devices(&self) -> Result<Vec<Device>, Unavailable>;
    /// The devices `--backend NAME` (no device named) stands for, out of `devices`: all of them
    /// unless the backend prefers one (wgpu: its best adapter).
    fn default_devices(&self, devices: Vec<Device>) -> Vec<Device> {
        devices
    }
    /// Loads and prepares a model on one device, with the inputs bound to concrete shapes.
    fn load(
        &self,
        model: &ModelSource,
        device: &Device,
        options: &SessionOptions,
    ) -> Result<Box<dyn Session>>;
    /// Loads a model whose inputs change shape from one inference to the next along the
    /// dimensions the model names in `growing` (a decoder's new tokens and its cache), bound as
    /// `model.inputs` for the first inference; every other dimension keeps its bound size. Such a
    /// session is run with [`Session::run`] on inputs of any size along those dimensions. A
    /// backend that prepares a model for the shapes bound at load only refuses, saying so.
    fn load_growing(
        &self,
        _model: &ModelSource,
        _device: &Device,
        _options: &SessionOptions,
        growing: &[String],
    ) -> Result<Box<dyn Session>> {
        Err(Error::Unsupported(format!(
            "{} prepares a model for the input shapes bound at load, so it cannot run inputs \
             that grow from one inference to the next (dimensions {})",
            self.name(),
            growing.join(", ")
        )))
    }
    /// How the backend found its engine, one line per step tried (library search paths...), for
    /// `chipbench backends`.
    fn discovery(&self) -> Vec<String> {
        Vec::new()
    }
    /// Why `device_id` is not among [`Backend::devices`], when the backend can say more than "no
    /// such device" (an execution provider the loaded library was built without).
    fn missing_device_reason(&self, _device_id: &str) -> Option<String> {
        None
    }
    /// Why a load-generator cell gives each worker a session of its own rather than one shared
    /// session running inferences concurrently, in the terms of the engine's own API; recorded
    /// in the cell's `scenario_run.sessions_reason`.
    fn session_sharing(&self) -> &'static str {
        "per-worker: a chipbench Session runs with &mut self, so one session serves one \
         inference at a time"
    }
    /// The operators of `model` this backend would refuse, without running it. By default the
    /// model is loaded on the backend's preferred device and a refusal is reported whole (the
    /// engine's own message); a backend that can name every refused node overrides this.
    fn coverage(&self, model: &ModelSource) -> Coverage {
        let device = match self.devices() {
            Ok(devices) => self.default_devices(devices).into_iter().next(),
            Err(reason) => return Coverage::Unavailable { reason: reason.0 },
        };
        let Some(device) = device else {
            return Coverage::Unavailable {
                reason: format!("{} has no device here", self.name()),
            };
        };
        match self.load(model, &device, &SessionOptions::default()) {
            Ok(_) => Coverage::Supported { nodes: None },
            Err(Error::Unsupported(message)) => Coverage::Refused {
                nodes: None,
                operators: vec![Refusal {
                    operator: message,
                    nodes: Vec::new(),
                }],
            },
            Err(e) => Coverage::Failed {
                reason: e.to_string(),
            },
        }
    }
}

/// A prepared model, ready to run inferences one after another.
pub trait Session {
    fn inputs(&self) -> &[TensorInfo];
    fn outputs(&self) -> &[TensorInfo];
    /// Runs one inference, including the retrieval of every output to host memory.
    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>>;
    /// Checks `inputs` and converts them into the form the engine runs on, once, so that the
    /// runner's timed inferences ([`Session::run_prepared`]) hold the engine's work and not the
    /// conversion. The default keeps copies of the host tensors, which `run_prepared` then hands
    /// to [`Session::run`]: such a session converts inside every timed inference.
    fn prepare_inputs(&mut self, inputs: &[Tensor]) -> Result<PreparedInputs> {
        Ok(PreparedInputs::host(inputs))
    }
    /// Runs one inference on inputs this session prepared, including the retrieval of every
    /// output to host memory: the same outputs as [`Session::run`] on the original tensors.
    fn run_prepared(&mut self, inputs: &PreparedInputs) -> Result<Vec<Tensor>> {
        match inputs.as_host() {
            Some(host) => self.run(host),
            None => Err(Error::Run(
                "the inputs were prepared by another kind of session".into(),
            )),
        }
    }
    /// What one timed inference ([`Session::run_prepared`]) holds besides the engine's own
    /// computation, for the provenance of the latency: which conversions, copies and checks of
    /// the inputs and outputs it still does.
    fn timed_window(&self) -> &'static str {
        "Session::run on the host tensors: whatever conversion of the inputs into the engine's form \
         the session does happens inside every timed inference, as does the copy of every output to \
         host memory"
    }
    /// Runs one inference of a sequence whose `feedback` outputs feed the next inference's inputs
    /// (a decoder's cache), without handing those outputs to the caller. `inputs` has one entry
    /// per model input: on the first inference of a sequence (a new or reset `feedback`) every
    /// one is given; later the fed inputs are `None` and come from what `feedback` holds of the
    /// previous inference. Returns the other outputs as host tensors and `None` for the fed-back
    /// ones ([`Feedback::held`] tells their shapes). What is copied: [`Session::feedback_path`].
    /// The default is a host round trip through [`Session::run`].
    fn run_feeding_back(
        &mut self,
        inputs: Vec<Option<Tensor>>,
        feedback: &mut Feedback,
    ) -> Result<Vec<Option<Tensor>>> {
        let inputs = feedback.host_inputs(inputs, self.inputs())?;
        let outputs = self.run(&inputs)?;
        feedback.hold_host(outputs, self.outputs())
    }
    /// How [`Session::run_feeding_back`] carries the outputs of `pairs` (`(output, input)`) from
    /// one inference to the next, and the copies per inference, for the record.
    fn feedback_path(&self, pairs: &[(usize, usize)]) -> FeedbackPath {
        crate::feedback::host_round_trip(pairs)
    }
    /// The number of threads the engine really runs with.
    fn threads(&self) -> usize;
    /// Effective engine settings worth recording with the result (optimization level, spinning,
    /// execution provider options...).
    fn settings(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Device-side time of the last inference (GPU timestamp queries), where the engine has it.
    fn last_device_time(&self) -> Option<Duration> {
        None
    }
    /// How many inferences since load had their device time discarded as implausible (an end
    /// timestamp not after its start, or longer than the host's end-to-end time).
    fn discarded_device_times(&self) -> u64 {
        0
    }
    /// The per-operator profile collected so far, when profiling was requested and supported.
    fn operator_profile(&mut self) -> Result<Option<Vec<OperatorTime>>> {
        Ok(None)
    }
    /// Where the engine placed the model's nodes, when it has several places to put them.
    fn placement(&self) -> Option<Vec<NodePlacement>> {
        None
    }
    /// What the engine logged at warning level or above since the session was loaded (or this
    /// was last asked), one line each, for the cell's record instead of the terminal.
    fn engine_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// A cell's inputs in the form a session feeds its engine, made once by
/// [`Session::prepare_inputs`] before warm-up.
pub struct PreparedInputs(Prepared);

enum Prepared {
    /// The host tensors themselves, converted inside every inference.
    Host(Vec<Tensor>),
    /// The engine's own form: a tract tensor, ONNX Runtime values, bytes in a device layout.
    Engine(Box<dyn Any>),
}

impl PreparedInputs {
    /// Copies of the host tensors, for a session that converts nothing ahead.
    pub fn host(inputs: &[Tensor]) -> Self {
        PreparedInputs(Prepared::Host(inputs.to_vec()))
    }

    /// Inputs converted by a session into a type of its own.
    pub fn engine<T: Any>(prepared: T) -> Self {
        PreparedInputs(Prepared::Engine(Box::new(prepared)))
    }

    pub fn as_host(&self) -> Option<&[Tensor]> {
        match &self.0 {
            Prepared::Host(tensors) => Some(tensors),
            Prepared::Engine(_) => None,
        }
    }

    /// The session's own form, when these inputs were prepared as a `T`.
    pub fn as_engine<T: Any>(&self) -> Option<&T> {
        match &self.0 {
            Prepared::Engine(prepared) => prepared.downcast_ref(),
            Prepared::Host(_) => None,
        }
    }
}

impl fmt::Debug for PreparedInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Prepared::Host(tensors) => write!(f, "PreparedInputs::Host({} tensors)", tensors.len()),
            Prepared::Engine(_) => f.write_str("PreparedInputs::Engine(..)"),
        }
    }
}
