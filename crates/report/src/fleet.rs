//! The fleet table of a merged run (`chipbench merge`): the same model, variant and scenario
//! side by side across hosts and devices, each device with its class from the chip catalog;
//! latency, throughput, energy per inference (measured or estimated, as labelled), inferences
//! per dollar at the user's prices and per watt of the catalog's power figure, and speedups that
//! name the host and device they compare with.

use std::collections::{BTreeMap, HashMap};

use chipbench_core::result::{CellResult, RunResult, Status};

use crate::charts::{self, Bar};
use crate::export::html::escape;
use crate::{energy_label, fmt_ms};

/// What the report knows of a device from outside the run: the chip catalog's entry, which the
/// command line looks up (this crate reads the result schema only).
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    /// The catalog entry's name.
    pub chip: String,
    /// `general-purpose`, `specialised` or `edge`.
    pub class: String,
    /// The entry's rated power (TDP or typical power) and which it is.
    pub rated_w: Option<(f64, String)>,
    /// For a CPU-core entry: the active power of one busy core, which a cell draws per thread.
    pub per_core_w: Option<f64>,
}

/// The devices of a fleet run by (host id, device id), and prices by host label (USD per hour).
#[derive(Clone, Debug, Default)]
pub struct FleetContext {
    pub devices: HashMap<(String, String), DeviceInfo>,
    pub prices: BTreeMap<String, f64>,
}

/// One host and device's figures for a model, variant and scenario.
pub struct FleetRow<'r> {
    pub cell: &'r CellResult,
    /// The host's label.
    pub host: String,
    /// `backend:device`.
    pub device: String,
    pub info: Option<&'r DeviceInfo>,
    /// Inferences per US dollar at the host's price.
    pub per_dollar: Option<f64>,
    /// Inferences per second per watt, and the power figure it divides by.
    pub per_watt: Option<(f64, String)>,
    /// p50 latency of the slowest row of the group over this row's, and whom it compares with.
    pub speedup: Option<(f64, String)>,
}

/// The rows of one model, variant and scenario.
pub struct FleetGroup<'r> {
    pub model: String,
    pub variant: String,
    pub scenario: String,
    pub rows: Vec<FleetRow<'r>>,
}

/// The groups of a fleet run that were measured on more than one host or device, in the order
/// of their first cell; measured cells only.
pub fn groups<'r>(run: &'r RunResult, ctx: &'r FleetContext) -> Vec<FleetGroup<'r>> {
    let mut groups: Vec<FleetGroup<'r>> = Vec::new();
    for cell in run.cells.iter().filter(|c| c.status == Status::Ok) {
        let host_id = cell.host.clone().unwrap_or_default();
        let host = run
            .hosts
            .iter()
            .find(|h| h.id == host_id)
            .map_or_else(|| run.host.hostname.clone(), |h| h.label.clone());
        let info = ctx.devices.get(&(host_id, cell.backend.device.clone()));
        let throughput = cell.throughput_per_s;
        let per_dollar = ctx
            .prices
            .get(&host)
            .zip(throughput)
            .map(|(usd_h, t)| t * 3600.0 / usd_h);
        let per_watt = info
            .and_then(|i| power(i, cell))
            .zip(throughput)
            .map(|((watts, what), t)| (t / watts, format!("{watts:.1} W, {what}")));
        let row = FleetRow {
            cell,
            host,
            device: format!("{}:{}", cell.backend.name, cell.backend.device),
            info,
            per_dollar,
            per_watt,
            speedup: None,
        };
        let scenario = cell.scenario_label();
        match groups.iter_mut().find(|g| {
            g.model == cell.model.name && g.variant == cell.model.variant && g.scenario == scenario
        }) {
            Some(g) => g.rows.push(row),
            None => groups.push(FleetGroup {
                model: cell.model.name.clone(),
                variant: cell.model.variant.clone(),
                scenario,
                rows: vec![row],
            }),
        }
    }
    groups.retain(|g| g.rows.len() > 1);
    for g in &mut groups {
        let p50 = |r: &FleetRow| r.cell.latency_ms.as_ref().map(|l| l.p50);
        let Some(slowest) = g
            .rows
            .iter()
            .filter(|r| p50(r).is_some())
            .max_by(|a, b| p50(a).partial_cmp(&p50(b)).expect("latencies are numbers"))
        else {
            continue;
        };
        let (base, name) = (
            p50(slowest).expect("filtered"),
            format!("{} {}", slowest.host, slowest.device),
        );
        for r in &mut g.rows {
            r.speedup = p50(r).map(|p| (base / p, name.clone()));
        }
    }
    groups
}

/// The power a cell draws by the catalog: a CPU-core entry's active power per thread it ran, or
/// the chip's rated power.
fn power(info: &DeviceInfo, cell: &CellResult) -> Option<(f64, String)> {
    match (info.per_core_w, cell.backend.threads) {
        (Some(w), Some(threads)) => Some((
            w * threads as f64,
            format!("catalog active power per core x {threads} threads"),
        )),
        _ => info
            .rated_w
            .as_ref()
            .map(|(w, what)| (*w, format!("catalog {what}"))),
    }
}

