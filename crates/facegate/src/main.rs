//! `facegate`: verify, embed and evaluate from the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use facegate_core::{Config, Overrides, Verification};
use facegate_pipeline::{DeviceChoice, Engine, Face, FacePolicy};
use indicatif::{ProgressBar, ProgressStyle};

mod batch;
mod benchnets;
mod dedup;
mod eval;
mod loadgen;
mod models;
mod serve;

#[derive(Parser)]
#[command(name = "facegate", version, about = "GPU-accelerated 1:1 face verification")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which models run, and where.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Where the networks run: auto (a real GPU if present, else CPU), cpu, or gpu (any wgpu adapter).
    #[arg(long, default_value = "auto", env = "FACEGATE_DEVICE")]
    device: DeviceChoice,
    /// Configuration file (TOML or JSON); missing keys keep their defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The embedding model, by name (`facegate models list`), or two to four joined by `+` for
    /// score fusion (`dlib-resnet-v1+faceplugin-mobilefacenet-512`).
    #[arg(long)]
    model: Option<String>,
    /// A directory of user models (`facegate models add` writes there).
    #[arg(long, env = "FACEGATE_MODELS")]
    models_dir: Option<PathBuf>,
}

/// Where a score becomes a decision: for commands that decide.
#[derive(Args, Clone)]
pub struct DecisionArgs {
    /// Override the match threshold (cosine similarity).
    #[arg(long, conflicts_with = "calibration")]
    threshold: Option<f32>,
    /// Decide at a calibrated operating point (a file from `facegate eval --write-calibration`).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// The calibration's operating point, e.g. fmr_1e-3 (default: the file's default).
    #[arg(long, requires = "calibration")]
    operating_point: Option<String>,
}

