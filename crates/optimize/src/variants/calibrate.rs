//! Calibration: the input samples the fp32 model is run on (a `.npz` file or seeded samples
//! drawn from the input specs) and the activation ranges taken from its outputs.

use std::fmt;
use std::path::{Path, PathBuf};

use chipbench_core::{InputSpec, Tensor, TensorInfo};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The seed of generated calibration samples: a stream of its own, so that calibration never
/// sees the inputs the accuracy check runs on (those use the run's `--seed`, 0 by default).
pub const CALIBRATION_SEED: u64 = 0xCA1B_0000_0000_0001;

/// How an activation's range is taken from the values seen during calibration.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RangeMethod {
    /// The smallest and largest values seen.
    MinMax,
    /// The range that holds `p` % of the values seen: `(100 - p) / 2` % of them, the
    /// outliers, are cut from each end (ONNX Runtime's asymmetric percentile calibration).
    Percentile(f64),
}

impl fmt::Display for RangeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeMethod::MinMax => f.write_str("minmax"),
            RangeMethod::Percentile(p) => write!(f, "percentile {p}"),
        }
    }
}

/// What the int8-static recipe calibrates on, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct CalibrationSettings {
    pub method: RangeMethod,
    /// Generated samples when there is no file.
    pub samples: usize,
    pub seed: u64,
    /// A `.npz` with one array per model input; every sample in it is used.
    pub file: Option<PathBuf>,
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        CalibrationSettings {
            method: RangeMethod::Percentile(99.99),
            samples: 8,
            seed: CALIBRATION_SEED,
            file: None,
        }
    }
}

impl CalibrationSettings {
    /// The settings in words, for reports; `file_sha256` identifies the file's content.
    pub fn describe(&self, file_sha256: Option<&str>) -> String {
        match &self.file {
            Some(path) => format!(
                "{} over the samples of {}{}",
                self.method,
                path.display(),
                file_sha256
                    .map(|h| format!(" (sha256 {})", &h[..h.len().min(16)]))
                    .unwrap_or_default()
            ),
            None => format!(
                "{} over {} seeded samples (seed {:#x})",
                self.method, self.samples, self.seed
            ),
        }
    }

    /// The calibration inputs, one `Vec` per sample in the order of `bound`.
    pub fn inputs(&self, specs: &[InputSpec], bound: &[TensorInfo]) -> Result<Vec<Vec<Tensor>>> {
        match &self.file {
            Some(path) => load_npz(path, bound),
            None => {
                check_sample_bytes(bound, self.samples)?;
                Ok((0..self.samples as u64)
                    .map(|i| chipbench_core::spec::random_inputs(specs, bound, self.seed, i))
                    .collect())
            }
        }
    }
}

/// The most memory the generated samples of one derivation may take: inputs declared larger
/// (a typo'd or hostile `float[1, 2147483648]`) are refused instead of allocated.
pub const MAX_SAMPLE_BYTES: u64 = 1 << 30;

fn check_sample_bytes(bound: &[TensorInfo], samples: usize) -> Result<()> {
    let mut total: u64 = 0;
    for info in bound {
        let bytes = info
            .shape
            .iter()
            .try_fold(info.dtype.size_bytes() as u64, |n, &d| {
                n.checked_mul(d as u64)
            })
            .and_then(|one| one.checked_mul(samples as u64));
        total = match bytes.and_then(|b| total.checked_add(b)) {
            Some(t) if t <= MAX_SAMPLE_BYTES => t,
            _ => {
                return Err(Error::unsupported(format!(
                    "input '{}' {:?}: {samples} generated samples of it would take more than \
                     the {} MiB chipbench allows them",
                    info.name,
                    info.shape,
                    MAX_SAMPLE_BYTES >> 20
                )));
            }
        };
    }
    Ok(())
}

/// Reads calibration samples from a `.npz` (see [`chipbench_core::npz::load`]).
pub fn load_npz(path: &Path, bound: &[TensorInfo]) -> Result<Vec<Vec<Tensor>>> {
    chipbench_core::npz::load(path, bound).map_err(|e| match e {
        chipbench_core::npz::NpzError::Io(e) => Error::io(path, e),
        chipbench_core::npz::NpzError::Invalid(reason) => Error::Calibration {
            path: path.to_path_buf(),
            reason,
        },
    })
}

