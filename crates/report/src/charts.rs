//! The charts of the HTML report and of `history trend`, drawn by plotters into SVG strings.
//! Quartiles, axis ranges, tick placement and log scales are plotters'; this module only picks
//! what to draw and how to label it.

use plotters::data::fitting_range;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{ReportError, Result};

const WIDTH: u32 = 1100;
const ROW_HEIGHT: u32 = 30;
const FONT: &str = "sans-serif";
/// Accuracy losses below this (fp32 against itself is exactly 0) are drawn at it on log axes:
/// about the resolution of 1 - cosine in double precision.
pub const LOSS_FLOOR: f64 = 1e-16;

/// The legend box, drawn alike on every chart.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((FONT, 12))
        .draw()
}

/// A log axis range snapped out to whole decades, so that plotters always has labelled ticks.
fn decades(lo: f64, hi: f64) -> std::ops::Range<f64> {
    let lo = 10f64.powf(lo.log10().floor());
    let mut hi = 10f64.powf(hi.log10().ceil());
    if hi <= lo {
        hi = lo * 10.0;
    }
    lo..hi
}

fn chart_error(chart: &str) -> impl Fn(&dyn std::fmt::Display) -> ReportError + '_ {
    move |e| ReportError::Chart {
        chart: chart.to_string(),
        reason: e.to_string(),
    }
}

/// Wide enough for the longest label in plotters' own text-size estimate for SVG.
fn label_area(labels: &[String]) -> u32 {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
    (longest * 7 + 24).clamp(60, 460)
}

/// Rows of a category axis are numbered so that element keys are `'static` (plotters' series
/// bounds need it); row 0 is drawn at the bottom, so the first label gets the highest number.
fn row_of(index: usize, rows: usize) -> i32 {
    (rows - 1 - index) as i32
}

/// A single row would make a degenerate `0..0` axis, which plotters maps to its edge; one row
/// gets a blank second row above it instead.
fn row_axis(rows: usize) -> std::ops::Range<i32> {
    0..(rows.max(2) as i32 - 1)
}

fn row_label(labels: &[String]) -> impl Fn(&SegmentValue<i32>) -> String + '_ {
    move |value| match value {
        SegmentValue::Exact(row) | SegmentValue::CenterOf(row) => {
            let index = labels.len() as i64 - 1 - *row as i64;
            usize::try_from(index)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    }
}

/// Latency samples of one cell.
pub struct Distribution<'a> {
    pub label: String,
    pub samples: &'a [f64],
}

