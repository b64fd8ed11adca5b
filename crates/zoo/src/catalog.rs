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
    /// Where the model's real sample inputs are to come from (not used yet: the commands still
    /// feed seeded data).
    pub samples: String,
    pub source: Source,
    pub inputs: Vec<InputSpec>,
    #[serde(default)]
    pub dims: BTreeMap<String, usize>,
    pub decoding: Decoding,
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

    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    fn check(&self) -> Result<(), ZooError> {
        let mut seen = BTreeSet::new();
        for m in &self.models {
            let fail = |why: String| Err(ZooError::Catalog(format!("model '{}': {why}", m.name)));
            if !seen.insert(&m.name) {
                return fail("listed twice".into());
            }
            let sha = &m.source.sha256;
            if sha.len() != 64
                || !sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
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
