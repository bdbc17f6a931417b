//! The service's own series beside the scheduler's: HTTP responses by route and status, and
//! what is running (`facegate_build_info`, `facegate_model_info`), in the scheduler's registry.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use facegate_pipeline::Engine;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::sync::Arc;

use crate::AppState;

/// The `route` label of a request no route matched (404, 405 and the like).
pub const UNMATCHED: &str = "unmatched";

#[derive(Clone)]
pub struct HttpMetrics {
    responses: IntCounterVec,
}

impl HttpMetrics {
    /// Registers the series in `registry`: each documented (route, status) of `openapi` starts
    /// at zero, as do 404 and 405 of unmatched requests; the info gauges are set to 1.
    pub fn register(registry: &Registry, openapi: &serde_json::Value, engine: &Engine) -> Self {
        let responses = IntCounterVec::new(
            Opts::new("facegate_http_responses_total", "HTTP responses by route and status"),
            &["route", "status"],
        )
        .unwrap();
        for (path, ops) in openapi["paths"].as_object().into_iter().flatten() {
            for op in ops.as_object().into_iter().flatten().map(|(_, op)| op) {
                for status in op["responses"].as_object().into_iter().flatten().map(|(s, _)| s) {
                    responses.with_label_values(&[path.as_str(), status.as_str()]);
                }
            }
        }
        for status in ["404", "405"] {
            responses.with_label_values(&[UNMATCHED, status]);
        }
        let build = IntGaugeVec::new(
            Opts::new("facegate_build_info", "The running build (always 1)"),
            &["version", "profile"],
        )
        .unwrap();
        let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
        build.with_label_values(&[env!("CARGO_PKG_VERSION"), profile]).set(1);
        let model = IntGaugeVec::new(
            Opts::new(
                "facegate_model_info",
                "Each model the pipeline runs, with its weights' sha256 (always 1)",
            ),
            &["pipeline", "task", "name", "sha256"],
        )
        .unwrap();
        for card in engine.model_cards() {
            let task = serde_json::to_value(card.task).ok();
            let task = task.as_ref().and_then(|t| t.as_str()).unwrap_or("");
            (model.with_label_values(&[engine.model_version(), task, &card.name, &card.sha256])).set(1);
        }
        for c in [
            Box::new(responses.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(build),
            Box::new(model),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self { responses }
    }
}

/// Counts every response by the route that answered it (its template, never the path a client
/// sent: the label set stays bounded) and its status.
pub async fn count_responses(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = (req.extensions().get::<MatchedPath>())
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| UNMATCHED.to_string());
    let resp = next.run(req).await;
    (state.http_metrics.responses)
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    resp
}
