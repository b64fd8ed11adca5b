//! The rest of the common operator set on wgpu against tract on the same seeded inputs:
//! ConvTranspose, Tile, CumSum, GatherElements (new kernels or views here) and the operators tract's declutter already
//! turns into ones the backend runs (2-operand Einsum, Split, Range, Mod, InstanceNormalization,
//! GroupNormalization, DepthToSpace, SpaceToDepth). Odd sizes throughout; f32 results agree to
//! cosine >= 0.9999 and max|y - r| / max|r| <= 1e-3, integer results exactly.

mod common;

use chipbench_core::DType;
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{AttributeProto as A, DataType, TensorProto};
use common::{assert_matches_tract, device, model, spec};

const COSINE: f64 = 0.9999;
const REL: f64 = 1e-3;

fn graph() -> GraphBuilder {
    let mut g = GraphBuilder::new("common");
    g.input("x", DataType::Float, &["2", "4", "5", "7"]);
    g
}

fn outputs(g: &mut GraphBuilder, names: &[&str]) {
    for n in names {
        g.output(n, DataType::Float, &["?"]);
    }
}

fn x() -> Vec<chipbench_core::InputSpec> {
    vec![spec("x", DType::F32, &[2, 4, 5, 7])]
}

#[test]
fn tile_cumsum_and_gather_elements() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.ints("reps", &[1, 2, 3, 1]);
    g.node("Tile", "tile", &["x", "reps"], vec![]);
    let axis = |g: &mut GraphBuilder, name: &str, a: i64| {
        g.initializer(TensorProto::from_i64(name, &[], &[a]))
    };
    axis(&mut g, "a1", 1);
    axis(&mut g, "a3", -1);
    g.node("CumSum", "cumsum", &["x", "a1"], vec![]);
    g.node(
        "CumSum",
        "cumsum_rev_excl",
        &["x", "a3"],
        vec![A::int("reverse", 1), A::int("exclusive", 1)],
    );
    g.node(
        "CumSum",
        "cumsum_excl",
        &["x", "a1"],
        vec![A::int("exclusive", 1)],
    );
    // Indices in [-5, 5), negatives counted from the end of the axis.
    let idx: Vec<i64> = (0..2 * 4 * 3 * 7)
        .map(|i| (i * 7 % 10) as i64 - 5)
        .collect();
    g.initializer(TensorProto::from_i64("idx", &[2, 4, 3, 7], &idx));
    g.node(
        "GatherElements",
        "gather_h",
        &["x", "idx"],
        vec![A::int("axis", 2)],
    );
    let idx0: Vec<i64> = (0..5 * 7).map(|i| (i % 3) as i64 - 1).collect();
    g.initializer(TensorProto::from_i64("idx0", &[1, 1, 5, 7], &idx0));
    g.node(
        "GatherElements",
        "gather_n",
        &["x", "idx0"],
        vec![A::int("axis", 0)],
    );
    g.node("Relu", "gather_relu", &["gather_h"], vec![]);
    outputs(
        &mut g,
        &[
            "tile",
            "cumsum",
            "cumsum_rev_excl",
            "cumsum_excl",
            "gather_h",
            "gather_n",
            "gather_relu",
        ],
    );
    let m = model(g, x());
    assert_matches_tract(&d, &m, COSINE, REL);
}

