//! Error rates over scored comparisons. Every figure is a pure function of the scores, so each
//! can be checked against a hand computation.
//!
//! Definitions (ISO/IEC 19795-1): FMR and FNMR are over comparisons where both photos gave a
//! template; FRR, what a person experiences, also counts a genuine comparison with a refused
//! photo as a rejection. A comparison matches when its score is at or above the threshold.

use serde::{Deserialize, Serialize};

/// One comparison: its label and its score, or `None` if either photo was refused.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub same: bool,
    pub score: Option<f64>,
}

/// Scores split by label and sorted, so every rate at any threshold is a binary search
/// (all-vs-all evaluations have millions of impostor scores).
#[derive(Debug, Clone, Default)]
pub struct ScoreSets {
    genuine: Vec<f64>,
    impostor: Vec<f64>,
    genuine_failed: usize,
    impostor_failed: usize,
}

impl ScoreSets {
    pub fn new(scored: &[Scored]) -> Self {
        let mut s = Self::default();
        s.extend(scored.iter().copied());
        s
    }

    /// Add comparisons (call [`Self::new`] or extend before asking for rates).
    pub fn extend(&mut self, scored: impl IntoIterator<Item = Scored>) {
        for c in scored {
            match (c.same, c.score) {
                (true, Some(v)) => self.genuine.push(v),
                (false, Some(v)) => self.impostor.push(v),
                (true, None) => self.genuine_failed += 1,
                (false, None) => self.impostor_failed += 1,
            }
        }
        self.genuine.sort_by(f64::total_cmp);
        self.impostor.sort_by(f64::total_cmp);
    }

    pub fn genuine(&self) -> &[f64] {
        &self.genuine
    }

    pub fn impostor(&self) -> &[f64] {
        &self.impostor
    }

    /// Genuine and impostor comparisons, refused ones included.
    pub fn counts(&self) -> (usize, usize) {
        (
            self.genuine.len() + self.genuine_failed,
            self.impostor.len() + self.impostor_failed,
        )
    }

    pub fn genuine_failed(&self) -> usize {
        self.genuine_failed
    }

    pub fn failed(&self) -> usize {
        self.genuine_failed + self.impostor_failed
    }

    fn below(sorted: &[f64], t: f64) -> usize {
        sorted.partition_point(|&v| v < t)
    }

    /// False match rate: impostor templates scoring at or above `t`.
    pub fn fmr(&self, t: f64) -> f64 {
        let n = self.impostor.len();
        (n - Self::below(&self.impostor, t)) as f64 / n.max(1) as f64
    }

    /// False non-match rate: genuine templates scoring below `t`.
    pub fn fnmr(&self, t: f64) -> f64 {
        Self::below(&self.genuine, t) as f64 / self.genuine.len().max(1) as f64
    }

    /// False reject rate: genuine comparisons below `t` or with a refused photo.
    pub fn frr(&self, t: f64) -> f64 {
        let (genuine, _) = self.counts();
        (Self::below(&self.genuine, t) + self.genuine_failed) as f64 / genuine.max(1) as f64
    }

    /// Whether a target FMR can be measured at all: at least `1 / fmr` impostor templates, so
    /// that one false match is within the target.
    pub fn resolves(&self, fmr: f64) -> bool {
        self.impostor.len() as f64 * fmr >= 1.0 - 1e-9
    }

    /// The smallest threshold whose FMR is at most `fmr`: just above the impostor score that
    /// would be one false match too many.
    pub fn threshold_at_fmr(&self, fmr: f64) -> f64 {
        let allowed = (fmr * self.impostor.len() as f64 + 1e-9).floor() as usize;
        match self.impostor.len().checked_sub(allowed + 1) {
            Some(i) => next_up(self.impostor[i]),
            None => f64::NEG_INFINITY,
        }
    }

    /// True-accept rate (1 − FRR) at [`Self::threshold_at_fmr`].
    pub fn tar_at_fmr(&self, fmr: f64) -> f64 {
        1.0 - self.frr(self.threshold_at_fmr(fmr))
    }

