//! The chip catalog (`data/chips.toml`): published peak rates, memory, power and class of the
//! chips users compare, each entry with its sources. See the file's header for the rules.

use std::collections::BTreeMap;

use chipbench_core::result::Host;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The catalog as shipped.
pub const CATALOG_TOML: &str = include_str!("../data/chips.toml");

/// The entry an x86-64 CPU that matches no other entry is treated as.
pub const GENERIC_X86_CORE: &str = "generic-x86-server-core";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    GeneralPurpose,
    Specialised,
    Edge,
}

impl Class {
    pub fn label(self) -> &'static str {
        match self {
            Class::GeneralPurpose => "general-purpose",
            Class::Specialised => "specialised",
            Class::Edge => "edge",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub title: String,
    pub url: String,
}

/// One chip. Figures absent from the vendor's documents are `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chip {
    pub id: String,
    pub name: String,
    pub vendor: String,
    pub class: Class,
    /// `gpu`, `tpu`, `npu`, `vpu`, `soc`, `cpu-core`.
    pub kind: String,
    pub peak_fp32_tflops: Option<f64>,
    /// FP16 or BF16 (tensor) rate.
    pub peak_fp16_tflops: Option<f64>,
    pub peak_int8_tops: Option<f64>,
    /// A rate published without its precision.
    pub peak_unstated_tops: Option<f64>,
    pub memory_bandwidth_gbs: Option<f64>,
    pub memory_gb: Option<f64>,
    /// On-chip memory one inference can keep its working set in (last-level cache or SRAM), as
    /// published: bytes beyond it must come from `memory_bandwidth_gbs` on every inference.
    pub on_chip_mb: Option<f64>,
    pub tdp_w: Option<f64>,
    pub typical_power_w: Option<f64>,
    /// Active power of one busy core (CPU core entries), for the energy estimate.
    pub per_core_active_w: Option<f64>,
    pub cores: Option<u32>,
    pub clock_ghz: Option<f64>,
    #[serde(default, rename = "match")]
    pub matches: Vec<String>,
    pub source: Vec<Source>,
    /// Figures computed from published ones, with the arithmetic.
    #[serde(default)]
    pub derived: BTreeMap<String, String>,
    pub notes: Option<String>,
}

/// The precisions a roofline distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Fp16,
    Int8,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::Fp32, Precision::Fp16, Precision::Int8];

    pub fn label(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Int8 => "int8",
        }
    }

    /// The precision named by its label (`fp32`, `fp16`, `int8`).
    pub fn from_label(label: &str) -> Option<Precision> {
        Precision::ALL.into_iter().find(|p| p.label() == label)
    }

    /// Bytes of one weight element.
    pub fn element_bytes(self) -> u64 {
        match self {
            Precision::Fp32 => 4,
            Precision::Fp16 => 2,
            Precision::Int8 => 1,
        }
    }
}

/// A chip's peak rate for a precision, in operations per second, and whether the vendor stated
/// the precision.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peak {
    pub ops_per_s: f64,
    pub precision_stated: bool,
}

impl Chip {
    /// The published peak at `precision`; a rate of unstated precision stands in for fp16 and
    /// int8 (labelled so), never for fp32.
    pub fn peak(&self, precision: Precision) -> Option<Peak> {
        let stated = match precision {
            Precision::Fp32 => self.peak_fp32_tflops,
            Precision::Fp16 => self.peak_fp16_tflops,
            Precision::Int8 => self.peak_int8_tops,
        };
        match (stated, precision) {
            (Some(t), _) => Some(Peak {
                ops_per_s: t * 1e12,
                precision_stated: true,
            }),
            (None, Precision::Fp32) => None,
            (None, _) => self.peak_unstated_tops.map(|t| Peak {
                ops_per_s: t * 1e12,
                precision_stated: false,
            }),
        }
    }

    /// The power a projection multiplies time by: TDP, else typical power; and which it is.
    pub fn rated_power(&self) -> Option<(f64, &'static str)> {
        self.tdp_w
            .map(|w| (w, "TDP"))
            .or_else(|| self.typical_power_w.map(|w| (w, "typical power")))
    }

    /// Whether a CPU brand or GPU name denotes this chip.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        self.matches
            .iter()
            .any(|m| name.contains(&m.to_ascii_lowercase()))
    }

    /// `title <url>` of every source.
    pub fn source_text(&self) -> String {
        self.source
            .iter()
            .map(|s| format!("{} <{}>", s.title, s.url))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    chip: Vec<Chip>,
}

/// The shipped catalog, validated.
pub fn catalog() -> Result<Vec<Chip>> {
    parse(CATALOG_TOML, "chips.toml")
}

/// Parses and validates a catalog text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<Chip>> {
    let file: CatalogFile =
        toml::from_str(text).map_err(|e| Error::Catalog(format!("{origin}: {}", e.message())))?;
    let mut seen = std::collections::BTreeSet::new();
    for chip in &file.chip {
        let fail = |why: String| Error::Catalog(format!("{origin}: chip '{}': {why}", chip.id));
        if !seen.insert(chip.id.clone()) {
            return Err(fail("the id is used twice".into()));
        }
        if chip.source.is_empty() {
            return Err(fail("no source: every figure needs one".into()));
        }
        for s in &chip.source {
            if s.title.trim().is_empty() || !s.url.starts_with("https://") {
                return Err(fail(format!(
                    "source '{}' needs a title and an https:// URL",
                    s.title
                )));
            }
        }
        for (field, value) in figures(chip) {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(fail(format!("{field} = {v} is not a positive number")));
            }
        }
        for field in chip.derived.keys() {
            if !figures(chip)
                .iter()
                .any(|(name, value)| name == field && value.is_some())
            {
                return Err(fail(format!(
                    "'derived' explains {field}, which the entry does not have"
                )));
            }
        }
    }
    Ok(file.chip)
}

fn figures(chip: &Chip) -> [(&'static str, Option<f64>); 11] {
    [
        ("peak_fp32_tflops", chip.peak_fp32_tflops),
        ("peak_fp16_tflops", chip.peak_fp16_tflops),
        ("peak_int8_tops", chip.peak_int8_tops),
        ("peak_unstated_tops", chip.peak_unstated_tops),
        ("memory_bandwidth_gbs", chip.memory_bandwidth_gbs),
        ("memory_gb", chip.memory_gb),
        ("on_chip_mb", chip.on_chip_mb),
        ("tdp_w", chip.tdp_w),
        ("typical_power_w", chip.typical_power_w),
        ("per_core_active_w", chip.per_core_active_w),
        ("clock_ghz", chip.clock_ghz),
    ]
}

/// The catalog entry for this host's CPU cores: one whose `match` names its brand, else, on
/// x86-64, the generic server core; `None` when neither applies.
pub fn cpu_core_for<'a>(chips: &'a [Chip], host: &Host) -> Option<&'a Chip> {
    chips
        .iter()
        .filter(|c| c.per_core_active_w.is_some())
        .find(|c| c.matches(&host.cpu_brand))
        .or_else(|| {
            (host.arch == "x86_64")
                .then(|| chips.iter().find(|c| c.id == GENERIC_X86_CORE))
                .flatten()
        })
}

/// The catalog entry a GPU name denotes.
pub fn gpu_for<'a>(chips: &'a [Chip], name: &str) -> Option<&'a Chip> {
    chips
        .iter()
        .filter(|c| c.kind == "gpu" || c.kind == "soc")
        .find(|c| c.matches(name))
}
