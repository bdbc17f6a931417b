//! Dynamic batching for the verification service.
//!
//! Requests arrive one by one from many clients; the device is only fast on batches. A request
//! goes through three stages, each owned by one place:
//!
//! 1. **prepare** (decode, on a CPU pool sized to the cores) in the submitting task, so images
//!    for the next batch are decoded while the device runs the current one;
//! 2. **queue**: a task that owns the two priority queues and forms a batch when the device is
//!    idle and either `max_batch` requests wait or the oldest has waited `max_delay` (Triton's
//!    dynamic batcher); it answers through each request's oneshot channel;
//! 3. **run**: one device thread that computes a batch at a time.
//!
//! Admission is bounded: at most `queue_capacity` requests, holding at most `max_queued_bytes`
//! between them, are accepted and unanswered at once; beyond that a request is refused at once
//! with [`ScheduleError::Overloaded`]. Every accepted
//! request gets exactly one answer, including during [`Scheduler::shutdown`].

mod budget;
mod engine;
mod metrics;

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};

pub use budget::{ByteBudget, ByteShare};
pub use engine::{EngineBackend, PairRequest, PreparedPair};
pub use metrics::Metrics;

/// The device stage and the CPU stage before it.
pub trait Backend: Send + Sync + 'static {
    type Request: Send + 'static;
    type Prepared: Send + 'static;
    type Response: Send + 'static;

    /// The bytes `request` will hold from admission to its answer (its input and what
    /// `prepare` makes of it), charged against `max_queued_bytes`; cheap (headers only).
    fn held_bytes(&self, request: &Self::Request) -> u64;

    /// CPU work for one request (decoding), run on the prepare pool.
    fn prepare(&self, request: Self::Request) -> Self::Prepared;

    /// One device batch; answers in input order. An `Err` or a panic fails the whole batch,
    /// after which each request is retried once on its own.
    fn run(&self, batch: &[&Self::Prepared]) -> Result<Vec<Self::Response>, String>;

    /// The `max_batch` used when the configuration leaves it at 0.
    fn preferred_max_batch(&self) -> usize;

    /// The `device_workers` used when the configuration leaves it at 0.
    fn preferred_device_workers(&self) -> usize {
        1
    }

    /// The `device_threads` used when the configuration leaves it at 0, given the number of
    /// device workers; 0 here: the workers share the process's compute pool.
    fn preferred_device_threads(&self, _device_workers: usize) -> usize {
        0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Largest device batch, in requests; 0 uses the backend's
    /// [`Backend::preferred_max_batch`].
    pub max_batch: usize,
    /// How long the oldest waiting request may wait for its batch to fill, in microseconds.
    pub max_delay_us: u64,
    /// Requests accepted and not yet answered, at most; more are refused as overloaded.
    pub queue_capacity: usize,
    /// Bytes those requests may hold between them ([`Backend::held_bytes`]: the encoded photos
    /// and their decoded working copies); a request that would pass it is refused as
    /// overloaded. One request larger than the whole budget is admitted only alone.
    pub max_queued_bytes: u64,
    /// Threads decoding images at once (0: one per core).
    pub prepare_workers: usize,
    /// Batches computed at once, each on a device thread of its own (0: the backend's
    /// [`Backend::preferred_device_workers`]). On the CPU backend two keep both cores busy
    /// through the networks' serial stretches.
    pub device_workers: usize,
    /// Compute threads of each device worker's own pool (rayon's, which the CPU kernels split
    /// their work on); 0: the backend's [`Backend::preferred_device_threads`], which on the CPU
    /// backend is the cores divided among the workers. With one shared pool a worker waits
    /// behind the other's work and the cores idled 11 % of the time (benches/README.md).
    pub device_threads: usize,
    /// Share of each batch kept for bulk requests while interactive ones are waiting too, so
    /// bulk work progresses under interactive load (0.25: one slot in four).
    pub bulk_share: f64,
    /// The hint given to refused clients (HTTP Retry-After), in milliseconds.
    pub retry_after_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch: 0,
            max_delay_us: 5_000,
            // At the 2-core CPU's rate (benches/README.md, "Service") 128 requests are at most
            // ~20 s of work: inside the server's 30 s default deadline.
            queue_capacity: 128,
            max_queued_bytes: 1 << 30,
            prepare_workers: 0,
            device_workers: 0,
            device_threads: 0,
            bulk_share: 0.25,
            retry_after_ms: 1_000,
        }
    }
}

