use std::path::PathBuf;

/// Everything that can go wrong between the adapter and the output tensors.
#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    /// No adapter, or not the one asked for.
    #[error("{0}")]
    NoAdapter(String),
    /// The adapter refused a device with the features and limits needed.
    #[error("could not open a device on {adapter}: {reason}")]
    Device { adapter: String, reason: String },
    /// A model file that tract cannot read or type with the bound input shapes.
    #[error("{}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    /// Every operator of the model this backend has no kernel for, in one message.
    #[error("{}: not supported by the wgpu backend: {}", path.display(), ops.join("; "))]
    Unsupported { path: PathBuf, ops: Vec<String> },
    /// A model input that does not fit (wrong type or shape, integers beyond the 32-bit range).
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    /// Shader compilation, pipeline creation or buffer allocation refused by wgpu.
    #[error("{context}: {reason}")]
    Gpu { context: String, reason: String },
    /// A `wgpu.*` setting that is unknown or has a bad value.
    #[error("setting '{key}': {reason}")]
    Setting { key: String, reason: String },
    /// A failure while an inference ran on the device or was read back.
    #[error("inference failed: {0}")]
    Run(String),
}

impl From<WgpuError> for chipbench_core::Error {
    fn from(e: WgpuError) -> Self {
        match e {
            WgpuError::Model { path, reason } => chipbench_core::Error::Model { path, reason },
            WgpuError::Input { name, reason } => chipbench_core::Error::Input { name, reason },
            WgpuError::Run(reason) => chipbench_core::Error::Run(reason),
            // Load-time refusals (unsupported operators, no adapter or device, a kernel wgpu
            // rejects, a bad setting): the message as it is, without "inference failed".
            other => chipbench_core::Error::Unsupported(other.to_string()),
        }
    }
}
