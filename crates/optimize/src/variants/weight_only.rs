//! Weight-only quantization (`int8-weight`, `int4-weight`): the weights of MatMul layers in
//! blocks of consecutive values along the input dimension (32 unless the recipe says
//! `:bN`), each block with a scale of its own; activations stay float.
//!
//! Two schemes. Symmetric (the default): levels `-max..=max` (127 for 8 bits, 7 for 4), scale =
//! largest magnitude / max, no zero point. Asymmetric (`:asym`): levels `0..=2^bits-1`, the
//! block's range widened to hold 0 and split into that many steps, and a zero point per block
//! (the level that stands for 0). Either way a value lies within half a step of its block's
//! scale of the weight.
//!
//! Two representations ([`Format`]), which the recipe names (`:dq`, `:nbits`) or leaves to the
//! engine that runs the variant (`chipbench bench` derives `MatMulNBits` for ONNX Runtime's
//! cells and `DequantizeLinear` for the others):
//! - standard `DequantizeLinear` on the weights, which every engine runs. The blocks of a
//!   `[K, N]` weight are laid out as the rows of a `[N * K/block, block]` tensor (row
//!   `n * K/block + b` holds `W[b*block.., n]`), so one per-axis scale per row is one scale per
//!   block; `Reshape` to `[N, K]` and `Transpose` give the float `[K, N]` weight back. Levels
//!   are stored one per byte (int8 symmetric, uint8 asymmetric), so 4 bits take as much room as
//!   8.
//! - ONNX Runtime's contrib operator `com.microsoft.MatMulNBits` (`:nbits`), which replaces the
//!   MatMul and reads the levels packed (two 4-bit levels a byte, low nibble first) in the same
//!   block order, as unsigned codes: symmetric levels are offset by `2^(bits-1)`, the operator's
//!   default zero point. Engines other than ONNX Runtime may not run it (tract runs 4 bits, not
//!   8): a cell that asks for it there fails to load, with the engine's reason.
//!
//! A MatMul whose K is not a multiple of the block is left in float, reported with the reason:
//! padding its last block would quantize values that do not exist.

use std::fmt;

use crate::onnx::{
    AttributeProto as A, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    TensorProto,
};

use super::KeptLayer;

/// Values per block along a weight's input dimension, unless the recipe says otherwise.
pub const DEFAULT_BLOCK: usize = 32;

/// The smallest block `MatMulNBits` accepts; blocks are powers of two from there.
pub const MIN_BLOCK: usize = 16;

/// How a block's values map to levels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// `-max..=max`, scale = largest magnitude / max, zero point 0.
    #[default]
    Symmetric,
    /// `0..=2^bits-1` over the block's range (widened to hold 0), with a zero point.
    Asymmetric,
}

/// How the quantized weights are written in the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Standard `DequantizeLinear` on the weights, then the original MatMul.
    #[default]
    DequantizeLinear,
    /// ONNX Runtime's `com.microsoft.MatMulNBits` in place of the MatMul, levels packed.
    MatMulNBits,
}

/// Everything that decides a weight-only variant; its `Display` is the recipe step's name
/// (`int4-weight:b64:asym:nbits`, defaults left out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub bits: u32,
    pub block: usize,
    pub scheme: Scheme,
    /// `None`: the representation follows the engine that runs the variant (the caller
    /// resolves it per backend); a file derived without that choice is `DequantizeLinear`.
    pub format: Option<Format>,
}

impl Settings {
    /// The defaults for `bits` (8 or 4): blocks of [`DEFAULT_BLOCK`], symmetric, the
    /// representation left to the backend.
    pub fn new(bits: u32) -> Settings {
        Settings {
            bits,
            block: DEFAULT_BLOCK,
            scheme: Scheme::default(),
            format: None,
        }
    }

    /// The representation a file is written in.
    pub fn written_as(&self) -> Format {
        self.format.unwrap_or_default()
    }

