//! The figures of an evaluation report: error rates over all comparisons, calibrated operating
//! points, and the same figures per face-quality bucket, so that the people a policy fails most
//! are visible. Rendering (Markdown, SVG, PNG) is `facegate-report`'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::groups::{Dimension, GroupInputs};
use crate::rates::{Metrics, ScoreSets, Scored};

/// What the pipeline measured of one photo's face, or why it refused the photo.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The detection box's shorter side, in pixels.
    pub face_px: Option<f32>,
    /// Variance of the Laplacian of the aligned face crop.
    pub sharpness: Option<f32>,
    /// |yaw| from the landmarks (0 frontal, 1 profile).
    pub yaw: Option<f32>,
    /// The refusal code when the photo gave no template.
    pub refused: Option<String>,
}

/// Where the quality buckets start. A refusal for that very reason (`face_too_small`,
/// `blurred`, `turned_away`) puts a photo in the bucket too.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BucketLimits {
    /// A face whose box is narrower than this is small.
    pub small_face_px: f32,
    /// A face crop less sharp than this is blurred.
    pub blur_sharpness: f32,
    /// A face turned further than this is posed.
    pub pose_yaw: f32,
}

impl Default for BucketLimits {
    /// Measured on LFW DevTrain photos (README "Evaluation reports") with MTCNN, the default
    /// detector: face box 83.2 px at the 5th percentile (3,442 photos), |yaw| 0.47 at the
    /// 90th; sharpness of the dlib chip 17.7 at the 10th (1,200 photos). Each bucket holds
    /// roughly the worst twentieth to tenth of such photos.
    fn default() -> Self {
        Self {
            small_face_px: 84.0,
            blur_sharpness: 17.5,
            pose_yaw: 0.45,
        }
    }
}

impl BucketLimits {
    /// TinyFaceDetector draws looser boxes than MTCNN: its 5th percentile on the same photos
    /// is 101.8 px.
    pub fn tiny_face_detector() -> Self {
        Self {
            small_face_px: 100.0,
            ..Self::default()
        }
    }
}

/// The quality buckets, in report order.
pub const BUCKETS: [&str; 5] = ["all", "good", "small_face", "blur", "pose"];
/// Comparisons with a photo refused for a reason that is not a quality measure.
pub const REFUSED_OTHER: &str = "refused_other";

impl BucketLimits {
    /// Which of small face, blur and pose apply to a photo.
    pub fn flags(&self, q: &Quality) -> [bool; 3] {
        let refused = |code: &str| q.refused.as_deref() == Some(code);
        [
            q.face_px.is_some_and(|v| v < self.small_face_px)
                || refused("face_too_small")
                || refused("document_portrait_too_small"),
            q.sharpness.is_some_and(|v| v < self.blur_sharpness) || refused("blurred"),
            q.yaw.is_some_and(|v| v.abs() > self.pose_yaw) || refused("turned_away"),
        ]
    }

    fn definitions(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("all", "every comparison".to_string()),
            (
                "good",
                "both photos gave a template and are in no other bucket".to_string(),
            ),
            (
                "small_face",
                format!(
                    "a photo's face box is under {} px, or it was refused as too small (a face or a document's portrait)",
                    self.small_face_px
                ),
            ),
            (
                "blur",
                format!(
                    "a photo's face crop has sharpness under {}, or it was refused as blurred",
                    self.blur_sharpness
                ),
            ),
            (
                "pose",
                format!(
                    "a photo's face is turned more than |yaw| {}, or it was refused as turned away",
                    self.pose_yaw
                ),
            ),
            (
                REFUSED_OTHER,
                "a photo was refused for another reason (no face, several faces, unreadable)".to_string(),
            ),
        ])
    }
}

/// One comparison of two evaluated photos (indices into the quality list).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub a: usize,
    pub b: usize,
    pub scored: Scored,
}

/// A calibrated operating point: the threshold for a target FMR and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// `fmr_1e-3` and so on.
    pub name: String,
    pub target_fmr: f64,
    /// Impostor templates needed to measure the target (1 / FMR); fewer leave it unresolved
    /// and the figures below empty.
    pub needs_impostors: usize,
    pub threshold: Option<f64>,
    pub fmr: Option<f64>,
    pub fnmr: Option<f64>,
    pub frr: Option<f64>,
}

