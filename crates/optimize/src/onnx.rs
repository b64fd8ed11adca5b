//! The ONNX protobuf messages (IR version 11, `onnx.proto`), declared by hand with prost, and
//! small helpers to read and build tensors and attributes.
//!
//! `onnx.proto` is proto2: every optional field keeps its presence (`Option`), so a field written
//! explicitly with its default value (an empty `domain`, a zero `model_version`) is written back.
//! Repeated numbers are unpacked unless `onnx.proto` marks them `[packed = true]`. prost writes
//! fields in tag order, as protobuf's own writers do, so decoding and re-encoding a model gives
//! the same bytes. The one message where tag order needs a hand-written codec is [`TypeProto`].

use std::borrow::Cow;

use chipbench_core::DType;
use half::{bf16, f16};
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType};

use crate::error::{Error, Result};

/// The IR version the builder writes: IR 8 (ONNX 1.10) is read by every ONNX Runtime and tract
/// release we support, and has everything the suite needs.
pub const IR_VERSION: i64 = 8;

#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Set in function bodies: the attribute takes the value of the caller's attribute of that
    /// name.
    #[prost(string, optional, tag = "21")]
    pub ref_attr_name: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub doc_string: Option<String>,
    #[prost(enumeration = "attribute_proto::AttributeType", optional, tag = "20")]
    pub r#type: Option<i32>,
    #[prost(float, optional, tag = "2")]
    pub f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    pub i: Option<i64>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub s: Option<Vec<u8>>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(message, optional, tag = "6")]
    pub g: Option<GraphProto>,
    #[prost(message, optional, tag = "22")]
    pub sparse_tensor: Option<SparseTensorProto>,
    #[prost(message, optional, tag = "14")]
    pub tp: Option<TypeProto>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "10")]
    pub tensors: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub graphs: Vec<GraphProto>,
    #[prost(message, repeated, tag = "23")]
    pub sparse_tensors: Vec<SparseTensorProto>,
    #[prost(message, repeated, tag = "15")]
    pub type_protos: Vec<TypeProto>,
}

