//! The paper's Fig. 5: average F1 against trainable parameters (log x axis), our backbones and
//! stages next to the published baselines whose parameter count is known; for intensity cells,
//! the same view of average ICC(3,1). SVG and PNG.

use super::model::Report;
use plotters::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Where a TrueType font is looked for (after `$AUSWEEP_FONT`); Debian's `fonts-dejavu-core`
/// provides the first.
pub const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Image size, pixels.
pub const SIZE: (u32, u32) = (900, 600);

/// A chart that could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No usable font.
    #[error(
        "no TrueType font found (set AUSWEEP_FONT or install fonts-dejavu-core; looked in {0})"
    )]
    NoFont(String),
    /// Drawing failed.
    #[error("drawing the chart: {0}")]
    Draw(String),
    /// Writing the file failed.
    #[error("{file}: {message}")]
    Write {
        /// File.
        file: String,
        /// Cause.
        message: String,
    },
}

static FONT: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers a sans-serif font with plotters once per process.
pub fn ensure_font() -> Result<(), ChartError> {
    FONT.get_or_init(|| {
        let mut tried: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("AUSWEEP_FONT") {
            tried.push(PathBuf::from(p));
        }
        tried.extend(FONT_PATHS.iter().map(PathBuf::from));
        for p in &tried {
            if let Ok(bytes) = std::fs::read(p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "))
    })
    .clone()
    .map_err(ChartError::NoFont)
}

/// What a chart's y axis shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Average F1 %, the paper's Fig. 5 (`fig5.*`).
    F1,
    /// Average ICC(3,1) of intensity cells (`intensity.*`).
    Icc,
}

impl Metric {
    fn file(self) -> &'static str {
        match self {
            Metric::F1 => "fig5",
            Metric::Icc => "intensity",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Metric::F1 => "average F1 %",
            Metric::Icc => "average ICC(3,1)",
        }
    }

    /// The y axis's top (the bottom is 0).
    fn top(self) -> f64 {
        match self {
            Metric::F1 => 100.0,
            Metric::Icc => 1.0,
        }
    }
}

/// A point of the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Label.
    pub label: String,
    /// The x value: trainable parameters (Fig. 5) or faces per second (Fig. 2).
    pub x: f64,
    /// Average F1 % or ICC.
    pub score: f64,
    /// Ours (true) or published.
    pub ours: bool,
}

/// The points of a report for `metric`: ours per backbone and stage, and (F1) baselines with a
/// parameter count.
pub fn points(r: &Report, metric: Metric) -> Vec<Point> {
    let mut v: Vec<Point> = r
        .cells
        .iter()
        .filter_map(|c| {
            let f1 = match metric {
                Metric::F1 => c.avg_f1?.mean,
                Metric::Icc => c.intensity.as_ref()?.avg_icc?.mean,
            };
            (c.params_trainable > 0).then(|| Point {
                label: format!(
                    "{} s{}{}",
                    c.backbone,
                    c.stage,
                    if c.grid.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", c.grid)
                    }
                ),
                x: c.params_trainable as f64,
                score: f1,
                ours: true,
            })
        })
        .collect();
    // The published baselines are F1 figures.
    let baselines = if metric == Metric::F1 {
        &r.baselines[..]
    } else {
        &[]
    };
    v.extend(baselines.iter().filter_map(|b| {
        Some(Point {
            label: if r.data.disfa {
                b.name.clone()
            } else {
                format!("{} (on DISFA)", b.name)
            },
            x: b.params? as f64,
            score: b.average_published,
            ours: false,
        })
    }));
    v
}

