//! Recipe names: `fp32`, `fp16`, `int8-dynamic`, `int8-static`, `prune-unstructured:S`,
//! `prune-2:4`, `prune-channels:R`, and chains of them joined by `+`
//! (`prune-2:4+int8-static`). A sweep (`prune-unstructured:0.1..0.5`, step 0.1, or
//! `A..B/STEP`) names one recipe per fraction, to show where a model's accuracy falls off.
//!
//! `int8-weight` and `int4-weight` take parameters after `:`, in any order
//! (`int4-weight:b64:asym:nbits`: blocks of 64, asymmetric, as ONNX Runtime's `MatMulNBits`;
//! see [`super::weight_only`]); the canonical name leaves the defaults out, so that the cache
//! and the results name one variant one way. Without `:dq` or `:nbits` the representation
//! follows the backend ([`Recipe::follows_backend`]).

use std::fmt;
use std::str::FromStr;

use super::weight_only::{Format, Settings as WeightOnly};

/// One transformation of a recipe.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Step {
    /// Weights and computation in float16, numerically sensitive operators kept in float32.
    Fp16,
    /// Int8 weights, activations quantized at run time (DynamicQuantizeLinear + integer ops).
    Int8Dynamic,
    /// Int8 weights and activations as QuantizeLinear/DequantizeLinear pairs, activation ranges
    /// from calibration.
    Int8Static,
    /// Magnitude pruning of every layer's weights to exactly this sparsity.
    PruneUnstructured(f64),
    /// Two zeros in every group of four consecutive weights along the input dimension.
    Prune2of4,
    /// Removes this fraction of the output channels with the lowest L1 norm.
    PruneChannels(f64),
    /// MatMul weights in 8- or 4-bit blocks with a scale each, activations float.
    WeightOnly(WeightOnly),
}

impl Step {
    /// Whether the step changes the number format (and so must come last in a chain).
    pub fn is_precision(self) -> bool {
        matches!(
            self,
            Step::Fp16 | Step::Int8Dynamic | Step::Int8Static | Step::WeightOnly(_)
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Fp16 => f.write_str("fp16"),
            Step::Int8Dynamic => f.write_str("int8-dynamic"),
            Step::Int8Static => f.write_str("int8-static"),
            Step::PruneUnstructured(s) => write!(f, "prune-unstructured:{s}"),
            Step::Prune2of4 => f.write_str("prune-2:4"),
            Step::PruneChannels(r) => write!(f, "prune-channels:{r}"),
            Step::WeightOnly(w) => write!(f, "{w}"),
        }
    }
}

/// A chain of steps; the empty chain is the fp32 source itself.
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    pub steps: Vec<Step>,
}

/// The recipe names `--variant` accepts, for error messages and help.
pub const RECIPE_HELP: &str = "fp32, fp16, int8-dynamic, int8-static, int8-weight, int4-weight (MatMul \
     weights only, in blocks of 32; parameters after ':' : bN blocks of N, asym with zero points, \
     dq or nbits to write DequantizeLinear or ONNX Runtime's MatMulNBits whatever the backend, as \
     in int4-weight:b64:asym:nbits), \
     prune-unstructured:S (0 < S < 1), \
     prune-2:4, prune-channels:R (0 < R < 1), or pruning steps chained with one precision step by \
     '+' (prune-2:4+int8-static); a fraction may be a sweep A..B (steps of 0.1) or A..B/STEP";

impl Recipe {
    /// The fp32 source model, unchanged.
    pub fn is_identity(&self) -> bool {
        self.steps.is_empty()
    }

    /// The canonical name (`prune-channels:0.3+int8-static`), which the cache keys on.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// The precision step, when there is one.
    pub fn precision(&self) -> Option<Step> {
        self.steps.iter().copied().find(|s| s.is_precision())
    }

    /// Whether the representation is left to the engine that runs the variant (a weight-only
    /// step without `:dq` or `:nbits`).
    pub fn follows_backend(&self) -> bool {
        matches!(self.precision(), Some(Step::WeightOnly(w)) if w.format.is_none())
    }

