//! `facegate loadgen`: load against a facegate service on this machine, with latency
//! percentiles, throughput and the batch sizes the service formed.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

#[derive(Args)]
pub struct LoadgenArgs {
    /// The service (loopback only: this is a load generator, not a tool to point elsewhere).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Concurrent clients: at most this many requests in flight.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Open loop: start requests at this rate (per second) whatever the answers do; latency is
    /// measured from each request's scheduled start, so waiting for a free client counts.
    /// Without it, closed loop: each client sends its next request when answered.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests...
    #[arg(long, default_value_t = 200)]
    requests: u64,
    /// ...or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// The probe photo every request sends (default: data/face-a.png, built into the binary,
    /// so loadgen runs from any directory).
    #[arg(long)]
    probe: Option<PathBuf>,
    /// The reference photo (default: data/exif-rotated.jpg, built in).
    #[arg(long)]
    reference: Option<PathBuf>,
    /// The API key, when the service has keys configured (sent as `Authorization: Bearer`).
    #[arg(long, env = "FACEGATE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Every Nth request sends, as its probe, the probe scaled up to --large-side (a large
    /// but legal photo: what memory bounds are tested with); 0 never.
    #[arg(long, default_value_t = 0)]
    large_every: u64,
    /// The large probe's longer side, in pixels.
    #[arg(long, default_value_t = 6000)]
    large_side: u32,
    /// Hold this many idle connections open during the run (each sends half a request head
    /// and nothing more; one the server closes is reopened): sockets an attacker would hold.
    #[arg(long, default_value_t = 0)]
    idle_sockets: usize,
    /// Send as bulk (low priority) instead of interactive.
    #[arg(long)]
    bulk: bool,
    /// Give up on a request after this many seconds (its status is `timeout`: unanswered).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Write one CSV line per request here: its number, scheduled start and latency (s, ms),
    /// status, and the `x-request-id` the service issued (what failover runs are checked with).
    #[arg(long)]
    log: Option<PathBuf>,
    /// One JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// One request's outcome, as `--log` writes it.
struct Outcome {
    n: u64,
    scheduled_s: f64,
    latency: Duration,
    status: String,
    request_id: String,
    large: bool,
}

/// The shipped fixtures loadgen sends unless told otherwise (a frontal face, and an EXIF-rotated
/// photo of the same person: both decode paths are exercised).
const DEFAULT_PROBE: &[u8] = include_bytes!("../../../data/face-a.png");
const DEFAULT_REFERENCE: &[u8] = include_bytes!("../../../data/exif-rotated.jpg");

fn photo(path: Option<&std::path::Path>, default: &[u8]) -> Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(default.to_vec()),
    }
}

#[derive(Serialize)]
pub struct Report {
    pub url: String,
    pub mode: String,
    pub concurrency: usize,
    pub offered_rate: Option<f64>,
    pub requests: u64,
    pub seconds: f64,
    pub throughput: f64,
    pub status: BTreeMap<String, u64>,
    pub latency_ms: Percentiles,
    /// Batches the service formed during the run: count, mean size, counts per size bucket.
    pub batches: u64,
    pub mean_batch: f64,
    /// (upper bound, batches in the bucket), in order of the bounds.
    pub batch_buckets: Vec<(String, u64)>,
    /// Requests that carried the large probe, and their status counts.
    pub large_requests: u64,
    pub large_status: BTreeMap<String, u64>,
    /// Idle connections held, and how many of them the server closed during the run.
    pub idle_sockets: usize,
    pub idle_closed_by_server: u64,
}

#[derive(Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn loadgen(args: LoadgenArgs) -> Result<()> {
    let url = reqwest::Url::parse(&args.url).map_err(|e| crate::usage(format!("--url {}: {e}", args.url)))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !loopback {
        return Err(crate::usage(format!(
            "loadgen only targets this machine (127.0.0.1, ::1 or localhost), not {url}"
        )));
    }
    let probe = photo(args.probe.as_deref(), DEFAULT_PROBE)?;
    let large = if args.large_every > 0 {
        let img = image::load_from_memory(&probe).context("--probe")?.into_rgb8();
        let s = args.large_side as f64 / img.width().max(img.height()) as f64;
        let (w, h) = ((img.width() as f64 * s) as u32, (img.height() as f64 * s) as u32);
        let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
        let mut png = Vec::new();
        big.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
        png
    } else {
        Vec::new()
    };
    let reference = photo(args.reference.as_deref(), DEFAULT_REFERENCE)?;
    facegate_server::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let report = runtime.block_on(run(&args, url, probe, reference, large))?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