/// Error rates of one set of comparisons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub genuine: usize,
    pub impostor: usize,
    /// Comparisons with a refused photo, and how many of them are genuine.
    pub refused: usize,
    pub refused_genuine: usize,
    pub fmr: f64,
    pub fnmr: f64,
    pub frr: f64,
}

impl Rates {
    /// Comparisons where both photos gave a template (what FMR, FNMR and the DET curve are over).
    pub fn templates(&self) -> (usize, usize) {
        let refused_impostor = self.refused - self.refused_genuine;
        (self.genuine - self.refused_genuine, self.impostor - refused_impostor)
    }

    fn at(sets: &ScoreSets, t: f64) -> Self {
        let (genuine, impostor) = sets.counts();
        Self {
            genuine,
            impostor,
            refused: sets.failed(),
            refused_genuine: sets.genuine_failed(),
            fmr: sets.fmr(t),
            fnmr: sets.fnmr(t),
            frr: sets.frr(t),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub name: String,
    pub definition: String,
    /// At the configured threshold.
    pub at_threshold: Rates,
    /// FRR at each resolved operating point's threshold (calibrated on all comparisons).
    pub frr_at: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub lo: f64,
    pub hi: f64,
    /// Comparisons per bin (equal widths from `lo` to `hi`).
    pub genuine: Vec<usize>,
    pub impostor: Vec<usize>,
}

/// Where the figures came from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub pairs_file: String,
    pub model: String,
    pub device: String,
    pub scoring: String,
    /// `listed pairs`, or `all-vs-all` when every pair of different people was compared.
    pub impostors: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub context: Context,
    pub images: usize,
    pub failed_images: usize,
    pub failure_to_detect_rate: f64,
    pub failures_by_reason: BTreeMap<String, usize>,
    /// The listed pairs alone, as `facegate eval` prints them.
    pub pairs: Metrics,
    /// The configured threshold, and all comparisons at it.
    pub threshold: f64,
    pub at_threshold: Rates,
    pub eer: f64,
    pub eer_threshold: f64,
    pub operating_points: Vec<OperatingPoint>,
    pub bucket_limits: BucketLimits,
    pub buckets: Vec<Bucket>,
    /// (threshold, FMR, FNMR), FMR falling.
    pub det: Vec<[f64; 3]>,
    pub histogram: Histogram,
    /// Error rates by group, per dimension of the `--groups` file (empty without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Dimension>,
}

/// The name of the operating point for a target FMR: `fmr_1e-3`.
pub fn operating_point_name(fmr: f64) -> String {
    format!("fmr_{fmr:e}")
}

/// Everything a report needs from an evaluation run.
pub struct Inputs<'a> {
    pub context: Context,
    pub quality: &'a [Quality],
    pub comparisons: &'a [Comparison],
    /// The listed pairs' metrics.
    pub pairs: Metrics,
    pub threshold: f64,
    pub target_fmrs: &'a [f64],
    pub limits: BucketLimits,
    pub groups: Option<Groups<'a>>,
}

/// Group labels for [`Inputs`]: see [`crate::groups::GroupInputs`].
pub struct Groups<'a> {
    pub dimensions: &'a [String],
    /// `[dimension][image]`.
    pub labels: &'a [Vec<String>],
    /// Each image's identity number.
    pub people: &'a [usize],
}

