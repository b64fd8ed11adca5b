//! Raising a model's default-domain opset to 13, which the int8 recipes need (QuantizeLinear with
//! `axis`), without changing what it computes: the operators whose form or meaning changed
//! between opsets 11 and 13 are rewritten into their opset-13 form.
//!
//! - Squeeze, Unsqueeze, Split (`split`) and ReduceSum read their axes from an input instead of
//!   an attribute;
//! - Softmax, LogSoftmax and Hardmax work over one axis instead of over every axis from `axis` on
//!   (the input flattened to 2-D there). Where `axis` is the input's last axis both are the same;
//!   elsewhere (or where the rank is unknown) the old meaning is rebuilt: Flatten at `axis`, the
//!   operator on axis 1, and a Reshape back to the input's shape.
//!
//! Resize's `tf_half_pixel_for_nn` mode was removed at 13 and has no replacement: a model using
//! it is refused, as is one older than opset 11 (Resize, Pad, Clip and Slice changed form there
//! too) or one whose subgraphs hold an operator that would need rewriting.

use crate::error::{Error, Result};
use crate::infer::Inference;
use crate::onnx::{AttributeProto, GraphProto, ModelProto, TensorProto};

use super::graph::{Names, label, node};

/// The opset the int8 recipes write.
pub(crate) const TARGET: i64 = 13;
/// The oldest opset whose operators this module can bring to [`TARGET`].
pub(crate) const OLDEST: i64 = 11;

/// Operators whose opset-13 form differs from their opset-11/12 form.
const CHANGED: [&str; 7] = [
    "Squeeze",
    "Unsqueeze",
    "Split",
    "ReduceSum",
    "Softmax",
    "LogSoftmax",
    "Hardmax",
];

/// Raises the default-domain opset of `model` to [`TARGET`] when it is older, rewriting the
/// operators that changed; `inference` gives the ranks of the main graph's values. `why` names
/// what needs the new opset, for the error of a model that cannot be raised.
pub(crate) fn raise_to_13(model: &mut ModelProto, inference: &Inference, why: &str) -> Result<()> {
    let current = model.onnx_opset().unwrap_or(0);
    if current >= TARGET {
        return Ok(());
    }
    let refuse = |reason: String| {
        Err(Error::unsupported(format!(
            "{why} needs ONNX opset {TARGET}; the model imports opset {current}, {reason}"
        )))
    };
    if current < OLDEST {
        return refuse(format!(
            "and only models of opset {OLDEST} or newer are raised"
        ));
    }
    let graph = model.graph.as_mut().expect("prepared models have a graph");
    for n in &graph.node {
        if n.op_type() == "Resize"
            && n.attr_s("coordinate_transformation_mode") == Some("tf_half_pixel_for_nn")
        {
            return refuse(format!(
                "and its Resize '{}' uses tf_half_pixel_for_nn, which opset 13 removed",
                n.name()
            ));
        }
        for sub in n.subgraphs() {
            if let Some(inner) = sub
                .node
                .iter()
                .find(|m| m.is_standard() && CHANGED.contains(&m.op_type()))
            {
                return refuse(format!(
                    "and a subgraph of '{}' holds a {} whose form changed at opset 13",
                    n.name(),
                    inner.op_type()
                ));
            }
        }
    }
    rewrite(graph, inference);
    for o in model.opset_import.iter_mut() {
        if matches!(o.domain(), "" | "ai.onnx") {
            o.version = Some(TARGET);
        }
    }
    Ok(())
}

