//! SVG plots of a report, drawn with plotters' SVG backend.
//!
//! Text in plotters' SVG output is written as `<text>` elements and laid out
//! with plotters' built-in size estimate (the `ttf` feature, which would need
//! fontconfig and system fonts, is off), so the plots build and render on a
//! machine with no fonts installed; the viewer picks a sans-serif font.
//!
//! Each plot puts every run it shows on the same axes, one colour per run,
//! labelled with the engine and rate, so a comparison reads at a glance:
//!
//! | file | what |
//! | --- | --- |
//! | `latency.svg` | p50 (thin) and p99 (thick) latency per second, log scale |
//! | `deliveries.svg` | deliveries per second |
//! | `order.svg` | pushes out of order or duplicated per second, all clients (flat at 0 while the order holds) |
//! | `server.svg` | server RSS (top) and CPU (bottom) per second |
//! | `histogram.svg` | share of messages per latency bucket, log latency axis |
//! | `capacity.svg` | capacity search only: p99 and deliveries/s against the target rate |

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::run::RunResult;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("plot: {e:?}")
}

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

fn legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
}

fn xmax(runs: &[&RunResult]) -> f64 {
    runs.iter().flat_map(|r| r.timeline.iter().map(|p| p.t)).fold(1.0, f64::max)
}

/// Writes every plot for `runs` (the timelines to show) and `search` (all runs of a search) into `dir`.
pub fn write_all(
    dir: &Path,
    runs: &[&RunResult],
    search: Option<&[RunResult]>,
) -> Result<Vec<String>, String> {
    let mut files = vec![];
    latency(&dir.join("latency.svg"), runs)?;
    files.push("latency.svg".to_string());
    deliveries(&dir.join("deliveries.svg"), runs)?;
    files.push("deliveries.svg".into());
    order(&dir.join("order.svg"), runs)?;
    files.push("order.svg".into());
    server(&dir.join("server.svg"), runs)?;
    files.push("server.svg".into());
    histogram(&dir.join("histogram.svg"), runs)?;
    files.push("histogram.svg".into());
    if let Some(all) = search {
        capacity(&dir.join("capacity.svg"), all)?;
        files.push("capacity.svg".into());
    }
    Ok(files)
}

