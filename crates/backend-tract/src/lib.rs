//! The CPU and edge backend: ONNX models through tract, pure Rust, available everywhere.
//!
//! Input facts are bound from the model source's concrete shapes; output and `value_info` shape
//! annotations in the file are ignored (exporters often get them wrong, and tract infers them).
//! Threads: tract parallelises matrix multiplications only (`multithread-mm`); the thread count
//! a session reports is the size of the pool it runs with.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use chipbench_core::spec::check_input;
use chipbench_core::{
    Backend, DType, Device, DeviceKind, Error, ModelSource, PreparedInputs, Result, Session,
    SessionOptions, Tensor, TensorData, TensorInfo, Unavailable,
};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::unimpl::UnimplementedOp;
use tract_onnx::tract_core::plan::SimpleState;
use tract_onnx::tract_core::runtime::RunOptions;

/// The tract release this crate is built against (pinned with `=` in the workspace manifest).
pub const TRACT_VERSION: &str = "0.23.9";

#[derive(Debug, Default)]
pub struct TractBackend;

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }
    fn session_sharing(&self) -> &'static str {
        "per-worker: tract's SimplePlan::run takes &self (an Arc'd plan) but spawns a fresh \
         SimpleState for each run; chipbench's session keeps one state and reuses it (run takes \
         &mut self), so each worker holds a session, plan and state of its own"
    }

    fn version(&self) -> String {
        TRACT_VERSION.to_string()
    }

    fn devices(&self) -> Result<Vec<Device>, Unavailable> {
        Ok(vec![Device {
            id: "cpu".into(),
            name: format!("CPU ({})", std::env::consts::ARCH),
            kind: DeviceKind::Cpu,
            note: None,
        }])
    }

    fn load(
        &self,
        model: &ModelSource,
        _device: &Device,
        options: &SessionOptions,
    ) -> Result<Box<dyn Session>> {
        Ok(Box::new(TractSession::load(model, options)?))
    }

    /// tract keeps the growing dimensions symbolic (as the model names them, expressions such
    /// as `past_sequence + sequence` included) through optimization; each run resolves them
    /// from its inputs' shapes.
    fn load_growing(
        &self,
        model: &ModelSource,
        _device: &Device,
        options: &SessionOptions,
        growing: &[String],
    ) -> Result<Box<dyn Session>> {
        Ok(Box::new(TractSession::load_with(model, options, growing)?))
    }
}

type Plan = Arc<TypedSimplePlan>;

/// What a session runs one prepared inference on: the inputs converted into tract tensors once.
/// Every inference shares them (reference-counted), so tract copies an input only when an
/// operator would overwrite it in place.
struct TractInputs(TVec<TValue>);

/// What one timed inference of a tract session holds.
const TIMED_WINDOW: &str = "tract's SimpleState::run on the inputs converted into tract tensors once \
     before warm-up and shared with every inference (an operator that would work in place on an input \
     copies it first), then the copy of every output into a host tensor";

pub struct TractSession {
    state: TypedSimpleState,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    threads: usize,
}

impl TractSession {
    pub fn load(source: &ModelSource, options: &SessionOptions) -> Result<Self> {
        Self::load_with(source, options, &[])
    }

