//! `facegate bench-nets`: each network alone on the CPU backend (burn flex), on the shapes
//! `tools/bench/ort_bench.py` gives onnxruntime, so `benches/cpu/run.sh` can put the two side
//! by side; then whole verifications (decode to decision) of the shipped test photos.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use facegate_models::{DetectorNet, Registry};
use facegate_pipeline::{DeviceChoice, Engine};
use serde::Serialize;

#[derive(Args)]
pub struct BenchNetsArgs {
    /// Seconds of timed runs per case (at least 5 runs).
    #[arg(long, default_value_t = 1.5)]
    budget: f64,
    /// Only these cases (frn, mobilefacenet, pnet, rnet, onet, verify); repeatable.
    #[arg(long)]
    only: Vec<String>,
    /// The photos whole verifications are timed on.
    #[arg(long, default_value = "data/face-a.png")]
    probe: PathBuf,
    #[arg(long, default_value = "data/exif-rotated.jpg")]
    reference: PathBuf,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Case {
    model: String,
    input: String,
    runs: usize,
    median_ms: f64,
    p10_ms: f64,
    /// Per item of the batch (per pair for `verify`).
    median_ms_per_item: f64,
}

/// P-Net's image pyramid for a 250×250 photo with MTCNN's defaults (20 px faces, factor
/// 0.709): the sides ort_bench.py times.
fn pyramid(side: f64) -> Vec<usize> {
    let mut scale = 12.0 / 20.0;
    let mut out = Vec::new();
    while side * scale >= 12.0 {
        // Python's `int(h * scale + 1)`, as the detector sizes its levels.
        out.push((side * scale + 1.0) as usize);
        scale *= 0.709;
    }
    out
}

/// Median and 10th percentile of `f`'s wall time, after 3 warm-up calls.
fn time(budget: f64, mut f: impl FnMut()) -> (usize, f64, f64) {
    for _ in 0..3 {
        f();
    }
    let mut ms = Vec::new();
    let stop = Instant::now() + Duration::from_secs_f64(budget);
    while ms.len() < 5 || Instant::now() < stop {
        let t = Instant::now();
        f();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    (ms.len(), ms[ms.len() / 2], ms[ms.len() / 10])
}

pub fn bench_nets(args: BenchNetsArgs) -> Result<()> {
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| o == name);
    let device = Device::flex();
    let registry = Registry::builtin();
    let mut cases = Vec::new();
    let mut record = |model: &str, input: String, batch: usize, (runs, median, p10): (usize, f64, f64)| {
        cases.push(Case {
            model: model.into(),
            input,
            runs,
            median_ms: median,
            p10_ms: p10,
            median_ms_per_item: median / batch as f64,
        })
    };
    let random =
        |shape: [usize; 4]| Tensor::<4>::random(shape, burn::tensor::Distribution::Uniform(-1.0, 1.0), &device);

    for (case, name) in [
        ("frn", "dlib-resnet-v1"),
        ("mobilefacenet", "faceplugin-mobilefacenet-512"),
    ] {
        if !wanted(case) {
            continue;
        }
        let net = registry.embedder(name, &device)?;
        let s = net.input_size();
        for batch in [1, 16] {
            let x = random([batch, 3, s, s]).mul_scalar(127.5).add_scalar(127.5);
            let t = time(args.budget, || {
                net.forward(x.clone()).into_data();
            });
            record(case, format!("{batch}x3x{s}x{s}"), batch, t);
        }
    }
    let DetectorNet::Mtcnn(mtcnn) = registry.detector("mtcnn", &device)? else {
        bail!("the built-in mtcnn card is not MTCNN");
    };
    if wanted("pnet") {
        for side in pyramid(250.0) {
            let x = random([1, 3, side, side]);
            let t = time(args.budget, || {
                let (reg, prob) = mtcnn.pnet.forward(x.clone());
                reg.into_data();
                prob.into_data();
            });
            record("pnet", format!("1x3x{side}x{side}"), 1, t);
        }
    }
    if wanted("rnet") {
        for batch in [1, 16, 64] {
            let x = random([batch, 3, 24, 24]);
            let t = time(args.budget, || {
                let (reg, prob) = mtcnn.rnet.forward(x.clone());
                reg.into_data();
                prob.into_data();
            });
            record("rnet", format!("{batch}x3x24x24"), batch, t);
        }
    }
    if wanted("onet") {
        for batch in [1, 16] {
            let x = random([batch, 3, 48, 48]);
            let t = time(args.budget, || {
                let (reg, marks, prob) = mtcnn.onet.forward(x.clone());
                reg.into_data();
                marks.into_data();
                prob.into_data();
            });
            record("onet", format!("{batch}x3x48x48"), batch, t);
        }
    }
    if wanted("verify") {
        let engine = Engine::new(Default::default(), DeviceChoice::Cpu)?;
        let (p, r) = (crate::read(&args.probe)?, crate::read(&args.reference)?);
        for batch in [1, 8] {
            let pairs = vec![(p.as_slice(), r.as_slice()); batch];
            let t = time(args.budget, || {
                engine.verify(&pairs);
            });
            record("verify (decode → decision)", format!("{batch} pairs"), batch, t);
        }
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    if args.json {
        let mut out = BTreeMap::new();
        out.insert(
            "runtime",
            serde_json::json!(format!("burn flex 0.22 ({threads} threads)")),
        );
        out.insert("cases", serde_json::to_value(&cases).context("cases")?);
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("burn flex, {threads} threads\n");
        println!("| model | input | runs | median ms | p10 ms | median ms/item |\n|---|---|---:|---:|---:|---:|");
        for c in &cases {
            println!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} |",
                c.model, c.input, c.runs, c.median_ms, c.p10_ms, c.median_ms_per_item
            );
        }
    }
    Ok(())
}