pub mod attribute_proto {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum AttributeType {
        Undefined = 0,
        Float = 1,
        Int = 2,
        String = 3,
        Tensor = 4,
        Graph = 5,
        SparseTensor = 11,
        TypeProto = 13,
        Floats = 6,
        Ints = 7,
        Strings = 8,
        Tensors = 9,
        Graphs = 10,
        SparseTensors = 12,
        TypeProtos = 14,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ValueInfoProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
    #[prost(string, optional, tag = "3")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "4")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, optional, tag = "3")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub op_type: Option<String>,
    #[prost(string, optional, tag = "7")]
    pub domain: Option<String>,
    #[prost(string, optional, tag = "8")]
    pub overload: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "9")]
    pub metadata_props: Vec<StringStringEntryProto>,
    #[prost(message, repeated, tag = "10")]
    pub device_configurations: Vec<NodeDeviceConfigurationProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IntIntListEntryProto {
    #[prost(int64, optional, tag = "1")]
    pub key: Option<i64>,
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub value: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeDeviceConfigurationProto {
    #[prost(string, optional, tag = "1")]
    pub configuration_id: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub sharding_spec: Vec<ShardingSpecProto>,
    #[prost(int32, optional, tag = "3")]
    pub pipeline_stage: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardingSpecProto {
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    #[prost(int64, repeated, packed = "false", tag = "2")]
    pub device: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub index_to_device_group_map: Vec<IntIntListEntryProto>,
    #[prost(message, repeated, tag = "4")]
    pub sharded_dim: Vec<ShardedDimProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ShardedDimProto {
    #[prost(int64, optional, tag = "1")]
    pub axis: Option<i64>,
    #[prost(message, repeated, tag = "2")]
    pub simple_sharding: Vec<SimpleShardedDimProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleShardedDimProto {
    #[prost(oneof = "simple_sharded_dim_proto::Dim", tags = "1, 2")]
    pub dim: Option<simple_sharded_dim_proto::Dim>,
    #[prost(int64, optional, tag = "3")]
    pub num_shards: Option<i64>,
}

pub mod simple_sharded_dim_proto {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Dim {
        #[prost(int64, tag = "1")]
        DimValue(i64),
        #[prost(string, tag = "2")]
        DimParam(String),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainingInfoProto {
    #[prost(message, optional, tag = "1")]
    pub initialization: Option<GraphProto>,
    #[prost(message, optional, tag = "2")]
    pub algorithm: Option<GraphProto>,
    #[prost(message, repeated, tag = "3")]
    pub initialization_binding: Vec<StringStringEntryProto>,
    #[prost(message, repeated, tag = "4")]
    pub update_binding: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    #[prost(int64, optional, tag = "1")]
    pub ir_version: Option<i64>,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, optional, tag = "2")]
    pub producer_name: Option<String>,
    #[prost(string, optional, tag = "3")]
    pub producer_version: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "5")]
    pub model_version: Option<i64>,
    #[prost(string, optional, tag = "6")]
    pub doc_string: Option<String>,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
    #[prost(message, repeated, tag = "20")]
    pub training_info: Vec<TrainingInfoProto>,
    #[prost(message, repeated, tag = "25")]
    pub functions: Vec<FunctionProto>,
    #[prost(message, repeated, tag = "26")]
    pub configuration: Vec<DeviceConfigurationProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeviceConfigurationProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(int32, optional, tag = "2")]
    pub num_devices: Option<i32>,
    #[prost(string, repeated, tag = "3")]
    pub device: Vec<String>,
}

#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct StringStringEntryProto {
    #[prost(string, optional, tag = "1")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorAnnotation {
    #[prost(string, optional, tag = "1")]
    pub tensor_name: Option<String>,
    #[prost(message, repeated, tag = "2")]
    pub quant_parameter_tensor_names: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, optional, tag = "2")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "15")]
    pub sparse_initializer: Vec<SparseTensorProto>,
    #[prost(string, optional, tag = "10")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "13")]
    pub value_info: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "14")]
    pub quantization_annotation: Vec<TensorAnnotation>,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    /// A [`tensor_proto::DataType`] code; kept as a number because `onnx.proto` declares it so
    /// and newer files may hold codes this crate does not know.
    #[prost(int32, optional, tag = "2")]
    pub data_type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    pub segment: Option<tensor_proto::Segment>,
    #[prost(float, repeated, packed = "true", tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, packed = "true", tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, packed = "true", tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, optional, tag = "8")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "12")]
    pub doc_string: Option<String>,
    #[prost(bytes = "vec", optional, tag = "9")]
    pub raw_data: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "13")]
    pub external_data: Vec<StringStringEntryProto>,
    #[prost(enumeration = "tensor_proto::DataLocation", optional, tag = "14")]
    pub data_location: Option<i32>,
    #[prost(double, repeated, packed = "true", tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, packed = "true", tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(message, repeated, tag = "16")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

