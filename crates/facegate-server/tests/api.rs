//! The HTTP API end to end on 127.0.0.1 with the real engine (CPU): answers agree with the
//! engine, every answer matches the OpenAPI document, bad requests get typed errors.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use facegate_core::Config;
use facegate_pipeline::{DeviceChoice, Engine};
use facegate_server::{ClientKey, OPENAPI, Service, ServiceConfig, hash_key, install_crypto_provider};
use reqwest::StatusCode;
use serde_json::{Value, json};

const KEY: &str = "carrier-a-secret-key";

fn bytes(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data").join(name)).unwrap()
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn config() -> ServiceConfig {
    let mut c = ServiceConfig::default();
    c.server.bind = "127.0.0.1:0".into();
    c.server.max_body_bytes = 4 << 20;
    c.server.max_batch_pairs = 4;
    c.server.clients = vec![ClientKey {
        id: "carrier-a".into(),
        key_sha256: hash_key(KEY),
    }];
    c
}

async fn start(config: ServiceConfig) -> Service {
    install_crypto_provider();
    let engine = Engine::new(config.engine.clone(), DeviceChoice::Cpu).unwrap();
    Service::start(config, engine).await.unwrap()
}

/// Validates a JSON value against a schema of the OpenAPI document.
struct Schemas(Value);

impl Schemas {
    fn load() -> Self {
        Self(serde_json::from_str(OPENAPI).unwrap())
    }

    fn check(&self, name: &str, value: &Value) {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}"), "components": self.0["components"] });
        let v = jsonschema::validator_for(&schema).unwrap();
        let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{value:#}");
    }
}

/// POST a multipart (probe, reference) pair with the test key.
async fn post_pair(http: &reqwest::Client, url: &str, probe: &[u8], reference: &[u8]) -> reqwest::Response {
    http.post(url)
        .bearer_auth(KEY)
        .multipart(multipart(probe, reference))
        .send()
        .await
        .unwrap()
}

fn multipart(probe: &[u8], reference: &[u8]) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("probe", reqwest::multipart::Part::bytes(probe.to_vec()).file_name("p"))
        .part(
            "reference",
            reqwest::multipart::Part::bytes(reference.to_vec()).file_name("r"),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_answers_equal_the_engine_and_match_the_schema() {
    let service = start(config()).await;
    let url = format!("http://{}/v1/verify", service.addr);
    let http = reqwest::Client::new();
    let schemas = Schemas::load();
    let direct = Engine::new(Config::default(), DeviceChoice::Cpu).unwrap();
    for (p, r) in [
        ("face-a.png", "exif-rotated.jpg"),
        ("face-a.png", "face-c.png"),
        ("no-face.png", "face-a.png"),
    ] {
        let want = direct.verify(&[(&bytes(p), &bytes(r))]).remove(0);
        let by_form = post_pair(&http, &url, &bytes(p), &bytes(r)).await;
        assert_eq!(by_form.status(), StatusCode::OK);
        assert!(by_form.headers().contains_key("x-request-id"));
        let by_form: Value = by_form.json().await.unwrap();
        let by_json: Value = http
            .post(&url)
            .header("x-api-key", KEY)
            .json(&json!({ "probe": b64(&bytes(p)), "reference": b64(&bytes(r)), "priority": "bulk" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for got in [&by_form, &by_json] {
            schemas.check("VerifyResponse", got);
            assert_eq!(got["decision"], serde_json::to_value(want.decision).unwrap(), "{p} {r}");
            match want.score {
                Some(s) => assert!((got["score"].as_f64().unwrap() - s as f64).abs() < 1e-4),
                None => assert!(got["score"].is_null()),
            }
            let codes: Vec<&str> = want.reasons.iter().map(|r| r.code.as_str()).collect();
            let got_codes: Vec<&str> = got["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["code"].as_str().unwrap())
                .collect();
            assert_eq!(got_codes, codes);
        }
    }
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_typed_errors() {
    let service = start(config()).await;
    let base = format!("http://{}", service.addr);
    let url = format!("{base}/v1/verify");
    let http = reqwest::Client::new();
    let schemas = Schemas::load();
    let face = bytes("face-a.png");

    let mut cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            "missing part",
            http.post(&url).bearer_auth(KEY).multipart(
                reqwest::multipart::Form::new().part("probe", reqwest::multipart::Part::bytes(face.clone())),
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown part",
            http.post(&url)
                .bearer_auth(KEY)
                .multipart(multipart(&face, &face).text("selfie", "x")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "wrong content type",
            http.post(&url)
                .bearer_auth(KEY)
                .header("content-type", "text/plain")
                .body("hello"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "no content type",
            http.post(&url).bearer_auth(KEY).body(face.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "invalid base64",
            http.post(&url)
                .bearer_auth(KEY)
                .json(&json!({ "probe": "not base64!!", "reference": b64(&face) })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "malformed JSON",
            http.post(&url)
                .bearer_auth(KEY)
                .header("content-type", "application/json")
                .body("{\"probe\": "),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown JSON field",
            http.post(&url)
                .bearer_auth(KEY)
                .json(&json!({ "probe": b64(&face), "reference": b64(&face), "selfie": "" })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "unknown API key",
            http.post(&url)
                .bearer_auth("carrier-a-secret-kez")
                .multipart(multipart(&face, &face)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "a known key beside an unknown one",
            http.post(&url)
                .bearer_auth("carrier-a-secret-kez")
                .header("x-api-key", KEY)
                .multipart(multipart(&face, &face)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "no API key",
            http.post(&url).multipart(multipart(&face, &face)),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "deadline of 0 ms",
            http.post(&url)
                .bearer_auth(KEY)
                .json(&json!({ "probe": b64(&face), "reference": b64(&face), "deadline_ms": 0 })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "deadline under the floor",
            http.post(&url).bearer_auth(KEY).json(
                &json!({ "probe": b64(&face), "reference": b64(&face), "deadline_ms": facegate_server::MIN_DEADLINE_MS - 1 }),
            ),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "null deadline",
            http.post(&url)
                .bearer_auth(KEY)
                .json(&json!({ "probe": b64(&face), "reference": b64(&face), "deadline_ms": null })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "fractional deadline",
            http.post(&url)
                .bearer_auth(KEY)
                .multipart(multipart(&face, &face).text("deadline_ms", "2.5")),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "batch over the limit",
            http.post(format!("{url}/batch")).bearer_auth(KEY).json(&json!({
                "pairs": (0..5).map(|_| json!({ "probe": "", "reference": "" })).collect::<Vec<_>>()
            })),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
    ];
    for (name, req, status, code) in cases.drain(..) {
        let resp = req.send().await.unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert_eq!(resp.status(), status, "{name}");
        let body: Value = resp.json().await.unwrap();
        schemas.check("ErrorResponse", &body);
        assert_eq!(body["error"]["code"], code, "{name}: {body}");
    }

    // An oversized body is refused from its Content-Length, before a byte of it is sent.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(service.addr).await.unwrap();
        let head = format!(
            "POST /v1/verify HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            5 << 20
        );
        tcp.write_all(head.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("answered without waiting for the body")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        // The documented JSON error, as every other refusal.
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        schemas.check("ErrorResponse", &body);
        assert_eq!(body["error"]["code"], "payload_too_large");
    }

    // JSON Schema counts 5000.0 as an integer: accepted as a deadline, as 5000 is.
    for deadline in [json!(5000.0), json!("5000")] {
        let multipart_form =
            multipart(&face, &face).text("deadline_ms", deadline.to_string().trim_matches('"').to_string());
        let resp = http
            .post(&url)
            .bearer_auth(KEY)
            .multipart(multipart_form)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "multipart deadline {deadline}");
    }
    let resp = (http.post(&url).bearer_auth(KEY))
        .json(&json!({ "probe": b64(&face), "reference": b64(&face), "deadline_ms": 5000.0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);

    // Bytes that are not an image are a verification answer, not a transport error: the
    // person is told which photo to retake.
    let resp = post_pair(&http, &url, b"GIF89a this is no face", &face).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    schemas.check("VerifyResponse", &v);
    assert_eq!(v["decision"], "rejected");
    assert_eq!(v["reasons"][0]["role"], "probe");
    assert_eq!(v["reasons"][0]["code"], "unsupported_format");

    // The service is still up and answering.
    let ok = post_pair(&http, &url, &face, &face).await;
    assert_eq!(ok.status(), StatusCode::OK);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_answers_each_pair_in_order_and_fails_items_alone() {
    let service = start(config()).await;
    let http = reqwest::Client::new();
    let (a, rotated, c) = (bytes("face-a.png"), bytes("exif-rotated.jpg"), bytes("face-c.png"));
    let body = json!({ "pairs": [
        { "id": "same", "probe": b64(&a), "reference": b64(&rotated) },
        { "id": "bad-base64", "probe": "%%%", "reference": b64(&a) },
        { "id": "different", "probe": b64(&a), "reference": b64(&c) },
    ]});
    let resp = http
        .post(format!("http://{}/v1/verify/batch", service.addr))
        .bearer_auth(KEY)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    Schemas::load().check("BatchResponse", &v);
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["id"], "same");
    assert_eq!(r[0]["verification"]["decision"], "match");
    assert_eq!(r[1]["error"]["code"], "bad_request");
    assert_eq!(r[2]["verification"]["decision"], "no_match");
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_describes_exactly_the_served_routes() {
    let service = start(config()).await;
    let base = format!("http://{}", service.addr);
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc, serde_json::from_str::<Value>(OPENAPI).unwrap());
    let schemas = Schemas::load();
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 8);
    // What client generators need: image parts as binary files, and a server to call.
    let parts = &paths["/v1/verify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"];
    assert!(["probe", "reference"].iter().all(|p| parts[p]["format"] == "binary"));
    assert!(doc["servers"][0]["url"].as_str().is_some_and(|u| u.starts_with("http")));
    for (path, ops) in paths {
        for method in ["get", "post", "put", "delete"] {
            let resp = http
                .request(method.to_uppercase().parse().unwrap(), format!("{base}{path}"))
                .bearer_auth(KEY)
                .send()
                .await
                .unwrap();
            match ops.get(method) {
                // Routed: never "not found" or "method not allowed"; documented status.
                Some(op) => {
                    let status = resp.status();
                    assert!(
                        op["responses"].get(status.as_str()).is_some(),
                        "{method} {path}: {status} not documented"
                    );
                    if let Some(schema) =
                        op["responses"][status.as_str()]["content"]["application/json"]["schema"]["$ref"].as_str()
                    {
                        let body: Value = resp.json().await.unwrap();
                        schemas.check(schema.rsplit('/').next().unwrap(), &body);
                    }
                }
                // Refused in the documented envelope, like every other 4xx.
                None => {
                    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                    let body: Value = resp.json().await.unwrap();
                    schemas.check("ErrorResponse", &body);
                    assert_eq!(body["error"]["code"], "method_not_allowed");
                }
            }
        }
    }
    // An undocumented path is not served, and says so in the envelope.
    let resp = http.get(format!("{base}/v1/identify")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    schemas.check("ErrorResponse", &body);
    assert_eq!(body["error"]["code"], "not_found");
    // Liveness under the name other servers use too.
    let health = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    service.shutdown().await;
}

/// sha256 (hex) of every file under `dir`, recursively.
fn file_hashes(dir: &std::path::Path, out: &mut Vec<String>) {
    use sha2::Digest;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            file_hashes(&path, out);
        } else {
            let digest = sha2::Sha256::digest(std::fs::read(&path).unwrap());
            out.push(digest.iter().map(|b| format!("{b:02x}")).collect());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn info_names_the_shipped_files_the_threshold_and_the_limits() {
    let service = start(config()).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/info", service.addr);
    assert_eq!(http.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let info: Value = http
        .get(&url)
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Schemas::load().check("Info", &info);
    // Every model listed is a file we ship, by its bytes' hash (computed here, not read
    // from the cards), and the pipeline has a detector and an embedder.
    let mut shipped = Vec::new();
    file_hashes(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models"),
        &mut shipped,
    );
    let models = info["models"].as_array().unwrap();
    for m in models {
        assert!(shipped.contains(&m["sha256"].as_str().unwrap().to_string()), "{m}");
    }
    let tasks: Vec<&str> = models.iter().map(|m| m["task"].as_str().unwrap()).collect();
    assert!(tasks.contains(&"detector") && tasks.contains(&"embedder"), "{tasks:?}");
    // The same facts the engine decides with, and the limits this configuration set.
    let engine = service.state.scheduler.backend().engine();
    assert_eq!(info["threshold"].as_f64().unwrap() as f32, engine.threshold());
    assert_eq!(info["model"], engine.model_version());
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["limits"]["max_body_bytes"], 4 << 20);
    assert_eq!(info["limits"]["max_batch_pairs"], 4);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_with_retry_after_and_metrics_count_it() {
    let mut c = config();
    c.scheduler.queue_capacity = 2;
    c.scheduler.max_batch = 1;
    let service = start(c).await;
    let url = format!("http://{}/v1/verify", service.addr);
    let http = reqwest::Client::new();
    let (a, b) = (Arc::new(bytes("face-a.png")), Arc::new(bytes("face-b.png")));
    let handles: Vec<_> = (0..12)
        .map(|_| {
            let (http, url, a, b) = (http.clone(), url.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let resp = post_pair(&http, &url, &a, &b).await;
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                (resp.status(), retry)
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for h in handles {
        match h.await.unwrap() {
            (StatusCode::OK, _) => ok += 1,
            (StatusCode::TOO_MANY_REQUESTS, Some(r)) => {
                assert_eq!(r, "1");
                refused += 1
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ok >= 2 && refused >= 1, "ok {ok}, refused {refused}");
    // With keys configured, the counters are not open to whoever can connect.
    let anonymous = http
        .get(format!("http://{}/metrics", service.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let metrics = http
        .get(format!("http://{}/metrics", service.addr))
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The sum of every series starting with `prefix` (one series when labels are given).
    let sum = |prefix: &str| -> f64 {
        let values: Vec<f64> = metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(!values.is_empty(), "{prefix} missing:\n{metrics}");
        values.iter().sum()
    };
    assert_eq!(
        sum("facegate_scheduler_requests_total{outcome=\"overloaded\"}"),
        refused as f64
    );
    assert_eq!(sum("facegate_scheduler_requests_total{outcome=\"ok\"}"), ok as f64);
    assert_eq!(sum("facegate_batch_size_count"), ok as f64);
    let decisions = sum("facegate_decisions_total{");
    assert_eq!(decisions, ok as f64);
    // Responses by route and status: the route's template, the statuses each one answered.
    let route = |status: &str| format!("facegate_http_responses_total{{route=\"/v1/verify\",status=\"{status}\"}}");
    assert_eq!(sum(&route("200")), ok as f64);
    assert_eq!(sum(&route("429")), refused as f64);
    // The anonymous scrape above was refused and counted; this one is counted after it renders.
    assert_eq!(
        sum("facegate_http_responses_total{route=\"/metrics\",status=\"401\"}"),
        1.0
    );
    // Known labels are there before their first event.
    assert_eq!(
        sum("facegate_rejections_total{reason=\"document_portrait_too_small\"}"),
        0.0
    );
    assert_eq!(sum("facegate_scheduler_requests_total{outcome=\"device_failed\"}"), 0.0);
    assert_eq!(
        sum("facegate_http_responses_total{route=\"/v1/verify/batch\",status=\"413\"}"),
        0.0
    );
    assert_eq!(sum("facegate_stage_seconds_count{stage=\"prepare\"}"), ok as f64);
    // What is running, and the process itself.
    let engine = service.state.scheduler.backend().engine();
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let build = format!(
        "facegate_build_info{{profile=\"{profile}\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sum(&build), 1.0);
    assert_eq!(sum("facegate_model_info{"), engine.model_cards().len() as f64);
    for card in engine.model_cards() {
        assert!(
            metrics.contains(&format!("sha256=\"{}\"", card.sha256)),
            "{}",
            card.name
        );
    }
    assert!(sum("process_resident_memory_bytes") > 1e6);
    assert!(sum("process_open_fds") >= 3.0);
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serves_https_when_a_certificate_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key_pem).unwrap();
    let mut c = config();
    c.server.tls = Some(facegate_server::TlsConfig {
        cert: dir.path().join("cert.pem"),
        key: dir.path().join("key.pem"),
    });
    let service = start(c).await;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let port = service.addr.port();
    let body = http
        .get(format!("https://localhost:{port}/healthz"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "ok");
    // Plain HTTP to the TLS port gets no answer.
    assert!(reqwest::get(format!("http://localhost:{port}/healthz")).await.is_err());
    service.shutdown().await;
}

/// Read until the server closes `stream`; returns what it sent and the time since `start` (when
/// the connection was opened: the server's timers start at its accept, which is later, so a
/// lower bound on this time is sound however slowly the test itself runs).
async fn until_closed(
    stream: &mut tokio::net::TcpStream,
    start: std::time::Instant,
    limit: std::time::Duration,
) -> (Vec<u8>, std::time::Duration) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("still open after {limit:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// Every socket an outsider opens is bounded in time and number: a silent connection, a head
/// sent a byte at a time, an idle kept-alive connection and a stalled body are cut off within
/// the configured times, connections beyond the cap are closed at once, and normal requests
/// keep being answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_silent_and_surplus_connections_are_cut_off() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let ms = std::time::Duration::from_millis;
    let mut c = config();
    c.server.header_read_timeout_ms = 600;
    c.server.body_read_timeout_ms = 900;
    c.server.max_connections = 6;
    let service = start(c).await;
    let addr = service.addr;
    let http = reqwest::Client::new();
    let healthy = |http: reqwest::Client| async move {
        let r = http.get(format!("http://{addr}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    };

    // Upper bounds leave room for a loaded machine (the whole suite runs in parallel on two
    // cores); without the timeouts these connections would stay open for ever.
    let now = std::time::Instant::now;
    // A connection that sends nothing.
    let silent_at = now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A request head trickled a byte every 100 ms: it never completes.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let trickle = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(100)).await;
        }
        panic!("the server read a whole trickled head");
    });
    // A kept-alive connection that goes idle after one answered request.
    let idle_at = now();
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // A body that declares a megabyte and stalls after 10 bytes.
    let stalled_at = now();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!(
                "POST /v1/verify HTTP/1.1\r\nHost: x\r\nx-api-key: {KEY}\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{{\"probe\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // Normal requests are answered meanwhile.
    healthy(http.clone()).await;

    let (_, t) = until_closed(&mut silent, silent_at, ms(6000)).await;
    assert!(t >= ms(550) && t < ms(4000), "silent connection closed after {t:?}");
    let (answer, t) = until_closed(&mut idle, idle_at, ms(6000)).await;
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(t < ms(4000), "idle kept-alive connection closed after {t:?}");
    let (answer, t) = until_closed(&mut stalled, stalled_at, ms(6000)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408") && answer.contains("request_timeout"),
        "{answer}"
    );
    assert!(t < ms(4500), "stalled body answered after {t:?}");
    tokio::time::timeout(ms(6000), trickle)
        .await
        .expect("trickled head cut off")
        .unwrap();

    // Six connections are the cap: of seven silent ones, exactly one (whichever the server
    // accepts last) is closed at once; the others wait out the header timeout.
    let mut watchers = Vec::new();
    for _ in 0..7 {
        let opened = now();
        let mut conn = TcpStream::connect(addr).await.unwrap();
        watchers.push(tokio::spawn(async move {
            until_closed(&mut conn, opened, ms(6000)).await.1
        }));
    }
    let mut times = Vec::new();
    for w in watchers {
        times.push(w.await.unwrap());
    }
    times.sort();
    // Within the cap, none can close before the 600 ms header timeout after its accept.
    assert!(
        times[0] < ms(450),
        "no connection over the cap was closed at once: {times:?}"
    );
    assert!(
        times[1] >= ms(550),
        "more than one connection refused under a cap of 6: {times:?}"
    );
    healthy(http).await;
}

/// Fair share: with two carriers, one's flood takes at most its share of the queue; the
/// other's requests, sent during the flood, are all accepted and answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_clients_flood_leaves_the_others_share_of_the_queue() {
    let mut c = config();
    c.scheduler.queue_capacity = 8;
    c.scheduler.max_batch = 1;
    c.server.client_share = 0.5;
    c.server.clients.push(ClientKey {
        id: "carrier-b".into(),
        key_sha256: hash_key("key-b"),
    });
    let service = start(c).await;
    let url = format!("http://{}/v1/verify", service.addr);
    let http = reqwest::Client::new();
    let (a, b) = (Arc::new(bytes("face-a.png")), Arc::new(bytes("face-b.png")));
    let send = |key: &'static str| {
        let (http, url, a, b) = (http.clone(), url.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let r = http
                .post(&url)
                .header("x-api-key", key)
                .multipart(multipart(&a, &b))
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            (status, body)
        })
    };
    let flood: Vec<_> = (0..16).map(|_| send(KEY)).collect();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let polite: Vec<_> = (0..4).map(|_| send("key-b")).collect();
    let (mut a_ok, mut a_refused) = (0, 0);
    for h in flood {
        let (status, body) = h.await.unwrap();
        match status {
            StatusCode::OK => a_ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(body["error"]["code"], "overloaded");
                a_refused += 1
            }
            other => panic!("carrier-a: {other} {body}"),
        }
    }
    for h in polite {
        let (status, body) = h.await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "carrier-b was refused during carrier-a's flood: {body}"
        );
    }
    // At most its 4 places at a time (a few more in total if answers came back during the flood).
    assert!(
        a_refused >= 6,
        "carrier-a took more than its share: {a_ok} ok, {a_refused} refused"
    );
}

/// The document served says what the configuration asks for: no authentication without keys,
/// `/metrics` open only when it is.
#[test]
fn the_served_document_states_the_configured_authentication() {
    let secured = |doc: &Value, path: &str, method: &str| {
        let op = &doc["paths"][path][method];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(secured, op["responses"]["401"].is_object(), "{path}");
        secured
    };
    let with_keys = config().server;
    let doc: Value = serde_json::from_str(&facegate_server::openapi_for(&with_keys)).unwrap();
    assert_eq!(doc, serde_json::from_str::<Value>(OPENAPI).unwrap());
    assert!(secured(&doc, "/v1/verify", "post") && secured(&doc, "/metrics", "get"));
    assert!(!secured(&doc, "/healthz", "get"));

    let metrics_open = facegate_server::HttpConfig {
        metrics_open: true,
        ..with_keys.clone()
    };
    let doc: Value = serde_json::from_str(&facegate_server::openapi_for(&metrics_open)).unwrap();
    assert!(secured(&doc, "/v1/verify/batch", "post") && !secured(&doc, "/metrics", "get"));

    let open = facegate_server::HttpConfig::default();
    let doc: Value = serde_json::from_str(&facegate_server::openapi_for(&open)).unwrap();
    for path in ["/v1/verify", "/v1/verify/batch"] {
        assert!(!secured(&doc, path, "post"));
    }
    assert!(!secured(&doc, "/metrics", "get"));
}
