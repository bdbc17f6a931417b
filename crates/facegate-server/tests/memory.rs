//! What large-but-legal photos make the service hold, in a process of its own so the peak
//! resident size (VmHWM) is this test's: a queued request holds its photos' working copies
//! (long side 2048), never the full decodes, and admission stops at `max_queued_bytes`.

use std::io::Cursor;
use std::path::Path;

use facegate_pipeline::{DeviceChoice, Engine};
use facegate_server::{Service, ServiceConfig, install_crypto_provider};
use reqwest::StatusCode;

/// A /proc/self/status field, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_photos_are_bounded_by_bytes() {
    install_crypto_provider();
    // face-a blown up to 4800² (23 MP, 69 MB decoded, ~1 MB as PNG): under max_pixels.
    let face = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/face-a.png")).unwrap();
    let small = image::load_from_memory(&face).unwrap().into_rgb8();
    let big = image::imageops::resize(&small, 4800, 4800, image::imageops::FilterType::Nearest);
    let mut png = Vec::new();
    big.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    drop(big);

    let mut config = ServiceConfig::default();
    config.server.bind = "127.0.0.1:0".into();
    config.scheduler.max_queued_bytes = 64 << 20;
    config.scheduler.prepare_workers = 2;
    let engine = Engine::new(config.engine.clone(), DeviceChoice::Cpu).unwrap();
    let service = Service::start(config.clone(), engine).await.unwrap();
    let url = format!("http://{}/v1/verify", service.addr);
    let http = reqwest::Client::new();
    // Warm up (the networks' buffers) before taking the baseline.
    let form = || {
        reqwest::multipart::Form::new()
            .part("probe", reqwest::multipart::Part::bytes(png.clone()))
            .part("reference", reqwest::multipart::Part::bytes(face.clone()))
    };
    assert_eq!(
        http.post(&url).multipart(form()).send().await.unwrap().status(),
        StatusCode::OK
    );
    let baseline = status_bytes("VmRSS:");

    // 16 at once: two photos each, 2 × 25 MB of working copies a pair if they were all kept.
    let sends: Vec<_> = (0..16)
        .map(|_| {
            let req = http.post(&url).multipart(form());
            tokio::spawn(async move { req.send().await })
        })
        .collect();
    let held = service.state.scheduler.clone();
    let watcher = tokio::spawn(async move {
        let mut most = 0;
        for _ in 0..400 {
            most = most.max(held.held_bytes());
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        most
    });
    let (mut ok, mut overloaded) = (0, 0);
    for s in sends {
        let resp = s.await.unwrap().unwrap();
        match resp.status() {
            StatusCode::OK => {
                let v: serde_json::Value = resp.json().await.unwrap();
                assert_eq!(v["decision"], "match", "{v}");
                // Reported in the large photo's pixels.
                assert!(
                    v["probe_face"]["width"].as_f64().unwrap()
                        > 4.0 * v["reference_face"]["width"].as_f64().unwrap() * 0.95
                );
                ok += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => overloaded += 1,
            s => panic!("{s}"),
        }
    }
    let most_held = watcher.await.unwrap();
    let peak = status_bytes("VmHWM:");
    eprintln!(
        "ok {ok}, 429 {overloaded}; most held {} MB; RSS baseline {} MB, peak {} MB",
        most_held >> 20,
        baseline >> 20,
        peak >> 20
    );
    assert!(ok >= 2 && overloaded >= 1, "ok {ok}, 429 {overloaded}");
    assert!(most_held <= 64 << 20, "held {most_held}");
    // The bound: max_queued_bytes, plus per prepare worker one full decode (69 MB) and its
    // reduction, plus the bodies being read (16 × 2 × 1 MB), plus the allocator's slack. Held
    // as full decodes, 16 pairs would be over 1 GB.
    let bound = (64 << 20) + 2 * ((69 + 13) << 20) + (32 << 20) + (150 << 20);
    assert!(
        peak < baseline + bound,
        "peak {} MB over a baseline of {} MB",
        peak >> 20,
        baseline >> 20
    );
    service.shutdown().await;
}