pub mod tensor_proto {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataType {
        Undefined = 0,
        Float = 1,
        Uint8 = 2,
        Int8 = 3,
        Uint16 = 4,
        Int16 = 5,
        Int32 = 6,
        Int64 = 7,
        String = 8,
        Bool = 9,
        Float16 = 10,
        Double = 11,
        Uint32 = 12,
        Uint64 = 13,
        Complex64 = 14,
        Complex128 = 15,
        Bfloat16 = 16,
        Float8e4m3fn = 17,
        Float8e4m3fnuz = 18,
        Float8e5m2 = 19,
        Float8e5m2fnuz = 20,
        Uint4 = 21,
        Int4 = 22,
        Float4e2m1 = 23,
        Float8e8m0 = 24,
        Uint2 = 25,
        Int2 = 26,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Segment {
        #[prost(int64, optional, tag = "1")]
        pub begin: Option<i64>,
        #[prost(int64, optional, tag = "2")]
        pub end: Option<i64>,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum DataLocation {
        Default = 0,
        External = 1,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SparseTensorProto {
    /// The non-zero values: a 1-D tensor of NNZ elements whose `dims` are `[NNZ]`.
    #[prost(message, optional, tag = "1")]
    pub values: Option<TensorProto>,
    /// Int64 indices: `[NNZ, rank]` coordinates or `[NNZ]` linearized.
    #[prost(message, optional, tag = "2")]
    pub indices: Option<TensorProto>,
    /// The shape of the dense tensor.
    #[prost(int64, repeated, packed = "false", tag = "3")]
    pub dims: Vec<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<tensor_shape_proto::Dimension>,
}

pub mod tensor_shape_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dimension {
        #[prost(oneof = "dimension::Value", tags = "1, 2")]
        pub value: Option<dimension::Value>,
        #[prost(string, optional, tag = "3")]
        pub denotation: Option<String>,
    }

    pub mod dimension {
        #[derive(Clone, PartialEq, prost::Oneof)]
        pub enum Value {
            #[prost(int64, tag = "1")]
            DimValue(i64),
            #[prost(string, tag = "2")]
            DimParam(String),
        }
    }
}

/// The type of a value. Its `Message` codec is written by hand below: `denotation` (tag 6) sits
/// between the tags of the `value` oneof (1, 4, 5 before it; 7, 8, 9 after it), and protobuf
/// writes fields in tag order, which prost's derive does not do across a oneof.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct TypeProto {
    pub value: Option<type_proto::Value>,
    pub denotation: Option<String>,
}

pub mod type_proto {
    use super::{TensorShapeProto, TypeProto};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Tensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sequence {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Map {
        #[prost(int32, optional, tag = "1")]
        pub key_type: Option<i32>,
        #[prost(message, optional, boxed, tag = "2")]
        pub value_type: Option<Box<TypeProto>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Optional {
        #[prost(message, optional, boxed, tag = "1")]
        pub elem_type: Option<Box<TypeProto>>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SparseTensor {
        #[prost(int32, optional, tag = "1")]
        pub elem_type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub shape: Option<TensorShapeProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Opaque {
        #[prost(string, optional, tag = "1")]
        pub domain: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub name: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Value {
        #[prost(message, tag = "1")]
        TensorType(Tensor),
        #[prost(message, tag = "4")]
        SequenceType(Sequence),
        #[prost(message, tag = "5")]
        MapType(Map),
        #[prost(message, tag = "9")]
        OptionalType(Optional),
        #[prost(message, tag = "8")]
        SparseTensorType(SparseTensor),
        #[prost(message, tag = "7")]
        OpaqueType(Opaque),
    }

    impl Value {
        pub(super) fn tag(&self) -> u32 {
            match self {
                Value::TensorType(_) => 1,
                Value::SequenceType(_) => 4,
                Value::MapType(_) => 5,
                Value::OpaqueType(_) => 7,
                Value::SparseTensorType(_) => 8,
                Value::OptionalType(_) => 9,
            }
        }
    }
}

const TYPE_PROTO_DENOTATION: u32 = 6;

impl TypeProto {
    fn value_before_denotation(&self) -> Option<&type_proto::Value> {
        self.value
            .as_ref()
            .filter(|v| v.tag() < TYPE_PROTO_DENOTATION)
    }

    fn value_after_denotation(&self) -> Option<&type_proto::Value> {
        self.value
            .as_ref()
            .filter(|v| v.tag() > TYPE_PROTO_DENOTATION)
    }
}

impl prost::Message for TypeProto {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(v) = self.value_before_denotation() {
            v.encode(buf);
        }
        if let Some(d) = &self.denotation {
            prost::encoding::string::encode(TYPE_PROTO_DENOTATION, d, buf);
        }
        if let Some(v) = self.value_after_denotation() {
            v.encode(buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        match tag {
            1 | 4 | 5 | 7 | 8 | 9 => {
                type_proto::Value::merge(&mut self.value, tag, wire_type, buf, ctx)
            }
            TYPE_PROTO_DENOTATION => prost::encoding::string::merge(
                wire_type,
                self.denotation.get_or_insert_with(String::new),
                buf,
                ctx,
            ),
            _ => prost::encoding::skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        self.value.as_ref().map_or(0, |v| v.encoded_len())
            + self.denotation.as_ref().map_or(0, |d| {
                prost::encoding::string::encoded_len(TYPE_PROTO_DENOTATION, d)
            })
    }

    fn clear(&mut self) {
        self.value = None;
        self.denotation = None;
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct OperatorSetIdProto {
    #[prost(string, optional, tag = "1")]
    pub domain: Option<String>,
    #[prost(int64, optional, tag = "2")]
    pub version: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FunctionProto {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, repeated, tag = "4")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "5")]
    pub output: Vec<String>,
    /// Names of attributes without default values.
    #[prost(string, repeated, tag = "6")]
    pub attribute: Vec<String>,
    /// Attributes with default values.
    #[prost(message, repeated, tag = "11")]
    pub attribute_proto: Vec<AttributeProto>,
    #[prost(message, repeated, tag = "7")]
    pub node: Vec<NodeProto>,
    #[prost(string, optional, tag = "8")]
    pub doc_string: Option<String>,
    #[prost(message, repeated, tag = "9")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, optional, tag = "10")]
    pub domain: Option<String>,
    #[prost(string, optional, tag = "13")]
    pub overload: Option<String>,
    #[prost(message, repeated, tag = "12")]
    pub value_info: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "14")]
    pub metadata_props: Vec<StringStringEntryProto>,
}

pub use attribute_proto::AttributeType;
pub use tensor_proto::DataType;

impl DataType {
    /// The ONNX code of a chipbench element type.
    pub fn from_dtype(dtype: DType) -> DataType {
        match dtype {
            DType::F32 => DataType::Float,
            DType::F16 => DataType::Float16,
            DType::I8 => DataType::Int8,
            DType::U8 => DataType::Uint8,
            DType::I32 => DataType::Int32,
            DType::I64 => DataType::Int64,
            DType::Bool => DataType::Bool,
        }
    }

    /// The chipbench element type, for the ONNX types a tensor can hold in chipbench.
    pub fn to_dtype(self) -> Option<DType> {
        Some(match self {
            DataType::Float => DType::F32,
            DataType::Float16 => DType::F16,
            DataType::Int8 => DType::I8,
            DataType::Uint8 => DType::U8,
            DataType::Int32 => DType::I32,
            DataType::Int64 => DType::I64,
            DataType::Bool => DType::Bool,
            _ => return None,
        })
    }

    /// A code read from a file; unknown codes (newer ONNX) are kept as an error naming them.
    pub fn from_code(code: i32) -> Result<DataType> {
        DataType::try_from(code)
            .map_err(|_| Error::unsupported(format!("unknown ONNX element type code {code}")))
    }

    /// Bits per element: 4 for `INT4`, 8 for `INT8`, 64 for `COMPLEX64`'s pair of floats.
    /// `None` for strings (variable length) and `UNDEFINED`.
    pub fn bits(self) -> Option<u64> {
        Some(match self {
            DataType::Undefined | DataType::String => return None,
            DataType::Uint2 | DataType::Int2 => 2,
            DataType::Uint4 | DataType::Int4 | DataType::Float4e2m1 => 4,
            DataType::Uint8
            | DataType::Int8
            | DataType::Bool
            | DataType::Float8e4m3fn
            | DataType::Float8e4m3fnuz
            | DataType::Float8e5m2
            | DataType::Float8e5m2fnuz
            | DataType::Float8e8m0 => 8,
            DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => 16,
            DataType::Float | DataType::Int32 | DataType::Uint32 => 32,
            DataType::Int64 | DataType::Uint64 | DataType::Double | DataType::Complex64 => 64,
            DataType::Complex128 => 128,
        })
    }

    /// The lowercase ONNX name (`float`, `int8`, `bfloat16`), as results and reports print it.
    pub fn name(self) -> &'static str {
        match self {
            DataType::Undefined => "undefined",
            DataType::Float => "float",
            DataType::Uint8 => "uint8",
            DataType::Int8 => "int8",
            DataType::Uint16 => "uint16",
            DataType::Int16 => "int16",
            DataType::Int32 => "int32",
            DataType::Int64 => "int64",
            DataType::String => "string",
            DataType::Bool => "bool",
            DataType::Float16 => "float16",
            DataType::Double => "double",
            DataType::Uint32 => "uint32",
            DataType::Uint64 => "uint64",
            DataType::Complex64 => "complex64",
            DataType::Complex128 => "complex128",
            DataType::Bfloat16 => "bfloat16",
            DataType::Float8e4m3fn => "float8e4m3fn",
            DataType::Float8e4m3fnuz => "float8e4m3fnuz",
            DataType::Float8e5m2 => "float8e5m2",
            DataType::Float8e5m2fnuz => "float8e5m2fnuz",
            DataType::Uint4 => "uint4",
            DataType::Int4 => "int4",
            DataType::Float4e2m1 => "float4e2m1",
            DataType::Float8e8m0 => "float8e8m0",
            DataType::Uint2 => "uint2",
            DataType::Int2 => "int2",
        }
    }

    /// Bytes taken by `n` elements, rounding sub-byte types up to whole bytes.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        self.bits().map(|b| (n * b).div_ceil(8))
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            DataType::Float
                | DataType::Float16
                | DataType::Bfloat16
                | DataType::Double
                | DataType::Float8e4m3fn
                | DataType::Float8e4m3fnuz
                | DataType::Float8e5m2
                | DataType::Float8e5m2fnuz
                | DataType::Float8e8m0
                | DataType::Float4e2m1
        )
    }
}

impl TensorProto {
    pub fn elem_type(&self) -> Result<DataType> {
        DataType::from_code(self.data_type()).map_err(|e| Error::tensor(self.name(), e))
    }

    /// The dims as sizes; a negative dim is an error naming the tensor.
    pub fn shape(&self) -> Result<Vec<usize>> {
        dims_to_shape(&self.dims).map_err(|reason| Error::tensor(self.name(), reason))
    }

    /// The number of elements (1 for a scalar, whose `dims` is empty).
    pub fn element_count(&self) -> u64 {
        self.dims.iter().map(|&d| d.max(0) as u64).product()
    }

    pub fn is_external(&self) -> bool {
        self.data_location == Some(tensor_proto::DataLocation::External as i32)
    }

    /// The data as `raw_data` would hold it (little-endian, sub-byte types packed), whichever
    /// field it is stored in. A tensor whose data lives in an external file is an error here:
    /// read it with [`crate::model::tensor_bytes`], which knows the model's folder.
    pub fn inline_bytes(&self) -> Result<Cow<'_, [u8]>> {
        if self.is_external() {
            return Err(Error::tensor(
                self.name(),
                "its data is in an external file; read it relative to the model's folder",
            ));
        }
        if let Some(raw) = &self.raw_data {
            return Ok(Cow::Borrowed(raw));
        }
        let dt = self.elem_type()?;
        let bytes = match dt {
            DataType::Float | DataType::Complex64 => le_bytes(&self.float_data, f32::to_le_bytes),
            DataType::Double | DataType::Complex128 => {
                le_bytes(&self.double_data, f64::to_le_bytes)
            }
            DataType::Int64 => le_bytes(&self.int64_data, i64::to_le_bytes),
            DataType::Uint64 => le_bytes(&self.uint64_data, u64::to_le_bytes),
            DataType::Uint32 => le_bytes(&self.uint64_data, |v| (v as u32).to_le_bytes()),
            DataType::Int32 => le_bytes(&self.int32_data, i32::to_le_bytes),
            DataType::Uint16 | DataType::Int16 | DataType::Float16 | DataType::Bfloat16 => {
                le_bytes(&self.int32_data, |v| (v as u16).to_le_bytes())
            }
            // 8-bit types hold one element per int32; sub-byte types hold one packed byte.
            DataType::Uint8
            | DataType::Int8
            | DataType::Bool
            | DataType::Float8e4m3fn
            | DataType::Float8e4m3fnuz
            | DataType::Float8e5m2
            | DataType::Float8e5m2fnuz
            | DataType::Float8e8m0
            | DataType::Uint4
            | DataType::Int4
            | DataType::Float4e2m1
            | DataType::Uint2
            | DataType::Int2 => self.int32_data.iter().map(|&v| v as u8).collect(),
            DataType::String | DataType::Undefined => {
                return Err(Error::tensor(
                    self.name(),
                    format!("{} data has no byte form", dt.name()),
                ));
            }
        };
        Ok(Cow::Owned(bytes))
    }

    /// The values as f32, for FLOAT, FLOAT16, BFLOAT16 and DOUBLE tensors stored inline.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        values_f32(self, &self.inline_bytes()?)
    }

