//! `facegate bench-nets`: each network alone, on the shapes `tools/bench/ort_bench.py` gives
//! onnxruntime (`benches/cpu/run.sh` puts the two side by side) or, with `--device gpu`, on
//! wgpu at the batches `benches/gpu/run.sh` tables; then whole verifications (decode to
//! decision) of the shipped test photos, and of a selfie-size JPEG made from them, with the
//! time each stage took.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use burn::prelude::*;
use clap::Args;
use facegate_core::{Config, Timings};
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
    /// The reference of the timed verifications.
    #[arg(long, default_value = "data/exif-rotated.jpg")]
    reference: PathBuf,
    /// One JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
    /// Where the networks run (cpu: burn flex; gpu: wgpu, lavapipe included).
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Batch sizes for the embedders, and pairs per call for whole verifications.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    batches: Vec<usize>,
    /// Pairs per call for the timed whole verifications.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    verify_batches: Vec<usize>,
    /// Also verify with the probe blown up to a JPEG of this side (a 1–4 MP selfie); 0: no.
    #[arg(long, default_value_t = 0)]
    selfie_side: u32,
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
    /// Whole verifications: each stage's share of one call (the last timed run).
    #[serde(skip_serializing_if = "Option::is_none")]
    stages: Option<Timings>,
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
    let selected = facegate_pipeline::device::select(args.device).map_err(anyhow::Error::msg)?;
    let device = selected.device.clone();
    let registry = Registry::builtin();
    let mut cases = Vec::new();
    let entry = |model: &str, input: String, batch: usize, (runs, median, p10): (usize, f64, f64)| Case {
        model: model.into(),
        input,
        runs,
        median_ms: median,
        p10_ms: p10,
        median_ms_per_item: median / batch as f64,
        stages: None,
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
        for &batch in &args.batches {
            let x = random([batch, 3, s, s]).mul_scalar(127.5).add_scalar(127.5);
            let t = time(args.budget, || {
                net.forward(x.clone()).into_data();
            });
            cases.push(entry(case, format!("{batch}x3x{s}x{s}"), batch, t));
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
            cases.push(entry("pnet", format!("1x3x{side}x{side}"), 1, t));
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
            cases.push(entry("rnet", format!("{batch}x3x24x24"), batch, t));
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
            cases.push(entry("onet", format!("{batch}x3x48x48"), batch, t));
        }
    }
    if wanted("verify") {
        let (p, r) = (crate::read(&args.probe)?, crate::read(&args.reference)?);
        let selfie = (args.selfie_side > 0)
            .then(|| selfie_jpeg(p.as_slice(), args.selfie_side))
            .transpose()?;
        // On wgpu, the crops cut on the device and on the host, side by side.
        let crop_modes: &[bool] = if selected.wgpu.is_some() {
            &[true, false]
        } else {
            &[false]
        };
        for &device_crops in crop_modes {
            let config = Config {
                device_crops,
                ..Config::default()
            };
            let engine = Engine::new(config, args.device)?;
            let crops = if selected.wgpu.is_none() {
                ""
            } else if device_crops {
                ", crops on the device"
            } else {
                ", crops on the host"
            };
            let probes = std::iter::once((p.as_slice(), "LFW-size".to_string())).chain(
                selfie
                    .iter()
                    .map(|s| (&s[..], format!("{0}×{0} JPEG probe", args.selfie_side))),
            );
            for (probe, size) in probes {
                for &batch in &args.verify_batches {
                    let pairs = vec![(probe, r.as_slice()); batch];
                    let t = time(args.budget, || {
                        engine.verify(&pairs);
                    });
                    let mut c = entry(
                        &format!("verify (decode → decision{crops})"),
                        format!("{batch} pairs, {size}"),
                        batch,
                        t,
                    );
                    // The stage split of one call on the same photos.
                    let photos: Vec<&[u8]> = pairs.iter().flat_map(|(p, r)| [*p, *r]).collect();
                    let policies = vec![facegate_pipeline::FacePolicy::Dominant; photos.len()];
                    c.stages = Some(engine.analyze(&photos, &policies).timings);
                    cases.push(c);
                }
            }
        }
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    if args.json {
        let mut out = BTreeMap::new();
        out.insert(
            "runtime",
            serde_json::json!(format!("burn 0.22 on {} ({threads} threads)", selected.label)),
        );
        out.insert("cases", serde_json::to_value(&cases).context("cases")?);
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("burn 0.22 on {}, {threads} threads\n", selected.label);
        println!(
            "| model | input | runs | median ms | p10 ms | median ms/item | ms decode / detect / landmarks / crops + embed |"
        );
        println!("|---|---|---:|---:|---:|---:|---|");
        for c in &cases {
            let stages = c.stages.as_ref().map_or(String::new(), |t| {
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1}",
                    t.decode_ms, t.detect_ms, t.landmarks_ms, t.embed_ms
                )
            });
            println!(
                "| {} | {} | {} | {:.3} | {:.3} | {:.3} | {stages} |",
                c.model, c.input, c.runs, c.median_ms, c.p10_ms, c.median_ms_per_item
            );
        }
    }
    Ok(())
}

/// `probe` blown up (Lanczos) to `side` on its longer side and encoded as a JPEG (quality 90),
/// as a phone's selfie arrives.
fn selfie_jpeg(probe: &[u8], side: u32) -> Result<Vec<u8>> {
    let img = facegate_pipeline::decode(probe, u64::MAX).map_err(|e| anyhow::anyhow!("{e}"))?;
    let scale = side as f64 / img.width().max(img.height()) as f64;
    let (w, h) = (
        (img.width() as f64 * scale) as u32,
        (img.height() as f64 * scale) as u32,
    );
    let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Lanczos3);
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&big)
        .context("encoding the selfie")?;
    Ok(out)
}
