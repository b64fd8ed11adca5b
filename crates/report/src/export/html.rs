//! One self-contained HTML page: inline CSS and inline SVG charts drawn by plotters, no script
//! and nothing fetched from the network, so it opens offline and attaches to a CI artifact.
//!
//! Sections: the runs; a table of every cell whose figures say how they were obtained (a badge
//! per origin and the full provenance text on hover); latency distributions per model; speedup of
//! each variant and backend against the fp32 model on the reference backend (tract:cpu) of the
//! same run; latency (and energy, where recorded) against accuracy loss with the Pareto front per
//! model; energy per inference (estimates drawn apart and labelled); the roofline of each run
//! whose cells carry roofline figures, with the ceilings those figures imply; projections onto
//! catalog chips in a table of their own; how each figure was obtained.

use std::collections::{BTreeMap, BTreeSet};

use chipbench_core::result::{CellResult, RunResult, Status};

use super::{Exporter, cells_with_runs};
use crate::charts::{
    self, Bar, Ceilings, Distribution, KneePoint, ParetoPoint, RooflinePoint, TpotSeries,
};
use crate::error::Result;
use crate::figures::{GROUPS, Origin, cell_label, has_group, provenance};
use crate::fmt_ms;

pub struct HtmlExporter;

/// The reference every speedup is measured against: the fp32 model on tract's CPU device.
pub const REFERENCE: (&str, &str, &str) = ("fp32", "tract", "cpu");

impl Exporter for HtmlExporter {
    fn serialize(&self, runs: &[RunResult]) -> Result<Vec<u8>> {
        Ok(page(runs)?.into_bytes())
    }
}

/// A chart and the sentence under it.
struct Chart {
    id: String,
    svg: String,
    caption: String,
}

