//! The generate scenario's figures in the reports: per cell, time to first token, time per
//! output token, end-to-end time, prompt and generated tokens per second, the cache's size, and
//! the generated tokens against the fp32 model's.

use chipbench_core::result::{
    CellResult, GenerationAccuracy, GenerationRun, LatencyVerdict, RunResult,
};

fn generate_cells(run: &RunResult) -> Vec<(&CellResult, &GenerationRun)> {
    run.cells
        .iter()
        .filter_map(|c| c.generation.as_ref().map(|g| (c, g)))
        .collect()
}

fn subject(c: &CellResult) -> String {
    format!(
        "{} {} on {}:{} {}",
        c.model.name,
        c.model.variant,
        c.backend.name,
        c.backend.device,
        c.scenario_point.as_deref().unwrap_or_default()
    )
}

const HOW: &str = "measured on the monotonic clock after an untimed warm-up request, requests \
     one after another or (served) as Poisson arrivals over a pool of sessions; TTFT from a \
     request's arrival (its start, or its scheduled arrival when served) to its first token, TPOT \
     per decode step (every step of every request), prompt and generated tok/s derived per \
     session as tokens over summed time; KV cache: bytes of the present.* tensors at a request's \
     end";

/// `served at 5 req/s (Poisson) by 2 sessions: 4.9 req/s, 80 tok/s all sessions, queue wait p99
/// 3 ms; ttft p99 ≤ 2000 ms VALID (3 of 500 over, 1 allowed)`, for a served cell.
fn serving(c: &CellResult, g: &GenerationRun) -> Option<String> {
    let s = g.serving.as_ref()?;
    let run = c.scenario_run.as_ref()?;
    let verdicts: Vec<String> = s
        .verdicts
        .iter()
        .map(|v| format!("{} {}", v.metric, verdict(&v.verdict)))
        .collect();
    Some(format!(
        "served at {} req/s (Poisson) by {} sessions: {:.3} req/s, {:.0} tok/s all sessions, \
         queue wait p99 {} ms{}",
        run.target_qps.map_or_else(|| "-".into(), |q| q.to_string()),
        run.concurrency,
        run.throughput.samples_per_s / g.batch as f64,
        s.gen_tokens_per_s,
        crate::fmt_ms(run.queue_wait_ms.p99),
        if verdicts.is_empty() {
            String::new()
        } else {
            format!("; {}", verdicts.join("; "))
        }
    ))
}

/// `p99 ≤ 2000 ms VALID (3 of 500 over, 5 allowed)`.
fn verdict(v: &LatencyVerdict) -> String {
    format!(
        "p{} ≤ {} ms {} ({} of {} over, {} allowed)",
        v.percentile * 100.0,
        crate::fmt_ms(v.bound_ms),
        if v.valid { "VALID" } else { "INVALID" },
        v.over_bound,
        v.queries,
        v.allowed_over_bound
            .map_or_else(|| "too few to be VALID, none".into(), |a| a.to_string())
    )
}

/// One line per generate cell, for the terminal.
pub fn terminal(run: &RunResult) -> Option<String> {
    let cells = generate_cells(run);
    if cells.is_empty() {
        return None;
    }
    let mut out = format!("\ngenerate ({HOW}):\n");
    for (c, g) in cells {
        out.push_str(&format!(
            "  {}: {} requests; TTFT p50 {} ms p99 {} ms; TPOT p50 {} ms p90 {} ms p99 {} ms; \
             end-to-end p50 {} ms; prompt {:.0} tok/s, generated {:.0} tok/s; KV cache {}\n",
            subject(c),
            g.requests,
            crate::fmt_ms(g.ttft_ms.p50),
            crate::fmt_ms(g.ttft_ms.p99),
            crate::fmt_ms(g.tpot_ms.p50),
            crate::fmt_ms(g.tpot_ms.p90),
            crate::fmt_ms(g.tpot_ms.p99),
            crate::fmt_ms(g.end_to_end_ms.p50),
            g.prompt_tokens_per_s,
            g.gen_tokens_per_s,
            crate::format_bytes(g.kv_cache_bytes as f64),
        ));
        if let Some(line) = serving(c, g) {
            out.push_str(&format!("    {line}\n"));
        }
        if let Some(a) = &g.accuracy {
            out.push_str(&format!(
                "    against {}: {}\n",
                a.reference,
                against_fp32(a)
            ));
        }
    }
    Some(out)
}

