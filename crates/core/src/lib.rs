//! Shared vocabulary of chipbench: tensors, input specifications, the backend and session traits,
//! the result schema, statistics and accuracy metrics. Depends on no other chipbench crate.

pub mod accuracy;
pub mod backend;
pub mod decoder;
pub mod error;
pub mod feedback;
pub mod npz;
pub mod paired;
pub mod result;
pub mod settings;
pub mod spec;
pub mod stats;
pub mod task;
pub mod tensor;

pub use backend::{
    Backend, Coverage, Device, DeviceKind, ModelSource, NodePlacement, OperatorTime,
    PreparedInputs, Refusal, Session, SessionOptions, Unavailable,
};
pub use error::{Error, Result};
pub use feedback::{Feedback, FeedbackPath};
pub use spec::{Dim, InputSpec, TensorInfo};
pub use tensor::{DType, Element, Tensor, TensorData};

/// Bytes in binary units (`12.3 MiB`).
pub fn format_bytes(bytes: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024.0 && unit < units.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", units[unit])
    }
}
