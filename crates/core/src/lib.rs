//! Shared vocabulary of chipbench: tensors, input specifications, the backend and session traits,
//! the result schema, statistics and accuracy metrics. Depends on no other chipbench crate.

pub mod accuracy;
pub mod backend;
pub mod error;
pub mod result;
pub mod spec;
pub mod stats;
pub mod tensor;

pub use backend::{
    Backend, Device, DeviceKind, ModelSource, NodePlacement, OperatorTime, PreparedInputs, Session,
    SessionOptions, Unavailable,
};
pub use error::{Error, Result};
pub use spec::{Dim, InputSpec, TensorInfo};
pub use tensor::{DType, Element, Tensor, TensorData};
