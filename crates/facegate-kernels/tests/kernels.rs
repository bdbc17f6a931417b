//! The WGSL kernels against the f64 CPU reference, on whatever wgpu adapter exists (lavapipe in
//! CI). Outputs are poisoned with NaN before each dispatch, so an element the kernel never wrote
//! fails the comparison. Tolerances are on the cosine itself (error relative to |a||b|):
//! 1e-5 for f32 storage, 2e-3 for f16.

use std::sync::OnceLock;

use facegate_kernels::{Gallery, Hit, KernelError, MAX_K, Matcher, Storage, reference};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const F32_TOL: f64 = 1e-5;
const F16_TOL: f64 = 2e-3;

/// One matcher for all tests. Without any adapter the tests are skipped, unless
/// FACEGATE_REQUIRE_WGPU is set (CI sets it), then they fail.
fn matcher() -> Option<&'static Matcher> {
    static M: OnceLock<Option<Matcher>> = OnceLock::new();
    M.get_or_init(|| match Matcher::new() {
        Ok(m) => {
            eprintln!("matcher on {}", m.label());
            Some(m)
        }
        Err(e) => {
            assert!(
                std::env::var_os("FACEGATE_REQUIRE_WGPU").is_none(),
                "FACEGATE_REQUIRE_WGPU: {e}"
            );
            eprintln!("skipping: {e}");
            None
        }
    })
    .as_ref()
}

fn tol(storage: Storage) -> f64 {
    match storage {
        Storage::F32 => F32_TOL,
        Storage::F16 => F16_TOL,
    }
}

fn check_pairs(m: &Matcher, a: &[f32], b: &[f32], dim: usize, storage: Storage) {
    let got = m.pairs(a, b, dim, storage).unwrap();
    let want = reference::pairs(a, b, dim);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let err = (*g as f64 - w).abs();
        assert!(
            err <= tol(storage),
            "pair {i}: {g} vs {w} ({storage:?}, dim {dim}), error {err:.2e}"
        );
    }
}

fn check_scores(m: &Matcher, probes: &[f32], gallery: &[f32], dim: usize, storage: Storage) {
    let g = Gallery::upload(m, gallery, dim, storage).unwrap();
    let got = m.scores(probes, &g).unwrap();
    let want = reference::scores(probes, gallery, dim);
    assert_eq!(got.len(), want.len());
    let n = g.len();
    for (i, (s, w)) in got.iter().zip(&want).enumerate() {
        let err = (*s as f64 - w).abs();
        assert!(
            err <= tol(storage),
            "probe {} row {}: {s} vs {w} ({storage:?}, dim {dim}), error {err:.2e}",
            i / n,
            i % n
        );
    }
}

fn check_top_k(hits: &[Vec<Hit>], probes: &[f32], gallery: &[f32], dim: usize, k: usize, storage: Storage) {
    let want = reference::top_k(probes, gallery, dim, k);
    let t = tol(storage);
    assert_eq!(hits.len(), want.len());
    for (p, (got, want)) in hits.iter().zip(&want).enumerate() {
        assert_eq!(got.len(), want.len(), "probe {p}: number of hits");
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            // Each hit is a real gallery entry with its true score, ranked where the reference
            // ranks that score (indices may swap only between scores equal within tolerance).
            let true_score = reference::cosine(
                &probes[p * dim..(p + 1) * dim],
                &gallery[g.index as usize * dim..][..dim],
            );
            assert!(
                (g.score as f64 - true_score).abs() <= t,
                "probe {p} hit {j}: score {} vs {true_score}",
                g.score
            );
            assert!(
                (g.score as f64 - w.1).abs() <= t,
                "probe {p} rank {j}: {} vs reference {}",
                g.score,
                w.1
            );
            if j > 0 {
                let prev = got[j - 1];
                assert!(
                    prev.score > g.score || (prev.score == g.score && prev.index < g.index),
                    "probe {p}: ranks {} and {j} out of order",
                    j - 1
                );
            }
        }
        if storage == Storage::F32 {
            // Exact agreement wherever the reference's scores are well separated.
            for (j, (g, w)) in got.iter().zip(want).enumerate() {
                let separated = want.iter().enumerate().all(|(i, o)| i == j || (o.1 - w.1).abs() > 1e-4);
                if separated {
                    assert_eq!(g.index, w.0, "probe {p} rank {j}");
                }
            }
        }
    }
}