fn latency(path: &Path, runs: &[&RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ms = |us: u64| (us.max(1) as f64) / 1000.0;
    let ymax = runs.iter().flat_map(|r| r.timeline.iter().map(|p| ms(p.p99_us))).fold(1.0, f64::max) * 2.0;
    let ymin = runs
        .iter()
        .flat_map(|r| r.timeline.iter().filter(|p| p.p50_us > 0).map(|p| ms(p.p50_us)))
        .fold(ymax, f64::min)
        / 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption("Publish-to-receive latency per second (thin: p50, thick: p99)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax(runs), (ymin.min(0.5)..ymax).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the steady phase")
        .y_desc("latency, ms (log)")
        .draw()
        .map_err(err)?;
    for (i, r) in runs.iter().enumerate() {
        let c = color(i);
        let p50 = r.timeline.iter().filter(|p| p.p50_us > 0).map(|p| (p.t, ms(p.p50_us)));
        chart.draw_series(LineSeries::new(p50, c.stroke_width(1))).map_err(err)?;
        let p99 = r.timeline.iter().filter(|p| p.p99_us > 0).map(|p| (p.t, ms(p.p99_us)));
        chart
            .draw_series(LineSeries::new(p99, c.stroke_width(3)))
            .map_err(err)?
            .label(r.label.clone())
            .legend(legend(c));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

fn deliveries(path: &Path, runs: &[&RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let ymax =
        runs.iter().flat_map(|r| r.timeline.iter().map(|p| p.deliveries_per_sec)).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Deliveries per second (all clients)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..xmax(runs), 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds into the steady phase")
        .y_desc("deliveries/s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    for (i, r) in runs.iter().enumerate() {
        let c = color(i);
        let pts = r.timeline.iter().map(|p| (p.t, p.deliveries_per_sec));
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(r.label.clone())
            .legend(legend(c));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

fn order(path: &Path, runs: &[&RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let bad = |p: &super::run::Point| (p.out_of_order + p.duplicates) as f64;
    let ymax = runs.iter().flat_map(|r| r.timeline.iter().map(bad)).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption("Pushes out of order or duplicated per second (all clients)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..xmax(runs), 0.0..ymax)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds into the steady phase").y_desc("pushes/s").draw().map_err(err)?;
    for (i, r) in runs.iter().enumerate() {
        let c = color(i);
        let pts = r.timeline.iter().map(|p| (p.t, bad(p)));
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} ({} publishers)", r.label, r.publishers))
            .legend(legend(c));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

fn server(path: &Path, runs: &[&RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(360);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let rmax = runs
        .iter()
        .flat_map(|r| r.timeline.iter().filter_map(|p| p.server_rss_bytes.map(mib)))
        .fold(1.0, f64::max)
        * 1.15;
    let cmax = runs
        .iter()
        .flat_map(|r| {
            r.timeline.iter().flat_map(|p| p.server_cpu_percent.into_iter().chain(p.loadgen_cpu_percent))
        })
        .fold(10.0, f64::max)
        * 1.15;
    series_panel(&top, "Server RSS", "MiB", runs, rmax, |p| p.server_rss_bytes.map(mib))?;
    series_panel(&bottom, "Server CPU (% of one core; 200 % = both cores)", "% CPU", runs, cmax, |p| {
        p.server_cpu_percent
    })?;
    root.present().map_err(err)
}

fn series_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    unit: &str,
    runs: &[&RunResult],
    ymax: f64,
    f: impl Fn(&super::run::Point) -> Option<f64>,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..xmax(runs), 0.0..ymax)
        .map_err(err)?;
    chart.configure_mesh().x_desc("seconds into the steady phase").y_desc(unit).draw().map_err(err)?;
    for (i, r) in runs.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = r.timeline.iter().filter_map(|p| f(p).map(|v| (p.t, v))).collect();
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(r.label.clone())
            .legend(legend(c));
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// Latency buckets regrouped on a log grid (10 per decade), as % of messages.
fn log_buckets(h: &[(u64, u64)]) -> Vec<(f64, f64)> {
    let total: u64 = h.iter().map(|b| b.1).sum();
    if total == 0 {
        return vec![];
    }
    let mut bins = std::collections::BTreeMap::<i64, u64>::new();
    for &(v, n) in h {
        let k = ((v.max(1) as f64 / 1000.0).log10() * 10.0).floor() as i64;
        *bins.entry(k).or_default() += n;
    }
    bins.into_iter()
        .map(|(k, n)| (10f64.powf((k as f64 + 0.5) / 10.0), n as f64 * 100.0 / total as f64))
        .collect()
}

fn histogram(path: &Path, runs: &[&RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let all: Vec<Vec<(f64, f64)>> = runs.iter().map(|r| log_buckets(&r.histogram)).collect();
    let xmax = all.iter().flatten().map(|p| p.0).fold(1.0, f64::max) * 1.5;
    let xmin = all.iter().flatten().map(|p| p.0).fold(xmax, f64::min) / 1.5;
    let ymax = all.iter().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Latency distribution (share of messages per bucket, 10 buckets per decade)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((xmin.max(0.001)..xmax).log_scale(), 0.0..ymax)
        .map_err(err)?;
    chart.configure_mesh().x_desc("latency, ms (log)").y_desc("% of messages").draw().map_err(err)?;
    for (i, (r, pts)) in runs.iter().zip(all).enumerate() {
        let c = color(i);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(r.label.clone())
            .legend(legend(c));
    }
    draw_legend(&mut chart)?;
    root.present().map_err(err)
}

fn capacity(path: &Path, all: &[RunResult]) -> Result<(), String> {
    let root = SVGBackend::new(path, (960, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(360);
    let mut engines: Vec<String> = vec![];
    for r in all {
        let e = r.engine.clone().unwrap_or_else(|| "server".into());
        if !engines.contains(&e) {
            engines.push(e);
        }
    }
    fn rates<'a>(all: &'a [RunResult], e: &'a str) -> impl Iterator<Item = &'a RunResult> + Clone + 'a {
        all.iter().filter(move |r| r.engine.as_deref().unwrap_or("server") == e)
    }
    let rmax = all.iter().map(|r| r.target_rate).fold(1.0, f64::max) * 1.1;
    let pmax = all.iter().map(|r| r.latency.p99_us as f64 / 1e3).fold(1.0, f64::max) * 2.0;
    let pmin = all.iter().map(|r| r.latency.p99_us.max(10) as f64 / 1e3).fold(pmax, f64::min) / 2.0;
    let mut c1 = ChartBuilder::on(&top)
        .caption("p99 latency against publish rate (x: step failed)", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..rmax, (pmin..pmax).log_scale())
        .map_err(err)?;
    c1.configure_mesh().x_desc("target messages/s").y_desc("p99, ms (log)").draw().map_err(err)?;
    for (i, e) in engines.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> =
            rates(all, e).map(|r| (r.target_rate, (r.latency.p99_us.max(10) as f64) / 1e3)).collect();
        c1.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(e.clone())
            .legend(legend(c));
        c1.draw_series(rates(all, e).map(|r| {
            let p = (r.target_rate, (r.latency.p99_us.max(10) as f64) / 1e3);
            if r.held == Some(false) {
                Cross::new(p, 6, c.stroke_width(2)).into_dyn()
            } else {
                Circle::new(p, 4, c.filled()).into_dyn()
            }
        }))
        .map_err(err)?;
    }
    draw_legend(&mut c1)?;
    let dmax = all.iter().map(|r| r.deliveries_per_sec).fold(1.0, f64::max) * 1.15;
    let mut c2 = ChartBuilder::on(&bottom)
        .caption("Deliveries per second against publish rate", ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..rmax, 0.0..dmax)
        .map_err(err)?;
    c2.configure_mesh()
        .x_desc("target messages/s")
        .y_desc("deliveries/s")
        .y_label_formatter(&|v| format!("{:.0}k", v / 1000.0))
        .draw()
        .map_err(err)?;
    for (i, e) in engines.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = rates(all, e).map(|r| (r.target_rate, r.deliveries_per_sec)).collect();
        c2.draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(e.clone())
            .legend(legend(c));
    }
    draw_legend(&mut c2)?;
    root.present().map_err(err)
}

/// The legend box every chart here draws, from the series' labels.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
) -> Result<(), String> {
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw().map_err(err)
}