/// The charts of the page, in order; their number is what the browser test checks.
fn charts(runs: &[RunResult]) -> Result<(Vec<Chart>, Vec<String>)> {
    let all = cells_with_runs(runs);
    let ok: Vec<(&RunResult, String, &CellResult)> = all
        .into_iter()
        .filter(|(_, _, c)| c.status == Status::Ok && !c.samples_ms.is_empty())
        .collect();
    let mut models: Vec<&str> = Vec::new();
    for (_, _, c) in &ok {
        if !models.contains(&c.model.name.as_str()) {
            models.push(&c.model.name);
        }
    }
    let mut out = Vec::new();
    let mut notes = Vec::new();

    for model in &models {
        let rows: Vec<Distribution> = ok
            .iter()
            .filter(|(_, _, c)| c.model.name == *model)
            .map(|(_, prefix, c)| Distribution {
                label: format!("{prefix}{}", cell_label(c)),
                samples: &c.samples_ms,
            })
            .collect();
        out.push(Chart {
            id: format!("latency-{}", slug(model)),
            svg: charts::latency_boxplot(&format!("{model}: latency per inference"), &rows)?,
            caption: format!(
                "Measured latency of each timed inference of {model} (host monotonic clock); box = quartiles, \
                 whiskers = Tukey fences at 1.5 IQR, cross = p99."
            ),
        });
    }

    out.extend(knees(&ok)?);
    out.extend(tpot_charts(&ok)?);

    let mut speedups = Vec::new();
    for (run, prefix, c) in &ok {
        match reference_p50(run, c) {
            Some(reference) => {
                let p50 = c.latency_ms.as_ref().map(|l| l.p50).unwrap_or(f64::NAN);
                speedups.push(Bar { label: format!("{prefix}{}", cell_label(c)), value: reference / p50, estimated: false });
            }
            None => notes.push(format!(
                "No speedup for {prefix}{}: its run has no {} {}:{} cell of {} with the same threads and scenario.",
                cell_label(c),
                REFERENCE.0,
                REFERENCE.1,
                REFERENCE.2,
                c.model.name
            )),
        }
    }
    if !speedups.is_empty() {
        out.push(Chart {
            id: "speedup".into(),
            svg: charts::bars(
                "Speedup against fp32 on tract:cpu (median latency ratio)",
                "speedup (reference p50 / cell p50); line at 1 = as fast as the reference",
                &speedups,
                Some(1.0),
                "×",
            )?,
            caption: "Derived from measured medians of the same run: reference p50 / cell p50; above 1 is faster."
                .into(),
        });
    }

    for model in &models {
        let points: Vec<ParetoPoint> = ok
            .iter()
            .filter(|(_, _, c)| c.model.name == *model)
            .filter_map(|(_, prefix, c)| {
                Some(ParetoPoint {
                    label: format!("{prefix}{}", cell_label(c)),
                    x: c.latency_ms.as_ref()?.p50,
                    loss: 1.0 - c.accuracy.as_ref()?.cosine,
                })
            })
            .collect();
        if points.is_empty() {
            notes.push(format!("No accuracy-against-latency chart for {model}: no cell has an accuracy measurement."));
            continue;
        }
        out.push(Chart {
            id: format!("pareto-{}", slug(model)),
            svg: charts::pareto(&format!("{model}: median latency against accuracy loss"), "p50 latency, ms", &points)?,
            caption: format!(
                "Measured p50 latency against the measured accuracy loss (1 - cosine similarity of the outputs \
                 against tract:cpu fp32 on the same inputs) of {model}; the line joins the cells no other cell \
                 beats on both."
            ),
        });
    }
    for model in &models {
        let points: Vec<ParetoPoint> = ok
            .iter()
            .filter(|(_, _, c)| c.model.name == *model)
            .filter_map(|(_, prefix, c)| {
                Some(ParetoPoint {
                    label: format!("{prefix}{}{}", cell_label(c), estimate_mark(c)),
                    x: c.energy.as_ref()?.joules_per_inference * 1e3,
                    loss: 1.0 - c.accuracy.as_ref()?.cosine,
                })
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        out.push(Chart {
            id: format!("pareto-energy-{}", slug(model)),
            svg: charts::pareto(
                &format!("{model}: energy per inference against accuracy loss"),
                "energy per inference, mJ",
                &points,
            )?,
            caption: format!(
                "Energy per inference of {model} as recorded with its method (cells marked (estimated) are \
                 estimates, not measurements) against the measured accuracy loss."
            ),
        });
    }

    let energy: Vec<Bar> = ok
        .iter()
        .filter_map(|(_, prefix, c)| {
            let e = c.energy.as_ref()?;
            Some(Bar {
                label: format!("{prefix}{}", cell_label(c)),
                value: e.joules_per_inference * 1e3,
                estimated: e.is_estimate(),
            })
        })
        .collect();
    if !energy.is_empty() {
        let methods: BTreeSet<&str> = ok
            .iter()
            .filter_map(|(_, _, c)| c.energy.as_ref())
            .map(|e| e.method.as_str())
            .collect();
        out.push(Chart {
            id: "energy".into(),
            svg: charts::bars("Energy per inference", "millijoules per inference", &energy, None, " mJ")?,
            caption: format!(
                "Energy per inference over the timed loop; methods: {}. Orange bars marked (estimated) are \
                 estimates from a model, not sensor readings.",
                methods.into_iter().collect::<Vec<_>>().join(", ")
            ),
        });
    }

    for (i, run) in runs.iter().enumerate() {
        let cells: Vec<&CellResult> = run
            .cells
            .iter()
            .filter(|c| c.status == Status::Ok && c.roofline.is_some())
            .collect();
        if cells.is_empty() {
            continue;
        }
        let tag = if runs.len() > 1 {
            format!("#{} ", i + 1)
        } else {
            String::new()
        };
        let points: Vec<RooflinePoint> = cells
            .iter()
            .filter_map(|c| {
                let r = c.roofline.as_ref()?;
                let share = r
                    .fraction_of_bound
                    .map(|f| format!(" ({:.0} % of bound)", f * 100.0))
                    .unwrap_or_default();
                Some(RooflinePoint {
                    label: format!("{}{share}", cell_label(c)),
                    intensity: r.arithmetic_intensity,
                    achieved_gflops: r.achieved_gflops,
                })
            })
            .collect();
        let ceilings = implied_ceilings(&cells);
        let sources: BTreeSet<&str> = cells
            .iter()
            .filter_map(|c| c.roofline.as_ref())
            .map(|r| r.ceilings.as_str())
            .collect();
        out.push(Chart {
            id: format!("roofline-{}", i + 1),
            svg: charts::roofline(&format!("{tag}Roofline of {}", run.host.cpu_brand), &points, &ceilings)?,
            caption: format!(
                "Achieved throughput (derived: 2 x MACs / measured median latency) at each cell's arithmetic \
                 intensity, under the ceilings of this host as its cells' bounds imply them; ceilings: {}.",
                sources.into_iter().collect::<Vec<_>>().join("; ")
            ),
        });
    }
    Ok((out, notes))
}

/// Per model, device and load-generator scenario with at least two points: latency against
/// throughput over the batch and concurrency sweep.
fn knees(ok: &[(&RunResult, String, &CellResult)]) -> Result<Vec<Chart>> {
    let mut groups: Vec<(String, Vec<KneePoint>)> = Vec::new();
    for (result, prefix, c) in ok {
        let (Some(run), Some(point)) = (&c.scenario_run, &c.scenario_point) else {
            continue;
        };
        let key = format!(
            "{prefix}{} {} on {}:{}, {}",
            c.model.name, c.model.variant, c.backend.name, c.backend.device, c.scenario
        );
        let knee = KneePoint {
            label: point.clone(),
            throughput: run.throughput.samples_per_s,
            p50: run.query_latency_ms.p50,
            p99: run.query_latency_ms.p99,
            peak: crate::peaks::peak_of(result, c).is_some(),
        };
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, points)) => points.push(knee),
            None => groups.push((key, vec![knee])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, points)| points.len() >= 2)
        .map(|(key, points)| {
            Ok(Chart {
                id: format!("knee-{}", slug(&key)),
                svg: charts::knee(&format!("{key}: latency against throughput"), &points)?,
                caption: format!(
                    "Each point is a cell of the sweep (b = batch, c = concurrency, q = target QPS; \
                     peakN-pM: probe M of --find-peak search N, the ringed one the highest rate \
                     VALID under the latency bound). Throughput: samples completed / (last query's end - first query's issue); latency: \
                     each query from its scheduled arrival to its end (queueing included); both on the \
                     monotonic clock. {key}."
                ),
            })
        })
        .collect()
}