    /// The values as i64, for integer and boolean tensors stored inline.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        values_i64(self, &self.inline_bytes()?)
    }

    /// A FLOAT tensor with its data in `raw_data`.
    pub fn from_f32(name: &str, shape: &[usize], values: &[f32]) -> TensorProto {
        Self::from_raw(
            name,
            DataType::Float,
            shape,
            le_bytes(values, f32::to_le_bytes),
        )
    }

    /// An INT64 tensor with its data in `raw_data`.
    pub fn from_i64(name: &str, shape: &[usize], values: &[i64]) -> TensorProto {
        Self::from_raw(
            name,
            DataType::Int64,
            shape,
            le_bytes(values, i64::to_le_bytes),
        )
    }

    /// A tensor of any chipbench element type (quantized weights, f16 weights, masks).
    pub fn from_tensor(name: &str, tensor: &chipbench_core::Tensor) -> TensorProto {
        Self::from_raw(
            name,
            DataType::from_dtype(tensor.dtype()),
            tensor.shape(),
            tensor.to_le_bytes(),
        )
    }

    /// A tensor from bytes already laid out as `raw_data` (little-endian, sub-byte types packed).
    pub fn from_raw(name: &str, dtype: DataType, shape: &[usize], raw: Vec<u8>) -> TensorProto {
        TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(dtype as i32),
            name: Some(name.to_string()),
            raw_data: Some(raw),
            ..Default::default()
        }
    }
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| f(v)).collect()
}

