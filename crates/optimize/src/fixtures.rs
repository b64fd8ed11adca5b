//! Test models with the traits of real exported models, for the tests of every crate: shapes
//! declared wrong, weights in `Constant` nodes, control flow, an operator nobody implements.
//! Each is small, built in memory (save it with [`crate::model::save`]), and documented with
//! the output a correct runtime computes. All take f32 inputs.

use crate::builder::GraphBuilder;
use crate::onnx::{AttributeProto, DataType, GraphProto, ModelProto, NodeProto, TensorProto};

/// Every fixture with a short name, for tests that try each one.
pub fn all() -> Vec<(&'static str, ModelProto)> {
    vec![
        ("misdeclared-shapes", misdeclared_shapes()),
        ("constant-weights", constant_weights()),
        ("if", if_model()),
        ("loop", loop_model()),
        ("lstm", lstm_model()),
        ("custom-op", custom_op()),
    ]
}

fn built(g: GraphBuilder) -> ModelProto {
    g.into_model().expect("fixtures are well-formed graphs")
}

/// Declarations that disagree with the real shapes, as stale exports have them.
///
/// Input `x`: declared `[batch, ?]` (the second dimension has neither a value nor a name; the
/// model needs 4). Output `y`: declared `[1, 4]`, really `[batch, 4]`. The intermediate `mm`
/// has a `value_info` of `[1, 4]` too, and the weight `w` is also listed as a graph input, as
/// exporters before IR 4 did.
///
/// `y = relu(2·x + [1, -1, 0.5, 0])` element-wise (the weight is twice the identity).
pub fn misdeclared_shapes() -> ModelProto {
    let mut g = GraphBuilder::new("misdeclared_shapes");
    g.input("x", DataType::Float, &["batch", "?"]);
    g.input("w", DataType::Float, &["4", "4"]);
    let identity2: Vec<f32> = (0..16)
        .map(|i| if i % 5 == 0 { 2.0 } else { 0.0 })
        .collect();
    g.weight("w", &[4, 4], &identity2);
    g.weight("b", &[4], &[1.0, -1.0, 0.5, 0.0]);
    g.node("MatMul", "mm", &["x", "w"], vec![]);
    g.node("Add", "h", &["mm", "b"], vec![]);
    g.node("Relu", "y", &["h"], vec![]);
    g.value_info("mm", DataType::Float, &["1", "4"]);
    g.output("y", DataType::Float, &["1", "4"]);
    built(g)
}

/// Weights held by `Constant` nodes instead of initializers, as `torch.onnx` writes them when
/// constant folding is off.
///
/// Input `x` `[batch, 4]`, output `y` `[batch, 3]`:
/// `y[j] = 2·(x[j] + x[3] + b[j])` for `j` in 0..3, with `b = [0.5, -0.5, 0]`.
/// `W` `[4, 3]` comes from a `value` tensor, `b` from `value_floats`, the factor 2 from
/// `value_float`, and a no-op `Reshape` target `[-1, 3]` from `value_ints`. So 15 params.
pub fn constant_weights() -> ModelProto {
    let mut g = GraphBuilder::new("constant_weights");
    g.input("x", DataType::Float, &["batch", "4"]);
    #[rustfmt::skip]
    let w = [
        1.0, 0.0, 0.0,
        0.0, 1.0, 0.0,
        0.0, 0.0, 1.0,
        1.0, 1.0, 1.0,
    ];
    g.constant("W", TensorProto::from_f32("W", &[4, 3], &w));
    g.node(
        "Constant",
        "b",
        &[],
        vec![AttributeProto::floats("value_floats", &[0.5, -0.5, 0.0])],
    );
    g.node(
        "Constant",
        "two",
        &[],
        vec![AttributeProto::float("value_float", 2.0)],
    );
    g.node(
        "Constant",
        "target",
        &[],
        vec![AttributeProto::ints("value_ints", &[-1, 3])],
    );
    g.node("MatMul", "xw", &["x", "W"], vec![]);
    g.node("Add", "sum", &["xw", "b"], vec![]);
    g.node("Mul", "doubled", &["sum", "two"], vec![]);
    g.node("Reshape", "y", &["doubled", "target"], vec![]);
    g.output("y", DataType::Float, &["batch", "3"]);
    built(g)
}

/// A graph with an outer-scope reference, as every real subgraph has.
fn branch(name: &str, op: &str, constant: f32, output: &str) -> GraphProto {
    let mut g = GraphBuilder::new(name);
    let c = format!("{name}_constant");
    g.constant(&c, TensorProto::from_f32(&c, &[], &[constant]));
    g.node(op, output, &["x", &c], vec![]);
    g.output(output, DataType::Float, &["n"]);
    g.finish(&["x"]).expect("branches are well-formed")
}