/// Horizontal box plots (box: quartiles; whiskers: Tukey fences at 1.5 IQR, as plotters'
/// `Quartiles` computes them) with a cross at each cell's p99.
pub fn latency_boxplot(title: &str, rows: &[Distribution]) -> Result<String> {
    let fail = chart_error(title);
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let quartiles: Vec<Quartiles> = rows.iter().map(|r| Quartiles::new(r.samples)).collect();
    let p99: Vec<f32> = rows
        .iter()
        .map(|r| {
            let mut sorted = r.samples.to_vec();
            sorted.sort_by(f64::total_cmp);
            chipbench_core::stats::percentile(&sorted, 0.99) as f32
        })
        .collect();
    let values: Vec<f32> = quartiles
        .iter()
        .flat_map(|q| q.values())
        .chain(p99.iter().copied())
        .collect();
    let range = fitting_range(values.iter());
    let pad = ((range.end - range.start) * 0.05)
        .max(range.end.abs() * 0.01)
        .max(1e-6);
    let height = 100 + ROW_HEIGHT * rows.len().max(2) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(label_area(&labels))
            .build_cartesian_2d(
                (range.start - pad)..(range.end + pad),
                row_axis(rows.len()).into_segmented(),
            )
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("latency, ms (box: quartiles; whiskers: 1.5 IQR fences; x: p99)")
            .y_labels(labels.len())
            .y_label_formatter(&row_label(&labels))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(quartiles.iter().enumerate().map(|(i, q)| {
                Boxplot::new_horizontal(SegmentValue::CenterOf(row_of(i, rows.len())), q)
                    .width(16)
                    .style(BLUE)
            }))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(p99.iter().enumerate().map(|(i, &p)| {
                Cross::new((p, SegmentValue::CenterOf(row_of(i, rows.len()))), 5, RED)
            }))
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// One horizontal bar per row, with its value written at the end of the bar.
pub struct Bar {
    pub label: String,
    pub value: f64,
    /// Drawn in a lighter colour with a note, for estimated figures.
    pub estimated: bool,
}

/// Horizontal bars from zero; `reference` draws a vertical line (1.0 for speedups).
pub fn bars(
    title: &str,
    x_desc: &str,
    rows: &[Bar],
    reference: Option<f64>,
    unit: &str,
) -> Result<String> {
    let fail = chart_error(title);
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    let mut ends: Vec<f64> = rows.iter().map(|r| r.value).collect();
    ends.extend(reference);
    ends.push(0.0);
    let range = fitting_range(ends.iter());
    let right = range.end * 1.18 + f64::EPSILON;
    let height = 100 + ROW_HEIGHT * rows.len().max(2) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(label_area(&labels))
            .build_cartesian_2d(0.0..right, row_axis(rows.len()).into_segmented())
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_labels(labels.len())
            .y_label_formatter(&row_label(&labels))
            .light_line_style(WHITE)
            .draw()
            .map_err(|e| fail(&e))?;
        let measured_colour = RGBColor(49, 110, 180);
        let estimated_colour = RGBColor(240, 170, 80);
        let colour_of: Vec<RGBColor> = rows
            .iter()
            .map(|r| {
                if r.estimated {
                    estimated_colour
                } else {
                    measured_colour
                }
            })
            .collect();
        chart
            .draw_series(
                Histogram::horizontal(&chart)
                    .style_func(|key, _| {
                        let row = match key {
                            SegmentValue::Exact(row) | SegmentValue::CenterOf(row) => *row as usize,
                            SegmentValue::Last => 0,
                        };
                        colour_of[(rows.len() - 1).saturating_sub(row)].filled()
                    })
                    .margin(6)
                    .data(
                        rows.iter()
                            .enumerate()
                            .map(|(i, r)| (row_of(i, rows.len()), r.value)),
                    ),
            )
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let note = if r.estimated { " (estimated)" } else { "" };
                Text::new(
                    format!(" {}{unit}{note}", significant(r.value)),
                    (r.value, SegmentValue::CenterOf(row_of(i, rows.len()))),
                    TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(|e| fail(&e))?;
        if let Some(x) = reference {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Last)],
                    BLACK.stroke_width(1),
                )))
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// A point of a Pareto chart: cost on x (lower is better), accuracy loss on y.
pub struct ParetoPoint {
    pub label: String,
    pub x: f64,
    pub loss: f64,
}

/// Indices of the points no other point beats on both axes, ordered by x.
pub fn pareto_front(points: &[ParetoPoint]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .x
            .total_cmp(&points[b].x)
            .then(points[a].loss.total_cmp(&points[b].loss))
    });
    let mut best = f64::INFINITY;
    order
        .into_iter()
        .filter(|&i| {
            let keep = points[i].loss < best;
            best = best.min(points[i].loss);
            keep
        })
        .collect()
}

/// Scatter of cost against accuracy loss (log axis) with the Pareto front joined by a line.
pub fn pareto(title: &str, x_desc: &str, points: &[ParetoPoint]) -> Result<String> {
    let fail = chart_error(title);
    let xs: Vec<f64> = points.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.loss.max(LOSS_FLOOR)).collect();
    let xr = fitting_range(xs.iter());
    let yr = fitting_range(ys.iter());
    // Variants of one model are within a small factor of each other: a linear cost axis reads
    // best; the loss spans decades (fp32 ~1e-13, int8 ~1e-3) and needs the log axis.
    let x_axis = 0.0..(xr.end * 1.15).max(f64::MIN_POSITIVE);
    let y_axis = decades(LOSS_FLOOR, (yr.end * 10.0).max(LOSS_FLOOR * 100.0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x_axis, y_axis.log_scale())
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(format!(
                "1 - cosine (exact matches drawn at {LOSS_FLOOR:e})"
            ))
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .x_label_formatter(&|v| significant(*v))
            .draw()
            .map_err(|e| fail(&e))?;
        let front: Vec<(f64, f64)> = pareto_front(points)
            .into_iter()
            .map(|i| (xs[i], ys[i]))
            .collect();
        chart
            .draw_series(LineSeries::new(front, BLACK.mix(0.4).stroke_width(1)))
            .map_err(|e| fail(&e))?
            .label("Pareto front")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.mix(0.4)));
        for (i, p) in points.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Circle::new(
                    (xs[i], ys[i]),
                    5,
                    colour.filled(),
                )))
                .map_err(|e| fail(&e))?
                .label(format!("{} (1-cos {:.1e})", p.label, p.loss))
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// One point of a load-generator sweep (a batch size, a concurrency, a rate).
pub struct KneePoint {
    pub label: String,
    /// Samples per second.
    pub throughput: f64,
    /// Query latency, ms.
    pub p50: f64,
    pub p99: f64,
    /// The probe a `--find-peak` search found as its peak: the highest rate VALID under the bound.
    pub peak: bool,
}

