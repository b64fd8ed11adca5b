//! `chipbench backends --coverage`: per model, the operators each backend would refuse, found by
//! loading (wgpu: lowering) each model without running it. The built-in suite loads everywhere;
//! a model with operators the wgpu backend has no kernel for is listed with every refused node,
//! those after a refused node included. wgpu's lowering needs no adapter, so these tests never
//! skip.

mod common;

use chipbench_optimize::builder::GraphBuilder;
use chipbench_optimize::onnx::DataType;
use common::{backend_available, chipbench, printed};
use serde_json::Value;

fn coverage_json(args: &[&str]) -> Vec<Value> {
    let mut all = vec!["backends", "--coverage", "--json"];
    all.extend_from_slice(args);
    let o = chipbench(&all);
    assert!(o.status.success(), "{}", printed(&o));
    let list: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", printed(&o)));
    list.as_array().expect("a list of models").clone()
}

fn entry<'a>(model: &'a Value, backend: &str) -> &'a Value {
    model["backends"]
        .as_array()
        .expect("per-backend entries")
        .iter()
        .find(|b| b["backend"] == backend)
        .unwrap_or_else(|| panic!("no {backend} entry in {model}"))
}

#[test]
fn the_built_in_suite_loads_on_every_backend() {
    let ort = backend_available("ort", "CHIPBENCH_REQUIRE_ORT");
    let models = coverage_json(&[]);
    let names: Vec<&str> = models.iter().filter_map(|m| m["model"].as_str()).collect();
    assert_eq!(
        names,
        ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"],
        "the default is the suite"
    );
    for m in &models {
        let wgpu = entry(m, "wgpu");
        assert_eq!(wgpu["status"], "supported", "{m}");
        assert!(wgpu["nodes"].as_u64().unwrap() > 0, "{m}");
        assert_eq!(entry(m, "tract")["status"], "supported", "{m}");
        if ort {
            assert_eq!(entry(m, "ort")["status"], "supported", "{m}");
        }
    }
    let o = chipbench(&["backends", "--coverage", "--model", "mlp"]);
    assert!(o.status.success(), "{}", printed(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("mlp (models/mlp.onnx)"), "{text}");
    assert!(text.contains("wgpu   runs every operator"), "{text}");

    // The README's table: a row per model, a column per backend.
    let o = chipbench(&["backends", "--coverage", "--markdown", "--model", "mlp"]);
    assert!(o.status.success(), "{}", printed(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(
        rows[..2],
        ["| model | tract | ort | wgpu |", "|---|---|---|---|"],
        "{table}"
    );
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows[2].starts_with("| mlp | loads | "), "{table}");
    assert!(rows[2].ends_with(" | all 8 nodes |"), "{table}");
}

/// GridSample twice in a row (so the second is only reached by going on past the first) and a
/// NonMaxSuppression beside them, in front of a ReLU the backend does run.
#[test]
fn every_refused_operator_is_listed_with_its_nodes() {
    let mut g = GraphBuilder::new("coverage");
    g.input("boxes", DataType::Float, &["1", "4", "4"]);
    g.input("scores", DataType::Float, &["1", "1", "4"]);
    g.input("x", DataType::Float, &["1", "1", "4", "4"]);
    g.input("grid", DataType::Float, &["1", "3", "3", "2"]);
    g.node("NonMaxSuppression", "nms", &["boxes", "scores"], vec![]);
    g.node("GridSample", "gs1", &["x", "grid"], vec![]);
    g.node("GridSample", "gs2", &["gs1", "grid"], vec![]);
    g.node("Relu", "y", &["gs2"], vec![]);
    g.output("nms", DataType::Int64, &["?", "3"]);
    g.output("y", DataType::Float, &["?"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("refused.onnx");
    chipbench_optimize::model::save(&g.into_model().unwrap(), &path).unwrap();
    let path = path.to_str().unwrap();

    let models = coverage_json(&["--model", path, "--model", "mlp"]);
    assert_eq!(models.len(), 2);
    let m = &models[0];
    assert_eq!(m["model"], "refused");
    let wgpu = entry(m, "wgpu");
    assert_eq!(wgpu["status"], "refused", "{m}");
    assert_eq!(wgpu["nodes"], 4, "{m}");
    let refused: Vec<(String, Vec<String>)> = wgpu["operators"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let nodes = r["nodes"].as_array().unwrap();
            let nodes = nodes.iter().map(|n| n.as_str().unwrap().to_string());
            (r["operator"].as_str().unwrap().to_string(), nodes.collect())
        })
        .collect();
    assert_eq!(
        refused,
        [
            (
                "GridSample".to_string(),
                vec!["gs1".to_string(), "gs2".to_string()]
            ),
            (
                "NonMaxSuppression (its output size depends on the data; run it on the CPU \
                 after the model)"
                    .to_string(),
                vec!["nms".to_string()]
            ),
        ],
        "{m}"
    );
    // The other backends have an entry each, whatever they make of it.
    for backend in ["tract", "ort"] {
        assert!(entry(m, backend)["status"].is_string(), "{m}");
    }
    assert_eq!(entry(&models[1], "wgpu")["status"], "supported");

    let o = chipbench(&["backends", "--coverage", "--model", path]);
    assert!(o.status.success(), "{}", printed(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("refuses 2 operator(s) in 3 of 4 operator nodes"),
        "{text}"
    );
    assert!(text.contains("GridSample: 'gs1', 'gs2'"), "{text}");
    assert!(text.contains("after the model): 'nms'"), "{text}");
}

#[test]
fn a_model_that_is_not_there_is_named() {
    let o = chipbench(&["backends", "--coverage", "--model", "no/such/model.onnx"]);
    let all = printed(&o);
    assert!(all.contains("no/such/model.onnx"), "{all}");
}
