//! `facegate`: verify, embed and evaluate from the command line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use facegate_core::{Config, Verification};
use facegate_eval::{Scored, metrics, read_pairs};
use facegate_pipeline::{DeviceChoice, Engine, FacePolicy};
use indicatif::{ProgressBar, ProgressStyle};

mod batch;
mod loadgen;
mod serve;

#[derive(Parser)]
#[command(name = "facegate", version, about = "GPU-accelerated 1:1 face verification")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Where the networks run: auto (a real GPU if present, else CPU), cpu, or gpu (any wgpu adapter).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Configuration file (TOML or JSON); missing keys keep their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override the match threshold (cosine similarity).
    #[arg(long)]
    threshold: Option<f32>,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a live selfie (probe) with an ID portrait (reference).
    Verify {
        probe: PathBuf,
        reference: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print the 128-d face descriptor of each image.
    Embed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List every face the detector finds in each image (boxes in pixels, best first).
    Detect {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Run the HTTP verification service (default 127.0.0.1:8080, embedded model).
    Serve(serve::ServeArgs),
    /// Print the SHA-256 of an API key, for `[[server.clients]] key_sha256`.
    HashKey { key: String },
    /// Load a facegate service on this machine and report throughput, latency and batching.
    Loadgen(loadgen::LoadgenArgs),
    /// Verify every pair of an Arrow IPC or Parquet file into a Parquet file; resumable.
    Batch(batch::BatchArgs),
    /// Measure accuracy on a pair list (LFW pairs format or TSV probe/reference/same).
    Eval {
        #[arg(long)]
        pairs: PathBuf,
        /// Image folder (default: beside the pair file).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Face policy for both photos: dominant (largest clearly-dominant face) or single.
        #[arg(long, default_value = "dominant")]
        policy: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn engine(args: &EngineArgs) -> Result<Engine> {
    let mut config = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(t) = args.threshold {
        config.threshold = t;
    }
    Ok(Engine::new(config, args.device)?)
}

fn read(path: &Path) -> Result<facegate_core::ImageBytes> {
    Ok(facegate_core::ImageBytes::new(
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    ))
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args)?,
        Command::HashKey { key } => println!("{}", facegate_server::hash_key(&key)),
        Command::Loadgen(args) => loadgen::loadgen(args)?,
        Command::Batch(args) => batch::batch(args)?,
        Command::Verify {
            probe,
            reference,
            json,
            engine: args,
        } => {
            let engine = engine(&args)?;
            let (p, r) = (read(&probe)?, read(&reference)?);
            let v = engine.verify(&[(p.as_slice(), r.as_slice())]).remove(0);
            if json {
                println!("{}", serde_json::to_string(&v)?);
            } else {
                print_verification(&v);
            }
        }
        Command::Embed {
            images,
            json,
            engine: args,
        } => {
            let engine = engine(&args)?;
            let bytes: Vec<_> = images.iter().map(|p| read(p)).collect::<Result<_>>()?;
            let refs: Vec<&[u8]> = bytes.iter().map(|b| b.as_slice()).collect();
            let result = engine.analyze(&refs, &vec![FacePolicy::Dominant; refs.len()]);
            for (path, face) in images.iter().zip(result.items) {
                let (descriptor, error) = match &face {
                    Ok(f) => (Some(f.descriptor.as_slice()), None),
                    Err(e) => (None, Some(e)),
                };
                if json {
                    let v = serde_json::json!({
                        "image": path, "descriptor": descriptor, "face": face.as_ref().ok().map(|f| f.face),
                        "error": error, "model": engine.model_version(),
                    });
                    println!("{v}");
                } else {
                    match (descriptor, error) {
                        (Some(d), _) => println!(
                            "{}\t{}",
                            path.display(),
                            d.iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>().join(" ")
                        ),
                        (_, Some(e)) => println!("{}\trejected: {e}", path.display()),
                        _ => unreachable!(),
                    }
                }
            }
        }
        Command::Detect { images, engine: args } => {
            let engine = engine(&args)?;
            for path in images {
                let max = engine.config().max_pixels;
                let v = match facegate_pipeline::decode(read(&path)?.as_slice(), max) {
                    Ok(img) => serde_json::json!({ "image": path, "faces": engine.detect(&[&img]).remove(0) }),
                    Err(e) => serde_json::json!({ "image": path, "error": e }),
                };
                println!("{v}");
            }
        }
        Command::Eval {
            pairs,
            images,
            policy,
            json,
            engine: args,
        } => {
            let policy = match policy.as_str() {
                "dominant" => FacePolicy::Dominant,
                "single" => FacePolicy::Single,
                other => anyhow::bail!("unknown policy `{other}` (dominant or single)"),
            };
            eval(&engine(&args)?, &pairs, images.as_deref(), policy, json)?;
        }
    }
    Ok(())
}

fn print_verification(v: &Verification) {
    println!("decision:  {}", v.decision.as_str());
    match v.score {
        Some(s) => println!("score:     {s:.4} (cosine similarity; threshold {:.4})", v.threshold),
        None => println!("score:     - (threshold {:.4})", v.threshold),
    }
    for r in &v.reasons {
        println!("reason:    {}: {} ({})", r.role.as_str(), r.message, r.code);
    }
    for (name, face) in [("probe", &v.probe_face), ("reference", &v.reference_face)] {
        if let Some(f) = face {
            println!(
                "{name:<10} face at ({:.0}, {:.0}) {:.0}x{:.0}, detector score {:.2}",
                f.x, f.y, f.width, f.height, f.score
            );
        }
    }
    let t = &v.timings;
    println!(
        "timings:   decode {:.1} ms, detect {:.1} ms, landmarks {:.1} ms, embed {:.1} ms, total {:.1} ms",
        t.decode_ms, t.detect_ms, t.landmarks_ms, t.embed_ms, t.total_ms
    );
    println!("device:    {}", v.device);
    println!("model:     {}", v.model);
}

fn eval(engine: &Engine, pairs_file: &Path, images: Option<&Path>, policy: FacePolicy, json: bool) -> Result<()> {
    let pairs = read_pairs(pairs_file, images)?;
    // Each distinct image is embedded once.
    let mut distinct: Vec<&PathBuf> = pairs.iter().flat_map(|p| [&p.probe, &p.reference]).collect();
    distinct.sort();
    distinct.dedup();
    let bar = ProgressBar::new(distinct.len() as u64).with_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} images {per_sec} eta {eta}").expect("valid template"),
    );
    bar.set_message("embedding");
    let start = std::time::Instant::now();
    let mut descriptors: HashMap<&PathBuf, Result<facegate_core::Descriptor, String>> = HashMap::new();
    let mut failures: HashMap<String, usize> = HashMap::new();
    let batch = engine.config().batch_size;
    for chunk in distinct.chunks(batch) {
        let bytes: Vec<Result<facegate_core::ImageBytes>> = chunk.iter().map(|p| read(p)).collect();
        let ok: Vec<&[u8]> = bytes
            .iter()
            .map(|b| b.as_ref().map(|b| b.as_slice()).unwrap_or(&[]))
            .collect();
        let result = engine.analyze(&ok, &vec![policy; ok.len()]);
        for ((path, b), face) in chunk.iter().zip(&bytes).zip(result.items) {
            let entry = match (b, face) {
                (Err(e), _) => Err(format!("unreadable: {e}")),
                (_, Ok(f)) => Ok(f.descriptor),
                (_, Err(e)) => {
                    *failures.entry(e.code().to_string()).or_default() += 1;
                    Err(e.to_string())
                }
            };
            descriptors.insert(path, entry);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    // All pairs with two faces are scored in one batch (the WGSL kernel when on wgpu).
    let present: Vec<Option<(&[f32], &[f32])>> = pairs
        .iter()
        .map(|p| match (&descriptors[&p.probe], &descriptors[&p.reference]) {
            (Ok(a), Ok(b)) => Some((a.as_slice(), b.as_slice())),
            _ => None,
        })
        .collect();
    let scored: Vec<Scored> = pairs
        .iter()
        .zip(engine.score_where_present(&present))
        .map(|(p, score)| Scored {
            same: p.same,
            score: score.map(f64::from),
        })
        .collect();
    let m = metrics(&scored, engine.config().threshold as f64);
    let failed_images = descriptors.values().filter(|d| d.is_err()).count();
    let ftd = failed_images as f64 / distinct.len().max(1) as f64;
    if json {
        let v = serde_json::json!({
            "pairs_file": pairs_file, "metrics": m, "images": distinct.len(), "failed_images": failed_images,
            "failure_to_detect_rate": ftd, "failures_by_reason": failures, "seconds": elapsed,
            "model": engine.model_version(), "device": engine.device_label(), "scoring": engine.scorer_label(),
        });
        println!("{v}");
    } else {
        println!(
            "pairs:              {} ({} genuine, {} impostor)",
            m.pairs, m.genuine, m.impostor
        );
        println!(
            "accuracy @ {:.4}:   {:.2}% (failed pairs count as errors: {})",
            m.threshold,
            100.0 * m.accuracy,
            m.failed_pairs
        );
        println!(
            "best accuracy:      {:.2}% at threshold {:.4}",
            100.0 * m.best_accuracy,
            m.best_threshold
        );
        println!(
            "EER:                {:.2}% at threshold {:.4}",
            100.0 * m.eer,
            m.eer_threshold
        );
        println!("TAR @ FAR 1e-2:     {:.2}%", 100.0 * m.tar_at_far_1e2);
        println!("TAR @ FAR 1e-3:     {:.2}%", 100.0 * m.tar_at_far_1e3);
        println!(
            "failure to detect:  {:.2}% ({failed_images} of {} images) {failures:?}",
            100.0 * ftd,
            distinct.len()
        );
        println!(
            "time:               {elapsed:.1} s ({:.1} ms per image) on {}",
            1e3 * elapsed / distinct.len().max(1) as f64,
            engine.device_label()
        );
        println!("scoring:            {}", engine.scorer_label());
    }
    Ok(())
}
