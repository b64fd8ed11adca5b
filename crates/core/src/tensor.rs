//! A backend-neutral tensor: element type, shape and a contiguous row-major buffer.

use std::fmt;
use std::str::FromStr;

use half::f16;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Element types a model input or output can have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    I8,
    U8,
    I32,
    I64,
    Bool,
}

impl DType {
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F16,
        DType::I8,
        DType::U8,
        DType::I32,
        DType::I64,
        DType::Bool,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::I64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;

    /// Accepts the short names (`f32`) and the ONNX/numpy spellings (`float`, `float32`, `int64`).
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" | "float" | "float32" => DType::F32,
            "f16" | "half" | "float16" => DType::F16,
            "i8" | "int8" => DType::I8,
            "u8" | "uint8" => DType::U8,
            "i32" | "int32" => DType::I32,
            "i64" | "int64" => DType::I64,
            "bool" => DType::Bool,
            other => {
                return Err(format!(
                    "unknown element type '{other}' (expected one of f32, f16, i8, u8, i32, i64, bool)"
                ));
            }
        })
    }
}

/// The typed storage behind a [`Tensor`].
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F16(Vec<f16>),
    I8(Vec<i8>),
    U8(Vec<u8>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    Bool(Vec<bool>),
}

impl TensorData {
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::I32(_) => DType::I32,
            TensorData::I64(_) => DType::I64,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Rust element type that a [`Tensor`] can hold.
pub trait Element: Copy + Send + Sync + 'static {
    const DTYPE: DType;
    fn slice(data: &TensorData) -> Option<&[Self]>;
    fn wrap(values: Vec<Self>) -> TensorData;
}

macro_rules! element {
    ($t:ty, $variant:ident) => {
        impl Element for $t {
            const DTYPE: DType = DType::$variant;
            fn slice(data: &TensorData) -> Option<&[Self]> {
                match data {
                    TensorData::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(values: Vec<Self>) -> TensorData {
                TensorData::$variant(values)
            }
        }
    };
}

element!(f32, F32);
element!(f16, F16);
element!(i8, I8);
element!(u8, U8);
element!(i32, I32);
element!(i64, I64);
element!(bool, Bool);

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the buffer holds exactly `product(shape)` elements.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self> {
        let expected: usize = shape.iter().product();
        if expected != data.len() {
            return Err(Error::Run(format!(
                "tensor of shape {} needs {expected} elements, got {}",
                format_shape(&shape),
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    pub fn from_vec<T: Element>(shape: Vec<usize>, values: Vec<T>) -> Result<Self> {
        Tensor::new(shape, T::wrap(values))
    }

    pub fn from_array<T: Element>(array: ArrayD<T>) -> Self {
        let shape = array.shape().to_vec();
        let values = if array.is_standard_layout() {
            array.into_raw_vec_and_offset().0
        } else {
            array.iter().copied().collect()
        };
        Tensor {
            shape,
            data: T::wrap(values),
        }
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The shape and the buffer, moved out: an engine can take the buffer over without a copy.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }

    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// The elements, when they are of type `T`.
    pub fn as_slice<T: Element>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    /// An ndarray view of the elements, when they are of type `T`.
    pub fn view<T: Element>(&self) -> Result<ArrayViewD<'_, T>> {
        let values = self.as_slice::<T>().ok_or_else(|| {
            Error::Run(format!("tensor holds {}, not {}", self.dtype(), T::DTYPE))
        })?;
        ArrayViewD::from_shape(IxDyn(&self.shape), values).map_err(|e| Error::Run(e.to_string()))
    }

    /// Every element widened to f64, for accuracy metrics and statistics.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
        }
    }

    /// Whether any element is NaN or infinite (always false for integer tensors).
    pub fn has_non_finite(&self) -> bool {
        match &self.data {
            TensorData::F32(v) => v.iter().any(|x| !x.is_finite()),
            TensorData::F16(v) => v.iter().any(|x| !x.is_finite()),
            _ => false,
        }
    }

    /// The raw little-endian bytes of the buffer (what GPU uploads and ONNX `raw_data` want).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        fn bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            v.iter().flat_map(|&x| f(x)).collect()
        }
        match &self.data {
            TensorData::F32(v) => bytes(v, f32::to_le_bytes),
            TensorData::F16(v) => bytes(v, f16::to_le_bytes),
            TensorData::I8(v) => bytes(v, i8::to_le_bytes),
            TensorData::U8(v) => v.clone(),
            TensorData::I32(v) => bytes(v, i32::to_le_bytes),
            TensorData::I64(v) => bytes(v, i64::to_le_bytes),
            TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        }
    }
}

/// `1x3x224x224`, the spelling used on the command line and in messages.
pub fn format_shape(shape: &[usize]) -> String {
    if shape.is_empty() {
        return "scalar".into();
    }
    shape
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_a_buffer_that_does_not_fit_the_shape() {
        assert!(Tensor::from_vec(vec![2, 3], vec![0f32; 5]).is_err());
        assert!(Tensor::from_vec(vec![2, 3], vec![0f32; 6]).is_ok());
    }

    #[test]
    fn round_trips_through_ndarray() {
        let a = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1i64, 2, 3, 4]).unwrap();
        let t = Tensor::from_array(a.clone());
        assert_eq!(t.dtype(), DType::I64);
        assert_eq!(t.view::<i64>().unwrap(), a.view());
        assert!(t.view::<f32>().is_err());
        // A transposed (non-standard layout) array is copied in logical order.
        let t = Tensor::from_array(a.reversed_axes());
        assert_eq!(t.as_slice::<i64>().unwrap(), &[1, 3, 2, 4]);
    }

    #[test]
    fn parses_type_names() {
        assert_eq!("float32".parse::<DType>().unwrap(), DType::F32);
        assert_eq!("i64".parse::<DType>().unwrap(), DType::I64);
        assert!("complex64".parse::<DType>().is_err());
    }

    #[test]
    fn detects_non_finite_values() {
        assert!(
            Tensor::from_vec(vec![2], vec![1.0f32, f32::NAN])
                .unwrap()
                .has_non_finite()
        );
        assert!(
            !Tensor::from_vec(vec![2], vec![1.0f32, 2.0])
                .unwrap()
                .has_non_finite()
        );
    }
}