    /// Reads the parameters after `int4-weight` (`b64:asym:nbits`, any order).
    pub fn parse(bits: u32, params: &str) -> Result<Settings, String> {
        let mut settings = Settings::new(bits);
        for param in params.split(':') {
            match param {
                "sym" => settings.scheme = Scheme::Symmetric,
                "asym" => settings.scheme = Scheme::Asymmetric,
                "dq" => settings.format = Some(Format::DequantizeLinear),
                "nbits" => settings.format = Some(Format::MatMulNBits),
                _ => {
                    let block = param
                        .strip_prefix('b')
                        .and_then(|b| b.parse::<usize>().ok())
                        .ok_or_else(|| {
                            format!(
                                "unknown weight-only parameter '{param}' (known: bN, the block \
                                 size; sym or asym; dq or nbits, the representation)"
                            )
                        })?;
                    if block < MIN_BLOCK || !block.is_power_of_two() {
                        return Err(format!(
                            "block size {block} is not a power of two of at least {MIN_BLOCK} \
                             (what MatMulNBits accepts)"
                        ));
                    }
                    settings.block = block;
                }
            }
        }
        Ok(settings)
    }

    /// The lowest and highest level.
    pub fn levels(&self) -> (i32, i32) {
        match self.scheme {
            Scheme::Symmetric => {
                let max = (1 << (self.bits - 1)) - 1;
                (-max, max)
            }
            Scheme::Asymmetric => (0, (1 << self.bits) - 1),
        }
    }

    /// How the variant was made, in words, for the derivation record.
    pub fn describe(&self) -> String {
        let (low, high) = self.levels();
        let scheme = match self.scheme {
            Scheme::Symmetric => format!("one symmetric scale each (levels {low}..={high})"),
            Scheme::Asymmetric => {
                format!("one scale and zero point each (asymmetric, levels {low}..={high})")
            }
        };
        let format = match (self.written_as(), self.bits) {
            (Format::DequantizeLinear, _) => {
                "dequantized by standard DequantizeLinear on the weights (levels stored one per \
                 byte)"
            }
            (Format::MatMulNBits, 4) => {
                "as ONNX Runtime's com.microsoft.MatMulNBits (two levels packed per byte)"
            }
            (Format::MatMulNBits, _) => "as ONNX Runtime's com.microsoft.MatMulNBits",
        };
        format!(
            "weight-only int{}: MatMul weights in blocks of {} along the input dimension, {scheme}, \
             {format}; activations stay float",
            self.bits, self.block
        )
    }
}

impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "int{}-weight", self.bits)?;
        if self.block != DEFAULT_BLOCK {
            write!(f, ":b{}", self.block)?;
        }
        if self.scheme == Scheme::Asymmetric {
            f.write_str(":asym")?;
        }
        match self.format {
            Some(Format::DequantizeLinear) => f.write_str(":dq")?,
            Some(Format::MatMulNBits) => f.write_str(":nbits")?,
            None => {}
        }
        Ok(())
    }
}

/// A `[K, N]` weight quantized in blocks: `values` (levels) in the row layout the module
/// describes, `scales` and `zero_points` one per row (zero points 0 when symmetric).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockQuantized {
    pub block: usize,
    pub values: Vec<i32>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i32>,
}

/// Quantizes `w` (`[k, n]`, row-major, `k` a multiple of the block) as `settings` say.
pub fn quantize(w: &[f32], k: usize, n: usize, settings: &Settings) -> BlockQuantized {
    let block = settings.block;
    let blocks = k / block;
    let (low, high) = settings.levels();
    let mut q = BlockQuantized {
        block,
        values: Vec::with_capacity(k * n),
        scales: Vec::with_capacity(blocks * n),
        zero_points: Vec::with_capacity(blocks * n),
    };
    for col in 0..n {
        for b in 0..blocks {
            let values = (0..block).map(|i| w[(b * block + i) * n + col]);
            let (scale, zero) = match settings.scheme {
                Scheme::Symmetric => {
                    let largest = values.clone().fold(0f32, |m, v| m.max(v.abs()));
                    (largest / high as f32, 0)
                }
                Scheme::Asymmetric => {
                    // The range holds 0 so that the zero point is a level and 0 is exact.
                    let (min, max) = values
                        .clone()
                        .fold((0f32, 0f32), |(lo, hi), v| (lo.min(v), hi.max(v)));
                    let scale = (max - min) / high as f32;
                    let zero = if scale > 0.0 {
                        ((-min / scale).round() as i32).clamp(low, high)
                    } else {
                        0
                    };
                    (scale, zero)
                }
            };
            // An all-zero block: any scale represents it exactly; 1 keeps it finite.
            let scale = if scale > 0.0 { scale } else { 1.0 };
            q.scales.push(scale);
            q.zero_points.push(zero);
            q.values
                .extend(values.map(|v| ((v / scale).round() as i32 + zero).clamp(low, high)));
        }
    }
    q
}

