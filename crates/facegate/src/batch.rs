//! `facegate batch`: an offline job over an Arrow IPC or Parquet file of pairs.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use facegate_batch::{JobOptions, count_rows, run};
use facegate_pipeline::Engine;
use facegate_scheduler::{EngineBackend, Metrics, Scheduler, SchedulerConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::EngineArgs;

#[derive(Args)]
pub struct BatchArgs {
    /// Parquet or Arrow IPC with columns `id` (string), `probe`, `reference` (binary image bytes,
    /// or string paths relative to --images).
    #[arg(long)]
    input: PathBuf,
    /// Parquet output: id, decision, score, threshold, reasons, model, elapsed_ms.
    #[arg(long)]
    output: PathBuf,
    /// Folder that path columns are relative to (default: the input's folder).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Continue an interrupted run from its last durable row group.
    #[arg(long)]
    resume: bool,
    /// Input rows per output row group; each group is durable once written.
    #[arg(long, default_value_t = 256)]
    rows_per_group: usize,
    /// Override the scheduler's max_batch (default: by device).
    #[arg(long)]
    max_batch: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn batch(args: BatchArgs) -> Result<()> {
    let engine: Engine = crate::engine(&args.engine)?;
    let config = SchedulerConfig {
        max_batch: args.max_batch.unwrap_or(0),
        ..Default::default()
    };
    let options = JobOptions {
        input: args.input.clone(),
        output: args.output.clone(),
        images: args.images.clone(),
        resume: args.resume,
        rows_per_group: args.rows_per_group,
    };
    let total = count_rows(&args.input);
    let terminal = std::io::stderr().is_terminal();
    let bar = if terminal {
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}").expect("valid template"),
            ),
            None => ProgressBar::new_spinner()
                .with_style(ProgressStyle::with_template("{spinner} {pos} rows {per_sec}").expect("valid template")),
        };
        Some(bar)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let summary = runtime.block_on(async {
        let scheduler =
            Scheduler::start(EngineBackend::new(engine), config, Metrics::new()).map_err(anyhow::Error::msg)?;
        let start = Instant::now();
        let mut last_line = Instant::now();
        let result = run(&scheduler, &options, |done| match &bar {
            Some(b) => b.set_position(done),
            // Not a terminal: a plain line every 10 s.
            None if last_line.elapsed() >= Duration::from_secs(10) => {
                last_line = Instant::now();
                let rate = done as f64 / start.elapsed().as_secs_f64();
                let of = total.map_or(String::new(), |t| format!(" of {t}"));
                eprintln!("facegate batch: {done}{of} rows, {rate:.1} rows/s");
            }
            None => {}
        })
        .await;
        scheduler.shutdown().await;
        anyhow::Ok(result?)
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} rows ({} from an earlier run) in {:.1} s: {} match, {} no_match, {} rejected, {} errors → {}",
            summary.rows,
            summary.resumed_rows,
            summary.seconds,
            summary.matches,
            summary.no_matches,
            summary.rejected,
            summary.errors,
            args.output.display()
        );
    }
    Ok(())
}