/// Per model whose generate cells ran at two prompt lengths or more: TPOT against prompt length,
/// a series per variant, device and batch.
fn tpot_charts(ok: &[(&RunResult, String, &CellResult)]) -> Result<Vec<Chart>> {
    let mut models: Vec<(String, Vec<TpotSeries>)> = Vec::new();
    for (_, prefix, c) in ok {
        let Some(g) = &c.generation else {
            continue;
        };
        let model = format!("{prefix}{}", c.model.name);
        let label = format!(
            "{} {}:{} b{}",
            c.model.variant, c.backend.name, c.backend.device, g.batch
        );
        let point = (g.prompt_tokens as f64, g.tpot_ms.p50, g.tpot_ms.p99);
        let index = match models.iter().position(|(m, _)| *m == model) {
            Some(i) => i,
            None => {
                models.push((model, Vec::new()));
                models.len() - 1
            }
        };
        let series = &mut models[index].1;
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(point),
            None => series.push(TpotSeries {
                label,
                points: vec![point],
            }),
        }
    }
    models
        .into_iter()
        .filter(|(_, series)| series.iter().any(|s| s.points.len() >= 2))
        .map(|(model, series)| {
            Ok(Chart {
                id: format!("tpot-{}", slug(&model)),
                svg: charts::tpot_by_prompt(
                    &format!("{model}: time per output token against prompt length"),
                    &series,
                )?,
                caption: format!(
                    "Each point is a generate cell: the median time per output token over every \
                     decode step of its requests, the bar up to its p99, on the monotonic clock \
                     (from one token chosen to the next: the step's inputs, the inference with \
                     the cache fed back, the greedy choice). {model}."
                ),
            })
        })
        .collect()
}

