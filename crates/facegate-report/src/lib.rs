//! An evaluation report as files people can look at: `report.json` (every figure),
//! `report.md` (the tables), and the DET curve and score histograms as SVG and PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Once;

use facegate_eval::report::Report;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;

mod groups;

const SIZE: (u32, u32) = (900, 640);
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("drawing {0}: {1}")]
    Draw(String, String),
    #[error("encoding {0}: {1}")]
    Png(PathBuf, image::ImageError),
}

/// Write the report into `dir` (created if needed); returns the files written.
pub fn write(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Io(dir.to_path_buf(), e))?;
    let mut files = Vec::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<(), ReportError> {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| ReportError::Io(path.clone(), e))?;
        files.push(path);
        Ok(())
    };
    let json = serde_json::to_vec_pretty(report).expect("a report serialises");
    put("report.json", &json)?;
    put("report.md", markdown(report).as_bytes())?;
    put("det.svg", svg("det", |root| draw_det(root, report))?.as_bytes())?;
    put(
        "scores.svg",
        svg("scores", |root| draw_histogram(root, report))?.as_bytes(),
    )?;
    if !report.groups.is_empty() {
        put(
            "groups.svg",
            svg_sized("groups", groups::size(report), |root| groups::draw(root, report))?.as_bytes(),
        )?;
    }
    let (det, scores) = (dir.join("det.png"), dir.join("scores.png"));
    png(&det, |root| draw_det(root, report))?;
    png(&scores, |root| draw_histogram(root, report))?;
    files.extend([det, scores]);
    if !report.groups.is_empty() {
        let path = dir.join("groups.png");
        png_sized(&path, groups::size(report), |root| groups::draw(root, report))?;
        files.push(path);
    }
    Ok(files)
}

type Area<B> = DrawingArea<B, Shift>;

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            panic!("the embedded font does not parse");
        }
    });
}

fn svg(what: &str, draw: impl FnOnce(Area<SVGBackend>) -> Result<(), String>) -> Result<String, ReportError> {
    svg_sized(what, SIZE, draw)
}

fn svg_sized(
    what: &str,
    size: (u32, u32),
    draw: impl FnOnce(Area<SVGBackend>) -> Result<(), String>,
) -> Result<String, ReportError> {
    register_font();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        draw(root).map_err(|e| ReportError::Draw(format!("{what}.svg"), e))?;
    }
    Ok(out)
}

fn png(path: &Path, draw: impl FnOnce(Area<BitMapBackend>) -> Result<(), String>) -> Result<(), ReportError> {
    png_sized(path, SIZE, draw)
}

fn png_sized(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(Area<BitMapBackend>) -> Result<(), String>,
) -> Result<(), ReportError> {
    register_font();
    let mut buf = vec![0u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, size).into_drawing_area();
        draw(root).map_err(|e| ReportError::Draw(path.display().to_string(), e))?;
    }
    image::RgbImage::from_raw(size.0, size.1, buf)
        .expect("buffer matches the size")
        .save(path)
        .map_err(|e| ReportError::Png(path.to_path_buf(), e))
}

/// The largest power of ten at or below `v`.
fn decade(v: f64) -> f64 {
    10f64.powf(v.log10().floor())
}

const GENUINE: RGBColor = RGBColor(0, 114, 178);
const IMPOSTOR: RGBColor = RGBColor(213, 94, 0);
const POINT: RGBColor = RGBColor(0, 158, 115);

type DetChart<'a, B> = ChartContext<'a, B, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// FNMR against FMR, both on log axes from the given lower bounds to 1, with the mesh drawn.
fn det_axes<'a, B: DrawingBackend>(
    root: &'a Area<B>,
    caption: String,
    x_lo: f64,
    y_lo: f64,
) -> Result<DetChart<'a, B>, String> {
    let e = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_lo..1.0).log_scale(), (y_lo..1.0).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("FMR (false match rate)")
        .y_desc("FNMR (false non-match rate)")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    Ok(chart)
}

