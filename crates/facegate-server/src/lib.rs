//! The facegate HTTP API: every carrier's verification requests go through the scheduler, which
//! batches them for the device.
//!
//! Routes: `POST /v1/verify` (multipart or JSON with base64 images), `POST /v1/verify/batch`,
//! `GET /info`, `GET /health(z)`, `GET /readyz`, `GET /metrics` (Prometheus), `GET /openapi.json`.
//! Nothing biometric is logged: log lines carry the request id, client id, decision, score,
//! timings and model version only.

pub mod config;
mod limits;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use facegate_core::{ImageBytes, Verification};
use facegate_pipeline::Engine;
use facegate_scheduler::{
    ByteBudget, ByteShare, EngineBackend, Metrics, PairRequest, Priority, ScheduleError, Scheduler,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use config::{ClientKey, HttpConfig, ServiceConfig, TlsConfig};

/// The OpenAPI 3.1 description of this API, as served with API keys configured (and
/// `/metrics` behind them); [`openapi_for`] gives the document a configuration serves.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The document as `http` serves it: without keys no operation asks for authentication, and
/// `/metrics` asks for it only when it is behind the keys.
pub fn openapi_for(http: &HttpConfig) -> String {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("the embedded document is JSON");
    let open_metrics = http.clients.is_empty() || http.metrics_open;
    for (path, ops) in doc["paths"].as_object_mut().expect("paths").iter_mut() {
        for op in ops.as_object_mut().expect("operations").values_mut() {
            let secured = op
                .get("security")
                .and_then(|s| s.as_array())
                .is_some_and(|s| !s.is_empty());
            if secured && (http.clients.is_empty() || (path == "/metrics" && open_metrics)) {
                let op = op.as_object_mut().expect("operation");
                op.insert("security".into(), serde_json::json!([]));
                if let Some(r) = op.get_mut("responses").and_then(|r| r.as_object_mut()) {
                    r.remove("401");
                }
            }
        }
    }
    doc.to_string()
}

/// Shared by every handler.
pub struct AppState {
    pub scheduler: Scheduler<EngineBackend>,
    pub http: HttpConfig,
    /// (client id, SHA-256 of its key in lowercase hex).
    keys: Vec<(String, String)>,
    /// Each client's share of the queue, when two or more clients are configured: one
    /// carrier's flood cannot take the places of the others.
    quotas: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>,
    /// `max_reading_bytes`: what the request bodies being read may hold between them.
    reading: ByteBudget,
    /// The OpenAPI document for this configuration.
    openapi: String,
    http_metrics: metrics::HttpMetrics,
}

impl AppState {
    pub fn new(scheduler: Scheduler<EngineBackend>, http: HttpConfig) -> Self {
        let keys = http
            .clients
            .iter()
            .map(|c| (c.id.clone(), c.key_sha256.to_ascii_lowercase()))
            .collect();
        let openapi = openapi_for(&http);
        let doc = serde_json::from_str(&openapi).expect("the document is JSON");
        let http_metrics =
            metrics::HttpMetrics::register(&scheduler.metrics().registry, &doc, scheduler.backend().engine());
        let mut state = Self {
            scheduler,
            reading: ByteBudget::new(http.max_reading_bytes),
            openapi,
            http_metrics,
            http,
            keys,
            quotas: Default::default(),
        };
        if state.http.clients.len() >= 2 {
            let share = state.quota_size();
            state.quotas = (state.http.clients.iter())
                .map(|c| (c.id.clone(), Arc::new(tokio::sync::Semaphore::new(share))))
                .collect();
        }
        state
    }

    /// `n` places of `client`'s share of the queue, held until its answers are sent; 429 when
    /// the client already holds its share (the other clients' places stay free).
    fn take_share(&self, client: &str, n: usize) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ApiError> {
        let Some(quota) = self.quotas.get(client) else {
            return Ok(None);
        };
        quota.clone().try_acquire_many_owned(n as u32).map(Some).map_err(|_| {
            self.overloaded(format!(
                "this client holds its share of the queue ({} of {} places); retry shortly",
                self.quota_size(),
                self.scheduler.config().queue_capacity
            ))
        })
    }

    /// 429 `overloaded` with the configured Retry-After.
    fn overloaded(&self, message: impl Into<String>) -> ApiError {
        ApiError::from(ScheduleError::Overloaded {
            retry_after_ms: self.scheduler.config().retry_after_ms,
        })
        .with_message(message)
    }

    /// A share of `max_reading_bytes` for reading and parsing a body: `factor` times its
    /// Content-Length (or `max_body_bytes` when it declares none), for the copies parsing
    /// makes. 429 when the bodies already being read hold the budget.
    fn reading_share(&self, headers: &HeaderMap, factor: u64) -> Result<ByteShare, ApiError> {
        let max = self.http.max_body_bytes as u64;
        let declared = content_length(headers).unwrap_or(max).min(max);
        (self.reading.try_take(declared * factor))
            .ok_or_else(|| self.overloaded("too many request bodies are being read at once; retry shortly"))
    }

    /// Places per client in the queue.
    fn quota_size(&self) -> usize {
        ((self.scheduler.config().queue_capacity as f64 * self.http.client_share).ceil() as usize).max(1)
    }

    /// The client a key belongs to. Every configured hash is compared, in constant time, so
    /// the time taken says nothing about which key (or how much of one) matched.
    fn client_for(&self, key: &[u8]) -> Option<String> {
        let hash = sha256_hex(key);
        let mut found = None;
        for (id, h) in &self.keys {
            if bool::from(h.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(id.clone());
            }
        }
        found
    }
}

/// Install rustls' ring provider for this process (HTTPS serving, and HTTP clients built on
/// rustls); a second call is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The SHA-256 (hex) of an API key, as `[[server.clients]] key_sha256` wants it.
pub fn hash_key(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Who is calling and which request this is; put in the request's extensions by `authenticate`.
#[derive(Clone)]
struct Caller {
    client: String,
    request_id: String,
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.http.max_body_bytes;
    let mut api = Router::new()
        .route("/v1/verify", post(verify))
        .route("/v1/verify/batch", post(verify_batch))
        // The deployment's models and limits: the carriers' business, behind the keys.
        .route("/info", get(info_route));
    let mut open = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/health", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi));
    // Decision and rejection counts are the authority's business: behind the keys when there
    // are keys, unless the configuration opens them (a scraper on a private network).
    if state.http.metrics_open {
        open = open.route("/metrics", get(metrics));
    } else {
        api = api.route("/metrics", get(metrics));
    }
    let api = api.route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .merge(api)
        .merge(open)
        // Every 4xx in the documented envelope, an unknown route or method included.
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route").into_response() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
            .into_response()
        })
        // Refuse an oversized body from its Content-Length before reading it; a body without
        // one is cut off at the same size while it streams (413 from the extractors).
        .layer(middleware::from_fn_with_state(state.clone(), refuse_large_bodies))
        .layer(DefaultBodyLimit::max(limit))
        // Outermost, so the 413s above are counted too; the router has matched by then.
        .layer(middleware::from_fn_with_state(state.clone(), metrics::count_responses))
        .with_state(state)
}

