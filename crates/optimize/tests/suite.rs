//! The committed suite in `models/`: up to date with the generator, within the size budget,
//! described by `suite.toml`, and with weights shaped like trained ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chipbench_core::{DType, Dim};
use chipbench_optimize::onnx::{ModelProto, TensorProto};
use chipbench_optimize::suite::{self, Suite};
use chipbench_optimize::{ModelStats, model};
use prost::Message;

fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models")
}

const MODELS: [&str; 4] = ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"];

/// Set `CHIPBENCH_BLESS=1` to rewrite `models/` from the generator instead of comparing.
#[test]
fn committed_models_are_what_the_generator_writes() {
    let fresh = tempfile::tempdir().unwrap();
    let written = suite::generate(fresh.path()).unwrap();
    // The suite's models, suite.toml, and gpt-tiny beside them.
    assert_eq!(written.len(), MODELS.len() + 2);
    // A second run writes the same bytes: nothing depends on time, order of hashing or threads.
    let again = tempfile::tempdir().unwrap();
    suite::generate(again.path()).unwrap();
    if std::env::var_os("CHIPBENCH_BLESS").is_some() {
        suite::generate(&models_dir()).unwrap();
    }
    let table: Vec<(String, String)> = written
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, model::sha256_file(p).unwrap())
        })
        .collect();
    let expected: Vec<(String, String)> = suite::SUITE_SHA256
        .iter()
        .map(|(f, h)| (f.to_string(), h.to_string()))
        .collect();
    assert!(
        table == expected,
        "suite::SUITE_SHA256 (crates/optimize/src/suite.rs) is not what the generator writes; \
         the generator's table is:\n{table:#?}"
    );
    for path in &written {
        let name = path.file_name().unwrap();
        let new = std::fs::read(path).unwrap();
        assert_eq!(
            new,
            std::fs::read(again.path().join(name)).unwrap(),
            "{name:?} is not deterministic"
        );
        let committed = std::fs::read(models_dir().join(name)).unwrap_or_default();
        assert!(
            new == committed,
            "models/{} is out of date; regenerate with CHIPBENCH_BLESS=1 cargo test -p chipbench-optimize --release --test suite",
            name.to_string_lossy()
        );
    }
}

#[test]
fn the_suite_fits_in_12_mb() {
    let total: u64 = MODELS
        .iter()
        .map(|m| {
            std::fs::metadata(models_dir().join(format!("{m}.onnx")))
                .unwrap()
                .len()
        })
        .sum();
    assert!(total < 12_000_000, "the suite takes {total} bytes");
}

#[test]
fn gpt_tiny_is_at_most_4_mb_outside_suite_toml_and_round_trips() {
    let path = models_dir().join(suite::GPT_TINY_FILE);
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() <= 4 << 20,
        "gpt-tiny takes {} bytes",
        bytes.len()
    );
    let decoded = ModelProto::decode(&bytes[..]).unwrap();
    assert!(
        decoded.encode_to_vec() == bytes,
        "gpt-tiny changed in a round trip"
    );
    let suite = Suite::load(&models_dir()).unwrap();
    assert!(suite.models.iter().all(|m| m.file != suite::GPT_TINY_FILE));
    let declared = model::inputs(&decoded).unwrap();
    let names: Vec<&str> = declared.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        &names[..5],
        [
            "input_ids",
            "attention_mask",
            "position_ids",
            "past_key_values.0.key",
            "past_key_values.0.value"
        ]
    );
    assert_eq!(names.len(), 3 + 2 * suite::GPT_LAYERS);
}

#[test]
fn suite_models_decode_and_encode_to_the_same_bytes() {
    for m in MODELS {
        let bytes = std::fs::read(models_dir().join(format!("{m}.onnx"))).unwrap();
        let decoded = ModelProto::decode(&bytes[..]).unwrap();
        assert!(
            decoded.encode_to_vec() == bytes,
            "{m} changed in a round trip"
        );
    }
}

