//! The privacy promise, checked on the real binary: run `facegate serve`, send recognisable
//! images (a marker in a JPEG comment), stop it with SIGTERM mid-load, then search its log, its
//! output and every file it could have written for the images, their base64 and the face
//! descriptor. Also checks the graceful stop: every request sent gets an answer.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use common::data;

mod common;

/// face-a.jpg with a JPEG comment (COM) segment holding `marker`, right after SOI.
fn marked_jpeg(marker: &str) -> Vec<u8> {
    let jpeg = std::fs::read(data("face-a.jpg")).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let len = (marker.len() + 2) as u16;
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xFE];
    out.extend(len.to_be_bytes());
    out.extend(marker.as_bytes());
    out.extend(&jpeg[2..]);
    out
}

/// The non-overlapping `size`-byte windows of a secret, to find any stretch of it in a haystack.
struct Windows {
    size: usize,
    set: std::collections::HashSet<Vec<u8>>,
}

impl Windows {
    fn new(secret: &[u8], size: usize) -> Self {
        let set = secret.chunks_exact(size).map(|c| c.to_vec()).collect();
        Self { size, set }
    }

    fn found_in(&self, hay: &[u8]) -> bool {
        hay.windows(self.size).any(|w| self.set.contains(w))
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn nothing_biometric_reaches_logs_or_disk_and_sigterm_loses_nothing() {
    let bin = env!("CARGO_BIN_EXE_facegate");
    let marker = format!("FACEGATE-PRIVACY-MARKER-{}", std::process::id());
    let image = marked_jpeg(&marker);
    let dir = tempfile::tempdir().unwrap();
    let (work, tmp) = (dir.path().join("work"), dir.path().join("tmp"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let probe_path = dir.path().join("probe.jpg");
    std::fs::write(&probe_path, &image).unwrap();

    // The descriptor the service will compute for the image, to search for too.
    let embed = Command::new(bin)
        .args(["embed", "--json", "--device", "cpu"])
        .arg(&probe_path)
        .output()
        .unwrap();
    assert!(embed.status.success());
    let embedded: serde_json::Value = serde_json::from_slice(&embed.stdout).unwrap();
    let descriptor: Vec<String> = embedded["descriptor"]
        .as_array()
        .expect("the marked image has a face")
        .iter()
        .map(|v| (v.as_f64().unwrap() as f32).to_string())
        .filter(|s| s.len() >= 8) // long enough not to match a score by chance
        .collect();
    assert!(descriptor.len() > 64);
    std::fs::remove_file(&probe_path).unwrap();

    let config = dir.path().join("serve.toml");
    std::fs::write(
        &config,
        "[server]\nbind = \"127.0.0.1:0\"\n[scheduler]\nmax_batch = 4\n",
    )
    .unwrap();
    let log = work.join("serve.log");
    let mut child = Command::new(bin)
        .args(["serve", "--device", "cpu", "--config"])
        .arg(&config)
        .arg("--log-file")
        .arg(&log)
        .current_dir(&work)
        .env("TMPDIR", &tmp)
        .env("FACEGATE_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, seen, mut stderr) = common::until_listening(&mut child);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);
    facegate_server::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let statuses: Vec<u16> = runtime.block_on(async {
        let http = reqwest::Client::new();
        // A batch whose item id is client-chosen text (the marker): logged by our index only.
        let batch = http
            .post(format!("http://{addr}/v1/verify/batch"))
            .json(&serde_json::json!({ "pairs": [{ "id": format!("{marker}-item"), "probe": b64, "reference": b64 }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(batch.status(), 200);
        let url = format!("http://{addr}/v1/verify");
        let face_b = std::fs::read(data("face-b.png")).unwrap();
        let mut tasks = Vec::new();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for i in 0..24 {
            let (http, url, image, b64, face_b) =
                (http.clone(), url.clone(), image.clone(), b64.clone(), face_b.clone());
            let finished = done.clone();
            tasks.push(tokio::spawn(async move {
                let req = match i % 3 {
                    0 => http.post(&url).multipart(
                        reqwest::multipart::Form::new()
                            .part("probe", reqwest::multipart::Part::bytes(image))
                            .part("reference", reqwest::multipart::Part::bytes(face_b)),
                    ),
                    1 => http
                        .post(&url)
                        .json(&serde_json::json!({ "probe": b64, "reference": b64 })),
                    // A broken copy: the error path must not echo the bytes either.
                    _ => {
                        let half = base64::engine::general_purpose::STANDARD.encode(&image[..image.len() / 2]);
                        http.post(&url)
                            .json(&serde_json::json!({ "probe": half, "reference": b64 }))
                    }
                };
                let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                status
            }));
            if i == 12 {
                // Stop the service while requests are in flight, once one has been answered (on
                // a loaded machine a fixed pause could stop it before it accepted any).
                let deadline = std::time::Instant::now() + Duration::from_secs(60);
                while done.load(std::sync::atomic::Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .unwrap();
            }
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exited with {status}");
    // Every request sent before the stop was answered (200); later ones were answered 503 or
    // found the socket closed (0) — none was accepted and then dropped.
    let answered = statuses.iter().filter(|&&s| s == 200).count();
    assert!(answered >= 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| [200, 503, 0].contains(s)), "{statuses:?}");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();

    let log_text = std::fs::read_to_string(&log).unwrap();
    let verifications = log_text
        .lines()
        .filter(|l| l.contains("\"message\":\"verification\""))
        .count();
    // One line per answered verification, and one for the batch's pair, named by our index.
    assert_eq!(verifications, answered + 1, "one log line per answered verification");
    assert!(log_text.contains("\"item\":0"), "the batch pair's line names its index");
    for l in log_text.lines() {
        let line: serde_json::Value = serde_json::from_str(l).expect("every log line is JSON");
        // Decisions spelled as the API spells them, so one grep finds both.
        if let Some(d) = line["fields"]["decision"].as_str().or(line["decision"].as_str()) {
            assert!(["match", "no_match", "rejected"].contains(&d), "{l}");
        }
    }
    assert!(
        log_text.contains("\"decision\":\"match\""),
        "a match was logged as `match`"
    );

    let mut files = Vec::new();
    files_under(&work, &mut files);
    files_under(&tmp, &mut files);
    assert!(files.contains(&log));
    let mut haystacks: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    haystacks.push(("stderr".into(), format!("{seen}{rest}").into_bytes()));
    haystacks.push(("stdout".into(), stdout.into_bytes()));
    let hex: String = image.iter().map(|b| format!("{b:02x}")).collect();
    let base64_chunks = Windows::new(b64.as_bytes(), 24);
    let raw_chunks = Windows::new(&image, 16);
    let hex_chunks = Windows::new(hex.as_bytes(), 32);
    for (name, hay) in &haystacks {
        let text = String::from_utf8_lossy(hay);
        assert!(!text.contains(&marker), "{name} holds the image's marker");
        // Any 47 consecutive characters of the base64 (or 31 bytes, or 63 hex digits) contain
        // one whole window, wherever the leak starts.
        assert!(!base64_chunks.found_in(hay), "{name} holds part of the image's base64");
        assert!(!raw_chunks.found_in(hay), "{name} holds part of the image's bytes");
        assert!(
            !hex_chunks.found_in(&text.to_lowercase().into_bytes()),
            "{name} holds the image in hex"
        );
        for v in &descriptor {
            assert!(!text.contains(v.as_str()), "{name} holds a descriptor value ({v})");
        }
    }
}
