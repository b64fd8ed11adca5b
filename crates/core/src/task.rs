//! Task-level accuracy: what a model decides (the class, the boxes, the text, speech or not)
//! rather than how close its numbers are. A variant's decisions are compared with the fp32
//! model's on the same inputs:
//!
//! - classification (`top-k`): top-1 agreement (the argmax is the same) and top-k agreement (the
//!   fp32 top-1 class is among the variant's top k);
//! - detection (`picodet`): boxes after the model's own score threshold and NMS, matched one to
//!   one with the fp32 boxes of the same class at IoU >= 0.5: precision, recall, F1;
//! - text recognition (`ctc-greedy`): greedy CTC strings, exact-match rate and character error
//!   rate (edit distance / fp32 length);
//! - yes/no per element (`threshold`: speech per frame, text per pixel, wake word): the fraction
//!   of elements where both decide the same.

use serde::{Deserialize, Serialize};

use crate::{Error, Result, Tensor};

/// How a model's outputs become the decision it makes.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Decoding {
    /// Class scores along the last axis: the top `k` labels.
    TopK { output: String, k: usize },
    /// Per-time-step label scores (classes on the last axis), greedy CTC: the best label per
    /// step, repeats merged, blanks dropped.
    CtcGreedy {
        output: String,
        blank: usize,
        /// 0 for [time, batch, classes], 1 for [batch, time, classes].
        time_axis: usize,
    },
    /// A probability per element against a threshold: the yes/no decision.
    Threshold { output: String, threshold: f32 },
    /// PicoDet's GFL head: per stride, class scores [batch, cells, classes] and box-side
    /// distributions [batch, cells, 4 x bins]; boxes above the score threshold, NMS per class.
    Picodet {
        scores: Vec<String>,
        boxes: Vec<String>,
        strides: Vec<u32>,
        /// The input's height and width.
        input_size: [u32; 2],
        score_threshold: f32,
        iou_threshold: f32,
    },
    /// No decision to compare (features, embeddings): cosine similarity of the outputs only.
    Cosine,
}

/// A variant's decisions against the fp32 model's, on `samples` inputs. Only the fields of the
/// decoding's task are set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskAccuracy {
    /// The decoding's kind (`top-k`, `picodet`, `ctc-greedy`, `threshold`).
    pub decoding: String,
    pub samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top1_agreement: Option<f64>,
    /// The fp32 top-1 class among the variant's top k (k from the decoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topk_agreement: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Boxes the fp32 model found (a precision and recall of 1 over no boxes says little).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_boxes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// Decoded strings identical to fp32's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact_match: Option<f64>,
    /// Edit distance to fp32's strings over their total length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cer: Option<f64>,
    /// Elements where the yes/no decision is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_agreement: Option<f64>,
}

impl Decoding {
    /// What the decoding decides, for provenance: "the top 5 of 'logits'".
    pub fn describe(&self) -> String {
        match self {
            Decoding::TopK { output, k } => format!("the top {k} classes of '{output}'"),
            Decoding::CtcGreedy { output, blank, .. } => {
                format!("greedy CTC strings from '{output}', blank label {blank}")
            }
            Decoding::Threshold { output, threshold } => {
                format!("'{output}' > {threshold} per element")
            }
            Decoding::Picodet {
                score_threshold,
                iou_threshold,
                ..
            } => format!(
                "PicoDet boxes scoring above {score_threshold} after NMS at IoU {iou_threshold}, \
                 matched one to one by class at IoU >= 0.5"
            ),
            Decoding::Cosine => "none: features, compared by cosine only".into(),
        }
    }
}

impl TaskAccuracy {
    /// The figures that are set, named in full: `("top-5 agreement", "0.875")`.
    pub fn figures(&self) -> Vec<(String, String)> {
        let f = |v: Option<f64>| v.map(|v| format!("{v:.3}"));
        let k = self.k.unwrap_or(1);
        [
            ("top-1 agreement".to_string(), f(self.top1_agreement)),
            (
                format!("top-{k} agreement"),
                f(self.topk_agreement).filter(|_| k != 1),
            ),
            (
                "fp32 boxes".into(),
                self.reference_boxes.map(|n| n.to_string()),
            ),
            ("precision".into(), f(self.precision)),
            ("recall".into(), f(self.recall)),
            ("F1".into(), f(self.f1)),
            ("exact match".into(), f(self.exact_match)),
            ("CER".into(), f(self.cer)),
            ("decision agreement".into(), f(self.decision_agreement)),
        ]
        .into_iter()
        .filter_map(|(name, v)| Some((name, v?)))
        .collect()
    }