/// Latency (p50 and p99, log axis) against throughput over a sweep: where added load stops buying
/// throughput and starts costing latency (the knee); a `--find-peak` peak ringed.
pub fn knee(title: &str, points: &[KneePoint]) -> Result<String> {
    let fail = chart_error(title);
    let mut sorted: Vec<&KneePoint> = points.iter().collect();
    sorted.sort_by(|a, b| a.throughput.total_cmp(&b.throughput));
    let xr = fitting_range(points.iter().map(|p| &p.throughput));
    let latencies: Vec<f64> = points.iter().flat_map(|p| [p.p50, p.p99]).collect();
    let yr = fitting_range(latencies.iter());
    let y_axis = decades(yr.start.max(1e-6), yr.end.max(1e-6) * 1.5);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 460)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..(xr.end * 1.15).max(1.0), y_axis.log_scale())
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("throughput, samples/s")
            .y_desc("query latency, ms")
            .x_label_formatter(&|v| significant(*v))
            .y_label_formatter(&|v| significant(*v))
            .draw()
            .map_err(|e| fail(&e))?;
        for (name, colour, of) in [
            (
                "p50",
                BLUE,
                (|p: &KneePoint| p.p50) as fn(&KneePoint) -> f64,
            ),
            ("p99", RED, |p: &KneePoint| p.p99),
        ] {
            let line: Vec<(f64, f64)> = sorted.iter().map(|p| (p.throughput, of(p))).collect();
            chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            chart
                .draw_series(line.iter().map(|&xy| Circle::new(xy, 4, colour.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .draw_series(sorted.iter().map(|p| {
                Text::new(
                    p.label.clone(),
                    (p.throughput, p.p99),
                    (FONT, 12).into_font(),
                )
            }))
            .map_err(|e| fail(&e))?;
        if sorted.iter().any(|p| p.peak) {
            chart
                .draw_series(
                    sorted
                        .iter()
                        .filter(|p| p.peak)
                        .map(|p| Circle::new((p.throughput, p.p99), 9, BLACK.stroke_width(2))),
                )
                .map_err(|e| fail(&e))?
                .label("peak QPS under the bound")
                .legend(|(x, y)| Circle::new((x + 8, y), 5, BLACK.stroke_width(2)));
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// The time per output token of one variant on one device at each prompt length it ran.
pub struct TpotSeries {
    pub label: String,
    /// (prompt tokens, TPOT p50 ms, TPOT p99 ms), by prompt length.
    pub points: Vec<(f64, f64, f64)>,
}

/// TPOT against prompt length, a line per series through its medians, a bar up to each p99: how
/// the decode step slows as the cache it attends over grows.
pub fn tpot_by_prompt(title: &str, series: &[TpotSeries]) -> Result<String> {
    let fail = chart_error(title);
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.1, p.2]))
        .collect();
    let xr = fitting_range(xs.iter());
    let yr = fitting_range(ys.iter());
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..(xr.end * 1.1).max(1.0), 0.0..(yr.end * 1.15).max(1e-3))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("prompt tokens")
            .y_desc("time per output token, ms")
            .x_label_formatter(&|v| significant(*v))
            .y_label_formatter(&|v| significant(*v))
            .draw()
            .map_err(|e| fail(&e))?;
        for (i, s) in series.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            let mut points = s.points.clone();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.0, p.1)),
                    colour.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label(format!("{} (p50, bar to p99)", s.label))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|p| ErrorBar::new_vertical(p.0, p.1, p.1, p.2, colour.filled(), 8)),
                )
                .map_err(|e| fail(&e))?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperLeft).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// A cell on the roofline.