/// The ceilings behind the cells' roofline bounds: a memory-bound cell's bound is intensity x
/// bandwidth, a compute-bound cell's bound is the peak of its precision.
fn implied_ceilings(cells: &[&CellResult]) -> Ceilings {
    let mut bandwidths = Vec::new();
    let mut peaks: Vec<(String, f64)> = Vec::new();
    for r in cells.iter().filter_map(|c| c.roofline.as_ref()) {
        match (r.bound_by.as_deref(), r.bound_gflops) {
            (Some("memory"), Some(bound)) if r.arithmetic_intensity > 0.0 => {
                bandwidths.push(bound / r.arithmetic_intensity)
            }
            (Some("compute"), Some(bound)) if !peaks.iter().any(|(p, _)| *p == r.precision) => {
                peaks.push((r.precision.clone(), bound))
            }
            _ => {}
        }
    }
    bandwidths.sort_by(f64::total_cmp);
    let bandwidth_gbs =
        (!bandwidths.is_empty()).then(|| chipbench_core::stats::percentile(&bandwidths, 0.5));
    Ceilings {
        bandwidth_gbs,
        peaks,
    }
}

fn estimate_mark(cell: &CellResult) -> &'static str {
    match &cell.energy {
        Some(e) if e.is_estimate() => " (estimated)",
        _ => "",
    }
}

/// The p50 of the reference cell for `cell` in the same run: same model, scenario and threads.
fn reference_p50(run: &RunResult, cell: &CellResult) -> Option<f64> {
    run.cells
        .iter()
        .find(|r| {
            r.status == Status::Ok
                && r.model.name == cell.model.name
                && (
                    r.model.variant.as_str(),
                    r.backend.name.as_str(),
                    r.backend.device.as_str(),
                ) == REFERENCE
                && r.scenario == cell.scenario
                && r.backend.threads == cell.backend.threads
        })
        .and_then(|r| r.latency_ms.as_ref())
        .map(|l| l.p50)
}

/// Renders the page; also what `chipbench report --format html` writes.
pub fn page(runs: &[RunResult]) -> Result<String> {
    page_with(runs, &crate::fleet::FleetContext::default())
}

/// [`page`], with the fleet section of a merged run drawn with what `fleet` knows of its devices
/// and prices.
pub fn page_with(runs: &[RunResult], fleet: &crate::fleet::FleetContext) -> Result<String> {
    let (charts, notes) = charts(runs)?;
    let mut html =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<title>chipbench report</title>\n<style>\n");
    html.push_str(CSS);
    html.push_str("</style>\n</head>\n<body>\n<h1>chipbench report</h1>\n");
    html.push_str(&runs_section(runs));
    html.push_str(&table_section(runs));
    for run in runs {
        html.push_str(&crate::fleet::html(run, fleet)?);
    }
    html.push_str("<h2>Charts</h2>\n");
    for chart in &charts {
        html.push_str(&format!(
            "<figure class=\"chart\" id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            chart.id,
            chart.svg.trim(),
            escape(&chart.caption)
        ));
    }
    if !notes.is_empty() {
        html.push_str("<ul class=\"notes\">\n");
        for n in &notes {
            html.push_str(&format!("<li>{}</li>\n", escape(n)));
        }
        html.push_str("</ul>\n");
    }
    html.push_str(&projections_section(runs));
    html.push_str(&provenance_section(runs));
    html.push_str(&format!(
        "<footer>Written by chipbench-report {}. Self-contained: no scripts, nothing loaded from the network.</footer>\n",
        env!("CARGO_PKG_VERSION")
    ));
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// How many chart `<svg>` elements [`page`] draws for these runs.
pub fn chart_count(runs: &[RunResult]) -> Result<usize> {
    Ok(charts(runs)?.0.len())
}

fn runs_section(runs: &[RunResult]) -> String {
    let mut out = String::from("<h2>Runs</h2>\n<ul class=\"runs\">\n");
    for (i, r) in runs.iter().enumerate() {
        let h = &r.host;
        let tag = if runs.len() > 1 {
            format!("#{} ", i + 1)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<li><b>{}</b><code>{}</code>: {} ({} logical cores, {}), {} {}, fingerprint <code>{}</code>; \
             chipbench {}, started {}{}</li>\n",
            escape(&tag),
            escape(&r.run_id),
            escape(&h.cpu_brand),
            h.logical_cores,
            crate::format_bytes(h.memory_bytes as f64),
            escape(&h.os),
            escape(&h.kernel),
            escape(&h.fingerprint),
            escape(&r.tool_version),
            escape(&r.started_at),
            if r.config.quick { " (--quick)" } else { "" }
        ));
    }
    out.push_str("</ul>\n");
    out
}

