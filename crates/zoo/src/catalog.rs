//! The catalog (`zoo.toml`, compiled into the binary): for each model where it comes from, the hash
//! that proves it is the one catalogued, its licence, task, inputs and output decoding.

use std::collections::{BTreeMap, BTreeSet};

use chipbench_core::InputSpec;
pub use chipbench_core::task::Decoding;
use serde::{Deserialize, Serialize};

use crate::ZooError;

const BUILTIN: &str = include_str!("../zoo.toml");

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "model")]
    pub models: Vec<Entry>,
    /// The data sets the models' real samples are built from.
    #[serde(rename = "data", default)]
    pub data: Vec<DataSource>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub task: String,
    pub description: String,
    /// The SPDX identifier of the licence.
    pub licence: String,
    /// Where the weights' terms differ from the package's, or any restriction.
    #[serde(default)]
    pub licence_note: Option<String>,
    /// Where the model's real sample inputs come from, in words (or why it has none).
    pub samples: String,
    pub source: Source,
    pub inputs: Vec<InputSpec>,
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
    pub decoding: Decoding,
    /// How its real samples are built; `None`: it has none and runs on seeded random data.
    #[serde(default)]
    pub data: Option<DataSpec>,
}

/// How a model's real samples are built from a data set.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// The `[[data]]` set's name.
    pub source: String,
    /// The model input the samples feed.
    pub input: String,
    /// How many of the samples, the first ones, are the calibration split; the rest are held out.
    pub calibration: usize,
    pub preprocess: Preprocess,
    /// The model's other inputs, each filled with one value (silero-vad's `sr`, its zero state).
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
}

/// From a data set's files to one input tensor per sample.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Preprocess {
    /// One sample per image file (PNG): drop alpha, grey to three channels, bilinear resize to the
    /// input's height and width, `(x / 255 - mean[c]) / std[c]` for output channel `c`.
    Image {
        layout: Layout,
        channels: Channels,
        mean: [f32; 3],
        std: [f32; 3],
    },
    /// `chunks` consecutive chunks from the start of the set's one WAV recording (16-bit mono, at
    /// the rate it was recorded), as long as the input's last dimension, each value times `scale`.
    Audio { scale: f32, chunks: usize },
    /// One sample per file, as Magika reads a file: the first and the last halves of the input's
    /// length, each out of at most 4096 bytes stripped of whitespace, padded with 256.
    Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    Nchw,
    Nhwc,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channels {
    Rgb,
    Bgr,
}

/// Files that a package ships, pinned by archive and by the hash of each file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSource {
    pub name: String,
    pub description: String,
    pub licence: String,
    #[serde(default)]
    pub licence_note: Option<String>,
    pub registry: Registry,
    pub package: String,
    pub version: String,
    /// The archive's file name as the registry publishes it.
    pub file: String,
    /// The files used, in sample order.
    pub files: Vec<DataFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataFile {
    /// The path inside the archive.
    pub path: String,
    pub sha256: String,
}

/// An archive on a registry: what [`crate::Registries::locate`] looks up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package<'a> {
    pub registry: Registry,
    pub name: &'a str,
    pub version: &'a str,
    pub file: &'a str,
}

impl Source {
    pub fn package(&self) -> Package<'_> {
        Package {
            registry: self.registry,
            name: &self.package,
            version: &self.version,
            file: &self.file,
        }
    }
}

