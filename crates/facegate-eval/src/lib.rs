//! Pair lists and verification metrics. Pure functions over scores, so every figure can be
//! checked against a hand computation.

use std::path::{Path, PathBuf};

use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub probe: PathBuf,
    pub reference: PathBuf,
    pub same: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
}

/// Read an LFW pairs file (`name i j` / `name i name2 j`, first line a header) or a TSV
/// (`probe<TAB>reference<TAB>same`, optional header). Paths resolve against `images`
/// (default: the pair file's folder; for LFW files, `lfw-deepfunneled` beside it if present).
pub fn read_pairs(file: &Path, images: Option<&Path>) -> Result<Vec<Pair>, PairsError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| PairsError::Io(name.clone(), e))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let err = |line: usize, message: String| PairsError::Syntax {
        file: name.clone(),
        line,
        message,
    };
    let mut pairs = Vec::new();
    if text
        .lines()
        .next()
        .is_some_and(|l| l.contains('\t') && l.split('\t').count() == 3)
    {
        let root = images.unwrap_or(dir);
        for (n, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            if line.trim().is_empty() {
                continue;
            }
            let [p, r, s] = f.as_slice() else {
                return Err(err(n + 1, "expected 3 tab-separated fields".into()));
            };
            let same = match s.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ if n == 0 => continue, // header
                other => return Err(err(n + 1, format!("`same` must be 1/0, found `{other}`"))),
            };
            pairs.push(Pair {
                probe: root.join(p),
                reference: root.join(r),
                same,
            });
        }
    } else {
        let lfw_default = dir.join("lfw-deepfunneled");
        let root = images.map(Path::to_path_buf).unwrap_or(if lfw_default.is_dir() {
            lfw_default
        } else {
            dir.to_path_buf()
        });
        let path = |person: &str, idx: &str| -> Result<PathBuf, String> {
            let i: u32 = idx
                .parse()
                .map_err(|_| format!("image number `{idx}` is not a number"))?;
            Ok(root.join(person).join(format!("{person}_{i:04}.jpg")))
        };
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (a, i, b, j, same) = match f.as_slice() {
                [] => continue,
                [who, i, j] => (*who, *i, *who, *j, true),
                [a, i, b, j] => (*a, *i, *b, *j, false),
                _ => return Err(err(n + 1, "expected `name i j` or `name i name2 j`".into())),
            };
            let (probe, reference) = (path(a, i), path(b, j));
            pairs.push(Pair {
                probe: probe.map_err(|m| err(n + 1, m))?,
                reference: reference.map_err(|m| err(n + 1, m))?,
                same,
            });
        }
    }
    Ok(pairs)
}

/// One evaluated pair: its label and its score, or `None` if either photo was rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    pub same: bool,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Metrics {
    pub pairs: usize,
    pub genuine: usize,
    pub impostor: usize,
    /// Pairs with a rejected photo; they count as errors in every accuracy figure.
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
    let mut scores: Vec<f64> = scored.iter().filter_map(|s| s.score).collect();
    scores.sort_by(f64::total_cmp);
    scores.dedup();
    let mut candidates = vec![scores.first().copied().unwrap_or(0.0) - 1e-6];
    candidates.extend(scores.windows(2).map(|w| (w[0] + w[1]) / 2.0));
    candidates.push(scores.last().copied().unwrap_or(0.0) + 1e-6);
    candidates
        .into_iter()
        .map(|t| (t, accuracy(scored, t)))
        .fold((0.0, -1.0), |best, c| if c.1 > best.1 { c } else { best })
}

/// False-accept and false-reject rates at `threshold`, over pairs that were scored.
pub fn rates(scored: &[Scored], threshold: f64) -> (f64, f64) {
    let imp: Vec<f64> = scored.iter().filter(|s| !s.same).filter_map(|s| s.score).collect();
    let gen_scores: Vec<f64> = scored.iter().filter(|s| s.same).filter_map(|s| s.score).collect();
    let far = imp.iter().filter(|&&v| v >= threshold).count() as f64 / imp.len().max(1) as f64;
    let frr = gen_scores.iter().filter(|&&v| v < threshold).count() as f64 / gen_scores.len().max(1) as f64;
    (far, frr)
}

/// Equal error rate: the threshold where FAR and FRR cross (their mean at the closest point).
pub fn eer(scored: &[Scored]) -> (f64, f64) {
    let mut ts: Vec<f64> = scored.iter().filter_map(|s| s.score).collect();
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    ts.iter()
        .map(|&t| {
            let (far, frr) = rates(scored, t);
            ((far - frr).abs(), (far + frr) / 2.0, t)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, e, t)| (e, t))
        .unwrap_or((1.0, 0.0))
}

/// True-accept rate at the smallest threshold whose FAR is at most `far`; genuine pairs that
/// failed count as rejections.
pub fn tar_at_far(scored: &[Scored], far: f64) -> f64 {
    let mut imp: Vec<f64> = scored.iter().filter(|s| !s.same).filter_map(|s| s.score).collect();
    imp.sort_by(|a, b| b.total_cmp(a));
    // Allowed false accepts; the threshold sits just above the next impostor score.
    let allowed = (far * imp.len() as f64).floor() as usize;
    let threshold = imp.get(allowed).map_or(f64::NEG_INFINITY, |&v| next_up(v));
    let genuine = scored.iter().filter(|s| s.same).count();
    let accepted = scored
        .iter()
        .filter(|s| s.same && s.score.is_some_and(|v| v >= threshold))
        .count();
    accepted as f64 / genuine.max(1) as f64
}

fn next_up(v: f64) -> f64 {
    v + v.abs().max(1.0) * 1e-12
}

pub fn metrics(scored: &[Scored], threshold: f64) -> Metrics {
    let (best_threshold, best_accuracy) = best_threshold(scored);
    let (eer, eer_threshold) = eer(scored);
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
        tar_at_far_1e2: tar_at_far(scored, 1e-2),
        tar_at_far_1e3: tar_at_far(scored, 1e-3),
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
    fn lfw_and_tsv_pair_files_parse() {
        let dir = std::env::temp_dir().join(format!("facegate-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lfw = dir.join("p.txt");
        std::fs::write(&lfw, "2\nAbel_Pacheco\t1\t4\nAbdel_Madi_Shabneh\t1\tDean_Barker\t1\n").unwrap();
        let p = read_pairs(&lfw, Some(Path::new("/img"))).unwrap();
        assert_eq!(
            p[0],
            Pair {
                probe: "/img/Abel_Pacheco/Abel_Pacheco_0001.jpg".into(),
                reference: "/img/Abel_Pacheco/Abel_Pacheco_0004.jpg".into(),
                same: true
            }
        );
        assert!(!p[1].same && p[1].reference.ends_with("Dean_Barker/Dean_Barker_0001.jpg"));
        let tsv = dir.join("p.tsv");
        std::fs::write(&tsv, "probe\treference\tsame\na.jpg\tb.jpg\t1\nc.jpg\td.jpg\t0\n").unwrap();
        let p = read_pairs(&tsv, None).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].probe, dir.join("a.jpg"));
        std::fs::write(&tsv, "probe\treference\tsame\na.jpg\tb.jpg\tmaybe\n").unwrap();
        assert!(matches!(
            read_pairs(&tsv, None),
            Err(PairsError::Syntax { line: 2, .. })
        ));
    }
}
