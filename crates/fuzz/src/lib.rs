//! Fuzzing of what chipbench does to an ONNX file before any engine sees it: decoding, the input
//! specification, shape inference, model statistics and the variants derived without an engine
//! (fp16, dynamic int8, pruning). It runs on the stable toolchain (cargo-fuzz needs nightly,
//! which CI machines lack) and links no engine, so it builds in about a minute.
//!
//! [`exercise`] is the target; [`mutate`] makes the inputs, byte-wise and through the protobuf
//! structure, from seed models.

pub mod mutate;

use std::collections::BTreeMap;

use chipbench_core::{Dim, TensorInfo};
use chipbench_optimize::ModelProto;
use chipbench_optimize::variants::{self, DeriveOptions, Recipe, Source};
use prost::Message;

/// The recipes derived from every input that decodes: the ones that need no engine.
pub const RECIPES: [&str; 5] = [
    "fp16",
    "int8-dynamic",
    "prune-unstructured:0.5",
    "prune-2:4",
    "prune-channels:0.25",
];

/// How far an input got; an error at any step is a handled input, not a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reached {
    /// Not an ONNX model.
    Undecoded,
    /// Decoded; its inputs cannot be specified (no graph, bad declarations).
    Decoded,
    /// Its inputs are specified and bound; shapes inferred, statistics taken.
    Inferred,
    /// At least one variant was derived.
    Derived,
}

/// Runs `bytes` through chipbench's model handling. Returns how far it got; panics only when
/// chipbench does (the finding).
pub fn exercise(bytes: &[u8]) -> Reached {
    let Ok(model) = ModelProto::decode(bytes) else {
        return Reached::Undecoded;
    };
    let Ok(specs) = chipbench_optimize::model::inputs(&model) else {
        return Reached::Decoded;
    };
    // Every symbolic dimension bound to 1, as `bench` does with `--dim NAME=1`.
    let dims: BTreeMap<String, usize> = specs
        .iter()
        .flat_map(|s| &s.shape)
        .filter_map(|d| match d {
            Dim::Named(name) => Some((name.clone(), 1)),
            Dim::Fixed(_) => None,
        })
        .collect();
    let Ok(bound) = specs
        .iter()
        .map(|s| s.bind(&dims))
        .collect::<Result<Vec<TensorInfo>, _>>()
    else {
        return Reached::Decoded;
    };
    let inference = chipbench_optimize::infer_shapes(&model, &bound, None);
    let _ = chipbench_optimize::ModelStats::with_inference(&model, &inference);
    let source = Source {
        model: &model,
        model_dir: None,
        specs: &specs,
        bound: &bound,
    };
    let mut no_engine = |_: &ModelProto, _: &[Vec<chipbench_core::Tensor>]| {
        Err::<Vec<Vec<chipbench_core::Tensor>>, String>("the fuzzer links no engine".into())
    };
    let mut reached = Reached::Inferred;
    for recipe in RECIPES {
        let recipe: Recipe = recipe.parse().expect("the fuzzer's recipes parse");
        if variants::derive(&source, &recipe, &DeriveOptions::default(), &mut no_engine).is_ok() {
            reached = Reached::Derived;
        }
    }
    reached
}
