//! `history trend`: one metric of one cell over the recorded runs, as a terminal sparkline and
//! table, CSV, or an HTML page with a chart.

use chipbench_core::result::CellResult;
use chipbench_core::stats;
use serde::Serialize;

use crate::charts::{self, TrendPoint};
use crate::error::Result;
use crate::export::html::escape;
use crate::figures::provenance;
use crate::gate::{CellKey, Metric};
use crate::history::RunSummary;

/// The metric in one run.
#[derive(Clone, Debug, Serialize)]
pub struct TrendRow {
    pub run_id: String,
    pub started_at: String,
    pub host_fingerprint: String,
    pub value: f64,
    /// 95 % CI of a latency quantile: exact percentile-bootstrap ranks of the sorted samples.
    pub ci95: Option<(f64, f64)>,
    pub samples: usize,
}

pub fn rows(series: &[(RunSummary, CellResult)], metric: Metric) -> Vec<TrendRow> {
    series
        .iter()
        .filter_map(|(run, cell)| {
            let value = metric.value(cell)?;
            let ci95 = metric
                .quantile()
                .filter(|_| !cell.samples_ms.is_empty())
                .map(|q| {
                    let mut sorted = cell.samples_ms.clone();
                    sorted.sort_by(f64::total_cmp);
                    let (lo, hi) = stats::quantile_ci_ranks(sorted.len(), q, 0.95);
                    (sorted[lo], sorted[hi])
                });
            Some(TrendRow {
                run_id: run.run_id.clone(),
                started_at: run.started_at.clone(),
                host_fingerprint: run.host_fingerprint.clone(),
                value,
                ci95,
                samples: cell.samples_ms.len(),
            })
        })
        .collect()
}

/// Eight-level block sparkline, scaled between the smallest and largest value.
pub fn sparkline(values: &[f64]) -> String {
    const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| {
            let level = if hi > lo {
                ((v - lo) / (hi - lo) * 7.0).round() as usize
            } else {
                3
            };
            BLOCKS[level.min(7)]
        })
        .collect()
}

/// How the metric's figures were obtained, from the newest cell.
fn how(series: &[(RunSummary, CellResult)], metric: Metric) -> String {
    let group = match metric {
        Metric::Throughput => "throughput_per_s",
        Metric::Energy => "energy",
        _ => "latency_ms",
    };
    series
        .last()
        .map(|(_, c)| provenance(c, group).text)
        .unwrap_or_default()
}

fn value_text(v: f64, metric: Metric) -> String {
    match metric {
        Metric::Throughput => format!("{v:.1}"),
        Metric::Energy => charts::significant(v),
        _ => crate::fmt_ms(v),
    }
}

pub fn render_text(key: &CellKey, metric: Metric, series: &[(RunSummary, CellResult)]) -> String {
    let rows = rows(series, metric);
    let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
    let mut out = format!(
        "{key}: {} ({}), {} runs, oldest first\n",
        metric.describe(),
        metric.unit(),
        rows.len()
    );
    if let (Some(first), Some(last)) = (values.first(), values.last()) {
        out.push_str(&format!(
            "{}  {} -> {} {}\n\n",
            sparkline(&values),
            value_text(*first, metric),
            value_text(*last, metric),
            metric.unit()
        ));
    }
    out.push_str(&format!(
        "{:<24} {:<22} {:>10} {:>23} {:>8}\n",
        "run",
        "started",
        metric.name(),
        "95% CI",
        "n"
    ));
    for r in &rows {
        let ci = r
            .ci95
            .map(|(lo, hi)| format!("{} .. {}", value_text(lo, metric), value_text(hi, metric)))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24} {:<22} {:>10} {:>23} {:>8}\n",
            r.run_id,
            r.started_at,
            value_text(r.value, metric),
            ci,
            r.samples
        ));
    }
    out.push_str(&format!("\n{}\n", how(series, metric)));
    out
}

pub fn render_csv(metric: Metric, series: &[(RunSummary, CellResult)]) -> String {
    let unit = metric.unit().replace('/', "_per_");
    let mut out = format!(
        "run_id,started_at,host_fingerprint,{0}_{unit},ci95_lo,ci95_hi,samples\r\n",
        metric.name()
    );
    for r in rows(series, metric) {
        let (lo, hi) = r
            .ci95
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_default();
        out.push_str(&format!(
            "{},{},{},{},{lo},{hi},{}\r\n",
            r.run_id, r.started_at, r.host_fingerprint, r.value, r.samples
        ));
    }
    out
}

pub fn render_html(
    key: &CellKey,
    metric: Metric,
    series: &[(RunSummary, CellResult)],
) -> Result<String> {
    let rows = rows(series, metric);
    let points: Vec<TrendPoint> = rows
        .iter()
        .map(|r| TrendPoint {
            label: r.started_at.get(..16).unwrap_or(&r.started_at).to_string(),
            value: r.value,
            ci: r.ci95,
        })
        .collect();
    let title = format!("{key}: {}", metric.describe());
    let svg = charts::trend(
        &title,
        &format!("{}, {}", metric.name(), metric.unit()),
        &points,
    )?;
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>body{{font-family:\
         system-ui,sans-serif;margin:2em auto;max-width:1180px}}figure svg{{max-width:100%;height:auto}}\
         figcaption{{font-size:.85em;color:#555}}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<figure class=\"chart\">\n{svg}\n\
         <figcaption>{} runs, oldest first; bars: 95 % CI where the metric is a latency quantile. {}</figcaption>\n</figure>\n\
         </body>\n</html>\n",
        rows.len(),
        escape(&how(series, metric)),
        t = escape(&title),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{cell, lognormal_samples};

    fn series() -> Vec<(RunSummary, CellResult)> {
        [1.0, 1.1, 1.3]
            .iter()
            .enumerate()
            .map(|(i, &m)| {
                let summary = RunSummary {
                    run_id: format!("r{i}"),
                    started_at: format!("2026-11-2{i}T10:00:00Z"),
                    tool_version: "0.1.0".into(),
                    host_fingerprint: "aa".into(),
                    hostname: "h".into(),
                    cpu_brand: "c".into(),
                    quick: false,
                    cells: 1,
                    cells_ok: 1,
                };
                (
                    summary,
                    cell(
                        "m",
                        "fp32",
                        "tract",
                        lognormal_samples(m, 0.01, 200, i as u64),
                        None,
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn sparkline_spans_the_range() {
        assert_eq!(sparkline(&[1.0, 2.0, 3.0]), "▁▅█");
        assert_eq!(sparkline(&[2.0, 2.0]), "▄▄");
    }

    #[test]
    fn trend_rows_carry_the_ci_of_the_quantile() {
        let rows = rows(&series(), Metric::P50);
        assert_eq!(rows.len(), 3);
        for r in &rows {
            let (lo, hi) = r.ci95.unwrap();
            assert!(lo <= r.value && r.value <= hi);
        }
        assert!(rows[2].value > rows[0].value * 1.2);
        let key = CellKey::of(&series()[0].1);
        let text = render_text(&key, Metric::P50, &series());
        assert!(
            text.contains("▁") && text.contains("█") && text.contains("r2"),
            "{text}"
        );
        let csv = render_csv(Metric::P50, &series());
        assert_eq!(csv.lines().count(), 4);
        assert!(csv.starts_with("run_id,started_at,host_fingerprint,p50_ms,"));
        let html = render_html(&key, Metric::P50, &series()).unwrap();
        assert_eq!(html.matches("<svg").count(), 1);
    }
}
