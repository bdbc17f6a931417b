//! `facegate eval`: accuracy on a pair list, an evaluation report people can look at, and a
//! calibration file that `verify`, `serve` and `batch` read.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use facegate_accuracy::Options;
use facegate_eval::report::Report;
use facegate_pipeline::FacePolicy;

use crate::EngineArgs;

#[derive(Args)]
pub struct EvalArgs {
    /// The pair list (LFW's pairs.txt format, or a TSV of path, path, same).
    #[arg(long, required_unless_present = "compare")]
    pairs: Option<PathBuf>,
    /// Image folder (default: beside the pair file).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Face policy for both photos: dominant (largest clearly-dominant face) or single.
    #[arg(long, value_enum, default_value_t = Policy::Dominant)]
    policy: Policy,
    /// The whole report as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Write report.md, report.json, det.svg/.png and scores.svg/.png into this folder.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Impostor scores from every pair of photos of different people (one 1:N kernel scan on
    /// wgpu), not only the listed impostor pairs; genuine pairs stay the listed ones.
    #[arg(long)]
    all_pairs: bool,
    /// With --all-pairs, only pairs of a photo listed as a probe and one listed as a reference,
    /// as the deployed check compares them: for lists whose references are another kind of
    /// photo (ID-card photos, whose shared print and design make them look alike).
    #[arg(long, requires = "all_pairs")]
    cross_roles: bool,
    /// Target false match rates of the operating points.
    #[arg(long, value_delimiter = ',', default_value = "1e-2,1e-3,1e-4", value_parser = rate)]
    target_fmr: Vec<f64>,
    /// Write the calibrated operating points to this file (TOML) for verify/serve/batch.
    #[arg(long)]
    write_calibration: Option<PathBuf>,
    /// The calibration file's default operating point.
    #[arg(long, default_value = "fmr_1e-3")]
    default_point: String,
    /// Evaluate each of these models (registry names, `A+B` fusions, or `report.json` files of
    /// earlier runs) on the same pairs and put their DET curves on one plot: `--report DIR`
    /// gets `compare.md`, `compare-det.svg/.png` and each model's own report in `DIR/<model>/`.
    #[arg(long, value_delimiter = ',', num_args = 1.., conflicts_with_all = ["write_calibration", "json"])]
    compare: Vec<String>,
    /// Error rates by group: a TSV whose header's first column is `person` (the name in the
    /// pair list, else the image's folder) or `image` (a path as in the pair list), and whose
    /// other columns are group dimensions (e.g. `age_group`). Each group gets FNMR/FRR with
    /// 95 % intervals, refusals by reason, and FMR between its own people. Unlisted people
    /// form the group `unknown`.
    #[arg(long)]
    groups: Option<PathBuf>,
    /// Quality buckets: faces narrower than this (px) are small.
    #[arg(long)]
    small_face_px: Option<f32>,
    /// Quality buckets: face crops less sharp than this are blurred.
    #[arg(long)]
    blur_sharpness: Option<f32>,
    /// Quality buckets: faces turned more than this |yaw| are posed.
    #[arg(long)]
    pose_yaw: Option<f32>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Policy {
    /// The largest face, when it clearly dominates.
    Dominant,
    /// Exactly one face.
    Single,
}

/// A false match rate: a usage error (exit 2) unless in (0, 1).
fn rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1.0 => Ok(f),
        _ => Err(format!("`{s}`: a rate must be a number in (0, 1)")),
    }
}