/// The Content-Length a request declares, if it declares a valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// 413, as the documented JSON error, for a request whose Content-Length passes
/// `max_body_bytes`, before a byte of its body is read.
async fn refuse_large_bodies(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    match content_length(req.headers()) {
        Some(n) if n > state.http.max_body_bytes as u64 => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is {n} bytes; the limit is {}", state.http.max_body_bytes),
        )
        .into_response(),
        _ => next.run(req).await,
    }
}

/// An error answer: `{"error": {"code", "message"}, "request_id"}` with its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_s: Option<u64>,
    request_id: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_s: None,
            request_id: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    fn with_id(mut self, id: &str) -> Self {
        self.request_id = Some(id.to_string());
        self
    }
}

impl From<ScheduleError> for ApiError {
    fn from(e: ScheduleError) -> Self {
        let status = match e {
            ScheduleError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            ScheduleError::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            ScheduleError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ScheduleError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut err = Self::new(status, e.code(), e.to_string());
        if let ScheduleError::Overloaded { retry_after_ms } = e {
            err.retry_after_s = Some(retry_after_ms.div_ceil(1000).max(1));
        }
        err
    }
}

#[derive(Serialize, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": ErrorBody { code: self.code.into(), message: self.message },
            "request_id": self.request_id,
        });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after_s {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

async fn authenticate(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let client = if state.keys.is_empty() {
        Some("anonymous".to_string())
    } else {
        // Every credential presented must be a known key of the same client: a bad one is
        // never rescued by another header.
        let headers = req.headers();
        let presented: Vec<Option<String>> = (headers.get_all(header::AUTHORIZATION).iter())
            .map(|v| v.as_bytes().strip_prefix(b"Bearer ").and_then(|k| state.client_for(k)))
            .chain(
                headers
                    .get_all("x-api-key")
                    .iter()
                    .map(|v| state.client_for(v.as_bytes())),
            )
            .collect();
        match presented.split_first() {
            Some((Some(first), rest)) if rest.iter().all(|c| c.as_ref() == Some(first)) => Some(first.clone()),
            _ => None,
        }
    };
    let Some(client) = client else {
        tracing::warn!(request_id, "refused: missing or unknown API key");
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer KEY, or X-API-Key)",
        )
        .with_id(&request_id)
        .into_response();
    };
    req.extensions_mut().insert(Caller {
        client,
        request_id: request_id.clone(),
    });
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// A pair as JSON: both images base64-encoded (standard alphabet, padding optional).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPair {
    #[serde(default, deserialize_with = "present_string")]
    id: Option<String>,
    probe: Zeroizing<String>,
    reference: Zeroizing<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonVerify {
    probe: Zeroizing<String>,
    reference: Zeroizing<String>,
    #[serde(default)]
    priority: Priority,
    #[serde(default, deserialize_with = "deadline_ms")]
    deadline_ms: Option<u64>,
}

