//! `facegate eval`: accuracy on a pair list, an evaluation report people can look at, and a
//! calibration file that `verify`, `serve` and `batch` read.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use facegate_core::{CalibratedPoint, Calibration, Descriptor, Detector, Rejection};
use facegate_eval::groups::read_groups;
use facegate_eval::report::{self, BucketLimits, Comparison, Inputs, Quality, Report};
use facegate_eval::{Scored, identities, metrics, read_pairs};
use facegate_pipeline::{Face, FacePolicy};

use crate::{EngineArgs, Refusal, for_each_face};

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

/// What the pipeline measured of a photo, or why it was refused.
fn quality(face: &Result<Face, Refusal>) -> Quality {
    match face {
        Ok(f) => Quality {
            face_px: Some(f.face.width.min(f.face.height)),
            sharpness: Some(f.sharpness),
            yaw: Some(f.yaw),
            refused: None,
        },
        Err(r) => {
            let mut q = Quality {
                refused: Some(r.code().to_string()),
                ..Quality::default()
            };
            let Refusal::Rejected(r) = r else { return q };
            match r {
                Rejection::FaceTooSmall { size_px, .. } | Rejection::PortraitTooSmall { size_px, .. } => {
                    q.face_px = Some(*size_px as f32)
                }
                Rejection::Blurred { sharpness, .. } => q.sharpness = Some(*sharpness),
                Rejection::TurnedAway { yaw, .. } => q.yaw = Some(*yaw),
                _ => {}
            }
            q
        }
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
        let calibration = calibration(&report, &args.default_point, impostor_stats)?;
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

/// One model on the pair list: the report, and the impostor scores' mean and deviation.
fn evaluate(args: &EvalArgs, engine: &facegate_pipeline::Engine) -> Result<(Report, Option<(f64, f64)>)> {
    let policy = match args.policy {
        Policy::Dominant => FacePolicy::Dominant,
        Policy::Single => FacePolicy::Single,
    };
    let pairs_file = args
        .pairs
        .as_ref()
        .ok_or_else(|| crate::usage("--pairs FILE: the pairs to evaluate the model on"))?;
    let pairs = read_pairs(pairs_file, args.images.as_deref())?;
    // Read before the long part, so a bad file fails at once.
    let group_file = args.groups.as_deref().map(read_groups).transpose()?;
    let (images, people) = identities(&pairs);
    // A wrong --images folder would otherwise "measure" 0 % accuracy on unreadable files.
    if let Some(first) = images.first().filter(|_| images.iter().all(|p| !p.is_file())) {
        bail!(
            "none of the {} photos the list names is a file (the first would be {}); \
             --images DIR must be the folder that holds them as the list names them",
            images.len(),
            first.display()
        );
    }
    let start = std::time::Instant::now();

    // Each distinct photo is analysed once.
    let mut descriptors: Vec<Option<Descriptor>> = Vec::with_capacity(images.len());
    let mut qualities: Vec<Quality> = Vec::with_capacity(images.len());
    for_each_face(engine, &images, policy, |_, face| {
        qualities.push(quality(&face));
        descriptors.push(face.ok().map(|f| f.descriptor));
    });

    // The listed pairs, scored in one batch (the WGSL pairs kernel on wgpu).
    let index = |p: &PathBuf| images.binary_search(p).expect("listed image");
    let listed: Vec<(usize, usize, bool)> = pairs
        .iter()
        .map(|p| (index(&p.probe), index(&p.reference), p.same))
        .collect();
    let present: Vec<Option<(&[f32], &[f32])>> = listed
        .iter()
        .map(|&(a, b, _)| match (&descriptors[a], &descriptors[b]) {
            (Some(x), Some(y)) => Some((x.as_slice(), y.as_slice())),
            _ => None,
        })
        .collect();
    let listed_scores: Vec<Comparison> = listed
        .iter()
        .zip(engine.score_where_present(&present))
        .map(|(&(a, b, same), score)| Comparison {
            a,
            b,
            scored: Scored {
                same,
                score: score.map(f64::from),
            },
        })
        .collect();
    let listed_scored: Vec<Scored> = listed_scores.iter().map(|c| c.scored).collect();

    let (comparisons, impostors) = if args.all_pairs {
        // Listed genuine pairs, and every pair of templates of different people.
        let with_template: Vec<usize> = (0..images.len()).filter(|&i| descriptors[i].is_some()).collect();
        let templates: Vec<&[f32]> = with_template
            .iter()
            .map(|&i| descriptors[i].as_ref().expect("present").as_slice())
            .collect();
        let matrix = engine.score_matrix(&templates);
        let n = with_template.len();
        let mut comparisons: Vec<Comparison> = listed_scores.iter().filter(|c| c.scored.same).copied().collect();
        let (mut probe, mut reference) = (vec![false; images.len()], vec![false; images.len()]);
        for &(a, b, _) in &listed {
            probe[a] = true;
            reference[b] = true;
        }
        let roles_meet =
            |a: usize, b: usize| !args.cross_roles || (probe[a] && reference[b]) || (reference[a] && probe[b]);
        for x in 0..n {
            for y in x + 1..n {
                let (a, b) = (with_template[x], with_template[y]);
                if people[a] != people[b] && roles_meet(a, b) {
                    comparisons.push(Comparison {
                        a,
                        b,
                        scored: Scored {
                            same: false,
                            score: Some(f64::from(matrix[x * n + y])),
                        },
                    });
                }
            }
        }
        let label = format!(
            "all-vs-all: every pair of the {n} photos with a template that show different people{} ({})",
            if args.cross_roles {
                ", one listed as a probe and the other as a reference"
            } else {
                ""
            },
            if engine.on_gpu() {
                "WGSL 1:N scan kernel"
            } else {
                "f64 on the CPU"
            }
        );
        (comparisons, label)
    } else {
        (listed_scores, "the listed impostor pairs".to_string())
    };
    let limits = match engine.config().detector {
        Detector::Mtcnn => BucketLimits::default(),
        Detector::TinyFaceDetector => BucketLimits::tiny_face_detector(),
    };
    let limits = BucketLimits {
        small_face_px: args.small_face_px.unwrap_or(limits.small_face_px),
        blur_sharpness: args.blur_sharpness.unwrap_or(limits.blur_sharpness),
        pose_yaw: args.pose_yaw.unwrap_or(limits.pose_yaw),
    };
    let threshold = f64::from(engine.threshold());
    let impostor_stats = impostor_stats(&comparisons);
    let group_labels = group_file.as_ref().map(|file| {
        // The person each image shows, where the pair list names them.
        let mut names: Vec<Option<String>> = vec![None; images.len()];
        for p in &pairs {
            if let Some(who) = &p.people {
                names[index(&p.probe)] = Some(who[0].clone());
                names[index(&p.reference)] = Some(who[1].clone());
            }
        }
        file.labels(&images, &names)
    });
    // Descriptors are not needed past this point.
    drop(descriptors);
    let report = report::build(Inputs {
        context: report::Context {
            pairs_file: pairs_file.display().to_string(),
            model: engine.model_version().to_string(),
            device: engine.device_label().to_string(),
            scoring: engine.scorer_label(),
            impostors,
            seconds: start.elapsed().as_secs_f64(),
        },
        quality: &qualities,
        comparisons: &comparisons,
        pairs: metrics(&listed_scored, threshold),
        threshold,
        target_fmrs: &args.target_fmr,
        limits,
        groups: group_file
            .as_ref()
            .zip(group_labels.as_ref())
            .map(|(file, labels)| report::Groups {
                dimensions: &file.dimensions,
                labels,
                people: &people,
            }),
    });

    Ok((report, impostor_stats))
}

fn list(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The resolved operating points as a calibration; the default must be one of them.
fn calibration(r: &Report, default: &str, impostors: Option<(f64, f64)>) -> Result<Calibration> {
    let points: BTreeMap<String, CalibratedPoint> = r
        .operating_points
        .iter()
        .filter_map(|p| {
            Some((
                p.name.clone(),
                CalibratedPoint {
                    threshold: f32_at_or_above(p.threshold?),
                    fmr: p.fmr?,
                    fnmr: p.fnmr?,
                    frr: p.frr?,
                },
            ))
        })
        .collect();
    if !points.contains_key(default) {
        let needs = r.operating_points.iter().find(|p| p.name == default).map_or(
            "is not among the --target-fmr rates".to_string(),
            |p| {
                format!(
                    "needs {} impostor comparisons and there are {}; add --all-pairs or more data",
                    p.needs_impostors,
                    r.at_threshold.templates().1
                )
            },
        );
        bail!("cannot calibrate the default operating point {default}: it {needs}");
    }
    let all = &r.at_threshold;
    Ok(Calibration {
        model: r.context.model.clone(),
        pairs_file: r.context.pairs_file.clone(),
        genuine_comparisons: all.genuine,
        impostor_comparisons: all.impostor,
        default: default.to_string(),
        operating_points: points,
        impostor_mean: impostors.map(|s| s.0),
        impostor_std: impostors.map(|s| s.1),
    })
}

/// The mean and (population) standard deviation of the impostor scores, in f64; `None` for
/// fewer than two.
fn impostor_stats(comparisons: &[Comparison]) -> Option<(f64, f64)> {
    let scores = || {
        comparisons
            .iter()
            .filter(|c| !c.scored.same)
            .filter_map(|c| c.scored.score)
    };
    let n = scores().count();
    if n < 2 {
        return None;
    }
    let mean = scores().sum::<f64>() / n as f64;
    let var = scores().map(|s| (s - mean).powi(2)).sum::<f64>() / n as f64;
    Some((mean, var.sqrt()))
}

/// The engine compares f32 scores: round the threshold up, never down onto the impostor score
/// it was placed just above.
fn f32_at_or_above(t: f64) -> f32 {
    let v = t as f32;
    if f64::from(v) < t { v.next_up() } else { v }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impostor_statistics_skip_genuine_and_refused_comparisons() {
        let c = |same, score| Comparison {
            a: 0,
            b: 1,
            scored: Scored { same, score },
        };
        let comparisons = [
            c(false, Some(0.1)),
            c(true, Some(0.9)),
            c(false, Some(0.3)),
            c(false, None),
            c(false, Some(0.5)),
        ];
        let (mean, std) = impostor_stats(&comparisons).unwrap();
        assert!((mean - 0.3).abs() < 1e-12, "{mean}");
        // Population deviation of 0.1, 0.3, 0.5: √(0.08 / 3).
        assert!((std - (0.08f64 / 3.0).sqrt()).abs() < 1e-12, "{std}");
        assert_eq!(impostor_stats(&comparisons[..2]), None);
    }
}
