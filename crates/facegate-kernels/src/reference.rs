//! The kernels' definitions in f64 on the CPU: what the GPU results are tested against, and the
//! CPU side of the benchmarks.

/// Cosine similarity in f64; 0 when either vector is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    let norms = aa.sqrt() * bb.sqrt();
    if norms > 0.0 { ab / norms } else { 0.0 }
}

/// Cosine similarity of each row pair of two row-major `[n, dim]` matrices.
pub fn pairs(probes: &[f32], references: &[f32], dim: usize) -> Vec<f64> {
    probes
        .chunks_exact(dim)
        .zip(references.chunks_exact(dim))
        .map(|(a, b)| cosine(a, b))
        .collect()
}

/// Every probe against every gallery row: row-major `[m, g]` cosines.
pub fn scores(probes: &[f32], gallery: &[f32], dim: usize) -> Vec<f64> {
    probes
        .chunks_exact(dim)
        .flat_map(|p| gallery.chunks_exact(dim).map(move |g| cosine(p, g)))
        .collect()
}

/// For each probe, the `k` best gallery rows as (index, cosine): highest score first, equal
/// scores by ascending index.
pub fn top_k(probes: &[f32], gallery: &[f32], dim: usize, k: usize) -> Vec<Vec<(u32, f64)>> {
    probes
        .chunks_exact(dim)
        .map(|p| {
            let mut scored: Vec<(u32, f64)> = gallery
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, g)| (i as u32, cosine(p, g)))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            scored.truncate(k);
            scored
        })
        .collect()
}

/// Deterministic pseudo-random embeddings in [-1, 1) (xorshift64), row-major `[n, dim]`: the
/// benchmarks' data, reproducible without an RNG dependency.
pub fn sample(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n * dim)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}