pub(crate) fn dims_to_shape(dims: &[i64]) -> std::result::Result<Vec<usize>, String> {
    dims.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d} in {dims:?}")))
        .collect()
}

/// Checks that `bytes` holds exactly the tensor's element count for an element of `width` bytes.
fn check_len(t: &TensorProto, bytes: &[u8], width: usize) -> Result<usize> {
    let n = t.element_count() as usize;
    if bytes.len() != n * width {
        return Err(Error::tensor(
            t.name(),
            format!(
                "{} bytes of data for dims {:?} of {width}-byte elements ({} expected)",
                bytes.len(),
                t.dims,
                n * width
            ),
        ));
    }
    Ok(n)
}

/// Decodes `bytes` (laid out as `raw_data`) of a floating-point tensor as f32 values.
pub fn values_f32(t: &TensorProto, bytes: &[u8]) -> Result<Vec<f32>> {
    fn read<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N bytes")))
            .collect()
    }
    let dt = t.elem_type()?;
    if !matches!(
        dt,
        DataType::Float | DataType::Float16 | DataType::Bfloat16 | DataType::Double
    ) {
        return Err(Error::tensor(
            t.name(),
            format!("{} data is not read as floats", dt.name()),
        ));
    }
    check_len(t, bytes, dt.bits().unwrap_or(8) as usize / 8)?;
    Ok(match dt {
        DataType::Float => read(bytes, f32::from_le_bytes),
        DataType::Float16 => read(bytes, |b| f16::from_le_bytes(b).to_f32()),
        DataType::Bfloat16 => read(bytes, |b| bf16::from_le_bytes(b).to_f32()),
        _ => read(bytes, |b| f64::from_le_bytes(b) as f32),
    })
}

