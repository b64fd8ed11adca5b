//! ONNX Runtime's profile: a Chrome trace (JSON array of events) where every executed node is an
//! event of category `Node` named `<node>_kernel_time`, with `dur` in microseconds and the op type
//! and execution provider in `args`.

use std::path::Path;

use chipbench_core::OperatorTime;
use serde_json::Value;

use crate::error::Error;

/// Time per node summed over every profiled run, the slowest first; `share` is the fraction of
/// the time of all nodes.
pub fn parse(json: &str, path: &Path) -> Result<Vec<OperatorTime>, Error> {
    let events: Vec<Value> = serde_json::from_str(json)
        .map_err(|e| Error::library(path, format!("not an ONNX Runtime profile: {e}")))?;
    let mut operators: Vec<OperatorTime> = Vec::new();
    for event in &events {
        if event["cat"] != "Node" {
            continue;
        }
        let Some(node) = event["name"]
            .as_str()
            .and_then(|n| n.strip_suffix("_kernel_time"))
        else {
            continue;
        };
        let micros = event["dur"].as_f64().unwrap_or(0.0);
        let args = &event["args"];
        let op_type = args["op_name"].as_str().unwrap_or("?");
        let provider = args["provider"].as_str().unwrap_or("?");
        match operators
            .iter_mut()
            .find(|o| o.node == node && o.op_type == op_type && o.provider == provider)
        {
            Some(o) => o.total_ms += micros / 1e3,
            None => operators.push(OperatorTime {
                op_type: op_type.to_string(),
                node: node.to_string(),
                provider: provider.to_string(),
                total_ms: micros / 1e3,
                share: 0.0,
            }),
        }
    }
    let total: f64 = operators.iter().map(|o| o.total_ms).sum();
    for o in &mut operators {
        o.share = if total > 0.0 { o.total_ms / total } else { 0.0 };
    }
    operators.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
    Ok(operators)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real ONNX Runtime 1.32 profile, trimmed to the fields read.
    const PROFILE: &str = r#"[
      {"cat":"Session","name":"session_initialization","dur":4670,"ts":414,"ph":"X"},
      {"cat":"Node","name":"conv1_kernel_time","dur":86,"ts":5189,"ph":"X",
       "args":{"op_name":"Conv","provider":"CPUExecutionProvider"}},
      {"cat":"Node","name":"fc_kernel_time","dur":19,"ts":5301,"ph":"X",
       "args":{"op_name":"MatMul","provider":"CPUExecutionProvider"}},
      {"cat":"Session","name":"model_run","dur":158,"ts":5172,"ph":"X"},
      {"cat":"Node","name":"conv1_kernel_time","dur":6,"ts":5348,"ph":"X",
       "args":{"op_name":"Conv","provider":"CPUExecutionProvider"}},
      {"cat":"Node","name":"fc_kernel_time","dur":40,"ts":5361,"ph":"X",
       "args":{"op_name":"MatMul","provider":"CUDAExecutionProvider"}}
    ]"#;

    #[test]
    fn nodes_are_summed_over_runs_and_sorted() {
        let ops = parse(PROFILE, Path::new("p.json")).unwrap();
        let summary: Vec<(&str, &str, f64)> = ops
            .iter()
            .map(|o| (o.node.as_str(), o.provider.as_str(), o.total_ms))
            .collect();
        assert_eq!(
            summary,
            [
                ("conv1", "CPUExecutionProvider", 0.092),
                ("fc", "CUDAExecutionProvider", 0.040),
                ("fc", "CPUExecutionProvider", 0.019),
            ]
        );
        assert_eq!(ops[0].op_type, "Conv");
        let shares: f64 = ops.iter().map(|o| o.share).sum();
        assert!((shares - 1.0).abs() < 1e-12);
        assert!((ops[0].share - 92.0 / 151.0).abs() < 1e-12);
    }

    #[test]
    fn a_file_that_is_not_a_profile_is_an_error_naming_it() {
        let e = parse("{\"not\": \"a trace\"}", Path::new("/tmp/p.json")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/tmp/p.json: not an ONNX Runtime profile"),
            "{e}"
        );
    }
}
