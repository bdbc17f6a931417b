//! Kernel timings with the data resident on the device, for benches/gpu/run.sh: one JSON line
//! per case with seconds per call, elements/s and the bytes the kernel reads per second.
//!
//!     facegate-matcher-bench [--quick] [--dump DIR]
//!
//! `--dump DIR` writes the probes and gallery (raw little-endian f32, row-major, D = 128) so
//! that PyTorch can be timed on the same data. `--quick` runs small sizes (CI, lavapipe).

use std::time::Instant;

use facegate_kernels::{Gallery, Matcher, Storage, reference};

const DIM: usize = 128;
const K: usize = 10;

fn embeddings(n: usize, seed: u64) -> Vec<f32> {
    reference::sample(n, DIM, seed)
}

/// Mean seconds per call over enough calls to fill about a second, after warm-up.
fn time<T>(mut f: impl FnMut() -> T) -> f64 {
    for _ in 0..3 {
        f();
    }
    let (mut calls, start) = (0u32, Instant::now());
    while calls < 5 || start.elapsed().as_secs_f64() < 1.0 {
        f();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let dump = args.iter().position(|a| a == "--dump").and_then(|i| args.get(i + 1));
    let matcher = Matcher::new()?;
    let device = matcher.label().to_string();
    let (pairs_n, gallery_g, probe_ms): (usize, usize, &[usize]) = if quick {
        (4_096, 20_000, &[1, 64])
    } else {
        (1_000_000, 1_000_000, &[1, 64, 1024])
    };
    let line = |kernel: &str, storage: Storage, shape: String, secs: f64, elements: usize, bytes: usize| {
        println!(
            "{{\"kernel\":\"{kernel}\",\"storage\":\"{storage:?}\",\"shape\":\"{shape}\",\"device\":\"{device}\",\
             \"seconds\":{secs:.6e},\"elements_per_s\":{:.4e},\"gb_per_s\":{:.3}}}",
            elements as f64 / secs,
            bytes as f64 / secs / 1e9
        )
    };
    let (a, b) = (embeddings(pairs_n, 1), embeddings(pairs_n, 2));
    for storage in [Storage::F32, Storage::F16] {
        let batch = matcher.upload_pairs(&a, &b, DIM, storage)?;
        let secs = time(|| matcher.score(&batch).unwrap());
        line(
            "pairs",
            storage,
            format!("n{pairs_n}_d{DIM}"),
            secs,
            pairs_n,
            batch.bytes(),
        );
    }
    drop((a, b));
    let templates = embeddings(gallery_g, 4);
    let max_m = *probe_ms.last().unwrap();
    let probes = embeddings(max_m, 3);
    if let Some(dir) = dump {
        std::fs::create_dir_all(dir)?;
        std::fs::write(format!("{dir}/gallery.f32"), bytemuck::cast_slice(&templates))?;
        std::fs::write(format!("{dir}/probes.f32"), bytemuck::cast_slice(&probes))?;
    }
    for storage in [Storage::F32, Storage::F16] {
        let gallery = Gallery::upload(&matcher, &templates, DIM, storage)?;
        for &m in probe_ms {
            let p = &probes[..m * DIM];
            let secs = time(|| matcher.top_k(p, &gallery, K).unwrap());
            line(
                "top_k",
                storage,
                format!("m{m}_g{gallery_g}_k{K}"),
                secs,
                m * gallery_g,
                gallery.bytes(),
            );
        }
    }
    Ok(())
}
