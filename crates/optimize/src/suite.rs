//! The built-in model suite: four small models generated from fixed seeds, and `suite.toml`,
//! which says what each model is and how to feed it.
//!
//! The generator is deterministic (ChaCha8 with a fixed seed per model), so regenerating gives
//! byte-identical files and a test can check that `models/` is up to date. The weights are
//! random but shaped like trained ones, because later steps quantize these models and measure
//! the accuracy lost: He-normal for layers followed by a ReLU, Xavier-normal for the others,
//! small non-zero biases, and batch-normalization statistics that match what flows into them,
//! so activations neither saturate nor blow up on standard-normal inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chipbench_core::{DType, Dim, InputSpec, TensorInfo};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::builder::GraphBuilder;
use crate::error::{Error, Result};
use crate::onnx::{AttributeProto as A, DataType, ModelProto};

mod decoder;
pub use decoder::{
    GPT_FFN, GPT_HEADS, GPT_HIDDEN, GPT_LAYERS, GPT_MAX_POSITIONS, GPT_TINY_FILE, GPT_VOCAB,
    gpt_tiny,
};

/// The suite's description file, in the models folder.
pub const SUITE_FILE: &str = "suite.toml";

/// What `suite.toml` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suite {
    #[serde(rename = "model")]
    pub models: Vec<SuiteModel>,
}

/// One model of the suite.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SuiteModel {
    pub name: String,
    /// The model file, relative to the folder `suite.toml` is in.
    pub file: String,
    pub description: String,
    /// Values for the named dimensions of the inputs (`batch = 1`).
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
    pub inputs: Vec<InputSpec>,
}

impl Suite {
    /// Reads `models_dir/suite.toml`; the error names the file and what is wrong in it.
    pub fn load(models_dir: &Path) -> Result<Suite> {
        let path = models_dir.join(SUITE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let fail = |reason: String| Error::Suite {
            path: path.clone(),
            reason,
        };
        let suite: Suite = toml::from_str(&text)
            .map_err(|e| fail(format!("{}{}", e.message().trim_end(), location(&e, &text))))?;
        let mut names = std::collections::HashSet::new();
        for m in &suite.models {
            if !names.insert(&m.name) {
                return Err(fail(format!("model '{}' is listed twice", m.name)));
            }
            let file = Path::new(&m.file);
            if file.is_absolute()
                || file
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(fail(format!(
                    "model '{}': file '{}' must be a path inside the models folder",
                    m.name, m.file
                )));
            }
        }
        Ok(suite)
    }