    /// Loads with the model's dimensions named in `growing` left symbolic.
    pub fn load_with(
        source: &ModelSource,
        options: &SessionOptions,
        growing: &[String],
    ) -> Result<Self> {
        let path = &source.path;
        let fail = |e: &dyn std::fmt::Display| Error::model(path, e);
        if !path.is_file() {
            return Err(Error::model(path, "no such file"));
        }
        let mut model = tract_onnx::onnx()
            .with_ignore_output_shapes(true)
            .with_ignore_output_types(true)
            .with_ignore_value_info(true)
            .model_for_path(path)
            .map_err(|e| fail(&root_cause(&e)))?;
        reject_unimplemented(&model).map_err(|e| fail(&e))?;

        let names: Vec<String> = model
            .input_outlets()
            .map_err(|e| fail(&e))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        // The sizes of the growing dimensions in the first run, which the outputs' shapes are
        // reported at.
        let mut first_run = SymbolValues::default();
        for info in &source.inputs {
            let index = names.iter().position(|n| n == &info.name).ok_or_else(|| {
                Error::input(
                    &info.name,
                    format!("the model has no such input (it has {names:?})"),
                )
            })?;
            let declared = model.input_fact(index).map_err(|e| fail(&e))?.shape.clone();
            let mut dims: TVec<TDim> = TVec::new();
            for (axis, &size) in info.shape.iter().enumerate() {
                match declared.dim(axis) {
                    Some(tract_onnx::tract_hir::infer::GenericFactoid::Only(d))
                        if d.symbols().iter().any(|s| growing.contains(&s.to_string())) =>
                    {
                        // A dimension that is one symbol takes this size in the first run.
                        if let TDim::Sym(symbol) = &d {
                            first_run = first_run.clone().with(&symbol.clone(), size as i64);
                        }
                        dims.push(d);
                    }
                    _ => dims.push(size.to_dim()),
                }
            }
            let fact = InferenceFact::dt_shape(datum_type(info.dtype), dims);
            model.set_input_fact(index, fact).map_err(|e| fail(&e))?;
        }
        if let Some(missing) = names
            .iter()
            .find(|n| !source.inputs.iter().any(|i| &i.name == *n))
        {
            return Err(Error::input(
                missing,
                "the model needs this input but no shape was bound",
            ));
        }
        let typed = model.into_optimized().map_err(|e| fail(&root_cause(&e)))?;
        let outputs = (0..typed.outputs.len())
            .map(|i| {
                let fact = typed.output_fact(i).map_err(|e| fail(&e))?;
                let outlet = typed.outputs[i];
                let name = typed
                    .outlet_label(outlet)
                    .map(str::to_string)
                    .unwrap_or_else(|| typed.node(outlet.node).name.clone());
                let shape = fact
                    .shape
                    .eval_to_usize(&first_run)
                    .map(|s| s.to_vec())
                    .map_err(|_| {
                        fail(&format!(
                            "output '{name}' has a symbolic shape {:?}",
                            fact.shape
                        ))
                    })?;
                Ok(TensorInfo {
                    name,
                    dtype: dtype_of(fact.datum_type).map_err(|e| fail(&e))?,
                    shape,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let threads = options.threads.unwrap_or(1).max(1);
        let executor = if threads > 1 {
            catch_unwind(|| Executor::multithread(threads))
                .map_err(|_| fail(&format!("could not start a pool of {threads} threads")))?
        } else {
            Executor::SingleThread
        };
        let run_options = RunOptions {
            executor: Some(executor),
            ..Default::default()
        };
        let plan: Plan = typed
            .into_runnable_with_options(&run_options)
            .map_err(|e| fail(&e))?;
        let state = SimpleState::new(&plan).map_err(|e| fail(&e))?;
        Ok(TractSession {
            state,
            inputs: source.inputs.clone(),
            outputs,
            threads,
        })
    }

    fn run_values(&mut self, values: TVec<TValue>) -> Result<Vec<Tensor>> {
        // tract reports some shape errors by panicking deep inside an operator.
        let outputs = catch_unwind(AssertUnwindSafe(|| self.state.run(values)))
            .map_err(|payload| {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                Error::Run(format!("tract panicked while running the model: {message}"))
            })?
            .map_err(|e| Error::Run(root_cause(&e)))?;
        outputs.iter().map(|t| from_tract(t)).collect()
    }
}

impl Session for TractSession {
    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>> {
        let values = inputs
            .iter()
            .map(|t| to_tract(t).map(TValue::from))
            .collect::<Result<TVec<_>>>()?;
        self.run_values(values)
    }

    fn prepare_inputs(&mut self, inputs: &[Tensor]) -> Result<PreparedInputs> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Run(format!(
                "{} inputs given, the model takes {}",
                inputs.len(),
                self.inputs.len()
            )));
        }
        let values = self
            .inputs
            .iter()
            .zip(inputs)
            .map(|(info, t)| {
                check_input(info, t)?;
                to_tract(t).map(TValue::from)
            })
            .collect::<Result<TVec<_>>>()?;
        Ok(PreparedInputs::engine(TractInputs(values)))
    }

    fn run_prepared(&mut self, inputs: &PreparedInputs) -> Result<Vec<Tensor>> {
        let values = inputs
            .as_engine::<TractInputs>()
            .ok_or_else(|| Error::Run("the inputs were not prepared by a tract session".into()))?;
        self.run_values(values.0.clone())
    }

    fn timed_window(&self) -> &'static str {
        TIMED_WINDOW
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn settings(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "optimization".into(),
                "tract into_optimized (declutter + codegen)".into(),
            ),
            (
                "parallelism".into(),
                if self.threads > 1 {
                    format!(
                        "{} threads for matrix multiplications (multithread-mm)",
                        self.threads
                    )
                } else {
                    "single thread".into()
                },
            ),
        ])
    }
}

