//! Embed: one or more registry embedders, each on crops made with its own template; two or
//! more are fused into one descriptor whose cosine is their z-normalised mean score.

use burn::prelude::*;
use facegate_models::Embedder;

use super::align::Aligner;

/// One embedder and the alignment its network was trained with.
pub struct Branch {
    pub aligner: Aligner,
    pub embedder: Embedder,
}

/// A model's impostor score distribution (cosine, from its DevTrain calibration): what score
/// fusion normalises by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpostorStats {
    pub mean: f64,
    pub std: f64,
}

/// The embedding stage: one branch as it is, or several fused.
///
/// Fusion of `k` embedders with impostor statistics (μᵢ, σᵢ): each branch's row is
/// L2-normalised and scaled by wᵢ = √((1/σᵢ) / Σⱼ 1/σⱼ), then the rows are concatenated. The
/// result has unit length, and the cosine of two fused descriptors is Σᵢ wᵢ² cosᵢ — an
/// increasing affine function of the z-normalised mean (1/k) Σᵢ (cosᵢ − μᵢ)/σᵢ. So one
/// threshold on it makes exactly the decisions the z-score fusion makes, and every scorer
/// (pairs, 1:N, top-k kernels) works on fused descriptors unchanged.
pub struct Embedding {
    branches: Vec<Branch>,
    /// wᵢ per branch; empty for a single embedder (its output is kept as the network gives it).
    weights: Vec<f32>,
    stats: Vec<ImpostorStats>,
}

impl Embedding {
    pub fn single(branch: Branch) -> Self {
        Self {
            branches: vec![branch],
            weights: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// Two or more branches, each with its impostor statistics.
    pub fn fused(parts: Vec<(Branch, ImpostorStats)>) -> Self {
        let inverse: Vec<f64> = parts.iter().map(|(_, s)| 1.0 / s.std).collect();
        let total: f64 = inverse.iter().sum();
        let weights = inverse.iter().map(|i| (i / total).sqrt() as f32).collect();
        let (branches, stats) = parts.into_iter().unzip();
        Self {
            branches,
            weights,
            stats,
        }
    }

    pub fn branches(&self) -> &[Branch] {
        &self.branches
    }

    /// The fusion's impostor statistics per branch (empty for one embedder).
    pub fn stats(&self) -> &[ImpostorStats] {
        &self.stats
    }

    /// The descriptor's length.
    pub fn dim(&self) -> usize {
        self.branches.iter().map(|b| b.embedder.dim()).sum()
    }

    /// `[n, dim]` descriptors from one crop batch per branch (`[n, 3, S, S]`, RGB 0..255).
    pub fn forward(&self, crops: Vec<Tensor<4>>) -> Tensor<2> {
        assert_eq!(crops.len(), self.branches.len(), "one crop batch per branch");
        let mut rows = self.branches.iter().zip(crops).map(|(b, c)| b.embedder.forward(c));
        if self.weights.is_empty() {
            return rows.next().expect("one branch");
        }
        fuse(rows.collect(), &self.weights)
    }

    /// The z-normalised mean score (the fusion's definition) for a cosine of two fused
    /// descriptors; the cosine itself for one embedder.
    pub fn z_score(&self, cosine: f64) -> f64 {
        if self.stats.is_empty() {
            return cosine;
        }
        let inverse: f64 = self.stats.iter().map(|s| 1.0 / s.std).sum();
        let offset: f64 = self.stats.iter().map(|s| s.mean / s.std).sum();
        (inverse * cosine - offset) / self.stats.len() as f64
    }
}

/// Each `[n, dᵢ]` part L2-normalised, scaled by its weight, concatenated: `[n, Σ dᵢ]`.
fn fuse(parts: Vec<Tensor<2>>, weights: &[f32]) -> Tensor<2> {
    let parts = parts
        .into_iter()
        .zip(weights)
        .map(|(e, &w)| {
            // A zero row stays zero (its cosine with anything is 0), not NaN.
            let norm = e.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
            e / norm * w
        })
        .collect();
    Tensor::cat(parts, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f64], b: &[f64]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (n(a) * n(b))
    }

    /// The cosine of fused rows is the z-normalised mean of the parts' cosines, up to the
    /// affine map [`Embedding::z_score`] undoes: checked against the f64 definition.
    #[test]
    fn fused_cosine_is_the_z_normalised_mean_score() {
        let device = Device::flex();
        let stats = [
            ImpostorStats { mean: 0.31, std: 0.07 },
            ImpostorStats { mean: 0.02, std: 0.11 },
        ];
        let inverse: Vec<f64> = stats.iter().map(|s| 1.0 / s.std).collect();
        let weights: Vec<f32> = inverse
            .iter()
            .map(|i| (i / inverse.iter().sum::<f64>()).sqrt() as f32)
            .collect();
        let embedding = Embedding {
            branches: Vec::new(),
            weights: weights.clone(),
            stats: stats.to_vec(),
        };
        // Deterministic rows of different lengths and scales (an LCG, not burn's RNG).
        let mut seed = 12345u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        };
        let (n, dims) = (4, [128usize, 512]);
        let parts: Vec<Vec<f64>> = dims
            .iter()
            .map(|&d| (0..n * d).map(|_| 3.0 * next()).collect())
            .collect();
        let tensors = parts
            .iter()
            .zip(dims)
            .map(|(p, d)| {
                let data: Vec<f32> = p.iter().map(|&v| v as f32).collect();
                Tensor::<2>::from_data(TensorData::new(data, [n, d]), &device)
            })
            .collect();
        let fused: Vec<f32> = fuse(tensors, &weights).into_data().try_to_vec().unwrap();
        let row = |i: usize| -> Vec<f64> { fused[i * 640..(i + 1) * 640].iter().map(|&v| v as f64).collect() };
        for (a, b) in [(0, 1), (0, 3), (2, 3)] {
            let got = cosine(&row(a), &row(b));
            // The definition: each part's cosine, z-normalised, averaged.
            let z: f64 = parts
                .iter()
                .zip(dims)
                .zip(&stats)
                .map(|((p, d), s)| (cosine(&p[a * d..(a + 1) * d], &p[b * d..(b + 1) * d]) - s.mean) / s.std)
                .sum::<f64>()
                / 2.0;
            assert!(
                (embedding.z_score(got) - z).abs() < 1e-5,
                "pair {a},{b}: {} vs {z}",
                embedding.z_score(got)
            );
            // Unit length: the cosine is the dot product the kernels compute.
            let len: f64 = row(a).iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((len - 1.0).abs() < 1e-5);
        }
    }
}
