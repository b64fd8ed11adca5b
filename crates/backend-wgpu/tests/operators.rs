//! Each operator family on wgpu against tract's CPU implementation of the same one-node (or
//! few-node) ONNX model, on seeded inputs. Shapes are odd on purpose: sizes that are not
//! multiples of the kernels' tiles and workgroups, strides, pads, dilations, groups and
//! broadcasting. f32 results must agree to cosine >= 0.9999 and max|y - r| / max|r| <= 1e-3.

mod common;

use chipbench_core::DType;
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{AttributeProto as A, DataType, TensorProto};
use common::{assert_matches_tract, device, model, spec, weight, weight_f16};

const COSINE: f64 = 0.9999;
const REL: f64 = 1e-3;

fn graph() -> GraphBuilder {
    GraphBuilder::new("op")
}

/// Declares `names` as f32 outputs of unknown shape (tract infers them).
fn outputs(g: &mut GraphBuilder, names: &[&str]) {
    for n in names {
        g.output(n, DataType::Float, &["?"]);
    }
}

#[test]
fn matmul_with_batch_broadcasting_and_sizes_off_the_tile() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("a", DataType::Float, &["2", "1", "33", "19"]);
    g.input("b", DataType::Float, &["3", "19", "70"]);
    let w = weight(&mut g, "w", &[70, 9], 1);
    g.node("MatMul", "ab", &["a", "b"], vec![]);
    g.node("MatMul", "abw", &["ab", &w], vec![]);
    outputs(&mut g, &["ab", "abw"]);
    let m = model(
        g,
        vec![
            spec("a", DType::F32, &[2, 1, 33, 19]),
            spec("b", DType::F32, &[3, 19, 70]),
        ],
    );
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn matrix_vector_products() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["1", "301"]);
    g.input("y", DataType::Float, &["3", "130"]);
    let w1 = weight(&mut g, "w1", &[301, 67], 2);
    let w2 = weight(&mut g, "w2", &[130, 5000], 3);
    g.node("MatMul", "xw", &["x", &w1], vec![]);
    g.node("MatMul", "yw", &["y", &w2], vec![]);
    outputs(&mut g, &["xw", "yw"]);
    let m = model(
        g,
        vec![
            spec("x", DType::F32, &[1, 301]),
            spec("y", DType::F32, &[3, 130]),
        ],
    );
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn gemm_with_transposes_alpha_beta_and_bias() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("a", DataType::Float, &["29", "5"]);
    let b = weight(&mut g, "b", &[67, 29], 4);
    let c = weight(&mut g, "c", &[67], 5);
    let attrs = vec![
        A::int("transA", 1),
        A::int("transB", 1),
        A::float("alpha", 0.5),
        A::float("beta", 2.0),
    ];
    g.node("Gemm", "y", &["a", &b, &c], attrs);
    g.node("Relu", "r", &["y"], vec![]);
    outputs(&mut g, &["r"]);
    let m = model(g, vec![spec("a", DType::F32, &[29, 5])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn grouped_strided_dilated_padded_convolution_with_bias() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["1", "6", "17", "19"]);
    let w = weight(&mut g, "w", &[9, 2, 3, 3], 6);
    let b = weight(&mut g, "b", &[9], 7);
    let attrs = vec![
        A::int("group", 3),
        A::ints("strides", &[2, 1]),
        A::ints("dilations", &[2, 1]),
        A::ints("pads", &[1, 2, 0, 1]),
    ];
    g.node("Conv", "y", &["x", &w, &b], attrs);
    outputs(&mut g, &["y"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 6, 17, 19])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn depthwise_convolution_with_batch_norm_and_relu6() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "8", "15", "13"]);
    let w = weight(&mut g, "w", &[8, 1, 3, 3], 8);
    g.node(
        "Conv",
        "c",
        &["x", &w],
        vec![
            A::int("group", 8),
            A::ints("strides", &[2, 2]),
            A::ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let scale = g.weight(
        "scale",
        &[8],
        &common::values(9, 8)
            .iter()
            .map(|v| 1.0 + 0.2 * v)
            .collect::<Vec<_>>(),
    );
    let bias = weight(&mut g, "bias", &[8], 10);
    let mean = weight(&mut g, "mean", &[8], 11);
    let var = g.weight(
        "var",
        &[8],
        &common::values(12, 8)
            .iter()
            .map(|v| 1.0 + 0.5 * v.abs())
            .collect::<Vec<_>>(),
    );
    g.node(
        "BatchNormalization",
        "bn",
        &["c", &scale, &bias, &mean, &var],
        vec![],
    );
    let lo = g.initializer(TensorProto::from_f32("lo", &[], &[0.0]));
    let hi = g.initializer(TensorProto::from_f32("hi", &[], &[6.0]));
    g.node("Clip", "y", &["bn", &lo, &hi], vec![]);
    outputs(&mut g, &["y"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 8, 15, 13])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn large_kernel_convolution_over_a_batch_and_a_residual() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "3", "11", "12"]);
    let w = weight(&mut g, "w", &[16, 3, 5, 5], 13);
    g.node(
        "Conv",
        "c",
        &["x", &w],
        vec![A::ints("pads", &[2, 2, 2, 2])],
    );
    let w2 = weight(&mut g, "w2", &[16, 16, 1, 1], 14);
    g.node("Conv", "c2", &["c", &w2], vec![]);
    g.node("Add", "sum", &["c", "c2"], vec![]);
    g.node("Relu", "y", &["sum"], vec![]);
    outputs(&mut g, &["y"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 3, 11, 12])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn one_dimensional_convolution() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["1", "4", "23"]);
    let w = weight(&mut g, "w", &[5, 4, 3], 15);
    g.node(
        "Conv",
        "y",
        &["x", &w],
        vec![A::ints("pads", &[1, 1]), A::ints("strides", &[2])],
    );
    outputs(&mut g, &["y"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 4, 23])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn broadcasting_binary_operators() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("a", DataType::Float, &["2", "3", "1", "5"]);
    g.input("b", DataType::Float, &["4", "1"]);
    let c = g.weight(
        "c",
        &[5],
        &common::values(16, 5)
            .iter()
            .map(|v| 1.5 + v)
            .collect::<Vec<_>>(),
    );
    g.node("Add", "add", &["a", "b"], vec![]);
    g.node("Sub", "sub", &["b", "a"], vec![]);
    g.node("Mul", "mul", &["a", "b"], vec![]);
    g.node("Div", "div", &["a", &c], vec![]);
    g.node("Max", "max", &["a", "b"], vec![]);
    g.node("Min", "min", &["a", "b", &c], vec![]);
    let two = g.initializer(TensorProto::from_f32("two", &[], &[2.0]));
    g.node("Pow", "pow", &["a", &two], vec![]);
    outputs(&mut g, &["add", "sub", "mul", "div", "max", "min", "pow"]);
    let m = model(
        g,
        vec![
            spec("a", DType::F32, &[2, 3, 1, 5]),
            spec("b", DType::F32, &[4, 1]),
        ],
    );
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn activations_and_unary_functions() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["3", "41"]);
    let lo = g.initializer(TensorProto::from_f32("lo", &[], &[-0.5]));
    let hi = g.initializer(TensorProto::from_f32("hi", &[], &[0.7]));
    g.node("Relu", "relu", &["x"], vec![]);
    g.node("Clip", "clip", &["x", &lo, &hi], vec![]);
    g.node("Sigmoid", "sigmoid", &["x"], vec![]);
    g.node("Tanh", "tanh", &["x"], vec![]);
    g.node("Erf", "erf", &["x"], vec![]);
    g.node("Exp", "exp", &["x"], vec![]);
    g.node("Abs", "abs", &["x"], vec![]);
    g.node("Neg", "neg", &["x"], vec![]);
    g.node("LeakyRelu", "leaky", &["x"], vec![A::float("alpha", 0.1)]);
    g.node("Sqrt", "sqrt", &["abs"], vec![]);
    let one = g.initializer(TensorProto::from_f32("one", &[], &[1.0]));
    g.node("Add", "abs1", &["abs", &one], vec![]);
    g.node("Log", "log", &["abs1"], vec![]);
    g.node("Reciprocal", "recip", &["abs1"], vec![]);
    g.node("Floor", "floor", &["x"], vec![]);
    g.node("Ceil", "ceil", &["x"], vec![]);
    g.node("Sign", "sign", &["x"], vec![]);
    g.node("HardSwish", "hswish", &["x"], vec![]);
    // GELU as exporters write it: x * 0.5 * (1 + erf(x / sqrt 2)).
    let sqrt2 = g.initializer(TensorProto::from_f32(
        "sqrt2",
        &[],
        &[std::f32::consts::SQRT_2],
    ));
    let half = g.initializer(TensorProto::from_f32("half", &[], &[0.5]));
    g.node("Div", "g1", &["x", &sqrt2], vec![]);
    g.node("Erf", "g2", &["g1"], vec![]);
    g.node("Add", "g3", &["g2", &one], vec![]);
    g.node("Mul", "g4", &["x", "g3"], vec![]);
    g.node("Mul", "gelu", &["g4", &half], vec![]);
    let names = [
        "relu", "clip", "sigmoid", "tanh", "erf", "exp", "abs", "neg", "leaky", "sqrt", "log",
        "recip", "floor", "ceil", "sign", "hswish", "gelu",
    ];
    outputs(&mut g, &names);
    let m = model(g, vec![spec("x", DType::F32, &[3, 41])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn comparisons_select_and_casts() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("a", DataType::Float, &["5", "7"]);
    g.input("b", DataType::Float, &["7"]);
    g.input("ids", DataType::Int64, &["5", "7"]);
    g.node("Greater", "gt", &["a", "b"], vec![]);
    g.node("Where", "where", &["gt", "a", "b"], vec![]);
    g.node("Not", "le", &["gt"], vec![]);
    g.node(
        "Cast",
        "le_f",
        &["le"],
        vec![A::int("to", DataType::Float as i64)],
    );
    g.node(
        "Cast",
        "ids_f",
        &["ids"],
        vec![A::int("to", DataType::Float as i64)],
    );
    g.node(
        "Cast",
        "trunc",
        &["a"],
        vec![A::int("to", DataType::Int64 as i64)],
    );
    g.node(
        "Cast",
        "trunc_f",
        &["trunc"],
        vec![A::int("to", DataType::Float as i64)],
    );
    outputs(&mut g, &["where", "le_f", "ids_f", "trunc_f"]);
    let mut ids = spec("ids", DType::I64, &[5, 7]);
    ids.range = Some([-50.0, 50.0]);
    let m = model(
        g,
        vec![
            spec("a", DType::F32, &[5, 7]),
            spec("b", DType::F32, &[7]),
            ids,
        ],
    );
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn max_and_average_pooling() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["1", "3", "13", "11"]);
    let geometry = || {
        vec![
            A::ints("kernel_shape", &[3, 2]),
            A::ints("strides", &[2, 2]),
            A::ints("pads", &[1, 0, 1, 1]),
        ]
    };
    g.node("MaxPool", "max", &["x"], geometry());
    let mut with_pad = geometry();
    with_pad.push(A::int("count_include_pad", 1));
    g.node("AveragePool", "avg_pad", &["x"], with_pad);
    g.node("AveragePool", "avg", &["x"], geometry());
    g.node("GlobalAveragePool", "gap", &["x"], vec![]);
    g.node(
        "MaxPool",
        "max_ceil",
        &["x"],
        vec![
            A::ints("kernel_shape", &[2, 2]),
            A::ints("strides", &[2, 2]),
            A::int("ceil_mode", 1),
        ],
    );
    outputs(&mut g, &["max", "avg_pad", "avg", "gap", "max_ceil"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 3, 13, 11])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn softmax_on_inner_and_outer_axes() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "37", "3"]);
    g.node("Softmax", "inner", &["x"], vec![A::int("axis", -1)]);
    g.node("Softmax", "middle", &["x"], vec![A::int("axis", 1)]);
    g.node("LogSoftmax", "log", &["x"], vec![A::int("axis", 1)]);
    outputs(&mut g, &["inner", "middle", "log"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 37, 3])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn layer_normalization() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "7", "33"]);
    let gamma = weight(&mut g, "gamma", &[33], 17);
    let beta = weight(&mut g, "beta", &[33], 18);
    g.node(
        "LayerNormalization",
        "y",
        &["x", &gamma, &beta],
        vec![A::int("axis", -1), A::float("epsilon", 1e-5)],
    );
    outputs(&mut g, &["y"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 7, 33])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn reductions_over_inner_outer_and_several_axes() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["3", "67", "5"]);
    g.node("ReduceMean", "mean", &["x"], vec![A::ints("axes", &[1])]);
    let axes = g.ints("axes02", &[0, 2]);
    g.node(
        "ReduceSum",
        "sum",
        &["x", &axes],
        vec![A::int("keepdims", 0)],
    );
    g.node("ReduceMax", "max", &["x"], vec![A::ints("axes", &[2])]);
    g.node("ReduceMin", "min", &["x"], vec![A::ints("axes", &[0])]);
    g.node("Sigmoid", "s", &["x"], vec![]);
    g.node("ReduceProd", "prod", &["s"], vec![A::ints("axes", &[2])]);
    g.node("ArgMax", "argmax", &["x"], vec![A::int("axis", 1)]);
    g.node(
        "Cast",
        "argmax_f",
        &["argmax"],
        vec![A::int("to", DataType::Float as i64)],
    );
    outputs(&mut g, &["mean", "sum", "max", "min", "prod", "argmax_f"]);
    let m = model(g, vec![spec("x", DType::F32, &[3, 67, 5])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn transpose_reshape_flatten_squeeze_unsqueeze() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "3", "4", "5"]);
    g.node(
        "Transpose",
        "t",
        &["x"],
        vec![A::ints("perm", &[0, 2, 3, 1])],
    );
    let shape = g.ints("shape", &[2, 4, 15]);
    g.node("Reshape", "r", &["t", &shape], vec![]);
    let at1 = g.ints("at1", &[1]);
    g.node("Unsqueeze", "u", &["r", &at1], vec![]);
    g.node("Squeeze", "s", &["u", &at1], vec![]);
    g.node("Flatten", "f", &["s"], vec![A::int("axis", 1)]);
    g.node("Transpose", "tt", &["f"], vec![A::ints("perm", &[1, 0])]);
    outputs(&mut g, &["t", "f", "tt"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 3, 4, 5])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn concat_slice_and_expand() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["2", "5", "7"]);
    g.input("y", DataType::Float, &["2", "3", "7"]);
    g.node("Concat", "cat", &["x", "y"], vec![A::int("axis", 1)]);
    let (starts, ends, axes, steps) = (
        g.ints("starts", &[1, -5]),
        g.ints("ends", &[7, 100]),
        g.ints("axes", &[1, 2]),
        g.ints("steps", &[2, 1]),
    );
    g.node(
        "Slice",
        "sl",
        &["cat", &starts, &ends, &axes, &steps],
        vec![],
    );
    g.node("Relu", "slr", &["sl"], vec![]);
    let col = weight(&mut g, "col", &[3, 1], 19);
    let to = g.ints("to", &[2, 3, 4]);
    g.node("Expand", "ex", &[&col, &to], vec![]);
    g.node("Add", "exa", &["ex", &col], vec![]);
    outputs(&mut g, &["cat", "slr", "exa"]);
    let m = model(
        g,
        vec![
            spec("x", DType::F32, &[2, 5, 7]),
            spec("y", DType::F32, &[2, 3, 7]),
        ],
    );
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn gather_with_negative_indices_on_two_axes() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("ids", DataType::Int64, &["2", "3"]);
    let table = weight(&mut g, "table", &[11, 6], 20);
    g.node("Gather", "rows", &[&table, "ids"], vec![]);
    let cols = g.ints("cols", &[5, 0, -1, 2]);
    g.node(
        "Gather",
        "columns",
        &[&table, &cols],
        vec![A::int("axis", 1)],
    );
    g.node("Relu", "cr", &["columns"], vec![]);
    outputs(&mut g, &["rows", "cr"]);
    let mut ids = spec("ids", DType::I64, &[2, 3]);
    ids.range = Some([-11.0, 11.0]);
    let m = model(g, vec![ids]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn pad_constant_reflect_and_edge() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float, &["1", "2", "5", "6"]);
    let pads = g.ints("pads", &[0, 0, 2, 1, 0, 0, 1, 3]);
    let value = g.initializer(TensorProto::from_f32("value", &[], &[1.5]));
    g.node("Pad", "constant", &["x", &pads, &value], vec![]);
    g.node(
        "Pad",
        "reflect",
        &["x", &pads],
        vec![A::string("mode", "reflect")],
    );
    g.node(
        "Pad",
        "edge",
        &["x", &pads],
        vec![A::string("mode", "edge")],
    );
    outputs(&mut g, &["constant", "reflect", "edge"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 2, 5, 6])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn float16_matmul_and_convolution() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x", DataType::Float16, &["1", "4", "9", "10"]);
    let w = weight_f16(&mut g, "w", &[6, 4, 3, 3], 21);
    g.node(
        "Conv",
        "c",
        &["x", &w],
        vec![A::ints("pads", &[1, 1, 1, 1])],
    );
    g.node("Relu", "r", &["c"], vec![]);
    let m_w = weight_f16(&mut g, "mw", &[10, 13], 22);
    g.node("MatMul", "y", &["r", &m_w], vec![]);
    g.output("y", DataType::Float16, &["?"]);
    let m = model(g, vec![spec("x", DType::F16, &[1, 4, 9, 10])]);
    // Both sides round to f16 (tract computes in f16; wgpu stores f16 and computes in f32).
    assert_matches_tract(&d, &m, 0.999, 1e-2);
}
