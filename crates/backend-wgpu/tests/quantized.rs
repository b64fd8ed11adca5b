//! QuantizeLinear / DequantizeLinear on wgpu against tract on the same seeded inputs: per tensor
//! and per channel, u8 and i8, the 8-bit lookup tables tract folds a dequantize-op-quantize chain
//! into, and a convolution in the QDQ form chipbench's int8-static variant writes.
//!
//! Quantization is exact arithmetic on both sides (the same f32 product, rounded half to even,
//! shifted and clamped), so those outputs must be equal. After a convolution the f32 sums differ
//! in order between the two, which may move a value across a rounding boundary: one quantization
//! step at most (0.05 here), so the QDQ convolution is held to cosine >= 0.999 and
//! max|y - r| / max|r| <= 0.05.

mod common;

use chipbench_core::DType;
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{AttributeProto as A, DataType, TensorProto};
use common::{assert_matches_tract, device, model, spec, values};

fn scalar_u8(name: &str, v: u8) -> TensorProto {
    TensorProto::from_raw(name, DataType::Uint8, &[], vec![v])
}

fn scalar_i8(name: &str, v: i8) -> TensorProto {
    TensorProto::from_raw(name, DataType::Int8, &[], vec![v as u8])
}

fn scalar_f32(name: &str, v: f32) -> TensorProto {
    TensorProto::from_f32(name, &[], &[v])
}

#[test]
fn quantize_and_dequantize_per_tensor_and_per_channel() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("qdq");
    g.input("x", DataType::Float, &["2", "5", "7", "3"]);
    g.initializer(scalar_f32("s_u8", 0.011));
    g.initializer(scalar_u8("z_u8", 131));
    g.initializer(scalar_f32("s_i8", 0.013));
    g.initializer(scalar_i8("z_i8", -3));
    g.initializer(TensorProto::from_f32(
        "s_c",
        &[5],
        &[0.004, 0.009, 0.02, 0.011, 0.0065],
    ));
    g.initializer(TensorProto::from_raw(
        "z_c",
        DataType::Uint8,
        &[5],
        vec![128, 100, 140, 0, 255],
    ));
    g.node("QuantizeLinear", "q_u8", &["x", "s_u8", "z_u8"], vec![]);
    g.node(
        "DequantizeLinear",
        "dq_u8",
        &["q_u8", "s_u8", "z_u8"],
        vec![],
    );
    g.node("QuantizeLinear", "q_i8", &["x", "s_i8", "z_i8"], vec![]);
    g.node(
        "DequantizeLinear",
        "dq_i8",
        &["q_i8", "s_i8", "z_i8"],
        vec![],
    );
    let axis = vec![A::int("axis", 1)];
    g.node("QuantizeLinear", "q_c", &["x", "s_c", "z_c"], axis.clone());
    g.node("DequantizeLinear", "dq_c", &["q_c", "s_c", "z_c"], axis);
    g.output("q_u8", DataType::Uint8, &["?"]);
    g.output("dq_u8", DataType::Float, &["?"]);
    g.output("q_i8", DataType::Int8, &["?"]);
    g.output("dq_i8", DataType::Float, &["?"]);
    g.output("q_c", DataType::Uint8, &["?"]);
    g.output("dq_c", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 5, 7, 3])]);
    assert_matches_tract(&d, &m, 1.0 - 1e-12, 0.0);
}

/// Dequantize, an activation, quantize: tract folds each chain into a 256-entry table.
#[test]
fn lookup_tables_for_u8_and_i8() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("lut");
    g.input("x", DataType::Float, &["3", "11", "9"]);
    g.initializer(scalar_f32("s", 0.03));
    g.initializer(scalar_u8("z", 120));
    g.initializer(scalar_f32("s_out", 1.0 / 255.0));
    g.initializer(scalar_u8("z_out", 0));
    g.initializer(scalar_i8("zi", 5));
    g.initializer(scalar_f32("s_tanh", 1.0 / 127.0));
    g.initializer(scalar_i8("zi_out", 0));
    g.node("QuantizeLinear", "q", &["x", "s", "z"], vec![]);
    g.node("DequantizeLinear", "dq", &["q", "s", "z"], vec![]);
    g.node("Sigmoid", "sig", &["dq"], vec![]);
    g.node(
        "QuantizeLinear",
        "q_sig",
        &["sig", "s_out", "z_out"],
        vec![],
    );
    g.node(
        "DequantizeLinear",
        "y_u8",
        &["q_sig", "s_out", "z_out"],
        vec![],
    );
    g.node("QuantizeLinear", "qi", &["x", "s", "zi"], vec![]);
    g.node("DequantizeLinear", "dqi", &["qi", "s", "zi"], vec![]);
    g.node("Tanh", "tanh", &["dqi"], vec![]);
    g.node(
        "QuantizeLinear",
        "q_tanh",
        &["tanh", "s_tanh", "zi_out"],
        vec![],
    );
    g.node(
        "DequantizeLinear",
        "y_i8",
        &["q_tanh", "s_tanh", "zi_out"],
        vec![],
    );
    g.output("y_u8", DataType::Float, &["?"]);
    g.output("y_i8", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[3, 11, 9])]);
    assert_matches_tract(&d, &m, 1.0 - 1e-12, 0.0);
}

