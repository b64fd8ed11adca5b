//! Samples in a `.npz` file (as `numpy.savez` writes it): one array per model input, named like
//! the input. Calibration files (`--calibration`) and the zoo's real samples use this format.

use std::fs::File;
use std::path::Path;

use ndarray::ArrayD;
use ndarray_npy::{NpzReader, NpzWriter};

use crate::{DType, Tensor, TensorData, TensorInfo};

/// Why a `.npz` cannot be used: it cannot be read at all, or its arrays do not fit the model.
#[derive(Debug)]
pub enum NpzError {
    Io(std::io::Error),
    Invalid(String),
}

impl std::fmt::Display for NpzError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NpzError::Io(e) => e.fmt(f),
            NpzError::Invalid(reason) => f.write_str(reason),
        }
    }
}

/// Reads calibration samples from a `.npz` (as `numpy.savez` writes it): one array per model
/// input, named like the input, holding one sample of the input's shape or `N` of them stacked
/// on a new first axis or concatenated along the batch axis.
pub fn load(path: &Path, bound: &[TensorInfo]) -> Result<Vec<Vec<Tensor>>, NpzError> {
    let fail = NpzError::Invalid;
    let file = File::open(path).map_err(NpzError::Io)?;
    let mut npz =
        NpzReader::new(file).map_err(|e| fail(format!("not a readable .npz file ({e})")))?;
    let names: Vec<String> = npz
        .names()
        .map_err(|e| fail(format!("cannot list its arrays ({e})")))?
        .into_iter()
        .map(|n| n.trim_end_matches(".npy").to_string())
        .collect();
    let mut per_input = Vec::new();
    for info in bound {
        if !names.contains(&info.name) {
            return Err(fail(format!(
                "no array named '{}' for the model's input of that name (the file has: {}); \
                 save one per input, e.g. numpy.savez(file, {}=samples)",
                info.name,
                if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                },
                info.name
            )));
        }
        let tensor = read_array(&mut npz, &info.name, info.dtype).map_err(fail)?;
        let samples = split_samples(&tensor, info).map_err(fail)?;
        per_input.push(samples);
    }
    let counts: Vec<usize> = per_input.iter().map(Vec::len).collect();
    if counts.windows(2).any(|w| w[0] != w[1]) {
        let listed: Vec<String> = bound
            .iter()
            .zip(&counts)
            .map(|(i, n)| format!("'{}' {n}", i.name))
            .collect();
        return Err(fail(format!(
            "its arrays hold different numbers of samples ({})",
            listed.join(", ")
        )));
    }
    let n = counts.first().copied().unwrap_or(0);
    if n == 0 {
        return Err(fail("it holds no samples".into()));
    }
    Ok((0..n)
        .map(|s| per_input.iter().map(|samples| samples[s].clone()).collect())
        .collect())
}

fn read_array(
    npz: &mut NpzReader<File>,
    name: &str,
    dtype: DType,
) -> std::result::Result<Tensor, String> {
    fn read<T: ndarray_npy::ReadableElement + crate::Element>(
        npz: &mut NpzReader<File>,
        name: &str,
    ) -> std::result::Result<Tensor, String> {
        npz.by_name::<ndarray::OwnedRepr<T>, ndarray::IxDyn>(name)
            .map(|a: ArrayD<T>| Tensor::from_array(a))
            .map_err(|e| e.to_string())
    }
    let result = match dtype {
        DType::F32 => read::<f32>(npz, name),
        DType::I64 => read::<i64>(npz, name),
        DType::I32 => read::<i32>(npz, name),
        DType::I8 => read::<i8>(npz, name),
        DType::U8 => read::<u8>(npz, name),
        DType::Bool => read::<bool>(npz, name),
        DType::F16 => Err("float16 inputs cannot be read from .npz; store float32".into()),
    };
    result.map_err(|e| format!("array '{name}' is not {dtype} data as the model's input is ({e})"))
}

/// Splits an array into samples of the input's shape.
fn split_samples(t: &Tensor, info: &TensorInfo) -> std::result::Result<Vec<Tensor>, String> {
    let a = t.shape();
    let s = &info.shape;
    let sample: usize = s.iter().product();
    let count = if a == s.as_slice() {
        1
    } else if a.len() == s.len() + 1 && a[1..] == s[..] {
        a[0]
    } else if !s.is_empty()
        && a.len() == s.len()
        && a[1..] == s[1..]
        && s[0] > 0
        && a[0].is_multiple_of(s[0])
    {
        a[0] / s[0]
    } else {
        let shape = crate::tensor::format_shape;
        return Err(format!(
            "array '{}' has shape {}; the model's input is {}: give one sample of that shape, \
             N of them stacked (Nx{}), or concatenated along the first axis",
            info.name,
            shape(a),
            shape(s),
            shape(s)
        ));
    };
    fn chunks<T: crate::Element>(v: &[T], n: usize, shape: &[usize]) -> Vec<Tensor> {
        v.chunks(n.max(1))
            .map(|c| Tensor::from_vec(shape.to_vec(), c.to_vec()).expect("chunks fit the shape"))
            .collect()
    }
    let samples = match t.data() {
        TensorData::F32(v) => chunks(v, sample, s),
        TensorData::F16(v) => chunks(v, sample, s),
        TensorData::I8(v) => chunks(v, sample, s),
        TensorData::U8(v) => chunks(v, sample, s),
        TensorData::I32(v) => chunks(v, sample, s),
        TensorData::I64(v) => chunks(v, sample, s),
        TensorData::Bool(v) => chunks(v, sample, s),
    };
    debug_assert_eq!(samples.len(), count);
    Ok(samples)
}

/// Writes `samples` (one `Vec` per sample, in the order of `bound`) as one array per input, the
/// samples stacked on a new first axis; what [`load`] reads back.
pub fn save(path: &Path, bound: &[TensorInfo], samples: &[Vec<Tensor>]) -> Result<(), NpzError> {
    let file = File::create(path).map_err(NpzError::Io)?;
    let mut npz = NpzWriter::new(file);
    let invalid = |e: &dyn std::fmt::Display| NpzError::Invalid(e.to_string());
    for (i, info) in bound.iter().enumerate() {
        let mut shape = vec![samples.len()];
        shape.extend(&info.shape);
        macro_rules! stacked {
            ($variant:ident) => {{
                let mut all = Vec::new();
                for sample in samples {
                    match sample[i].data() {
                        TensorData::$variant(v) if sample[i].shape() == info.shape.as_slice() => {
                            all.extend_from_slice(v)
                        }
                        _ => {
                            return Err(NpzError::Invalid(format!(
                                "a sample of '{}' is not {} {:?}",
                                info.name, info.dtype, info.shape
                            )));
                        }
                    }
                }
                let array = ArrayD::from_shape_vec(shape, all).map_err(|e| invalid(&e))?;
                npz.add_array(info.name.as_str(), &array)
                    .map_err(|e| invalid(&e))?;
            }};
        }
        match info.dtype {
            DType::F32 => stacked!(F32),
            DType::I64 => stacked!(I64),
            DType::I32 => stacked!(I32),
            DType::I8 => stacked!(I8),
            DType::U8 => stacked!(U8),
            DType::Bool => stacked!(Bool),
            DType::F16 => return Err(invalid(&"float16 cannot be stored in a .npz")),
        }
    }
    npz.finish().map_err(|e| invalid(&e))?;
    Ok(())
}