/// An optional string that, when present, is a string (`null` is not one).
fn present_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    String::deserialize(d).map(Some)
}

/// The shortest deadline a request may ask for. Under it no verification can be computed (one
/// pair's decoding alone takes milliseconds), so such a request is refused at once as a 400,
/// not accepted only to end as a 504.
pub const MIN_DEADLINE_MS: u64 = 100;

/// `deadline_ms` as the schema has it: a whole number of milliseconds, at least
/// [`MIN_DEADLINE_MS`]. JSON Schema counts `5000.0` as an integer, so it is one here too;
/// `null` is not a number.
fn deadline_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    whole_ms(n.as_u64().map(|n| n as f64).or(n.as_f64()))
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn whole_ms(n: Option<f64>) -> Result<u64, String> {
    match n {
        // Any deadline is cut to `default_deadline_ms`, so a huge one is simply the longest.
        Some(v) if v >= MIN_DEADLINE_MS as f64 && v.fract() == 0.0 => Ok(v as u64),
        _ => Err(format!(
            "`deadline_ms` must be a whole number of milliseconds, at least {MIN_DEADLINE_MS}"
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    pairs: Vec<JsonPair>,
    #[serde(default)]
    priority: Priority,
    #[serde(default, deserialize_with = "deadline_ms")]
    deadline_ms: Option<u64>,
}

/// A verification answer as the API gives it: `facegate verify --json` plus the request id.
#[derive(Serialize)]
struct VerifyResponse {
    request_id: String,
    #[serde(flatten)]
    verification: Verification,
}

/// Standard base64, padding optional.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        // The schema's pattern cannot see a last symbol's unused bits: accept them.
        .with_decode_allow_trailing_bits(true),
);

fn base64_image(field: &str, text: &str) -> Result<ImageBytes, ApiError> {
    BASE64
        .decode(text.trim())
        .map(ImageBytes::new)
        .map_err(|e| ApiError::bad_request(format!("`{field}` is not valid base64: {e}")))
}

/// Wipe a request body we own (the only copy, unless hyper still holds one).
fn wipe(body: Bytes) {
    if let Ok(mut b) = body.try_into_mut() {
        use zeroize::Zeroize;
        b.as_mut().zeroize();
    }
}

fn is_json(headers: &HeaderMap) -> Option<bool> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?.to_ascii_lowercase();
    if ct.starts_with("application/json") {
        Some(true)
    } else if ct.starts_with("multipart/form-data") {
        Some(false)
    } else {
        None
    }
}

fn unsupported_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send multipart/form-data (parts `probe` and `reference`) or application/json",
    )
}