    /// The threshold with the best accuracy over all comparisons (refused ones are errors),
    /// at midpoints between neighbouring scores, and that accuracy.
    pub fn best_accuracy(&self) -> (f64, f64) {
        let mut scores: Vec<f64> = self.genuine.iter().chain(&self.impostor).copied().collect();
        scores.sort_by(f64::total_cmp);
        scores.dedup();
        let mut candidates = vec![scores.first().copied().unwrap_or(0.0) - 1e-6];
        candidates.extend(scores.windows(2).map(|w| (w[0] + w[1]) / 2.0));
        candidates.push(scores.last().copied().unwrap_or(0.0) + 1e-6);
        let (genuine, impostor) = self.counts();
        let n = (genuine + impostor).max(1) as f64;
        let (g, i) = (self.genuine.len() as f64, self.impostor.len() as f64);
        candidates
            .into_iter()
            .map(|t| (t, (g * (1.0 - self.fnmr(t)) + i * (1.0 - self.fmr(t))) / n))
            .fold((0.0, -1.0), |best, c| if c.1 > best.1 + 1e-12 { c } else { best })
    }

    /// Equal error rate over templates: at the score threshold where FMR and FNMR are
    /// closest, their mean, and that threshold (the lowest on ties).
    pub fn eer(&self) -> (f64, f64) {
        let mut ts: Vec<f64> = self.genuine.iter().chain(&self.impostor).copied().collect();
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        ts.iter()
            .map(|&t| {
                let (fmr, fnmr) = (self.fmr(t), self.fnmr(t));
                ((fmr - fnmr).abs(), (fmr + fnmr) / 2.0, t)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, e, t)| (e, t))
            .unwrap_or((1.0, 0.0))
    }

    /// The DET curve as (threshold, FMR, FNMR), FMR falling: at every genuine score (where
    /// FNMR steps) and at impostor ranks spaced evenly on a log scale (where FMR steps), which
    /// draws the curve on log axes with a few hundred points however many impostors there are.
    pub fn det(&self) -> Vec<(f64, f64, f64)> {
        let n = self.impostor.len();
        let mut ts: Vec<f64> = self.genuine.clone();
        let mut rank = 1.0f64;
        while (rank as usize) <= n {
            // The threshold at the `rank`-th highest impostor score: FMR = rank / n.
            ts.push(self.impostor[n - rank as usize]);
            rank = (rank * 1.05).max(rank + 1.0);
        }
        ts.sort_by(f64::total_cmp);
        ts.dedup();
        ts.into_iter().map(|t| (t, self.fmr(t), self.fnmr(t))).collect()
    }
}

fn next_up(v: f64) -> f64 {
    v + v.abs().max(1.0) * 1e-12
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub pairs: usize,
    pub genuine: usize,
    pub impostor: usize,
    /// Pairs with a refused photo; they count as errors in every accuracy figure.
    pub failed_pairs: usize,
    pub threshold: f64,
    pub accuracy: f64,
    pub best_threshold: f64,
    pub best_accuracy: f64,
    pub eer: f64,
    pub eer_threshold: f64,
    pub tar_at_far_1e2: f64,
    pub tar_at_far_1e3: f64,
}

/// Accuracy at `threshold` (score ≥ threshold means "same"); failed pairs are errors.
pub fn accuracy(scored: &[Scored], threshold: f64) -> f64 {
    let correct = scored
        .iter()
        .filter(|s| s.score.is_some_and(|v| (v >= threshold) == s.same))
        .count();
    correct as f64 / scored.len().max(1) as f64
}

/// The threshold with the best accuracy (the midpoint between the two scores it falls between).
pub fn best_threshold(scored: &[Scored]) -> (f64, f64) {
    ScoreSets::new(scored).best_accuracy()
}

/// False-accept and false-reject rates at `threshold`, over pairs that were scored.
pub fn rates(scored: &[Scored], threshold: f64) -> (f64, f64) {
    let sets = ScoreSets::new(scored);
    (sets.fmr(threshold), sets.fnmr(threshold))
}

/// Equal error rate over scored pairs (see [`ScoreSets::eer`]).
pub fn eer(scored: &[Scored]) -> (f64, f64) {
    ScoreSets::new(scored).eer()
}