fn rewrite(graph: &mut GraphProto, inference: &Inference) {
    let mut names = Names::of(graph);
    let mut nodes = Vec::with_capacity(graph.node.len());
    let mut initializers = Vec::new();
    for mut n in std::mem::take(&mut graph.node) {
        if !n.is_standard() {
            nodes.push(n);
            continue;
        }
        let op = n.op_type().to_string();
        match op.as_str() {
            "Squeeze" | "Unsqueeze" | "ReduceSum" | "Split" => {
                let attribute = if op == "Split" { "split" } else { "axes" };
                if let Some(values) = n.attr_ints(attribute).map(<[i64]>::to_vec) {
                    n.attribute.retain(|a| a.name() != attribute);
                    let name = names.fresh(&format!("{}_{attribute}", label(&n)));
                    initializers.push(TensorProto::from_i64(&name, &[values.len()], &values));
                    n.input.truncate(1);
                    n.input.push(name);
                }
                nodes.push(n);
            }
            "Softmax" | "LogSoftmax" | "Hardmax" => {
                let axis = n.attr_i("axis").unwrap_or(1);
                let rank = inference.shapes.get(&n.input[0]).map(Vec::len);
                let last = rank.is_some_and(|r| axis == -1 || axis == r as i64 - 1);
                if last {
                    nodes.push(n);
                    continue;
                }
                // The opset-11 meaning: over everything from `axis` on, as one flattened axis.
                let base = label(&n);
                let (input, output) = (n.input[0].clone(), n.output[0].clone());
                let flat = names.fresh(&format!("{base}_flat"));
                let normalised = names.fresh(&format!("{base}_2d"));
                let shape = names.fresh(&format!("{base}_shape"));
                nodes.push(node(
                    "Flatten",
                    &names.fresh(&format!("{base}_flatten")),
                    &[&input],
                    &[&flat],
                    vec![AttributeProto::int("axis", axis)],
                ));
                n.input[0] = flat;
                n.output[0] = normalised.clone();
                n.attribute.retain(|a| a.name() != "axis");
                n.attribute.push(AttributeProto::int("axis", 1));
                nodes.push(n);
                nodes.push(node(
                    "Shape",
                    &names.fresh(&format!("{base}_shape_of")),
                    &[&input],
                    &[&shape],
                    vec![],
                ));
                nodes.push(node(
                    "Reshape",
                    &names.fresh(&format!("{base}_reshape")),
                    &[&normalised, &shape],
                    &[&output],
                    vec![],
                ));
            }
            _ => nodes.push(n),
        }
    }
    graph.node = nodes;
    graph.initializer.extend(initializers);
}

#[cfg(test)]
mod tests {
    use chipbench_backend_tract::TractBackend;
    use chipbench_core::{Backend, DType, ModelSource, SessionOptions, Tensor, TensorInfo};

    use super::*;
    use crate::builder::GraphBuilder;
    use crate::infer::infer_shapes;
    use crate::onnx::DataType;

    /// Softmax over the middle axis (opset 11: over the two trailing axes together), LogSoftmax
    /// over the last, Unsqueeze/Squeeze, Split and ReduceSum with their attributes.
    fn opset_11_model() -> ModelProto {
        let mut g = GraphBuilder::new("opset11");
        let x = g.input("x", DataType::Float, &["2", "3", "4"]);
        g.node(
            "Softmax",
            "soft_mid",
            &[&x],
            vec![AttributeProto::int("axis", 1)],
        );
        g.node(
            "LogSoftmax",
            "soft_last",
            &[&x],
            vec![AttributeProto::int("axis", 2)],
        );
        let u = g.node(
            "Unsqueeze",
            "u",
            &[&x],
            vec![AttributeProto::ints("axes", &[0])],
        );
        let q = g.node(
            "Squeeze",
            "q",
            &[&u],
            vec![AttributeProto::ints("axes", &[0])],
        );
        g.node_with_outputs(
            "Split",
            "split",
            &[&q],
            &["first", "rest"],
            vec![
                AttributeProto::int("axis", 2),
                AttributeProto::ints("split", &[1, 3]),
            ],
        );
        g.node(
            "ReduceSum",
            "sum",
            &["rest"],
            vec![AttributeProto::ints("axes", &[2])],
        );
        g.output("soft_mid", DataType::Float, &["2", "3", "4"]);
        g.output("soft_last", DataType::Float, &["2", "3", "4"]);
        g.output("first", DataType::Float, &["2", "3", "1"]);
        g.output("sum", DataType::Float, &["2", "3", "1"]);
        let mut model = g.into_model().unwrap();
        model.opset_import[0].version = Some(11);
        model
    }

