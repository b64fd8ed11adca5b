//! A comparison for people: a plain-text table for the terminal and Markdown for a pull-request
//! comment. The JSON form is the serde form of [`Comparison`].

use super::comparison::{CellComparison, Comparison, Verdict};
use super::format::{fmt_p, signed_pct};
use super::peaks::PeakComparison;
use super::settings::Metric;

fn figure(v: f64, metric: Metric) -> String {
    if v.is_nan() {
        "-".into()
    } else if metric == Metric::Throughput {
        format!("{v:.1}")
    } else if metric == Metric::Energy {
        crate::charts::significant(v)
    } else {
        crate::fmt_ms(v)
    }
}

/// The comparison as a plain-text table for the terminal.
pub fn render_text(c: &Comparison) -> String {
    let mut out = String::new();
    if let Some(w) = &c.host_warning {
        out.push_str(&format!("WARNING: {w}\n\n"));
    }
    out.push_str(&format!(
        "baseline {}  ->  current {}\n",
        c.baseline, c.current
    ));
    out.push_str(&format!("{}\n\n", summary(c)));
    let header = [
        "cell", "metric", "baseline", "current", "change", "95% CI", "p", "verdict",
    ];
    let rows: Vec<[String; 8]> = c
        .cells
        .iter()
        .map(|r| {
            [
                r.key.to_string(),
                r.metric.name().to_string(),
                format!("{} {}", figure(r.baseline, r.metric), r.metric.unit()),
                format!("{} {}", figure(r.current, r.metric), r.metric.unit()),
                if r.ratio.is_nan() {
                    "-".into()
                } else {
                    signed_pct(r.ratio)
                },
                if r.ci95.0.is_nan() {
                    "-".into()
                } else {
                    format!("{} .. {}", signed_pct(r.ci95.0), signed_pct(r.ci95.1))
                },
                fmt_p(r.p_value),
                r.verdict.label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (s, w))| {
                if i <= 1 || i == 7 {
                    format!("{s:<w$}")
                } else {
                    format!("{s:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    let explained: Vec<&CellComparison> = c
        .cells
        .iter()
        .filter(|r| r.verdict != Verdict::Unchanged || !r.notes.is_empty())
        .collect();
    if !explained.is_empty() {
        out.push('\n');
        for r in explained {
            out.push_str(&format!("{}: {}: {}", r.key, r.verdict.label(), r.reason));
            for n in &r.notes {
                out.push_str(&format!("; {n}"));
            }
            out.push('\n');
        }
    }
    out.push_str(&one_sided_text(c));
    out.push_str(&peaks_text(c));
    out.push_str(&format!("\n{}\n", c.settings.describe()));
    out
}

/// The `--find-peak` peaks of both sides, a line each.
fn peaks_text(c: &Comparison) -> String {
    if c.peaks.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("\npeak QPS under the latency bound (--find-peak), baseline -> current:\n");
    for p in &c.peaks {
        out.push_str(&format!("  {}\n", peak_line(p)));
    }
    out
}

fn peak_line(p: &PeakComparison) -> String {
    let side = |v: &[f64]| match v {
        [] => "none".to_string(),
        [one] => format!("{one}"),
        many => {
            let mut sorted = many.to_vec();
            sorted.sort_by(f64::total_cmp);
            format!("{} (median of {})", sorted[sorted.len() / 2], many.len())
        }
    };
    let change = if p.ratio.is_nan() {
        String::new()
    } else {
        format!(" ({})", signed_pct(p.ratio))
    };
    format!(
        "{} under {}: {} -> {} QPS{change}: {}: {}",
        p.key,
        p.bound,
        side(&p.baseline),
        side(&p.current),
        p.verdict.label(),
        p.reason
    )
}

fn summary(c: &Comparison) -> String {
    let mut parts: Vec<String> = [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ]
    .into_iter()
    .map(|v| format!("{} {}", c.count(v), v.label()))
    .collect();
    if !c.not_compared.is_empty() {
        parts.push(format!("{} not compared", c.not_compared.len()));
    }
    if !c.only_in_baseline.is_empty() || !c.only_in_current.is_empty() {
        parts.push(format!(
            "{} only in baseline, {} only in current",
            c.only_in_baseline.len(),
            c.only_in_current.len()
        ));
    }
    parts.join(", ")
}

fn one_sided_text(c: &Comparison) -> String {
    let mut out = String::new();
    for n in &c.not_compared {
        out.push_str(&format!("not compared: {}: {}\n", n.key, n.reason));
    }
    for k in &c.only_in_baseline {
        out.push_str(&format!("only in baseline: {k}\n"));
    }
    for k in &c.only_in_current {
        out.push_str(&format!("only in current: {k}\n"));
    }
    out
}

/// The comparison as GitHub-flavoured Markdown for a pull-request comment.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = String::from("## chipbench comparison\n\n");
    if let Some(w) = &c.host_warning {
        out.push_str(&format!("> **Warning:** {}\n\n", md(w)));
    }
    let headline = if c.regressed() {
        "**Regression detected.**"
    } else {
        "No regression."
    };
    out.push_str(&format!(
        "{headline} {}.  \nBaseline `{}`, current `{}`.\n\n",
        summary(c),
        md(&c.baseline),
        c.current
    ));
    out.push_str(
        "| cell | metric | baseline | current | change | 95 % CI | p | verdict |\n|---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in &c.cells {
        let verdict = match r.verdict {
            Verdict::Regressed => "**regressed**",
            v => v.label(),
        };
        out.push_str(&format!(
            "| {} | {} {} | {} | {} | {} | {} | {} | {verdict} |\n",
            md(&r.key.to_string()),
            r.metric.name(),
            r.metric.unit(),
            figure(r.baseline, r.metric),
            figure(r.current, r.metric),
            if r.ratio.is_nan() {
                "-".into()
            } else {
                signed_pct(r.ratio)
            },
            if r.ci95.0.is_nan() {
                "-".into()
            } else {
                format!("{} .. {}", signed_pct(r.ci95.0), signed_pct(r.ci95.1))
            },
            fmt_p(r.p_value),
        ));
    }
    let explained: Vec<&CellComparison> = c
        .cells
        .iter()
        .filter(|r| r.verdict != Verdict::Unchanged || !r.notes.is_empty())
        .collect();
    if !explained.is_empty() {
        out.push('\n');
        for r in explained {
            let notes: String = r.notes.iter().map(|n| format!("; {}", md(n))).collect();
            out.push_str(&format!(
                "- {}: {}: {}{notes}\n",
                md(&r.key.to_string()),
                r.verdict.label(),
                md(&r.reason)
            ));
        }
    }
    let sided = one_sided_text(c);
    if !c.peaks.is_empty() {
        out.push_str(
            "\n**Peak QPS under the latency bound** (`--find-peak`), baseline -> current:\n\n",
        );
        for p in &c.peaks {
            out.push_str(&format!("- {}\n", md(&peak_line(p))));
        }
    }
    if !sided.is_empty() {
        out.push('\n');
        for line in sided.lines() {
            out.push_str(&format!("- {}\n", md(line)));
        }
    }
    let how = match c.settings.metric {
        _ if c.settings.per_scenario => {
            "latency measured (host monotonic clock, raw samples), throughput derived (samples / wall time)"
        }
        Metric::Throughput => "throughput derived from the timed loop (inferences / wall time)",
        Metric::Energy => {
            "energy per inference as recorded with its method (see the notes: estimated figures are not measurements)"
        }
        _ => "latency measured (host monotonic clock, raw samples)",
    };
    out.push_str(&format!("\n_{how}; {}._\n", md(&c.settings.describe())));
    out
}

fn md(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