/// An error reading the body, by the status axum's rejection carries (413 past the limit).
fn body_error(status: StatusCode, e: impl std::fmt::Display) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", e.to_string())
    } else {
        ApiError::bad_request(e.to_string())
    }
}

/// `read` (a body being read and parsed) within `body_read_timeout_ms`, else 408: a client that
/// trickles its body cannot hold the connection and the buffer for long.
async fn within_body_time<T>(
    state: &AppState,
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let limit = Duration::from_millis(state.http.body_read_timeout_ms);
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
        Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!("the request body did not arrive within {} ms", limit.as_millis()),
        ))
    })
}

/// Read and parse a JSON body, then wipe the bytes (they hold base64 images).
async fn json_body<T: serde::de::DeserializeOwned>(req: Request) -> Result<T, ApiError> {
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|e| body_error(e.status(), e))?;
    let parsed = serde_json::from_slice::<T>(&body);
    wipe(body);
    parsed.map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

struct Parsed {
    pair: PairRequest,
    priority: Priority,
    deadline_ms: Option<u64>,
}

async fn parse_verify(req: Request) -> Result<Parsed, ApiError> {
    match is_json(req.headers()) {
        Some(true) => {
            let j: JsonVerify = json_body(req).await?;
            Ok(Parsed {
                pair: PairRequest {
                    probe: base64_image("probe", &j.probe)?,
                    reference: base64_image("reference", &j.reference)?,
                },
                priority: j.priority,
                deadline_ms: j.deadline_ms,
            })
        }
        Some(false) => {
            let mut form = Multipart::from_request(req, &())
                .await
                .map_err(|e| body_error(e.status(), e))?;
            let (mut probe, mut reference, mut priority, mut deadline_ms) = (None, None, Priority::default(), None);
            while let Some(field) = form.next_field().await.map_err(|e| body_error(e.status(), e))? {
                let name = field.name().unwrap_or_default().to_string();
                let data = field.bytes().await.map_err(|e| body_error(e.status(), e))?;
                match name.as_str() {
                    "probe" => probe = Some(ImageBytes::new(data.to_vec())),
                    "reference" => reference = Some(ImageBytes::new(data.to_vec())),
                    "priority" => {
                        priority = serde_json::from_value(serde_json::Value::String(
                            String::from_utf8_lossy(&data).trim().to_string(),
                        ))
                        .map_err(|_| ApiError::bad_request("`priority` must be interactive or bulk"))?
                    }
                    "deadline_ms" => {
                        let text = String::from_utf8_lossy(&data);
                        deadline_ms = Some(whole_ms(text.trim().parse().ok()).map_err(ApiError::bad_request)?)
                    }
                    other => {
                        wipe(data);
                        return Err(ApiError::bad_request(format!("unknown part `{other}`")));
                    }
                }
                wipe(data);
            }
            let missing = |n: &str| ApiError::bad_request(format!("the `{n}` part is missing"));
            Ok(Parsed {
                pair: PairRequest {
                    probe: probe.ok_or_else(|| missing("probe"))?,
                    reference: reference.ok_or_else(|| missing("reference"))?,
                },
                priority,
                deadline_ms,
            })
        }
        None => Err(unsupported_type()),
    }
}

fn deadline(state: &AppState, asked_ms: Option<u64>) -> Instant {
    let ms = asked_ms.map_or(state.http.default_deadline_ms, |d| {
        d.min(state.http.default_deadline_ms)
    });
    Instant::now() + Duration::from_millis(ms)
}

async fn verify(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let caller = req.extensions().get::<Caller>().cloned().expect("set by authenticate");
    let id = caller.request_id.clone();
    // Multipart: the body and each part's copy; JSON: the body, its strings and the decoded
    // images.
    let factor = if is_json(req.headers()) == Some(true) { 3 } else { 2 };
    let reading = match state.reading_share(req.headers(), factor) {
        Ok(p) => p,
        Err(e) => return refused(&caller, e),
    };
    let parsed = match within_body_time(&state, parse_verify(req)).await {
        Ok(p) => p,
        Err(e) => return refused(&caller, e),
    };
    // From here the scheduler counts the images' bytes.
    drop(reading);
    let deadline = deadline(&state, parsed.deadline_ms);
    let _share = match state.take_share(&caller.client, 1) {
        Ok(p) => p,
        Err(e) => return refused(&caller, e),
    };
    match state
        .scheduler
        .submit(parsed.pair, parsed.priority, Some(deadline))
        .await
    {
        Ok(outcome) => {
            let v = outcome.response;
            log_decision(&state, &caller, None, &v, outcome.batch_size, outcome.queue_ms);
            axum::Json(VerifyResponse {
                request_id: id,
                verification: v,
            })
            .into_response()
        }
        Err(e) => refused(&caller, e.into()),
    }
}

