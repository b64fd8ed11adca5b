//! Device profiles (`data/profiles.toml`): the edge devices users deploy to — cores, clock, RAM,
//! ISA features, typical power and the backends that make sense there — each figure with its
//! source, each profile pointing at a chip of the catalog. See the file's header for the rules.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::catalog::Chip;
use crate::{Error, Result};

/// The profiles as shipped.
pub const PROFILES_TOML: &str = include_str!("../data/profiles.toml");

/// Where a backend of a profile computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    Cpu,
    Gpu,
    Npu,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::Cpu => "CPU",
            Unit::Gpu => "GPU",
            Unit::Npu => "NPU",
        }
    }
}

/// A backend (and device) that makes sense on the device, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileBackend {
    pub backend: String,
    pub device: String,
    pub runs_on: Unit,
    pub why: String,
}

impl ProfileBackend {
    /// `backend:device`, as `--backend` takes it.
    pub fn label(&self) -> String {
        format!("{}:{}", self.backend, self.device)
    }
}

/// A source and the figures it gives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSource {
    pub title: String,
    pub url: String,
    pub gives: Vec<String>,
}

/// One edge device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub id: String,
    pub name: String,
    /// The catalog chip (`chips.toml` id) whose published figures give the projection; `None`
    /// when the catalog has no entry for it (`notes` says so).
    pub chip: Option<String>,
    /// The Rust target a chipbench binary for the device is built for.
    pub target: String,
    /// The CPU, in words (`4x Arm Cortex-A72 (Broadcom BCM2711)`).
    pub cpu: String,
    pub cores: u32,
    pub clock_ghz: f64,
    pub memory_gib: f64,
    /// ISA features, spelled as Linux's /proc/cpuinfo spells them.
    pub isa: Vec<String>,
    pub active_power_w: Option<f64>,
    /// What `active_power_w` covers (the board, the module's power mode...).
    pub active_power_scope: Option<String>,
    pub backends: Vec<ProfileBackend>,
    pub source: Vec<ProfileSource>,
    /// Figures computed from published ones, with the arithmetic.
    #[serde(default)]
    pub derived: BTreeMap<String, String>,
    /// Configurations the profile picks among those the product is sold in.
    #[serde(default)]
    pub chosen: BTreeMap<String, String>,
    pub notes: Option<String>,
}

impl Profile {
    /// The RAM in bytes.
    pub fn memory_bytes(&self) -> u64 {
        (self.memory_gib * (1u64 << 30) as f64) as u64
    }

    /// The backends that compute on the CPU, the only unit a constrained run can emulate.
    pub fn cpu_backends(&self) -> impl Iterator<Item = &ProfileBackend> {
        self.backends.iter().filter(|b| b.runs_on == Unit::Cpu)
    }

    /// `title <url>` of every source that gives `figure`, with the arithmetic or choice behind
    /// it when it is derived or chosen.
    pub fn source_of(&self, figure: &str) -> String {
        let mut parts: Vec<String> = self
            .source
            .iter()
            .filter(|s| s.gives.iter().any(|g| g == figure))
            .map(|s| format!("{} <{}>", s.title, s.url))
            .collect();
        if let Some(how) = self.derived.get(figure) {
            parts.push(format!("derived: {how}"));
        }
        if let Some(why) = self.chosen.get(figure) {
            parts.push(format!("chosen: {why}"));
        }
        parts.join("; ")
    }

    /// The figures an entry may state, and whether it states each.
    fn figures(&self) -> [(&'static str, bool); 5] {
        [
            ("cores", true),
            ("clock_ghz", true),
            ("memory_gib", true),
            ("isa", !self.isa.is_empty()),
            ("active_power_w", self.active_power_w.is_some()),
        ]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profile: Vec<Profile>,
}

/// The shipped profiles, validated against the catalog `chips`.
pub fn profiles(chips: &[Chip]) -> Result<Vec<Profile>> {
    parse(PROFILES_TOML, "profiles.toml", chips)
}

/// Profiles from a file of the same format (a user's own device).
pub fn load(path: &Path, chips: &[Chip]) -> Result<Vec<Profile>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, &path.display().to_string(), chips)
}

/// The profile named `id`.
pub fn find<'a>(profiles: &'a [Profile], id: &str) -> Option<&'a Profile> {
    profiles.iter().find(|p| p.id == id)
}

/// Parses and validates a profiles text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str, chips: &[Chip]) -> Result<Vec<Profile>> {
    let file: ProfilesFile = toml::from_str(text)
        .map_err(|e| Error::Catalog(format!("(device profiles) {origin}: {}", e.message())))?;
    let mut seen = std::collections::BTreeSet::new();
    for p in &file.profile {
        let fail = |why: String| {
            Error::Catalog(format!(
                "(device profiles) {origin}: profile '{}': {why}",
                p.id
            ))
        };
        if p.id.is_empty()
            || !p
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(fail(
                "the id must be lowercase letters, digits and '-'".into(),
            ));
        }
        if !seen.insert(p.id.clone()) {
            return Err(fail("the id is used twice".into()));
        }
        if let Some(chip) = &p.chip
            && !chips.iter().any(|c| &c.id == chip)
        {
            return Err(fail(format!("chip '{chip}' is not in the chip catalog")));
        }
        if p.cores == 0 {
            return Err(fail("cores must be at least 1".into()));
        }
        for (field, value) in [
            ("clock_ghz", Some(p.clock_ghz)),
            ("memory_gib", Some(p.memory_gib)),
            ("active_power_w", p.active_power_w),
        ] {
            if let Some(v) = value
                && !(v.is_finite() && v > 0.0)
            {
                return Err(fail(format!("{field} = {v} is not a positive number")));
            }
        }
        if p.active_power_w.is_some() != p.active_power_scope.is_some() {
            return Err(fail(
                "active_power_w and active_power_scope go together: say what the power covers"
                    .into(),
            ));
        }
        if let Some(flag) = p.isa.iter().find(|f| {
            f.is_empty()
                || !f
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        }) {
            return Err(fail(format!(
                "isa flag '{flag}' is not spelled as /proc/cpuinfo spells it"
            )));
        }
        if p.backends.is_empty() {
            return Err(fail(
                "no backends: name at least one that makes sense there".into(),
            ));
        }
        for s in &p.source {
            if s.title.trim().is_empty() || !s.url.starts_with("https://") {
                return Err(fail(format!(
                    "source '{}' needs a title and an https:// URL",
                    s.title
                )));
            }
        }
        let figures = p.figures();
        let known = |name: &str| figures.iter().any(|(f, present)| *f == name && *present);
        for named in p
            .source
            .iter()
            .flat_map(|s| s.gives.iter())
            .chain(p.derived.keys())
            .chain(p.chosen.keys())
        {
            if !known(named) {
                return Err(fail(format!(
                    "a source, 'derived' or 'chosen' names '{named}', which the profile does not state"
                )));
            }
        }
        for (figure, present) in figures {
            if present && p.source_of(figure).is_empty() {
                return Err(fail(format!(
                    "{figure} has no source: list it in a source's 'gives', or in 'derived' or 'chosen'"
                )));
            }
        }
    }
    Ok(file.profile)
}