/// Random embeddings with a given fraction of all-zero rows.
fn rows(n: usize, dim: usize, zero_every: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-1.0f32..1.0, n * dim).prop_map(move |mut v| {
        if zero_every > 0 {
            for r in (0..n).step_by(zero_every) {
                v[r * dim..(r + 1) * dim].fill(0.0);
            }
        }
        v
    })
}

fn storage() -> impl Strategy<Value = Storage> {
    prop_oneof![Just(Storage::F32), Just(Storage::F16)]
}

proptest! {
    // Failing cases are kept under target/, never written into the source tree.
    #![proptest_config(ProptestConfig {
        cases: 24,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_TARGET_TMPDIR"),
            "/kernels.proptest-regressions"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn pairs_match_the_f64_reference(
        (dim, a, b) in (prop_oneof![Just(4usize), Just(8), Just(128), Just(1024), (1usize..64).prop_map(|d| 4 * d)], 1usize..80)
            .prop_flat_map(|(dim, n)| (Just(dim), rows(n, dim, 7), rows(n, dim, 5))),
        storage in storage(),
    ) {
        let Some(m) = matcher() else { return Ok(()) };
        check_pairs(m, &a, &b, dim, storage);
    }

    #[test]
    fn top_k_matches_the_f64_reference(
        (dim, probes, gallery) in (prop_oneof![Just(4usize), Just(128), (1usize..40).prop_map(|d| 4 * d)], 1usize..10, 1usize..700)
            .prop_flat_map(|(dim, m, g)| (Just(dim), rows(m, dim, 0), rows(g, dim, 11))),
        k in 1usize..=MAX_K,
        storage in storage(),
    ) {
        let Some(m) = matcher() else { return Ok(()) };
        let dim_g = Gallery::upload(m, &gallery, dim, storage).unwrap();
        let hits = m.top_k(&probes, &dim_g, k).unwrap();
        check_top_k(&hits, &probes, &gallery, dim, k, storage);
    }

    #[test]
    fn every_score_of_a_scan_matches_the_f64_reference(
        (dim, probes, gallery) in (prop_oneof![Just(4usize), Just(128), (1usize..40).prop_map(|d| 4 * d)], 1usize..11, 1usize..600)
            .prop_flat_map(|(dim, m, g)| (Just(dim), rows(m, dim, 3), rows(g, dim, 11))),
        storage in storage(),
    ) {
        let Some(m) = matcher() else { return Ok(()) };
        check_scores(m, &probes, &gallery, dim, storage);
    }
}

#[test]
fn zero_vectors_score_zero_not_nan() {
    let Some(m) = matcher() else { return };
    let dim = 8;
    let zero = vec![0.0f32; dim];
    let one: Vec<f32> = (0..dim).map(|i| i as f32 + 1.0).collect();
    for storage in [Storage::F32, Storage::F16] {
        let a = [zero.clone(), one.clone(), zero.clone()].concat();
        let b = [one.clone(), zero.clone(), zero.clone()].concat();
        assert_eq!(m.pairs(&a, &b, dim, storage).unwrap(), vec![0.0, 0.0, 0.0]);
        let gallery = Gallery::upload(m, &[zero.clone(), one.clone()].concat(), dim, storage).unwrap();
        let hits = m.top_k(&zero, &gallery, 2).unwrap();
        assert_eq!(
            hits[0].iter().map(|h| (h.index, h.score)).collect::<Vec<_>>(),
            vec![(0, 0.0), (1, 0.0)]
        );
    }
}