    /// The recipe with its weight-only step written as `format`.
    pub fn written_as(&self, format: Format) -> Recipe {
        let steps = self.steps.iter().map(|&step| match step {
            Step::WeightOnly(w) => Step::WeightOnly(WeightOnly {
                format: Some(format),
                ..w
            }),
            other => other,
        });
        Recipe {
            steps: steps.collect(),
        }
    }
}

impl fmt::Display for Recipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return f.write_str("fp32");
        }
        let names: Vec<String> = self.steps.iter().map(Step::to_string).collect();
        f.write_str(&names.join("+"))
    }
}

fn fraction(step: &str, text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{step}': '{text}' is not a number"))?;
    if !(value > 0.0 && value < 1.0) {
        return Err(format!(
            "'{step}': {value} is not a fraction strictly between 0 and 1"
        ));
    }
    Ok(value)
}

impl FromStr for Step {
    type Err = String;

    fn from_str(text: &str) -> Result<Step, String> {
        let lower = text.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "fp16" => Step::Fp16,
            "int8-dynamic" => Step::Int8Dynamic,
            "int8-static" | "int8-qdq" => Step::Int8Static,
            "prune-2:4" => Step::Prune2of4,
            "int8-weight" => Step::WeightOnly(WeightOnly::new(8)),
            "int4-weight" => Step::WeightOnly(WeightOnly::new(4)),
            other => {
                let weight_only = |bits, params| {
                    WeightOnly::parse(bits, params)
                        .map(Step::WeightOnly)
                        .map_err(|e| format!("'{text}': {e}"))
                };
                if let Some(params) = other.strip_prefix("int8-weight:") {
                    weight_only(8, params)?
                } else if let Some(params) = other.strip_prefix("int4-weight:") {
                    weight_only(4, params)?
                } else if let Some(s) = other.strip_prefix("prune-unstructured:") {
                    Step::PruneUnstructured(fraction(text, s)?)
                } else if let Some(r) = other.strip_prefix("prune-channels:") {
                    Step::PruneChannels(fraction(text, r)?)
                } else {
                    return Err(format!("unknown variant '{text}' (known: {RECIPE_HELP})"));
                }
            }
        })
    }
}

impl Recipe {
    /// `text` as one recipe, or one per fraction of a sweep (`prune-unstructured:0.1..0.5`,
    /// `prune-channels:0.2..0.6/0.2`, `prune-unstructured:0.1..0.3+int8-static`).
    pub fn parse_sweep(text: &str) -> Result<Vec<Recipe>, String> {
        let Some((head, tail)) = text.split_once("..") else {
            return Ok(vec![text.parse()?]);
        };
        let start_at = head.rfind(':').map_or(0, |i| i + 1);
        let (prefix, start) = head.split_at(start_at);
        let end_at = tail.find('+').unwrap_or(tail.len());
        let (range, suffix) = tail.split_at(end_at);
        let (end, step) = range.split_once('/').unwrap_or((range, "0.1"));
        let number = |what: &str, v: &str| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{text}': the sweep's {what} '{v}' is not a number"))
        };
        let (start, end, step) = (
            number("start", start)?,
            number("end", end)?,
            number("step", step)?,
        );
        let count = (end - start) / step;
        if !(step > 0.0 && end > start && (count - count.round()).abs() < 1e-6) {
            return Err(format!(
                "'{text}': a sweep A..B/STEP needs A < B and a positive STEP that reaches B from A \
                 in whole steps"
            ));
        }
        (0..=count.round() as usize)
            .map(|i| {
                // Rounded so that 0.1 + 2 x 0.1 is named 0.3.
                let v = ((start + i as f64 * step) * 1e9).round() / 1e9;
                format!("{prefix}{v}{suffix}").parse()
            })
            .collect()
    }
}

impl FromStr for Recipe {
    type Err = String;

