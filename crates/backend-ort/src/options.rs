//! The ONNX Runtime session options a user can set with `--set ort.KEY=VALUE`.

use std::collections::BTreeMap;

use ort::session::builder::GraphOptimizationLevel;

use crate::error::Error;

/// Every key, the values it takes and ONNX Runtime's default, for `chipbench bench --help`.
pub const SETTINGS_HELP: &[(&str, &str, &str)] = &[
    (
        "ort.inter_threads",
        "N",
        "inter-op threads (parallel mode only); default: ORT's",
    ),
    (
        "ort.execution_mode",
        "sequential|parallel",
        "run independent nodes concurrently; default sequential",
    ),
    (
        "ort.opt_level",
        "all|extended|basic|disable",
        "graph optimization level; default all",
    ),
    (
        "ort.spinning",
        "on|off",
        "worker threads spin while waiting (burns CPU, distorts energy); default on",
    ),
    ("ort.arena", "on|off", "CPU memory arena; default on"),
    (
        "ort.cpu_fallback",
        "on|off",
        "off: fail when a node cannot run on the requested provider; default on",
    ),
];

const PREFIX: &str = "ort.";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptLevel {
    Disable,
    Basic,
    Extended,
    All,
}

impl OptLevel {
    fn name(self) -> &'static str {
        match self {
            OptLevel::Disable => "disable",
            OptLevel::Basic => "basic",
            OptLevel::Extended => "extended",
            OptLevel::All => "all",
        }
    }

    pub fn ort(self) -> GraphOptimizationLevel {
        match self {
            OptLevel::Disable => GraphOptimizationLevel::Disable,
            OptLevel::Basic => GraphOptimizationLevel::Level1,
            OptLevel::Extended => GraphOptimizationLevel::Level2,
            OptLevel::All => GraphOptimizationLevel::All,
        }
    }
}

/// The parsed `ort.*` settings; anything not given keeps ONNX Runtime's default.
#[derive(Clone, Debug, PartialEq)]
pub struct OrtSettings {
    pub inter_threads: Option<usize>,
    pub parallel: bool,
    pub opt_level: OptLevel,
    pub spinning: bool,
    pub arena: bool,
    pub cpu_fallback: bool,
}

impl Default for OrtSettings {
    fn default() -> Self {
        OrtSettings {
            inter_threads: None,
            parallel: false,
            opt_level: OptLevel::All,
            spinning: true,
            arena: true,
            cpu_fallback: true,
        }
    }
}

impl OrtSettings {
    /// Reads the `ort.*` keys of `settings`; keys of other backends are left alone, an unknown
    /// `ort.*` key or a bad value is an error that lists what is accepted.
    pub fn parse(settings: &BTreeMap<String, String>) -> Result<Self, Error> {
        let mut s = OrtSettings::default();
        for (key, value) in settings.iter().filter(|(k, _)| k.starts_with(PREFIX)) {
            let v = value.trim();
            match key.as_str() {
                "ort.inter_threads" => {
                    s.inter_threads =
                        Some(v.parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
                            Error::setting(key, format!("'{v}' is not a thread count >= 1"))
                        })?)
                }
                "ort.execution_mode" => {
                    s.parallel = match v {
                        "sequential" => false,
                        "parallel" => true,
                        _ => {
                            return Err(Error::setting(
                                key,
                                format!("'{v}': expected sequential or parallel"),
                            ));
                        }
                    }
                }
                "ort.opt_level" => {
                    s.opt_level = match v {
                        "all" => OptLevel::All,
                        "extended" => OptLevel::Extended,
                        "basic" => OptLevel::Basic,
                        "disable" => OptLevel::Disable,
                        _ => {
                            return Err(Error::setting(
                                key,
                                format!("'{v}': expected all, extended, basic or disable"),
                            ));
                        }
                    }
                }
                "ort.spinning" => s.spinning = on_off(key, v)?,
                "ort.arena" => s.arena = on_off(key, v)?,
                "ort.cpu_fallback" => s.cpu_fallback = on_off(key, v)?,
                _ => {
                    let known: Vec<&str> = SETTINGS_HELP.iter().map(|(k, _, _)| *k).collect();
                    return Err(Error::setting(
                        key,
                        format!("unknown key (known: {})", known.join(", ")),
                    ));
                }
            }
        }
        Ok(s)
    }

    /// The settings as recorded with a result: every one, whether given or defaulted.
    pub fn describe(&self) -> BTreeMap<String, String> {
        let on_off = |b: bool| if b { "on" } else { "off" }.to_string();
        BTreeMap::from([
            (
                "ort.inter_threads".into(),
                self.inter_threads
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "ORT default".into()),
            ),
            (
                "ort.execution_mode".into(),
                if self.parallel {
                    "parallel"
                } else {
                    "sequential"
                }
                .into(),
            ),
            ("ort.opt_level".into(), self.opt_level.name().into()),
            ("ort.spinning".into(), on_off(self.spinning)),
            ("ort.arena".into(), on_off(self.arena)),
            ("ort.cpu_fallback".into(), on_off(self.cpu_fallback)),
        ])
    }
}

fn on_off(key: &str, value: &str) -> Result<bool, Error> {
    match value {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(Error::setting(
            key,
            format!("'{value}': expected on or off"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<OrtSettings, Error> {
        OrtSettings::parse(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn every_key_parses_and_other_backends_keys_are_ignored() {
        let s = parse(&[
            ("ort.inter_threads", "2"),
            ("ort.execution_mode", "parallel"),
            ("ort.opt_level", "basic"),
            ("ort.spinning", "off"),
            ("ort.arena", "off"),
            ("ort.cpu_fallback", "off"),
            ("wgpu.workgroup", "64"),
        ])
        .unwrap();
        assert_eq!(
            s,
            OrtSettings {
                inter_threads: Some(2),
                parallel: true,
                opt_level: OptLevel::Basic,
                spinning: false,
                arena: false,
                cpu_fallback: false,
            }
        );
        assert_eq!(s.describe()["ort.spinning"], "off");
        assert_eq!(parse(&[]).unwrap(), OrtSettings::default());
    }

    #[test]
    fn bad_keys_and_values_name_the_key_and_what_is_accepted() {
        let e = parse(&[("ort.spining", "off")]).unwrap_err().to_string();
        assert!(e.starts_with("--set ort.spining: unknown key"), "{e}");
        assert!(e.contains("ort.spinning"), "{e}");
        let e = parse(&[("ort.opt_level", "max")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "--set ort.opt_level: 'max': expected all, extended, basic or disable"
        );
        let e = parse(&[("ort.inter_threads", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a thread count"), "{e}");
    }
}