/// The models and the decision rule of commands that decide (verify, batch, eval, dedup).
#[derive(Args, Clone)]
pub struct EngineArgs {
    #[command(flatten)]
    models: ModelArgs,
    #[command(flatten)]
    decision: DecisionArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Compare a live selfie (probe) with an ID portrait (reference).
    Verify {
        /// The live selfie (JPEG, PNG or WebP).
        probe: PathBuf,
        /// The ID-card portrait, or a photo of the card.
        reference: PathBuf,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Print the face descriptor of each image (as long as the embedder's output).
    Embed {
        /// Photos (JPEG, PNG or WebP), one descriptor each.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One JSON object per photo (descriptor, face box, landmarks, quality, refusal) on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// List every face the detector finds in each image (boxes in pixels, best first).
    Detect {
        /// Photos (JPEG, PNG or WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Run the HTTP verification service (default 127.0.0.1:8080, embedded model).
    Serve(serve::ServeArgs),
    /// Ask a running service whether it is alive (a container's health check): exit 0 or 1.
    Health(serve::HealthArgs),
    /// Print the SHA-256 of an API key, for `[[server.clients]] key_sha256`.
    HashKey {
        /// The API key a client will send.
        key: String,
    },
    /// Load a facegate service on this machine and report throughput, latency and batching.
    Loadgen(loadgen::LoadgenArgs),
    /// Time each network alone (CPU backend, or wgpu with --device gpu), on the shapes
    /// tools/bench/ort_bench.py gives onnxruntime, and whole verifications with their stage
    /// split (benches/cpu/run.sh and benches/gpu/run.sh table them).
    BenchNets(benchnets::BenchNetsArgs),
    /// Verify every pair of an Arrow IPC or Parquet file into a Parquet file; resumable.
    Batch(batch::BatchArgs),
    /// Find enrolment photos whose face is already enrolled under another identity (a top-k
    /// 1:N scan of the photos against each other); JSON lines, identities and scores only.
    Dedup(dedup::DedupArgs),
    /// The model registry: list, show, or add a model (an ONNX embedder and its card).
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Measure accuracy on a pair list (LFW pairs format or TSV probe/reference/same); with
    /// --report, write a DET curve, score histograms and tables; with --write-calibration,
    /// the thresholds of calibrated operating points.
    Eval(eval::EvalArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("facegate: {e:#}");
            // As clap's own: 2 for a mistake in the command line, 1 for a failure.
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A mistake in the command line that clap cannot see (a combination of values).
#[derive(Debug)]
pub(crate) struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Usage(message.into()).into()
}

pub(crate) fn engine(args: &EngineArgs) -> Result<Engine> {
    engine_with(&args.models, Some(&args.decision))
}

fn engine_with(models: &ModelArgs, decision: Option<&DecisionArgs>) -> Result<Engine> {
    let config = match &models.config {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    let config = config.overridden(Overrides {
        embedder: models.model.clone(),
        threshold: decision.and_then(|d| d.threshold),
        calibration: decision.and_then(|d| d.calibration.clone()),
        operating_point: decision.and_then(|d| d.operating_point.clone()),
        models_dir: models.models_dir.clone(),
        ..Overrides::default()
    })?;
    Ok(Engine::new(config, models.device)?)
}

pub(crate) use facegate_accuracy::Refusal;

/// A progress bar for `len` photos (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len).with_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} photos {per_sec} eta {eta}").expect("valid template"),
    );
    bar.set_message("embedding");
    bar
}

/// The face of each photo file (under `policy`), or why there is none, in order (batch by
/// batch, `facegate_accuracy::for_each_face`), with a progress bar on a terminal.
pub(crate) fn for_each_face<P: AsRef<Path>>(
    engine: &Engine,
    photos: &[P],
    policy: FacePolicy,
    each: impl FnMut(usize, Result<Face, Refusal>),
) {
    let bar = progress_bar(photos.len() as u64);
    facegate_accuracy::for_each_face(engine, photos, policy, |n| bar.set_position(n as u64), each);
    bar.finish_and_clear();
}

pub(crate) fn read(path: &Path) -> Result<facegate_core::ImageBytes> {
    Ok(facegate_core::ImageBytes::new(
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    ))
}

/// For commands that only print: piped into `head`, they stop quietly when the reader goes
/// away, as Unix tools do (Rust starts with SIGPIPE ignored, so `println!` would panic on the
/// closed pipe). Not for commands with sockets, where a peer hanging up must not end us.
fn stop_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: signal(2) with SIG_DFL, before the command starts any thread.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Result<()> {
    if !matches!(
        cli.command,
        Command::Serve(_) | Command::Health(_) | Command::Loadgen(_) | Command::Batch(_)
    ) {
        stop_quietly_on_closed_pipe();
    }
    match cli.command {
        Command::Serve(args) => serve::serve(args)?,
        Command::Health(args) => serve::health(args)?,
        Command::HashKey { key } => println!("{}", facegate_server::hash_key(&key)),
        Command::Loadgen(args) => loadgen::loadgen(args)?,
        Command::BenchNets(args) => benchnets::bench_nets(args)?,
        Command::Batch(args) => batch::batch(args)?,
        Command::Dedup(args) => dedup::dedup(args)?,
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
        Command::Embed { images, json, models } => {
            let engine = engine_with(&models, None)?;
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
                        "landmarks": face.as_ref().ok().map(|f| &f.landmarks),
                        "sharpness": face.as_ref().ok().map(|f| f.sharpness),
                        "yaw": face.as_ref().ok().map(|f| f.yaw),
                        "rotation": face.as_ref().ok().map(|f| f.rotation),
                        "descreened": face.as_ref().ok().map(|f| f.descreened),
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
        Command::Detect { images, models } => {
            let engine = engine_with(&models, None)?;
            for path in images {
                let v = match engine.decode(read(&path)?.as_slice()) {
                    Ok(mut photo) => {
                        let faces = engine.detect(&[&photo.image]).remove(0);
                        let faces: Vec<_> = faces.into_iter().map(|f| f.in_original(photo.scale)).collect();
                        photo.wipe();
                        serde_json::json!({ "image": path, "faces": faces })
                    }
                    Err(e) => serde_json::json!({ "image": path, "error": e }),
                };
                println!("{v}");
            }
        }
        Command::Eval(args) => eval::eval(args)?,
        Command::Models(cmd) => models::run(cmd)?,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every subcommand says what it is for in `--help`.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "facegate", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