/// The range of `values` by `method`; non-finite values are ignored.
pub fn range(values: &mut Vec<f32>, method: RangeMethod) -> (f32, f32) {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return (0.0, 0.0);
    }
    match method {
        RangeMethod::MinMax => values
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            }),
        RangeMethod::Percentile(p) => {
            // Cutting (100 - p) % at each end instead kept only 99.98 % of the values at
            // p = 99.99, and lost accuracy: MobileNet with every layer in int8, cosine 0.864
            // against 0.873 (mean over 8 calibration sets, 32 inputs, ONNX Runtime).
            let upper = 1.0 - (1.0 - p.clamp(0.0, 100.0) / 100.0) / 2.0;
            let n = values.len();
            // Nearest rank: the value at rank ceil(q·n) counting from 1.
            let rank = |q: f64| ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            let hi_rank = rank(upper);
            let lo_rank = n - 1 - hi_rank;
            let (_, &mut hi, _) = values.select_nth_unstable_by(hi_rank, f32::total_cmp);
            let (_, &mut lo, _) = values.select_nth_unstable_by(lo_rank, f32::total_cmp);
            (lo, hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chipbench_core::DType;
    use ndarray::ArrayD;
    use ndarray_npy::NpzWriter;
    use std::fs::File;

    fn info(name: &str, dtype: DType, shape: &[usize]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn percentiles_clip_outliers_and_minmax_keeps_them() {
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        v.push(1000.0);
        v.push(-50.0);
        assert_eq!(range(&mut v.clone(), RangeMethod::MinMax), (-50.0, 1000.0));
        let (lo, hi) = range(&mut v, RangeMethod::Percentile(99.9));
        assert!(
            (0.0..0.01).contains(&lo) && (0.99..1.0).contains(&hi),
            "{lo} {hi}"
        );
        // 99 % of the values inside: 0.5 % cut from each end.
        let mut v: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        assert_eq!(range(&mut v, RangeMethod::Percentile(99.0)), (50.0, 9949.0));
        assert_eq!(
            range(&mut vec![f32::NAN, 2.0], RangeMethod::MinMax),
            (2.0, 2.0)
        );
    }

    #[test]
    fn reads_stacked_and_concatenated_samples_and_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("calib.npz");
        let mut npz = NpzWriter::new(File::create(&path).unwrap());
        let x = ArrayD::from_shape_vec(vec![3, 1, 2], (0..6).map(|v| v as f32).collect()).unwrap();
        npz.add_array("x", &x).unwrap();
        let ids = ArrayD::from_shape_vec(vec![3, 4], (0..12i64).collect()).unwrap();
        npz.add_array("ids", &ids).unwrap();
        npz.finish().unwrap();

        let bound = [
            info("x", DType::F32, &[1, 2]),
            info("ids", DType::I64, &[1, 4]),
        ];
        let samples = load_npz(&path, &bound).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[2][0].as_slice::<f32>().unwrap(), &[4.0, 5.0]);
        assert_eq!(samples[1][1].as_slice::<i64>().unwrap(), &[4, 5, 6, 7]);

        let err = load_npz(&path, &[info("input", DType::F32, &[1, 2])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("calib.npz") && err.contains("no array named 'input'"),
            "{err}"
        );
        assert!(err.contains("x, ids"), "lists what the file has: {err}");
        let err = load_npz(&path, &[info("x", DType::F32, &[1, 3])])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has shape 3x1x2; the model's input is 1x3"),
            "{err}"
        );
        let err = load_npz(&path, &[info("x", DType::I64, &[1, 2])])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not i64 data"), "{err}");
        let err = load_npz(
            &path,
            &[
                info("x", DType::F32, &[1, 2]),
                info("ids", DType::I64, &[3, 4]),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("different numbers of samples"), "{err}");
        let err = load_npz(&dir.path().join("none.npz"), &bound)
            .unwrap_err()
            .to_string();
        assert!(err.contains("none.npz"), "{err}");
        std::fs::write(dir.path().join("bad.npz"), b"not a zip").unwrap();
        let err = load_npz(&dir.path().join("bad.npz"), &bound)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.npz: calibration") && err.contains("not a readable .npz"),
            "{err}"
        );
    }
}