impl SchedulerConfig {
    pub fn max_delay(&self) -> Duration {
        Duration::from_micros(self.max_delay_us)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.queue_capacity == 0 {
            return Err("queue_capacity must be at least 1".into());
        }
        if self.max_queued_bytes < 1 << 20 {
            return Err("max_queued_bytes must be at least 1 MiB".into());
        }
        if !(0.0..=1.0).contains(&self.bulk_share) {
            return Err("bulk_share must be between 0 and 1".into());
        }
        Ok(())
    }
}

/// Interactive counter checks go before bulk re-verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Interactive,
    Bulk,
}

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the service is overloaded; retry after {retry_after_ms} ms")]
    Overloaded { retry_after_ms: u64 },
    #[error("the request's deadline passed before it could be computed")]
    TimedOut,
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("the device failed on this request (tried twice): {0}")]
    Failed(String),
}

impl ScheduleError {
    /// Every code [`ScheduleError::code`] gives.
    pub const CODES: [&str; 4] = ["overloaded", "timed_out", "shutting_down", "device_failed"];

    pub fn code(&self) -> &'static str {
        match self {
            Self::Overloaded { .. } => "overloaded",
            Self::TimedOut => "timed_out",
            Self::ShuttingDown => "shutting_down",
            Self::Failed(_) => "device_failed",
        }
    }
}

/// A computed answer and how it was batched.
#[derive(Debug)]
pub struct Outcome<R> {
    pub response: R,
    /// Requests in the device batch that computed it.
    pub batch_size: usize,
    /// Time spent in the prepare stage and waiting in the queue.
    pub prepare_ms: f64,
    pub queue_ms: f64,
}

type Answer<R> = Result<Outcome<R>, ScheduleError>;

struct Job<B: Backend> {
    prepared: B::Prepared,
    priority: Priority,
    deadline: Option<Instant>,
    enqueued: Instant,
    prepare_ms: f64,
    answer: oneshot::Sender<Answer<B::Response>>,
    // Returned when the job is dropped, i.e. answered: admission counts unanswered requests
    // and the bytes they hold.
    _admitted: Admitted,
    _bytes: ByteShare,
}

/// A place in the queue, counted while held. The count, not the semaphore's free permits, is
/// what `in_flight` reports: while `shutdown` drains, its own `acquire_many` collects the
/// permits as they come back, so the free count reads zero with few requests left.
struct Admitted {
    _permit: OwnedSemaphorePermit,
    count: Arc<AtomicUsize>,
}