fn draw_det<B: DrawingBackend>(root: Area<B>, r: &Report) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let all = &r
        .buckets
        .iter()
        .find(|b| b.name == "all")
        .expect("the all bucket")
        .at_threshold;
    // The curve is over templates: comparisons with a refused photo are not on it.
    let (genuine, impostor) = all.templates();
    // Rates of zero cannot sit on a log axis: the axes start half a comparison below the
    // smallest measurable rate, and zeros are drawn there.
    let x_lo = decade(0.5 / (impostor.max(1) as f64)).min(1e-2);
    let y_lo = decade(0.5 / (genuine.max(1) as f64)).min(1e-2);
    let clamp = |v: f64, lo: f64| v.max(lo);
    let caption = format!("DET curve: {} genuine, {} impostor comparisons", genuine, impostor);
    let mut chart = det_axes(&root, caption, x_lo, y_lo)?;
    chart
        .draw_series(LineSeries::new(
            [(x_lo, x_lo.max(y_lo)), (1.0, 1.0)].map(|(x, _)| (x, clamp(x, y_lo))),
            ShapeStyle::from(&BLACK.mix(0.25)).stroke_width(1),
        ))
        .map_err(e)?
        .label("FMR = FNMR")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.25)));
    chart
        .draw_series(LineSeries::new(
            r.det.iter().map(|p| (clamp(p[1], x_lo), clamp(p[2], y_lo))),
            ShapeStyle::from(&GENUINE).stroke_width(2),
        ))
        .map_err(e)?
        .label(format!("{} (EER {:.2} %)", r.context.model, 100.0 * r.eer))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GENUINE.stroke_width(2)));
    for p in &r.operating_points {
        let (Some(fmr), Some(fnmr), Some(t)) = (p.fmr, p.fnmr, p.threshold) else {
            continue;
        };
        let at = (clamp(fmr, x_lo), clamp(fnmr, y_lo));
        chart
            .draw_series([
                Circle::new(at, 5, POINT.filled()).into_dyn(),
                Text::new(
                    format!("{} (t = {t:.4})", p.name),
                    (at.0 * 1.15, at.1 * 1.15),
                    ("sans-serif", 14),
                )
                .into_dyn(),
            ])
            .map_err(e)?;
    }
    let at = (clamp(all.fmr, x_lo), clamp(all.fnmr, y_lo));
    chart
        .draw_series([Cross::new(at, 7, IMPOSTOR.stroke_width(3))])
        .map_err(e)?
        .label(format!("configured threshold {:.4}", r.threshold))
        .legend(|(x, y)| Cross::new((x + 10, y), 6, IMPOSTOR.stroke_width(3)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

fn draw_histogram<B: DrawingBackend>(root: Area<B>, r: &Report) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let h = &r.histogram;
    let bins = h.genuine.len().max(1);
    let width = (h.hi - h.lo) / bins as f64;
    let share = |counts: &[usize]| -> Vec<f64> {
        let total: usize = counts.iter().sum();
        counts.iter().map(|&c| c as f64 / total.max(1) as f64).collect()
    };
    let (g, i) = (share(&h.genuine), share(&h.impostor));
    let top = g.iter().chain(&i).copied().fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("Scores: genuine and impostor comparisons", ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(h.lo..h.hi, 0.0..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("cosine similarity")
        .y_desc("share of the comparisons of each kind")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(e)?;
    let (genuine_n, impostor_n) = (h.genuine.iter().sum::<usize>(), h.impostor.iter().sum::<usize>());
    for (shares, color, label) in [
        (&i, IMPOSTOR, format!("impostor ({impostor_n})")),
        (&g, GENUINE, format!("genuine ({genuine_n})")),
    ] {
        chart
            .draw_series(shares.iter().enumerate().filter(|(_, v)| **v > 0.0).map(|(b, &v)| {
                let x0 = h.lo + b as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, v)], color.mix(0.55).filled())
            }))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], color.mix(0.55).filled()));
    }
    let mut lines = vec![(r.threshold, format!("configured {:.4}", r.threshold), IMPOSTOR)];
    lines.extend(
        r.operating_points
            .iter()
            .filter_map(|p| p.threshold.map(|t| (t, format!("{} {t:.4}", p.name), POINT))),
    );
    for (t, label, color) in lines {
        if !(h.lo..=h.hi).contains(&t) {
            continue;
        }
        chart
            .draw_series(LineSeries::new([(t, 0.0), (t, top)], color.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

fn pct(v: f64) -> String {
    format!("{:.2} %", 100.0 * v)
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or("–".into(), pct)
}

/// The tables of the report, for people.
pub fn markdown(r: &Report) -> String {
    let c = &r.context;
    let mut s = String::new();
    let _ = writeln!(s, "# Evaluation report\n");
    let _ = writeln!(s, "- pairs: `{}`", c.pairs_file);
    let _ = writeln!(
        s,
        "- model: `{}`; networks on {}; scoring: {}",
        c.model, c.device, c.scoring
    );
    let _ = writeln!(s, "- impostor comparisons: {}", c.impostors);
    let _ = writeln!(s, "- time: {:.1} s\n", c.seconds);
    let _ = writeln!(s, "![DET curve](det.svg)\n\n![Score histograms](scores.svg)\n");
    let p = &r.pairs;
    let _ = writeln!(s, "## Summary\n");
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| listed pairs | {} ({} genuine, {} impostor, {} with a refused photo) |",
        p.pairs, p.genuine, p.impostor, p.failed_pairs
    );
    let _ = writeln!(
        s,
        "| accuracy on the listed pairs at {:.4} | {} |",
        p.threshold,
        pct(p.accuracy)
    );
    let _ = writeln!(
        s,
        "| best accuracy on the listed pairs | {} at {:.4} |",
        pct(p.best_accuracy),
        p.best_threshold
    );
    let a = &r.at_threshold;
    let _ = writeln!(
        s,
        "| comparisons | {} genuine, {} impostor ({} with a refused photo) |",
        a.genuine, a.impostor, a.refused
    );
    let _ = writeln!(s, "| EER | {} at {:.4} |", pct(r.eer), r.eer_threshold);
    let _ = writeln!(
        s,
        "| at the configured threshold {:.4} | FMR {}, FNMR {}, FRR {} |",
        r.threshold,
        pct(a.fmr),
        pct(a.fnmr),
        pct(a.frr)
    );
    let _ = writeln!(
        s,
        "| failure to detect | {} ({} of {} photos) |",
        pct(r.failure_to_detect_rate),
        r.failed_images,
        r.images
    );
    for (code, n) in &r.failures_by_reason {
        let _ = writeln!(s, "| refused: `{code}` | {n} |");
    }
    let _ = writeln!(s, "\n## Operating points\n");
    let _ = writeln!(
        s,
        "The threshold for each target FMR, calibrated on these comparisons. FNMR is over genuine \
         comparisons where both photos gave a template; FRR also counts a refused photo as a \
         rejection. A target needs at least 1/FMR impostor comparisons to be measured (`--all-pairs` \
         gives many more).\n"
    );
    let _ = writeln!(
        s,
        "| operating point | threshold | FMR | FNMR | FRR |\n|---|---|---|---|---|"
    );
    for o in &r.operating_points {
        match o.threshold {
            Some(t) => {
                let _ = writeln!(
                    s,
                    "| `{}` | {t:.4} | {} | {} | {} |",
                    o.name,
                    opt_pct(o.fmr),
                    opt_pct(o.fnmr),
                    opt_pct(o.frr)
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "| `{}` | not resolved: needs {} impostor comparisons, {} here | – | – | – |",
                    o.name, o.needs_impostors, a.impostor
                );
            }
        }
    }
    let _ = writeln!(s, "\n## By face quality\n");
    let names: Vec<&str> = r
        .operating_points
        .iter()
        .filter(|o| o.threshold.is_some())
        .map(|o| o.name.as_str())
        .collect();
    let _ = write!(
        s,
        "| bucket | genuine | impostor | refused | FMR @ {t:.4} | FNMR @ {t:.4} | FRR @ {t:.4} |",
        t = r.threshold
    );
    for n in &names {
        let _ = write!(s, " FRR @ `{n}` |");
    }
    let _ = writeln!(s, "\n|---|---|---|---|---|---|---|{}", "---|".repeat(names.len()));
    for b in &r.buckets {
        let x = &b.at_threshold;
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            b.name,
            x.genuine,
            x.impostor,
            x.refused,
            pct(x.fmr),
            pct(x.fnmr),
            pct(x.frr)
        );
        for n in &names {
            let _ = write!(s, " {} |", opt_pct(b.frr_at.get(*n).copied()));
        }
        let _ = writeln!(s);
    }
    let _ = writeln!(s);
    for b in &r.buckets {
        let _ = writeln!(s, "- `{}`: {}", b.name, b.definition);
    }
    s.push_str(&groups::markdown(r));
    s
}

/// Colour-blind-safe line colours (Okabe–Ito), one per compared model.
const PALETTE: [RGBColor; 6] = [
    GENUINE,
    IMPOSTOR,
    POINT,
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// Write a comparison of evaluations on the same pairs into `dir`: `compare.md` (one table
/// row per model) and `compare-det.svg`/`.png` (their DET curves on one plot). `reports` are
/// (label, report), in the order given.
pub fn write_comparison(reports: &[(String, Report)], dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Io(dir.to_path_buf(), e))?;
    let md = dir.join("compare.md");
    std::fs::write(&md, comparison_markdown(reports)).map_err(|e| ReportError::Io(md.clone(), e))?;
    let svg_path = dir.join("compare-det.svg");
    let text = svg("compare-det", |root| draw_dets(root, reports))?;
    std::fs::write(&svg_path, text).map_err(|e| ReportError::Io(svg_path.clone(), e))?;
    let png_path = dir.join("compare-det.png");
    png(&png_path, |root| draw_dets(root, reports))?;
    Ok(vec![md, svg_path, png_path])
}

fn draw_dets<B: DrawingBackend>(root: Area<B>, reports: &[(String, Report)]) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let counts: Vec<(usize, usize)> = reports.iter().map(|(_, r)| r.at_threshold.templates()).collect();
    let genuine = counts.iter().map(|c| c.0).max().unwrap_or(1).max(1);
    let impostor = counts.iter().map(|c| c.1).max().unwrap_or(1).max(1);
    let x_lo = decade(0.5 / impostor as f64).min(1e-2);
    let y_lo = decade(0.5 / genuine as f64).min(1e-2);
    let mut chart = det_axes(&root, format!("DET curves: {} models", reports.len()), x_lo, y_lo)?;
    for (i, (label, r)) in reports.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                r.det.iter().map(|p| (p[1].max(x_lo), p[2].max(y_lo))),
                ShapeStyle::from(&colour).stroke_width(2),
            ))
            .map_err(e)?
            .label(format!("{label} (EER {:.2} %)", 100.0 * r.eer))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}

