//! Reads, transforms and writes ONNX: the protobuf messages ([`onnx`]), model files and their
//! declared inputs ([`model`]), shape inference and each operator's MACs ([`infer`]),
//! parameter, byte and MAC totals ([`stats`]), a graph builder ([`builder`]), the built-in
//! model suite ([`suite`]), test models with the traits of real exports ([`fixtures`]), and the
//! model variants derived by recipe — float16, int8 dynamic and static, pruning ([`variants`]).

pub mod builder;
pub mod error;
pub mod fixtures;
pub mod infer;
pub mod matmul;
pub mod model;
pub mod onnx;
pub mod stats;
pub mod suite;
pub mod variants;

pub use error::{Error, Result};
pub use infer::{Inference, infer_shapes};
pub use onnx::ModelProto;
pub use stats::ModelStats;
pub use suite::{Suite, SuiteModel};