/// Energy per inference, marked `~...*` when estimated, with its method.
fn energy(cell: &CellResult) -> String {
    cell.energy.as_ref().map_or_else(
        || "-".into(),
        |e| format!("{} ({})", energy_label(e), e.method),
    )
}

fn class(row: &FleetRow) -> String {
    row.info.map_or_else(
        || "not in the catalog".into(),
        |i| format!("{} ({})", i.class, i.chip),
    )
}

fn speedup(row: &FleetRow) -> String {
    match &row.speedup {
        Some((x, _)) if (x - 1.0).abs() < 1e-12 => "1.00x (the slowest)".into(),
        Some((x, name)) => format!("{x:.2}x vs {name}"),
        None => "-".into(),
    }
}

const HEADER: [&str; 9] = [
    "host",
    "device",
    "class (catalog)",
    "p50 ms",
    "inf/s",
    "energy/inf",
    "inf/$",
    "inf/s per W",
    "speedup (p50)",
];

fn fields(r: &FleetRow) -> [String; 9] {
    [
        r.host.clone(),
        format!("{} ({})", r.device, r.cell.backend.device_name),
        class(r),
        r.cell
            .latency_ms
            .as_ref()
            .map_or_else(|| "-".into(), |l| fmt_ms(l.p50)),
        r.cell
            .throughput_per_s
            .map_or_else(|| "-".into(), |t| format!("{t:.1}")),
        energy(r.cell),
        r.per_dollar
            .map_or_else(|| "-".into(), |d| format!("{d:.3e}")),
        r.per_watt
            .as_ref()
            .map_or_else(|| "-".into(), |(v, what)| format!("{v:.2} ({what})")),
        speedup(r),
    ]
}

const LEGEND: &str = "p50 and inf/s as each host measured them (see each cell's provenance); \
    energy/inf as its method says, ~...* estimated; inf/$ = inf/s x 3600 / the host's price (--price \
    LABEL=USD/h), not measured; inf/s per W divides by the chip catalog's power figure named, \
    a datasheet figure, not a measurement; speedup = the slowest host and device's p50 over this one's.";

/// The fleet table in Markdown; empty for a run of one host.
pub fn markdown(run: &RunResult, ctx: &FleetContext) -> String {
    if run.hosts.is_empty() {
        return String::new();
    }
    let groups = groups(run, ctx);
    let mut out = format!(
        "\n## Fleet: {} hosts\n\n{}\n",
        run.hosts.len(),
        hosts_line(run)
    );
    if groups.is_empty() {
        out.push_str(
            "\nNo model, variant and scenario was measured on more than one host or device.\n",
        );
        return out;
    }
    for g in &groups {
        out.push_str(&format!(
            "\n### {} {} {}\n\n| {} |\n|{}\n",
            g.model,
            g.variant,
            g.scenario,
            HEADER.join(" | "),
            "---|".repeat(HEADER.len())
        ));
        for r in &g.rows {
            let f = fields(r).map(|f| f.replace('|', "\\|"));
            out.push_str(&format!("| {} |\n", f.join(" | ")));
        }
    }
    out.push_str(&format!("\n_{LEGEND}_\n"));
    out
}

fn hosts_line(run: &RunResult) -> String {
    let hosts: Vec<String> = run
        .hosts
        .iter()
        .map(|h| {
            let shard = h
                .shard
                .as_ref()
                .map_or_else(String::new, |s| format!(", shard {}/{}", s.index, s.count));
            format!(
                "{} ({}, {}{shard}, fingerprint {})",
                h.label, h.host.hostname, h.host.cpu_brand, h.host.fingerprint
            )
        })
        .collect();
    format!("Hosts: {}.", hosts.join("; "))
}