    #[test]
    fn raising_to_13_rewrites_the_changed_operators_and_keeps_what_they_compute() {
        let bound = vec![TensorInfo {
            name: "x".into(),
            dtype: DType::F32,
            shape: vec![2, 3, 4],
        }];
        let mut model = opset_11_model();
        let inference = infer_shapes(&model, &bound, None);
        raise_to_13(&mut model, &inference, "test").unwrap();
        assert_eq!(model.onnx_opset(), Some(13));
        let graph = model.graph.as_ref().unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type()).collect();
        assert_eq!(
            ops,
            [
                "Flatten",
                "Softmax",
                "Shape",
                "Reshape",
                "LogSoftmax",
                "Unsqueeze",
                "Squeeze",
                "Split",
                "ReduceSum"
            ],
            "only the Softmax not on the last axis is rebuilt"
        );
        assert!(
            graph
                .node
                .iter()
                .all(|n| n.attr("axes").is_none() && n.attr("split").is_none()),
            "axes and split are inputs at opset 13"
        );

        // What opset 11 defines, computed by hand, against the raised model on tract.
        let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 / 4.0 - 1.0).collect();
        let softmax = |v: &[f32]| -> Vec<f32> {
            let max = v.iter().fold(f32::NEG_INFINITY, |m, &a| m.max(a));
            let e: Vec<f32> = v.iter().map(|a| (a - max).exp()).collect();
            let total: f32 = e.iter().sum();
            e.iter().map(|a| a / total).collect()
        };
        let soft_mid: Vec<f32> = x.chunks(12).flat_map(softmax).collect();
        let soft_last: Vec<f32> = x
            .chunks(4)
            .flat_map(|row| softmax(row).into_iter().map(f32::ln))
            .collect();
        let first: Vec<f32> = x.chunks(4).map(|row| row[0]).collect();
        let sum: Vec<f32> = x.chunks(4).map(|row| row[1..].iter().sum()).collect();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raised.onnx");
        crate::model::save(&model, &path).unwrap();
        let device = TractBackend.devices().unwrap().remove(0);
        let source = ModelSource {
            path,
            inputs: bound,
        };
        let mut session = TractBackend
            .load(&source, &device, &SessionOptions::default())
            .unwrap();
        let outputs = session
            .run(&[Tensor::from_vec(vec![2, 3, 4], x.clone()).unwrap()])
            .unwrap();
        for (got, expected) in outputs.iter().zip([soft_mid, soft_last, first, sum]) {
            let got = got.to_f64_vec();
            assert_eq!(got.len(), expected.len());
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - *e as f64).abs() < 1e-5, "{got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn models_that_cannot_be_raised_are_refused_with_the_reason() {
        let mut old = opset_11_model();
        old.opset_import[0].version = Some(10);
        let e = raise_to_13(&mut old, &Inference::default(), "int8-static")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("int8-static needs ONNX opset 13; the model imports opset 10")
                && e.contains("opset 11 or newer"),
            "{e}"
        );
        let mut resize = opset_11_model();
        resize.graph.as_mut().unwrap().node[0] = node(
            "Resize",
            "up",
            &["x", "", "scales"],
            &["soft_mid"],
            vec![AttributeProto::string(
                "coordinate_transformation_mode",
                "tf_half_pixel_for_nn",
            )],
        );
        let e = raise_to_13(&mut resize, &Inference::default(), "int8-static")
            .unwrap_err()
            .to_string();
        assert!(e.contains("Resize 'up' uses tf_half_pixel_for_nn"), "{e}");
    }
}
