//! The figures a report shows for a cell, each with how it was obtained.
//!
//! The runner records a provenance text per group of figures (`latency_ms`, `accuracy`, ...),
//! starting with `measured:`, `derived:`, `estimated:` or `projected:`. Every format prints the
//! figure next to that origin; a figure whose provenance was not recorded says `unstated` rather
//! than passing for a measurement.

use chipbench_core::result::CellResult;
use serde::Serialize;

/// How a figure was obtained, from the first word of its provenance text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Measured,
    Derived,
    Estimated,
    Projected,
    NotMeasured,
    Unstated,
}

impl Origin {
    pub fn of(provenance: &str) -> Origin {
        let text = provenance.trim_start().to_ascii_lowercase();
        let starts = |word: &str| text.starts_with(word);
        if starts("measured") {
            Origin::Measured
        } else if starts("derived") {
            Origin::Derived
        } else if starts("estimated") {
            Origin::Estimated
        } else if starts("projected") || starts("projection") {
            Origin::Projected
        } else if starts("not measured") {
            Origin::NotMeasured
        } else {
            Origin::Unstated
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Origin::Measured => "measured",
            Origin::Derived => "derived",
            Origin::Estimated => "estimated",
            Origin::Projected => "projected",
            Origin::NotMeasured => "not measured",
            Origin::Unstated => "unstated",
        }
    }
}

/// How one group of figures of a cell was obtained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Provenance {
    pub origin: Origin,
    pub text: String,
}

/// The provenance groups, in the order reports list them; each is a key of
/// `CellResult::provenance`.
pub const GROUPS: [&str; 12] = [
    "latency_ms",
    "device_latency_ms",
    "throughput_per_s",
    "cpu_ms_per_inference",
    "peak_rss_bytes",
    "load_ms",
    "first_inference_ms",
    "accuracy",
    "task_accuracy",
    "energy",
    "roofline",
    "model",
];

/// Model statistics are computed from the ONNX file, not timed; the schema documents it, so a
/// cell without an explicit entry still says so.
const MODEL_STATS_PROVENANCE: &str = "derived: counted from the ONNX graph (parameters, weight bytes, MACs at the bound input shapes)";

/// How the figures of `group` were obtained in `cell`.
pub fn provenance(cell: &CellResult, group: &str) -> Provenance {
    // The energy record carries its own method; its first word would call
    // `measured:hwmon + estimated:...` a measurement, so the record says whether it is one.
    if let (None, "energy", Some(e)) = (cell.provenance.get(group), group, &cell.energy) {
        return Provenance {
            origin: if e.is_estimate() {
                Origin::Estimated
            } else {
                Origin::of(&e.method)
            },
            text: e.method.clone(),
        };
    }
    let fallback = || match group {
        "model" => Some(MODEL_STATS_PROVENANCE.to_string()),
        "roofline" => cell.roofline.as_ref().map(|r| {
            format!(
                "derived: 2 x MACs / measured median latency, against ceilings: {}",
                r.ceilings
            )
        }),
        _ => None,
    };
    let text = cell
        .provenance
        .get(group)
        .cloned()
        .or_else(fallback)
        .unwrap_or_else(|| "unstated: no provenance recorded".to_string());
    Provenance {
        origin: Origin::of(&text),
        text,
    }
}

/// Whether the cell has any figure of `group` (so its provenance is worth stating).
pub fn has_group(cell: &CellResult, group: &str) -> bool {
    Figure::ALL
        .iter()
        .any(|f| f.group() == group && f.value(cell).is_some())
}

