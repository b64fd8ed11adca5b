//! The Markdown summary (`report.md` in every run folder): fits a pull-request comment.

use chipbench_core::result::RunResult;

use crate::{HEADER, LEGEND, NUMERIC, footnotes, format_bytes, rows};

pub fn render(run: &RunResult) -> String {
    render_with(run, &crate::fleet::FleetContext::default())
}

/// [`render`], with the fleet table of a merged run drawn with what `fleet` knows of its devices
/// and prices.
pub fn render_with(run: &RunResult, fleet: &crate::fleet::FleetContext) -> String {
    let h = &run.host;
    let mut out = format!("# chipbench run `{}`\n\n", run.run_id);
    out.push_str(&format!(
        "Host: {} ({} logical / {} physical cores, {}), {}, kernel {} — fingerprint `{}`.  \n",
        h.cpu_brand,
        h.logical_cores,
        h.physical_cores
            .map(|c| c.to_string())
            .unwrap_or_else(|| "?".into()),
        format_bytes(h.memory_bytes as f64),
        h.os,
        h.kernel,
        h.fingerprint
    ));
    out.push_str(&format!(
        "chipbench {}, started {}, scenario {}, seed {}.\n\n",
        run.tool_version, run.started_at, run.config.scenario, run.config.settings.seed
    ));
    if let Some(line) = crate::host_speed_line(run) {
        out.push_str(&format!("{line}\n\n"));
    }
    if !run.hosts.is_empty() {
        out.push_str(&format!(
            "A fleet run of {} hosts (the host above is its first shard's; each cell's is in the \
             fleet table below).\n\n",
            run.hosts.len()
        ));
    }
    out.push_str(&format!("| {} |\n", HEADER.join(" | ")));
    let align: Vec<&str> = NUMERIC
        .iter()
        .map(|&n| if n { "---:" } else { "---" })
        .collect();
    out.push_str(&format!("|{}|\n", align.join("|")));
    for row in rows(&run.cells) {
        let cells: Vec<String> = row.cells.iter().map(|c| escape(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    let notes = footnotes(&run.cells);
    if !notes.is_empty() {
        out.push('\n');
        for (i, cell) in notes {
            out.push_str(&format!(
                "{i}. {} {} on {}:{}: {}\n",
                escape(&cell.model.name),
                escape(&cell.model.variant),
                cell.backend.name,
                cell.backend.device,
                escape(cell.error.as_deref().unwrap_or("no reason recorded"))
            ));
        }
    }
    let warnings = crate::engine_warnings(&run.cells);
    if !warnings.is_empty() {
        out.push_str("\n**Engine warnings** (as the engine logged them):\n\n");
        for (warning, cells) in warnings {
            out.push_str(&format!(
                "- {} ({})\n",
                escape(warning),
                escape(&cells.join(", "))
            ));
        }
    }
    if let Some(section) = crate::edge::markdown(run) {
        out.push_str(&section);
    }
    if let Some(section) = crate::peaks::markdown(run) {
        out.push_str(&section);
    }
    if let Some(section) = crate::generation::markdown(run) {
        out.push_str(&section);
    }
    task_section(run, &mut out);
    placement_section(run, &mut out);
    profile_section(run, &mut out);
    out.push_str(&crate::fleet::markdown(run, fleet));
    out.push_str(&format!("\n_{LEGEND}_\n"));
    out
}

/// What each cell decided against what the fp32 model decided (zoo models).
fn task_section(run: &RunResult, out: &mut String) {
    let tasks = crate::task_accuracies(&run.cells);
    if tasks.is_empty() {
        return;
    }
    let how = crate::TASK_ACCURACY_HOW;
    out.push_str(&format!(
        "\n## Task accuracy against fp32\n\n{}{}.\n\n| cell | decoding | samples | figures |\n|---|---|---:|---|\n",
        how[..1].to_uppercase(),
        &how[1..]
    ));
    for (label, t) in tasks {
        let figures: Vec<String> = t
            .figures()
            .into_iter()
            .map(|(name, v)| format!("{name} {v}"))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            escape(&label),
            t.decoding,
            t.samples,
            figures.join(", ")
        ));
    }
}

/// Where an engine put the nodes, for cells it spread over several providers (ONNX Runtime falls
/// back to its CPU provider silently for nodes the requested one lacks).
fn placement_section(run: &RunResult, out: &mut String) {
    let spread: Vec<_> = run
        .cells
        .iter()
        .filter_map(|c| c.placement.as_ref().filter(|p| p.len() > 1).map(|p| (c, p)))
        .collect();
    if spread.is_empty() {
        return;
    }
    out.push_str("\n## Node placement\n\n| model | variant | backend | nodes per provider |\n|---|---|---|---|\n");
    for (cell, placement) in spread {
        let nodes: Vec<String> = placement
            .iter()
            .map(|p| format!("{} {}", p.provider, p.nodes))
            .collect();
        out.push_str(&format!(
            "| {} | {} | {}:{} | {} |\n",
            escape(&cell.model.name),
            escape(&cell.model.variant),
            cell.backend.name,
            cell.backend.device,
            nodes.join(", ")
        ));
    }
}

/// The slowest operators of every profiled cell (`bench --operator-times`): why a variant is slower than
/// its source is usually visible here.
fn profile_section(run: &RunResult, out: &mut String) {
    for cell in &run.cells {
        let Some(profile) = &cell.profile else {
            continue;
        };
        out.push_str(&format!(
            "\n## Profile: {} {} on {}:{}\n\nMeasured by the engine's profiler over {} inferences ({:.1} ms in operators).\n\n",
            escape(&cell.model.name),
            escape(&cell.model.variant),
            cell.backend.name,
            cell.backend.device,
            profile.runs,
            profile.total_ms
        ));
        out.push_str("| op type | node | provider | total ms | share |\n|---|---|---|---:|---:|\n");
        for op in &profile.top_operators {
            out.push_str(&format!(
                "| {} | {} | {} | {:.2} | {:.1} % |\n",
                escape(&op.op_type),
                escape(&op.node),
                escape(&op.provider),
                op.total_ms,
                op.share * 100.0
            ));
        }
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use chipbench_core::backend::{NodePlacement, OperatorTime};
    use chipbench_core::result::OperatorProfile;

    use crate::test_support::{cell, lognormal_samples, run_with};

    #[test]
    fn an_engine_warning_is_listed_once_with_every_cell_that_logged_it() {
        let warned = |model: &str| {
            let mut c = cell(
                model,
                "fp32",
                "ort",
                lognormal_samples(1.0, 0.05, 50, 1),
                None,
            );
            c.warnings = vec!["onnxruntime warning: Removing initializer 'w'".into()];
            c
        };
        let run = run_with("r", vec![warned("mlp"), warned("bert-tiny")]);
        for text in [super::render(&run), crate::terminal::render(&run)] {
            assert_eq!(text.matches("Removing initializer").count(), 1, "{text}");
            assert!(
                text.contains("mlp fp32 on ort:cpu, bert-tiny fp32 on ort:cpu"),
                "{text}"
            );
        }
    }

    #[test]
    fn shows_the_slowest_operators_and_a_split_placement() {
        let mut profiled = cell(
            "mobilenet",
            "int8-dynamic",
            "ort",
            lognormal_samples(5.0, 0.02, 50, 1),
            Some(0.99),
        );
        let op = |op_type: &str, ms: f64| OperatorTime {
            op_type: op_type.into(),
            node: format!("{op_type}_0"),
            provider: "CPUExecutionProvider".into(),
            total_ms: ms,
            share: 0.0,
        };
        profiled.profile = Some(OperatorProfile::summarize(
            vec![op("ConvInteger", 30.0), op("Relu", 10.0)],
            40,
            15,
        ));
        profiled.placement = Some(vec![
            NodePlacement {
                provider: "CUDAExecutionProvider".into(),
                nodes: 60,
            },
            NodePlacement {
                provider: "CPUExecutionProvider".into(),
                nodes: 4,
            },
        ]);
        let plain = cell(
            "mlp",
            "fp32",
            "tract",
            lognormal_samples(1.0, 0.02, 50, 2),
            Some(1.0),
        );
        let text = super::render(&run_with("r", vec![profiled, plain]));
        assert!(
            text.contains("## Profile: mobilenet int8-dynamic on ort:"),
            "{text}"
        );
        assert!(
            text.contains(
                "| ConvInteger | ConvInteger_0 | CPUExecutionProvider | 30.00 | 75.0 % |"
            ),
            "{text}"
        );
        assert!(
            text.contains("CUDAExecutionProvider 60, CPUExecutionProvider 4"),
            "{text}"
        );
        assert_eq!(
            text.matches("## Profile").count(),
            1,
            "only profiled cells get a section"
        );
    }

    #[test]
    fn every_format_shows_the_task_accuracy_of_each_cell_that_has_one() {
        use chipbench_core::task::TaskAccuracy;
        let mut pruned = cell(
            "ppocr-rec",
            "prune-unstructured:0.5",
            "tract",
            lognormal_samples(5.0, 0.02, 50, 1),
            Some(0.9),
        );
        pruned.accuracy.as_mut().unwrap().task = Some(TaskAccuracy {
            decoding: "ctc-greedy".into(),
            samples: 8,
            exact_match: Some(0.625),
            cer: Some(0.125),
            ..TaskAccuracy::default()
        });
        pruned.provenance.insert(
            "task_accuracy".into(),
            "measured: greedy CTC strings against tract:cpu fp32's".into(),
        );
        let plain = cell(
            "mlp",
            "fp32",
            "tract",
            lognormal_samples(1.0, 0.02, 50, 2),
            Some(1.0),
        );
        let run = run_with("r", vec![pruned, plain]);
        let md = super::render(&run);
        assert!(
            md.contains(
                "| ppocr-rec prune-unstructured:0.5 on tract:cpu | ctc-greedy | 8 | exact match 0.625, CER 0.125 |"
            ),
            "{md}"
        );
        let terminal = crate::terminal::render(&run);
        assert!(
            terminal.contains("ctc-greedy over 8 samples: exact 0.625 CER 0.125"),
            "{terminal}"
        );
        assert!(!terminal.contains("mlp fp32 on tract:cpu  "), "{terminal}");
        let runs = [run];
        let csv = String::from_utf8(
            crate::export::ExportFormat::Csv
                .exporter()
                .serialize(&runs)
                .unwrap(),
        )
        .unwrap();
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        let column = |name: &str| header.iter().position(|h| *h == name).unwrap();
        assert_eq!(row[column("task_exact_match")], "0.625");
        assert_eq!(row[column("task_cer")], "0.125");
        assert_eq!(row[column("task_top1_agreement")], "");
        // (Provenance columns are quoted where they hold commas: read the last one by its header.)
        assert!(header.last() == Some(&"model_provenance"), "{csv}");
        assert!(
            header.contains(&"task_accuracy_provenance")
                && csv.contains(",measured: greedy CTC strings against tract:cpu fp32's,"),
            "{csv}"
        );
        let html = String::from_utf8(
            crate::export::ExportFormat::Html
                .exporter()
                .serialize(&runs)
                .unwrap(),
        )
        .unwrap();
        assert!(html.contains("exact 0.625 CER 0.125 <span"), "{html}");
    }
}