/// Decodes `bytes` (laid out as `raw_data`) of an integer or boolean tensor as i64 values.
pub fn values_i64(t: &TensorProto, bytes: &[u8]) -> Result<Vec<i64>> {
    fn read<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> i64) -> Vec<i64> {
        bytes
            .chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunks of N bytes")))
            .collect()
    }
    let dt = t.elem_type()?;
    if !matches!(
        dt,
        DataType::Int64
            | DataType::Uint64
            | DataType::Int32
            | DataType::Uint32
            | DataType::Int16
            | DataType::Uint16
            | DataType::Int8
            | DataType::Uint8
            | DataType::Bool
    ) {
        return Err(Error::tensor(
            t.name(),
            format!("{} data is not read as integers", dt.name()),
        ));
    }
    check_len(t, bytes, dt.bits().unwrap_or(8) as usize / 8)?;
    Ok(match dt {
        DataType::Int64 => read(bytes, i64::from_le_bytes),
        // UINT64 values above i64::MAX do not occur in shapes or indices; they wrap here.
        DataType::Uint64 => read(bytes, |b| u64::from_le_bytes(b) as i64),
        DataType::Int32 => read(bytes, |b| i32::from_le_bytes(b) as i64),
        DataType::Uint32 => read(bytes, |b| u32::from_le_bytes(b) as i64),
        DataType::Int16 => read(bytes, |b| i16::from_le_bytes(b) as i64),
        DataType::Uint16 => read(bytes, |b| u16::from_le_bytes(b) as i64),
        DataType::Int8 => read(bytes, |b: [u8; 1]| b[0] as i8 as i64),
        _ => read(bytes, |b: [u8; 1]| b[0] as i64),
    })
}

impl AttributeProto {
    fn new(name: &str, kind: AttributeType) -> AttributeProto {
        AttributeProto {
            name: Some(name.to_string()),
            r#type: Some(kind as i32),
            ..Default::default()
        }
    }

    pub fn int(name: &str, value: i64) -> AttributeProto {
        AttributeProto {
            i: Some(value),
            ..Self::new(name, AttributeType::Int)
        }
    }

    pub fn ints(name: &str, values: &[i64]) -> AttributeProto {
        AttributeProto {
            ints: values.to_vec(),
            ..Self::new(name, AttributeType::Ints)
        }
    }

    pub fn float(name: &str, value: f32) -> AttributeProto {
        AttributeProto {
            f: Some(value),
            ..Self::new(name, AttributeType::Float)
        }
    }

    pub fn floats(name: &str, values: &[f32]) -> AttributeProto {
        AttributeProto {
            floats: values.to_vec(),
            ..Self::new(name, AttributeType::Floats)
        }
    }

    pub fn string(name: &str, value: &str) -> AttributeProto {
        AttributeProto {
            s: Some(value.as_bytes().to_vec()),
            ..Self::new(name, AttributeType::String)
        }
    }

