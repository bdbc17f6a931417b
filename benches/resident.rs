//! Scoring a batch of verifications whose descriptors burn has just written on the wgpu device
//! (lavapipe where there is no GPU): in place, as `Engine::verify` does, against the two ways
//! that read the descriptors back first, measured in the same run on the same tensor.
//!
//!     cargo bench -p facegate-pipeline --bench resident
//!
//! - `in_place`: `resident::score_rows` (burn's output buffer bound by the pairs kernel's
//!   `main_rows` entry point; the row numbers go up, the scores come back).
//! - `readback_kernel`: descriptors to the host, uploaded again, the same kernel.
//! - `readback_f64`: descriptors to the host, scored in f64 there (the CPU backend's path).
//!
//! Throughput is in pairs; each pair reads 2 × 128 f32.

use std::time::Duration;

use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use facegate_kernels::{Matcher, Storage, reference};
use facegate_pipeline::DeviceChoice;
use facegate_pipeline::device::select;
use facegate_pipeline::resident::score_rows;

const DIM: usize = 128;

fn host(t: &Tensor<2>) -> Vec<f32> {
    t.clone().into_data().try_to_vec().expect("f32")
}

fn bench_scoring(c: &mut Criterion) {
    let selected = select(DeviceChoice::Gpu).expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    let shared = selected.wgpu.clone().expect("wgpu");
    eprintln!("burn and the matcher on {}", selected.label);
    let matcher = Matcher::with_device(shared.device, shared.queue, selected.label.clone());
    let mut group = c.benchmark_group("verify_scoring");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    for n in [8, 64, 1024] {
        // Probes in rows 0..n, references in rows n..2n, as a verify batch lays them out.
        let values = reference::sample(2 * n, DIM, n as u64);
        let descriptors = Tensor::<2>::from_data(TensorData::new(values, [2 * n, DIM]), &selected.device);
        let pairs: Vec<(usize, usize)> = (0..n).map(|i| (i, n + i)).collect();
        // The same scores three ways (and the tensor resident before timing starts).
        let in_place = score_rows(&matcher, &descriptors, &pairs).unwrap();
        let flat = host(&descriptors);
        let want = reference::pairs(&flat[..n * DIM], &flat[n * DIM..], DIM);
        assert!(in_place.iter().zip(&want).all(|(g, w)| (*g as f64 - w).abs() < 1e-5));
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("in_place", n), &n, |b, _| {
            b.iter(|| score_rows(&matcher, &descriptors, &pairs).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("readback_kernel", n), &n, |b, _| {
            b.iter(|| {
                let flat = host(&descriptors);
                matcher
                    .pairs(&flat[..n * DIM], &flat[n * DIM..], DIM, Storage::F32)
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("readback_f64", n), &n, |b, _| {
            b.iter(|| {
                let flat = host(&descriptors);
                reference::pairs(&flat[..n * DIM], &flat[n * DIM..], DIM)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_scoring);
criterion_main!(benches);