/// Tokens equal to the reference's, where the first difference came, the logits' lowest cosine
/// and the prompts' perplexity on both sides.
fn against_fp32(a: &GenerationAccuracy) -> String {
    let differing: Vec<usize> = a.first_difference.iter().flatten().copied().collect();
    let first = match differing.iter().min() {
        None => "none differs".to_string(),
        Some(f) => format!(
            "{} of {} sequences differ, the earliest at token {f}",
            differing.len(),
            a.sequences
        ),
    };
    let perplexity = match (a.perplexity, a.reference_perplexity) {
        (Some(p), Some(r)) => format!("; prompt perplexity {p:.4} (fp32 {r:.4}, {:+.4})", p - r),
        _ => String::new(),
    };
    format!(
        "tokens identical {:.1} % ({first}); logits cosine min {:.6}{perplexity}",
        100.0 * a.identical_tokens,
        a.logits_cosine_min
    )
}

/// A table with a row per generate cell, for `report.md`.
pub fn markdown(run: &RunResult) -> Option<String> {
    let cells = generate_cells(run);
    if cells.is_empty() {
        return None;
    }
    let mut out = format!(
        "\n## Generation\n\nThe generate scenario: a prefill of the prompt, then greedy decode \
         steps with the KV cache fed back; {HOW}.\n\n\
         | model | backend | point | requests | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p90 ms \
         | TPOT p99 ms | end-to-end p50 ms | prompt tok/s | generated tok/s | KV cache | peak RSS |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for (c, g) in cells {
        out.push_str(&format!(
            "| {} {} | {}:{} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} | {} |\n",
            c.model.name,
            c.model.variant,
            c.backend.name,
            c.backend.device,
            c.scenario_point.as_deref().unwrap_or_default(),
            g.requests,
            crate::fmt_ms(g.ttft_ms.p50),
            crate::fmt_ms(g.ttft_ms.p99),
            crate::fmt_ms(g.tpot_ms.p50),
            crate::fmt_ms(g.tpot_ms.p90),
            crate::fmt_ms(g.tpot_ms.p99),
            crate::fmt_ms(g.end_to_end_ms.p50),
            g.prompt_tokens_per_s,
            g.gen_tokens_per_s,
            crate::format_bytes(g.kv_cache_bytes as f64),
            c.peak_rss_bytes
                .map_or_else(|| "-".into(), |b| crate::format_bytes(b as f64)),
        ));
    }
    let compared: Vec<String> = generate_cells(run)
        .into_iter()
        .filter_map(|(c, g)| {
            let a = g.accuracy.as_ref()?;
            Some(format!(
                "- {} against {}: {}\n",
                subject(c),
                a.reference,
                against_fp32(a)
            ))
        })
        .collect();
    let served: Vec<String> = generate_cells(run)
        .into_iter()
        .filter_map(|(c, g)| Some(format!("- {}: {}\n", subject(c), serving(c, g)?)))
        .collect();
    if !served.is_empty() {
        out.push_str(
            "\nServed runs (requests arriving as a Poisson process, each served by the first free \
             session; TTFT counts the wait; verdicts by MLPerf's early stopping at 99 % \
             confidence, one observation per request):\n\n",
        );
        out.push_str(&served.concat());
    }
    if !compared.is_empty() {
        out.push_str(
            "\nGenerated tokens against the fp32 model's on the same prompts (each side greedy on \
             its own logits; cosine of the logits while both had been fed the same tokens):\n\n",
        );
        out.push_str(&compared.concat());
    }
    Some(out)
}