pub fn build(inputs: Inputs) -> Report {
    let Inputs {
        context,
        quality,
        comparisons,
        pairs,
        threshold,
        target_fmrs,
        limits,
        groups,
    } = inputs;
    let all = ScoreSets::new(&comparisons.iter().map(|c| c.scored).collect::<Vec<_>>());
    let (eer, eer_threshold) = all.eer();
    let operating_points: Vec<OperatingPoint> = target_fmrs
        .iter()
        .map(|&fmr| {
            let resolved = all.resolves(fmr);
            let t = all.threshold_at_fmr(fmr);
            let when = |v: f64| resolved.then_some(v);
            OperatingPoint {
                name: operating_point_name(fmr),
                target_fmr: fmr,
                needs_impostors: (1.0 / fmr).ceil() as usize,
                threshold: when(t),
                fmr: when(all.fmr(t)),
                fnmr: when(all.fnmr(t)),
                frr: when(all.frr(t)),
            }
        })
        .collect();

    // Bucket membership per photo, then per comparison (either photo).
    let flags: Vec<[bool; 3]> = quality.iter().map(|q| limits.flags(q)).collect();
    let other_refusal = |i: usize| quality[i].refused.is_some() && !flags[i].iter().any(|&f| f);
    let definitions = limits.definitions();
    let mut names: Vec<&str> = BUCKETS.to_vec();
    names.push(REFUSED_OTHER);
    let buckets = names
        .into_iter()
        .map(|name| {
            let member = |c: &Comparison| {
                let (a, b) = (c.a, c.b);
                match name {
                    "all" => true,
                    "good" => {
                        !flags[a].iter().chain(&flags[b]).any(|&f| f)
                            && quality[a].refused.is_none()
                            && quality[b].refused.is_none()
                    }
                    REFUSED_OTHER => other_refusal(a) || other_refusal(b),
                    _ => {
                        let k = BUCKETS.iter().position(|&n| n == name).expect("bucket") - 2;
                        flags[a][k] || flags[b][k]
                    }
                }
            };
            let sets = ScoreSets::new(
                &comparisons
                    .iter()
                    .filter(|c| member(c))
                    .map(|c| c.scored)
                    .collect::<Vec<_>>(),
            );
            Bucket {
                name: name.to_string(),
                definition: definitions[name].clone(),
                at_threshold: Rates::at(&sets, threshold),
                frr_at: operating_points
                    .iter()
                    .filter_map(|p| p.threshold.map(|t| (p.name.clone(), sets.frr(t))))
                    .collect(),
            }
        })
        .collect();

    let groups = groups.map_or_else(Vec::new, |g| {
        crate::groups::build(GroupInputs {
            dimensions: g.dimensions,
            labels: g.labels,
            people: g.people,
            quality,
            flags: &flags,
            comparisons,
            all: &all,
            threshold,
            operating_points: &operating_points,
        })
    });
    let failed_images = quality.iter().filter(|q| q.refused.is_some()).count();
    let mut failures_by_reason = BTreeMap::new();
    for code in quality.iter().filter_map(|q| q.refused.clone()) {
        *failures_by_reason.entry(code).or_default() += 1;
    }
    Report {
        context,
        images: quality.len(),
        failed_images,
        failure_to_detect_rate: failed_images as f64 / quality.len().max(1) as f64,
        failures_by_reason,
        pairs,
        threshold,
        at_threshold: Rates::at(&all, threshold),
        eer,
        eer_threshold,
        operating_points,
        bucket_limits: limits,
        buckets,
        det: all.det().into_iter().map(|(t, a, b)| [t, a, b]).collect(),
        histogram: histogram(&all, 50),
        groups,
    }
}

