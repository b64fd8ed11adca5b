//! [`Session::run_feeding_back`](chipbench_core::Session::run_feeding_back) on ONNX Runtime: I/O
//! binding keeps the fed-back outputs (a decoder's KV cache) in the memory the session's
//! execution provider made them in, from one inference to the next.

use std::ffi::{CStr, c_char};

use chipbench_core::{
    Error as CoreError, Feedback, FeedbackPath, Result, Tensor, TensorData, TensorInfo,
};
use ort::AsPointer;
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session as OrtRawSession};
use ort::value::{DynValue, Tensor as OrtTensor, ValueType};

use super::{OrtSession, dtype_of, to_tensor};
use crate::error::{Error, engine_message};
use crate::library::check;

/// Where a session's execution providers want each input and place each output, host memory,
/// and the binding that uses them.
pub(super) struct Placement {
    /// In the session's input order.
    inputs: Vec<MemoryInfo<'static>>,
    outputs: Vec<MemoryInfo<'static>>,
    /// Where the outputs the caller reads are bound.
    host: MemoryInfo<'static>,
    /// Made on the first inference that feeds back.
    binding: Option<IoBinding>,
}

impl Placement {
    pub(super) fn of(session: &OrtRawSession) -> std::result::Result<Self, Error> {
        Ok(Placement {
            inputs: io_memory(session, false)?,
            outputs: io_memory(session, true)?,
            host: MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::CPUOutput,
            )?,
            binding: None,
        })
    }
}

impl OrtSession {
    /// ONNX Runtime's I/O binding: the host inputs are moved into ONNX Runtime tensors (their
    /// buffers taken over, no copy) and bound; each fed-back output is bound to the memory the
    /// session places it in, and the value it comes back as is bound as the next inference's
    /// input, where ONNX Runtime uses it in place when that is the memory the input is wanted in;
    /// the other outputs are bound to host memory and copied into host tensors.
    pub(super) fn run_bound(
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
        let binding = match &mut self.memory.binding {
            Some(binding) => binding,
            None => self
                .memory
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
                &self.memory.outputs[o]
            } else {
                &self.memory.host
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

    pub(super) fn bound_path(&self, pairs: &[(usize, usize)]) -> FeedbackPath {
        let mut copies = 0;
        let mut places = Vec::new();
        for &(o, k) in pairs {
            let Some(memory) = self.memory.outputs.get(o) else {
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
                .and_then(|j| self.memory.inputs.get(j));
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
}

/// The values of the fed-back outputs a [`Feedback`] holds between two inferences of an ONNX
/// Runtime session, per pair, in the memory the engine made them in.
struct HeldValues(Vec<DynValue>);

fn run_error(e: ort::Error) -> CoreError {
    CoreError::Run(crate::log::with_log(engine_message(e.message())))
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

/// An ONNX Runtime tensor that takes `t`'s buffer over, without a copy.
pub(super) fn owned_tensor(t: Tensor) -> Result<DynValue> {
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