impl Admitted {
    fn new(permit: OwnedSemaphorePermit, count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self {
            _permit: permit,
            count: count.clone(),
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<B: Backend> Job<B> {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }

    /// Send the answer, after giving back the job's places and bytes (and its pixels): a
    /// client that has its answer finds them free.
    fn reply(self, answer: Answer<B::Response>) {
        let Self {
            answer: tx,
            prepared,
            _admitted,
            _bytes,
            ..
        } = self;
        drop((prepared, _admitted, _bytes));
        let _ = tx.send(answer);
    }
}

enum Msg<B: Backend> {
    Job(Job<B>),
    Stop,
}

struct Batch<B: Backend> {
    jobs: Vec<Job<B>>,
    // Held while the device computes: the queue only forms a batch when the device is idle.
    _device: OwnedSemaphorePermit,
}

/// A handle to the scheduler; clones share it.
pub struct Scheduler<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Scheduler<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B: Backend> {
    backend: Arc<B>,
    config: SchedulerConfig,
    admission: Arc<Semaphore>,
    /// Requests holding a place (see [`Admitted`]).
    admitted: Arc<AtomicUsize>,
    /// `max_queued_bytes`.
    bytes: ByteBudget,
    prepare: Arc<Semaphore>,
    jobs: mpsc::UnboundedSender<Msg<B>>,
    closing: AtomicBool,
    closing_tx: watch::Sender<bool>,
    device_threads: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    metrics: Metrics,
    /// The device's measured time per request (µs, a moving average; 0 until measured):
    /// what admission estimates a newcomer's wait from.
    service_us: Arc<AtomicU64>,
    /// The same for decoding (µs of one worker per request), and the workers: large photos
    /// make this stage the slower one.
    prepare_us: AtomicU64,
    prepare_workers: u64,
}

impl<B: Backend> Scheduler<B> {
    /// Start the queue task (on the current tokio runtime) and the device threads.
    pub fn start(backend: B, mut config: SchedulerConfig, metrics: Metrics) -> Result<Self, String> {
        config.validate()?;
        if config.max_batch == 0 {
            config.max_batch = backend.preferred_max_batch().max(1);
        }
        if config.device_workers == 0 {
            config.device_workers = backend.preferred_device_workers().max(1);
        }
        if config.device_threads == 0 {
            config.device_threads = backend.preferred_device_threads(config.device_workers);
        }
        let backend = Arc::new(backend);
        let workers = match config.prepare_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (batch_tx, batch_rx) = mpsc::channel::<Batch<B>>(1);
        // The device threads take batches in turn from one channel.
        let batch_rx = Arc::new(std::sync::Mutex::new(batch_rx));
        let (closing_tx, closing_rx) = watch::channel(false);
        let service_us = Arc::new(AtomicU64::new(0));
        let devices = (0..config.device_workers)
            .map(|i| {
                let (backend, metrics, service_us, batches) =
                    (backend.clone(), metrics.clone(), service_us.clone(), batch_rx.clone());
                let pool = match config.device_threads {
                    0 => None,
                    n => Some(
                        rayon::ThreadPoolBuilder::new()
                            .num_threads(n)
                            // Not `facegate-device-…`: Linux keeps 15 characters of a
                            // thread's name, and tools count device workers by that prefix.
                            .thread_name(move |t| format!("facegate-compute-{i}.{t}"))
                            .build()
                            .map_err(|e| format!("device worker {i}'s compute pool: {e}"))?,
                    ),
                };
                std::thread::Builder::new()
                    .name(format!("facegate-device-{i}"))
                    .spawn(move || match pool {
                        // Everything the batch splits (burn's and our kernels' parallel loops)
                        // runs on this worker's own threads.
                        Some(pool) => pool.install(|| device_loop(&*backend, &batches, &metrics, &service_us)),
                        None => device_loop(&*backend, &batches, &metrics, &service_us),
                    })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let queue = Queue {
            high: VecDeque::new(),
            low: VecDeque::new(),
            bulk_credit: 0.0,
            config: config.clone(),
            metrics: metrics.clone(),
        };
        tokio::spawn(queue.run(jobs_rx, batch_tx, closing_rx));
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                admission: Arc::new(Semaphore::new(config.queue_capacity)),
                admitted: Arc::new(AtomicUsize::new(0)),
                bytes: ByteBudget::new(config.max_queued_bytes),
                prepare: Arc::new(Semaphore::new(workers)),
                config,
                jobs: jobs_tx,
                closing: AtomicBool::new(false),
                closing_tx,
                device_threads: std::sync::Mutex::new(devices),
                metrics,
                service_us,
                prepare_us: AtomicU64::new(0),
                prepare_workers: workers as u64,
            }),
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.inner.config
    }

    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Requests accepted and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.inner.admitted.load(Ordering::SeqCst)
    }

    /// Bytes the accepted, unanswered requests are charged for (KiB granularity).
    pub fn held_bytes(&self) -> u64 {
        self.inner.bytes.held()
    }

    /// The metrics in Prometheus' text format, with the in-flight gauges read from admission.
    pub fn render_metrics(&self) -> String {
        self.inner.metrics.set_in_flight(self.in_flight(), self.held_bytes());
        self.inner.metrics.render()
    }

    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::SeqCst)
    }

    /// Run one request through the stages. Refused at once when the queue is full or the
    /// service is shutting down; answered `TimedOut` without computing it when `deadline`
    /// passes before its batch runs.
    pub async fn submit(
        &self,
        request: B::Request,
        priority: Priority,
        deadline: Option<Instant>,
    ) -> Result<Outcome<B::Response>, ScheduleError> {
        self.recorded(self.run_stages(request, priority, deadline, Admission::Now).await)
    }

    /// [`Self::submit`] for a job of its own (batch files): waits for room in the queue, by
    /// count and by bytes, instead of being refused; never `Overloaded`.
    pub async fn submit_waiting(
        &self,
        request: B::Request,
        priority: Priority,
    ) -> Result<Outcome<B::Response>, ScheduleError> {
        self.recorded(self.run_stages(request, priority, None, Admission::Wait).await)
    }

    /// Count `result` by its outcome, and pass it on.
    fn recorded(
        &self,
        result: Result<Outcome<B::Response>, ScheduleError>,
    ) -> Result<Outcome<B::Response>, ScheduleError> {
        self.inner.metrics.record_outcome(match &result {
            Ok(_) => "ok",
            Err(e) => e.code(),
        });
        result
    }

    async fn run_stages(
        &self,
        request: B::Request,
        priority: Priority,
        deadline: Option<Instant>,
        admission: Admission,
    ) -> Result<Outcome<B::Response>, ScheduleError> {
        let inner = &self.inner;
        if self.is_closing() {
            return Err(ScheduleError::ShuttingDown);
        }
        let overloaded = ScheduleError::Overloaded {
            retry_after_ms: inner.config.retry_after_ms,
        };
        let size = inner.backend.held_bytes(&request);
        // A place first (counted in flight from then on, as it is held), then the bytes.
        let admitted = match admission {
            Admission::Now => (inner.admission.clone().try_acquire_owned()).map_err(|_| overloaded.clone())?,
            // Closed by `shutdown`: a request still waiting then is refused.
            Admission::Wait => {
                (inner.admission.clone().acquire_owned().await).map_err(|_| ScheduleError::ShuttingDown)?
            }
        };
        let admitted = Admitted::new(admitted, &inner.admitted);
        let bytes = match admission {
            Admission::Now => inner.bytes.try_take(size).ok_or(overloaded)?,
            Admission::Wait => inner.bytes.take(size).await.ok_or(ScheduleError::ShuttingDown)?,
        };

        // Shed load early: a request that the work already admitted ahead of it would keep
        // past its deadline is refused now, with the time the queue needs, rather than
        // accepted only to expire.
        // Per request: the device's time plus the decoders' share. On the CPU backend both
        // run on the same cores; where they overlap (a GPU) this errs on the side of refusing.
        let per = inner.service_us.load(Ordering::Relaxed) / inner.config.device_workers as u64
            + inner.prepare_us.load(Ordering::Relaxed) / inner.prepare_workers;
        if let Some(deadline) = deadline {
            let ahead = self.in_flight() as u64;
            let wait = Duration::from_micros(per * ahead);
            let now = Instant::now();
            if deadline <= now {
                return Err(ScheduleError::TimedOut);
            }
            if per > 0 && now + wait > deadline {
                return Err(ScheduleError::Overloaded {
                    retry_after_ms: (wait.as_millis() as u64).max(inner.config.retry_after_ms),
                });
            }
        }
        let start = Instant::now();
        let worker = inner.prepare.clone().acquire_owned().await.expect("never closed");
        let backend = inner.backend.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let _worker = worker;
            let t = Instant::now();
            let prepared = catch_unwind(AssertUnwindSafe(|| backend.prepare(request)));
            (prepared, t.elapsed().as_micros() as u64)
        })
        .await
        .map(|(prepared, took_us)| {
            average_into(&inner.prepare_us, took_us.max(1));
            prepared
        })
        .map_err(|e| ScheduleError::Failed(format!("prepare task: {e}")))?
        .map_err(|p| ScheduleError::Failed(panic_message(&p)))?;
        let prepare_ms = ms(start);
        inner.metrics.stage("prepare", prepare_ms);

        let enqueued = Instant::now();
        if deadline.is_some_and(|d| d <= enqueued) {
            return Err(ScheduleError::TimedOut);
        }
        let (tx, rx) = oneshot::channel();
        let job = Job {
            prepared,
            priority,
            deadline,
            enqueued,
            prepare_ms,
            answer: tx,
            _admitted: admitted,
            _bytes: bytes,
        };
        inner
            .jobs
            .send(Msg::Job(job))
            .map_err(|_| ScheduleError::ShuttingDown)?;
        rx.await
            .unwrap_or_else(|_| Err(ScheduleError::Failed("the request was dropped unanswered".into())))
    }

    /// Stop accepting, answer everything already accepted, then stop the queue and the device
    /// thread. Returns when every accepted request has its answer.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.closing.store(true, Ordering::SeqCst);
        let _ = inner.closing_tx.send(true);
        // Every accepted request holds one permit until it is answered.
        let all = inner.config.queue_capacity as u32;
        let _permits = inner.admission.acquire_many(all).await.expect("never closed");
        inner.admission.close();
        inner.bytes.close();
        let _ = inner.jobs.send(Msg::Stop);
        let handles = std::mem::take(&mut *inner.device_threads.lock().expect("not poisoned"));
        for h in handles {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// Fold `sample` into a moving average over about the last five (the first sample sets it);
/// atomic, as several device threads report at once.
fn average_into(avg: &AtomicU64, sample: u64) {
    let _ = avg.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
        Some(if old == 0 { sample } else { (4 * old + sample) / 5 })
    });
}