/// One figure of a cell. `key` is a stable column name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Figure {
    Samples,
    MeanMs,
    StddevMs,
    MinMs,
    P50Ms,
    P90Ms,
    P95Ms,
    P99Ms,
    P999Ms,
    MaxMs,
    MedianCi95LoMs,
    MedianCi95HiMs,
    DeviceP50Ms,
    ThroughputPerS,
    CpuMsPerInference,
    PeakRssBytes,
    LoadMs,
    FirstInferenceMs,
    MaxAbsErr,
    MeanRelErr,
    Cosine,
    Top1Agreement,
    TaskTop1Agreement,
    TaskTopkAgreement,
    TaskPrecision,
    TaskRecall,
    TaskF1,
    TaskExactMatch,
    TaskCer,
    TaskDecisionAgreement,
    EnergyJPerInference,
    EnergyAboveIdleJPerInference,
    AvgPowerW,
    AchievedGflops,
    BoundGflops,
    FractionOfBound,
    ArithmeticIntensity,
    Params,
    Macs,
    WeightBytes,
}

impl Figure {
    pub const ALL: [Figure; 40] = [
        Figure::Samples,
        Figure::MeanMs,
        Figure::StddevMs,
        Figure::MinMs,
        Figure::P50Ms,
        Figure::P90Ms,
        Figure::P95Ms,
        Figure::P99Ms,
        Figure::P999Ms,
        Figure::MaxMs,
        Figure::MedianCi95LoMs,
        Figure::MedianCi95HiMs,
        Figure::DeviceP50Ms,
        Figure::ThroughputPerS,
        Figure::CpuMsPerInference,
        Figure::PeakRssBytes,
        Figure::LoadMs,
        Figure::FirstInferenceMs,
        Figure::MaxAbsErr,
        Figure::MeanRelErr,
        Figure::Cosine,
        Figure::Top1Agreement,
        Figure::TaskTop1Agreement,
        Figure::TaskTopkAgreement,
        Figure::TaskPrecision,
        Figure::TaskRecall,
        Figure::TaskF1,
        Figure::TaskExactMatch,
        Figure::TaskCer,
        Figure::TaskDecisionAgreement,
        Figure::EnergyJPerInference,
        Figure::EnergyAboveIdleJPerInference,
        Figure::AvgPowerW,
        Figure::AchievedGflops,
        Figure::BoundGflops,
        Figure::FractionOfBound,
        Figure::ArithmeticIntensity,
        Figure::Params,
        Figure::Macs,
        Figure::WeightBytes,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Figure::Samples => "samples",
            Figure::MeanMs => "mean_ms",
            Figure::StddevMs => "stddev_ms",
            Figure::MinMs => "min_ms",
            Figure::P50Ms => "p50_ms",
            Figure::P90Ms => "p90_ms",
            Figure::P95Ms => "p95_ms",
            Figure::P99Ms => "p99_ms",
            Figure::P999Ms => "p999_ms",
            Figure::MaxMs => "max_ms",
            Figure::MedianCi95LoMs => "median_ci95_lo_ms",
            Figure::MedianCi95HiMs => "median_ci95_hi_ms",
            Figure::DeviceP50Ms => "device_p50_ms",
            Figure::ThroughputPerS => "throughput_per_s",
            Figure::CpuMsPerInference => "cpu_ms_per_inference",
            Figure::PeakRssBytes => "peak_rss_bytes",
            Figure::LoadMs => "load_ms",
            Figure::FirstInferenceMs => "first_inference_ms",
            Figure::MaxAbsErr => "max_abs_err",
            Figure::MeanRelErr => "mean_rel_err",
            Figure::Cosine => "cosine",
            Figure::Top1Agreement => "top1_agreement",
            Figure::TaskTop1Agreement => "task_top1_agreement",
            Figure::TaskTopkAgreement => "task_topk_agreement",
            Figure::TaskPrecision => "task_precision",
            Figure::TaskRecall => "task_recall",
            Figure::TaskF1 => "task_f1",
            Figure::TaskExactMatch => "task_exact_match",
            Figure::TaskCer => "task_cer",
            Figure::TaskDecisionAgreement => "task_decision_agreement",
            Figure::EnergyJPerInference => "energy_j_per_inference",
            Figure::EnergyAboveIdleJPerInference => "energy_above_idle_j_per_inference",
            Figure::AvgPowerW => "avg_power_w",
            Figure::AchievedGflops => "achieved_gflops",
            Figure::BoundGflops => "roofline_bound_gflops",
            Figure::FractionOfBound => "fraction_of_roofline",
            Figure::ArithmeticIntensity => "arithmetic_intensity",
            Figure::Params => "params",
            Figure::Macs => "macs",
            Figure::WeightBytes => "weight_bytes",
        }
    }

    /// The provenance group the figure belongs to.
    pub fn group(self) -> &'static str {
        match self {
            Figure::Samples
            | Figure::MeanMs
            | Figure::StddevMs
            | Figure::MinMs
            | Figure::P50Ms
            | Figure::P90Ms
            | Figure::P95Ms
            | Figure::P99Ms
            | Figure::P999Ms
            | Figure::MaxMs
            | Figure::MedianCi95LoMs
            | Figure::MedianCi95HiMs => "latency_ms",
            Figure::DeviceP50Ms => "device_latency_ms",
            Figure::ThroughputPerS => "throughput_per_s",
            Figure::CpuMsPerInference => "cpu_ms_per_inference",
            Figure::PeakRssBytes => "peak_rss_bytes",
            Figure::LoadMs => "load_ms",
            Figure::FirstInferenceMs => "first_inference_ms",
            Figure::MaxAbsErr | Figure::MeanRelErr | Figure::Cosine | Figure::Top1Agreement => {
                "accuracy"
            }
            Figure::TaskTop1Agreement
            | Figure::TaskTopkAgreement
            | Figure::TaskPrecision
            | Figure::TaskRecall
            | Figure::TaskF1
            | Figure::TaskExactMatch
            | Figure::TaskCer
            | Figure::TaskDecisionAgreement => "task_accuracy",
            Figure::EnergyJPerInference
            | Figure::EnergyAboveIdleJPerInference
            | Figure::AvgPowerW => "energy",
            Figure::AchievedGflops
            | Figure::BoundGflops
            | Figure::FractionOfBound
            | Figure::ArithmeticIntensity => "roofline",
            Figure::Params | Figure::Macs | Figure::WeightBytes => "model",
        }
    }

    pub fn value(self, cell: &CellResult) -> Option<f64> {
        let latency = cell.latency_ms.as_ref();
        let accuracy = cell.accuracy.as_ref();
        let task = accuracy.and_then(|a| a.task.as_ref());
        let energy = cell.energy.as_ref();
        let roofline = cell.roofline.as_ref();
        match self {
            Figure::Samples => latency.map(|l| l.n as f64),
            Figure::MeanMs => latency.map(|l| l.mean),
            Figure::StddevMs => latency.map(|l| l.stddev),
            Figure::MinMs => latency.map(|l| l.min),
            Figure::P50Ms => latency.map(|l| l.p50),
            Figure::P90Ms => latency.map(|l| l.p90),
            Figure::P95Ms => latency.map(|l| l.p95),
            Figure::P99Ms => latency.map(|l| l.p99),
            Figure::P999Ms => latency.map(|l| l.p999),
            Figure::MaxMs => latency.map(|l| l.max),
            Figure::MedianCi95LoMs => latency.map(|l| l.median_ci95[0]),
            Figure::MedianCi95HiMs => latency.map(|l| l.median_ci95[1]),
            Figure::DeviceP50Ms => cell.device_latency_ms.as_ref().map(|l| l.p50),
            Figure::ThroughputPerS => cell.throughput_per_s,
            Figure::CpuMsPerInference => cell.cpu_ms_per_inference,
            Figure::PeakRssBytes => cell.peak_rss_bytes.map(|b| b as f64),
            Figure::LoadMs => cell.load_ms,
            Figure::FirstInferenceMs => cell.first_inference_ms,
            Figure::MaxAbsErr => accuracy.map(|a| a.max_abs_err),
            Figure::MeanRelErr => accuracy.map(|a| a.mean_rel_err),
            Figure::Cosine => accuracy.map(|a| a.cosine),
            Figure::Top1Agreement => accuracy.and_then(|a| a.top1_agreement),
            Figure::TaskTop1Agreement => task.and_then(|t| t.top1_agreement),
            Figure::TaskTopkAgreement => task.and_then(|t| t.topk_agreement),
            Figure::TaskPrecision => task.and_then(|t| t.precision),
            Figure::TaskRecall => task.and_then(|t| t.recall),
            Figure::TaskF1 => task.and_then(|t| t.f1),
            Figure::TaskExactMatch => task.and_then(|t| t.exact_match),
            Figure::TaskCer => task.and_then(|t| t.cer),
            Figure::TaskDecisionAgreement => task.and_then(|t| t.decision_agreement),
            Figure::EnergyJPerInference => energy.map(|e| e.joules_per_inference),
            Figure::EnergyAboveIdleJPerInference => {
                energy.and_then(|e| e.joules_per_inference_above_idle)
            }
            Figure::AvgPowerW => energy.map(|e| e.avg_power_w),
            Figure::AchievedGflops => roofline.map(|r| r.achieved_gflops),
            Figure::BoundGflops => roofline.and_then(|r| r.bound_gflops),
            Figure::FractionOfBound => roofline.and_then(|r| r.fraction_of_bound),
            Figure::ArithmeticIntensity => roofline.map(|r| r.arithmetic_intensity),
            Figure::Params => cell.model.params.map(|v| v as f64),
            Figure::Macs => cell.model.macs.map(|v| v as f64),
            Figure::WeightBytes => cell.model.weight_bytes.map(|v| v as f64),
        }
    }
}