/// Activations quantized per tensor, weights int8 per output channel, as int8-static writes a
/// convolution; then a ReLU and the next quantization.
#[test]
fn qdq_convolution_as_int8_static_writes_it() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("qdq-conv");
    g.input("x", DataType::Float, &["1", "6", "9", "11"]);
    g.initializer(scalar_f32("s_x", 0.01));
    g.initializer(scalar_u8("z_x", 128));
    let w: Vec<u8> = values(5, 8 * 6 * 3 * 3)
        .iter()
        .map(|v| ((v * 127.0).round() as i8) as u8)
        .collect();
    g.initializer(TensorProto::from_raw(
        "w_q",
        DataType::Int8,
        &[8, 6, 3, 3],
        w,
    ));
    let w_scales: Vec<f32> = (0..8).map(|i| 0.002 + 0.0005 * i as f32).collect();
    g.initializer(TensorProto::from_f32("s_w", &[8], &w_scales));
    g.initializer(TensorProto::from_raw(
        "z_w",
        DataType::Int8,
        &[8],
        vec![0; 8],
    ));
    g.weight("b", &[8], &values(6, 8));
    g.initializer(scalar_f32("s_y", 0.05));
    g.initializer(scalar_u8("z_y", 0));
    g.node("QuantizeLinear", "xq", &["x", "s_x", "z_x"], vec![]);
    g.node("DequantizeLinear", "xdq", &["xq", "s_x", "z_x"], vec![]);
    g.node(
        "DequantizeLinear",
        "w",
        &["w_q", "s_w", "z_w"],
        vec![A::int("axis", 0)],
    );
    g.node(
        "Conv",
        "conv",
        &["xdq", "w", "b"],
        vec![A::ints("pads", &[1, 1, 1, 1])],
    );
    g.node("Relu", "relu", &["conv"], vec![]);
    g.node("QuantizeLinear", "yq", &["relu", "s_y", "z_y"], vec![]);
    g.node("DequantizeLinear", "y", &["yq", "s_y", "z_y"], vec![]);
    g.output("y", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 6, 9, 11])]);
    assert_matches_tract(&d, &m, 0.999, 0.05);
}

