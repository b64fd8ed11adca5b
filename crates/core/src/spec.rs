//! What a model expects as input: names, element types, shapes with named dynamic dimensions,
//! value ranges; and how inputs are produced (seeded random data or user `.npy` files).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use half::f16;
use ndarray::ArrayD;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::tensor::format_shape;
use crate::{DType, Error, Result, Tensor, TensorData};

/// One dimension of a declared shape: a number, or a name bound later (`batch`, `sequence`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Named(String),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Named(name) => f.write_str(name),
        }
    }
}

/// A model input as declared: its shape may hold named dimensions, and it may carry the range of
/// values that make sense (token ids `0..30522`, pixel values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<Dim>,
    /// Half-open `[low, high)` range for generated values; floats default to a standard normal,
    /// integers to `[0, 100)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
}

/// A tensor's name, element type and concrete shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorInfo {
    /// The bytes of a tensor of this shape and element type; `None` when the count overflows.
    pub fn bytes(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(self.dtype.size_bytes() as u64, |n, &d| {
                n.checked_mul(d as u64)
            })
    }
}

impl InputSpec {
    /// Resolves every named dimension from `dims`; a name left unbound is an error that says how
    /// to bind it.
    pub fn bind(&self, dims: &BTreeMap<String, usize>) -> Result<TensorInfo> {
        let shape = self
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => Ok(*n),
                Dim::Named(name) => dims.get(name).copied().ok_or_else(|| {
                    Error::input(
                        &self.name,
                        format!(
                            "dimension '{name}' is dynamic; bind it with --dim {name}=N or give the \
                             whole shape with --input {}:{}:{}",
                            self.name,
                            self.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x"),
                            self.dtype
                        ),
                    )
                }),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TensorInfo {
            name: self.name.clone(),
            dtype: self.dtype,
            shape,
        })
    }

    /// Seeded random data of the given concrete shape, within the declared range.
    pub fn random(&self, shape: &[usize], rng: &mut ChaCha8Rng) -> Tensor {
        let n: usize = shape.iter().product();
        let shape = shape.to_vec();
        let uniform = |rng: &mut ChaCha8Rng, default: [f64; 2]| {
            let [lo, hi] = self.range.unwrap_or(default);
            if hi > lo {
                rng.random_range(lo..hi)
            } else {
                lo
            }
        };
        let result = match self.dtype {
            DType::F32 | DType::F16 => {
                let values: Vec<f32> = (0..n)
                    .map(|_| match self.range {
                        Some(_) => uniform(rng, [0.0, 1.0]) as f32,
                        None => StandardNormal.sample(rng),
                    })
                    .collect();
                if self.dtype == DType::F16 {
                    Tensor::from_vec(shape, values.into_iter().map(f16::from_f32).collect())
                } else {
                    Tensor::from_vec(shape, values)
                }
            }
            DType::I8 => Tensor::from_vec(
                shape,
                (0..n)
                    .map(|_| uniform(rng, [-128.0, 128.0]).floor() as i8)
                    .collect(),
            ),
            DType::U8 => Tensor::from_vec(
                shape,
                (0..n)
                    .map(|_| uniform(rng, [0.0, 256.0]).floor() as u8)
                    .collect(),
            ),
            DType::I32 => Tensor::from_vec(
                shape,
                (0..n)
                    .map(|_| uniform(rng, [0.0, 100.0]).floor() as i32)
                    .collect(),
            ),
            DType::I64 => Tensor::from_vec(
                shape,
                (0..n)
                    .map(|_| uniform(rng, [0.0, 100.0]).floor() as i64)
                    .collect(),
            ),
            DType::Bool => Tensor::from_vec(shape, (0..n).map(|_| rng.random::<bool>()).collect()),
        };
        result.expect("the buffer is built from the shape")
    }
}

/// A deterministic random generator for sample number `index` of a run seeded with `seed`, so
/// that every backend and variant sees exactly the same inputs.
pub fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// One set of inputs (one tensor per spec, in order) for sample `index`.
pub fn random_inputs(
    specs: &[InputSpec],
    bound: &[TensorInfo],
    seed: u64,
    index: u64,
) -> Vec<Tensor> {
    let mut rng = sample_rng(seed, index);
    specs
        .iter()
        .zip(bound)
        .map(|(spec, info)| spec.random(&info.shape, &mut rng))
        .collect()
}