    pub fn tensor(name: &str, value: TensorProto) -> AttributeProto {
        AttributeProto {
            t: Some(value),
            ..Self::new(name, AttributeType::Tensor)
        }
    }

    pub fn graph(name: &str, value: GraphProto) -> AttributeProto {
        AttributeProto {
            g: Some(value),
            ..Self::new(name, AttributeType::Graph)
        }
    }
}

impl NodeProto {
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name() == name)
    }

    pub fn attr_i(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.i)
    }

    pub fn attr_f(&self, name: &str) -> Option<f32> {
        self.attr(name).and_then(|a| a.f)
    }

    /// A list of ints; an `INTS` attribute with no elements is an empty list, not a missing one.
    pub fn attr_ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name)
            .filter(|a| a.r#type == Some(AttributeType::Ints as i32) || !a.ints.is_empty())
            .map(|a| a.ints.as_slice())
    }

    pub fn attr_floats(&self, name: &str) -> Option<&[f32]> {
        self.attr(name)
            .filter(|a| a.r#type == Some(AttributeType::Floats as i32) || !a.floats.is_empty())
            .map(|a| a.floats.as_slice())
    }

    /// A string attribute; `None` when absent or not UTF-8.
    pub fn attr_s(&self, name: &str) -> Option<&str> {
        self.attr(name)
            .and_then(|a| a.s.as_deref())
            .and_then(|s| std::str::from_utf8(s).ok())
    }

    pub fn attr_t(&self, name: &str) -> Option<&TensorProto> {
        self.attr(name).and_then(|a| a.t.as_ref())
    }

    pub fn attr_g(&self, name: &str) -> Option<&GraphProto> {
        self.attr(name).and_then(|a| a.g.as_ref())
    }

    /// `op_type` prefixed with the domain when it is not the default ONNX domain
    /// (`Conv`, `com.microsoft.FusedConv`).
    pub fn qualified_op(&self) -> String {
        match self.domain() {
            "" | "ai.onnx" => self.op_type().to_string(),
            domain => format!("{domain}.{}", self.op_type()),
        }
    }

    /// Whether the op belongs to the default ONNX operator set.
    pub fn is_standard(&self) -> bool {
        matches!(self.domain(), "" | "ai.onnx")
    }

    /// Every subgraph held by this node's attributes (`If` branches, `Loop` and `Scan` bodies).
    pub fn subgraphs(&self) -> impl Iterator<Item = &GraphProto> {
        self.attribute
            .iter()
            .flat_map(|a| a.g.iter().chain(a.graphs.iter()))
    }
}

impl TypeProto {
    /// A tensor type of the given element type and shape.
    pub fn tensor(elem_type: DataType, shape: TensorShapeProto) -> TypeProto {
        TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem_type as i32),
                shape: Some(shape),
            })),
            denotation: None,
        }
    }

    /// The tensor element type and shape, when this is a tensor type.
    pub fn as_tensor(&self) -> Option<&type_proto::Tensor> {
        match &self.value {
            Some(type_proto::Value::TensorType(t)) => Some(t),
            _ => None,
        }
    }
}

impl StringStringEntryProto {
    pub fn new(key: &str, value: &str) -> Self {
        StringStringEntryProto {
            key: Some(key.to_string()),
            value: Some(value.to_string()),
        }
    }
}

impl OperatorSetIdProto {
    pub fn new(domain: &str, version: i64) -> Self {
        OperatorSetIdProto {
            domain: Some(domain.to_string()),
            version: Some(version),
        }
    }
}