fn histogram(sets: &ScoreSets, bins: usize) -> Histogram {
    let (g, i) = (sets.genuine(), sets.impostor());
    let min = g
        .first()
        .into_iter()
        .chain(i.first())
        .copied()
        .fold(f64::INFINITY, f64::min);
    let max = g
        .last()
        .into_iter()
        .chain(i.last())
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    // Round outwards to hundredths so the axis reads well.
    let (lo, hi) = if min.is_finite() {
        ((min * 100.0).floor() / 100.0, ((max * 100.0).floor() + 1.0) / 100.0)
    } else {
        (0.0, 1.0)
    };
    let count = |scores: &[f64]| {
        let mut c = vec![0; bins];
        for &v in scores {
            let b = ((v - lo) / (hi - lo) * bins as f64).floor() as usize;
            c[b.min(bins - 1)] += 1;
        }
        c
    };
    Histogram {
        lo,
        hi,
        genuine: count(g),
        impostor: count(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(face_px: f32, sharpness: f32, yaw: f32) -> Quality {
        Quality {
            face_px: Some(face_px),
            sharpness: Some(sharpness),
            yaw: Some(yaw),
            refused: None,
        }
    }

    fn c(a: usize, b: usize, same: bool, score: Option<f64>) -> Comparison {
        Comparison {
            a,
            b,
            scored: Scored { same, score },
        }
    }

    #[test]
    fn buckets_operating_points_and_histogram_by_hand() {
        let limits = BucketLimits {
            small_face_px: 50.0,
            blur_sharpness: 1.0,
            pose_yaw: 0.3,
        };
        let refused = |code: &str| Quality {
            refused: Some(code.into()),
            ..Quality::default()
        };
        // 0 good, 1 small, 2 blurred, 3 turned, 4 refused: no face, 5 refused: too small.
        let quality = vec![
            q(100.0, 5.0, 0.0),
            q(40.0, 5.0, 0.1),
            q(100.0, 0.5, -0.1),
            q(100.0, 5.0, -0.5),
            refused("no_face"),
            refused("face_too_small"),
        ];
        let comparisons = vec![
            c(0, 1, true, Some(0.9)),   // small_face, matches at 0.8
            c(0, 2, true, Some(0.7)),   // blur, a non-match at 0.8
            c(0, 3, false, Some(0.6)),  // pose
            c(0, 4, true, None),        // refused_other: a rejection
            c(0, 5, true, None),        // small_face (refused as too small)
            c(1, 2, false, Some(0.85)), // small_face + blur: a false match at 0.8
            c(0, 0, false, Some(0.1)),  // good (an impostor with itself, for the test)
        ];
        let r = build(Inputs {
            context: Context::default(),
            quality: &quality,
            comparisons: &comparisons,
            pairs: crate::metrics(&[], 0.8),
            threshold: 0.8,
            target_fmrs: &[0.5, 0.01],
            limits,
            groups: None,
        });
        let b = |name: &str| r.buckets.iter().find(|b| b.name == name).unwrap().clone();
        let all = b("all").at_threshold;
        // genuine: 0.9 ✓, 0.7 ✗, two refused → FNMR 1/2, FRR 3/4; impostor 0.6, 0.85 ✗, 0.1.
        assert_eq!((all.genuine, all.impostor, all.refused), (4, 3, 2));
        assert!((all.fnmr - 0.5).abs() < 1e-12 && (all.frr - 0.75).abs() < 1e-12);
        assert!((all.fmr - 1.0 / 3.0).abs() < 1e-12);
        let small = b("small_face").at_threshold;
        assert_eq!((small.genuine, small.impostor, small.refused), (2, 1, 1));
        assert!((small.frr - 0.5).abs() < 1e-12 && (small.fmr - 1.0).abs() < 1e-12);
        let blur = b("blur").at_threshold;
        assert_eq!((blur.genuine, blur.impostor), (1, 1));
        assert!((blur.frr - 1.0).abs() < 1e-12);
        assert_eq!(
            (b("pose").at_threshold.impostor, b("pose").at_threshold.genuine),
            (1, 0)
        );
        assert_eq!(b("good").at_threshold.impostor, 1);
        assert_eq!(b("refused_other").at_threshold.refused, 1);
        // FMR 0.5 of 3 impostors allows one false match: the threshold is just above 0.6.
        let p = &r.operating_points[0];
        assert_eq!(p.name, "fmr_5e-1");
        let t = p.threshold.unwrap();
        assert!(t > 0.6 && t < 0.6 + 1e-9);
        assert!((p.frr.unwrap() - 0.5).abs() < 1e-12); // 0.9 and 0.7 pass; the two refused fail
        // 3 impostors cannot resolve FMR 1e-2.
        assert_eq!(
            (r.operating_points[1].needs_impostors, r.operating_points[1].threshold),
            (100, None)
        );
        assert!(!b("all").frr_at.contains_key("fmr_1e-2"));
        // FTD and histogram.
        assert_eq!(r.failed_images, 2);
        assert_eq!(r.failures_by_reason["no_face"], 1);
        let h = &r.histogram;
        assert_eq!((h.lo, h.hi), (0.1, 0.91));
        assert_eq!(h.genuine.iter().sum::<usize>(), 2);
        assert_eq!(h.impostor.iter().sum::<usize>(), 3);
        assert_eq!(h.impostor[0], 1);
        assert_eq!(h.genuine[49], 1);
    }
}
