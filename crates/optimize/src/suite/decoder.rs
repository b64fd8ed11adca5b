//! `gpt-tiny`: a GPT-2-shaped decoder with a KV cache in the layout exporters write (inputs
//! `input_ids`, `attention_mask`, `position_ids`, `past_key_values.{i}.key|value`; outputs
//! `logits`, `present.{i}.key|value`), for the generate scenario. Random weights (GPT-2's
//! N(0, 0.02²) initialisation, residual projections scaled by 1/√(2·layers)): its tokens mean
//! nothing, its shapes and operators are a real decoder's.

use super::{Init, dense, layer_norm};
use crate::builder::GraphBuilder;
use crate::error::Result;
use crate::onnx::{AttributeProto as A, DataType, ModelProto, TensorProto};

/// The file `generate` writes beside the suite. gpt-tiny is not in `suite.toml`: the default
/// run measures one-shot inferences of every suite model on every backend, and a decoder's
/// figures are the generate scenario's (`--scenario generate --model models/gpt-tiny.onnx`).
pub const GPT_TINY_FILE: &str = "gpt-tiny.onnx";

pub const GPT_LAYERS: usize = 4;
pub const GPT_HIDDEN: usize = 128;
pub const GPT_HEADS: usize = 4;
pub const GPT_VOCAB: usize = 2048;
/// Twice the hidden width rather than GPT-2's four times, to keep the file under 4 MB.
pub const GPT_FFN: usize = 256;
/// The longest sequence (prompt plus generated tokens) the position table covers.
pub const GPT_MAX_POSITIONS: usize = 256;

/// The decoder's graph. Per layer: pre-LayerNorm attention whose keys and values are the past
/// ones (`past_key_values.{i}.*`, `[batch, heads, past_sequence, head_dim]`) concatenated with
/// this call's, returned as `present.{i}.*`; then a pre-LayerNorm GELU feed-forward block. The
/// attention bias is built once from `attention_mask` (a key's position is the running count of
/// attended tokens before it) and `position_ids` (the queries' positions): a query sees the keys
/// at or before its position whose mask is 1.
pub fn gpt_tiny() -> Result<ModelProto> {
    let (h, heads, v) = (GPT_HIDDEN, GPT_HEADS, GPT_VOCAB);
    let head_dim = h / heads;
    let mut init = Init::new(5);
    let mut g = GraphBuilder::new("gpt_tiny");
    let (heads_dim, head_dim_dim) = (heads.to_string(), head_dim.to_string());
    let cache_dims = ["batch", &heads_dim, "past_sequence", &head_dim_dim];
    g.input("input_ids", DataType::Int64, &["batch", "sequence"]);
    g.input(
        "attention_mask",
        DataType::Int64,
        &["batch", "past_sequence + sequence"],
    );
    g.input("position_ids", DataType::Int64, &["batch", "sequence"]);
    for i in 0..GPT_LAYERS {
        for kind in ["key", "value"] {
            g.input(
                &format!("past_key_values.{i}.{kind}"),
                DataType::Float,
                &cache_dims,
            );
        }
    }
    let wte = init.normal(v * h, 0.0, 0.02);
    let wte = g.weight("wte", &[v, h], &wte);
    let wpe = init.normal(GPT_MAX_POSITIONS * h, 0.0, 0.01);
    let wpe = g.weight("wpe", &[GPT_MAX_POSITIONS, h], &wpe);
    g.ints("heads_shape", &[0, 0, heads as i64, head_dim as i64]);
    g.ints("merged_shape", &[0, 0, h as i64]);
    g.ints("axis_1", &[1]);
    g.ints("axis_2", &[2]);
    g.initializer(TensorProto::from_i64("one_i64", &[], &[1]));
    g.initializer(TensorProto::from_i64("cumsum_axis", &[], &[1]));
    g.weight("sqrt_head_dim", &[], &[(head_dim as f32).sqrt()]);
    g.weight("sqrt2", &[], &[std::f32::consts::SQRT_2]);
    g.weight("one", &[], &[1.0]);
    g.weight("half", &[], &[0.5]);
    g.weight("zero", &[], &[0.0]);
    // Far below any score, and finite, so a row with no visible key still has a softmax.
    g.weight("masked", &[], &[-1e9]);

    let tokens = g.node("Gather", "embed.tokens", &[&wte, "input_ids"], vec![]);
    let positions = g.node("Gather", "embed.positions", &[&wpe, "position_ids"], vec![]);
    let mut x = g.node("Add", "embed", &[&tokens, &positions], vec![]);

    let counted = g.node(
        "CumSum",
        "mask.counted",
        &["attention_mask", "cumsum_axis"],
        vec![],
    );
    let key_positions = g.node("Sub", "mask.key_positions", &[&counted, "one_i64"], vec![]);
    let keys = g.node(
        "Unsqueeze",
        "mask.keys",
        &[&key_positions, "axis_1"],
        vec![],
    );
    let queries = g.node(
        "Unsqueeze",
        "mask.queries",
        &["position_ids", "axis_2"],
        vec![],
    );
    let causal = g.node("LessOrEqual", "mask.causal", &[&keys, &queries], vec![]);
    let present = g.node(
        "Unsqueeze",
        "mask.attended",
        &["attention_mask", "axis_1"],
        vec![],
    );
    let present = g.node(
        "Cast",
        "mask.attended_bool",
        &[&present],
        vec![A::int("to", DataType::Bool as i64)],
    );
    let allowed = g.node("And", "mask.allowed", &[&causal, &present], vec![]);
    let allowed = g.node("Unsqueeze", "mask.per_head", &[&allowed, "axis_1"], vec![]);
    let bias = g.node("Where", "mask.bias", &[&allowed, "zero", "masked"], vec![]);

    let mut d = Decoder {
        g,
        init,
        residual_std: 0.02 / (2.0 * GPT_LAYERS as f32).sqrt(),
    };
    for i in 0..GPT_LAYERS {
        x = d.layer(i, &x, &bias);
    }
    let x = d.layer_norm("final_norm", &x);
    let g = &mut d.g;
    // Tied embeddings, as GPT-2's: the output projection is the token table transposed.
    let unembed = g.node(
        "Transpose",
        "unembed",
        &[&wte],
        vec![A::ints("perm", &[1, 0])],
    );
    g.node("MatMul", "logits", &[&x, &unembed], vec![]);
    g.output(
        "logits",
        DataType::Float,
        &["batch", "sequence", &v.to_string()],
    );
    let present_dims = [
        "batch",
        &heads_dim,
        "past_sequence + sequence",
        &head_dim_dim,
    ];
    for i in 0..GPT_LAYERS {
        for kind in ["key", "value"] {
            g.output(
                &format!("present.{i}.{kind}"),
                DataType::Float,
                &present_dims,
            );
        }
    }
    d.g.into_model()
}

