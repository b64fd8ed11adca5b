//! The `wgpu.*` backend settings (`--set KEY=VALUE`).

use std::collections::BTreeMap;

use crate::error::WgpuError;

const PREFIX: &str = "wgpu.";

/// Every key, its values and what it does, for `--help`.
pub const SETTINGS_HELP: &[(&str, &str, &str)] = &[(
    "wgpu.timestamps",
    "on|off",
    "GPU timestamp queries for device-side time and --operator-times; default on where the adapter has TIMESTAMP_QUERY",
)];

/// The parsed `wgpu.*` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WgpuSettings {
    /// Use timestamp queries where the adapter has them (some drivers report unusable ones).
    pub timestamps: bool,
}

impl Default for WgpuSettings {
    fn default() -> Self {
        WgpuSettings { timestamps: true }
    }
}

impl WgpuSettings {
    /// Reads the `wgpu.*` keys of `settings`; other backends' keys are left alone, an unknown
    /// `wgpu.*` key or a bad value is an error that says what is accepted.
    pub fn parse(settings: &BTreeMap<String, String>) -> Result<Self, WgpuError> {
        let mut parsed = WgpuSettings::default();
        for (key, value) in settings.iter().filter(|(k, _)| k.starts_with(PREFIX)) {
            let fail = |reason: String| WgpuError::Setting {
                key: key.clone(),
                reason,
            };
            match key.as_str() {
                "wgpu.timestamps" => {
                    parsed.timestamps = match value.trim() {
                        "on" => true,
                        "off" => false,
                        other => return Err(fail(format!("'{other}': expected on or off"))),
                    }
                }
                _ => {
                    let known: Vec<&str> = SETTINGS_HELP.iter().map(|(k, _, _)| *k).collect();
                    return Err(fail(format!("unknown key (known: {})", known.join(", "))));
                }
            }
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_keys_and_refuses_unknown_ones() {
        let set = |pairs: &[(&str, &str)]| {
            let map: BTreeMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            WgpuSettings::parse(&map)
        };
        assert_eq!(set(&[]).unwrap(), WgpuSettings { timestamps: true });
        assert!(
            !set(&[("wgpu.timestamps", "off"), ("ort.spinning", "off")])
                .unwrap()
                .timestamps
        );
        assert!(
            set(&[("wgpu.timestamps", "maybe")])
                .unwrap_err()
                .to_string()
                .contains("expected on or off")
        );
        assert!(
            set(&[("wgpu.tile", "8")])
                .unwrap_err()
                .to_string()
                .contains("wgpu.timestamps")
        );
    }
}