/// An `If` with two branches that read the outer `x`.
///
/// Input `x` `[n]`, output `y` `[n]`: `y = 2·x` when `sum(x) > 0`, else `y = x - 1`.
pub fn if_model() -> ModelProto {
    let mut g = GraphBuilder::new("if");
    g.input("x", DataType::Float, &["n"]);
    g.node(
        "ReduceSum",
        "total",
        &["x"],
        vec![AttributeProto::int("keepdims", 0)],
    );
    g.constant("zero", TensorProto::from_f32("zero", &[], &[0.0]));
    g.node("Greater", "positive", &["total", "zero"], vec![]);
    g.node(
        "If",
        "y",
        &["positive"],
        vec![
            AttributeProto::graph("then_branch", branch("then", "Mul", 2.0, "doubled")),
            AttributeProto::graph("else_branch", branch("else", "Sub", 1.0, "decremented")),
        ],
    );
    g.output("y", DataType::Float, &["n"]);
    built(g)
}

/// A `Loop` with a constant trip count that doubles its loop-carried value.
///
/// Input `x` `[batch, 3]`, output `y` `[batch, 3]`: `y = 8·x` (three iterations of `v + v`).
pub fn loop_model() -> ModelProto {
    let mut body = GraphBuilder::new("body");
    body.input("iteration", DataType::Int64, &[]);
    body.input("cond_in", DataType::Bool, &[]);
    body.input("v_in", DataType::Float, &["batch", "3"]);
    body.node("Identity", "cond_out", &["cond_in"], vec![]);
    body.node("Add", "v_out", &["v_in", "v_in"], vec![]);
    body.output("cond_out", DataType::Bool, &[]);
    body.output("v_out", DataType::Float, &["batch", "3"]);
    let body = body.finish(&[]).expect("the body is well-formed");

    let mut g = GraphBuilder::new("loop");
    g.input("x", DataType::Float, &["batch", "3"]);
    g.constant("trip_count", TensorProto::from_i64("trip_count", &[], &[3]));
    g.constant(
        "keep_going",
        TensorProto::from_raw("keep_going", DataType::Bool, &[], vec![1]),
    );
    g.node(
        "Loop",
        "y",
        &["trip_count", "keep_going", "x"],
        vec![AttributeProto::graph("body", body)],
    );
    g.output("y", DataType::Float, &["batch", "3"]);
    built(g)
}

/// A one-unit `LSTM` whose weights are all 0.5 and biases absent, so all four gates see the
/// same pre-activation.
///
/// Input `x` `[seq, batch, 2]`; outputs `Y` `[seq, 1, batch, 1]` (every step) and `Y_h`
/// `[1, batch, 1]` (the last). With `h₀ = c₀ = 0` and, per step,
/// `z = 0.5·(x[0] + x[1]) + 0.5·h`, `c ← σ(z)·c + σ(z)·tanh(z)`, `h = σ(z)·tanh(c)`.
/// For one step of `x = [1, 1]`: `h = σ(1)·tanh(σ(1)·tanh(1)) ≈ 0.369 61`.
pub fn lstm_model() -> ModelProto {
    let mut g = GraphBuilder::new("lstm");
    g.input("x", DataType::Float, &["seq", "batch", "2"]);
    g.weight("W", &[1, 4, 2], &[0.5; 8]);
    g.weight("R", &[1, 4, 1], &[0.5; 4]);
    g.node_with_outputs(
        "LSTM",
        "lstm",
        &["x", "W", "R"],
        &["Y", "Y_h"],
        vec![AttributeProto::int("hidden_size", 1)],
    );
    g.output("Y", DataType::Float, &["seq", "1", "batch", "1"]);
    g.output("Y_h", DataType::Float, &["1", "batch", "1"]);
    built(g)
}

/// An operator no runtime has: `Frobnicate` of domain `com.example` (imported at version 1),
/// followed by a `Relu`.
///
/// Input `x` `[batch, 4]`, output `y` `[batch, 4]`. There is no correct output: loading it must
/// fail with an error that names `Frobnicate` (and ideally `com.example`).
pub fn custom_op() -> ModelProto {
    let mut g = GraphBuilder::new("custom_op");
    g.input("x", DataType::Float, &["batch", "4"]);
    g.push(NodeProto {
        input: vec!["x".into()],
        output: vec!["frobnicated".into()],
        name: Some("frobnicate".into()),
        op_type: Some("Frobnicate".into()),
        domain: Some("com.example".into()),
        attribute: vec![AttributeProto::int("strength", 3)],
        ..Default::default()
    });
    g.node("Relu", "y", &["frobnicated"], vec![]);
    g.output("y", DataType::Float, &["batch", "4"]);
    built(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::infer_shapes;
    use chipbench_core::{DType, TensorInfo};

    #[test]
    fn inference_ignores_the_stale_declarations() {
        let x = TensorInfo {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![3, 4],
        };
        let inf = infer_shapes(&misdeclared_shapes(), &[x], None);
        assert_eq!(inf.shapes["y"], vec![3, 4]);
        assert_eq!(inf.shapes["mm"], vec![3, 4]);
    }

    #[test]
    fn documents_the_lstm_example_value() {
        let s = |v: f64| 1.0 / (1.0 + (-v).exp());
        let h = s(1.0) * (s(1.0) * 1f64.tanh()).tanh();
        assert!((h - 0.36961).abs() < 1e-5, "{h}");
    }

    #[test]
    fn every_fixture_round_trips() {
        use prost::Message;
        for (name, model) in all() {
            let bytes = model.encode_to_vec();
            assert_eq!(ModelProto::decode(&bytes[..]).unwrap(), model, "{name}");
        }
    }
}