/// The comparison table: for each model, the figures a strict operating point is chosen by.
pub fn comparison_markdown(reports: &[(String, Report)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Model comparison\n");
    let files: std::collections::BTreeSet<&str> = reports.iter().map(|(_, r)| r.context.pairs_file.as_str()).collect();
    let files: Vec<&str> = files.into_iter().collect();
    let _ = writeln!(s, "- pairs: `{}`", files.join("`, `"));
    if files.len() > 1 {
        let _ = writeln!(
            s,
            "- **the reports were made on different pair files: the rows do not compare**"
        );
    }
    let _ = writeln!(
        s,
        "- s per image: each run's wall time over its photos, on its own machine and load; \
         compare speed with a benchmark run instead"
    );
    let _ = writeln!(s, "\n![DET curves](compare-det.svg)\n");
    // Every operating point any report resolved, in the order of the first that has it.
    let mut names: Vec<String> = Vec::new();
    for (_, r) in reports {
        for p in &r.operating_points {
            if !names.contains(&p.name) {
                names.push(p.name.clone());
            }
        }
    }
    let _ = write!(s, "| model | id | best accuracy | EER |");
    for n in &names {
        let _ = write!(s, " FNMR @ {} |", n.replace("fmr_", "FMR "));
    }
    let _ = writeln!(
        s,
        " failure to detect | comparisons (genuine / impostor) | s per image |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(7 + names.len()));
    for (label, r) in reports {
        let (g, i) = r.at_threshold.templates();
        let _ = write!(
            s,
            "| {label} | `{}` | {} | {} |",
            r.context.model,
            pct(r.pairs.best_accuracy),
            pct(r.eer)
        );
        for n in &names {
            let fnmr = r.operating_points.iter().find(|p| &p.name == n).and_then(|p| p.fnmr);
            let _ = write!(s, " {} |", fnmr.map_or("not resolved".to_string(), pct));
        }
        let _ = writeln!(
            s,
            " {} of {} | {g} / {i} | {:.3} |",
            r.failed_images,
            r.images,
            r.context.seconds / r.images.max(1) as f64
        );
    }
    s
}
