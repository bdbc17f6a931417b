//! The service's configuration file: `[engine]`, `[scheduler]` and `[server]` sections (TOML or
//! JSON); every key is optional and unknown keys are errors.

use std::path::{Path, PathBuf};

use facegate_core::Config;
use facegate_scheduler::SchedulerConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub engine: Config,
    pub scheduler: SchedulerConfig,
    pub server: HttpConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub bind: String,
    /// Largest request body, checked from Content-Length before the body is read.
    pub max_body_bytes: usize,
    /// Bytes the request bodies being read and parsed may hold between them (a body is
    /// charged 2–3 times its Content-Length for the copies parsing makes); more are refused
    /// with 429 until some are read. The images then count against
    /// `scheduler.max_queued_bytes`.
    pub max_reading_bytes: u64,
    /// Most pairs in one `POST /v1/verify/batch`.
    pub max_batch_pairs: usize,
    /// Deadline of a request that sets none, in milliseconds (requests may ask for less).
    pub default_deadline_ms: u64,
    /// API keys per client (carrier). With none, the API is open: only sensible on loopback.
    pub clients: Vec<ClientKey>,
    /// Serve HTTPS (rustls) with this certificate chain and key, both PEM.
    pub tls: Option<TlsConfig>,
    /// A connection must deliver a request's headers within this time (also a new connection's
    /// first request, and the next request on a kept-alive one), else it is closed.
    pub header_read_timeout_ms: u64,
    /// A request's whole body must arrive within this time, else 408 `request_timeout`: with
    /// `max_body_bytes`, a minimum rate (20 MiB in 30 s by default).
    pub body_read_timeout_ms: u64,
    /// Open connections at most; more are closed as soon as they are accepted, so a flood of
    /// idle sockets cannot take the process's file descriptors from real clients. The soft
    /// open-files limit is raised to fit (lowered, with a warning, where the hard one is
    /// too low).
    pub max_connections: usize,
    /// Serve `/metrics` without a key even when keys are configured (default: it needs one,
    /// as the API does; with no keys configured everything is open anyway).
    pub metrics_open: bool,
    /// With two or more clients configured, the fraction of `scheduler.queue_capacity` one
    /// client may hold: a flood from one carrier leaves the rest of the queue to the others.
    pub client_share: f64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 20 << 20,
            max_reading_bytes: 256 << 20,
            max_batch_pairs: 64,
            default_deadline_ms: 30_000,
            clients: Vec::new(),
            tls: None,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 2048,
            metrics_open: false,
            client_share: 0.5,
        }
    }
}

/// One client's key, stored as its SHA-256 (hex) so the configuration holds no usable secret.
/// `facegate serve --hash-key KEY` prints the hash of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientKey {
    pub id: String,
    pub key_sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ServiceConfig {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let config: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.engine.validate().map_err(|e| e.to_string())?;
        self.scheduler.validate()?;
        for c in &self.server.clients {
            let ok = c.key_sha256.len() == 64 && c.key_sha256.chars().all(|ch| ch.is_ascii_hexdigit());
            if !ok {
                return Err(format!("client {}: key_sha256 must be 64 hex digits", c.id));
            }
        }
        if self.server.max_batch_pairs == 0 {
            return Err("server.max_batch_pairs must be at least 1".into());
        }
        let s = &self.server;
        if !(s.client_share > 0.0 && s.client_share <= 1.0) {
            return Err("server.client_share must be in (0, 1]".into());
        }
        if s.max_reading_bytes < 1 << 20 {
            return Err("server.max_reading_bytes must be at least 1 MiB".into());
        }
        if s.header_read_timeout_ms == 0 || s.body_read_timeout_ms == 0 || s.max_connections == 0 {
            return Err(
                "server.header_read_timeout_ms, body_read_timeout_ms and max_connections must be above 0".into(),
            );
        }
        Ok(())
    }
}