struct Decoder {
    g: GraphBuilder,
    init: Init,
    /// Standard deviation of the projections that end a residual branch.
    residual_std: f32,
}

impl Decoder {
    fn linear(&mut self, name: &str, x: &str, fan_in: usize, fan_out: usize, std: f32) -> String {
        let w = self.init.normal(fan_in * fan_out, 0.0, std);
        dense(&mut self.g, &mut self.init, name, x, &w, [fan_in, fan_out])
    }

    fn layer_norm(&mut self, name: &str, x: &str) -> String {
        layer_norm(&mut self.g, &mut self.init, name, x, GPT_HIDDEN, 1e-5)
    }

    /// `[batch, sequence, hidden]` to `[batch, heads, sequence, head_dim]`.
    fn split_heads(&mut self, x: &str) -> String {
        let split = self.g.node(
            "Reshape",
            &format!("{x}.split_heads"),
            &[x, "heads_shape"],
            vec![],
        );
        self.g.node(
            "Transpose",
            &format!("{x}.heads"),
            &[&split],
            vec![A::ints("perm", &[0, 2, 1, 3])],
        )
    }

    fn layer(&mut self, i: usize, x: &str, bias: &str) -> String {
        let (h, f) = (GPT_HIDDEN, GPT_FFN);
        let p = format!("layer{i}");
        let normed = self.layer_norm(&format!("{p}.attention_norm"), x);
        let q = self.linear(&format!("{p}.query"), &normed, h, h, 0.02);
        let k = self.linear(&format!("{p}.key"), &normed, h, h, 0.02);
        let v = self.linear(&format!("{p}.value"), &normed, h, h, 0.02);
        let q = self.split_heads(&q);
        let k = self.split_heads(&k);
        let v = self.split_heads(&v);
        let g = &mut self.g;
        let concat = || vec![A::int("axis", 2)];
        let keys = g.node(
            "Concat",
            &format!("present.{i}.key"),
            &[&format!("past_key_values.{i}.key"), &k],
            concat(),
        );
        let values = g.node(
            "Concat",
            &format!("present.{i}.value"),
            &[&format!("past_key_values.{i}.value"), &v],
            concat(),
        );
        let keys_t = g.node(
            "Transpose",
            &format!("{p}.keys_t"),
            &[&keys],
            vec![A::ints("perm", &[0, 1, 3, 2])],
        );
        let scores = g.node("MatMul", &format!("{p}.scores"), &[&q, &keys_t], vec![]);
        let scaled = g.node(
            "Div",
            &format!("{p}.scaled_scores"),
            &[&scores, "sqrt_head_dim"],
            vec![],
        );
        let masked = g.node(
            "Add",
            &format!("{p}.masked_scores"),
            &[&scaled, bias],
            vec![],
        );
        let probs = g.node(
            "Softmax",
            &format!("{p}.attention"),
            &[&masked],
            vec![A::int("axis", -1)],
        );
        let context = g.node(
            "MatMul",
            &format!("{p}.context"),
            &[&probs, &values],
            vec![],
        );
        let perm = vec![A::ints("perm", &[0, 2, 1, 3])];
        let context = g.node("Transpose", &format!("{p}.context_t"), &[&context], perm);
        let context = g.node(
            "Reshape",
            &format!("{p}.context_merged"),
            &[&context, "merged_shape"],
            vec![],
        );
        let std = self.residual_std;
        let attended = self.linear(&format!("{p}.attention_output"), &context, h, h, std);
        let x = self.g.node(
            "Add",
            &format!("{p}.attention_residual"),
            &[x, &attended],
            vec![],
        );
        let normed = self.layer_norm(&format!("{p}.ffn_norm"), &x);
        let up = self.linear(&format!("{p}.ffn_up"), &normed, h, f, 0.02);
        // GELU, erf form: x · 0.5 · (1 + erf(x / √2)).
        let g = &mut self.g;
        let scaled = g.node("Div", &format!("{p}.gelu.scaled"), &[&up, "sqrt2"], vec![]);
        let erf = g.node("Erf", &format!("{p}.gelu.erf"), &[&scaled], vec![]);
        let shifted = g.node("Add", &format!("{p}.gelu.add_one"), &[&erf, "one"], vec![]);
        let gated = g.node("Mul", &format!("{p}.gelu.mul_x"), &[&up, &shifted], vec![]);
        let gelu = g.node("Mul", &format!("{p}.gelu"), &[&gated, "half"], vec![]);
        let down = self.linear(&format!("{p}.ffn_down"), &gelu, f, h, std);
        self.g
            .node("Add", &format!("{p}.ffn_residual"), &[&x, &down], vec![])
    }
}
