//! `If` on wgpu: one whose condition is known once the input shapes are bound (an exporter's
//! shape check) runs its branch, matching tract within the suite's f32 tolerances (cosine >=
//! 0.9999, max|y - r| / max|r| <= 1e-3); one whose condition comes from the data is refused
//! with a message naming the node and why.

mod common;

use chipbench_core::{Backend, DType, SessionOptions};
use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::{AttributeProto as A, DataType, TensorProto};
use common::{assert_matches_tract, backend, device, model, spec};

/// A branch reading the outer `x` through one unary operator.
fn branch(name: &str, op: &str) -> A {
    let mut g = GraphBuilder::new(name);
    let out = format!("{name}_y");
    g.node(op, &out, &["x"], vec![]);
    g.output(&out, DataType::Float, &["?"]);
    A::graph(name, g.finish(&["x"]).expect("a well-formed branch"))
}

fn if_model(condition: &[(&str, &str, &[&str], Vec<A>)], node: &str) -> common::Model {
    let mut g = GraphBuilder::new("if");
    g.input("x", DataType::Float, &["3", "4"]);
    g.ints("one", &[1]);
    g.initializer(TensorProto::from_i64("four", &[1], &[4]));
    g.initializer(TensorProto::from_f32("zero", &[], &[0.0]));
    for (op, name, inputs, attrs) in condition {
        g.node(op, name, inputs, attrs.clone());
    }
    g.node(
        "If",
        node,
        &["c"],
        vec![
            branch("then_branch", "Sigmoid"),
            branch("else_branch", "Neg"),
        ],
    );
    g.node("Relu", "y", &[node], vec![]);
    g.output("y", DataType::Float, &["?"]);
    model(g, vec![spec("x", DType::F32, &[3, 4])])
}

#[test]
fn an_if_on_the_input_shape_runs_its_branch() {
    let Some(d) = device() else { return };
    let m = if_model(
        &[
            ("Shape", "s", &["x"], vec![]),
            ("Gather", "d", &["s", "one"], vec![A::int("axis", 0)]),
            ("Equal", "c4", &["d", "four"], vec![]),
            ("Squeeze", "c", &["c4"], vec![]),
        ],
        "shape_check",
    );
    assert_matches_tract(&d, &m, 0.9999, 1e-3);
}

#[test]
fn an_if_on_the_data_is_refused_naming_the_node() {
    let Some(d) = device() else { return };
    let m = if_model(
        &[
            ("ReduceSum", "sum", &["x"], vec![A::int("keepdims", 0)]),
            ("Greater", "c", &["sum", "zero"], vec![]),
        ],
        "data_check",
    );
    let refusal = match backend().load(&m.source(), &d, &SessionOptions::default()) {
        Ok(_) => panic!("a data-dependent If loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        refusal
            .contains("IfThenElse (its condition is known only at run time) in node 'data_check'"),
        "{refusal}"
    );
}