/// Whether a request without room in the queue is refused or waits for it.
#[derive(Clone, Copy)]
enum Admission {
    Now,
    Wait,
}

/// The queue task's state: it alone touches the queues.
struct Queue<B: Backend> {
    high: VecDeque<Job<B>>,
    low: VecDeque<Job<B>>,
    /// Bulk slots owed (fractional), accrued while bulk requests wait.
    bulk_credit: f64,
    config: SchedulerConfig,
    metrics: Metrics,
}

impl<B: Backend> Queue<B> {
    async fn run(
        mut self,
        mut jobs: mpsc::UnboundedReceiver<Msg<B>>,
        batches: mpsc::Sender<Batch<B>>,
        mut closing: watch::Receiver<bool>,
    ) {
        let device_idle = Arc::new(Semaphore::new(self.config.device_workers));
        loop {
            // Take everything that has arrived before deciding, so arrivals never starve dispatch.
            loop {
                match jobs.try_recv() {
                    Ok(Msg::Job(job)) => self.push(job),
                    Ok(Msg::Stop) | Err(mpsc::error::TryRecvError::Disconnected) => return,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                }
            }
            self.drop_expired(Instant::now());
            let waiting = self.high.len() + self.low.len();
            self.metrics.queued.set(waiting as i64);
            let oldest = self.oldest();
            let due_at = oldest.map(|t| t + self.config.max_delay());
            let due = waiting > 0
                && (waiting >= self.config.max_batch
                    || *closing.borrow()
                    || due_at.is_some_and(|t| t <= Instant::now()));
            tokio::select! {
                msg = jobs.recv() => match msg {
                    Some(Msg::Job(job)) => self.push(job),
                    Some(Msg::Stop) | None => return,
                },
                permit = device_idle.clone().acquire_owned(), if due => {
                    let permit = permit.expect("never closed");
                    let jobs = self.take_batch();
                    if !jobs.is_empty() && batches.send(Batch { jobs, _device: permit }).await.is_err() {
                        return;
                    }
                },
                _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now).into()), if waiting > 0 && !due => {},
                _ = closing.changed(), if !*closing.borrow() => {},
            }
        }
    }

    fn push(&mut self, job: Job<B>) {
        match job.priority {
            Priority::Interactive => self.high.push_back(job),
            Priority::Bulk => self.low.push_back(job),
        }
    }

    fn oldest(&self) -> Option<Instant> {
        [self.high.front(), self.low.front()]
            .into_iter()
            .flatten()
            .map(|j| j.enqueued)
            .min()
    }

    /// Answer, without computing, every waiting request whose deadline has passed.
    fn drop_expired(&mut self, now: Instant) {
        for q in [&mut self.high, &mut self.low] {
            if q.iter().any(|j| j.expired(now)) {
                *q = time_out_expired(q.drain(..), now).into();
            }
        }
    }

    /// Interactive requests first, except for the bulk share (carried over between batches, so
    /// even a batch size of one gives bulk work its turn).
    fn take_batch(&mut self) -> Vec<Job<B>> {
        let max = self.config.max_batch;
        let mut bulk_slots = 0;
        if !self.low.is_empty() && !self.high.is_empty() {
            self.bulk_credit = (self.bulk_credit + max as f64 * self.config.bulk_share).min(max as f64);
            bulk_slots = (self.bulk_credit.floor() as usize).min(self.low.len());
            self.bulk_credit -= bulk_slots as f64;
        }
        let n_high = self.high.len().min(max - bulk_slots);
        let n_low = self.low.len().min(max - n_high);
        let mut batch: Vec<Job<B>> = self.high.drain(..n_high).collect();
        batch.extend(self.low.drain(..n_low));
        batch
    }
}