/// `model variant backend:device threads` — how a cell is named in reports.
pub fn cell_label(cell: &CellResult) -> String {
    let threads = cell
        .backend
        .threads
        .map(|t| format!(" t{t}"))
        .unwrap_or_default();
    // Single-stream is every cell's scenario but the load generator's: only theirs is named.
    let scenario = match &cell.scenario_point {
        Some(_) => format!(" {}", cell.scenario_label()),
        None => String::new(),
    };
    format!(
        "{} {} {}:{}{threads}{scenario}",
        cell.model.name, cell.model.variant, cell.backend.name, cell.backend.device
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_comes_from_the_first_word() {
        assert_eq!(
            Origin::of("measured: host monotonic clock"),
            Origin::Measured
        );
        assert_eq!(Origin::of("estimated:tdp x cpu time"), Origin::Estimated);
        assert_eq!(Origin::of("derived: n / wall"), Origin::Derived);
        assert_eq!(
            Origin::of("projection (roofline lower bound)"),
            Origin::Projected
        );
        assert_eq!(Origin::of("projected: roofline"), Origin::Projected);
        assert_eq!(
            Origin::of("not measured: reference failed"),
            Origin::NotMeasured
        );
        assert_eq!(Origin::of("whatever"), Origin::Unstated);
    }

    #[test]
    fn an_energy_method_with_an_estimated_part_is_an_estimate() {
        let mut cell = crate::test_support::sample_run().cells.remove(0);
        assert!(!cell.provenance.contains_key("energy"), "the method speaks");
        let mut set_method = |method: &str| {
            cell.energy.as_mut().unwrap().method = method.into();
            provenance(&cell, "energy")
        };
        let mixed = set_method("measured:hwmon + estimated:cpu-time x active-power");
        assert_eq!(mixed.origin, Origin::Estimated, "{}", mixed.text);
        assert_eq!(set_method("measured:rapl").origin, Origin::Measured);
    }

    #[test]
    fn figure_keys_are_unique() {
        let mut keys: Vec<&str> = Figure::ALL.iter().map(|f| f.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), Figure::ALL.len());
        for f in Figure::ALL {
            assert!(GROUPS.contains(&f.group()), "{f:?}");
        }
    }
}