/// Keep `n` connections to `addr` open and idle until `stop`; returns how many the server
/// closed.
async fn hold_idle(addr: std::net::SocketAddr, n: usize, stop: tokio::sync::watch::Receiver<bool>) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let closed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (mut stop, closed) = (stop.clone(), closed.clone());
            tokio::spawn(async move {
                while !*stop.borrow() {
                    let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await else {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    };
                    let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\n").await;
                    let mut buf = [0u8; 512];
                    tokio::select! {
                        _ = tcp.read(&mut buf) => { closed.fetch_add(1, std::sync::atomic::Ordering::Relaxed); }
                        _ = stop.changed() => return,
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    closed.load(std::sync::atomic::Ordering::Relaxed)
}

async fn run(
    args: &LoadgenArgs,
    base: reqwest::Url,
    probe: Vec<u8>,
    reference: Vec<u8>,
    large: Vec<u8>,
) -> Result<Report> {
    if !args.timeout.is_finite() || args.timeout <= 0.0 {
        return Err(crate::usage("--timeout must be positive"));
    }
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency as usize)
        // Close an idle connection before the other side does (HAProxy's keep-alive timeout
        // in deploy/ is 5 s, the service's 10 s): a request sent on a connection the server is
        // closing at that moment fails without an answer, and a POST is not retried.
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(Duration::from_secs_f64(args.timeout))
        .build()?;
    let verify = base.join("/v1/verify")?;
    let metrics_url = base.join("/metrics")?;
    let before = scrape(&http, &metrics_url, args.api_key.as_deref()).await?;
    let clients = Arc::new(Semaphore::new(args.concurrency as usize));
    let (probe, reference, large) = (Arc::new(probe), Arc::new(reference), Arc::new(large));
    let (stop_idle, idle_stop) = tokio::sync::watch::channel(false);
    let idle = match args.idle_sockets {
        0 => None,
        n => {
            let addr = (base.socket_addrs(|| None)?.into_iter().next()).context("resolving --url")?;
            Some(tokio::spawn(hold_idle(addr, n, idle_stop)))
        }
    };
    let priority = if args.bulk { "bulk" } else { "interactive" };
    let start = Instant::now();
    let stop_at = start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::new();
    for i in 0..args.requests {
        let scheduled = match args.rate {
            Some(rate) => start + Duration::from_secs_f64(i as f64 / rate),
            None => Instant::now(),
        };
        if scheduled >= stop_at {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let permit = clients.clone().acquire_owned().await?;
        let is_large = args.large_every > 0 && i % args.large_every == args.large_every - 1;
        let (http, url, p, r, key) = (
            http.clone(),
            verify.clone(),
            if is_large { large.clone() } else { probe.clone() },
            reference.clone(),
            args.api_key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let form = reqwest::multipart::Form::new()
                .part("probe", reqwest::multipart::Part::bytes(p.to_vec()).file_name("probe"))
                .part(
                    "reference",
                    reqwest::multipart::Part::bytes(r.to_vec()).file_name("reference"),
                )
                .text("priority", priority);
            let mut req = http.post(url).multipart(form);
            if let Some(k) = key {
                req = req.bearer_auth(k);
            }
            let mut request_id = String::new();
            let status = match req.send().await {
                Ok(resp) => {
                    let s = resp.status().as_u16().to_string();
                    if let Some(id) = resp.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
                        request_id = id.to_string();
                    }
                    match resp.bytes().await {
                        Ok(_) => s,
                        Err(e) if e.is_timeout() => "timeout".to_string(),
                        Err(_) => "transport_error".to_string(),
                    }
                }
                Err(e) if e.is_timeout() => "timeout".to_string(),
                Err(e) if e.is_connect() => "connect_error".to_string(),
                Err(_) => "transport_error".to_string(),
            };
            drop(permit);
            Outcome {
                n: i,
                scheduled_s: (scheduled - start).as_secs_f64(),
                latency: scheduled.elapsed(),
                status,
                request_id,
                large: is_large,
            }
        }));
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut status: BTreeMap<String, u64> = BTreeMap::new();
    let mut large_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut log = match &args.log {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
            let mut w = std::io::BufWriter::new(f);
            writeln!(w, "n,scheduled_s,latency_ms,status,request_id")?;
            Some(w)
        }
        None => None,
    };
    for t in tasks {
        let o = t.await?;
        if o.status == "200" {
            latency.record(o.latency.as_micros() as u64)?;
        }
        if let Some(w) = log.as_mut() {
            let ms = o.latency.as_secs_f64() * 1e3;
            writeln!(w, "{},{:.6},{ms:.3},{},{}", o.n, o.scheduled_s, o.status, o.request_id)?;
        }
        if o.large {
            *large_status.entry(o.status.clone()).or_default() += 1;
        }
        *status.entry(o.status).or_default() += 1;
    }
    if let Some(mut w) = log {
        w.flush()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    let _ = stop_idle.send(true);
    let idle_closed_by_server = match idle {
        Some(t) => t.await?,
        None => 0,
    };
    let after = scrape(&http, &metrics_url, args.api_key.as_deref()).await?;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0.0) - before.get(k).copied().unwrap_or(0.0);
    let batches = delta("facegate_batch_size_count");
    // The histogram's buckets as the service exports them, in order of their bounds.
    let prefix = "facegate_batch_size_bucket{le=\"";
    let mut bounds: Vec<(f64, &str)> = after
        .keys()
        .filter_map(|k| {
            let le = k.strip_prefix(prefix)?.strip_suffix("\"}")?;
            Some((if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? }, le))
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut below = 0.0;
    let batch_buckets = bounds
        .into_iter()
        .map(|(_, le)| {
            let cumulative = delta(&format!("{prefix}{le}\"}}"));
            let n = (cumulative - below).round() as u64;
            below = cumulative;
            (format!("le_{le}"), n)
        })
        .collect();
    let ok = status.get("200").copied().unwrap_or(0);
    let q = |p: f64| latency.value_at_quantile(p) as f64 / 1e3;
    Ok(Report {
        url: base.to_string(),
        mode: if args.rate.is_some() { "open" } else { "closed" }.into(),
        concurrency: args.concurrency as usize,
        offered_rate: args.rate,
        requests: status.values().sum(),
        seconds,
        throughput: ok as f64 / seconds,
        status,
        latency_ms: Percentiles {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
            max: latency.max() as f64 / 1e3,
        },
        batches: batches.round() as u64,
        mean_batch: if batches > 0.0 {
            delta("facegate_batch_size_sum") / batches
        } else {
            0.0
        },
        batch_buckets,
        large_requests: large_status.values().sum(),
        large_status,
        idle_sockets: args.idle_sockets,
        idle_closed_by_server,
    })
}

/// Metric samples by series name (labels included), from the text exposition format.
async fn scrape(http: &reqwest::Client, url: &reqwest::Url, key: Option<&str>) -> Result<BTreeMap<String, f64>> {
    let mut req = http.get(url.clone());
    // With keys configured, /metrics needs one as the API does.
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    let text = req
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}

fn print_report(r: &Report) {
    let rate = r
        .offered_rate
        .map_or("closed loop".to_string(), |x| format!("{x}/s offered"));
    println!(
        "load:        {} requests, {} clients, {rate}, {:.1} s",
        r.requests, r.concurrency, r.seconds
    );
    println!("throughput:  {:.2} verifications/s", r.throughput);
    println!(
        "latency:     p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        r.latency_ms.p50, r.latency_ms.p95, r.latency_ms.p99, r.latency_ms.max
    );
    println!("status:      {:?}", r.status);
    if r.large_requests > 0 {
        println!("large:       {} requests {:?}", r.large_requests, r.large_status);
    }
    if r.idle_sockets > 0 {
        println!(
            "idle:        {} sockets held, {} closed by the server",
            r.idle_sockets, r.idle_closed_by_server
        );
    }
    println!(
        "batches:     {} (mean size {:.2}) {:?}",
        r.batches, r.mean_batch, r.batch_buckets
    );
}
