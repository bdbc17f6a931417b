//! The scheduler's guarantees, with a recording backend whose device stage can be held shut,
//! slowed down or made to fail; one test runs the real engine.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use facegate_scheduler::{Backend, Metrics, Priority, ScheduleError, Scheduler, SchedulerConfig};

#[derive(Default)]
struct Recorder {
    /// The ids of each batch the device ran, in order.
    batches: Mutex<Vec<Vec<u32>>>,
    /// While false, the device stage blocks.
    open: Mutex<bool>,
    opened: Condvar,
    delay: Duration,
    /// Ids that make any batch they are in fail; `always` ones fail alone too.
    poison: Vec<u32>,
    always: Vec<u32>,
    /// Up to this much more delay per batch, varying with its first id.
    jitter_ms: u64,
    /// Up to this much delay in preparing each request, varying with its id.
    prepare_jitter_ms: u64,
    /// Batches being computed now, and the most at once.
    running: std::sync::atomic::AtomicUsize,
    most_running: std::sync::atomic::AtomicUsize,
    /// Per batch: the compute pool's size and the thread's name where it ran.
    pools: Mutex<Vec<(usize, String)>>,
}

impl Recorder {
    fn open() -> Self {
        Self {
            open: Mutex::new(true),
            ..Default::default()
        }
    }
}

struct Shared(Arc<Recorder>);

impl Backend for Shared {
    type Request = u32;
    type Prepared = u32;
    type Response = u32;

    /// Ids from 1000 on stand for large requests: id − 1000 MiB.
    fn held_bytes(&self, request: &u32) -> u64 {
        if *request >= 1000 {
            (*request as u64 - 1000) << 20
        } else {
            1024
        }
    }

    fn prepare(&self, request: u32) -> u32 {
        let jitter = (request as u64).wrapping_mul(40_503) % (self.0.prepare_jitter_ms + 1);
        std::thread::sleep(Duration::from_millis(jitter));
        request
    }

    fn preferred_max_batch(&self) -> usize {
        8
    }

    fn run(&self, batch: &[&u32]) -> Result<Vec<u32>, String> {
        let r = &self.0;
        let mut open = r.open.lock().unwrap();
        while !*open {
            open = r.opened.wait(open).unwrap();
        }
        drop(open);
        use std::sync::atomic::Ordering::SeqCst;
        let now = r.running.fetch_add(1, SeqCst) + 1;
        r.most_running.fetch_max(now, SeqCst);
        let jitter = (**batch.first().unwrap() as u64).wrapping_mul(2_654_435_761) % (r.jitter_ms + 1);
        std::thread::sleep(r.delay + Duration::from_millis(jitter));
        r.running.fetch_sub(1, SeqCst);
        let name = std::thread::current().name().unwrap_or("").to_string();
        r.pools.lock().unwrap().push((rayon::current_num_threads(), name));
        let ids: Vec<u32> = batch.iter().map(|&&i| i).collect();
        r.batches.lock().unwrap().push(ids.clone());
        if ids.iter().any(|i| r.always.contains(i)) {
            return Err("device error".into());
        }
        if ids.len() > 1 && ids.iter().any(|i| r.poison.contains(i)) {
            panic!("simulated device fault");
        }
        Ok(ids.iter().map(|i| i * 10).collect())
    }
}

fn config(max_batch: usize, max_delay_ms: u64, capacity: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_batch,
        max_delay_us: max_delay_ms * 1000,
        queue_capacity: capacity,
        ..Default::default()
    }
}

fn start(recorder: &Arc<Recorder>, config: SchedulerConfig) -> Scheduler<Shared> {
    Scheduler::start(Shared(recorder.clone()), config, Metrics::new()).unwrap()
}

fn set_open(r: &Recorder, open: bool) {
    *r.open.lock().unwrap() = open;
    r.opened.notify_all();
}