/// True-accept rate (1 − FRR) at the smallest threshold whose FAR is at most `far`; genuine
/// pairs that failed count as rejections.
pub fn tar_at_far(scored: &[Scored], far: f64) -> f64 {
    ScoreSets::new(scored).tar_at_fmr(far)
}

pub fn metrics(scored: &[Scored], threshold: f64) -> Metrics {
    // One sort serves every figure.
    let sets = ScoreSets::new(scored);
    let (best_threshold, best_accuracy) = sets.best_accuracy();
    let (eer, eer_threshold) = sets.eer();
    Metrics {
        pairs: scored.len(),
        genuine: scored.iter().filter(|s| s.same).count(),
        impostor: scored.iter().filter(|s| !s.same).count(),
        failed_pairs: scored.iter().filter(|s| s.score.is_none()).count(),
        threshold,
        accuracy: accuracy(scored, threshold),
        best_threshold,
        best_accuracy,
        eer,
        eer_threshold,
        tar_at_far_1e2: sets.tar_at_fmr(1e-2),
        tar_at_far_1e3: sets.tar_at_fmr(1e-3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(same: bool, score: f64) -> Scored {
        Scored {
            same,
            score: Some(score),
        }
    }

    #[test]
    fn metrics_on_a_hand_worked_example() {
        // genuine: 0.9 0.8 0.4 ; impostor: 0.5 0.3 0.1 ; one failed genuine pair.
        let v = vec![
            s(true, 0.9),
            s(true, 0.8),
            s(true, 0.4),
            s(false, 0.5),
            s(false, 0.3),
            s(false, 0.1),
            Scored {
                same: true,
                score: None,
            },
        ];
        // At 0.6: correct = 0.9, 0.8, 0.5, 0.3, 0.1 → 5/7.
        assert!((accuracy(&v, 0.6) - 5.0 / 7.0).abs() < 1e-12);
        let (t, a) = best_threshold(&v);
        assert!((a - 5.0 / 7.0).abs() < 1e-12, "{t} {a}");
        // FAR 0 is reached just above 0.5: TAR = 2 accepted of 4 genuine.
        assert!((tar_at_far(&v, 1e-3) - 0.5).abs() < 1e-12);
        // At 0.4: FAR 1/3 (0.5), FRR 0/3 ; at 0.5: FAR 1/3, FRR 1/3 → EER 1/3.
        let (e, et) = eer(&v);
        assert!((e - 1.0 / 3.0).abs() < 1e-12 && et == 0.5, "{e} {et}");
    }

    #[test]
    fn score_sets_rates_calibration_and_det() {
        // genuine 0.9 0.8 0.4 + one refused; impostor 0.1 .. 1.0 in steps of 0.1 (10).
        let mut v = vec![s(true, 0.9), s(true, 0.8), s(true, 0.4)];
        v.push(Scored {
            same: true,
            score: None,
        });
        v.extend((1..=10).map(|i| s(false, i as f64 / 10.0)));
        let sets = ScoreSets::new(&v);
        assert_eq!(sets.counts(), (4, 10));
        // At 0.8: impostors 0.8, 0.9, 1.0 match; genuine 0.4 does not (+ the refused one).
        assert!((sets.fmr(0.8) - 0.3).abs() < 1e-12);
        assert!((sets.fnmr(0.8) - 1.0 / 3.0).abs() < 1e-12);
        assert!((sets.frr(0.8) - 0.5).abs() < 1e-12);
        // FMR 0.2 allows two false matches (0.9, 1.0): the threshold sits just above 0.8.
        let t = sets.threshold_at_fmr(0.2);
        assert!(t > 0.8 && t < 0.8 + 1e-9 && (sets.fmr(t) - 0.2).abs() < 1e-12, "{t}");
        assert!(sets.resolves(0.1) && !sets.resolves(0.05));
        // The DET curve: FMR falls and FNMR rises as the threshold rises, ends included.
        let det = sets.det();
        assert!(
            det.windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 >= w[1].1 && w[0].2 <= w[1].2)
        );
        assert_eq!((det[0].1, det[0].2), (1.0, 0.0));
        let last = det.last().unwrap();
        assert_eq!((last.1, last.2), (0.1, 1.0)); // at 1.0: one impostor, every genuine below
    }
}