/// The fleet section of the HTML page: a table and a throughput chart per group; empty for a
/// run of one host.
pub fn html(run: &RunResult, ctx: &FleetContext) -> crate::Result<String> {
    if run.hosts.is_empty() {
        return Ok(String::new());
    }
    let groups = groups(run, ctx);
    let mut out = format!(
        "<section id=\"fleet\">\n<h2>Fleet: {} hosts</h2>\n<p>{}</p>\n",
        run.hosts.len(),
        escape(&hosts_line(run))
    );
    if groups.is_empty() {
        out.push_str(
            "<p>No model, variant and scenario was measured on more than one host or device.</p>\n",
        );
    }
    for g in &groups {
        let title = format!("{} {} {}", g.model, g.variant, g.scenario);
        out.push_str(&format!(
            "<h3>{}</h3>\n<table class=\"fleet\">\n<thead><tr>{}</tr></thead>\n<tbody>\n",
            escape(&title),
            HEADER.map(|h| format!("<th>{}</th>", escape(h))).join("")
        ));
        for r in &g.rows {
            let cells: Vec<String> = fields(r)
                .iter()
                .map(|f| format!("<td>{}</td>", escape(f)))
                .collect();
            out.push_str(&format!("<tr>{}</tr>\n", cells.join("")));
        }
        out.push_str("</tbody>\n</table>\n");
        let bars: Vec<Bar> = g
            .rows
            .iter()
            .filter_map(|r| {
                r.cell.throughput_per_s.map(|t| Bar {
                    label: format!("{} {}", r.host, r.device),
                    value: t,
                    estimated: false,
                })
            })
            .collect();
        if !bars.is_empty() {
            let svg = charts::bars(
                &format!("{title}: throughput by host and device"),
                "inferences per second (measured)",
                &bars,
                None,
                "inf/s",
            )?;
            out.push_str(&format!(
                "<figure class=\"chart fleet\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
                svg.trim(),
                escape(&format!(
                    "{title}: inferences per second on each host and device, as each measured them"
                ))
            ));
        }
    }
    out.push_str(&format!(
        "<p class=\"legend\">{}</p>\n</section>\n",
        escape(LEGEND)
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chipbench_core::result::{FleetHost, LatencyStats};

    use super::*;
    use crate::test_support::sample_run;

    /// `sample_run`'s first ok cell measured on two hosts: `pi` at 4 ms and `h100` at 1 ms.
    fn fleet() -> RunResult {
        let mut run = sample_run();
        let template = run
            .cells
            .iter()
            .find(|c| c.status == Status::Ok && c.latency_ms.is_some())
            .unwrap()
            .clone();
        let cell = |host: &str, device: &str, p50: f64| {
            let mut c = template.clone();
            c.host = Some(host.into());
            c.backend.device = device.into();
            c.backend.threads = Some(4);
            let l = c.latency_ms.as_mut().unwrap();
            *l = LatencyStats { p50, ..l.clone() };
            c.throughput_per_s = Some(1000.0 / p50);
            c.energy = None;
            c
        };
        run.cells = vec![cell("run-pi", "cpu", 4.0), cell("run-h100", "cuda", 1.0)];
        let host = |id: &str, label: &str| FleetHost {
            id: id.into(),
            label: label.into(),
            host: run.host.clone(),
            shard: None,
            started_at: run.started_at.clone(),
            finished_at: None,
            interrupted: false,
            tool_version: "0".into(),
            idle_baseline: None,
            speed_checks: Vec::new(),
        };
        run.hosts = vec![host("run-pi", "pi"), host("run-h100", "h100")];
        run
    }

    #[test]
    fn a_model_on_two_hosts_compares_by_class_price_power_and_named_speedup() {
        let run = fleet();
        let mut ctx = FleetContext::default();
        ctx.devices.insert(
            ("run-h100".into(), "cuda".into()),
            DeviceInfo {
                chip: "NVIDIA H100 SXM5 80GB".into(),
                class: "general-purpose".into(),
                rated_w: Some((700.0, "TDP".into())),
                per_core_w: None,
            },
        );
        ctx.devices.insert(
            ("run-pi".into(), "cpu".into()),
            DeviceInfo {
                chip: "Cortex-A76 core".into(),
                class: "edge".into(),
                rated_w: None,
                per_core_w: Some(1.5),
            },
        );
        ctx.prices.insert("h100".into(), 2.0);
        let groups = groups(&run, &ctx);
        assert_eq!(groups.len(), 1);
        let rows = &groups[0].rows;
        let (pi, h100) = (&rows[0], &rows[1]);
        assert_eq!(h100.speedup.as_ref().unwrap().0, 4.0);
        assert_eq!(
            h100.speedup.as_ref().unwrap().1,
            format!("pi {}", pi.device)
        );
        // 1000 inf/s for 2 USD an hour: 1.8 M inferences per dollar; none priced for the pi.
        assert_eq!(h100.per_dollar, Some(1000.0 * 3600.0 / 2.0));
        assert_eq!(pi.per_dollar, None);
        // The H100 by its TDP; the pi by 4 threads of its per-core power.
        let (w, what) = h100.per_watt.as_ref().unwrap();
        assert!(
            (w - 1000.0 / 700.0).abs() < 1e-12 && what.contains("catalog TDP"),
            "{what}"
        );
        let (w, what) = pi.per_watt.as_ref().unwrap();
        assert!(
            (w - 250.0 / 6.0).abs() < 1e-12 && what.contains("x 4 threads"),
            "{what}"
        );

        let md = markdown(&run, &ctx);
        assert!(md.contains("## Fleet: 2 hosts"), "{md}");
        assert!(
            md.contains("general-purpose (NVIDIA H100 SXM5 80GB)")
                && md.contains("edge (Cortex-A76 core)"),
            "{md}"
        );
        assert!(md.contains("4.00x vs pi "), "{md}");
        let page = html(&run, &ctx).unwrap();
        assert_eq!(page.matches("<svg").count(), 1, "one throughput chart");
        assert!(page.contains("<table class=\"fleet\">"));
    }

    #[test]
    fn a_run_of_one_host_has_no_fleet_section() {
        let run = sample_run();
        assert!(markdown(&run, &FleetContext::default()).is_empty());
        assert!(html(&run, &FleetContext::default()).unwrap().is_empty());
    }
}
