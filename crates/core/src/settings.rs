//! How cells are measured: one type for the CLI, the harness, the workers (on their stdin) and
//! `run.json`'s `config`, where it is written as the flat fields every earlier version of the
//! schema already had (`warmup_min_iterations`, `min_duration_s`, ...), plus optional ones.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Warm-up ends once both minimums are met.
#[derive(Clone, Debug, PartialEq)]
pub struct WarmUp {
    pub min_iterations: u64,
    pub min_duration: Duration,
}

impl Default for WarmUp {
    fn default() -> Self {
        WarmUp {
            min_iterations: 10,
            min_duration: Duration::from_millis(500),
        }
    }
}

/// MLPerf-style minimums, then an early stop once the 95 % CI of the median lies within
/// ± `target_relative_ci` of the median, checked every `check_interval`; `max_duration` caps it all.
#[derive(Clone, Debug, PartialEq)]
pub struct StopRule {
    pub min_iterations: u64,
    pub min_duration: Duration,
    pub max_duration: Duration,
    pub target_relative_ci: f64,
    pub check_interval: Duration,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule {
            min_iterations: 100,
            min_duration: Duration::from_secs(3),
            max_duration: Duration::from_secs(30),
            target_relative_ci: 0.01,
            check_interval: Duration::from_millis(250),
        }
    }
}

impl StopRule {
    /// The shorter loop of a cell's further sessions, enough for a median and not for every
    /// other figure: a fifth of the iterations (at least 10) and a tenth to a fifth of the main
    /// loop's minimum duration (0.3–0.6 s by default). Capping at a fifth of the minimum, not of
    /// the maximum, keeps a noisy cell's sessions from chasing the CI target: the suite's main
    /// job took 85 s with `max_duration / 5`, 48 s with this, 29 s with one session per cell.
    pub fn for_extra_session(main: &StopRule) -> StopRule {
        StopRule {
            min_iterations: (main.min_iterations / 5).max(10),
            min_duration: main.min_duration / 10,
            max_duration: main.min_duration / 5,
            ..main.clone()
        }
    }
}

impl WarmUp {
    /// The warm-up of a cell's further sessions: the same iterations, a fifth of the duration.
    pub fn for_extra_session(main: &WarmUp) -> WarmUp {
        WarmUp {
            min_iterations: main.min_iterations,
            min_duration: main.min_duration / 5,
        }
    }
}

/// Everything that decides how a cell is measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "Written", into = "Written")]
pub struct MeasureSettings {
    pub warmup: WarmUp,
    pub stop: StopRule,
    /// Seed of the generated inputs.
    pub seed: u64,
    /// Seeded input samples compared against the reference (0 disables the accuracy check).
    pub accuracy_samples: usize,
    /// Record the engine's own time per operator (`--operator-times`).
    pub operator_times: bool,
    /// `--set KEY=VALUE` pairs; each backend reads its own keys.
    pub backend_settings: BTreeMap<String, String>,
    /// Sessions per cell. The first gives the cell's figures; each further one is loaded
    /// afresh, warmed up and timed under the `for_extra_session` rules, and only its median is
    /// kept: two sessions of one model differ by more than one session's samples show
    /// (measured: the 22 µs mlp on tract, six fresh sessions in one process, medians 4.8 %
    /// apart), and a comparison needs that spread. Five by default: with a 1 % session-to-session
    /// spread, three sessions a side detected a 5 % slowdown in 86 % of simulated pairs, five in
    /// 99.4 % (`scripts/gate-power.sh`).
    pub sessions: usize,
    /// `--feedback OUT=IN`: (output, input) name pairs; output OUT of each inference is input IN
    /// of the next (a streaming model's state), in the accuracy check and the timed loop.
    pub feedback: Vec<(String, String)>,
}