/// int8-dynamic's form: DynamicQuantizeLinear of the activations, then integer products with
/// int8 weights (MatMulInteger, ConvInteger with a zero point per output channel), then the f32
/// rescale. Integer sums here stay far below 2^24, so the i32 products are exact on both sides;
/// the division `x / scale` of the dynamic quantization may round differently on a GPU (WGSL
/// allows 2.5 ulp), which can move an activation by one step, hence cosine >= 0.9999 and
/// max|y - r| / max|r| <= 1e-2.
#[test]
fn dynamic_quantization_with_integer_matmul_and_convolution() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("dynamic");
    g.input("x", DataType::Float, &["1", "5", "7", "9"]);
    g.node_with_outputs(
        "DynamicQuantizeLinear",
        "dql",
        &["x"],
        &["xq", "xs", "xz"],
        vec![],
    );
    let int8 = |seed: u64, n: usize| -> Vec<u8> {
        values(seed, n)
            .iter()
            .map(|v| ((v * 127.0).round() as i8) as u8)
            .collect()
    };
    g.initializer(TensorProto::from_raw(
        "wm",
        DataType::Int8,
        &[9, 13],
        int8(7, 9 * 13),
    ));
    g.initializer(TensorProto::from_raw("wm_z", DataType::Int8, &[], vec![3]));
    g.node("MatMulInteger", "mm", &["xq", "wm", "xz", "wm_z"], vec![]);
    g.initializer(TensorProto::from_raw(
        "wc",
        DataType::Int8,
        &[4, 5, 3, 3],
        int8(8, 4 * 5 * 9),
    ));
    g.initializer(TensorProto::from_raw(
        "wc_z",
        DataType::Int8,
        &[4],
        vec![0, 2, (-3i8) as u8, 1],
    ));
    g.node(
        "ConvInteger",
        "conv",
        &["xq", "wc", "xz", "wc_z"],
        vec![A::ints("pads", &[1, 0, 1, 2])],
    );
    // Back to f32 as int8-dynamic does: the integer result times both scales.
    g.initializer(scalar_f32("w_scale", 0.01));
    g.node("Cast", "mm_f", &["mm"], vec![A::int("to", 1)]);
    g.node("Mul", "mm_s", &["mm_f", "xs"], vec![]);
    g.node("Mul", "mm_y", &["mm_s", "w_scale"], vec![]);
    g.node("Cast", "conv_f", &["conv"], vec![A::int("to", 1)]);
    g.node("Mul", "conv_y", &["conv_f", "xs"], vec![]);
    g.output("xq", DataType::Uint8, &["?"]);
    g.output("xs", DataType::Float, &[]);
    g.output("xz", DataType::Uint8, &[]);
    g.output("mm_y", DataType::Float, &["?"]);
    g.output("conv_y", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 5, 7, 9])]);
    assert_matches_tract(&d, &m, 0.9999, 1e-2);
}

/// QLinearMatMul and QLinearConv: u8 activations and outputs, int8 weights quantized per
/// output channel, requantized to u8 with the output's scale and zero point. Both sides round
/// the rescaled sum; the order of the f32 sums may move a value by one step, hence
/// max|y - r| / max|r| <= 1e-2 on u8 outputs that span most of their range.
#[test]
fn qlinear_matmul_and_convolution() {
    let Some(d) = device() else { return };
    let mut g = GraphBuilder::new("qlinear");
    g.input("x", DataType::Float, &["1", "3", "8", "10"]);
    g.initializer(scalar_f32("s_x", 0.008));
    g.initializer(scalar_u8("z_x", 127));
    g.node("QuantizeLinear", "xq", &["x", "s_x", "z_x"], vec![]);
    let int8 = |seed: u64, n: usize| -> Vec<u8> {
        values(seed, n)
            .iter()
            .map(|v| ((v * 127.0).round() as i8) as u8)
            .collect()
    };
    g.initializer(TensorProto::from_raw(
        "wm",
        DataType::Int8,
        &[10, 6],
        int8(11, 60),
    ));
    g.initializer(TensorProto::from_f32("s_wm", &[], &[0.004]));
    g.initializer(scalar_i8("z_wm", 0));
    g.initializer(scalar_f32("s_ym", 0.01));
    g.initializer(scalar_u8("z_ym", 128));
    g.node(
        "QLinearMatMul",
        "ym",
        &["xq", "s_x", "z_x", "wm", "s_wm", "z_wm", "s_ym", "z_ym"],
        vec![],
    );
    g.initializer(TensorProto::from_raw(
        "wc",
        DataType::Int8,
        &[5, 3, 3, 3],
        int8(12, 135),
    ));
    g.initializer(TensorProto::from_f32(
        "s_wc",
        &[5],
        &[0.003, 0.005, 0.002, 0.004, 0.006],
    ));
    g.initializer(TensorProto::from_raw(
        "z_wc",
        DataType::Int8,
        &[5],
        vec![0; 5],
    ));
    g.initializer(scalar_f32("s_yc", 0.02));
    g.initializer(scalar_u8("z_yc", 100));
    g.initializer(TensorProto::from_raw(
        "b_c",
        DataType::Int32,
        &[5],
        [40i32, -300, 0, 1000, -7]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    ));
    g.node(
        "QLinearConv",
        "yc",
        &[
            "xq", "s_x", "z_x", "wc", "s_wc", "z_wc", "s_yc", "z_yc", "b_c",
        ],
        vec![A::ints("pads", &[1, 1, 1, 1]), A::ints("strides", &[2, 1])],
    );
    g.output("ym", DataType::Uint8, &["?"]);
    g.output("yc", DataType::Uint8, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[1, 3, 8, 10])]);
    assert_matches_tract(&d, &m, 0.999, 1e-2);
}