#[test]
fn single_pair_and_sizes_off_the_workgroup_grid() {
    let Some(m) = matcher() else { return };
    for (n, dim) in [(1, 4), (1, 1024), (9, 1024), (8 * 37 + 3, 128), (2049, 4)] {
        let a: Vec<f32> = (0..n * dim).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let b: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 104_729) % 997) as f32 / 498.5 - 1.0)
            .collect();
        check_pairs(m, &a, &b, dim, Storage::F32);
        check_pairs(m, &a, &b, dim, Storage::F16);
    }
}

#[test]
fn duplicate_scores_rank_by_index() {
    let Some(m) = matcher() else { return };
    let dim = 4;
    // Rows 1, 4, 5 and 700 are the same vector; rows 2 and 3 another, equally scored pair.
    let mut gallery = vec![0.25f32; 900 * dim];
    for (i, v) in gallery.chunks_exact_mut(dim).enumerate() {
        v[0] = -(i as f32) - 1.0;
    }
    let best = [1.0, 0.5, 0.0, 0.0];
    let second = [1.0, 0.5, 0.1, 0.0];
    for r in [1, 4, 5, 700] {
        gallery[r * dim..(r + 1) * dim].copy_from_slice(&best);
    }
    for r in [3, 2] {
        gallery[r * dim..(r + 1) * dim].copy_from_slice(&second);
    }
    for storage in [Storage::F32, Storage::F16] {
        let g = Gallery::upload(m, &gallery, dim, storage).unwrap();
        let hits = m.top_k(&best, &g, 6).unwrap();
        let order: Vec<u32> = hits[0].iter().map(|h| h.index).collect();
        assert_eq!(order, vec![1, 4, 5, 700, 2, 3], "{storage:?}");
    }
}

#[test]
fn galleries_and_pair_batches_larger_than_one_binding_are_chunked() {
    let Some(m) = matcher() else { return };
    let dim = 128;
    // 256 rows of f32 per binding: a 1,000-row gallery spans 4 chunks.
    let small = Matcher::new().unwrap().with_max_binding((256 * dim * 4) as u64);
    let gallery: Vec<f32> = (0..1000 * dim).map(|i| ((i * 31) % 211) as f32 - 105.0).collect();
    let probes: Vec<f32> = (0..3 * dim).map(|i| ((i * 17) % 101) as f32 - 50.0).collect();
    for storage in [Storage::F32, Storage::F16] {
        let g = Gallery::upload(&small, &gallery, dim, storage).unwrap();
        assert!(g.chunks() >= 2, "{} chunks", g.chunks());
        let hits = small.top_k(&probes, &g, MAX_K).unwrap();
        check_top_k(&hits, &probes, &gallery, dim, MAX_K, storage);
        // The same answer as one binding.
        let whole = m
            .top_k(&probes, &Gallery::upload(m, &gallery, dim, storage).unwrap(), MAX_K)
            .unwrap();
        assert_eq!(hits, whole);
    }
    // Every score: the gallery spans 4 chunks, and one output binding holds 32 rows of 1,000
    // scores, so 100 probes take 4 calls.
    for storage in [Storage::F32, Storage::F16] {
        check_scores(&small, &gallery[..100 * dim], &gallery, dim, storage);
    }
    // Pairs: 1,000 pairs of 128 values, 256 per binding.
    check_pairs(
        &small,
        &gallery,
        &gallery.iter().rev().copied().collect::<Vec<_>>(),
        dim,
        Storage::F32,
    );
}

