//! The table printed at the end of `chipbench bench`.

use chipbench_core::result::RunResult;

use crate::{HEADER, LEGEND, NUMERIC, footnotes, rows};

/// A plain-text table with aligned columns, followed by the reasons of failed or skipped cells
/// and how the figures were obtained.
pub fn render(run: &RunResult) -> String {
    let rows = rows(&run.cells);
    let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(&row.cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .zip(NUMERIC)
            .map(|((c, &w), numeric)| {
                if numeric {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        padded.join("  ").trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(&HEADER.map(String::from)));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(&row.cells));
        out.push('\n');
    }
    for (i, cell) in footnotes(&run.cells) {
        out.push_str(&format!(
            "[{i}] {} {} on {}:{}: {}\n",
            cell.model.name,
            cell.model.variant,
            cell.backend.name,
            cell.backend.device,
            cell.error.as_deref().unwrap_or("no reason recorded")
        ));
    }
    let tasks = crate::task_accuracies(&run.cells);
    if !tasks.is_empty() {
        out.push_str(&format!(
            "\ntask accuracy against fp32 ({}):\n",
            crate::TASK_ACCURACY_HOW
        ));
        let width = tasks.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, t) in tasks {
            out.push_str(&format!(
                "  {label:<width$}  {} over {} samples: {}\n",
                t.decoding,
                t.samples,
                t.short()
            ));
        }
    }
    let warnings = crate::engine_warnings(&run.cells);
    if !warnings.is_empty() {
        out.push_str("\nengine warnings (as the engine logged them):\n");
        for (warning, cells) in warnings {
            out.push_str(&format!("  {warning} ({})\n", cells.join(", ")));
        }
    }
    if let Some(section) = crate::edge::terminal(run) {
        out.push_str(&section);
    }
    if let Some(section) = crate::peaks::terminal(run) {
        out.push_str(&section);
    }
    if let Some(section) = crate::generation::terminal(run) {
        out.push_str(&section);
    }
    out.push('\n');
    if let Some(line) = crate::host_speed_line(run) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(LEGEND);
    out.push('\n');
    out
}