pub fn eval(args: EvalArgs) -> Result<()> {
    if !args.compare.is_empty() {
        return compare(&args);
    }
    let engine = crate::engine(&args.engine)?;
    let (report, impostor_stats) = evaluate(&args, &engine)?;
    if let Some(dir) = &args.report {
        let files = facegate_report::write(&report, dir)?;
        eprintln!("facegate: report written: {}", list(&files));
    }
    if let Some(path) = &args.write_calibration {
        let calibration = facegate_accuracy::calibration(&report, &args.default_point, impostor_stats)?;
        std::fs::write(path, calibration.to_toml()).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "facegate: calibration written: {} (default {}, threshold {:.4})",
            path.display(),
            calibration.default,
            calibration.operating_points[&calibration.default].threshold
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

/// `eval --compare A,B,…`: each model evaluated in turn (or its earlier report read), then
/// the reports side by side.
fn compare(args: &EvalArgs) -> Result<()> {
    if args.compare.len() < 2 {
        return Err(crate::usage("--compare needs two or more models (A,B)"));
    }
    let dir = args
        .report
        .as_ref()
        .ok_or_else(|| crate::usage("--compare writes its plot and table into --report DIR"))?;
    let mut reports = Vec::with_capacity(args.compare.len());
    for item in &args.compare {
        let path = std::path::Path::new(item);
        let report: Report = if item.ends_with(".json") && path.is_file() {
            let text = std::fs::read(path).with_context(|| format!("reading {item}"))?;
            serde_json::from_slice(&text).with_context(|| format!("{item} is not a facegate report.json"))?
        } else {
            let mut engine_args = args.engine.clone();
            engine_args.models.model = Some(item.clone());
            let engine = crate::engine(&engine_args)?;
            eprintln!("facegate: evaluating {}", engine.model_version());
            let (report, _) = evaluate(args, &engine)?;
            let own = dir.join(item.replace('+', "_"));
            let files = facegate_report::write(&report, &own)?;
            eprintln!("facegate: report written: {}", list(&files));
            report
        };
        // An earlier report is labelled by its model id's embedder part, not its path.
        let label = match report.context.model.split_once('/') {
            Some((_, rest)) if item.ends_with(".json") => rest.to_string(),
            _ => item.clone(),
        };
        println!("== {label}");
        print_summary(&report);
        reports.push((label, report));
    }
    let files = facegate_report::write_comparison(&reports, dir)?;
    eprintln!("facegate: comparison written: {}", list(&files));
    Ok(())
}

/// One model on the pair list (the shared measurement, `facegate_accuracy::evaluate`), with
/// a progress bar on a terminal.
fn evaluate(args: &EvalArgs, engine: &facegate_pipeline::Engine) -> Result<(Report, Option<(f64, f64)>)> {
    let pairs = args
        .pairs
        .clone()
        .ok_or_else(|| crate::usage("--pairs FILE: the pairs to evaluate the model on"))?;
    let options = Options {
        images: args.images.clone(),
        policy: match args.policy {
            Policy::Dominant => FacePolicy::Dominant,
            Policy::Single => FacePolicy::Single,
        },
        all_pairs: args.all_pairs,
        cross_roles: args.cross_roles,
        target_fmr: args.target_fmr.clone(),
        groups: args.groups.clone(),
        small_face_px: args.small_face_px,
        blur_sharpness: args.blur_sharpness,
        pose_yaw: args.pose_yaw,
        ..Options::new(pairs)
    };
    let bar = crate::progress_bar(0);
    let e = facegate_accuracy::evaluate(engine, &options, |n, total| {
        bar.set_length(total as u64);
        bar.set_position(n as u64);
    })?;
    bar.finish_and_clear();
    Ok((e.report, e.impostor_stats))
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_summary(r: &Report) {
    let m = &r.pairs;
    let pct = |v: f64| format!("{:.2}%", 100.0 * v);
    println!(
        "pairs:              {} ({} genuine, {} impostor)",
        m.pairs, m.genuine, m.impostor
    );
    println!(
        "accuracy @ {:.4}:   {} (failed pairs count as errors: {})",
        m.threshold,
        pct(m.accuracy),
        m.failed_pairs
    );
    println!(
        "best accuracy:      {} at threshold {:.4}",
        pct(m.best_accuracy),
        m.best_threshold
    );
    let a = &r.at_threshold;
    println!(
        "comparisons:        {} genuine, {} impostor ({})",
        a.genuine, a.impostor, r.context.impostors
    );
    println!("EER:                {} at threshold {:.4}", pct(r.eer), r.eer_threshold);
    println!(
        "at {:.4}:           FMR {}, FNMR {}, FRR {}",
        r.threshold,
        pct(a.fmr),
        pct(a.fnmr),
        pct(a.frr)
    );
    for p in &r.operating_points {
        match (p.threshold, p.fnmr, p.frr) {
            (Some(t), Some(fnmr), Some(frr)) => println!(
                "{:<19} threshold {t:.4}: FNMR {}, FRR {}",
                format!("{}:", p.name),
                pct(fnmr),
                pct(frr)
            ),
            _ => println!(
                "{:<19} not resolved (needs {} impostor comparisons; try --all-pairs)",
                format!("{}:", p.name),
                p.needs_impostors
            ),
        }
    }
    println!(
        "failure to detect:  {} ({} of {} images) {:?}",
        pct(r.failure_to_detect_rate),
        r.failed_images,
        r.images,
        r.failures_by_reason
    );
    for b in &r.buckets {
        let x = &b.at_threshold;
        println!(
            "bucket {:<13} {} genuine, {} impostor, {} refused: FMR {}, FRR {}",
            b.name,
            x.genuine,
            x.impostor,
            x.refused,
            pct(x.fmr),
            pct(x.frr)
        );
    }
    for d in &r.groups {
        for g in &d.groups {
            let at: Vec<String> =
                g.at.iter()
                    .map(|x| {
                        let fnmr = x.fnmr.map_or("–".into(), |e| {
                            format!("{} [{}, {}]", pct(e.rate), pct(e.lo), pct(e.hi))
                        });
                        format!("{} FNMR {fnmr}", x.point)
                    })
                    .collect();
            println!(
                "group {}={}: {} people, {} genuine: {}",
                d.name,
                g.name,
                g.people,
                g.genuine,
                at.join("; ")
            );
        }
        for x in d.disparities.iter().filter(|x| x.flagged) {
            println!(
                "group {} at {}: FNMR of {} and {} differ beyond their 95 % intervals",
                d.name, x.point, x.highest, x.lowest
            );
        }
    }
    println!(
        "time:               {:.1} s ({:.1} ms per image) on {}",
        r.context.seconds,
        1e3 * r.context.seconds / r.images.max(1) as f64,
        r.context.device
    );
    println!("scoring:            {}", r.context.scoring);
}