impl Default for MeasureSettings {
    fn default() -> Self {
        MeasureSettings {
            warmup: WarmUp::default(),
            stop: StopRule::default(),
            seed: 0,
            accuracy_samples: 8,
            operator_times: false,
            backend_settings: BTreeMap::new(),
            sessions: 5,
            feedback: Vec::new(),
        }
    }
}

/// The settings as written: flat, durations in seconds. The fields after `accuracy_samples`
/// came later and are optional, so runs written before them still read (with the defaults).
#[derive(Serialize, Deserialize)]
struct Written {
    seed: u64,
    warmup_min_iterations: u64,
    warmup_min_duration_s: f64,
    min_iterations: u64,
    min_duration_s: f64,
    max_duration_s: f64,
    target_relative_ci: f64,
    accuracy_samples: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    check_interval_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sessions: Option<usize>,
    #[serde(default)]
    operator_times: bool,
    #[serde(default)]
    backend_settings: BTreeMap<String, String>,
    /// `OUT=IN` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    feedback: Vec<String>,
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

impl From<Written> for MeasureSettings {
    fn from(w: Written) -> Self {
        let defaults = MeasureSettings::default();
        MeasureSettings {
            warmup: WarmUp {
                min_iterations: w.warmup_min_iterations,
                min_duration: seconds(w.warmup_min_duration_s),
            },
            stop: StopRule {
                min_iterations: w.min_iterations,
                min_duration: seconds(w.min_duration_s),
                max_duration: seconds(w.max_duration_s),
                target_relative_ci: w.target_relative_ci,
                check_interval: w
                    .check_interval_s
                    .map_or(defaults.stop.check_interval, seconds),
            },
            seed: w.seed,
            accuracy_samples: w.accuracy_samples,
            operator_times: w.operator_times,
            backend_settings: w.backend_settings,
            sessions: w.sessions.unwrap_or(defaults.sessions),
            feedback: w
                .feedback
                .iter()
                .filter_map(|pair| pair.split_once('='))
                .map(|(o, i)| (o.to_string(), i.to_string()))
                .collect(),
        }
    }
}

impl From<MeasureSettings> for Written {
    fn from(s: MeasureSettings) -> Self {
        Written {
            seed: s.seed,
            warmup_min_iterations: s.warmup.min_iterations,
            warmup_min_duration_s: s.warmup.min_duration.as_secs_f64(),
            min_iterations: s.stop.min_iterations,
            min_duration_s: s.stop.min_duration.as_secs_f64(),
            max_duration_s: s.stop.max_duration.as_secs_f64(),
            target_relative_ci: s.stop.target_relative_ci,
            accuracy_samples: s.accuracy_samples,
            check_interval_s: Some(s.stop.check_interval.as_secs_f64()),
            sessions: Some(s.sessions),
            operator_times: s.operator_times,
            backend_settings: s.backend_settings,
            feedback: s.feedback.iter().map(|(o, i)| format!("{o}={i}")).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_read_the_fields_of_earlier_runs() {
        let mut settings = MeasureSettings::default();
        settings.stop.min_duration = Duration::from_millis(300);
        settings
            .backend_settings
            .insert("ort.spinning".into(), "off".into());
        let json = serde_json::to_value(&settings).unwrap();
        assert_eq!(json["min_duration_s"], 0.3);
        assert_eq!(json["sessions"], 5);
        assert_eq!(
            serde_json::from_value::<MeasureSettings>(json).unwrap(),
            settings
        );
        // A config written before the optional fields.
        let old = serde_json::json!({
            "seed": 7, "warmup_min_iterations": 3, "warmup_min_duration_s": 0.1,
            "min_iterations": 20, "min_duration_s": 0.3, "max_duration_s": 2.0,
            "target_relative_ci": 0.01, "accuracy_samples": 8
        });
        let read: MeasureSettings = serde_json::from_value(old).unwrap();
        assert_eq!(read.seed, 7);
        assert_eq!(read.stop.max_duration, Duration::from_secs(2));
        assert_eq!(read.sessions, 5);
    }
}