/// A figure with its origin badge and the provenance text as a tooltip.
fn figure_cell(cell: &CellResult, group: &str, value: Option<String>) -> String {
    match value {
        None => "<td class=\"num\">-</td>".into(),
        Some(v) => {
            let p = provenance(cell, group);
            format!(
                "<td class=\"num\" title=\"{}\">{v} <span class=\"origin {}\">{}</span></td>",
                escape(&p.text),
                p.origin.label().replace(' ', "-"),
                badge(p.origin)
            )
        }
    }
}

fn badge(origin: Origin) -> &'static str {
    match origin {
        Origin::Measured => "M",
        Origin::Derived => "D",
        Origin::Estimated => "E",
        Origin::Projected => "P",
        Origin::NotMeasured => "-",
        Origin::Unstated => "?",
    }
}

fn table_section(runs: &[RunResult]) -> String {
    let mut out = String::from(
        "<h2>Cells</h2>\n<p class=\"legend\">Badges: <span class=\"origin measured\">M</span> measured, \
         <span class=\"origin derived\">D</span> derived from measurements, <span class=\"origin estimated\">E</span> \
         estimated, <span class=\"origin projected\">P</span> projected, <span class=\"origin unstated\">?</span> \
         provenance not recorded. Hover a figure for how it was obtained.</p>\n<table>\n<thead><tr>\
         <th>cell</th><th>status</th><th>n</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>inf/s</th>\
         <th>CPU ms/inf</th><th>peak RSS</th><th>1 - cosine</th><th>task vs fp32</th><th>mJ/inf</th></tr></thead>\n<tbody>\n",
    );
    for (_, prefix, c) in cells_with_runs(runs) {
        let l = c.latency_ms.as_ref();
        let status = match (&c.status, &c.error) {
            (Status::Ok, _) => "ok".to_string(),
            (s, e) => format!(
                "{}: {}",
                format!("{s:?}").to_lowercase(),
                e.as_deref().unwrap_or("no reason recorded")
            ),
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td class=\"status\">{}</td>{}{}{}{}{}{}{}{}{}{}</tr>\n",
            escape(&format!("{prefix}{}", cell_label(c))),
            escape(&status),
            figure_cell(c, "latency_ms", l.map(|l| l.n.to_string())),
            figure_cell(c, "latency_ms", l.map(|l| fmt_ms(l.p50))),
            figure_cell(c, "latency_ms", l.map(|l| fmt_ms(l.p90))),
            figure_cell(c, "latency_ms", l.map(|l| fmt_ms(l.p99))),
            figure_cell(
                c,
                "throughput_per_s",
                c.throughput_per_s.map(|t| format!("{t:.1}"))
            ),
            figure_cell(
                c,
                "cpu_ms_per_inference",
                c.cpu_ms_per_inference.map(fmt_ms)
            ),
            figure_cell(
                c,
                "peak_rss_bytes",
                c.peak_rss_bytes.map(|b| crate::format_bytes(b as f64))
            ),
            figure_cell(
                c,
                "accuracy",
                c.accuracy
                    .as_ref()
                    .map(|a| format!("{:.1e}", 1.0 - a.cosine))
            ),
            figure_cell(
                c,
                "task_accuracy",
                c.accuracy
                    .as_ref()
                    .and_then(|a| a.task.as_ref())
                    .map(|t| t.short())
            ),
            figure_cell(
                c,
                "energy",
                c.energy
                    .as_ref()
                    .map(|e| charts::significant(e.joules_per_inference * 1e3))
            ),
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// Roofline projections onto chips the run did not measure: a table apart, labelled as such.
fn projections_section(runs: &[RunResult]) -> String {
    let mut out = String::new();
    for (i, run) in runs.iter().enumerate() {
        let Some(p) = &run.projections else { continue };
        if p.entries.is_empty() {
            continue;
        }
        let tag = if runs.len() > 1 {
            format!(" (run #{})", i + 1)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "<h2>Projections{tag}: {} <span class=\"origin projected\">P</span></h2>\n<p class=\"legend\">{} \
             Not measured: lower bounds from datasheet figures.</p>\n<table>\n<thead><tr><th>model</th><th>variant</th>\
             <th>chip</th><th>class</th><th>latency lower bound ms</th><th>bound by</th><th>energy mJ</th><th>note</th>\
             </tr></thead>\n<tbody>\n",
            escape(&p.label),
            escape(&p.method)
        ));
        for e in &p.entries {
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>\n",
                escape(&e.model),
                escape(&e.variant),
                escape(&e.chip_name),
                escape(&e.class),
                e.latency_lower_bound_ms.map(charts::significant).unwrap_or_else(|| "-".into()),
                escape(e.bound_by.as_deref().unwrap_or("-")),
                e.energy_j.map(|j| charts::significant(j * 1e3)).unwrap_or_else(|| "-".into()),
                escape(e.note.as_deref().unwrap_or(""))
            ));
        }
        out.push_str("</tbody>\n</table>\n");
    }
    out
}