    fn from_str(text: &str) -> Result<Recipe, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("fp32") {
            return Ok(Recipe { steps: Vec::new() });
        }
        let steps = text
            .split('+')
            .map(str::parse::<Step>)
            .collect::<Result<Vec<_>, _>>()?;
        let precision = steps.iter().filter(|s| s.is_precision()).count();
        if precision > 1 {
            return Err(format!(
                "'{text}': a variant has at most one precision step (fp16, int8-dynamic, int8-static, \
                 int8-weight, int4-weight)"
            ));
        }
        if precision == 1 && !steps.last().is_some_and(|s| s.is_precision()) {
            return Err(format!(
                "'{text}': the precision step comes last (prune first, then quantize)"
            ));
        }
        let mut seen = Vec::new();
        for s in &steps {
            let kind = std::mem::discriminant(s);
            if seen.contains(&kind) {
                return Err(format!("'{text}': '{s}' appears twice"));
            }
            seen.push(kind);
        }
        Ok(Recipe { steps })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_and_chained_names() {
        let r: Recipe = "prune-2:4+int8-static".parse().unwrap();
        assert_eq!(r.steps, vec![Step::Prune2of4, Step::Int8Static]);
        assert_eq!(r.name(), "prune-2:4+int8-static");
        let r: Recipe = "prune-channels:0.3".parse().unwrap();
        assert_eq!(r.steps, vec![Step::PruneChannels(0.3)]);
        assert_eq!(r.name(), "prune-channels:0.3");
        assert!("fp32".parse::<Recipe>().unwrap().is_identity());
        assert_eq!(
            "PRUNE-UNSTRUCTURED:0.50".parse::<Recipe>().unwrap().name(),
            "prune-unstructured:0.5"
        );
        assert_eq!(
            "int8-qdq".parse::<Recipe>().unwrap().precision(),
            Some(Step::Int8Static)
        );
        let r: Recipe = "prune-2:4+INT4-weight:nbits:b64:sym".parse().unwrap();
        assert_eq!(r.name(), "prune-2:4+int4-weight:b64:nbits");
        assert_eq!(
            "int8-weight:b32".parse::<Recipe>().unwrap().name(),
            "int8-weight"
        );
        let r: Recipe = "prune-2:4+int4-weight:asym".parse().unwrap();
        assert!(r.follows_backend());
        let nbits = r.written_as(Format::MatMulNBits);
        assert_eq!(nbits.name(), "prune-2:4+int4-weight:asym:nbits");
        assert!(!nbits.follows_backend());
        assert!(!"int8-static".parse::<Recipe>().unwrap().follows_backend());
    }

    #[test]
    fn a_sweep_names_one_recipe_per_fraction() {
        let names = |text: &str| -> Vec<String> {
            Recipe::parse_sweep(text)
                .unwrap()
                .iter()
                .map(Recipe::name)
                .collect()
        };
        assert_eq!(
            names("prune-unstructured:0.1..0.5"),
            [
                "prune-unstructured:0.1",
                "prune-unstructured:0.2",
                "prune-unstructured:0.3",
                "prune-unstructured:0.4",
                "prune-unstructured:0.5"
            ]
        );
        assert_eq!(
            names("prune-channels:0.2..0.6/0.2+int8-static"),
            [
                "prune-channels:0.2+int8-static",
                "prune-channels:0.4+int8-static",
                "prune-channels:0.6+int8-static"
            ]
        );
        assert_eq!(names("int8-static"), ["int8-static"]);
        for (text, expected) in [
            ("prune-unstructured:0.5..0.1", "needs A < B"),
            ("prune-unstructured:0.1..0.45", "in whole steps"),
            ("prune-unstructured:0.1..x", "end 'x' is not a number"),
            ("prune-unstructured:0.5..1.5", "strictly between 0 and 1"),
            ("int8-static..", "start 'int8-static' is not a number"),
        ] {
            let err = Recipe::parse_sweep(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_built() {
        for (text, expected) in [
            ("int8", "unknown variant 'int8'"),
            ("prune-channels:1.5", "strictly between 0 and 1"),
            ("prune-unstructured:x", "'x' is not a number"),
            ("fp16+int8-static", "at most one precision step"),
            ("int8-static+prune-2:4", "comes last"),
            ("prune-2:4+prune-2:4", "appears twice"),
            (
                "int4-weight:b48",
                "'int4-weight:b48': block size 48 is not a power of two",
            ),
            ("int8-weight+int4-weight", "at most one precision step"),
        ] {
            let err = text.parse::<Recipe>().unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
