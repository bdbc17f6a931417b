//! The verification engine as the scheduler's backend: decoding is the CPU stage, the
//! networks and the scoring kernel are the device stage.

use std::time::Instant;

use facegate_core::{ImageBytes, Verification};
use facegate_pipeline::{DecodedPair, Engine, photo_bytes, wipe_pair};

use crate::Backend;

/// A (probe, reference) pair of encoded photos.
pub struct PairRequest {
    pub probe: ImageBytes,
    pub reference: ImageBytes,
}

/// A decoded pair; the pixels are wiped when it is dropped.
pub struct PreparedPair {
    pair: DecodedPair,
    decode_ms: f64,
}

impl Drop for PreparedPair {
    fn drop(&mut self) {
        wipe_pair(&mut self.pair);
    }
}

pub struct EngineBackend {
    engine: Engine,
}

impl EngineBackend {
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Backend for EngineBackend {
    type Request = PairRequest;
    type Prepared = PreparedPair;
    type Response = Verification;

    /// The encoded photos plus their working copies, sized from the headers. The full-size
    /// decode inside `prepare` is not counted here: it lives only while one prepare worker
    /// reduces it, so `prepare_workers` bounds it.
    fn held_bytes(&self, request: &PairRequest) -> u64 {
        let side = self.engine.config().work_max_side;
        [&request.probe, &request.reference]
            .iter()
            .map(|b| b.as_slice().len() as u64 + photo_bytes(b.as_slice(), side).unwrap_or(0))
            .sum()
    }

    fn prepare(&self, request: PairRequest) -> PreparedPair {
        let start = Instant::now();
        let pair = (
            self.engine.decode(request.probe.as_slice()),
            self.engine.decode(request.reference.as_slice()),
        );
        // `request` (the encoded bytes) is dropped, and wiped, here.
        PreparedPair {
            pair,
            decode_ms: start.elapsed().as_secs_f64() * 1e3,
        }
    }

    /// 1 on the CPU backend, where batching lowered throughput (benches/README.md, "Service":
    /// 12.24 against 7.36 verifications/s at batch 8 on 2 cores); 8 on wgpu (not measured on a
    /// GPU yet).
    fn preferred_max_batch(&self) -> usize {
        if self.engine.on_gpu() { 8 } else { 1 }
    }

    /// 2 on the CPU backend: one pair's networks leave both cores busy only part of the time
    /// (benches/README.md, "CPU": 1 thread 240 ms a pair, 2 threads 150–200 ms), so two pairs
    /// at once keep them busy; 1 on a GPU, where one batch fills the device (not measured on
    /// a GPU yet).
    fn preferred_device_workers(&self) -> usize {
        if self.engine.on_gpu() { 1 } else { 2 }
    }

    /// On the CPU backend, the cores divided among the device workers, each worker on a pool
    /// of its own: 33.0–33.5 against 27.2–28.0 verifications/s for one shared pool on 2 cores
    /// (benches/README.md, "CPU"). On a GPU the host threads only feed the device: the shared
    /// pool.
    fn preferred_device_threads(&self, device_workers: usize) -> usize {
        if self.engine.on_gpu() {
            return 0;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / device_workers.max(1)).max(1)
    }

    fn run(&self, batch: &[&PreparedPair]) -> Result<Vec<Verification>, String> {
        let pairs: Vec<&DecodedPair> = batch.iter().map(|p| &p.pair).collect();
        let mut out = self.engine.verify_decoded(&pairs);
        for (v, p) in out.iter_mut().zip(batch) {
            v.timings.decode_ms = p.decode_ms;
            v.timings.total_ms += p.decode_ms;
        }
        Ok(out)
    }
}
