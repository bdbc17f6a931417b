//! The real engine behind the scheduler: concurrent requests batched together get the answers
//! the engine gives each pair alone, and bad photos fail only their own request.

use std::path::Path;

use facegate_core::{Config, Decision, ImageBytes};
use facegate_pipeline::{DeviceChoice, Engine};
use facegate_scheduler::{EngineBackend, Metrics, PairRequest, Priority, Scheduler, SchedulerConfig};

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batched_answers_equal_single_pair_answers() {
    let pairs = [
        ("face-a.png", "exif-rotated.jpg"),
        ("face-a.png", "face-b.png"),
        ("face-c.png", "face-d.png"),
        ("truncated.jpg", "face-a.png"),
        ("face-e.png", "no-face.png"),
        ("group-3.png", "face-a.png"),
        ("face-b.png", "face-b.png"),
        ("not-an-image.jpg", "empty.jpg"),
    ];
    let direct = Engine::new(Config::default(), DeviceChoice::Cpu).unwrap();
    let expected: Vec<_> = pairs
        .iter()
        .map(|(p, r)| direct.verify(&[(&bytes(p), &bytes(r))]).remove(0))
        .collect();
    let engine = Engine::new(Config::default(), DeviceChoice::Cpu).unwrap();
    let config = SchedulerConfig {
        max_batch: 8,
        max_delay_us: 200_000,
        ..Default::default()
    };
    let s = Scheduler::start(EngineBackend::new(engine), config, Metrics::new()).unwrap();
    let handles: Vec<_> = pairs
        .iter()
        .map(|(p, r)| {
            let s = s.clone();
            let req = PairRequest {
                probe: ImageBytes::new(bytes(p)),
                reference: ImageBytes::new(bytes(r)),
            };
            tokio::spawn(async move { s.submit(req, Priority::Interactive, None).await })
        })
        .collect();
    let mut batched = 0;
    for ((pair, want), h) in pairs.iter().zip(&expected).zip(handles) {
        let got = h.await.unwrap().unwrap();
        batched = batched.max(got.batch_size);
        let v = got.response;
        assert_eq!(v.decision, want.decision, "{pair:?}");
        let codes = |v: &facegate_core::Verification| v.reasons.iter().map(|r| r.code.clone()).collect::<Vec<_>>();
        assert_eq!(codes(&v), codes(want), "{pair:?}");
        match (v.score, want.score) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "{pair:?}: {a} vs {b}"),
            (a, b) => assert_eq!(a, b, "{pair:?}"),
        }
        assert!(v.timings.decode_ms > 0.0);
    }
    assert!(batched > 1, "requests were never batched together");
    // The fixtures cover each outcome, so equality above is not vacuous.
    let decisions: Vec<Decision> = expected.iter().map(|v| v.decision).collect();
    for d in [Decision::Match, Decision::NoMatch, Decision::Rejected] {
        assert!(decisions.contains(&d), "{decisions:?}");
    }
    s.shutdown().await;
}