/// Wait until `n` requests are accepted (prepared or queued), so tests do not race admission.
async fn until_in_flight(s: &Scheduler<Shared>, n: usize) {
    let start = Instant::now();
    while s.in_flight() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "only {} of {n} accepted",
            s.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_batch_goes_without_waiting_for_the_delay() {
    let r = Arc::new(Recorder::open());
    let s = start(&r, config(4, 60_000, 64));
    let t = Instant::now();
    let answers = futures(&s, 0..4, Priority::Interactive).await;
    assert!(t.elapsed() < Duration::from_secs(10), "waited for max_delay");
    for (i, a) in answers.iter().enumerate() {
        let o = a.as_ref().unwrap();
        assert_eq!(o.response, i as u32 * 10);
        assert_eq!(o.batch_size, 4);
    }
    assert_eq!(r.batches.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partial_batch_goes_when_its_oldest_request_has_waited_max_delay() {
    let r = Arc::new(Recorder::open());
    let s = start(&r, config(64, 150, 64));
    let t = Instant::now();
    let answers = futures(&s, 0..3, Priority::Interactive).await;
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(150),
        "dispatched after {waited:?}, before max_delay"
    );
    assert!(waited < Duration::from_secs(5));
    let batches = r.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "{batches:?}");
    assert_eq!(batches[0].len(), 3);
    assert!(answers.iter().all(|a| a.as_ref().unwrap().batch_size == 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_fill_while_the_device_is_busy() {
    let r = Arc::new(Recorder::default()); // device held shut
    let s = start(&r, config(8, 1, 64));
    let first = spawn(&s, 100, Priority::Interactive, None);
    // Taken off the queue: the device is busy with it.
    until_in_flight(&s, 1).await;
    while s.metrics().queued.get() > 0 || s.metrics().batch_size.get_sample_count() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // max_delay (1 ms) passes many times over while the device is busy: the arrivals wait for
    // it and go as one batch, not as eight.
    let rest: Vec<_> = (0..8).map(|i| spawn(&s, i, Priority::Interactive, None)).collect();
    until_in_flight(&s, 9).await;
    while s.metrics().queued.get() < 8 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    set_open(&r, true);
    assert_eq!(first.await.unwrap().unwrap().batch_size, 1);
    for h in rest {
        assert_eq!(h.await.unwrap().unwrap().batch_size, 8);
    }
    assert_eq!(r.batches.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_refuses_at_once_and_loses_nothing() {
    let r = Arc::new(Recorder::default()); // device held shut
    let s = start(&r, config(2, 1, 4));
    let held: Vec<_> = (0..4).map(|i| spawn(&s, i, Priority::Interactive, None)).collect();
    until_in_flight(&s, 4).await;
    let t = Instant::now();
    let refused = s.submit(99, Priority::Interactive, None).await;
    assert!(t.elapsed() < Duration::from_millis(500), "refusal was not immediate");
    assert_eq!(
        refused.unwrap_err(),
        ScheduleError::Overloaded {
            retry_after_ms: SchedulerConfig::default().retry_after_ms
        }
    );
    set_open(&r, true);
    for (i, h) in held.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap().response, i as u32 * 10);
    }
    // Capacity is back once the held requests are answered.
    assert_eq!(s.submit(7, Priority::Interactive, None).await.unwrap().response, 70);
    assert!(!r.batches.lock().unwrap().iter().flatten().any(|&i| i == 99));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_request_is_answered_timed_out_and_never_computed() {
    let r = Arc::new(Recorder::default());
    let s = start(&r, config(1, 1, 16));
    let blocker = spawn(&s, 1, Priority::Interactive, None);
    until_in_flight(&s, 1).await;
    let deadline = Instant::now() + Duration::from_millis(100);
    let late = spawn(&s, 2, Priority::Interactive, Some(deadline));
    tokio::time::sleep(Duration::from_millis(300)).await;
    set_open(&r, true);
    assert_eq!(late.await.unwrap().unwrap_err(), ScheduleError::TimedOut);
    assert!(blocker.await.unwrap().is_ok());
    let computed: Vec<u32> = r.batches.lock().unwrap().iter().flatten().copied().collect();
    assert_eq!(computed, vec![1], "the expired request reached the device");
    // Already expired on arrival: refused without being queued.
    let past = Instant::now() - Duration::from_millis(1);
    assert_eq!(
        s.submit(3, Priority::Interactive, Some(past)).await.unwrap_err(),
        ScheduleError::TimedOut
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interactive_goes_first_but_bulk_is_not_starved() {
    let r = Arc::new(Recorder::default());
    // One request per batch, so the order of batches is the order of service.
    let s = start(&r, config(1, 1, 64));
    let blocker = spawn(&s, 0, Priority::Interactive, None);
    until_in_flight(&s, 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut handles = Vec::new();
    for i in 1..=4 {
        handles.push(spawn(&s, 1000 + i, Priority::Bulk, None));
    }
    for i in 1..=16 {
        handles.push(spawn(&s, i, Priority::Interactive, None));
    }
    until_in_flight(&s, 21).await;
    while s.metrics().queued.get() < 20 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    set_open(&r, true);
    for h in handles {
        h.await.unwrap().unwrap();
    }
    blocker.await.unwrap().unwrap();
    let order: Vec<u32> = r.batches.lock().unwrap().iter().flatten().copied().collect();
    let pos = |id: u32| order.iter().position(|&x| x == id).unwrap();
    // Interactive first...
    assert!(order[1] < 1000, "{order:?}");
    // ...but with the default share of 1/4, the bulk requests are served while 16
    // interactive ones still wait, not after all of them.
    let last_bulk = (1001..=1004).map(pos).max().unwrap();
    let last_interactive = (1..=16).map(pos).max().unwrap();
    assert!(last_bulk < last_interactive, "bulk starved: {order:?}");
    // And interactive requests keep most of the device: at least 3 of every 4 early slots.
    let first_eight_bulk = order[1..9].iter().filter(|&&x| x > 1000).count();
    assert!(first_eight_bulk <= 2, "{order:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_is_retried_per_request_and_only_the_bad_one_fails() {
    let r = Arc::new(Recorder {
        poison: vec![3],
        always: vec![5],
        ..Recorder::default()
    });
    // Dispatched only when all six wait, so the first batch holds them all.
    let s = start(&r, config(6, 60_000, 64));
    let handles: Vec<_> = (1..=6).map(|i| spawn(&s, i, Priority::Interactive, None)).collect();
    // The device has taken the batch (and is held shut).
    while s.metrics().batch_size.get_sample_count() == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    set_open(&r, true);
    for (i, h) in (1..=6).zip(handles) {
        match (i, h.await.unwrap()) {
            (5, Err(ScheduleError::Failed(msg))) => assert!(msg.contains("device error")),
            (5, other) => panic!("request 5 should fail, got {other:?}"),
            (i, Ok(o)) => assert_eq!(o.response, i * 10),
            (i, Err(e)) => panic!("request {i} failed: {e}"),
        }
    }
    // The first batch held all six; each was retried once on its own.
    let batches = r.batches.lock().unwrap().clone();
    assert_eq!(batches[0].len(), 6, "{batches:?}");
    assert_eq!(batches.len(), 7, "{batches:?}");
    assert_eq!(s.metrics().batch_failures.get(), 1);
    // The service stays up.
    for a in futures(&s, 11..17, Priority::Interactive).await {
        assert!(a.unwrap().response >= 110);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_answers_everything_accepted_and_refuses_new_work() {
    let r = Arc::new(Recorder {
        delay: Duration::from_millis(20),
        ..Recorder::open()
    });
    let s = start(&r, config(4, 50, 256));
    let handles = spawn_mixed(&s, 0..40);
    until_in_flight(&s, 1).await;
    s.shutdown().await;
    let mut accepted = 0;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(o) => {
                assert_eq!(o.response, i as u32 * 10);
                accepted += 1;
            }
            // Submitted after shutdown began: refused, not lost.
            Err(ScheduleError::ShuttingDown) => {}
            Err(e) => panic!("request {i}: {e}"),
        }
    }
    assert!(accepted >= 1);
    let computed: Vec<u32> = r.batches.lock().unwrap().iter().flatten().copied().collect();
    assert_eq!(computed.len(), accepted, "each accepted request computed exactly once");
    assert_eq!(s.in_flight(), 0);
    assert_eq!(
        s.submit(1, Priority::Interactive, None).await.unwrap_err(),
        ScheduleError::ShuttingDown
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_flight_while_draining_counts_the_requests_not_the_queue() {
    // The device is held shut: four requests stay accepted while shutdown waits for them.
    let r = Arc::new(Recorder::default());
    let s = start(&r, config(8, 1, 256));
    let handles: Vec<Handle> = (0..4).map(|i| spawn(&s, i, Priority::Interactive, None)).collect();
    until_in_flight(&s, 4).await;
    let draining = {
        let s = s.clone();
        tokio::spawn(async move { s.shutdown().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.is_closing());
    assert_eq!(
        s.in_flight(),
        4,
        "shutdown's wait for the places is not requests in flight"
    );
    assert!(s.render_metrics().contains("facegate_requests_in_flight 4"));
    set_open(&r, true);
    draining.await.unwrap();
    for h in handles {
        h.await.unwrap().unwrap();
    }
    assert_eq!(s.in_flight(), 0);
}

type Handle = tokio::task::JoinHandle<Result<facegate_scheduler::Outcome<u32>, ScheduleError>>;

/// Submit on a task of its own, so the test goes on while the request waits.
fn spawn(s: &Scheduler<Shared>, id: u32, p: Priority, deadline: Option<Instant>) -> Handle {
    let s = s.clone();
    tokio::spawn(async move { s.submit(id, p, deadline).await })
}

/// Submit `ids`, every third as bulk, each on a task of its own.
fn spawn_mixed(s: &Scheduler<Shared>, ids: std::ops::Range<u32>) -> Vec<Handle> {
    ids.map(|i| {
        let p = if i % 3 == 0 {
            Priority::Bulk
        } else {
            Priority::Interactive
        };
        spawn(s, i, p, None)
    })
    .collect()
}

async fn futures(
    s: &Scheduler<Shared>,
    ids: std::ops::Range<u32>,
    p: Priority,
) -> Vec<Result<facegate_scheduler::Outcome<u32>, ScheduleError>> {
    let handles: Vec<_> = ids.map(|i| spawn(s, i, p, None)).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Load is shed at admission: once the device's time per request is measured, a request the
/// queue ahead of it would keep past its deadline is refused at once (429 with the time the
/// queue needs), so no accepted request expires waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_the_queue_would_keep_past_their_deadline_are_refused_at_once() {
    let r = Arc::new(Recorder {
        open: Mutex::new(true),
        delay: Duration::from_millis(40),
        ..Default::default()
    });
    let s = start(&r, config(1, 1, 64));
    // Measure the device: a few requests one by one.
    for i in 0..3 {
        s.submit(i, Priority::Interactive, None).await.unwrap();
    }
    // 30 at once, each with 400 ms to live: about ten fit.
    let deadline = Instant::now() + Duration::from_millis(400);
    let t = Instant::now();
    let handles: Vec<_> = (100..130)
        .map(|i| spawn(&s, i, Priority::Interactive, Some(deadline)))
        .collect();
    let (mut ok, mut refused, mut expired) = (0, 0, 0);
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(ScheduleError::Overloaded { retry_after_ms }) => {
                assert!(retry_after_ms >= 100, "retry after {retry_after_ms} ms");
                refused += 1
            }
            Err(ScheduleError::TimedOut) => expired += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    eprintln!("ok {ok}, refused {refused}, expired {expired} in {:?}", t.elapsed());
    assert!(ok >= 5, "ok {ok}");
    assert!(refused >= 10, "refused {refused}");
    assert!(expired <= 1, "{expired} accepted requests expired waiting");
}

/// Admission counts bytes as well as requests: large requests are refused once the ones
/// accepted hold `max_queued_bytes`, small ones still fit, and every byte is given back when
/// the answers go out. A request larger than the whole budget goes through only alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admission_counts_the_bytes_requests_hold() {
    let r = Arc::new(Recorder::default()); // device held shut
    let s = start(
        &r,
        SchedulerConfig {
            max_queued_bytes: 100 << 20,
            ..config(4, 1, 64)
        },
    );
    let held: Vec<_> = [1040, 1041]
        .iter()
        .map(|&i| spawn(&s, i, Priority::Interactive, None))
        .collect();
    until_in_flight(&s, 2).await;
    assert_eq!(s.held_bytes(), 81 << 20);
    let refused = s.submit(1040, Priority::Interactive, None).await;
    assert!(matches!(refused, Err(ScheduleError::Overloaded { .. })), "{refused:?}");
    let small = spawn(&s, 5, Priority::Interactive, None);
    until_in_flight(&s, 3).await;
    assert_eq!(s.held_bytes(), (81 << 20) + 1024);
    // Larger than the whole budget: refused while anything is held…
    let huge = s.submit(1500, Priority::Interactive, None).await;
    assert!(matches!(huge, Err(ScheduleError::Overloaded { .. })), "{huge:?}");
    set_open(&r, true);
    for (h, id) in held.into_iter().zip([1040, 1041]) {
        assert_eq!(h.await.unwrap().unwrap().response, id * 10);
    }
    assert_eq!(small.await.unwrap().unwrap().response, 50);
    assert_eq!(s.held_bytes(), 0);
    // …and admitted alone.
    assert_eq!(
        s.submit(1500, Priority::Interactive, None).await.unwrap().response,
        15000
    );
    assert_eq!(s.held_bytes(), 0);
    assert!(
        r.batches
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .filter(|&&i| i == 1040)
            .count()
            == 1
    );
}

/// A batch job waits for room instead of being refused: requests past the byte budget queue
/// up behind it and are all answered once the device frees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waiting_submit_queues_for_bytes_instead_of_failing() {
    let r = Arc::new(Recorder::default()); // device held shut
    let s = start(
        &r,
        SchedulerConfig {
            max_queued_bytes: 100 << 20,
            ..config(1, 1, 64)
        },
    );
    let jobs: Vec<_> = [1040, 1040, 1042]
        .into_iter()
        .map(|id| {
            let s = s.clone();
            tokio::spawn(async move { s.submit_waiting(id, Priority::Bulk).await })
        })
        .collect();
    until_in_flight(&s, 3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The third waits (reserving what is free), never past the budget.
    assert_eq!(s.held_bytes(), 100 << 20);
    set_open(&r, true);
    let mut answers: Vec<u32> = Vec::new();
    for j in jobs {
        answers.push(j.await.unwrap().unwrap().response);
    }
    assert_eq!(answers, vec![10400, 10400, 10420]);
}

/// Several batches in flight (three device threads, batches of varying length): every request
/// gets its own answer exactly once, whatever order the batches finish in, and the threads do
/// compute at the same time.
/// Each device worker computes on a pool of its own, of `device_threads` threads: a batch runs
/// on one of its worker's compute threads and splits its work over that pool, never over
/// another worker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_worker_computes_on_its_own_pool() {
    let r = Arc::new(Recorder::open());
    let s = start(
        &r,
        SchedulerConfig {
            device_workers: 2,
            device_threads: 3,
            ..config(2, 1, 64)
        },
    );
    for h in spawn_mixed(&s, 0..40) {
        h.await.unwrap().unwrap();
    }
    let pools = r.pools.lock().unwrap();
    assert!(!pools.is_empty());
    for (threads, name) in pools.iter() {
        assert_eq!(*threads, 3, "pool size seen by a batch on {name}");
        assert!(name.starts_with("facegate-compute-"), "batch ran on {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_in_flight_answer_every_request_once() {
    let r = Arc::new(Recorder {
        open: Mutex::new(true),
        delay: Duration::from_millis(2),
        jitter_ms: 15,
        prepare_jitter_ms: 6,
        ..Default::default()
    });
    // Both stages take random times, so requests leave preparation and batches leave the
    // device out of order; each answer must still reach its own request.
    let s = start(
        &r,
        SchedulerConfig {
            device_workers: 3,
            prepare_workers: 3,
            ..config(4, 1, 256)
        },
    );
    let handles = spawn_mixed(&s, 0..200);
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap().response, i as u32 * 10);
    }
    let mut computed: Vec<u32> = r.batches.lock().unwrap().iter().flatten().copied().collect();
    computed.sort_unstable();
    assert_eq!(
        computed,
        (0..200).collect::<Vec<_>>(),
        "each request computed exactly once"
    );
    let most = r.most_running.load(std::sync::atomic::Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} batches at once");
    assert_eq!(s.in_flight(), 0);
}