fn provenance_section(runs: &[RunResult]) -> String {
    let mut out =
        String::from("<h2>How each figure was obtained</h2>\n<dl class=\"provenance\">\n");
    let mut by_group: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (_, _, c) in cells_with_runs(runs)
        .into_iter()
        .filter(|(_, _, c)| c.status == Status::Ok)
    {
        for group in GROUPS.into_iter().filter(|g| has_group(c, g)) {
            by_group
                .entry(group)
                .or_default()
                .insert(provenance(c, group).text);
        }
    }
    for group in GROUPS {
        let Some(texts) = by_group.get(group) else {
            continue;
        };
        out.push_str(&format!("<dt><code>{group}</code></dt>\n"));
        for t in texts {
            out.push_str(&format!("<dd>{}</dd>\n", escape(t)));
        }
    }
    out.push_str("</dl>\n");
    out
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1180px;\
color:#1b1f24;background:#fff}\nh1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ddd}\n\
table{border-collapse:collapse;font-size:.88em;width:100%}th,td{padding:3px 8px;border-bottom:1px solid #eee;\
text-align:left}td.num{text-align:right;white-space:nowrap}td.status{max-width:22em}\n\
.origin{display:inline-block;font-size:.7em;font-weight:bold;border-radius:3px;padding:0 3px;color:#fff}\n\
.origin.measured{background:#2e7d32}.origin.derived{background:#1565c0}.origin.estimated{background:#ef6c00}\n\
.origin.projected{background:#6a1b9a}.origin.unstated,.origin.not-measured{background:#757575}\n\
figure.chart{margin:1.5em 0}figure.chart svg{max-width:100%;height:auto;display:block}\n\
figcaption{font-size:.85em;color:#555}.notes{font-size:.85em;color:#555}\n\
dl.provenance dd{font-size:.85em;margin-bottom:.3em}footer{margin-top:3em;font-size:.8em;color:#777}\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::sample_run;

    /// A sweep of an offline scenario draws its knee: latency against throughput, one chart
    /// per model, device and scenario.
    #[test]
    fn a_load_generator_sweep_draws_latency_against_throughput() {
        use crate::test_support::{cell, load_generated, lognormal_samples, run_with};
        let point = |p: &str, median: f64, rate: f64, seed: u64| {
            let samples = lognormal_samples(median, 0.1, 300, seed);
            load_generated(
                cell("m", "fp32", "tract", samples, None),
                "offline",
                p,
                vec![rate; 10],
            )
        };
        let run = run_with(
            "a",
            vec![
                point("b1-c1", 1.0, 900.0, 1),
                point("b1-c2", 1.5, 1300.0, 2),
                point("b4-c2", 6.0, 1400.0, 3),
            ],
        );
        let html = page(std::slice::from_ref(&run)).unwrap();
        assert_eq!(html.matches("id=\"knee-").count(), 1, "{html}");
        assert!(html.contains("m fp32 on tract:cpu, offline: latency against throughput"));
        for label in ["b1-c1", "b1-c2", "b4-c2"] {
            assert!(html.contains(label), "{label}");
        }
        // One point is no curve: a single cell draws none.
        let single = run_with("b", vec![point("b1-c1", 1.0, 900.0, 1)]);
        assert!(!page(&[single]).unwrap().contains("knee-"));
    }

    #[test]
    fn page_holds_one_svg_per_chart_and_no_external_resource() {
        let run = sample_run();
        let html = page(std::slice::from_ref(&run)).unwrap();
        // Two models: two box plots, one speedup chart, two latency Pareto charts; energy on the
        // mlp cells: one energy Pareto chart and the energy bars; one roofline.
        assert_eq!(chart_count(std::slice::from_ref(&run)).unwrap(), 8);
        assert_eq!(html.matches("<svg").count(), 8);
        assert_eq!(html.matches("<figure class=\"chart\"").count(), 8);
        assert!(html.contains("(estimated)"), "estimated energy is labelled");
        for forbidden in ["<script", "http://", "https://", "<link", "@import", "url("] {
            let hits: Vec<&str> = html
                .match_indices(forbidden)
                .map(|(i, _)| &html[i..(i + 60).min(html.len())])
                .collect();
            // The only URL allowed is the SVG namespace, which browsers never fetch.
            assert!(
                hits.iter()
                    .all(|h| h.starts_with("http://www.w3.org/2000/svg")),
                "{forbidden}: {hits:?}"
            );
        }
        assert!(
            html.contains("unsupported operator QLinearAdd"),
            "failed cells show their reason"
        );
        assert!(html.contains("class=\"origin measured\""));
    }

    #[test]
    fn a_partly_estimated_energy_figure_is_drawn_as_an_estimate() {
        let with_method = |method: &str| {
            let mut run = sample_run();
            for e in run.cells.iter_mut().filter_map(|c| c.energy.as_mut()) {
                e.method = method.into();
            }
            let (charts, _) = charts(std::slice::from_ref(&run)).unwrap();
            let svg = |id: &str| charts.iter().find(|c| c.id == id).unwrap().svg.clone();
            (svg("energy"), svg("pareto-energy-mlp"))
        };
        let (bars, pareto) = with_method("measured:hwmon + estimated:cpu-time x active-power");
        // Three mlp cells carry energy: each bar and each point is marked.
        assert_eq!(bars.matches("(estimated)").count(), 3, "{bars}");
        // The estimate colour of `charts::bars`, RGB(240, 170, 80).
        assert_eq!(bars.matches("fill=\"#F0AA50\"").count(), 3, "{bars}");
        assert_eq!(pareto.matches("(estimated)").count(), 3, "{pareto}");
        let (bars, pareto) = with_method("measured:rapl");
        assert!(!bars.contains("(estimated)") && !pareto.contains("(estimated)"));
        assert!(!bars.contains("#F0AA50"), "{bars}");
    }

    #[test]
    fn ceilings_come_from_the_bounds() {
        let run = sample_run();
        let cells: Vec<&CellResult> = run.cells.iter().filter(|c| c.roofline.is_some()).collect();
        let c = implied_ceilings(&cells);
        assert_eq!(
            c.bandwidth_gbs,
            Some(20.0),
            "memory bound 10 GFLOP/s at 0.5 FLOP/byte"
        );
        assert_eq!(c.peaks, vec![("fp32".to_string(), 150.0)]);
    }

    #[test]
    fn speedup_is_against_the_reference_of_the_same_run() {
        let run = sample_run();
        let int8 = &run.cells[1];
        let fp32 = &run.cells[0];
        let expected = fp32.latency_ms.as_ref().unwrap().p50;
        assert_eq!(reference_p50(&run, int8), Some(expected));
        let mut other = run.clone();
        other.cells.remove(0);
        assert_eq!(reference_p50(&other, &other.cells[0]), None);
    }
}