#[test]
fn suite_toml_describes_each_model() {
    let suite = Suite::load(&models_dir()).unwrap();
    let names: Vec<&str> = suite.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, MODELS);
    for entry in &suite.models {
        let proto = model::load(&entry.path(&models_dir())).unwrap();
        assert_eq!(proto.onnx_opset(), Some(17));
        assert_eq!(proto.ir_version, Some(8));
        let declared = model::inputs(&proto).unwrap();
        assert_eq!(declared.len(), entry.inputs.len());
        for (d, e) in declared.iter().zip(&entry.inputs) {
            assert_eq!(
                (&d.name, d.dtype, &d.shape),
                (&e.name, e.dtype, &e.shape),
                "{}",
                entry.name
            );
            assert_eq!(e.shape[0], Dim::Named("batch".into()));
        }
        assert_eq!(entry.dims, BTreeMap::from([("batch".to_string(), 1)]));
        let outputs = model::outputs(&proto);
        let expected = if entry.name == "bert-tiny" {
            "last_hidden_state"
        } else {
            "logits"
        };
        assert_eq!(outputs.len(), 1);
        assert_eq!(outputs[0].name, expected);
    }
    let bert = suite.model("bert-tiny").unwrap();
    assert_eq!(bert.inputs[0].dtype, DType::I64);
    assert_eq!(bert.inputs[0].range, Some([0.0, 2048.0]));
}

fn stats(name: &str) -> ModelStats {
    let suite = Suite::load(&models_dir()).unwrap();
    let entry = suite.model(name).unwrap();
    ModelStats::of_file(&entry.path(&models_dir()), &entry.bound_inputs().unwrap()).unwrap()
}

#[test]
fn mlp_params_and_macs_by_hand() {
    let s = stats("mlp");
    let weights = 784 * 512 + 512 * 256 + 256 * 10;
    let biases = 512 + 256 + 10;
    assert_eq!(s.params, weights + biases);
    assert_eq!(s.weight_bytes, 4 * (weights + biases));
    assert_eq!(s.macs, Some(weights));
    assert_eq!(
        s.op_histogram,
        BTreeMap::from([("Gemm".into(), 3), ("Relu".into(), 2)])
    );
}

#[test]
fn every_suite_model_is_fully_sized() {
    for m in MODELS {
        let s = stats(m);
        assert!(s.shape_issues.is_empty(), "{m}: {:?}", s.shape_issues);
        assert!(s.macs.is_some(), "{m}: {:?}", s.macs_unknown);
        println!(
            "{m}: {} params, {} weight bytes, {} MACs",
            s.params,
            s.weight_bytes,
            s.macs.unwrap()
        );
    }
}

fn weights(name: &str) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let proto = model::load(&models_dir().join(format!("{name}.onnx"))).unwrap();
    proto
        .graph
        .unwrap()
        .initializer
        .iter()
        .filter_map(|t: &TensorProto| {
            Some((t.name().to_string(), (t.shape().ok()?, t.to_f32().ok()?)))
        })
        .collect()
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// The standard deviation the generator documents for a weight, from its name and shape.
fn expected_std(model: &str, name: &str, shape: &[usize]) -> Option<f64> {
    let he = |fan_in: usize| (2.0 / fan_in as f64).sqrt();
    let xavier = |fan_in: usize, fan_out: usize| (2.0 / (fan_in + fan_out) as f64).sqrt();
    // Kernels and classifier rows centred on zero lose one degree of freedom.
    let centred = |fan_in: usize| (1.0 - 1.0 / fan_in as f64).sqrt();
    match shape {
        _ if name == "embeddings.word" || name == "embeddings.position" => Some(0.02),
        [out, per_group, k, _] if name.ends_with(".weight") => {
            let fan_in = per_group * k * k;
            let std = if name.contains(".project.") {
                xavier(fan_in, out * k * k)
            } else {
                he(fan_in)
            };
            Some(std * centred(fan_in))
        }
        [classes, c] if name == "classifier.weight" => Some(xavier(*c, *classes) * centred(*c)),
        [out, fan_in] if model == "mlp" && name == "logits.weight" => Some(xavier(*fan_in, *out)),
        [_, fan_in] if model == "mlp" && name.ends_with(".weight") => Some(he(*fan_in)),
        [fan_in, out] if model == "bert-tiny" && name.ends_with(".weight") => {
            Some(xavier(*fan_in, *out))
        }
        _ => None,
    }
}

