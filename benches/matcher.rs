//! Matcher kernels on the wgpu adapter (lavapipe where there is no GPU) beside the f64 CPU
//! reference, on the same random data.
//!
//!     cargo bench -p facegate-kernels --bench matcher
//!     FACEGATE_BENCH_FULL=1 cargo bench -p facegate-kernels --bench matcher   # the full grid
//!
//! Throughput is in elements: pairs for `pairs/*`, probe × gallery comparisons for `top_k/*`.
//! Bytes moved per element: 2·D·s for pairs, D·s per gallery row (s = 4 for f32, 2 for f16).
//! `pairs` includes the host → device upload and the score readback; `top_k` keeps the
//! gallery resident and uploads only the probes, as a 1:N service would.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use facegate_kernels::{Gallery, Matcher, Storage, reference};

const DIM: usize = 128;

fn embeddings(n: usize, seed: u64) -> Vec<f32> {
    reference::sample(n, DIM, seed)
}

fn full() -> bool {
    std::env::var_os("FACEGATE_BENCH_FULL").is_some()
}

fn bench_pairs(c: &mut Criterion) {
    let matcher = Matcher::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    eprintln!("matcher on {}", matcher.label());
    let sizes: &[usize] = if full() {
        &[1_000, 64_000, 1_000_000]
    } else {
        &[1_000, 64_000]
    };
    let mut group = c.benchmark_group("pairs");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for &n in sizes {
        let (a, b) = (embeddings(n, 1), embeddings(n, 2));
        group.throughput(Throughput::Elements(n as u64));
        for (name, storage) in [("gpu_f32", Storage::F32), ("gpu_f16", Storage::F16)] {
            group.bench_with_input(BenchmarkId::new(name, n), &n, |bench, _| {
                bench.iter(|| matcher.pairs(&a, &b, DIM, storage).unwrap())
            });
        }
        group.bench_with_input(BenchmarkId::new("cpu_f64", n), &n, |bench, _| {
            bench.iter(|| reference::pairs(&a, &b, DIM))
        });
    }
    group.finish();
}

fn bench_top_k(c: &mut Criterion) {
    let matcher = Matcher::new().expect("a wgpu adapter");
    let grid: &[(usize, usize)] = if full() {
        &[
            (1, 100_000),
            (64, 100_000),
            (1024, 100_000),
            (1, 1_000_000),
            (64, 1_000_000),
            (1024, 1_000_000),
        ]
    } else {
        &[(1, 100_000), (64, 100_000)]
    };
    let mut group = c.benchmark_group("top_k");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for &(m, g) in grid {
        let probes = embeddings(m, 3);
        let templates = embeddings(g, 4);
        let id = format!("m{m}_g{g}");
        group.throughput(Throughput::Elements((m * g) as u64));
        for (name, storage) in [("gpu_f32", Storage::F32), ("gpu_f16", Storage::F16)] {
            let gallery = Gallery::upload(&matcher, &templates, DIM, storage).unwrap();
            group.bench_with_input(BenchmarkId::new(name, &id), &m, |bench, _| {
                bench.iter(|| matcher.top_k(&probes, &gallery, 10).unwrap())
            });
        }
        // The f64 reference is only run where it finishes in seconds.
        if m * g <= 6_400_000 {
            group.bench_with_input(BenchmarkId::new("cpu_f64", &id), &m, |bench, _| {
                bench.iter(|| reference::top_k(&probes, &templates, DIM, 10))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pairs, bench_top_k);
criterion_main!(benches);