pub struct RooflinePoint {
    pub label: String,
    /// FLOPs per byte.
    pub intensity: f64,
    pub achieved_gflops: f64,
}

/// The ceilings of one host as far as its cells reveal them.
pub struct Ceilings {
    /// GB/s, from memory-bound cells (bound / intensity).
    pub bandwidth_gbs: Option<f64>,
    /// Compute ceilings by precision, GFLOP/s (GOP/s for integer precisions).
    pub peaks: Vec<(String, f64)>,
}

/// Log-log roofline: the ceilings (min of peak and intensity x bandwidth) and each cell's
/// achieved throughput at its arithmetic intensity.
pub fn roofline(title: &str, points: &[RooflinePoint], ceilings: &Ceilings) -> Result<String> {
    let fail = chart_error(title);
    let mut xs: Vec<f64> = points.iter().map(|p| p.intensity).collect();
    if let Some(bw) = ceilings.bandwidth_gbs {
        xs.extend(ceilings.peaks.iter().map(|(_, peak)| peak / bw));
    }
    let mut ys: Vec<f64> = points.iter().map(|p| p.achieved_gflops).collect();
    ys.extend(ceilings.peaks.iter().map(|(_, peak)| *peak));
    let xr = fitting_range(xs.iter());
    let yr = fitting_range(ys.iter());
    let std::ops::Range { start: x0, end: x1 } = decades(xr.start / 2.0, xr.end * 2.0);
    let std::ops::Range { start: y0, end: y1 } = decades(yr.start / 2.0, yr.end * 2.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .x_desc("arithmetic intensity, FLOP/byte (weights + inputs + outputs)")
            .y_desc("GFLOP/s (GOP/s for int8)")
            .x_label_formatter(&|v| significant(*v))
            .y_label_formatter(&|v| significant(*v))
            .draw()
            .map_err(|e| fail(&e))?;
        let roof = |peak: Option<f64>, x: f64| match (peak, ceilings.bandwidth_gbs) {
            (Some(p), Some(bw)) => p.min(x * bw),
            (Some(p), None) => p,
            (None, Some(bw)) => x * bw,
            (None, None) => f64::NAN,
        };
        let mut lines: Vec<(String, Option<f64>)> = ceilings
            .peaks
            .iter()
            .map(|(precision, peak)| (format!("{precision} ceiling"), Some(*peak)))
            .collect();
        if lines.is_empty() && ceilings.bandwidth_gbs.is_some() {
            lines.push(("memory ceiling".into(), None));
        }
        for (i, (name, peak)) in lines.into_iter().enumerate() {
            let mut corners = vec![x0, x1];
            if let (Some(p), Some(bw)) = (peak, ceilings.bandwidth_gbs) {
                corners.insert(1, (p / bw).clamp(x0, x1));
            }
            let colour = Palette99::pick(i + 20).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    corners.into_iter().map(|x| (x, roof(peak, x))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| fail(&e))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
                });
        }
        for (i, p) in points.iter().enumerate() {
            let colour = Palette99::pick(i).to_rgba();
            chart
                .draw_series(std::iter::once(Circle::new(
                    (p.intensity, p.achieved_gflops),
                    5,
                    colour.filled(),
                )))
                .map_err(|e| fail(&e))?
                .label(p.label.clone())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, colour.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// One run's value of a metric, with its 95 % CI when known.
pub struct TrendPoint {
    pub label: String,
    pub value: f64,
    pub ci: Option<(f64, f64)>,
}

/// The metric over runs, oldest first: a line with a CI bar at each run.
pub fn trend(title: &str, y_desc: &str, points: &[TrendPoint]) -> Result<String> {
    let fail = chart_error(title);
    let values: Vec<f64> = points
        .iter()
        .flat_map(|p| [Some(p.value), p.ci.map(|c| c.0), p.ci.map(|c| c.1)])
        .flatten()
        .collect();
    let yr = fitting_range(values.iter());
    let pad = ((yr.end - yr.start) * 0.1)
        .max(yr.end.abs() * 0.02)
        .max(1e-9);
    let n = points.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 18))
            .margin(10)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5..(n as f64 - 0.5), (yr.start - pad)..(yr.end + pad))
            .map_err(|e| fail(&e))?;
        chart
            .configure_mesh()
            .y_desc(y_desc)
            .x_desc("run (oldest first)")
            .x_labels(n.min(12))
            .x_label_formatter(&|x| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    points[i as usize].label.clone()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(
                points.iter().enumerate().map(|(i, p)| (i as f64, p.value)),
                BLUE,
            ))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(points.iter().enumerate().filter_map(|(i, p)| {
                p.ci.map(|(lo, hi)| {
                    ErrorBar::new_vertical(i as f64, lo, p.value, hi, BLUE.filled(), 8)
                })
            }))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(
                points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Circle::new((i as f64, p.value), 3, BLUE.filled())),
            )
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// Three significant digits, without an exponent for everyday magnitudes.
pub fn significant(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
    format!("{v:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, x: f64, loss: f64) -> ParetoPoint {
        ParetoPoint {
            label: label.into(),
            x,
            loss,
        }
    }

    #[test]
    fn the_pareto_front_keeps_undominated_points() {
        let points = [
            p("slow exact", 10.0, 0.0),
            p("fast lossy", 2.0, 1e-3),
            p("dominated", 12.0, 1e-4),
            p("middle", 5.0, 1e-6),
        ];
        assert_eq!(pareto_front(&points), vec![1, 3, 0]);
    }

    #[test]
    fn the_knee_rings_a_peak_only_when_there_is_one() {
        let point = |label: &str, throughput: f64, p99: f64, peak: bool| KneePoint {
            label: label.into(),
            throughput,
            p50: p99 / 3.0,
            p99,
            peak,
        };
        let probes = |peak_at: Option<usize>| -> Vec<KneePoint> {
            [(1000.0, 2.0), (1500.0, 4.0), (1800.0, 30.0)]
                .iter()
                .enumerate()
                .map(|(i, &(q, p99))| point(&format!("p{i}"), q, p99, peak_at == Some(i)))
                .collect()
        };
        let ringed = knee("t", &probes(Some(1))).unwrap();
        assert!(ringed.contains("peak QPS under the bound"));
        let plain = knee("t", &probes(None)).unwrap();
        assert!(!plain.contains("peak QPS under the bound"));
    }

    #[test]
    fn charts_are_svg_documents() {
        let samples: Vec<f64> = (1..=100).map(|i| i as f64 / 10.0).collect();
        let svg = latency_boxplot(
            "t",
            &[Distribution {
                label: "a <b>".into(),
                samples: &samples,
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt;"), "labels are escaped");
        let svg = bars(
            "s",
            "x",
            &[Bar {
                label: "a".into(),
                value: 2.0,
                estimated: true,
            }],
            Some(1.0),
            "×",
        )
        .unwrap();
        assert!(svg.contains("(estimated)"));
        let svg = pareto("p", "ms", &[p("a", 1.0, 0.0), p("b", 0.5, 1e-3)]).unwrap();
        assert!(svg.contains("Pareto front"));
        let svg = trend(
            "t",
            "ms",
            &[TrendPoint {
                label: "r1".into(),
                value: 1.0,
                ci: Some((0.9, 1.1)),
            }],
        )
        .unwrap();
        assert!(svg.contains("r1"));
        let svg = tpot_by_prompt(
            "g",
            &[TpotSeries {
                label: "int4-weight ort:cpu b1".into(),
                points: vec![(64.0, 0.45, 2.7), (16.0, 0.26, 1.4)],
            }],
        )
        .unwrap();
        assert!(svg.contains("int4-weight ort:cpu b1 (p50, bar to p99)"));
        assert!(svg.contains("prompt tokens"));
        let ceilings = Ceilings {
            bandwidth_gbs: Some(20.0),
            peaks: vec![("fp32".into(), 100.0)],
        };
        let svg = roofline(
            "r",
            &[RooflinePoint {
                label: "a".into(),
                intensity: 2.0,
                achieved_gflops: 10.0,
            }],
            &ceilings,
        )
        .unwrap();
        assert!(svg.contains("fp32 ceiling"));
    }

    #[test]
    fn significant_digits() {
        assert_eq!(significant(1234.6), "1235");
        assert_eq!(significant(1.2345), "1.23");
        assert_eq!(significant(0.012345), "0.0123");
    }
}