/// Parses a command-line input override `name:1x3x224x224[:f32]`.
pub fn parse_input_override(
    text: &str,
) -> std::result::Result<(String, Vec<usize>, Option<DType>), String> {
    let usage = || format!("'{text}': expected NAME:SHAPE[:TYPE], e.g. input:1x3x224x224:f32");
    let (rest, last) = text.rsplit_once(':').ok_or_else(usage)?;
    let (name, shape, dtype) = match last.parse::<DType>() {
        Ok(dtype) => {
            let (name, shape) = rest.rsplit_once(':').ok_or_else(usage)?;
            (name, shape, Some(dtype))
        }
        Err(_) => (rest, last, None),
    };
    if name.is_empty() {
        return Err(format!("'{text}': the input name is empty"));
    }
    let dims = if shape == "scalar" {
        vec![]
    } else {
        shape
            .split(['x', ','])
            .map(|d| {
                d.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("'{text}': '{d}' is not a dimension"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    Ok((name.to_string(), dims, dtype))
}

/// Loads a `.npy` file as a tensor (f32, f64 as f32, f16 is not a numpy-portable type;
/// i8, u8, i32, i64, bool).
pub fn load_npy(path: &Path) -> Result<Tensor> {
    use ndarray_npy::ReadNpyExt;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let fail = |e: &dyn fmt::Display| Error::input(path.display().to_string(), e);
    macro_rules! try_read {
        ($($t:ty),*) => {$(
            if let Ok(a) = ArrayD::<$t>::read_npy(&bytes[..]) {
                return Ok(Tensor::from_array(a));
            }
        )*};
    }
    try_read!(f32, i64, i32, i8, u8, bool);
    match ArrayD::<f64>::read_npy(&bytes[..]) {
        Ok(a) => Ok(Tensor::from_array(a.mapv(|x| x as f32))),
        Err(e) => Err(fail(&format!(
            "not a readable .npy of f32, f64, i64, i32, i8, u8 or bool ({e})"
        ))),
    }
}

/// A tensor of the input's shape and type holding `value` everywhere (`--input-value`, a zoo
/// model's fixed inputs).
pub fn filled(info: &TensorInfo, value: f64) -> Result<Tensor> {
    let n: usize = info.shape.iter().product();
    let data = match info.dtype {
        DType::F32 => TensorData::F32(vec![value as f32; n]),
        DType::F16 => TensorData::F16(vec![f16::from_f64(value); n]),
        DType::I64 => TensorData::I64(vec![value as i64; n]),
        DType::I32 => TensorData::I32(vec![value as i32; n]),
        DType::I8 => TensorData::I8(vec![value as i8; n]),
        DType::U8 => TensorData::U8(vec![value as u8; n]),
        DType::Bool => TensorData::Bool(vec![value != 0.0; n]),
    };
    Tensor::new(info.shape.clone(), data)
}

/// Checks that a user-supplied tensor fits the model's input.
pub fn check_input(info: &TensorInfo, tensor: &Tensor) -> Result<()> {
    if tensor.dtype() != info.dtype {
        return Err(Error::input(
            &info.name,
            format!("expected {} data, got {}", info.dtype, tensor.dtype()),
        ));
    }
    if tensor.shape() != info.shape.as_slice() {
        return Err(Error::input(
            &info.name,
            format!(
                "expected shape {}, got {}",
                format_shape(&info.shape),
                format_shape(tensor.shape())
            ),
        ));
    }
    Ok(())
}

/// The dimension `--batch` binds: the first named dimension called like a batch (`batch`,
/// `batch_size`, `N`), else the leading dimension of the first input whose leading dimension is
/// named (dynamic). `None` when the model has neither: its batch is fixed.
pub fn batch_dimension(specs: &[InputSpec]) -> Option<&str> {
    fn named(d: &Dim) -> Option<&str> {
        match d {
            Dim::Named(name) => Some(name.as_str()),
            Dim::Fixed(_) => None,
        }
    }
    let like_batch = |name: &&str| name.to_ascii_lowercase().contains("batch") || *name == "N";
    specs
        .iter()
        .flat_map(|s| s.shape.iter().filter_map(named))
        .find(like_batch)
        .or_else(|| specs.iter().find_map(|s| s.shape.first().and_then(named)))
}

/// The inputs as bound in `bound`, with the batch dimension (see [`batch_dimension`]) set to
/// `batch` wherever it appears; `Ok(None)` when the model has no batch dimension.
pub fn with_batch(
    specs: &[InputSpec],
    bound: &[TensorInfo],
    batch: usize,
) -> Result<Option<Vec<TensorInfo>>> {
    let Some(name) = batch_dimension(specs) else {
        return Ok(None);
    };
    // Every other named dimension keeps the value it was bound to.
    let mut dims = BTreeMap::new();
    for (spec, info) in specs.iter().zip(bound) {
        for (d, &n) in spec.shape.iter().zip(&info.shape) {
            if let Dim::Named(other) = d {
                dims.insert(other.clone(), n);
            }
        }
    }
    dims.insert(name.to_string(), batch);
    specs
        .iter()
        .map(|s| s.bind(&dims))
        .collect::<Result<_>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dtype: DType, range: Option<[f64; 2]>) -> InputSpec {
        InputSpec {
            name: "x".into(),
            dtype,
            shape: vec![Dim::Named("batch".into()), Dim::Fixed(4)],
            range,
        }
    }

    #[test]
    fn binds_named_dimensions_or_says_how() {
        let s = spec(DType::F32, None);
        let dims = BTreeMap::from([("batch".to_string(), 3)]);
        assert_eq!(s.bind(&dims).unwrap().shape, vec![3, 4]);
        let err = s.bind(&BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("--dim batch=N"), "{err}");
    }

    #[test]
    fn random_inputs_are_seeded_and_in_range() {
        let s = spec(DType::I64, Some([0.0, 30522.0]));
        let a = s.random(&[2, 4], &mut sample_rng(7, 0));
        let b = s.random(&[2, 4], &mut sample_rng(7, 0));
        let c = s.random(&[2, 4], &mut sample_rng(7, 1));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(
            a.as_slice::<i64>()
                .unwrap()
                .iter()
                .all(|&v| (0..30522).contains(&v))
        );
        let f = spec(DType::F32, None).random(&[1, 4000], &mut sample_rng(1, 0));
        let v = f.to_f64_vec();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.1, "a standard normal has mean 0, got {mean}");
    }

    #[test]
    fn parses_input_overrides() {
        assert_eq!(
            parse_input_override("input:1x3x224x224:f32").unwrap(),
            ("input".into(), vec![1, 3, 224, 224], Some(DType::F32))
        );
        assert_eq!(
            parse_input_override("ids:1x128").unwrap(),
            ("ids".into(), vec![1, 128], None)
        );
        assert_eq!(
            parse_input_override("a:b:2x2:i64").unwrap(),
            ("a:b".into(), vec![2, 2], Some(DType::I64))
        );
        assert!(parse_input_override("x").is_err());
        assert!(parse_input_override("x:1xA").is_err());
    }

    #[test]
    fn checks_user_inputs_against_the_model() {
        let info = TensorInfo {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![1, 2],
        };
        let ok = Tensor::from_vec(vec![1, 2], vec![0f32; 2]).unwrap();
        let bad_shape = Tensor::from_vec(vec![2, 1], vec![0f32; 2]).unwrap();
        let bad_type = Tensor::from_vec(vec![1, 2], vec![0i64; 2]).unwrap();
        assert!(check_input(&info, &ok).is_ok());
        assert!(
            check_input(&info, &bad_shape)
                .unwrap_err()
                .to_string()
                .contains("expected shape 1x2")
        );
        assert!(check_input(&info, &bad_type).is_err());
    }

    #[test]
    fn loads_npy_files() {
        use ndarray_npy::WriteNpyExt;
        let dir = std::env::temp_dir().join(format!("chipbench-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.npy");
        let a = ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 3]), (0..6).map(|x| x as i64).collect())
            .unwrap();
        a.write_npy(std::fs::File::create(&path).unwrap()).unwrap();
        let t = load_npy(&path).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(t.as_slice::<i64>().unwrap(), &[0, 1, 2, 3, 4, 5]);
        std::fs::write(&path, b"not numpy").unwrap();
        assert!(load_npy(&path).unwrap_err().to_string().contains("x.npy"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_batch_dimension_is_named_like_one_or_leads_a_dynamic_shape() {
        let spec = |name: &str, shape: Vec<Dim>| InputSpec {
            name: name.into(),
            dtype: DType::F32,
            shape,
            range: None,
        };
        let named = |n: &str| Dim::Named(n.into());
        let ids = spec("ids", vec![named("batch_size"), named("sequence")]);
        let mask = spec("mask", vec![named("batch_size"), named("sequence")]);
        assert_eq!(
            batch_dimension(&[ids.clone(), mask.clone()]),
            Some("batch_size")
        );
        let image = spec("x", vec![named("n_images"), Dim::Fixed(3)]);
        assert_eq!(
            batch_dimension(std::slice::from_ref(&image)),
            Some("n_images")
        );
        let fixed = spec("x", vec![Dim::Fixed(1), Dim::Fixed(3)]);
        assert_eq!(batch_dimension(std::slice::from_ref(&fixed)), None);

        let dims = BTreeMap::from([("batch_size".to_string(), 1), ("sequence".to_string(), 128)]);
        let specs = [ids, mask];
        let bound: Vec<TensorInfo> = specs.iter().map(|s| s.bind(&dims).unwrap()).collect();
        let batched = with_batch(&specs, &bound, 8).unwrap().unwrap();
        assert!(batched.iter().all(|t| t.shape == [8, 128]), "{batched:?}");
        let bound_fixed = [fixed.bind(&BTreeMap::new()).unwrap()];
        assert_eq!(with_batch(&[fixed], &bound_fixed, 8).unwrap(), None);
    }
}
