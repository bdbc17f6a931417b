//! `facegate serve`: the HTTP service, with JSON logs that carry no biometric data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use facegate_pipeline::{DeviceChoice, Engine};
use facegate_server::{Service, ServiceConfig};

/// Every flag can also be set from the environment (`FACEGATE_BIND`, `FACEGATE_CONFIG`, …, as
/// `--help` lists), as container platforms configure services; a flag given wins.
#[derive(Args)]
pub struct ServeArgs {
    /// Service configuration (TOML or JSON) with `[engine]`, `[scheduler]` and `[server]` sections.
    #[arg(long, env = "FACEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Where the networks run: auto (a real GPU if present, else CPU), cpu, or gpu.
    #[arg(long, default_value = "auto", env = "FACEGATE_DEVICE")]
    device: DeviceChoice,
    /// Override `server.bind` (default 127.0.0.1:8080).
    #[arg(long, env = "FACEGATE_BIND")]
    bind: Option<String>,
    /// Override `scheduler.max_batch`.
    #[arg(long, env = "FACEGATE_MAX_BATCH")]
    max_batch: Option<usize>,
    /// Override `scheduler.max_delay_us`.
    #[arg(long, env = "FACEGATE_MAX_DELAY_US")]
    max_delay_us: Option<u64>,
    /// Decide at a calibrated operating point (a file from `facegate eval --write-calibration`);
    /// overrides `engine.calibration`.
    #[arg(long, env = "FACEGATE_CALIBRATION")]
    calibration: Option<PathBuf>,
    /// The calibration's operating point, e.g. fmr_1e-3 (default: the file's default).
    #[arg(long, requires = "calibration", env = "FACEGATE_OPERATING_POINT")]
    operating_point: Option<String>,
    /// The embedding model, by name (`facegate models list`); overrides `engine.embedder`.
    #[arg(long, env = "FACEGATE_MODEL")]
    model: Option<String>,
    /// A directory of user models; overrides `engine.models_dir`.
    #[arg(long, env = "FACEGATE_MODELS")]
    models_dir: Option<PathBuf>,
    /// Append JSON log lines to this file instead of standard error (the level: FACEGATE_LOG,
    /// else RUST_LOG, else info).
    #[arg(long, env = "FACEGATE_LOG_FILE")]
    log_file: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(p) => ServiceConfig::from_file(p).map_err(anyhow::Error::msg)?,
        None => ServiceConfig::default(),
    };
    if let Some(b) = args.bind {
        config.server.bind = b;
    }
    if let Some(n) = args.max_batch {
        config.scheduler.max_batch = n;
    }
    if let Some(d) = args.max_delay_us {
        config.scheduler.max_delay_us = d;
    }
    if let Some(c) = args.calibration {
        config.engine.calibration = Some(c);
        config.engine.operating_point = args.operating_point;
    }
    if let Some(m) = args.model {
        config.engine.embedder = m;
    }
    if let Some(d) = args.models_dir {
        config.engine.models_dir = Some(d);
    }
    init_logs(args.log_file.as_ref())?;
    let engine = Engine::new(config.engine.clone(), args.device)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let service = Service::start(config.clone(), engine)
            .await
            .map_err(anyhow::Error::msg)?;
        let scheme = if config.server.tls.is_some() { "https" } else { "http" };
        // Tests and scripts read this line to find the port when binding port 0.
        eprintln!("facegate: listening on {scheme}://{}", service.addr);
        let (scheduler, engine) = (&service.state.scheduler, service.state.scheduler.backend().engine());
        tracing::info!(
            addr = %service.addr,
            model = engine.model_version(),
            device = engine.device_label(),
            scorer = engine.scorer_label(),
            threshold = engine.threshold(),
            operating_point = engine.config().operating_point.as_deref().unwrap_or("-"),
            max_batch = scheduler.config().max_batch,
            max_delay_us = scheduler.config().max_delay_us,
            queue_capacity = scheduler.config().queue_capacity,
            "listening"
        );
        shutdown_signal().await;
        tracing::info!(
            in_flight = service.state.scheduler.in_flight(),
            "shutting down: answering what was accepted"
        );
        service.shutdown().await;
        tracing::info!("stopped");
        eprintln!("facegate: stopped");
        Ok(())
    })
}

/// `facegate health`: a container's health check, without curl in the image.
#[derive(Args)]
pub struct HealthArgs {
    /// The liveness URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:8080/health", env = "FACEGATE_HEALTH_URL")]
    url: String,
    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// Exit 0 when `url` answers 200 in time, else fail with what happened.
pub fn health(args: HealthArgs) -> Result<()> {
    facegate_server::install_crypto_provider();
    let url = reqwest::Url::parse(&args.url).map_err(|e| crate::usage(format!("--url {}: {e}", args.url)))?;
    // The service's own certificate may be one a health check cannot verify by name; it is
    // trusted only on loopback, where the check asks its own process.
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(args.timeout_ms))
        .tls_danger_accept_invalid_certs(loopback)
        .build()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(async { http.get(url.clone()).send().await.map(|r| r.status()) })?;
    if !status.is_success() {
        anyhow::bail!("{url} answered {status}");
    }
    println!("{url}: {status}");
    Ok(())
}

fn init_logs(file: Option<&PathBuf>) -> Result<()> {
    // FACEGATE_LOG, else the RUST_LOG operators set for any Rust service, else info.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FACEGATE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?;
            builder.with_writer(std::sync::Mutex::new(f)).init();
        }
        None => builder.with_writer(std::io::stderr).init(),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
