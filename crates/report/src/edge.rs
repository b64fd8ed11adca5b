//! The edge-profile section of the terminal and Markdown reports (`bench --edge-profile`): what
//! was emulated and how, whether each model variant fits the device, and the catalog's roofline
//! projection for the profile's chip beside the host timings.

use chipbench_core::result::{CellResult, EdgeEmulation, RunResult, Status};

use crate::{fmt_ms, format_bytes};

/// The section as plain text, or `None` when the run emulated no edge device.
pub fn terminal(run: &RunResult) -> Option<String> {
    let edge = run.config.edge_profile.as_ref()?;
    let (header, rows) = table(run, edge);
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, &w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = format!("\n{}\n", summary(edge));
    out.push_str(&line(&header));
    out.push('\n');
    for row in &rows {
        out.push_str(&line(row));
        out.push('\n');
    }
    for note in &edge.notes {
        out.push_str(&format!("- {note}\n"));
    }
    Some(out)
}

/// The section in Markdown, or `None` when the run emulated no edge device.
pub fn markdown(run: &RunResult) -> Option<String> {
    let edge = run.config.edge_profile.as_ref()?;
    let (header, rows) = table(run, edge);
    let mut out = format!(
        "\n## Edge profile `{}`\n\n{}\n\n",
        edge.profile,
        summary(edge)
    );
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}|\n", vec!["---"; header.len()].join("|")));
    for row in &rows {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    for note in &edge.notes {
        out.push_str(&format!("- {}\n", note.replace('|', "\\|")));
    }
    Some(out)
}

/// The sentence that says what every timing of the run is.
fn summary(edge: &EdgeEmulation) -> String {
    format!(
        "Edge profile {} ({}): {} — at most {} threads, each cell in its own process pinned to \
         {} CPU(s) of this host, memory capped at {} by {}.",
        edge.profile,
        edge.name,
        edge.label,
        edge.cores,
        edge.pinned_cpus.len(),
        format_bytes(edge.memory_cap_bytes as f64),
        edge.memory_limit
    )
}

fn table(run: &RunResult, edge: &EdgeEmulation) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header: Vec<String> = [
        "model",
        "variant",
        "backend",
        "threads",
        "host p50 ms (constrained)",
    ]
    .map(String::from)
    .to_vec();
    header.push(format!(
        "fits {} RAM",
        format_bytes(edge.memory_bytes as f64)
    ));
    header.push("peak RSS".into());
    header.push(format!("peak ({})", edge.memory_limit));
    if let Some(chip) = &edge.chip {
        header.push(format!("{chip} projection (lower bound)"));
    }
    let rows = run
        .cells
        .iter()
        .filter(|c| c.edge.is_some())
        .map(|cell| {
            let fit = cell.edge.as_ref().expect("filtered above");
            let mut row = vec![
                cell.model.name.clone(),
                cell.model.variant.clone(),
                format!("{}:{}", cell.backend.name, cell.backend.device),
                cell.backend
                    .threads
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
                cell.latency_ms
                    .as_ref()
                    .map(|l| fmt_ms(l.p50))
                    .unwrap_or_else(|| "-".into()),
                fits_label(cell, fit.fits, fit.out_of_memory),
                cell.peak_rss_bytes
                    .map(|b| format_bytes(b as f64))
                    .unwrap_or_else(|| "-".into()),
                fit.capped_peak_bytes
                    .map(|b| format_bytes(b as f64))
                    .unwrap_or_else(|| "-".into()),
            ];
            if let Some(chip) = &edge.chip {
                row.push(projection(run, cell, chip));
            }
            row
        })
        .collect();
    (header, rows)
}

fn fits_label(cell: &CellResult, fits: Option<bool>, out_of_memory: bool) -> String {
    match (fits, out_of_memory) {
        (Some(true), _) => "yes".into(),
        (Some(false), true) => "no (out of memory)".into(),
        (Some(false), false) => "no (above the RAM)".into(),
        (None, true) => "? (out of memory under a smaller cap)".into(),
        (None, false) if cell.status == Status::Ok => "? (peak RSS not measured)".into(),
        (None, false) => "? (the cell failed)".into(),
    }
}

/// The projection of the cell's model variant onto the profile's chip: its latency lower bound,
/// or why there is none.
fn projection(run: &RunResult, cell: &CellResult, chip: &str) -> String {
    let entry = run.projections.as_ref().and_then(|p| {
        p.entries.iter().find(|e| {
            e.chip == chip && e.model == cell.model.name && e.variant == cell.model.variant
        })
    });
    match entry {
        None => "- (none: the cell did not run, or its MACs are unknown)".into(),
        Some(e) => match (e.latency_lower_bound_ms, &e.note) {
            (Some(ms), note) => format!(
                ">= {} ms ({}-bound){}",
                fmt_ms(ms),
                e.bound_by.as_deref().unwrap_or("?"),
                note.as_ref().map(|n| format!("; {n}")).unwrap_or_default()
            ),
            (None, Some(note)) => format!("- ({note})"),
            (None, None) => "-".into(),
        },
    }
}