#[test]
fn bad_arguments_are_typed_errors() {
    let Some(m) = matcher() else { return };
    assert!(matches!(
        m.pairs(&[0.0; 6], &[0.0; 6], 6, Storage::F32),
        Err(KernelError::Dim(6))
    ));
    assert!(matches!(
        m.pairs(&[0.0; 8], &[0.0; 4], 4, Storage::F32),
        Err(KernelError::PairCount(2, 1))
    ));
    assert!(matches!(
        m.pairs(&[0.0; 7], &[0.0; 7], 4, Storage::F32),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        m.pairs(&[0.0; 2048], &[0.0; 2048], 2048, Storage::F32),
        Err(KernelError::Dim(2048))
    ));
    let g = Gallery::upload(m, &[1.0; 8], 4, Storage::F32).unwrap();
    assert!(matches!(m.top_k(&[1.0; 4], &g, 0), Err(KernelError::K(0))));
    assert!(matches!(m.top_k(&[1.0; 4], &g, MAX_K + 1), Err(KernelError::K(_))));
    // Asking for more than the gallery holds returns what there is.
    assert_eq!(m.top_k(&[1.0; 4], &g, 5).unwrap()[0].len(), 2);
    assert_eq!(m.pairs(&[], &[], 4, Storage::F32).unwrap(), Vec::<f32>::new());
    assert!(matches!(m.scores(&[1.0; 6], &g), Err(KernelError::Length { .. })));
    assert_eq!(m.scores(&[], &g).unwrap(), Vec::<f32>::new());
    // A score row that cannot fit one binding is refused, not truncated: 1,100 scores of f32
    // need 4,400 bytes.
    let narrow = Matcher::new().unwrap().with_max_binding(4096);
    let wide = Gallery::upload(&narrow, &[1.0; 1100 * 4], 4, Storage::F32).unwrap();
    assert!(matches!(narrow.scores(&[1.0; 4], &wide), Err(KernelError::TooLarge(_))));
}

/// Rows already on the device (as burn leaves descriptors) are scored where they lie: a matrix
/// bound at an offset inside a larger buffer whose other bytes are NaN, pairs naming its rows in
/// any order (repeats too), so reading outside the bound range, or the wrong row, shows.
#[test]
fn resident_rows_are_scored_in_place() {
    use wgpu::util::DeviceExt;
    let Some(m) = matcher() else { return };
    let align = m.device().limits().min_storage_buffer_offset_alignment as usize;
    for (rows, dim) in [(1, 4), (37, 128), (5, 1024)] {
        let mut matrix = reference::sample(rows, dim, rows as u64);
        matrix[(rows - 1) * dim..].fill(0.0); // a zero vector scores 0, not NaN
        let bytes = rows * dim * 4;
        // [NaN | matrix | NaN], the matrix on the offset alignment.
        let mut contents = vec![f32::NAN; (align + bytes) / 4 + 64];
        contents[align / 4..align / 4 + matrix.len()].copy_from_slice(&matrix);
        let buffer = m.device().create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("resident"),
            contents: bytemuck::cast_slice(&contents),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let binding = |bytes: usize| wgpu::BufferBinding {
            buffer: &buffer,
            offset: align as u64,
            size: std::num::NonZeroU64::new(bytes as u64),
        };
        let r = rows as u32;
        let pairs: Vec<[u32; 2]> = (0..2 * r + 3).map(|i| [(i * 7) % r, (i * 3 + 1) % r]).collect();
        let got = m.pairs_resident(binding(bytes), dim, &pairs).unwrap();
        assert_eq!(got.len(), pairs.len());
        let row = |i: u32| &matrix[i as usize * dim..(i as usize + 1) * dim];
        for (k, (&[a, b], g)) in pairs.iter().zip(&got).enumerate() {
            let want = reference::pairs(row(a), row(b), dim)[0];
            assert!(
                (*g as f64 - want).abs() <= F32_TOL,
                "pair {k} ({a}, {b}) of {rows}×{dim}: {g} vs {want}"
            );
            if a == r - 1 || b == r - 1 {
                assert_eq!(*g, 0.0);
            }
        }
        // A row past the binding is refused, not read.
        assert!(matches!(
            m.pairs_resident(binding(bytes - 4), dim, &[[0, r - 1]]),
            Err(KernelError::Row { .. })
        ));
        assert!(matches!(
            m.pairs_resident(binding(bytes), dim, &[[r, 0]]),
            Err(KernelError::Row { .. })
        ));
    }
}