/// The float `[k, n]` weight `q` stands for: `(level - zero point) * scale`.
pub fn dequantize(q: &BlockQuantized, k: usize, n: usize) -> Vec<f32> {
    let block = q.block;
    let blocks = k / block;
    let mut w = vec![0f32; k * n];
    for col in 0..n {
        for b in 0..blocks {
            let row = col * blocks + b;
            for i in 0..block {
                let level = q.values[row * block + i] - q.zero_points[row];
                w[(b * block + i) * n + col] = level as f32 * q.scales[row];
            }
        }
    }
    w
}

/// `codes` (each below `2^bits`) packed `8 / bits` to a byte, the first in the low bits.
fn pack(codes: impl Iterator<Item = i32>, bits: u32) -> Vec<u8> {
    let per_byte = (8 / bits) as usize;
    let codes: Vec<u8> = codes.map(|c| c as u8).collect();
    codes
        .chunks(per_byte)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, &c)| byte | c << (i as u32 * bits))
        })
        .collect()
}

/// Quantizes the weight of every MatMul whose second input is a float `[K, N]` initializer with
/// `K` a multiple of the block; returns the layers converted and the MatMuls left in float with
/// the reason.
pub fn convert(model: &mut ModelProto, settings: &Settings) -> (Vec<String>, Vec<KeptLayer>) {
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    let block = settings.block;
    let mut converted = Vec::new();
    let mut kept = Vec::new();
    let mut prologue = Vec::new();
    for index in 0..graph.node.len() {
        let node = &graph.node[index];
        if node.op_type() != "MatMul" || !node.is_standard() {
            continue;
        }
        let keep = |reason: &str| KeptLayer {
            node: node.name().to_string(),
            op: "MatMul".into(),
            reason: reason.into(),
        };
        let weight = node.input.get(1).cloned().unwrap_or_default();
        let Some(init) = graph.initializer.iter().find(|t| t.name() == weight) else {
            kept.push(keep("its weight is computed, not an initializer"));
            continue;
        };
        let float = init.data_type == Some(DataType::Float as i32);
        let (k, n) = match init.dims[..] {
            [k, n] if float && k > 0 && n > 0 && (k as usize).is_multiple_of(block) => {
                (k as usize, n as usize)
            }
            _ => {
                kept.push(keep(&format!(
                    "its weight is not a float [K, N] with K a multiple of the block ({block})"
                )));
                continue;
            }
        };
        let Ok(values) = init.to_f32() else {
            kept.push(keep("its weight's data cannot be read"));
            continue;
        };
        let q = quantize(&values, k, n, settings);
        match settings.written_as() {
            Format::DequantizeLinear => {
                prologue.extend(dequantize_linear(graph, &weight, &q, k, n, settings));
                graph.node[index].input[1] = format!("{weight}.dequantized");
            }
            Format::MatMulNBits => {
                let matmul = graph.node[index].clone();
                graph.node[index] = matmul_nbits(graph, &matmul, &q, k, n, settings);
            }
        }
        converted.push(graph.node[index].name().to_string());
    }
    // The dequantization reads initializers only: it can run before every other node.
    graph.node.splice(0..0, prologue);
    super::fold::drop_unused_initializers(graph);
    if settings.written_as() == Format::MatMulNBits
        && !converted.is_empty()
        && !model
            .opset_import
            .iter()
            .any(|o| o.domain() == "com.microsoft")
    {
        model
            .opset_import
            .push(OperatorSetIdProto::new("com.microsoft", 1));
    }
    (converted, kept)
}