#[test]
fn weights_are_shaped_like_trained_ones() {
    for m in MODELS {
        let mut checked = 0;
        for (name, (shape, values)) in weights(m) {
            assert!(values.iter().all(|v| v.is_finite()), "{m}/{name}");
            if values.len() > 1 {
                assert!(
                    values.iter().any(|&v| v != values[0]),
                    "{m}/{name} is constant"
                );
            }
            let (mean, std) = mean_std(&values);
            if let Some(expected) = expected_std(m, &name, &shape) {
                // Four standard errors of a sample standard deviation, plus 2%.
                let tolerance = 0.02 + 4.0 / (2.0 * values.len() as f64).sqrt();
                assert!(
                    (std / expected - 1.0).abs() < tolerance,
                    "{m}/{name}: std {std}, expected {expected}"
                );
                assert!(
                    mean.abs() < 4.0 * std / (values.len() as f64).sqrt(),
                    "{m}/{name}: mean {mean}"
                );
                checked += 1;
            }
            if name.ends_with("_bn.scale") || name.ends_with("norm.scale") {
                assert!(
                    values.iter().all(|&g| (0.9..=1.1).contains(&g)),
                    "{m}/{name}"
                );
            }
            if name.ends_with("_bn.running_var") {
                assert!(values.iter().all(|&v| v > 0.0), "{m}/{name}");
                assert!(
                    (0.01..20.0).contains(&mean),
                    "{m}/{name}: mean variance {mean}"
                );
            }
            if name.ends_with(".bias") {
                assert!(
                    std < 0.1 && mean.abs() < 0.05,
                    "{m}/{name}: mean {mean}, std {std}"
                );
            }
        }
        assert!(checked >= 3, "{m}: only {checked} weights checked");
    }
}

#[test]
fn a_bad_suite_toml_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("suite.toml"),
        "[[model]]\nname = \"x\"\nfile = 3\n",
    )
    .unwrap();
    let err = Suite::load(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("suite.toml") && err.contains("(line 3, column 8)"),
        "{err}"
    );
    assert!(
        err.contains("expected a string") && !err.contains('\n'),
        "{err}"
    );
    let err = Suite::load(&dir.path().join("none"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("none/suite.toml"), "{err}");
    std::fs::write(
        dir.path().join("suite.toml"),
        "[[model]]\nname = \"x\"\nfile = \"../x.onnx\"\ndescription = \"\"\ninputs = []\n",
    )
    .unwrap();
    let err = Suite::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("inside the models folder"), "{err}");
}

/// A chipbench without `models/` fills a cache folder with the suite, reuses it, and replaces a
/// damaged file (found by its hash) without touching the others.
#[test]
fn install_fills_reuses_and_repairs_a_cache_folder() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("suite");
    assert_eq!(suite::install(&dir).unwrap(), suite::Installed::Generated);
    for (file, _) in suite::SUITE_SHA256 {
        assert_eq!(
            std::fs::read(dir.join(file)).unwrap(),
            std::fs::read(models_dir().join(file)).unwrap(),
            "{file}"
        );
    }
    assert_eq!(suite::install(&dir).unwrap(), suite::Installed::Reused);

    let damaged = dir.join("mlp.onnx");
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::remove_file(dir.join("bert-tiny.onnx")).unwrap();
    match suite::install(&dir).unwrap() {
        suite::Installed::Repaired(files) => {
            let names: Vec<&str> = files.iter().map(|(f, _)| f.as_str()).collect();
            assert_eq!(names, ["mlp.onnx", "bert-tiny.onnx"]);
            assert!(files[0].1.contains("expected"), "{files:?}");
            assert_eq!(files[1].1, "missing");
        }
        other => panic!("expected a repair, got {other:?}"),
    }
    assert_eq!(suite::install(&dir).unwrap(), suite::Installed::Reused);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "scratch folders left: {leftovers:?}");
}
