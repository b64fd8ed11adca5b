//! Derived variants kept on disk, keyed by what decides their content: the source model's
//! SHA-256, the recipe, the bound input shapes, the calibration settings, float-keeping policy
//! and sensitivity settings (for the int8 recipes) and this crate's version. A second run with the same key reuses the file.
//!
//! Layout: `DIR/<model>.<recipe>.<key prefix>.onnx` and, beside it, `.json` with the
//! [`VariantReport`]. The default folder is [`DEFAULT_DIR`]; deleting it only costs the time
//! to derive the variants again.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::variants::{
    DeriveOptions, Derived, ModelRunner, Recipe, Source, Step, VariantReport, derive,
};

/// Where `chipbench bench` and `chipbench optimize` keep derived variants unless told otherwise.
pub const DEFAULT_DIR: &str = "bench-results/.cache/variants";

/// A folder of derived variants.
#[derive(Clone, Debug)]
pub struct VariantCache {
    dir: PathBuf,
}

/// A variant file and its report, and whether it came from the cache.
#[derive(Clone, Debug)]
pub struct CachedVariant {
    pub path: PathBuf,
    pub report: VariantReport,
    pub reused: bool,
}

impl VariantCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        VariantCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a variant: a SHA-256 over everything that decides its bytes.
    pub fn key(
        source_sha256: &str,
        recipe: &Recipe,
        options: &DeriveOptions,
        source: &Source,
    ) -> String {
        let mut text = format!(
            "chipbench-optimize {}\nsource {source_sha256}\nrecipe {}\n",
            env!("CARGO_PKG_VERSION"),
            recipe.name()
        );
        for b in source.bound {
            text += &format!("input {} {} {:?}\n", b.name, b.dtype, b.shape);
        }
        let int8 = recipe
            .precision()
            .is_some_and(|s| matches!(s, Step::Int8Dynamic | Step::Int8Static));
        if int8 {
            let c = &options.calibration;
            let file = c
                .file
                .as_deref()
                .map(|f| crate::model::sha256_file(f).unwrap_or_else(|e| e.to_string()))
                .unwrap_or_default();
            text += &format!(
                "calibration {} samples {} seed {} file {file}\nkeep-float {}\nsensitivity {:?}\n",
                c.method, c.samples, c.seed, options.keep_float, options.sensitivity
            );
            for s in source.specs {
                text += &format!("spec {} {:?}\n", s.name, s.range);
            }
        }
        Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn paths(&self, model: &str, recipe: &Recipe, key: &str) -> (PathBuf, PathBuf) {
        let slug: String = recipe
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let stem = format!("{model}.{slug}.{}", &key[..16]);
        (
            self.dir.join(format!("{stem}.onnx")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// The cached variant, or a new one derived and stored.
    pub fn get_or_derive(
        &self,
        model_name: &str,
        source_sha256: &str,
        source: &Source,
        recipe: &Recipe,
        options: &DeriveOptions,
        runner: &mut dyn ModelRunner,
    ) -> Result<CachedVariant> {
        let key = Self::key(source_sha256, recipe, options, source);
        let (onnx, json) = self.paths(model_name, recipe, &key);
        if onnx.is_file()
            && let Ok(text) = std::fs::read_to_string(&json)
            && let Ok(report) = serde_json::from_str::<VariantReport>(&text)
        {
            return Ok(CachedVariant {
                path: onnx,
                report,
                reused: true,
            });
        }
        let Derived { model, report } = derive(source, recipe, options, runner)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let tmp = onnx.with_extension(format!("onnx.tmp{}", std::process::id()));
        crate::model::save(&model, &tmp)?;
        let text = serde_json::to_string_pretty(&report).map_err(|e| Error::Cache {
            path: json.clone(),
            reason: e.to_string(),
        })?;
        std::fs::write(&json, text).map_err(|e| Error::io(&json, e))?;
        // The report first, the model last: a model file is only ever seen complete.
        std::fs::rename(&tmp, &onnx).map_err(|e| Error::io(&onnx, e))?;
        Ok(CachedVariant {
            path: onnx,
            report,
            reused: false,
        })
    }
}