/// The initializers of `q` and the nodes that dequantize it to `{weight}.dequantized`.
fn dequantize_linear(
    graph: &mut GraphProto,
    weight: &str,
    q: &BlockQuantized,
    k: usize,
    n: usize,
    settings: &Settings,
) -> Vec<NodeProto> {
    let rows = n * k / settings.block;
    let names = |suffix: &str| format!("{weight}.{suffix}");
    // Symmetric levels are signed, asymmetric ones unsigned: the type that holds them.
    let dtype = match settings.scheme {
        Scheme::Symmetric => DataType::Int8,
        Scheme::Asymmetric => DataType::Uint8,
    };
    let bytes = |v: &[i32]| v.iter().map(|&v| v as u8).collect();
    graph.initializer.push(TensorProto::from_raw(
        &names("quantized"),
        dtype,
        &[rows, settings.block],
        bytes(&q.values),
    ));
    graph
        .initializer
        .push(TensorProto::from_f32(&names("scale"), &[rows], &q.scales));
    graph.initializer.push(TensorProto::from_raw(
        &names("zero_point"),
        dtype,
        &[rows],
        bytes(&q.zero_points),
    ));
    graph.initializer.push(TensorProto::from_i64(
        &names("columns_shape"),
        &[2],
        &[n as i64, k as i64],
    ));
    let node = |op: &str, name: String, inputs: &[String], attrs: Vec<A>| NodeProto {
        input: inputs.to_vec(),
        output: vec![name.clone()],
        name: Some(name),
        op_type: Some(op.into()),
        attribute: attrs,
        ..Default::default()
    };
    vec![
        node(
            "DequantizeLinear",
            names("dequantized_blocks"),
            &[names("quantized"), names("scale"), names("zero_point")],
            vec![A::int("axis", 0)],
        ),
        node(
            "Reshape",
            names("dequantized_columns"),
            &[names("dequantized_blocks"), names("columns_shape")],
            vec![],
        ),
        node(
            "Transpose",
            names("dequantized"),
            &[names("dequantized_columns")],
            vec![A::ints("perm", &[1, 0])],
        ),
    ]
}

