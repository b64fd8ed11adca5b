//! The layout of a decoder-only model with a KV cache, as exporters write it (Hugging Face
//! Optimum's `decoder_model_merged`, onnxruntime-genai's models): inputs `input_ids`,
//! `attention_mask`, optionally `position_ids`, and `past_key_values.{i}.key|value` per layer;
//! outputs `logits` and `present.{i}.key|value`. Each cache tensor is `[batch, heads, sequence,
//! head_dim]`; a step's `present.{i}.*` is the next step's `past_key_values.{i}.*`, one token
//! longer. Detected from the names, shapes and types a model declares.

use crate::spec::{Dim, InputSpec, TensorInfo};
use crate::tensor::DType;

/// What the layout is, for error messages.
pub const LAYOUT: &str = "inputs input_ids, attention_mask, [position_ids], \
     past_key_values.{i}.key|value; outputs logits, present.{i}.key|value";

/// The inputs of a decoder in the layout, as positions in the model's input list.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderInputs {
    pub input_ids: usize,
    pub attention_mask: usize,
    pub position_ids: Option<usize>,
    /// Per layer, the positions of `past_key_values.{i}.key` and `.value`.
    pub past: Vec<[usize; 2]>,
    pub heads: usize,
    pub head_dim: usize,
    /// The cache's element type.
    pub cache_dtype: DType,
    /// The named dimension of the past's sequence axis (it grows by a token per step).
    pub past_dim: String,
    /// The named dimension of `input_ids`' sequence axis (the prompt's length, then 1).
    pub sequence_dim: String,
}

/// A decoder in the layout: its inputs and the positions of its outputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Decoder {
    pub inputs: DecoderInputs,
    pub logits: usize,
    /// Per layer, the positions of `present.{i}.key` and `.value`.
    pub present: Vec<[usize; 2]>,
}

fn not_a_decoder(what: &[String]) -> String {
    format!(
        "not a decoder with a KV cache in the exporters' layout ({LAYOUT}): {}",
        what.join("; ")
    )
}

/// The layers `prefix{i}.key|value` cover among `names`: 0.. without a gap.
fn layers(names: &[&str], prefix: &str) -> usize {
    (0..)
        .take_while(|i| names.contains(&format!("{prefix}{i}.key").as_str()))
        .count()
}