fn refused(caller: &Caller, e: ApiError) -> Response {
    tracing::info!(
        request_id = caller.request_id,
        client = caller.client,
        status = e.status.as_u16(),
        error = e.code,
        "request refused"
    );
    e.with_id(&caller.request_id).into_response()
}

/// `item` is the pair's index in a batch request: our own number, never the client's id
/// (a client-chosen string does not enter our logs).
fn log_decision(state: &AppState, caller: &Caller, item: Option<usize>, v: &Verification, batch: usize, queue_ms: f64) {
    state.scheduler.metrics().record_decision(v);
    let reasons: Vec<&str> = v.reasons.iter().map(|r| r.code.as_str()).collect();
    tracing::info!(
        request_id = caller.request_id,
        client = caller.client,
        item,
        decision = v.decision.as_str(),
        score = v.score,
        threshold = v.threshold,
        reasons = reasons.join(","),
        model = v.model,
        device = v.device,
        batch_size = batch,
        queue_ms,
        total_ms = v.timings.total_ms,
        "verification"
    );
}

#[derive(Serialize)]
struct BatchItem {
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    verification: Option<Verification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

async fn verify_batch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let caller = req.extensions().get::<Caller>().cloned().expect("set by authenticate");
    if is_json(req.headers()) != Some(true) {
        return refused(
            &caller,
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json",
            ),
        );
    }
    let reading = match state.reading_share(req.headers(), 3) {
        Ok(p) => p,
        Err(e) => return refused(&caller, e),
    };
    let batch: JsonBatch = match within_body_time(&state, json_body(req)).await {
        Ok(b) => b,
        Err(e) => return refused(&caller, e),
    };
    if batch.pairs.len() > state.http.max_batch_pairs || batch.pairs.is_empty() {
        let msg = format!("a batch holds 1 to {} pairs", state.http.max_batch_pairs);
        return refused(&caller, ApiError::bad_request(msg));
    }
    let deadline = deadline(&state, batch.deadline_ms);
    let _share = match state.take_share(&caller.client, batch.pairs.len()) {
        Ok(p) => p,
        Err(e) => return refused(&caller, e),
    };
    // Decode the base64 of every pair first: a malformed item fails alone, and the others are
    // submitted together so they can share device batches.
    let tasks: Vec<_> = batch
        .pairs
        .into_iter()
        .map(|p| {
            let images = base64_image("probe", &p.probe).and_then(|probe| {
                Ok(PairRequest {
                    probe,
                    reference: base64_image("reference", &p.reference)?,
                })
            });
            let scheduler = state.scheduler.clone();
            let priority = batch.priority;
            (
                p.id,
                tokio::spawn(async move {
                    match images {
                        Ok(pair) => scheduler
                            .submit(pair, priority, Some(deadline))
                            .await
                            .map_err(ApiError::from),
                        Err(e) => Err(e),
                    }
                }),
            )
        })
        .collect();
    // The base64 is decoded and dropped; the scheduler counts the images now.
    drop(reading);
    let mut results = Vec::with_capacity(tasks.len());
    for (index, (id, task)) in tasks.into_iter().enumerate() {
        let item = match task.await {
            Ok(Ok(outcome)) => {
                log_decision(
                    &state,
                    &caller,
                    Some(index),
                    &outcome.response,
                    outcome.batch_size,
                    outcome.queue_ms,
                );
                BatchItem {
                    id,
                    verification: Some(outcome.response),
                    error: None,
                }
            }
            Ok(Err(e)) => BatchItem {
                id,
                verification: None,
                error: Some(ErrorBody {
                    code: e.code.into(),
                    message: e.message,
                }),
            },
            Err(join) => BatchItem {
                id,
                verification: None,
                error: Some(ErrorBody {
                    code: "internal".into(),
                    message: join.to_string(),
                }),
            },
        };
        results.push(item);
    }
    axum::Json(serde_json::json!({ "request_id": caller.request_id, "results": results })).into_response()
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let backend = state.scheduler.backend().engine();
    let closing = state.scheduler.is_closing();
    let body = serde_json::json!({
        "ready": !closing,
        "model": backend.model_version(),
        "device": backend.device_label(),
        "scorer": backend.scorer_label(),
        "in_flight": state.scheduler.in_flight(),
    });
    let status = if closing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, axum::Json(body)).into_response()
}