impl DataSource {
    pub fn package(&self) -> Package<'_> {
        Package {
            registry: self.registry,
            name: &self.package,
            version: &self.version,
            file: &self.file,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Registry {
    Pypi,
    Npm,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub registry: Registry,
    pub package: String,
    pub version: String,
    /// The archive's file name as the registry publishes it.
    pub file: String,
    /// The model's path inside the archive.
    pub path: String,
    /// SHA-256 of the model file (lowercase hex).
    pub sha256: String,
    pub bytes: u64,
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn builtin() -> Catalog {
        // A test parses the embedded file, so this cannot fail in a built binary.
        Catalog::parse(BUILTIN).expect("the built-in zoo.toml is valid (tested)")
    }

    pub fn parse(text: &str) -> Result<Catalog, ZooError> {
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| ZooError::Catalog(e.to_string()))?;
        catalog.check()?;
        Ok(catalog)
    }

    pub fn get(&self, name: &str) -> Result<&Entry, ZooError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ZooError::UnknownModel {
                name: name.to_string(),
                known: self.names().join(", "),
            })
    }

    /// The data set a model's samples are built from, with how (None for a model without).
    pub fn data_of<'a>(&'a self, entry: &'a Entry) -> Option<(&'a DataSpec, &'a DataSource)> {
        let spec = entry.data.as_ref()?;
        let source = self.data.iter().find(|d| d.name == spec.source)?;
        Some((spec, source))
    }

    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    fn check(&self) -> Result<(), ZooError> {
        for d in &self.data {
            let fail = |why: String| Err(ZooError::Catalog(format!("data '{}': {why}", d.name)));
            if crate::archive::Kind::of(&d.file).is_none() {
                return fail(format!(
                    "archive '{}' is not a wheel/zip or .tar.gz",
                    d.file
                ));
            }
            if d.files.is_empty() {
                return fail("no files".into());
            }
            if let Some(f) = d.files.iter().find(|f| !is_sha256(&f.sha256)) {
                return fail(format!("{}: sha256 is not 64 lowercase hex digits", f.path));
            }
        }
        let mut seen = BTreeSet::new();
        for m in &self.models {
            let fail = |why: String| Err(ZooError::Catalog(format!("model '{}': {why}", m.name)));
            if !seen.insert(&m.name) {
                return fail("listed twice".into());
            }
            let sha = &m.source.sha256;
            if !is_sha256(sha) {
                return fail(format!("sha256 '{sha}' is not 64 lowercase hex digits"));
            }
            if crate::archive::Kind::of(&m.source.file).is_none() {
                return fail(format!(
                    "archive '{}' is neither a wheel/zip nor a .tar.gz/.tgz",
                    m.source.file
                ));
            }
            if m.inputs.is_empty() {
                return fail("no inputs".into());
            }
            if let Some(spec) = &m.data {
                let Some(source) = self.data.iter().find(|d| d.name == spec.source) else {
                    return fail(format!(
                        "data source '{}' is not a [[data]] set",
                        spec.source
                    ));
                };
                let named = |n: &String| m.inputs.iter().any(|i| &i.name == n);
                if let Some(n) = std::iter::once(&spec.input)
                    .chain(spec.values.keys())
                    .find(|n| !named(n))
                {
                    return fail(format!("data: the model has no input '{n}'"));
                }
                let wanted = std::iter::once(&spec.input)
                    .chain(spec.values.keys())
                    .count();
                if wanted != m.inputs.len() {
                    return fail("data: every input needs the samples or a value".into());
                }
                let count = match spec.preprocess {
                    Preprocess::Audio { chunks, .. } => chunks,
                    _ => source.files.len(),
                };
                if spec.calibration == 0 || spec.calibration >= count {
                    return fail("data: calibration must leave samples on both sides".into());
                }
            }
            if let Decoding::Picodet {
                scores,
                boxes,
                strides,
                ..
            } = &m.decoding
                && (scores.len() != strides.len() || boxes.len() != strides.len())
            {
                return fail("picodet needs one score and one box output per stride".into());
            }
        }
        Ok(())
    }
}

fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_catalog_is_valid_and_covers_the_tasks() {
        let catalog = Catalog::parse(BUILTIN).unwrap();
        assert!(catalog.models.len() >= 8, "{}", catalog.models.len());
        let tasks: BTreeSet<&str> = catalog.models.iter().map(|m| m.task.as_str()).collect();
        for task in [
            "image classification",
            "object detection",
            "OCR text recognition",
            "voice activity detection",
        ] {
            assert!(tasks.contains(task), "no {task} model");
        }
        // Both registries, so both archive formats, are exercised by the real catalog.
        let registries: BTreeSet<Registry> =
            catalog.models.iter().map(|m| m.source.registry).collect();
        assert_eq!(registries.len(), 2);
        // Real samples: at least 8 to calibrate and 8 held out; a model without says why.
        for m in &catalog.models {
            match catalog.data_of(m) {
                Some((spec, source)) => {
                    let total = match spec.preprocess {
                        Preprocess::Audio { chunks, .. } => chunks,
                        _ => source.files.len(),
                    };
                    assert!(
                        spec.calibration >= 8 && total - spec.calibration >= 8,
                        "{}",
                        m.name
                    );
                }
                None => assert!(m.samples.starts_with("none"), "{}", m.name),
            }
        }
        assert!(catalog.models.iter().filter(|m| m.data.is_some()).count() >= 10);
        for d in &catalog.data {
            let permissive = ["MIT", "Apache-2.0", "BSD-3-Clause"].contains(&d.licence.as_str());
            assert!(permissive, "{}", d.name);
        }
        // Anything not permissive says so.
        for m in &catalog.models {
            let permissive = ["MIT", "Apache-2.0", "BSD-3-Clause"].contains(&m.licence.as_str());
            assert!(permissive || m.licence_note.is_some(), "{}", m.name);
        }
    }

    #[test]
    fn a_bad_catalog_is_refused_with_the_reason() {
        let good = BUILTIN;
        let twice = format!("{good}\n{}", &good[good.find("[[model]]").unwrap()..]);
        let e = Catalog::parse(&twice).unwrap_err().to_string();
        assert!(e.contains("listed twice"), "{e}");
        let bad_hash = good.replacen(
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            "1A15",
            1,
        );
        let e = Catalog::parse(&bad_hash).unwrap_err().to_string();
        assert!(
            e.contains("silero-vad") && e.contains("64 lowercase hex"),
            "{e}"
        );
        let e = Catalog::builtin().get("no-such").unwrap_err().to_string();
        assert!(e.contains("no-such") && e.contains("silero-vad"), "{e}");
    }
}