impl ModelProto {
    /// The opset version imported for the default ONNX domain.
    pub fn onnx_opset(&self) -> Option<i64> {
        self.opset_import
            .iter()
            .find(|o| matches!(o.domain(), "" | "ai.onnx"))
            .map(|o| o.version())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn keeps_an_explicit_empty_domain() {
        let with = NodeProto {
            domain: Some(String::new()),
            ..Default::default()
        };
        let without = NodeProto::default();
        let bytes = with.encode_to_vec();
        assert_ne!(bytes, without.encode_to_vec());
        assert_eq!(
            NodeProto::decode(&bytes[..]).unwrap().domain,
            Some(String::new())
        );
    }

    #[test]
    fn packs_only_what_onnx_proto_packs() {
        // dims (tag 1) unpacked: one key per element; float_data (tag 4) packed: one key.
        let t = TensorProto {
            dims: vec![2, 3],
            float_data: vec![1.0, 2.0],
            ..Default::default()
        };
        assert_eq!(
            t.encode_to_vec(),
            [0x08, 2, 0x08, 3, 0x22, 8, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40].to_vec()
        );
        let a = AttributeProto {
            ints: vec![1, 2],
            ..Default::default()
        };
        assert_eq!(a.encode_to_vec(), [0x40, 1, 0x40, 2].to_vec());
    }

    #[test]
    fn writes_type_proto_fields_in_tag_order() {
        let opaque = TypeProto {
            value: Some(type_proto::Value::OpaqueType(type_proto::Opaque {
                domain: Some("d".into()),
                name: None,
            })),
            denotation: Some("x".into()),
        };
        let bytes = opaque.encode_to_vec();
        // denotation (tag 6, key 0x32) before opaque_type (tag 7, key 0x3a).
        assert_eq!(bytes, [0x32, 1, b'x', 0x3a, 3, 0x0a, 1, b'd'].to_vec());
        assert_eq!(TypeProto::decode(&bytes[..]).unwrap(), opaque);
        let tensor = TypeProto {
            denotation: Some("x".into()),
            ..TypeProto::tensor(DataType::Float, TensorShapeProto::default())
        };
        let bytes = tensor.encode_to_vec();
        assert_eq!(bytes[0], 0x0a, "tensor_type (tag 1) comes first");
        assert_eq!(TypeProto::decode(&bytes[..]).unwrap(), tensor);
        assert_eq!(bytes.len(), tensor.encoded_len());
    }

    #[test]
    fn reads_typed_fields_and_raw_data_alike() {
        let raw = TensorProto::from_f32("w", &[2], &[1.5, -2.0]);
        let typed = TensorProto {
            dims: vec![2],
            data_type: Some(DataType::Float as i32),
            float_data: vec![1.5, -2.0],
            ..Default::default()
        };
        assert_eq!(raw.to_f32().unwrap(), typed.to_f32().unwrap());
        let half = TensorProto {
            dims: vec![1],
            data_type: Some(DataType::Float16 as i32),
            int32_data: vec![f16::from_f32(0.5).to_bits() as i32],
            ..Default::default()
        };
        assert_eq!(half.to_f32().unwrap(), vec![0.5]);
        let i8s = TensorProto {
            dims: vec![2],
            data_type: Some(DataType::Int8 as i32),
            int32_data: vec![-3, 7],
            ..Default::default()
        };
        assert_eq!(i8s.to_i64().unwrap(), vec![-3, 7]);
        assert_eq!(
            TensorProto::from_i64("s", &[3], &[1, -1, 0])
                .to_i64()
                .unwrap(),
            vec![1, -1, 0]
        );
        assert!(raw.to_i64().is_err());
        let quantized = chipbench_core::Tensor::from_vec(vec![2], vec![-5i8, 9]).unwrap();
        let t = TensorProto::from_tensor("q", &quantized);
        assert_eq!(t.elem_type().unwrap(), DataType::Int8);
        assert_eq!(t.to_i64().unwrap(), vec![-5, 9]);
    }

    #[test]
    fn rejects_data_that_does_not_fit_the_dims() {
        let t = TensorProto {
            dims: vec![3],
            ..TensorProto::from_f32("w", &[2], &[1.0, 2.0])
        };
        let err = t.to_f32().unwrap_err().to_string();
        assert!(
            err.contains("tensor 'w'") && err.contains("12 expected"),
            "{err}"
        );
    }

    #[test]
    fn sizes_sub_byte_types() {
        assert_eq!(DataType::Int4.bytes_for(5), Some(3));
        assert_eq!(DataType::Float.bytes_for(5), Some(20));
        assert_eq!(DataType::String.bytes_for(5), None);
        assert_eq!(DataType::from_dtype(DType::I8).to_dtype(), Some(DType::I8));
        assert!(DataType::from_code(99).is_err());
    }

    #[test]
    fn reads_attributes() {
        let node = NodeProto {
            attribute: vec![
                AttributeProto::int("axis", -1),
                AttributeProto::ints("pads", &[]),
                AttributeProto::string("auto_pad", "SAME_UPPER"),
                AttributeProto::float("alpha", 0.5),
            ],
            ..Default::default()
        };
        assert_eq!(node.attr_i("axis"), Some(-1));
        assert_eq!(node.attr_ints("pads"), Some(&[][..]));
        assert_eq!(node.attr_ints("axis"), None);
        assert_eq!(node.attr_s("auto_pad"), Some("SAME_UPPER"));
        assert_eq!(node.attr_f("alpha"), Some(0.5));
        assert_eq!(node.attr_i("missing"), None);
    }
}