fn device_loop<B: Backend>(
    backend: &B,
    batches: &std::sync::Mutex<mpsc::Receiver<Batch<B>>>,
    metrics: &Metrics,
    service_us: &AtomicU64,
) {
    loop {
        // The lock is held only while waiting for the next batch, not while computing it.
        let next = batches.lock().expect("not poisoned").blocking_recv();
        let Some(batch) = next else { break };
        let now = Instant::now();
        let live = time_out_expired(batch.jobs.into_iter(), now);
        if live.is_empty() {
            continue;
        }
        metrics.batch_size.observe(live.len() as f64);
        for job in &live {
            metrics.stage("queue", (now - job.enqueued).as_secs_f64() * 1e3);
        }
        let start = Instant::now();
        let inputs: Vec<&B::Prepared> = live.iter().map(|j| &j.prepared).collect();
        let result = attempt(backend, &inputs);
        metrics.stage("compute", ms(start));
        let size = live.len();
        // Time per request, averaged over the last ~5 batches.
        let per = (start.elapsed().as_micros() as u64 / size as u64).max(1);
        average_into(service_us, per);
        match result {
            Ok(responses) => {
                for (job, response) in live.into_iter().zip(responses) {
                    answer(job, Ok(response), size, now);
                }
            }
            Err(error) => {
                // The batch failed as a whole: retry each request once on its own, so one bad
                // input (or a device hiccup on a large batch) fails at most itself.
                metrics.batch_failures.inc();
                tracing::warn!(batch = size, %error, "device batch failed; retrying its requests one by one");
                for job in live {
                    let retried = attempt(backend, &[&job.prepared]).map(|mut r| r.remove(0));
                    answer(job, retried.map_err(ScheduleError::Failed), 1, now);
                }
            }
        }
    }
}