/// The `MatMulNBits` node that computes `matmul` with `q`, its initializers added to `graph`.
fn matmul_nbits(
    graph: &mut GraphProto,
    matmul: &NodeProto,
    q: &BlockQuantized,
    k: usize,
    n: usize,
    settings: &Settings,
) -> NodeProto {
    let (bits, block) = (settings.bits, settings.block);
    let blocks = k / block;
    let weight = &matmul.input[1];
    let names = |suffix: &str| format!("{weight}.{suffix}");
    // Unsigned codes: symmetric levels offset by the operator's default zero point.
    let offset = match settings.scheme {
        Scheme::Symmetric => 1 << (bits - 1),
        Scheme::Asymmetric => 0,
    };
    let blob = block * bits as usize / 8;
    graph.initializer.push(TensorProto::from_raw(
        &names("packed"),
        DataType::Uint8,
        &[n, blocks, blob],
        pack(q.values.iter().map(|v| v + offset), bits),
    ));
    graph.initializer.push(TensorProto::from_f32(
        &names("scale"),
        &[n * blocks],
        &q.scales,
    ));
    let mut inputs = vec![matmul.input[0].clone(), names("packed"), names("scale")];
    if settings.scheme == Scheme::Asymmetric {
        // Each column's zero points start on a byte of their own.
        let per_column = (blocks * bits as usize).div_ceil(8);
        let packed: Vec<u8> = q
            .zero_points
            .chunks(blocks)
            .flat_map(|column| {
                let mut bytes = pack(column.iter().copied(), bits);
                bytes.resize(per_column, 0);
                bytes
            })
            .collect();
        graph.initializer.push(TensorProto::from_raw(
            &names("zero_point"),
            DataType::Uint8,
            &[packed.len()],
            packed,
        ));
        inputs.push(names("zero_point"));
    }
    NodeProto {
        input: inputs,
        output: matmul.output.clone(),
        name: matmul.name.clone(),
        op_type: Some("MatMulNBits".into()),
        domain: Some("com.microsoft".into()),
        attribute: vec![
            A::int("K", k as i64),
            A::int("N", n as i64),
            A::int("bits", bits as i64),
            A::int("block_size", block as i64),
        ],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value of `w` within half a step of its block's scale of `dequantize(q)`.
    fn assert_within_half_a_step(w: &[f32], q: &BlockQuantized, k: usize, n: usize, what: &str) {
        let back = dequantize(q, k, n);
        let blocks = k / q.block;
        for (i, (a, b)) in w.iter().zip(&back).enumerate() {
            let row = (i % n) * blocks + (i / n) / q.block;
            // Half a step, and the rounding of f32 arithmetic on values of this size.
            let bound = q.scales[row] / 2.0 + 4.0 * f32::EPSILON * a.abs().max(b.abs());
            assert!(
                (a - b).abs() <= bound,
                "{what}: {a} {b} (scale {})",
                q.scales[row]
            );
        }
    }

    fn weight(k: usize, n: usize) -> Vec<f32> {
        (0..k * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect()
    }

    #[test]
    fn blocks_round_to_within_half_a_step_and_keep_their_layout() {
        let (k, n) = (128, 3);
        let w = weight(k, n);
        for bits in [4, 8] {
            for block in [16, 32, 64, 128] {
                for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
                    let settings = Settings {
                        block,
                        scheme,
                        ..Settings::new(bits)
                    };
                    let q = quantize(&w, k, n, &settings);
                    let rows = n * k / block;
                    assert_eq!(
                        (q.values.len(), q.scales.len(), q.zero_points.len()),
                        (k * n, rows, rows)
                    );
                    assert_within_half_a_step(&w, &q, k, n, &settings.to_string());
                    let (low, high) = settings.levels();
                    assert!(q.values.iter().all(|v| (low..=high).contains(v)));
                    assert!(q.zero_points.iter().all(|v| (low..=high).contains(v)));
                }
            }
        }
    }

    #[test]
    fn an_asymmetric_block_spends_every_level_on_its_range_and_keeps_zero_exact() {
        // One block of 16 from 1 to 4 (the range widened to 0..4) and one from -3 to 12.
        let (k, n) = (32, 1);
        let mut w: Vec<f32> = (0..16).map(|i| 1.0 + 3.0 * i as f32 / 15.0).collect();
        w.extend((0..16).map(|i| -3.0 + i as f32));
        let settings = Settings::parse(4, "b16:asym").unwrap();
        let q = quantize(&w, k, n, &settings);
        assert_eq!(q.scales, [4.0 / 15.0, 15.0 / 15.0]);
        assert_eq!(q.zero_points, [0, 3]);
        // The level of 0 is the zero point: 0 dequantizes to exactly 0.
        assert_eq!(q.values[16 + 3], 3);
        assert_eq!(dequantize(&q, k, n)[19], 0.0);
        assert_eq!((q.values[15], q.values[31]), (15, 15));
        assert_within_half_a_step(&w, &q, k, n, "asym");
        // Symmetric spends half its levels on the negative side it does not use.
        let sym = quantize(&w, k, n, &Settings::parse(4, "b16").unwrap());
        assert!(sym.scales[0] > q.scales[0]);
    }

    #[test]
    fn an_all_zero_block_stays_zero() {
        let w = vec![0f32; 64];
        for scheme in ["sym", "asym"] {
            let settings = Settings::parse(4, scheme).unwrap();
            let q = quantize(&w, 64, 1, &settings);
            assert!(q.scales.iter().all(|s| s.is_finite() && *s > 0.0));
            assert_eq!(dequantize(&q, 64, 1), w, "{scheme}");
        }
    }

    #[test]
    fn settings_parse_and_print_as_recipe_steps() {
        let s = Settings::parse(4, "asym:b64:nbits").unwrap();
        assert_eq!(
            s,
            Settings {
                bits: 4,
                block: 64,
                scheme: Scheme::Asymmetric,
                format: Some(Format::MatMulNBits)
            }
        );
        assert_eq!(s.to_string(), "int4-weight:b64:asym:nbits");
        assert_eq!(
            Settings::parse(8, "b32:sym").unwrap().to_string(),
            "int8-weight"
        );
        assert_eq!(
            Settings::parse(8, "dq").unwrap().to_string(),
            "int8-weight:dq"
        );
        for (params, expected) in [
            ("b24", "not a power of two"),
            ("b8", "at least 16"),
            ("fast", "unknown weight-only parameter 'fast'"),
        ] {
            let err = Settings::parse(4, params).unwrap_err();
            assert!(err.contains(expected), "{params}: {err}");
        }
    }

    #[test]
    fn levels_pack_low_first() {
        assert_eq!(pack([1, 2, 15, 0, 7].into_iter(), 4), [0x21, 0x0f, 0x07]);
        assert_eq!(pack([1, 200].into_iter(), 8), [1, 200]);
    }
}