    pub fn model(&self, name: &str) -> Option<&SuiteModel> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// ` (line L, column C)` for a TOML error, so the one-line message points into the file.
fn location(e: &toml::de::Error, text: &str) -> String {
    let Some(span) = e.span() else {
        return String::new();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}

impl SuiteModel {
    pub fn path(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.file)
    }

    /// The inputs with the suite's dims bound.
    pub fn bound_inputs(&self) -> chipbench_core::Result<Vec<TensorInfo>> {
        self.inputs.iter().map(|i| i.bind(&self.dims)).collect()
    }
}

/// Writes the four models and `suite.toml` into `dir` (created if needed), then the decoder
/// `gpt-tiny` beside them ([`GPT_TINY_FILE`], not listed in `suite.toml`), and returns the paths
/// written.
pub fn generate(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = write_suite(
        dir,
        [mlp()?, mobilenet_v2()?, resnet_mini()?, bert_tiny()?],
        "# The built-in model suite, written by chipbench-optimize's suite generator: regenerate\n\
         # the models rather than editing them, or a test will say they are out of date.",
    )?;
    let path = dir.join(GPT_TINY_FILE);
    crate::model::save(&gpt_tiny()?, &path)?;
    written.push(path);
    Ok(written)
}

/// Feed-forward width of the twin bert-tiny: 560 instead of 512, which gives 5.4 % more MACs
/// (61 865 984 against 58 720 256) and ran 5.7 % slower on tract, one thread, on a 2-vCPU VM.
pub const BERT_TWIN_FFN: usize = 560;

/// Writes the suite's **twin** into `dir`: the same four models and `suite.toml`, except that
/// `bert-tiny`'s feed-forward layers are 560 wide instead of 512 (about 5 % more MACs). It keeps
/// the name `bert-tiny`, so that its cells match the suite's in a comparison: `bench --suite DIR`
/// measures what a change that made bert-tiny 5 % more expensive would give, a real slowdown for
/// the gate's power (`scripts/gate-real-power.sh`). It is not part of the suite: `models/` and
/// the default run never see it.
///
/// Why bert-tiny's FFN: its time follows its MACs (FFN 544, 560, 576: +3.6, +5.4, +7.1 % MACs,
/// +3.1, +5.7, +7.4 % time on tract), while widening a layer of the 22 µs mlp by 1.5-6 % made it
/// 10-25 % slower: at that size a shape off the kernels' sweet spot and each node's overhead
/// decide, not the MACs.
pub fn generate_twin(dir: &Path) -> Result<Vec<PathBuf>> {
    let (mut entry, model) = bert_tiny_with(BERT_TWIN_FFN)?;
    entry.description = format!(
        "Twin of the suite's bert-tiny with about 5 % more MACs, for measuring the regression gate's \
         power: the same encoder with FFN {BERT_TWIN_FFN} instead of {BERT_FFN}."
    );
    write_suite(
        dir,
        [mlp()?, mobilenet_v2()?, resnet_mini()?, (entry, model)],
        "# The twin of the built-in suite (chipbench-optimize's suite::generate_twin): the suite with\n\
         # bert-tiny's FFN 560 wide instead of 512, about 5 % more MACs. Not the suite: only the\n\
         # gate's power script uses it.",
    )
}

fn write_suite(
    dir: &Path,
    models: [(SuiteModel, ModelProto); 4],
    header: &str,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    let mut suite = Suite { models: Vec::new() };
    for (entry, model) in models {
        let path = dir.join(&entry.file);
        crate::model::save(&model, &path)?;
        written.push(path);
        suite.models.push(entry);
    }
    let path = dir.join(SUITE_FILE);
    let body = toml::to_string(&suite).map_err(|e| Error::Suite {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let text = format!("{header}\n\n{body}");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    written.push(path);
    Ok(written)
}

/// The SHA-256 of every file [`generate`] writes, as this version of the generator writes them.
///
/// A chipbench without a `models/` folder at hand generates the suite into its cache
/// ([`install`]) and checks the bytes against this table, so a cached file that was damaged, or a
/// platform whose floating point gives other weights, is caught instead of measured. The table is
/// plain source rather than a build step: generating takes well under a second, so checking the
/// generator's output costs nothing, and `committed_models_are_what_the_generator_writes`
/// (crates/optimize/tests/suite.rs) fails, printing the new table, whenever the generator's
/// output and this table (or `models/`) part.
pub const SUITE_SHA256: [(&str, &str); 6] = [
    (
        "mlp.onnx",
        "c12c7b7d7f59125c3d82fb86039c0a975dccf1320fce03292f54070786219e56",
    ),
    (
        "mobilenet-v2-0.5.onnx",
        "c7d62a57632e026aa470d9640051edbcb4ab29e0bbfe23cc2b50c497c1f79878",
    ),
    (
        "resnet-mini.onnx",
        "f14f402c790a35101594ab1a0808a9cad56bbd2cfa29a36bbc6e25a9a8e87486",
    ),
    (
        "bert-tiny.onnx",
        "a3be28a43a825a46be3e5932a522c3df76d83cc7add248ef9b4b4d15544bdacd",
    ),
    (
        SUITE_FILE,
        "5c83e5f75f1f941cb4073e5386edabe80a689dc95d4b4252da7fcd48c9012b32",
    ),
    (
        GPT_TINY_FILE,
        "c25f35775676326011ab01c48cfefc0001f6b9f062110dbcfe31699170e44d4f",
    ),
];

/// [`Installed::Repaired`]'s reason for a file that was not there.
const MISSING: &str = "missing";

/// What [`install`] found in the folder and what it did.
#[derive(Debug, PartialEq)]
pub enum Installed {
    /// Every file was there with the expected bytes: nothing was written.
    Reused,
    /// The folder held no suite file at all; the whole suite was generated into it.
    Generated,
    /// Some files were missing or damaged: `(file name, what was wrong)`; they were regenerated.
    Repaired(Vec<(String, String)>),
}

/// Makes `dir` hold the built-in suite byte for byte as [`SUITE_SHA256`] describes it: checks
/// every file's hash, and when one is missing or differs, generates the suite afresh (in a
/// temporary folder beside the files), checks the new bytes and moves the files that were wrong
/// into place. Each file is replaced by a rename, so another chipbench reading or filling the same
/// folder at the same time (jobs of one array on a shared home) never sees half a file.
pub fn install(dir: &Path) -> Result<Installed> {
    let mut wrong = Vec::new();
    for (file, expected) in SUITE_SHA256 {
        let path = dir.join(file);
        if !path.exists() {
            wrong.push((file.to_string(), MISSING.to_string()));
            continue;
        }
        match crate::model::sha256_file(&path) {
            Ok(found) if found == expected => {}
            Ok(found) => wrong.push((
                file.to_string(),
                format!("sha256 {found}, expected {expected}"),
            )),
            Err(e) => wrong.push((file.to_string(), e.to_string())),
        }
    }
    if wrong.is_empty() {
        return Ok(Installed::Reused);
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let scratch = tempfile::Builder::new()
        .prefix(".generating-")
        .tempdir_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    generate(scratch.path())?;
    for (file, expected) in SUITE_SHA256 {
        let fresh = scratch.path().join(file);
        let found = crate::model::sha256_file(&fresh)?;
        if found != expected {
            return Err(Error::Suite {
                path: dir.join(file),
                reason: format!(
                    "generated here with sha256 {found}, but this chipbench was built with \
                     {expected}: this machine's floating point gives other weights; pass \
                     --suite DIR with a copy of models/ from chipbench's repository"
                ),
            });
        }
    }
    for (file, _) in &wrong {
        let target = dir.join(file);
        std::fs::rename(scratch.path().join(file), &target).map_err(|e| Error::io(&target, e))?;
    }
    Ok(if wrong.iter().all(|(_, why)| why == MISSING) {
        Installed::Generated
    } else {
        Installed::Repaired(wrong)
    })
}

fn batch_input(name: &str, dtype: DType, rest: &[usize], range: Option<[f64; 2]>) -> InputSpec {
    let mut shape = vec![Dim::Named("batch".into())];
    shape.extend(rest.iter().map(|&d| Dim::Fixed(d)));
    InputSpec {
        name: name.into(),
        dtype,
        shape,
        range,
    }
}

fn entry(name: &str, description: &str, inputs: Vec<InputSpec>) -> SuiteModel {
    SuiteModel {
        name: name.into(),
        file: format!("{name}.onnx"),
        description: description.into(),
        dims: BTreeMap::from([("batch".to_string(), 1)]),
        inputs,
    }
}

/// Seeded weight initialisers.
struct Init(ChaCha8Rng);

impl Init {
    fn new(seed: u64) -> Self {
        Init(ChaCha8Rng::seed_from_u64(seed))
    }

    fn normal(&mut self, n: usize, mean: f32, std: f32) -> Vec<f32> {
        let dist = Normal::new(mean, std).expect("a positive standard deviation");
        (0..n).map(|_| dist.sample(&mut self.0)).collect()
    }

    fn uniform(&mut self, n: usize, low: f32, high: f32) -> Vec<f32> {
        (0..n).map(|_| self.0.random_range(low..high)).collect()
    }

    /// He-normal: keeps the second moment through a layer followed by a ReLU.
    fn he(&mut self, n: usize, fan_in: usize) -> Vec<f32> {
        self.normal(n, 0.0, (2.0 / fan_in as f32).sqrt())
    }

    /// Xavier-normal: keeps the variance through a linear layer.
    fn xavier(&mut self, n: usize, fan_in: usize, fan_out: usize) -> Vec<f32> {
        self.normal(n, 0.0, (2.0 / (fan_in + fan_out) as f32).sqrt())
    }

    /// Small non-zero biases, as training leaves them.
    fn bias(&mut self, n: usize) -> Vec<f32> {
        self.normal(n, 0.0, 0.02)
    }
}

const MLP_DESCRIPTION: &str =
    "Multi-layer perceptron for 28x28 images: Gemm+Relu 784 -> 512 -> 256 -> 10.";

fn mlp() -> Result<(SuiteModel, ModelProto)> {
    let mut init = Init::new(1);
    let mut g = GraphBuilder::new("mlp");
    g.input("input", DataType::Float, &["batch", "784"]);
    let mut x = "input".to_string();
    let layers = [(784, 512, "fc1"), (512, 256, "fc2"), (256, 10, "logits")];
    for (i, &(fan_in, fan_out, name)) in layers.iter().enumerate() {
        let last = i == layers.len() - 1;
        let w = if last {
            init.xavier(fan_in * fan_out, fan_in, fan_out)
        } else {
            init.he(fan_in * fan_out, fan_in)
        };
        // [out, in] with transB, as PyTorch exports nn.Linear.
        let w = g.weight(&format!("{name}.weight"), &[fan_out, fan_in], &w);
        let b = g.weight(&format!("{name}.bias"), &[fan_out], &init.bias(fan_out));
        x = g.node("Gemm", name, &[&x, &w, &b], vec![A::int("transB", 1)]);
        if !last {
            x = g.node("Relu", &format!("{name}_relu"), &[&x], vec![]);
        }
    }
    g.output("logits", DataType::Float, &["batch", "10"]);
    let model = g.into_model()?;
    let inputs = vec![batch_input("input", DType::F32, &[784], None)];
    Ok((entry("mlp", MLP_DESCRIPTION, inputs), model))
}

/// A named activation, with its channel count and the variance the generator expects of it on
/// standard-normal inputs (the same for every channel), from which batch normalization gets the
/// running variance training would have left in it.
#[derive(Clone, Debug)]
struct Act {
    name: String,
    channels: usize,
    var: f64,
}

/// The variance after a ReLU of a centred input of variance `var` (batch normalization leaves
/// each channel near N(beta, gamma²) with beta small; ReLU6 clips too rarely here to matter).
fn relu_var(var: f64) -> f64 {
    var * (0.5 - 1.0 / (2.0 * std::f64::consts::PI))
}

/// Builds convolutional networks: convolutions followed by batch normalization whose running
/// statistics are those of the convolution's output for the weights drawn.
struct ConvNet {
    g: GraphBuilder,
    init: Init,
}

struct ConvSpec<'a> {
    name: &'a str,
    out: usize,
    kernel: usize,
    stride: usize,
    group: usize,
    /// Whether a ReLU follows (He-normal) or not (Xavier-normal).
    relu_after: bool,
}

impl<'a> ConvSpec<'a> {
    /// A square convolution followed by a ReLU, padded to keep the size at stride 1.
    fn new(name: &'a str, out: usize, kernel: usize, stride: usize) -> Self {
        ConvSpec {
            name,
            out,
            kernel,
            stride,
            group: 1,
            relu_after: true,
        }
    }

    /// One group per channel.
    fn depthwise(self) -> Self {
        ConvSpec {
            group: self.out,
            ..self
        }
    }

    /// Not followed by a ReLU.
    fn linear(self) -> Self {
        ConvSpec {
            relu_after: false,
            ..self
        }
    }
}

impl ConvNet {
    /// Conv (no bias) + BatchNormalization.
    fn conv_bn(&mut self, x: &Act, spec: ConvSpec) -> Act {
        let ConvSpec {
            name,
            out,
            kernel,
            stride,
            group,
            relu_after,
        } = spec;
        let per_group = x.channels / group;
        let fan_in = per_group * kernel * kernel;
        let fan_out = out / group * kernel * kernel;
        let n = out * fan_in;
        let mut w = if relu_after {
            self.init.he(n, fan_in)
        } else {
            self.init.xavier(n, fan_in, fan_out)
        };
        // Each output channel's kernel is centred on zero, so the positive mean of ReLU and
        // max-pool outputs cancels instead of becoming a per-channel offset that the batch
        // normalization statistics would have to know. Its output variance is then the input
        // variance times Σw², taking the inputs under the kernel as independent; the running
        // statistics carry the noise of running averages (mean off by a tenth of a standard
        // deviation, variance by up to 10%).
        let noise = Normal::new(0.0, 0.1).expect("a positive standard deviation");
        let (mean, var): (Vec<f32>, Vec<f32>) = w
            .chunks_mut(fan_in)
            .map(|c| {
                let centre = c.iter().sum::<f32>() / fan_in as f32;
                c.iter_mut().for_each(|v| *v -= centre);
                let var = x.var * c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>();
                let mean = noise.sample(&mut self.init.0) * var.sqrt();
                (
                    mean as f32,
                    (var * self.init.0.random_range(0.9..1.1)) as f32,
                )
            })
            .unzip();
        let w = self.g.weight(
            &format!("{name}.weight"),
            &[out, per_group, kernel, kernel],
            &w,
        );
        let pad = (kernel / 2) as i64;
        let attrs = vec![
            A::ints("kernel_shape", &[kernel as i64; 2]),
            A::ints("strides", &[stride as i64; 2]),
            A::ints("pads", &[pad; 4]),
            A::int("group", group as i64),
        ];
        let conv = self.g.node("Conv", name, &[&x.name, &w], attrs);
        let bn = format!("{name}_bn");
        let gamma = self.init.uniform(out, 0.9, 1.1);
        let beta = self.init.normal(out, 0.0, 0.05);
        let params = [
            ("scale", gamma),
            ("bias", beta),
            ("running_mean", mean),
            ("running_var", var),
        ];
        let inputs: Vec<String> = params
            .iter()
            .map(|(p, v)| self.g.weight(&format!("{bn}.{p}"), &[out], v))
            .collect();
        let inputs: Vec<&str> = std::iter::once(conv.as_str())
            .chain(inputs.iter().map(String::as_str))
            .collect();
        let y = self.g.node(
            "BatchNormalization",
            &bn,
            &inputs,
            vec![A::float("epsilon", 1e-5)],
        );
        // Normalized by statistics that match its input: near N(beta, gamma²) per channel.
        Act {
            name: y,
            channels: out,
            var: 1.0,
        }
    }

    fn relu(&mut self, x: Act) -> Act {
        let name = self
            .g
            .node("Relu", &format!("{}_relu", x.name), &[&x.name], vec![]);
        Act {
            name,
            var: relu_var(x.var),
            ..x
        }
    }

    /// ReLU6 as `Clip(x, 0, 6)` with the bounds as inputs (the opset 11+ form).
    fn relu6(&mut self, x: Act) -> Act {
        let name = self.g.node(
            "Clip",
            &format!("{}_relu6", x.name),
            &[&x.name, "relu6_min", "relu6_max"],
            vec![],
        );
        Act {
            name,
            var: relu_var(x.var),
            ..x
        }
    }

    fn add(&mut self, name: &str, a: &Act, b: &Act) -> Act {
        let name = self.g.node("Add", name, &[&a.name, &b.name], vec![]);
        Act {
            name,
            channels: a.channels,
            var: a.var + b.var,
        }
    }

    /// GlobalAveragePool, Flatten and a Gemm classifier to `classes` logits.
    fn classifier(&mut self, x: Act, classes: usize) {
        let pooled = self.g.node("GlobalAveragePool", "pool", &[&x.name], vec![]);
        let flat = self.g.node("Flatten", "flatten", &[&pooled], vec![]);
        let c = x.channels;
        // Rows centred on zero: the pooled features share a positive mean (they come out of a
        // ReLU), and uncentred rows would turn it into a per-class offset larger than anything
        // the input changes, making every input pick the same class.
        let mut w = self.init.xavier(classes * c, c, classes);
        for row in w.chunks_mut(c) {
            let mean = row.iter().sum::<f32>() / c as f32;
            row.iter_mut().for_each(|v| *v -= mean);
        }
        let w = self.g.weight("classifier.weight", &[classes, c], &w);
        let b = self
            .g
            .weight("classifier.bias", &[classes], &self.init.bias(classes));
        self.g.node(
            "Gemm",
            "logits",
            &[&flat, &w, &b],
            vec![A::int("transB", 1)],
        );
        self.g
            .output("logits", DataType::Float, &["batch", &classes.to_string()]);
    }
}

/// `v` scaled by the width multiplier and rounded to a multiple of 8, never down by more than
/// 10% (the `_make_divisible` rule of the MobileNet reference code).
fn make_divisible(v: f64) -> usize {
    let rounded = (((v + 4.0) / 8.0).floor() as usize * 8).max(8);
    if (rounded as f64) < 0.9 * v {
        rounded + 8
    } else {
        rounded
    }
}

const MOBILENET_DESCRIPTION: &str = "MobileNetV2 at width 0.5 for 224x224 RGB, 1000 classes: \
     inverted residual blocks (1x1 expand, 3x3 depthwise, 1x1 linear project) with ReLU6 and \
     unfolded BatchNormalization. The last 1x1 conv is also scaled by the width (640 channels, \
     not 1280), as TF-slim's default does, to keep the file small.";

fn mobilenet_v2() -> Result<(SuiteModel, ModelProto)> {
    const WIDTH: f64 = 0.5;
    // (expansion t, channels c, repeats n, first stride s) of the MobileNetV2 paper.
    const BLOCKS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut net = ConvNet {
        g: GraphBuilder::new("mobilenet_v2_0.5"),
        init: Init::new(2),
    };
    net.g
        .input("input", DataType::Float, &["batch", "3", "224", "224"]);
    net.g.weight("relu6_min", &[], &[0.0]);
    net.g.weight("relu6_max", &[], &[6.0]);
    let input = Act {
        name: "input".into(),
        channels: 3,
        var: 1.0,
    };
    let stem = make_divisible(32.0 * WIDTH);
    let x = net.conv_bn(&input, ConvSpec::new("stem", stem, 3, 2));
    let mut x = net.relu6(x);
    let mut index = 0;
    for (t, c, n, s) in BLOCKS {
        let out = make_divisible(c as f64 * WIDTH);
        for repeat in 0..n {
            let stride = if repeat == 0 { s } else { 1 };
            let block = format!("block{index}");
            let hidden = x.channels * t;
            let expanded = if t == 1 {
                x.clone()
            } else {
                let e = net.conv_bn(&x, ConvSpec::new(&format!("{block}.expand"), hidden, 1, 1));
                net.relu6(e)
            };
            let d = net.conv_bn(
                &expanded,
                ConvSpec::new(&format!("{block}.depthwise"), hidden, 3, stride).depthwise(),
            );
            let d = net.relu6(d);
            let projected = net.conv_bn(
                &d,
                ConvSpec::new(&format!("{block}.project"), out, 1, 1).linear(),
            );
            x = if stride == 1 && x.channels == out {
                net.add(&format!("{block}.add"), &x, &projected)
            } else {
                projected
            };
            index += 1;
        }
    }
    let head = make_divisible(1280.0 * WIDTH);
    let h = net.conv_bn(&x, ConvSpec::new("head", head, 1, 1));
    let h = net.relu6(h);
    net.classifier(h, 1000);
    let model = net.g.into_model()?;
    let inputs = vec![batch_input("input", DType::F32, &[3, 224, 224], None)];
    Ok((
        entry("mobilenet-v2-0.5", MOBILENET_DESCRIPTION, inputs),
        model,
    ))
}

const RESNET_DESCRIPTION: &str = "A small ResNet for 112x112 RGB, 100 classes: 7x7 stride-2 stem \
     conv + 3x3 max pool, four stages of one basic block (16, 32, 64, 128 channels; 3x3 convs, \
     1x1 stride-2 projection shortcuts), unfolded BatchNormalization.";

fn resnet_mini() -> Result<(SuiteModel, ModelProto)> {
    let mut net = ConvNet {
        g: GraphBuilder::new("resnet_mini"),
        init: Init::new(3),
    };
    net.g
        .input("input", DataType::Float, &["batch", "3", "112", "112"]);
    let input = Act {
        name: "input".into(),
        channels: 3,
        var: 1.0,
    };
    let x = net.conv_bn(&input, ConvSpec::new("stem", 16, 7, 2));
    let x = net.relu(x);
    let pool = net.g.node(
        "MaxPool",
        "stem_pool",
        &[&x.name],
        vec![
            A::ints("kernel_shape", &[3, 3]),
            A::ints("strides", &[2, 2]),
            A::ints("pads", &[1, 1, 1, 1]),
        ],
    );
    let mut x = Act { name: pool, ..x };
    for (stage, (width, stride)) in [(16, 1), (32, 2), (64, 2), (128, 2)]
        .into_iter()
        .enumerate()
    {
        let block = format!("stage{}", stage + 1);
        let a = net.conv_bn(
            &x,
            ConvSpec::new(&format!("{block}.conv1"), width, 3, stride),
        );
        let a = net.relu(a);
        // No ReLU right after the second conv, but after the sum: He-normal still fits.
        let b = net.conv_bn(&a, ConvSpec::new(&format!("{block}.conv2"), width, 3, 1));
        let shortcut = if stride != 1 || x.channels != width {
            net.conv_bn(
                &x,
                ConvSpec::new(&format!("{block}.shortcut"), width, 1, stride),
            )
        } else {
            x.clone()
        };
        let sum = net.add(&format!("{block}.add"), &b, &shortcut);
        x = net.relu(sum);
    }
    net.classifier(x, 100);
    let model = net.g.into_model()?;
    let inputs = vec![batch_input("input", DType::F32, &[3, 112, 112], None)];
    Ok((entry("resnet-mini", RESNET_DESCRIPTION, inputs), model))
}

const BERT_VOCAB: usize = 2048;
const BERT_SEQ: usize = 128;
const BERT_HIDDEN: usize = 128;
const BERT_HEADS: usize = 2;
const BERT_FFN: usize = 512;
const BERT_LAYERS: usize = 2;

const BERT_DESCRIPTION: &str = "A BERT-tiny-shaped encoder: 2 layers, hidden 128, 2 heads of 64, \
     FFN 512 with erf GELU, sequence 128, post-LayerNorm. The vocabulary is 2048 tokens rather \
     than BERT's 30522, to keep the file small; input ids are drawn from [0, 2048).";

/// Builds the encoder: the weights of linear layers are `[in, out]` and applied by MatMul + Add,
/// as BERT exports have them.
/// `x @ weight + bias`: the weight given (`[fan_in, fan_out]`), the bias drawn after it, both
/// named after the layer.
fn dense(
    g: &mut GraphBuilder,
    init: &mut Init,
    name: &str,
    x: &str,
    weight: &[f32],
    [fan_in, fan_out]: [usize; 2],
) -> String {
    let w = g.weight(&format!("{name}.weight"), &[fan_in, fan_out], weight);
    let b = g.weight(&format!("{name}.bias"), &[fan_out], &init.bias(fan_out));
    let product = g.node("MatMul", &format!("{name}.matmul"), &[x, &w], vec![]);
    g.node("Add", name, &[&product, &b], vec![])
}

/// LayerNormalization over the last axis of width `hidden`, its scale near 1 and bias near 0.
fn layer_norm(
    g: &mut GraphBuilder,
    init: &mut Init,
    name: &str,
    x: &str,
    hidden: usize,
    epsilon: f32,
) -> String {
    let scale = g.weight(
        &format!("{name}.scale"),
        &[hidden],
        &init.uniform(hidden, 0.9, 1.1),
    );
    let bias = g.weight(
        &format!("{name}.bias"),
        &[hidden],
        &init.normal(hidden, 0.0, 0.02),
    );
    let attrs = vec![A::int("axis", -1), A::float("epsilon", epsilon)];
    g.node("LayerNormalization", name, &[x, &scale, &bias], attrs)
}

struct Encoder {
    g: GraphBuilder,
    init: Init,
    /// Width of the feed-forward layers (`BERT_FFN`; the twin's is wider).
    ffn: usize,
}

impl Encoder {
    fn linear(&mut self, name: &str, x: &str, fan_in: usize, fan_out: usize) -> String {
        let w = self.init.xavier(fan_in * fan_out, fan_in, fan_out);
        dense(&mut self.g, &mut self.init, name, x, &w, [fan_in, fan_out])
    }

    fn layer_norm(&mut self, name: &str, x: &str) -> String {
        layer_norm(&mut self.g, &mut self.init, name, x, BERT_HIDDEN, 1e-12)
    }

    /// Reshape `[batch, seq, hidden]` to `[batch, seq, heads, head_dim]` (0 copies the batch
    /// and sequence dims, so batch stays dynamic), then transpose by `perm`.
    fn split_heads(&mut self, x: &str, perm: &[i64]) -> String {
        let split = self.g.node(
            "Reshape",
            &format!("{x}.split_heads"),
            &[x, "heads_shape"],
            vec![],
        );
        self.g.node(
            "Transpose",
            &format!("{x}.heads"),
            &[&split],
            vec![A::ints("perm", perm)],
        )
    }

    fn layer(&mut self, p: &str, x: &str, output: &str) -> String {
        let (h, f) = (BERT_HIDDEN, self.ffn);
        let q = self.linear(&format!("{p}.query"), x, h, h);
        let k = self.linear(&format!("{p}.key"), x, h, h);
        let v = self.linear(&format!("{p}.value"), x, h, h);
        let q = self.split_heads(&q, &[0, 2, 1, 3]);
        // Keys go straight to [batch, heads, head_dim, seq], as exported BERTs do.
        let k = self.split_heads(&k, &[0, 2, 3, 1]);
        let v = self.split_heads(&v, &[0, 2, 1, 3]);
        let g = &mut self.g;
        let scores = g.node("MatMul", &format!("{p}.scores"), &[&q, &k], vec![]);
        let scaled = g.node(
            "Div",
            &format!("{p}.scaled_scores"),
            &[&scores, "sqrt_head_dim"],
            vec![],
        );
        let probs = g.node(
            "Softmax",
            &format!("{p}.attention"),
            &[&scaled],
            vec![A::int("axis", -1)],
        );
        let context = g.node("MatMul", &format!("{p}.context"), &[&probs, &v], vec![]);
        let perm = vec![A::ints("perm", &[0, 2, 1, 3])];
        let context = g.node("Transpose", &format!("{p}.context_t"), &[&context], perm);
        let context = g.node(
            "Reshape",
            &format!("{p}.context_merged"),
            &[&context, "merged_shape"],
            vec![],
        );
        let attended = self.linear(&format!("{p}.attention_output"), &context, h, h);
        let residual = self.g.node(
            "Add",
            &format!("{p}.attention_residual"),
            &[&attended, x],
            vec![],
        );
        let attention_out = self.layer_norm(&format!("{p}.attention_norm"), &residual);
        let up = self.linear(&format!("{p}.intermediate"), &attention_out, h, f);
        // GELU, erf form: x · 0.5 · (1 + erf(x / √2)).
        let g = &mut self.g;
        let scaled = g.node("Div", &format!("{p}.gelu.scaled"), &[&up, "sqrt2"], vec![]);
        let erf = g.node("Erf", &format!("{p}.gelu.erf"), &[&scaled], vec![]);
        let shifted = g.node("Add", &format!("{p}.gelu.add_one"), &[&erf, "one"], vec![]);
        let gated = g.node("Mul", &format!("{p}.gelu.mul_x"), &[&up, &shifted], vec![]);
        let gelu = g.node("Mul", &format!("{p}.gelu"), &[&gated, "half"], vec![]);
        let down = self.linear(&format!("{p}.output"), &gelu, f, h);
        let residual = self.g.node(
            "Add",
            &format!("{p}.output_residual"),
            &[&down, &attention_out],
            vec![],
        );
        self.layer_norm(output, &residual)
    }
}

fn bert_tiny() -> Result<(SuiteModel, ModelProto)> {
    bert_tiny_with(BERT_FFN)
}

/// bert-tiny with feed-forward layers `ffn` wide.
fn bert_tiny_with(ffn: usize) -> Result<(SuiteModel, ModelProto)> {
    let (v, s, h) = (BERT_VOCAB, BERT_SEQ, BERT_HIDDEN);
    let head_dim = h / BERT_HEADS;
    let mut e = Encoder {
        g: GraphBuilder::new("bert_tiny"),
        init: Init::new(4),
        ffn,
    };
    e.g.input("input_ids", DataType::Int64, &["batch", &s.to_string()]);
    // BERT's own initialisation for embeddings, N(0, 0.02²); LayerNorm rescales the sum.
    let words = e.init.normal(v * h, 0.0, 0.02);
    let words = e.g.weight("embeddings.word", &[v, h], &words);
    let positions = e.init.normal(s * h, 0.0, 0.02);
    let positions = e.g.weight("embeddings.position", &[s, h], &positions);
    e.g.ints("heads_shape", &[0, 0, BERT_HEADS as i64, head_dim as i64]);
    e.g.ints("merged_shape", &[0, 0, h as i64]);
    e.g.weight("sqrt_head_dim", &[], &[(head_dim as f32).sqrt()]);
    e.g.weight("sqrt2", &[], &[std::f32::consts::SQRT_2]);
    e.g.weight("one", &[], &[1.0]);
    e.g.weight("half", &[], &[0.5]);
    let lookup = vec![A::int("axis", 0)];
    let gathered = e.g.node(
        "Gather",
        "embeddings.lookup",
        &[&words, "input_ids"],
        lookup,
    );
    let summed = e.g.node(
        "Add",
        "embeddings.add_positions",
        &[&gathered, &positions],
        vec![],
    );
    let mut x = e.layer_norm("embeddings.norm", &summed);
    for layer in 0..BERT_LAYERS {
        let p = format!("layer{layer}");
        let output = if layer + 1 == BERT_LAYERS {
            "last_hidden_state".to_string()
        } else {
            format!("{p}.output_norm")
        };
        x = e.layer(&p, &x, &output);
    }
    e.g.output(
        &x,
        DataType::Float,
        &["batch", &s.to_string(), &h.to_string()],
    );
    let model = e.g.into_model()?;
    let inputs = vec![batch_input(
        "input_ids",
        DType::I64,
        &[s],
        Some([0.0, v as f64]),
    )];
    Ok((entry("bert-tiny", BERT_DESCRIPTION, inputs), model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ModelStats;

    fn macs(entry: &SuiteModel, model: &ModelProto) -> u64 {
        let stats = ModelStats::of(model, &entry.bound_inputs().unwrap(), None);
        stats.macs.unwrap()
    }

    #[test]
    fn the_twin_bert_has_about_five_percent_more_macs() {
        let (entry, base) = bert_tiny().unwrap();
        let (twin_entry, twin) = bert_tiny_with(BERT_TWIN_FFN).unwrap();
        let (b, t) = (macs(&entry, &base), macs(&twin_entry, &twin));
        let more = t as f64 / b as f64 - 1.0;
        assert!((0.04..=0.06).contains(&more), "{b} -> {t}: {more}");
    }

    #[test]
    fn the_twin_suite_differs_from_the_suite_in_bert_tiny_alone() {
        let (suite, twin) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(suite.path()).unwrap();
        let written = generate_twin(twin.path()).unwrap();
        assert_eq!(written.len(), 5);
        let loaded = Suite::load(twin.path()).unwrap();
        let names: Vec<&str> = loaded.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            ["mlp", "mobilenet-v2-0.5", "resnet-mini", "bert-tiny"]
        );
        for m in &loaded.models {
            let read = |dir: &Path| std::fs::read(dir.join(&m.file)).unwrap();
            assert_eq!(
                read(suite.path()) == read(twin.path()),
                m.name != "bert-tiny",
                "{}",
                m.name
            );
        }
        assert!(
            loaded
                .model("bert-tiny")
                .unwrap()
                .description
                .contains("Twin")
        );
    }
}