    /// The figures in one short cell of a table: `top-1 1.000 top-5 1.000`, `P 0.9 R 0.8 F1
    /// 0.85`, `exact 0.75 CER 0.050`, `agree 0.990`.
    pub fn short(&self) -> String {
        let f = |name: &str, v: Option<f64>| v.map(|v| format!("{name} {v:.3}"));
        let k = self.k.unwrap_or(1);
        [
            f("top-1", self.top1_agreement),
            f(&format!("top-{k}"), self.topk_agreement).filter(|_| k != 1),
            f("P", self.precision),
            f("R", self.recall),
            f("F1", self.f1),
            f("exact", self.exact_match),
            f("CER", self.cer),
            f("agree", self.decision_agreement),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// Compares the decisions in `actual[sample][output]` with `reference[sample][output]`; `None`
/// for a decoding without decisions (`cosine`).
pub fn compare(
    decoding: &Decoding,
    output_names: &[String],
    reference: &[Vec<Tensor>],
    actual: &[Vec<Tensor>],
) -> Result<Option<TaskAccuracy>> {
    if reference.len() != actual.len() || reference.is_empty() {
        return Err(Error::Run(format!(
            "task accuracy needs the same non-zero number of samples ({} reference, {} measured)",
            reference.len(),
            actual.len()
        )));
    }
    let output = |sample: &[Tensor], name: &str| -> Result<Vec<f32>> {
        let i = output_names.iter().position(|n| n == name).ok_or_else(|| {
            Error::Run(format!(
                "the decoding needs output '{name}'; the model has {output_names:?}"
            ))
        })?;
        let t = sample
            .get(i)
            .ok_or_else(|| Error::Run(format!("output '{name}' is missing")))?;
        Ok(t.to_f64_vec().into_iter().map(|v| v as f32).collect())
    };
    let shape = |sample: &[Tensor], name: &str| -> Vec<usize> {
        output_names
            .iter()
            .position(|n| n == name)
            .and_then(|i| sample.get(i))
            .map_or_else(Vec::new, |t| t.shape().to_vec())
    };
    let mut acc = TaskAccuracy {
        samples: reference.len(),
        ..TaskAccuracy::default()
    };
    match decoding {
        Decoding::Cosine => return Ok(None),
        Decoding::TopK { output: name, k } => {
            acc.decoding = "top-k".into();
            acc.k = Some(*k);
            let (mut rows, mut top1, mut topk) = (0usize, 0usize, 0usize);
            for (r, a) in reference.iter().zip(actual) {
                let classes = *shape(r, name).last().unwrap_or(&1).max(&1);
                let (r, a) = (output(r, name)?, output(a, name)?);
                for (r, a) in r.chunks(classes).zip(a.chunks(classes)) {
                    let expected = top_k(r, 1)[0];
                    let got = top_k(a, *k);
                    rows += 1;
                    top1 += usize::from(got[0] == expected);
                    topk += usize::from(got.contains(&expected));
                }
            }
            acc.top1_agreement = Some(fraction(top1, rows));
            acc.topk_agreement = Some(fraction(topk, rows));
        }
        Decoding::CtcGreedy {
            output: name,
            blank,
            time_axis,
        } => {
            acc.decoding = "ctc-greedy".into();
            let (mut strings, mut exact, mut edits, mut length) = (0usize, 0usize, 0usize, 0usize);
            for (r, a) in reference.iter().zip(actual) {
                let dims = shape(r, name);
                let (r, a) = (output(r, name)?, output(a, name)?);
                for (r, a) in ctc_sequences(&r, &dims, *time_axis, *blank)?
                    .iter()
                    .zip(ctc_sequences(&a, &dims, *time_axis, *blank)?)
                {
                    strings += 1;
                    exact += usize::from(*r == a);
                    edits += edit_distance(r, &a);
                    length += r.len();
                }
            }
            acc.exact_match = Some(fraction(exact, strings));
            acc.cer = Some(if length == 0 {
                f64::from(u8::from(edits > 0))
            } else {
                edits as f64 / length as f64
            });
        }
        Decoding::Threshold {
            output: name,
            threshold,
        } => {
            acc.decoding = "threshold".into();
            let (mut n, mut same) = (0usize, 0usize);
            for (r, a) in reference.iter().zip(actual) {
                for (r, a) in output(r, name)?.iter().zip(output(a, name)?) {
                    n += 1;
                    same += usize::from((*r > *threshold) == (a > *threshold));
                }
            }
            acc.decision_agreement = Some(fraction(same, n));
        }
        Decoding::Picodet {
            scores,
            boxes,
            strides,
            input_size,
            score_threshold,
            iou_threshold,
        } => {
            acc.decoding = "picodet".into();
            let mut total = Matched::default();
            let mut found = 0;
            for (r, a) in reference.iter().zip(actual) {
                let decode = |sample: &[Tensor]| -> Result<Vec<Detection>> {
                    let mut levels = Vec::new();
                    for ((s, b), stride) in scores.iter().zip(boxes).zip(strides) {
                        let classes = *shape(sample, s).last().unwrap_or(&1);
                        levels.push(Level {
                            stride: *stride,
                            classes,
                            scores: output(sample, s)?,
                            distributions: output(sample, b)?,
                        });
                    }
                    picodet(&levels, *input_size, *score_threshold, *iou_threshold)
                };
                let expected = decode(r)?;
                found += expected.len();
                let m = match_detections(&expected, &decode(a)?, 0.5);
                total.true_positives += m.true_positives;
                total.false_positives += m.false_positives;
                total.false_negatives += m.false_negatives;
            }
            acc.reference_boxes = Some(found);
            acc.precision = Some(total.precision());
            acc.recall = Some(total.recall());
            acc.f1 = Some(total.f1());
        }
    }
    Ok(Some(acc))
}

fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// Indices of the `k` largest scores, largest first; ties go to the lower index, NaN ranks last.
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    let key = |i: usize| {
        if scores[i].is_nan() {
            f32::NEG_INFINITY
        } else {
            scores[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order.truncate(k.max(1));
    order
}

/// Greedy CTC over `[time, classes]` scores (row-major): the best label per step, repeats
/// merged, blanks dropped.
pub fn ctc_greedy(scores: &[f32], classes: usize, blank: usize) -> Vec<usize> {
    let mut labels = Vec::new();
    let mut previous = None;
    for step in scores.chunks(classes) {
        let best = top_k(step, 1)[0];
        if Some(best) != previous && best != blank {
            labels.push(best);
        }
        previous = Some(best);
    }
    labels
}

/// One greedy CTC sequence per batch item of a rank-3 output.
fn ctc_sequences(
    scores: &[f32],
    shape: &[usize],
    time_axis: usize,
    blank: usize,
) -> Result<Vec<Vec<usize>>> {
    let &[d0, d1, classes] = shape else {
        return Err(Error::Run(format!(
            "CTC needs a rank-3 output [time, batch, classes] or [batch, time, classes], not {shape:?}"
        )));
    };
    let (time, batch) = match time_axis {
        0 => (d0, d1),
        1 => (d1, d0),
        _ => {
            return Err(Error::Run(format!(
                "CTC time axis must be 0 or 1, not {time_axis}"
            )));
        }
    };
    Ok((0..batch)
        .map(|b| {
            let steps: Vec<f32> = (0..time)
                .flat_map(|t| {
                    let row = if time_axis == 0 {
                        t * batch + b
                    } else {
                        b * time + t
                    };
                    scores[row * classes..(row + 1) * classes].iter().copied()
                })
                .collect();
            ctc_greedy(&steps, classes, blank)
        })
        .collect())
}

/// Levenshtein distance: insertions, deletions and substitutions.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// A box `[x0, y0, x1, y1]` with its class and score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub class: usize,
    pub score: f32,
    pub bbox: [f32; 4],
}

pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// Hard NMS within each class: boxes by descending score, each dropped when it overlaps a kept
/// box of its class by more than `iou_threshold`; at most `keep` per class.
pub fn nms(mut boxes: Vec<Detection>, iou_threshold: f32, keep: usize) -> Vec<Detection> {
    boxes.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for d in boxes {
        let same_class = kept.iter().filter(|k| k.class == d.class);
        if same_class.clone().count() < keep
            && same_class
                .clone()
                .all(|k| iou(&k.bbox, &d.bbox) <= iou_threshold)
        {
            kept.push(d);
        }
    }
    kept
}

/// Boxes matched one to one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
}

impl Matched {
    /// 1 when nothing was found (and so nothing wrongly).
    pub fn precision(&self) -> f64 {
        fraction(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// 1 when there was nothing to find.
    pub fn recall(&self) -> f64 {
        fraction(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }

    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

/// Each candidate box, highest score first, takes the unmatched reference box of its class with
/// the highest IoU, if that IoU is at least `iou_threshold`.
pub fn match_detections(
    reference: &[Detection],
    candidates: &[Detection],
    iou_threshold: f32,
) -> Matched {
    let mut order: Vec<&Detection> = candidates.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut taken = vec![false; reference.len()];
    let mut m = Matched::default();
    for c in order {
        let best = reference
            .iter()
            .enumerate()
            .filter(|(i, r)| !taken[*i] && r.class == c.class)
            .map(|(i, r)| (i, iou(&r.bbox, &c.bbox)))
            .filter(|(_, v)| *v >= iou_threshold)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some((i, _)) => {
                taken[i] = true;
                m.true_positives += 1;
            }
            None => m.false_positives += 1,
        }
    }
    m.false_negatives = taken.iter().filter(|t| !**t).count();
    m
}

/// One stride of a PicoDet head, for one image: `scores` [cells, classes] and `distributions`
/// [cells, 4 x bins] (left, top, right, bottom), cells in row-major order over the feature map.
pub struct Level {
    pub stride: u32,
    pub classes: usize,
    pub scores: Vec<f32>,
    pub distributions: Vec<f32>,
}

/// PicoDet's post-processing as its reference implementation does it (PaddleDetection's
/// `PicoDetPostProcess`, also RapidLayout's): cell centres at `(x + 0.5) * stride`, each side
/// the expectation of a softmax over its bins times the stride, the 1000 best cells per level,
/// then per class the boxes scoring above the threshold, hard NMS, at most 100 kept.
pub fn picodet(
    levels: &[Level],
    input_size: [u32; 2],
    score_threshold: f32,
    iou_threshold: f32,
) -> Result<Vec<Detection>> {
    let mut candidates: Vec<(Vec<f32>, [f32; 4])> = Vec::new();
    for level in levels {
        let stride = level.stride as f32;
        let width = input_size[1].div_ceil(level.stride) as usize;
        let cells = level.scores.len() / level.classes.max(1);
        if cells == 0 || level.distributions.len() % (cells * 4) != 0 {
            return Err(Error::Run(format!(
                "picodet: {} box values for {cells} cells at stride {}",
                level.distributions.len(),
                level.stride
            )));
        }
        let bins = level.distributions.len() / cells / 4;
        let mut order: Vec<usize> = (0..cells).collect();
        let best = |c: usize| {
            level.scores[c * level.classes..(c + 1) * level.classes]
                .iter()
                .fold(f32::NEG_INFINITY, |m, &v| m.max(v))
        };
        order.sort_by(|&a, &b| best(b).total_cmp(&best(a)));
        order.truncate(1000);
        for c in order {
            let (x, y) = ((c % width) as f32, (c / width) as f32);
            let (cx, cy) = ((x + 0.5) * stride, (y + 0.5) * stride);
            let mut side = [0f32; 4];
            for (s, d) in side.iter_mut().enumerate() {
                let logits = &level.distributions[(c * 4 + s) * bins..(c * 4 + s + 1) * bins];
                let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                let weights: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
                let total: f32 = weights.iter().sum();
                *d = weights
                    .iter()
                    .enumerate()
                    .map(|(i, w)| i as f32 * w)
                    .sum::<f32>()
                    / total
                    * stride;
            }
            candidates.push((
                level.scores[c * level.classes..(c + 1) * level.classes].to_vec(),
                [cx - side[0], cy - side[1], cx + side[2], cy + side[3]],
            ));
        }
    }
    let classes = levels.first().map_or(0, |l| l.classes);
    let mut kept = Vec::new();
    for class in 0..classes {
        let boxes: Vec<Detection> = candidates
            .iter()
            .filter(|(s, _)| s[class] > score_threshold)
            .map(|(s, b)| Detection {
                class,
                score: s[class],
                bbox: *b,
            })
            .collect();
        kept.extend(nms(boxes, iou_threshold, 100));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class: usize, score: f32, bbox: [f32; 4]) -> Detection {
        Detection { class, score, bbox }
    }

    #[test]
    fn top_k_orders_by_score_with_ties_to_the_lower_index() {
        assert_eq!(top_k(&[0.1, 0.7, 0.2, 0.7, f32::NAN], 3), vec![1, 3, 2]);
        assert_eq!(top_k(&[f32::NAN, 0.0], 1), vec![1]);
        assert_eq!(top_k(&[3.0, 1.0], 5), vec![0, 1]);
    }

    #[test]
    fn ctc_greedy_merges_repeats_and_drops_blanks() {
        // Steps' best labels: 1 1 0 1 2 2 0 0 -> "1 1 2" (blank 0 separates the two 1s).
        let best = [1, 1, 0, 1, 2, 2, 0, 0];
        let scores: Vec<f32> = best
            .iter()
            .flat_map(|&b| (0..3).map(move |c| if c == b { 0.9 } else { 0.05 }))
            .collect();
        assert_eq!(ctc_greedy(&scores, 3, 0), vec![1, 1, 2]);
        // Blank last, as captcha-whisperer's model has it.
        assert_eq!(ctc_greedy(&scores, 3, 2), vec![1, 0, 1, 0]);
    }

    #[test]
    fn ctc_reads_time_major_and_batch_major_layouts() {
        // Two items, two steps, three classes; item 0 says "1 2", item 1 says "2".
        let item = |labels: [usize; 2]| {
            labels.map(|l| {
                (0..3)
                    .map(|c| f32::from(u8::from(c == l)))
                    .collect::<Vec<_>>()
            })
        };
        let (a, b) = (item([1, 2]), item([0, 2]));
        let batch_major: Vec<f32> = [&a[0], &a[1], &b[0], &b[1]]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let time_major: Vec<f32> = [&a[0], &b[0], &a[1], &b[1]]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let want = vec![vec![1, 2], vec![2]];
        assert_eq!(ctc_sequences(&batch_major, &[2, 2, 3], 1, 0).unwrap(), want);
        assert_eq!(ctc_sequences(&time_major, &[2, 2, 3], 0, 0).unwrap(), want);
        assert!(ctc_sequences(&time_major, &[12], 0, 0).is_err());
    }

    #[test]
    fn edit_distance_counts_the_fewest_edits() {
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"abc", b"abc"), 0);
        assert_eq!(edit_distance(b"abcd", b"acd"), 1);
    }

    #[test]
    fn iou_and_nms_on_known_boxes() {
        // Two 10x10 boxes overlapping by half their width: 50 / 150.
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!((iou(&a, &b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(iou(&a, &[20.0, 20.0, 30.0, 30.0]), 0.0);
        assert_eq!(iou(&a, &a), 1.0);
        let boxes = vec![
            det(0, 0.6, [1.0, 0.0, 11.0, 10.0]), // IoU 0.82 with the best: suppressed
            det(0, 0.9, a),
            det(0, 0.5, b),                      // IoU 1/3: kept at threshold 0.5
            det(1, 0.4, [1.0, 0.0, 11.0, 10.0]), // another class: kept
        ];
        let kept = nms(boxes.clone(), 0.5, 100);
        assert_eq!(kept, vec![boxes[1], boxes[2], boxes[3]]);
        assert_eq!(nms(boxes.clone(), 0.3, 100), vec![boxes[1], boxes[3]]);
        assert_eq!(nms(boxes.clone(), 0.5, 1), vec![boxes[1], boxes[3]]);
    }

    #[test]
    fn matching_counts_true_and_false_boxes() {
        let reference = [
            det(0, 0.9, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.8, [20.0, 20.0, 30.0, 30.0]),
            det(1, 0.7, [40.0, 40.0, 50.0, 50.0]),
        ];
        let candidates = [
            det(0, 0.9, [1.0, 0.0, 11.0, 10.0]), // matches the first (IoU 0.82)
            det(0, 0.85, [0.0, 0.0, 10.0, 10.0]), // the first is taken: false positive
            det(1, 0.8, [20.0, 20.0, 30.0, 30.0]), // right place, wrong class: false positive
            det(1, 0.6, [45.0, 40.0, 55.0, 50.0]), // IoU 1/3 < 0.5: false positive
        ];
        let m = match_detections(&reference, &candidates, 0.5);
        assert_eq!(
            m,
            Matched {
                true_positives: 1,
                false_positives: 3,
                false_negatives: 2
            }
        );
        assert_eq!(m.precision(), 0.25);
        assert!((m.recall() - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.f1() - 2.0 * 0.25 / 3.0 / (0.25 + 1.0 / 3.0)).abs() < 1e-12);
        let same = match_detections(&reference, &reference, 0.5);
        assert_eq!(
            (same.precision(), same.recall(), same.f1()),
            (1.0, 1.0, 1.0)
        );
        let none = match_detections(&[], &[], 0.5);
        assert_eq!(none.f1(), 1.0);
    }

    #[test]
    fn picodet_decodes_centres_distributions_and_thresholds() {
        // A 16x8 input at stride 8: a 1x2 grid (row-major cells 0, 1), one class, 2 bins per
        // side. Cell 1 (centre 12, 4) has all its mass on bin 1: each side 1 x 8 = 8 pixels.
        // Cell 0 scores below the threshold.
        let sure = [-20.0, 20.0];
        let level = Level {
            stride: 8,
            classes: 1,
            scores: vec![0.2, 0.9],
            distributions: [[0.0, 0.0]; 4]
                .into_iter()
                .flatten()
                .chain(sure.repeat(4))
                .collect(),
        };
        let boxes = picodet(&[level], [8, 16], 0.4, 0.5).unwrap();
        assert_eq!(boxes.len(), 1);
        assert_eq!(boxes[0].class, 0);
        assert_eq!(boxes[0].score, 0.9);
        for (got, want) in boxes[0].bbox.iter().zip([4.0, -4.0, 20.0, 12.0]) {
            assert!((got - want).abs() < 1e-4, "{:?}", boxes[0].bbox);
        }
    }

    fn t(shape: &[usize], values: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), values.to_vec()).unwrap()
    }

    #[test]
    fn compare_reports_each_task_against_the_reference() {
        let names = vec!["y".to_string()];
        // Classification: two rows; the second's argmax moves from 2 to 1 but 2 stays in top 2.
        let reference = vec![vec![t(&[2, 3], &[0.9, 0.05, 0.05, 0.1, 0.2, 0.7])]];
        let actual = vec![vec![t(&[2, 3], &[0.8, 0.1, 0.1, 0.1, 0.5, 0.4])]];
        let topk = Decoding::TopK {
            output: "y".into(),
            k: 2,
        };
        let a = compare(&topk, &names, &reference, &actual)
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.top1_agreement, a.topk_agreement, a.k),
            (Some(0.5), Some(1.0), Some(2))
        );

        // Threshold: 3 of 4 frames decide the same.
        let reference = vec![vec![t(&[4], &[0.1, 0.9, 0.6, 0.4])]];
        let actual = vec![vec![t(&[4], &[0.2, 0.8, 0.4, 0.3])]];
        let vad = Decoding::Threshold {
            output: "y".into(),
            threshold: 0.5,
        };
        let a = compare(&vad, &names, &reference, &actual).unwrap().unwrap();
        assert_eq!(a.decision_agreement, Some(0.75));

        // CTC, [batch 1, time 3, classes 3], blank 0: "1 2" against "1 1".
        let one_hot = |labels: &[usize]| -> Vec<f32> {
            labels
                .iter()
                .flat_map(|&l| (0..3).map(move |c| f32::from(u8::from(c == l))))
                .collect()
        };
        let reference = vec![vec![t(&[1, 3, 3], &one_hot(&[1, 0, 2]))]];
        let actual = vec![vec![t(&[1, 3, 3], &one_hot(&[1, 0, 1]))]];
        let ctc = Decoding::CtcGreedy {
            output: "y".into(),
            blank: 0,
            time_axis: 1,
        };
        let a = compare(&ctc, &names, &reference, &actual).unwrap().unwrap();
        assert_eq!((a.exact_match, a.cer), (Some(0.0), Some(0.5)));

        assert_eq!(
            compare(&Decoding::Cosine, &names, &reference, &actual).unwrap(),
            None
        );
        let e = compare(
            &Decoding::TopK {
                output: "z".into(),
                k: 1,
            },
            &names,
            &reference,
            &actual,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs output 'z'"), "{e}");
    }
}
