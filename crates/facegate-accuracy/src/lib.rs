//! An engine run over a pair list, measured: every distinct photo analysed once, the listed
//! pairs (or every pair of different people) scored, and the report `facegate eval --json`
//! prints. The command line and the Python package's `evaluate` both call [`evaluate`], so
//! they give the same figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use facegate_core::{CalibratedPoint, Calibration, Descriptor, Detector, ImageBytes, Rejection};
use facegate_eval::groups::{GroupsError, read_groups};
use facegate_eval::report::{self, BucketLimits, Comparison, Inputs, Quality, Report};
use facegate_eval::{PairsError, Scored, identities, metrics, read_pairs};
use facegate_pipeline::{Engine, Face, FacePolicy};

#[derive(Debug, thiserror::Error)]
pub enum AccuracyError {
    #[error(transparent)]
    Pairs(#[from] PairsError),
    #[error(transparent)]
    Groups(#[from] GroupsError),
    /// A wrong images folder would otherwise "measure" 0 % accuracy on unreadable files.
    #[error(
        "none of the {count} photos the list names is a file (the first would be {first}); \
         the images folder must be the one that holds them as the list names them"
    )]
    NoImages { count: usize, first: String },
    #[error("a rate must be in (0, 1), not {0}")]
    Rate(f64),
    #[error("cannot calibrate the default operating point {point}: it {why}")]
    Calibration { point: String, why: String },
}

/// Why a listed photo gave no face: its file could not be read, or the pipeline refused it.
#[derive(Debug)]
pub enum Refusal {
    Unreadable,
    Rejected(Rejection),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable_file",
            Self::Rejected(r) => r.code(),
        }
    }
}

/// What to measure, as `facegate eval`'s options name it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pair list (LFW's pairs.txt format, or a TSV of path, path, same).
    pub pairs: PathBuf,
    /// The image folder (default: beside the pair file).
    pub images: Option<PathBuf>,
    /// The face policy for both photos.
    pub policy: FacePolicy,
    /// Impostors from every pair of photos of different people, not only the listed ones.
    pub all_pairs: bool,
    /// With `all_pairs`, only pairs of a listed probe and a listed reference.
    pub cross_roles: bool,
    /// Target false match rates of the operating points.
    pub target_fmr: Vec<f64>,
    /// Error rates by group: a TSV of people or images and their group labels.
    pub groups: Option<PathBuf>,
    /// Quality bucket limits; `None` keeps the detector's defaults.
    pub small_face_px: Option<f32>,
    pub blur_sharpness: Option<f32>,
    pub pose_yaw: Option<f32>,
}

impl Options {
    /// The command line's defaults for `pairs`.
    pub fn new(pairs: impl Into<PathBuf>) -> Self {
        Self {
            pairs: pairs.into(),
            images: None,
            policy: FacePolicy::Dominant,
            all_pairs: false,
            cross_roles: false,
            target_fmr: vec![1e-2, 1e-3, 1e-4],
            groups: None,
            small_face_px: None,
            blur_sharpness: None,
            pose_yaw: None,
        }
    }
}

/// One model on one pair list.
#[derive(Debug)]
pub struct Evaluation {
    pub report: Report,
    /// The impostor scores' mean and population deviation (for a calibration file).
    pub impostor_stats: Option<(f64, f64)>,
}

/// The face of each photo file (under `policy`), or why there is none, in order. Files are
/// read and analysed a batch at a time, so memory stays bounded by the batch; `done` is told
/// how many photos are finished after each batch, `each` gets a photo's index and its face.
pub fn for_each_face<P: AsRef<Path>>(
    engine: &Engine,
    photos: &[P],
    policy: FacePolicy,
    mut done: impl FnMut(usize),
    mut each: impl FnMut(usize, Result<Face, Refusal>),
) {
    let batch = engine.config().batch_size.max(1);
    for (c, chunk) in photos.chunks(batch).enumerate() {
        let bytes: Vec<Option<ImageBytes>> = chunk
            .iter()
            .map(|p| std::fs::read(p.as_ref()).ok().map(ImageBytes::new))
            .collect();
        let data: Vec<&[u8]> = bytes
            .iter()
            .map(|b| b.as_ref().map_or(&[][..], |b| b.as_slice()))
            .collect();
        let faces = engine.analyze(&data, &vec![policy; data.len()]).items;
        for (i, (b, face)) in bytes.iter().zip(faces).enumerate() {
            let face = match b {
                None => Err(Refusal::Unreadable),
                Some(_) => face.map_err(Refusal::Rejected),
            };
            each(c * batch + i, face);
        }
        done(c * batch + chunk.len());
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

/// One model on the pair list: the report, and the impostor scores' statistics. `done` is
/// told how many of the list's distinct photos are analysed, and how many there are.
pub fn evaluate(
    engine: &Engine,
    options: &Options,
    mut done: impl FnMut(usize, usize),
) -> Result<Evaluation, AccuracyError> {
    if let Some(&bad) = options.target_fmr.iter().find(|r| !(**r > 0.0 && **r < 1.0)) {
        return Err(AccuracyError::Rate(bad));
    }
    let pairs = read_pairs(&options.pairs, options.images.as_deref())?;
    // Read before the long part, so a bad file fails at once.
    let group_file = options.groups.as_deref().map(read_groups).transpose()?;
    let (images, people) = identities(&pairs);
    if let Some(first) = images.first().filter(|_| images.iter().all(|p| !p.is_file())) {
        return Err(AccuracyError::NoImages {
            count: images.len(),
            first: first.display().to_string(),
        });
    }
    let start = Instant::now();

    // Each distinct photo is analysed once.
    let mut descriptors: Vec<Option<Descriptor>> = Vec::with_capacity(images.len());
    let mut qualities: Vec<Quality> = Vec::with_capacity(images.len());
    let total = images.len();
    for_each_face(
        engine,
        &images,
        options.policy,
        |n| done(n, total),
        |_, face| {
            qualities.push(quality(&face));
            descriptors.push(face.ok().map(|f| f.descriptor));
        },
    );

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

    let (comparisons, impostors) = if options.all_pairs {
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
            |a: usize, b: usize| !options.cross_roles || (probe[a] && reference[b]) || (reference[a] && probe[b]);
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
            if options.cross_roles {
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
        small_face_px: options.small_face_px.unwrap_or(limits.small_face_px),
        blur_sharpness: options.blur_sharpness.unwrap_or(limits.blur_sharpness),
        pose_yaw: options.pose_yaw.unwrap_or(limits.pose_yaw),
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
            pairs_file: options.pairs.display().to_string(),
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
        target_fmrs: &options.target_fmr,
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
    Ok(Evaluation { report, impostor_stats })
}

/// The resolved operating points as a calibration; the default must be one of them.
pub fn calibration(r: &Report, default: &str, impostors: Option<(f64, f64)>) -> Result<Calibration, AccuracyError> {
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
        let why = r.operating_points.iter().find(|p| p.name == default).map_or(
            "is not among the target rates".to_string(),
            |p| {
                format!(
                    "needs {} impostor comparisons and there are {}; add --all-pairs or more data",
                    p.needs_impostors,
                    r.at_threshold.templates().1
                )
            },
        );
        return Err(AccuracyError::Calibration {
            point: default.to_string(),
            why,
        });
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

    #[test]
    fn thresholds_round_up_to_the_next_f32() {
        let t = 0.1f64; // not an f32
        let v = f32_at_or_above(t);
        assert!(f64::from(v) >= t && f64::from(v.next_down()) < t);
        assert_eq!(f32_at_or_above(0.5), 0.5);
    }
}