/// Answer `TimedOut`, without computing them, the jobs whose deadline has passed; the rest.
fn time_out_expired<B: Backend>(jobs: impl Iterator<Item = Job<B>>, now: Instant) -> Vec<Job<B>> {
    let (expired, live): (Vec<_>, Vec<_>) = jobs.partition(|j| j.expired(now));
    for job in expired {
        job.reply(Err(ScheduleError::TimedOut));
    }
    live
}

fn attempt<B: Backend>(backend: &B, inputs: &[&B::Prepared]) -> Result<Vec<B::Response>, String> {
    match catch_unwind(AssertUnwindSafe(|| backend.run(inputs))) {
        Ok(Ok(r)) if r.len() == inputs.len() => Ok(r),
        Ok(Ok(r)) => Err(format!("{} answers for {} requests", r.len(), inputs.len())),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(panic_message(&panic)),
    }
}

fn answer<B: Backend>(job: Job<B>, result: Result<B::Response, ScheduleError>, batch_size: usize, started: Instant) {
    let queue_ms = (started - job.enqueued).as_secs_f64() * 1e3;
    let prepare_ms = job.prepare_ms;
    job.reply(result.map(|response| Outcome {
        response,
        batch_size,
        prepare_ms,
        queue_ms,
    }));
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panic: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panic: {s}")
    } else {
        "panic".into()
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
