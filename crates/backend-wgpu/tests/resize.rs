//! Resize on wgpu against tract on the same seeded inputs: every nearest rounding mode and
//! every coordinate transformation mode, linear and cubic interpolation, by scales (up, down,
//! fractional) and by sizes, on odd spatial sizes. tract presents these three ways after
//! declutter (an integer pixel-replicating upsample, its core Resize, and the ONNX Resize it keeps
//! for the other modes); all three are here. The backend computes tract's own resampling plan
//! and sums the taps in tract's order, so f32 results agree to cosine >= 0.99999 and
//! max|y - r| / max|r| <= 1e-5 (only rounding of the multiply-adds may differ).

mod common;

use chipbench_core::DType;
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{AttributeProto as A, DataType, TensorProto};
use common::{assert_matches_tract, device, model, spec};

const COSINE: f64 = 0.99999;
const REL: f64 = 1e-5;

const COORDINATE_MODES: [&str; 4] = [
    "half_pixel",
    "align_corners",
    "asymmetric",
    "pytorch_half_pixel",
];

/// How the output size is given: a scales tensor or a sizes tensor.
enum Target {
    Scales(&'static str),
    Sizes(&'static str),
}

/// A graph over `x` of `shape` with the shared scale and size tensors declared.
fn graph(shape: &[usize]) -> GraphBuilder {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let dims: Vec<&str> = dims.iter().map(String::as_str).collect();
    let mut g = GraphBuilder::new("resize");
    g.input("x", DataType::Float, &dims);
    g.initializer(TensorProto::from_f32("up", &[4], &[1.0, 1.0, 1.5, 2.3]));
    g.initializer(TensorProto::from_f32("down", &[4], &[1.0, 1.0, 0.6, 0.45]));
    g.initializer(TensorProto::from_f32("twice", &[4], &[1.0, 1.0, 2.0, 2.0]));
    g.initializer(TensorProto::from_f32(
        "thrice_w",
        &[4],
        &[1.0, 1.0, 1.0, 3.0],
    ));
    g.ints("odd_sizes", &[shape[0] as i64, 3, 5, 13]);
    g.initializer(TensorProto::from_f32("no_scales", &[0], &[]));
    g
}

fn resize(g: &mut GraphBuilder, name: &str, target: &Target, attrs: Vec<A>) {
    let inputs: Vec<&str> = match target {
        Target::Scales(s) => vec!["x", "", s],
        Target::Sizes(s) => vec!["x", "", "no_scales", s],
    };
    g.node("Resize", name, &inputs, attrs);
    g.output(name, DataType::Float, &["?"]);
}

#[test]
fn nearest_in_every_rounding_and_coordinate_mode() {
    let Some(d) = device() else { return };
    let mut g = graph(&[1, 3, 7, 9]);
    let targets = [
        ("up", Target::Scales("up")),
        ("down", Target::Scales("down")),
        ("sizes", Target::Sizes("odd_sizes")),
    ];
    for rounding in ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"] {
        for coordinates in COORDINATE_MODES {
            for (label, target) in &targets {
                let attrs = vec![
                    A::string("mode", "nearest"),
                    A::string("nearest_mode", rounding),
                    A::string("coordinate_transformation_mode", coordinates),
                ];
                resize(
                    &mut g,
                    &format!("{rounding}_{coordinates}_{label}"),
                    target,
                    attrs,
                );
            }
        }
    }
    // Integer scales in the modes that replicate pixels: tract's NearestUpsample.
    for (name, coordinates, rounding, scales) in [
        ("yolo_2x", "asymmetric", "floor", "twice"),
        ("exact_2x", "half_pixel", "round_prefer_ceil", "twice"),
        ("width_3x", "asymmetric", "floor", "thrice_w"),
    ] {
        let attrs = vec![
            A::string("mode", "nearest"),
            A::string("nearest_mode", rounding),
            A::string("coordinate_transformation_mode", coordinates),
        ];
        resize(&mut g, name, &Target::Scales(scales), attrs);
    }
    let m = model(g, vec![spec("x", DType::F32, &[1, 3, 7, 9])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}

#[test]
fn linear_and_cubic_in_every_coordinate_mode() {
    let Some(d) = device() else { return };
    let mut g = graph(&[2, 3, 7, 9]);
    let targets = [
        ("up", Target::Scales("up")),
        ("down", Target::Scales("down")),
        ("twice", Target::Scales("twice")),
        ("sizes", Target::Sizes("odd_sizes")),
    ];
    for coordinates in COORDINATE_MODES {
        for (label, target) in &targets {
            let attrs = vec![
                A::string("mode", "linear"),
                A::string("coordinate_transformation_mode", coordinates),
            ];
            resize(
                &mut g,
                &format!("linear_{coordinates}_{label}"),
                target,
                attrs,
            );
        }
    }
    for (label, target) in &targets {
        let attrs = vec![A::string("mode", "cubic")];
        resize(&mut g, &format!("cubic_{label}"), target, attrs);
    }
    // The ONNX-only variants tract keeps out of its core: another cubic coefficient and taps
    // outside the input excluded.
    let attrs = vec![
        A::string("mode", "cubic"),
        A::float("cubic_coeff_a", -0.5),
        A::int("exclude_outside", 1),
    ];
    resize(
        &mut g,
        "cubic_excluding_outside",
        &Target::Scales("up"),
        attrs,
    );
    // A resize followed by an activation: the ReLU fuses into the resampling kernel.
    g.node("Relu", "relu_after", &["linear_half_pixel_up"], vec![]);
    g.output("relu_after", DataType::Float, &["?"]);
    let m = model(g, vec![spec("x", DType::F32, &[2, 3, 7, 9])]);
    assert_matches_tract(&d, &m, COSINE, REL);
}