/// What one chart plots: its points, its x axis and its file stem.
struct Plot {
    pts: Vec<Point>,
    /// The x axis's name (it is on a log scale).
    x_name: &'static str,
    /// The x range before the points widen it.
    range: (f64, f64),
    file: &'static str,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    r: &Report,
    metric: Metric,
    plot: &Plot,
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| ChartError::Draw(x.to_string());
    let pts = &plot.pts;
    // Label offsets are in the y axis's units: 1 % of its height is `unit`.
    let unit = metric.top() / 100.0;
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (lo, hi) = pts.iter().fold(plot.range, |(lo, hi), p| {
        (lo.min(p.x / 2.0), hi.max(p.x * 2.0))
    });
    let title = format!(
        "{} v{}: {} vs {}{}{}",
        r.name,
        r.version,
        metric.name(),
        plot.x_name,
        if r.partial { " (partial)" } else { "" },
        if r.data.disfa || !pts.iter().any(|p| !p.ours) {
            ""
        } else {
            " - not DISFA: baselines not comparable"
        }
    );
    let caption_px = if title.len() > 70 { 17 } else { 22 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", caption_px))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..metric.top())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc(format!("{} (log scale)", plot.x_name))
        .y_desc(metric.name())
        .x_label_formatter(&|v| si(*v))
        .draw()
        .map_err(|x| e(&x))?;
    let ours = RGBColor(200, 30, 30);
    let theirs = RGBColor(30, 60, 200);
    let mut placed: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        let c = if p.ours { ours } else { theirs };
        // Labels of points close together are stacked instead of overprinted.
        let near = placed
            .iter()
            .filter(|(x, y)| (x / p.x).ln().abs() < 0.3 && (y - p.score).abs() < 3.0 * unit)
            .count();
        placed.push((p.x, p.score));
        let label_y = p.score + unit * (1.0 - 3.5 * near as f64);
        chart
            .draw_series(std::iter::once(Circle::new((p.x, p.score), 5, c.filled())))
            .map_err(|x| e(&x))?;
        chart
            .draw_series(std::iter::once(Text::new(
                p.label.clone(),
                (p.x * 1.08, label_y),
                ("sans-serif", 13).into_font().color(&c),
            )))
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// A parameter count as 10k, 2.5M, 1G.
pub fn si(v: f64) -> String {
    let (d, u) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if (x - x.round()).abs() < 0.05 {
        format!("{:.0}{u}", x)
    } else {
        format!("{x:.1}{u}")
    }
}

/// Writes `fig5.svg` and `fig5.png` (F1 cells or baselines to show) and `intensity.svg` and
/// `intensity.png` (intensity cells) into `dir`; returns their paths.
pub fn write(r: &Report, dir: &Path) -> Result<Vec<PathBuf>, ChartError> {
    ensure_font()?;
    let mut files = Vec::new();
    for metric in [Metric::F1, Metric::Icc] {
        let pts = points(r, metric);
        if pts.is_empty() {
            continue;
        }
        let plot = Plot {
            pts,
            x_name: "trainable parameters",
            range: (1e5, 1e9),
            file: metric.file(),
        };
        files.extend(write_one(r, dir, metric, &plot)?);
    }
    Ok(files)
}

/// Writes `fig2.svg` and `fig2.png`, the paper's Fig. 2 view: each backbone's best average F1
/// against faces per second with one thread; nothing when no backbone has both.
pub fn write_fig2(
    r: &Report,
    cost: &super::cost::CostTable,
    dir: &Path,
) -> Result<Vec<PathBuf>, ChartError> {
    let pts = super::cost::points(r, cost);
    if pts.is_empty() {
        return Ok(Vec::new());
    }
    ensure_font()?;
    let plot = Plot {
        pts,
        x_name: "faces per second, 1 thread",
        range: (f64::INFINITY, 0.0),
        file: "fig2",
    };
    write_one(r, dir, Metric::F1, &plot)
}

fn write_one(
    r: &Report,
    dir: &Path,
    metric: Metric,
    plot: &Plot,
) -> Result<Vec<PathBuf>, ChartError> {
    let svg_path = dir.join(format!("{}.svg", plot.file));
    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, SIZE).into_drawing_area(),
        r,
        metric,
        plot,
    )?;
    let werr = |p: &Path, m: String| ChartError::Write {
        file: p.display().to_string(),
        message: m,
    };
    std::fs::write(&svg_path, svg).map_err(|x| werr(&svg_path, x.to_string()))?;
    let png_path = dir.join(format!("{}.png", plot.file));
    let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area(),
        r,
        metric,
        plot,
    )?;
    let file = std::fs::File::create(&png_path).map_err(|x| werr(&png_path, x.to_string()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), SIZE.0, SIZE.1);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(&buf))
        .map_err(|x| werr(&png_path, x.to_string()))?;
    Ok(vec![svg_path, png_path])
}
