//! Faces per second of each built-in embedder on the CPU backend (burn flex), at batch 1 and
//! 16, on crops of the embedder's input size: the network alone (alignment and detection are
//! the same for every embedder). Then the cost of score fusion (`--model A+B`): both networks
//! on the same batch, as the engine runs them. `cargo bench -p facegate-models --bench embedders`.

use burn::prelude::*;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use facegate_models::{Registry, Task};

fn embedders(c: &mut Criterion) {
    let device = Device::flex();
    let registry = Registry::builtin();
    let mut group = c.benchmark_group("embedder_cpu");
    group.sample_size(10);
    for entry in registry.entries().iter().filter(|e| e.card.task == Task::Embedder) {
        let embedder = registry.embedder(&entry.card.name, &device).expect("built-in embedder");
        let s = embedder.input_size();
        for batch in [1usize, 16] {
            let crops: Tensor<4> = Tensor::random(
                [batch, 3, s, s],
                burn::tensor::Distribution::Uniform(0.0, 255.0),
                &device,
            );
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(BenchmarkId::new(entry.card.name.clone(), batch), &crops, |b, crops| {
                b.iter(|| {
                    let out = embedder.forward(crops.clone());
                    // Wait for the result: burn's backends may run asynchronously.
                    out.into_data()
                })
            });
        }
    }
    // The fusion the README measures: dlib's ResNet and the MobileFaceNet on the same faces
    // (each on crops of its own template), one call each per batch.
    let pair = ["dlib-resnet-v1", "faceplugin-mobilefacenet-512"];
    let nets: Vec<_> = pair
        .iter()
        .map(|n| registry.embedder(n, &device).expect("built-in embedder"))
        .collect();
    for batch in [1usize, 16] {
        let crops: Vec<Tensor<4>> = nets
            .iter()
            .map(|e| {
                let s = e.input_size();
                Tensor::random(
                    [batch, 3, s, s],
                    burn::tensor::Distribution::Uniform(0.0, 255.0),
                    &device,
                )
            })
            .collect();
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new(pair.join("+"), batch), &crops, |b, crops| {
            b.iter(|| {
                let rows: Vec<Tensor<2>> = nets.iter().zip(crops).map(|(e, c)| e.forward(c.clone())).collect();
                Tensor::cat(rows, 1).into_data()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, embedders);
criterion_main!(benches);