/// What this service runs and what it accepts, as TEI's `/info`: the models (with their
/// sha256), the device, the decision threshold and operating point, the version, the limits.
pub fn info(state: &AppState) -> serde_json::Value {
    let engine = state.scheduler.backend().engine();
    let (sched, http) = (state.scheduler.config(), &state.http);
    let mut info = serde_json::to_value(engine.info()).expect("plain data");
    info["limits"] = serde_json::json!({
        "max_body_bytes": http.max_body_bytes,
        "max_batch_pairs": http.max_batch_pairs,
        "default_deadline_ms": http.default_deadline_ms,
        "min_deadline_ms": MIN_DEADLINE_MS,
        "max_connections": http.max_connections,
        "queue_capacity": sched.queue_capacity,
        "max_queued_bytes": sched.max_queued_bytes,
        "max_batch": sched.max_batch,
        "max_delay_us": sched.max_delay_us,
    });
    info
}

async fn info_route(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(info(&state)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.scheduler.render_metrics(),
    )
        .into_response()
}

async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from(state.openapi.clone()),
    )
        .into_response()
}

/// A running service.
pub struct Service {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    handle: axum_server::Handle<SocketAddr>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Load nothing, start everything: the engine is given, already loaded.
    pub async fn start(config: ServiceConfig, engine: Engine) -> Result<Self, String> {
        config.validate()?;
        let addr: SocketAddr = config
            .server
            .bind
            .parse()
            .map_err(|e| format!("server.bind `{}`: {e}", config.server.bind))?;
        let scheduler = Scheduler::start(EngineBackend::new(engine), config.scheduler.clone(), Metrics::new())?;
        let state = Arc::new(AppState::new(scheduler, config.server.clone()));
        let app = router(state.clone()).into_make_service();
        let handle = axum_server::Handle::new();
        let http = &config.server;
        let headers = Duration::from_millis(http.header_read_timeout_ms);
        let capped = limits::Capped::new(limits::fit_open_files(http.max_connections));
        // hyper's header timeout covers every request's head, a kept-alive connection's wait
        // for the next one included; axum-server's covers a new connection that sends nothing.
        let configure =
            |mut server: axum_server::Server<SocketAddr, limits::Capped<axum_server::accept::DefaultAcceptor>>| {
                server
                    .http_builder()
                    .http1()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(headers);
                server.first_request_timeout(headers).handle(handle.clone())
            };
        let task = match &http.tls {
            None => {
                tokio::spawn(configure(axum_server::bind(addr).acceptor(capped.wrap(Default::default()))).serve(app))
            }
            Some(tls) => {
                install_crypto_provider();
                let rustls = axum_server::tls_rustls::RustlsConfig::from_pem_file(&tls.cert, &tls.key)
                    .await
                    .map_err(|e| format!("TLS certificate or key: {e}"))?;
                let server = configure(axum_server::bind(addr).acceptor(capped.wrap(Default::default())));
                // The handshake is bounded by the same time as a request's head.
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(rustls).handshake_timeout(headers);
                tokio::spawn(server.map(|capped| tls.clone().acceptor(capped)).serve(app))
            }
        };
        let addr = match handle.listening().await {
            Some(a) => a,
            None => {
                let err = match task.await {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the listener stopped".into(),
                };
                return Err(format!("listening on {addr}: {err}"));
            }
        };
        if state.keys.is_empty() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "no API keys configured and listening beyond loopback: the API is open");
        }
        Ok(Self {
            addr,
            state,
            handle,
            task,
        })
    }

    /// Graceful shutdown: refuse new verifications, answer every accepted one, close the
    /// connections once their answers are sent, and return.
    pub async fn shutdown(self) {
        self.state.scheduler.shutdown().await;
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let _ = self.task.await;
    }
}