/// tract leaves operators it does not know as placeholders that fail late with a long message;
/// name them all up front instead.
fn reject_unimplemented(model: &InferenceModel) -> std::result::Result<(), String> {
    let unknown: Vec<String> = model
        .nodes()
        .iter()
        .filter(|n| n.op_as::<UnimplementedOp>().is_some())
        .map(|n| {
            let op = n.op.name();
            let op = op
                .trim_start_matches("Unimplemented(")
                .trim_end_matches(')');
            format!("{op} (node '{}')", n.name)
        })
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "operator not supported by tract: {}",
            unknown.join(", ")
        ))
    }
}

/// tract errors are chains of context; the last link is the cause a user can act on, the first
/// says where.
fn root_cause(e: &TractError) -> String {
    let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
    match chain.as_slice() {
        [] => "unknown tract error".into(),
        [only] => only.clone(),
        [first, .., last] => format!("{last} ({first})"),
    }
}

fn datum_type(dtype: DType) -> DatumType {
    match dtype {
        DType::F32 => f32::datum_type(),
        DType::F16 => f16::datum_type(),
        DType::I8 => i8::datum_type(),
        DType::U8 => u8::datum_type(),
        DType::I32 => i32::datum_type(),
        DType::I64 => i64::datum_type(),
        DType::Bool => bool::datum_type(),
    }
}

fn dtype_of(dt: DatumType) -> std::result::Result<DType, String> {
    Ok(match dt {
        DatumType::F32 => DType::F32,
        DatumType::F16 => DType::F16,
        DatumType::I8 => DType::I8,
        DatumType::U8 => DType::U8,
        DatumType::I32 => DType::I32,
        DatumType::I64 => DType::I64,
        DatumType::Bool => DType::Bool,
        other => {
            return Err(format!(
                "output type {other:?} is not supported by chipbench"
            ));
        }
    })
}

fn to_tract(t: &Tensor) -> Result<tract_onnx::prelude::Tensor> {
    let shape = t.shape();
    let converted = match t.data() {
        TensorData::F32(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::F16(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::I8(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::U8(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::I32(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::I64(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
        TensorData::Bool(v) => tract_onnx::prelude::Tensor::from_shape(shape, v),
    };
    converted.map_err(|e| Error::Run(e.to_string()))
}

fn from_tract(t: &tract_onnx::prelude::Tensor) -> Result<Tensor> {
    fn values<T: Datum + Copy>(t: &tract_onnx::prelude::Tensor) -> Result<Vec<T>> {
        Ok(t.to_plain_array_view::<T>()
            .map_err(|e| Error::Run(e.to_string()))?
            .iter()
            .copied()
            .collect())
    }
    let shape = t.shape().to_vec();
    let data = match dtype_of(t.datum_type()).map_err(Error::Run)? {
        DType::F32 => TensorData::F32(values(t)?),
        DType::F16 => TensorData::F16(values(t)?),
        DType::I8 => TensorData::I8(values(t)?),
        DType::U8 => TensorData::U8(values(t)?),
        DType::I32 => TensorData::I32(values(t)?),
        DType::I64 => TensorData::I64(values(t)?),
        DType::Bool => TensorData::Bool(values(t)?),
    };
    Tensor::new(shape, data)
}
