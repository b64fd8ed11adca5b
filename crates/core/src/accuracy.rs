//! Accuracy of a model's outputs against reference outputs for the same inputs.
//!
//! Metrics per output, over every compared sample (all in f64):
//! - `max_abs_err` = max |y - r|;
//! - `max_rel_err` = max |y - r| / max |r|  (relative to the reference's range, so that values
//!   near zero do not blow it up);
//! - `mean_rel_err` = sum |y - r| / sum |r|  (relative L1 error);
//! - `cosine` = <y, r> / (|y| |r|) of the flattened outputs (1 when both are zero);
//! - `top1_agreement`: for outputs that look like class scores (floating point, rank >= 2, last
//!   axis >= 2 long, and rank 2 or a name mentioning logits/scores/probabilities), the fraction
//!   of positions (every index but the last axis) whose argmax agrees.

use crate::result::{Accuracy, OutputAccuracy};
use crate::tensor::format_shape;
use crate::{Error, Result, Tensor};

/// Compares `actual[sample][output]` with `reference[sample][output]`.
pub fn compare(
    reference_label: &str,
    output_names: &[String],
    reference: &[Vec<Tensor>],
    actual: &[Vec<Tensor>],
) -> Result<Accuracy> {
    if reference.len() != actual.len() || reference.is_empty() {
        return Err(Error::Run(format!(
            "accuracy needs the same non-zero number of samples ({} reference, {} measured)",
            reference.len(),
            actual.len()
        )));
    }
    let mut outputs = Vec::new();
    for (o, name) in output_names.iter().enumerate() {
        let mut acc = Accumulator::default();
        for (r, y) in reference.iter().zip(actual) {
            let (r, y) = match (r.get(o), y.get(o)) {
                (Some(r), Some(y)) => (r, y),
                _ => return Err(Error::Run(format!("output '{name}' is missing"))),
            };
            if r.shape() != y.shape() {
                return Err(Error::Run(format!(
                    "output '{name}' has shape {}, the reference has {}",
                    format_shape(y.shape()),
                    format_shape(r.shape())
                )));
            }
            acc.add(name, r, y);
        }
        outputs.push(acc.finish(name));
    }
    let worst = |f: fn(&OutputAccuracy) -> f64| outputs.iter().map(f).fold(0.0, f64::max);
    Ok(Accuracy {
        reference: reference_label.to_string(),
        samples: reference.len(),
        max_abs_err: worst(|o| o.max_abs_err),
        max_rel_err: worst(|o| o.max_rel_err),
        mean_rel_err: worst(|o| o.mean_rel_err),
        cosine: outputs.iter().map(|o| o.cosine).fold(1.0, f64::min),
        top1_agreement: outputs
            .iter()
            .filter_map(|o| o.top1_agreement)
            .reduce(f64::min),
        outputs,
        task: None,
    })
}

/// Whether an output is a vector of class scores per position.
pub fn looks_like_class_scores(name: &str, tensor: &Tensor) -> bool {
    let shape = tensor.shape();
    let lower = name.to_ascii_lowercase();
    let named = ["logit", "score", "prob", "class"]
        .iter()
        .any(|w| lower.contains(w));
    tensor.dtype().is_float()
        && shape.len() >= 2
        && shape[shape.len() - 1] >= 2
        && (shape.len() == 2 || named)
}

#[derive(Default)]
struct Accumulator {
    max_abs: f64,
    max_ref: f64,
    sum_abs_err: f64,
    sum_abs_ref: f64,
    dot: f64,
    norm_y: f64,
    norm_r: f64,
    positions: usize,
    agreeing: usize,
    class_scores: bool,
}

impl Accumulator {
    fn add(&mut self, name: &str, reference: &Tensor, actual: &Tensor) {
        let r = reference.to_f64_vec();
        let y = actual.to_f64_vec();
        for (&r, &y) in r.iter().zip(&y) {
            let e = (y - r).abs();
            // NaN compares false everywhere: make it the worst error instead of hiding it.
            self.max_abs = if e.is_nan() {
                f64::INFINITY
            } else {
                self.max_abs.max(e)
            };
            self.max_ref = self.max_ref.max(r.abs());
            self.sum_abs_err += e;
            self.sum_abs_ref += r.abs();
            self.dot += y * r;
            self.norm_y += y * y;
            self.norm_r += r * r;
        }
        if looks_like_class_scores(name, reference) {
            self.class_scores = true;
            let classes = reference.shape()[reference.shape().len() - 1];
            for (rc, yc) in r.chunks(classes).zip(y.chunks(classes)) {
                self.positions += 1;
                self.agreeing += (argmax(rc) == argmax(yc)) as usize;
            }
        }
    }

    fn finish(self, name: &str) -> OutputAccuracy {
        let ratio = |num: f64, den: f64| {
            if den > 0.0 {
                num / den
            } else if num == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        };
        let cosine = if self.norm_y == 0.0 && self.norm_r == 0.0 {
            1.0
        } else if self.norm_y == 0.0 || self.norm_r == 0.0 {
            0.0
        } else {
            self.dot / (self.norm_y.sqrt() * self.norm_r.sqrt())
        };
        OutputAccuracy {
            name: name.to_string(),
            max_abs_err: self.max_abs,
            max_rel_err: ratio(self.max_abs, self.max_ref),
            mean_rel_err: ratio(self.sum_abs_err, self.sum_abs_ref),
            cosine: if cosine.is_nan() { 0.0 } else { cosine },
            top1_agreement: self
                .class_scores
                .then(|| self.agreeing as f64 / self.positions.max(1) as f64),
        }
    }
}

fn argmax(values: &[f64]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec()).unwrap()
    }

    #[test]
    fn identical_outputs_are_perfect() {
        let r = vec![vec![t(&[1, 3], &[0.1, 0.7, 0.2])]];
        let a = compare("ref", &["y".into()], &r, &r).unwrap();
        assert_eq!((a.max_abs_err, a.mean_rel_err, a.cosine), (0.0, 0.0, 1.0));
        assert_eq!(a.top1_agreement, Some(1.0));
    }

    #[test]
    fn measures_errors_and_flipped_decisions() {
        let r = vec![vec![t(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]];
        let y = vec![vec![t(&[2, 2], &[1.0, 2.0, 3.0, 2.0])]];
        let a = compare("ref", &["logits".into()], &r, &y).unwrap();
        assert_eq!(a.max_abs_err, 2.0);
        assert_eq!(a.max_rel_err, 0.5);
        assert_eq!(a.mean_rel_err, 0.2);
        assert_eq!(
            a.top1_agreement,
            Some(0.5),
            "the second row's argmax flipped"
        );
        let expected_cos = (1.0 + 4.0 + 9.0 + 8.0) / (30f64.sqrt() * 18f64.sqrt());
        assert!((a.cosine - expected_cos).abs() < 1e-12);
    }

    #[test]
    fn nan_outputs_are_the_worst_error() {
        let r = vec![vec![t(&[2], &[1.0, 2.0])]];
        let y = vec![vec![t(&[2], &[f32::NAN, 2.0])]];
        let a = compare("ref", &["y".into()], &r, &y).unwrap();
        assert!(a.max_abs_err.is_infinite());
        assert!(
            a.top1_agreement.is_none(),
            "a rank-1 output is not class scores"
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let r = vec![vec![t(&[2], &[1.0, 2.0])]];
        let y = vec![vec![t(&[1, 2], &[1.0, 2.0])]];
        assert!(compare("ref", &["y".into()], &r, &y).is_err());
    }
}