impl DecoderInputs {
    /// Finds the layout among a model's declared inputs; the error names everything missing or
    /// out of place.
    pub fn detect(specs: &[InputSpec]) -> Result<DecoderInputs, String> {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let position = |name: &str| names.iter().position(|n| *n == name);
        let mut problems = Vec::new();
        let mut required = |name: &str| {
            let found = position(name);
            if found.is_none() {
                problems.push(format!("no input '{name}'"));
            }
            found
        };
        let input_ids = required("input_ids");
        let attention_mask = required("attention_mask");
        let position_ids = position("position_ids");
        let count = layers(&names, "past_key_values.");
        if count == 0 {
            problems.push("no input 'past_key_values.0.key'".into());
        }
        let mut past = Vec::new();
        for i in 0..count {
            let key = position(&format!("past_key_values.{i}.key"));
            let value = position(&format!("past_key_values.{i}.value"));
            match (key, value) {
                (Some(k), Some(v)) => past.push([k, v]),
                _ => problems.push(format!("no input 'past_key_values.{i}.value'")),
            }
        }
        let known = |n: &str| {
            matches!(n, "input_ids" | "attention_mask" | "position_ids")
                || (0..count).any(|i| {
                    n == format!("past_key_values.{i}.key")
                        || n == format!("past_key_values.{i}.value")
                })
        };
        for extra in names.iter().filter(|n| !known(n)) {
            problems.push(format!("input '{extra}' is not part of the layout"));
        }
        for (name, index) in [("input_ids", input_ids), ("attention_mask", attention_mask)]
            .into_iter()
            .chain(std::iter::once(("position_ids", position_ids)))
        {
            if let Some(spec) = index.map(|i| &specs[i])
                && (spec.dtype != DType::I64 || spec.shape.len() != 2)
            {
                problems.push(format!(
                    "input '{name}' is {} of rank {}, the layout has i64 [batch, sequence]",
                    spec.dtype,
                    spec.shape.len()
                ));
            }
        }
        let sequence_dim = input_ids
            .and_then(|i| match specs[i].shape.get(1) {
                Some(Dim::Named(n)) => Some(n.clone()),
                _ => None,
            })
            .unwrap_or_default();
        if input_ids.is_some() && sequence_dim.is_empty() {
            problems.push(
                "input 'input_ids' has a fixed sequence length; the layout's is named".into(),
            );
        }
        let cache = past.first().map(|[k, _]| &specs[*k]);
        let (heads, head_dim, past_dim, cache_dtype) = match cache.map(|s| (&s.shape[..], s.dtype))
        {
            Some(([_, Dim::Fixed(h), Dim::Named(p), Dim::Fixed(d)], dtype)) => {
                (*h, *d, p.clone(), dtype)
            }
            Some((shape, _)) => {
                let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
                problems.push(format!(
                    "input 'past_key_values.0.key' is [{}]; the layout's is [batch, heads, \
                     past_sequence, head_dim] with heads and head_dim fixed",
                    shape.join(", ")
                ));
                (0, 0, String::new(), DType::F32)
            }
            None => (0, 0, String::new(), DType::F32),
        };
        for [k, v] in &past {
            for spec in [&specs[*k], &specs[*v]] {
                if cache.is_some_and(|c| c.shape != spec.shape || c.dtype != spec.dtype) {
                    problems.push(format!(
                        "input '{}' differs from past_key_values.0.key in shape or type",
                        spec.name
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return Err(not_a_decoder(&problems));
        }
        Ok(DecoderInputs {
            input_ids: input_ids.unwrap_or_default(),
            attention_mask: attention_mask.unwrap_or_default(),
            position_ids,
            past,
            heads,
            head_dim,
            cache_dtype,
            past_dim,
            sequence_dim,
        })
    }

    /// The inputs of a step over `sequence` new tokens after `past` cached ones, for `batch`
    /// sequences at once, in the model's input order.
    pub fn bind(
        &self,
        specs: &[InputSpec],
        batch: usize,
        sequence: usize,
        past: usize,
    ) -> Vec<TensorInfo> {
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let shape = if i == self.attention_mask {
                    vec![batch, past + sequence]
                } else if i == self.input_ids || Some(i) == self.position_ids {
                    vec![batch, sequence]
                } else {
                    vec![batch, self.heads, past, self.head_dim]
                };
                TensorInfo {
                    name: spec.name.clone(),
                    dtype: spec.dtype,
                    shape,
                }
            })
            .collect()
    }

    /// The named dimensions whose sizes change from step to step.
    pub fn growing_dims(&self) -> Vec<String> {
        vec![self.sequence_dim.clone(), self.past_dim.clone()]
    }
}

impl Decoder {
    /// Completes the layout with the model's output names; the error names what is missing.
    pub fn detect(inputs: DecoderInputs, outputs: &[&str]) -> Result<Decoder, String> {
        let position = |name: &str| outputs.iter().position(|n| *n == name);
        let mut problems = Vec::new();
        let logits = position("logits");
        if logits.is_none() {
            problems.push("no output 'logits'".to_string());
        }
        let mut present = Vec::new();
        for i in 0..inputs.past.len() {
            let pair = ["key", "value"].map(|kind| {
                let name = format!("present.{i}.{kind}");
                position(&name).ok_or(name)
            });
            match pair {
                [Ok(k), Ok(v)] => present.push([k, v]),
                [a, b] => {
                    for name in [a.err(), b.err()].into_iter().flatten() {
                        problems.push(format!("no output '{name}'"));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return Err(not_a_decoder(&problems));
        }
        Ok(Decoder {
            inputs,
            logits: logits.unwrap_or_default(),
            present,
        })
    }

    /// Every cache tensor fed back, as `--feedback OUT=IN` pairs: `present.{i}.key` into
    /// `past_key_values.{i}.key`, and the same for values.
    pub fn feedback(&self) -> Vec<(String, String)> {
        (0..self.present.len())
            .flat_map(|i| {
                ["key", "value"].map(|kind| {
                    (
                        format!("present.{i}.{kind}"),
                        format!("past_key_values.{i}.{kind}"),
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: DType, dims: &[&str]) -> InputSpec {
        InputSpec {
            name: name.into(),
            dtype,
            shape: dims
                .iter()
                .map(|d| {
                    d.parse()
                        .map(Dim::Fixed)
                        .unwrap_or(Dim::Named(d.to_string()))
                })
                .collect(),
            range: None,
        }
    }

    fn decoder_specs(layers: usize) -> Vec<InputSpec> {
        let mut specs = vec![
            spec("input_ids", DType::I64, &["batch", "sequence"]),
            spec(
                "attention_mask",
                DType::I64,
                &["batch", "past_sequence + sequence"],
            ),
        ];
        for i in 0..layers {
            for kind in ["key", "value"] {
                let name = format!("past_key_values.{i}.{kind}");
                specs.push(spec(
                    &name,
                    DType::F32,
                    &["batch", "4", "past_sequence", "32"],
                ));
            }
        }
        specs
    }

    #[test]
    fn finds_the_layout_binds_a_step_and_pairs_the_cache() {
        let specs = decoder_specs(2);
        let inputs = DecoderInputs::detect(&specs).unwrap();
        assert_eq!(inputs.past, vec![[2, 3], [4, 5]]);
        assert_eq!((inputs.heads, inputs.head_dim), (4, 32));
        assert_eq!(inputs.position_ids, None);
        assert_eq!(inputs.growing_dims(), ["sequence", "past_sequence"]);
        let bound = inputs.bind(&specs, 2, 1, 7);
        assert_eq!(bound[0].shape, [2, 1]);
        assert_eq!(bound[1].shape, [2, 8]);
        assert_eq!(bound[5].shape, [2, 4, 7, 32]);
        let outputs = [
            "logits",
            "present.0.key",
            "present.0.value",
            "present.1.value",
            "present.1.key",
        ];
        let decoder = Decoder::detect(inputs, &outputs).unwrap();
        assert_eq!(decoder.present, vec![[1, 2], [4, 3]]);
        assert_eq!(
            decoder.feedback()[3],
            (
                "present.1.value".to_string(),
                "past_key_values.1.value".to_string()
            )
        );
    }

    #[test]
    fn the_error_names_everything_missing() {
        let e = DecoderInputs::detect(&[spec("input", DType::F32, &["batch", "784"])]).unwrap_err();
        assert!(e.starts_with("not a decoder with a KV cache"), "{e}");
        for missing in [
            "no input 'input_ids'",
            "no input 'attention_mask'",
            "no input 'past_key_values.0.key'",
            "input 'input' is not part of the layout",
        ] {
            assert!(e.contains(missing), "{e}");
        }
        let mut specs = decoder_specs(2);
        specs.remove(5);
        let e = DecoderInputs::detect(&specs).unwrap_err();
        assert!(e.contains("no input 'past_key_values.1.value'"), "{e}");
        let inputs = DecoderInputs::detect(&decoder_specs(2)).unwrap();
        let e =
            Decoder::detect(inputs, &["logits", "present.0.key", "present.0.value"]).unwrap_err();
        assert!(
            e.contains("no output 'present.1.key'; no output 'present.1.value'"),
            "{e}"
        );
    }
}