/// ConvTranspose as FPN/U-Net decoders use it (stride 2, kernel 2 or 4 with padding 1), and with
/// groups, dilation, output padding, asymmetric pads and a 1-d one.
#[test]
fn transposed_convolutions() {
    let Some(d) = device() else { return };
    let mut g = graph();
    let w = |g: &mut GraphBuilder, name: &str, shape: &[usize], seed: u64| {
        common::weight(g, name, shape, seed)
    };
    let k2 = w(&mut g, "k2", &[4, 3, 2, 2], 41);
    let b3 = w(&mut g, "b3", &[3], 42);
    g.node(
        "ConvTranspose",
        "up2",
        &["x", &k2, &b3],
        vec![A::ints("strides", &[2, 2])],
    );
    let k4 = w(&mut g, "k4", &[4, 5, 4, 4], 43);
    g.node(
        "ConvTranspose",
        "up4_pad1",
        &["x", &k4],
        vec![A::ints("strides", &[2, 2]), A::ints("pads", &[1, 1, 1, 1])],
    );
    let kg = w(&mut g, "kg", &[4, 3, 3, 3], 44);
    let bg = w(&mut g, "bg", &[6], 45);
    g.node(
        "ConvTranspose",
        "grouped",
        &["x", &kg, &bg],
        vec![
            A::int("group", 2),
            A::ints("strides", &[3, 2]),
            A::ints("dilations", &[1, 2]),
            A::ints("pads", &[0, 1, 2, 0]),
            A::ints("output_padding", &[1, 1]),
        ],
    );
    outputs(&mut g, &["up2", "up4_pad1", "grouped"]);
    let m = model(g, x());
    assert_matches_tract(&d, &m, COSINE, REL);

    let mut g = GraphBuilder::new("deconv1d");
    g.input("s", DataType::Float, &["2", "4", "9"]);
    let k1 = common::weight(&mut g, "k1", &[4, 2, 3], 46);
    g.node(
        "ConvTranspose",
        "up1d",
        &["s", &k1],
        vec![A::ints("strides", &[2]), A::ints("pads", &[1, 0])],
    );
    outputs(&mut g, &["up1d"]);
    let m = model(g, vec![spec("s", DType::F32, &[2, 4, 9])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

/// Slices with negative steps (`x[..., ::-1]`, every other row from the end), which tract turns
/// into downsampling with a negative stride.
#[test]
fn slices_with_negative_steps() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.ints("rev_starts", &[-1]);
    g.ints("rev_ends", &[i64::MIN]);
    g.ints("rev_axes", &[3]);
    g.ints("rev_steps", &[-1]);
    g.node(
        "Slice",
        "reversed",
        &["x", "rev_starts", "rev_ends", "rev_axes", "rev_steps"],
        vec![],
    );
    g.ints("odd_starts", &[3]);
    g.ints("odd_ends", &[-100]);
    g.ints("odd_axes", &[2]);
    g.ints("odd_steps", &[-2]);
    g.node(
        "Slice",
        "every_other",
        &[
            "reversed",
            "odd_starts",
            "odd_ends",
            "odd_axes",
            "odd_steps",
        ],
        vec![],
    );
    outputs(&mut g, &["reversed", "every_other"]);
    let m = model(g, x());
    assert_matches_tract(&d, &m, COSINE, REL);
}

/// Largest and smallest, on the inner and an outer axis, k from 1 to the whole axis; values and
/// indices (exact).
#[test]
fn top_k() {
    let Some(d) = device() else { return };
    let mut g = graph();
    for (name, k, axis, largest) in [
        ("top3_last", 3, -1, 1),
        ("bottom2_c", 2, 1, 0),
        ("top1_h", 1, 2, 1),
        ("all_w", 7, 3, 0),
    ] {
        g.initializer(TensorProto::from_i64(&format!("{name}_k"), &[1], &[k]));
        let (values, indices) = (format!("{name}_v"), format!("{name}_i"));
        g.node_with_outputs(
            "TopK",
            name,
            &["x", &format!("{name}_k")],
            &[&values, &indices],
            vec![A::int("axis", axis), A::int("largest", largest)],
        );
        g.output(&values, DataType::Float, &["?"]);
        g.output(&indices, DataType::Int64, &["?"]);
    }
    let m = model(g, x());
    assert_matches_tract(&d, &m, 1.0 - 1e-12, 0.0);
}

/// Whole rows, single elements and slices of the middle axes replaced (tract 0.23 refuses
/// negative indices, so there are none).
#[test]
fn scatter_nd() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.initializer(TensorProto::from_i64("rows", &[2, 1], &[1, 0]));
    g.weight("row_updates", &[2, 4, 5, 7], &common::values(31, 280));
    g.node("ScatterND", "whole", &["x", "rows", "row_updates"], vec![]);
    g.initializer(TensorProto::from_i64(
        "points",
        &[3, 4],
        &[0, 1, 2, 3, 1, 3, 4, 6, 1, 2, 3, 0],
    ));
    g.weight("point_updates", &[3], &[10.0, 20.0, 30.0]);
    g.node(
        "ScatterND",
        "points_set",
        &["x", "points", "point_updates"],
        vec![],
    );
    g.initializer(TensorProto::from_i64("planes", &[2, 2], &[0, 3, 1, 2]));
    g.weight("plane_updates", &[2, 5, 7], &common::values(32, 70));
    g.node(
        "ScatterND",
        "planes_set",
        &["x", "planes", "plane_updates"],
        vec![],
    );
    outputs(&mut g, &["whole", "points_set", "planes_set"]);
    let m = model(g, x());
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn operators_tract_lowers_to_the_backends_own() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.input("x2", DataType::Float, &["2", "4", "5", "7"]);
    g.node(
        "Einsum",
        "einsum",
        &["x", "x2"],
        vec![A::string("equation", "bchw,bchv->bcwv")],
    );
    g.ints("split", &[1, 3]);
    g.node_with_outputs(
        "Split",
        "split",
        &["x", "split"],
        &["split0", "split1"],
        vec![A::int("axis", 1)],
    );
    g.node("Mod", "fmod", &["x", "x2"], vec![A::int("fmod", 1)]);
    g.weight("scale", &[4], &[0.5, 1.0, -1.5, 2.0]);
    g.weight("bias", &[4], &[0.1, -0.2, 0.3, 0.0]);
    g.node(
        "InstanceNormalization",
        "instance_norm",
        &["x", "scale", "bias"],
        vec![],
    );
    g.node(
        "DepthToSpace",
        "d2s_dcr",
        &["x"],
        vec![A::int("blocksize", 2)],
    );
    g.node(
        "DepthToSpace",
        "d2s_crd",
        &["x"],
        vec![A::int("blocksize", 2), A::string("mode", "CRD")],
    );
    g.node(
        "SpaceToDepth",
        "s2d",
        &["d2s_dcr"],
        vec![A::int("blocksize", 2)],
    );
    g.initializer(TensorProto::from_i64("start", &[], &[1]));
    g.initializer(TensorProto::from_i64("limit", &[], &[22]));
    g.initializer(TensorProto::from_i64("delta", &[], &[3]));
    g.node("Range", "range", &["start", "limit", "delta"], vec![]);
    g.node("Cast", "range_f", &["range"], vec![A::int("to", 1)]);
    g.node("Add", "with_range", &["split1", "range_f"], vec![]);
    outputs(
        &mut g,
        &[
            "einsum",
            "split0",
            "with_range",
            "fmod",
            "instance_norm",
            "d2s_dcr",
            "d2s_crd",
            "s2d",
        ],
    );
    let mut specs = x();
    specs.push(spec("x2", DType::F32, &[2, 4, 5, 7]));
    let m = model(g, specs);
    assert_matches_tract(&d, &m, COSINE, REL);
}

/// GroupNormalization needs opset 18 (the builder writes 17), so it has a model of its own.
#[test]
fn group_normalization() {
    let Some(d) = device() else { return };
    let mut g = graph();
    g.weight("scale", &[2], &[0.5, -1.25]);
    g.weight("bias", &[2], &[0.25, 0.0]);
    g.node(
        "GroupNormalization",
        "group_norm",
        &["x", "scale", "bias"],
        vec![A::int("num_groups", 2)],
    );
    outputs(&mut g, &["group_norm"]);
    let mut proto = g.into_model().expect("a well-formed graph");
    for o in &mut proto.opset_import {
        if o.domain().is_empty() {
            o.version = Some(18);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("group_norm.onnx");
    chipbench_optimize::model::save(&proto, &path).unwrap();
    let (actual, expected) = common::run_both(&d, &path, &x(), &m_bound(), None);
    let agree = common::agreement(&actual[0], &expected[0]);
    assert!(
        agree.cosine >= COSINE && agree.max_rel_err <= REL,
        "{agree:?}"
    );
}

fn m_bound() -> Vec<chipbench_core::TensorInfo> {
    vec![chipbench_core::TensorInfo {
        name: "x".into(),
        dtype: DType::F32,
        shape: vec![2, 4, 5, 7],
    }]
}
