//! The verification engine: batches of photos in, faces and decisions out.
//!
//! Every stage works on a batch (one network call per stage per batch); a single photo is a
//! batch of one. A photo that fails any stage fails alone, with a typed [`Rejection`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::prelude::*;
use facegate_core::{
    Calibration, Config, ConfigError, Decision, Descriptor, FaceBox, Reason, Rejection, Role, Timings, Verification,
    cosine_similarity,
};
use facegate_kernels::{CropSource, Gallery, KernelError, MAX_K, Matcher, Storage, reference};
use facegate_models::{ModelError, Registry};
use image::RgbImage;
use zeroize::Zeroize;

use crate::align::yaw;
use crate::decode::{Photo, decode_photo};
use crate::deglare;
use crate::descreen;
use crate::device::{DeviceChoice, SelectedDevice, select};
use crate::imageops::{self, Rect};
use crate::resident;
pub use crate::stages::Detected;
use crate::stages::{self, Embedding, StageError, Stages, Warp};
use crate::turn::{self, Turn};

/// How many faces a photo may show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FacePolicy {
    /// Exactly one face (a live selfie: a second face may be someone else presenting).
    Single,
    /// The largest face, if it clearly dominates the others (a document's main portrait).
    Dominant,
}

impl From<Role> for FacePolicy {
    fn from(role: Role) -> Self {
        match role {
            Role::Probe => Self::Single,
            Role::Reference => Self::Dominant,
        }
    }
}

/// One face, fully analysed.
#[derive(Debug, Clone)]
pub struct Face {
    pub face: FaceBox,
    /// The landmarks in image pixels: MTCNN's five, or the 68 of face-api's net (iBUG order).
    pub landmarks: Vec<[f32; 2]>,
    /// The crop the descriptor was computed from, in image pixels (face-api alignment).
    pub aligned: Option<Rect>,
    pub descriptor: Descriptor,
    pub sharpness: f32,
    pub yaw: f32,
    /// How far the photo was turned, clockwise in degrees, before the face was found upright
    /// (a reference photographed sideways: see `Config::reference_rotations`); 0 mostly.
    pub rotation: u16,
    /// The σ, in image pixels, of the Gaussian that took a halftone screen off the face before
    /// it was measured (see `Config::reference_descreen`); 0 when none was found.
    pub descreened: f32,
}

impl Face {
    /// This face, found in a working copy made `scale` times smaller, in the original's pixels.
    pub fn in_original(mut self, scale: f32) -> Self {
        if scale != 1.0 {
            self.face = self.face.in_original(scale);
            self.landmarks.iter_mut().flatten().for_each(|v| *v /= scale);
            self.descreened /= scale;
            self.aligned = self.aligned.map(|r| Rect {
                x: (r.x as f32 / scale).round() as u32,
                y: (r.y as f32 / scale).round() as u32,
                width: (r.width as f32 / scale).round() as u32,
                height: (r.height as f32 / scale).round() as u32,
            });
        }
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("device: {0}")]
    Device(String),
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Config(#[from] facegate_core::ConfigError),
}

impl From<StageError> for EngineError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Model(e) => Self::Model(e),
            StageError::Config(e) => Self::Config(e),
        }
    }
}

/// See [`Engine::info`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineInfo {
    pub version: &'static str,
    /// The pipeline's model id: scores and thresholds belong to it.
    pub model: String,
    pub models: Vec<ModelInfo>,
    pub device: String,
    pub scorer: String,
    pub threshold: f32,
    pub operating_point: Option<String>,
    pub calibrated: bool,
    pub embedding_dim: usize,
}

/// One model an engine runs, as its card names it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelInfo {
    pub task: facegate_models::Task,
    pub name: String,
    pub sha256: String,
    /// The registry package and version the weights come from.
    pub package: String,
    /// The weights' licence.
    pub licence: String,
}

pub struct Engine {
    stages: Stages,
    config: Config,
    device: SelectedDevice,
    /// The WGSL kernels (pairs, crops), when the networks run on wgpu; `None` works on the CPU.
    matcher: Option<Matcher>,
    /// Batches a kernel failed on, done on the host instead (see [`Self::scoring_fallbacks`]).
    fallbacks: AtomicU64,
    /// Names the detector, alignment and weights: scores (and so thresholds) belong to all three.
    model_version: String,
    /// Where a score becomes a match (cosine similarity).
    threshold: f32,
}

/// A face's landmarks in image pixels, and the crop the landmark net saw (face-api only).
type Landmarks = (Vec<[f64; 2]>, Option<Rect>);

/// The id of a pipeline's models (see [`stages::model_id`]), for callers without an engine;
/// the configured name itself if the registry does not know it.
pub fn model_version(c: &Config) -> String {
    let registry = Registry::with_dir(c.models_dir.as_deref()).unwrap_or_else(|_| Registry::builtin());
    match stages::embedder_cards(c, &registry) {
        Ok(cards) => stages::model_id(c, &cards),
        Err(_) => c.embedder.clone(),
    }
}

/// A (probe, reference) pair after decoding: each photo's working copy, or why it could not
/// be decoded.
pub type DecodedPair = (Result<Photo, Rejection>, Result<Photo, Rejection>);

/// The results of a batch, in input order, with the time each stage took for the whole batch.
#[derive(Debug)]
pub struct BatchResult<T> {
    pub items: Vec<T>,
    pub timings: Timings,
}

impl Engine {
    pub fn new(mut config: Config, device: DeviceChoice) -> Result<Self, EngineError> {
        config.validate()?;
        let device = select(device).map_err(EngineError::Device)?;
        let registry = Registry::with_dir(config.models_dir.as_deref())?;
        let stages = Stages::load(&config, &registry, &device.device)?;
        let model_version = stages.model_id.clone();
        if let Some(path) = &config.calibration {
            let calibration = Calibration::read(path)?;
            if calibration.model != model_version {
                return Err(EngineError::Config(ConfigError::Invalid(format!(
                    "{} was calibrated for model {}, this engine runs {model_version}",
                    path.display(),
                    calibration.model
                ))));
            }
            config.threshold = Some(calibration.threshold(config.operating_point.as_deref())?);
        }
        // A calibration's threshold, else the configured one, else the embedder's card's, else
        // the shipped calibration's (a fusion has no card).
        let card = match stages.embedding.branches() {
            [one] => one.embedder.card.threshold,
            _ => None,
        };
        let shipped = || {
            let c = stages.shipped.as_ref()?;
            c.threshold(config.operating_point.as_deref()).ok()
        };
        let threshold = config.threshold.or(card).or_else(shipped).ok_or_else(|| {
            EngineError::Config(ConfigError::Invalid(format!(
                "model {} has no threshold of its own: set `threshold` (--threshold) or a calibration",
                config.embedder
            )))
        })?;
        // The matcher compiles its kernels for the device and queue burn runs on.
        let matcher = device
            .wgpu
            .as_ref()
            .map(|w| Matcher::with_device(w.device.clone(), w.queue.clone(), device.label.clone()));
        Ok(Self {
            stages,
            threshold,
            model_version,
            config,
            device,
            matcher,
            fallbacks: AtomicU64::new(0),
        })
    }

    /// Where similarity scores are computed.
    pub fn scorer_label(&self) -> String {
        match &self.matcher {
            Some(m) => format!("wgsl kernels on burn's device, {}", m.label()),
            None => "cpu".into(),
        }
    }

    /// Cosine similarity of each (probe, reference) descriptor pair: one dispatch of the WGSL
    /// pairs kernel when the networks run on wgpu, the f64 CPU formula otherwise. Both give 0
    /// for a zero vector.
    pub fn score_pairs(&self, pairs: &[(&[f32], &[f32])]) -> Vec<f32> {
        let dim = pairs.first().map_or(0, |p| p.0.len());
        let uniform = pairs.iter().all(|(a, b)| a.len() == dim && b.len() == dim);
        if let (Some(m), true) = (&self.matcher, uniform) {
            let mut probes: Vec<f32> = pairs.iter().flat_map(|p| p.0.iter().copied()).collect();
            let mut references: Vec<f32> = pairs.iter().flat_map(|p| p.1.iter().copied()).collect();
            let scores = m.pairs(&probes, &references, dim, Storage::F32);
            probes.zeroize();
            references.zeroize();
            // A kernel failure (device lost, limits) falls back to the CPU for this batch.
            if let Some(scores) = self.or_fall_back("pairs", scores) {
                return scores;
            }
        }
        pairs.iter().map(|(a, b)| cosine_similarity(a, b)).collect()
    }

    /// [`Self::score_pairs`] over the pairs that have both descriptors, in one batch; `None`
    /// where a face is missing.
    pub fn score_where_present(&self, pairs: &[Option<(&[f32], &[f32])>]) -> Vec<Option<f32>> {
        let present: Vec<(&[f32], &[f32])> = pairs.iter().flatten().copied().collect();
        where_present(pairs, self.score_pairs(&present))
    }

    /// Every pairwise score of `templates` (row-major `[n, n]`): one 1:N scan of the WGSL
    /// kernel with the templates as their own gallery when on wgpu, f64 on the CPU otherwise.
    /// For score distributions, such as all-vs-all impostor scores in an evaluation.
    pub fn score_matrix(&self, templates: &[&[f32]]) -> Vec<f32> {
        self.scan_own_gallery("every-score scan", templates, |m, flat, g| m.scores(flat, g))
            .unwrap_or_else(|| {
                templates
                    .iter()
                    .flat_map(|a| templates.iter().map(|b| cosine_similarity(a, b)))
                    .collect()
            })
    }

    /// For each template, the `k` (≤ 31) most similar *other* templates as (index, score),
    /// best first, equal scores by index: one top-k 1:N scan of the WGSL kernel with the
    /// templates as their own gallery on wgpu, f64 on the CPU otherwise. For de-duplication
    /// checks ("is this face already registered under another identity?").
    pub fn nearest(&self, templates: &[&[f32]], k: usize) -> Vec<Vec<(usize, f32)>> {
        assert!((1..MAX_K).contains(&k), "k must be in 1..{MAX_K}");
        let Some(dim) = templates.first().map(|t| t.len()) else {
            return Vec::new();
        };
        assert!(templates.iter().all(|t| t.len() == dim), "templates of one length");
        // One more than asked: a template's own row is among its best and is dropped.
        let want = k + 1;
        let hits = self
            .scan_own_gallery("top-k scan", templates, |m, flat, g| m.top_k(flat, g, want))
            .map(|h| {
                h.into_iter()
                    .map(|row| row.into_iter().map(|h| (h.index as usize, h.score)).collect())
                    .collect()
            })
            .unwrap_or_else(|| {
                let mut flat = templates.concat();
                let hits = reference::top_k(&flat, &flat, dim, want)
                    .into_iter()
                    .map(|row| row.into_iter().map(|(j, s)| (j as usize, s as f32)).collect::<Vec<_>>())
                    .collect::<Vec<_>>();
                flat.zeroize();
                hits
            });
        hits.into_iter()
            .enumerate()
            .map(|(i, row)| row.into_iter().filter(|&(j, _)| j != i).take(k).collect())
            .collect()
    }

    /// `scan` on the WGSL kernels with `templates` uploaded as their own gallery (through a
    /// flat host copy, wiped after); `None` on the CPU backend, for no templates, or when the
    /// kernel fails (counted and logged), so the caller scores on the host.
    fn scan_own_gallery<T>(
        &self,
        what: &str,
        templates: &[&[f32]],
        scan: impl FnOnce(&Matcher, &[f32], &Gallery) -> Result<T, KernelError>,
    ) -> Option<T> {
        let m = self.matcher.as_ref()?;
        let dim = templates.first()?.len();
        if templates.iter().any(|t| t.len() != dim) {
            return None; // the host formulas take any lengths; the kernels one
        }
        let mut flat = templates.concat();
        let result = Gallery::upload(m, &flat, dim, Storage::F32).and_then(|g| scan(m, &flat, &g));
        flat.zeroize();
        self.or_fall_back(what, result)
    }

    /// How many batches the WGSL kernels failed on wgpu (device lost, limits), so that the
    /// host scored them (the f64 formula) or cut their crops instead. Decisions stay right
    /// either way; a count above 0 means the GPU path is not doing its job.
    pub fn scoring_fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The kernel's result, or `None` after counting and logging its failure, so the caller
    /// scores on the host.
    fn or_fall_back<T, E: std::fmt::Display>(&self, kernel: &str, result: Result<T, E>) -> Option<T> {
        result
            .inspect_err(|error| {
                let total = self.fallbacks.fetch_add(1, Ordering::Relaxed) + 1;
                // The results stay right (the host does the work), but the GPU path is broken.
                tracing::warn!(kernel, %error, total, "a WGSL kernel failed; the host does its work instead");
            })
            .ok()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The decision threshold: the calibration's, the configured one, or the embedder's own.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Whether the networks run on wgpu (a GPU, or lavapipe) rather than the CPU backend.
    pub fn on_gpu(&self) -> bool {
        self.device.wgpu.is_some()
    }

    pub fn device_label(&self) -> &str {
        &self.device.label
    }

    pub fn model_version(&self) -> &str {
        &self.model_version
    }

    /// The cards of the models this engine runs: detector, landmark net (if any), embedders.
    pub fn model_cards(&self) -> &[facegate_models::Card] {
        &self.stages.cards
    }

    /// What this engine says about itself (`/info`, Python's `Engine.info`): model ids and
    /// their sha256, device, decision rule; nothing about any request.
    pub fn info(&self) -> EngineInfo {
        EngineInfo {
            version: env!("CARGO_PKG_VERSION"),
            model: self.model_version.clone(),
            models: (self.model_cards().iter())
                .map(|c| ModelInfo {
                    task: c.task,
                    name: c.name.clone(),
                    sha256: c.sha256.clone(),
                    package: format!("{} {}", c.source.package, c.source.version).trim().to_string(),
                    licence: c.licence.weights.clone(),
                })
                .collect(),
            device: self.device_label().to_string(),
            scorer: self.scorer_label(),
            threshold: self.threshold,
            operating_point: self.config.operating_point.clone(),
            calibrated: self.config.calibration.is_some(),
            embedding_dim: self.stages.embedding.dim(),
        }
    }

    fn device(&self) -> &Device {
        &self.device.device
    }

    /// The embedding stage: one embedder, or several fused.
    pub fn embedding(&self) -> &Embedding {
        &self.stages.embedding
    }

    /// NCHW batch from planar RGB crops; our host copy is handed to burn (not kept).
    fn batch(&self, data: Vec<f32>, n: usize, size: usize) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, [n, 3, size, size]), self.device())
    }

    /// The faces in each image, in image pixels: MTCNN's boxes and five landmarks (largest
    /// first), or TinyFaceDetector's boxes (best first).
    pub fn detect(&self, images: &[&RgbImage]) -> Vec<Vec<Detected>> {
        self.stages.detect.detect(images)
    }

    /// Landmarks (image pixels) for each (image, face box), with the crop they were found in,
    /// from the landmark stage; `None` if the box is outside the image, or the detector gives
    /// its own landmarks (MTCNN: see [`Self::detect`]).
    pub fn landmarks(&self, items: &[(&RgbImage, FaceBox)]) -> Vec<Option<(Vec<[f64; 2]>, Rect)>> {
        match &self.stages.landmarks {
            Some(stage) => stage.landmarks(items),
            None => vec![None; items.len()],
        }
    }

    /// Descriptors for planar RGB crops of the embedder's input size, one network call. For
    /// a one-embedder pipeline; a fusion takes one batch per embedder ([`Self::embed_branch_crops`]).
    pub fn embed_crops(&self, crops: Vec<f32>) -> Vec<Descriptor> {
        self.embed_branch_crops(vec![crops])
    }

    /// Descriptors from one batch of crops per embedder (each of its own input size).
    pub fn embed_branch_crops(&self, crops: Vec<Vec<f32>>) -> Vec<Descriptor> {
        self.embed(crops).map_or_else(Vec::new, to_host)
    }

    /// The (first) embedder's input side, in pixels (its card's).
    pub fn crop_size(&self) -> usize {
        self.stages.embedding.branches()[0].aligner.size()
    }

    /// The crop each embedder takes of `face`, as an RGB image of its input size, for people
    /// who look at chips (Python's `align`). `face` is in `image`'s pixels (as
    /// [`Self::analyze_decoded`] gives it, before [`Face::in_original`]). Cut from `image`
    /// itself: for a card portrait whose halftone screen was filtered, the network's input
    /// was cut from the filtered copy. `None` where the landmarks cannot make the crop.
    pub fn chips(&self, image: &RgbImage, face: &Face) -> Vec<Option<RgbImage>> {
        let points: Vec<[f64; 2]> = face.landmarks.iter().map(|p| [p[0].into(), p[1].into()]).collect();
        self.stages
            .embedding
            .branches()
            .iter()
            .map(|branch| {
                let warp = match face.aligned {
                    Some(rect) => Warp::Box(rect),
                    None => branch.aligner.warp(image, &points, None)?,
                };
                let size = branch.aligner.size();
                let mut planar = vec![0.0f32; 3 * size * size];
                branch.aligner.cut(image, warp, &mut planar);
                let plane = size * size;
                let pixels = (0..plane)
                    .flat_map(|i| (0..3).map(move |c| (c, i)))
                    .map(|(c, i)| planar[c * plane + i].round().clamp(0.0, 255.0) as u8)
                    .collect();
                planar.zeroize();
                RgbImage::from_raw(size as u32, size as u32, pixels)
            })
            .collect()
    }

    /// The embedding stage's output for planar RGB crops (one batch per embedder), `[n, dim]`,
    /// left on the device; `None` for no crops.
    fn embed(&self, crops: Vec<Vec<f32>>) -> Option<Tensor<2>> {
        let branches = self.stages.embedding.branches();
        assert_eq!(crops.len(), branches.len(), "one crop batch per embedder");
        let size = branches[0].aligner.size();
        let n = crops[0].len() / (3 * size * size);
        if n == 0 {
            return None;
        }
        let batches = crops
            .into_iter()
            .zip(branches)
            .map(|(c, b)| self.batch(c, n, b.aligner.size()))
            .collect();
        Some(self.stages.embedding.forward(batches))
    }

    /// Each face's landmarks: MTCNN's five as detected, or face-api's 68 with the crop they
    /// were found in; `None` where there are none.
    fn landmarks_of(&self, items: &[(&RgbImage, Detected)]) -> Vec<Option<Landmarks>> {
        let mut out: Vec<_> = items
            .iter()
            .map(|(_, d)| d.points.map(|p| (p.to_vec(), None)))
            .collect();
        let need: Vec<usize> = (0..items.len()).filter(|&i| out[i].is_none()).collect();
        if need.is_empty() {
            return out;
        }
        let boxes: Vec<(&RgbImage, FaceBox)> = need.iter().map(|&i| (items[i].0, items[i].1.face)).collect();
        for (&i, m) in need.iter().zip(self.landmarks(&boxes)) {
            out[i] = m.map(|(points, crop)| (points, Some(crop)));
        }
        out
    }

    /// Landmarks, alignment and descriptors for given faces.
    pub fn describe(&self, items: &[(&RgbImage, Detected)], timings: &mut Timings) -> Vec<Option<Face>> {
        let (measured, embeddings) = self.measure(items, timings);
        let mut descriptors = host_rows(embeddings);
        measured
            .into_iter()
            .map(|m| m.map(|m| m.into_face(&mut descriptors)))
            .collect()
    }

    /// Landmarks, alignment, quality measures and one network call for the descriptors, which
    /// stay on the device: face `i`'s descriptor is row `measured[i].row` of the embeddings.
    fn measure(
        &self,
        items: &[(&RgbImage, Detected)],
        timings: &mut Timings,
    ) -> (Vec<Option<Measured>>, Option<Tensor<2>>) {
        let t = Instant::now();
        let marks = self.landmarks_of(items);
        timings.landmarks_ms += ms(t);
        let t = Instant::now();
        let branches = self.stages.embedding.branches();
        // Each face's cut for every embedder (each with its own template); a face any of
        // them cannot align is not described.
        let mut faces: Vec<Aligned> = Vec::new();
        for (i, m) in marks.into_iter().enumerate() {
            let Some((points, landmark_crop)) = m else { continue };
            let warps: Option<Vec<Warp>> = branches
                .iter()
                .map(|b| b.aligner.warp(items[i].0, &points, landmark_crop))
                .collect();
            if let Some(warps) = warps {
                faces.push(Aligned { item: i, points, warps });
            }
        }
        let (batches, sharpness) = self
            .device_crops(items, &faces)
            .unwrap_or_else(|| self.host_crops(items, &faces));
        let mut out: Vec<Option<Measured>> = vec![None; items.len()];
        for (row, (f, sharpness)) in faces.iter().zip(sharpness).enumerate() {
            out[f.item] = Some(Measured {
                face: items[f.item].1.face,
                yaw: yaw(&f.points),
                landmarks: f.points.iter().map(|p| [p[0] as f32, p[1] as f32]).collect(),
                aligned: match f.warps[0] {
                    Warp::Box(rect) => Some(rect),
                    Warp::Affine(_) => None,
                },
                sharpness,
                row,
                turn: Turn::NONE,
                descreened: 0.0,
            });
        }
        let embeddings = (!faces.is_empty()).then(|| self.stages.embedding.forward(batches));
        timings.embed_ms += ms(t);
        (out, embeddings)
    }

    /// One crop batch per embedder, cut on the host, and the sharpness of the first's crops.
    fn host_crops(&self, items: &[(&RgbImage, Detected)], faces: &[Aligned]) -> (Vec<Tensor<4>>, Vec<f32>) {
        let branches = self.stages.embedding.branches();
        let mut sharpness = Vec::with_capacity(faces.len());
        let batches = branches
            .iter()
            .enumerate()
            .map(|(b, branch)| {
                let size = branch.aligner.size();
                let crop_len = 3 * size * size;
                let mut crops = vec![0.0; faces.len() * crop_len];
                for (f, out) in faces.iter().zip(crops.chunks_exact_mut(crop_len)) {
                    branch.aligner.cut(items[f.item].0, f.warps[b], out);
                    if b == 0 {
                        sharpness.push(imageops::laplacian_variance(out, size));
                    }
                }
                self.batch(crops, faces.len(), size)
            })
            .collect();
        (batches, sharpness)
    }

    /// [`Self::host_crops`] made by the warp kernel on the wgpu device, into the embedders'
    /// input tensors: only the pixels each crop reads go up, as bytes. `None` on the CPU
    /// backend, with `device_crops` off, for face-api's box crops, and where the kernel fails
    /// (counted with the scoring fallbacks).
    fn device_crops(&self, items: &[(&RgbImage, Detected)], faces: &[Aligned]) -> Option<(Vec<Tensor<4>>, Vec<f32>)> {
        let affine = |w: &Warp| matches!(w, Warp::Affine(_));
        let matcher = self.matcher.as_ref().filter(|_| {
            self.config.device_crops && !faces.is_empty() && faces.iter().all(|f| f.warps.iter().all(affine))
        })?;
        let mut batches = Vec::new();
        let mut sharpness = Vec::new();
        for (b, branch) in self.stages.embedding.branches().iter().enumerate() {
            let size = branch.aligner.size();
            let sources: Vec<CropSource> = faces
                .iter()
                .filter_map(|f| match f.warps[b] {
                    Warp::Affine(m) => Some(resident::crop_source(items[f.item].0, m, size)),
                    Warp::Box(_) => None,
                })
                .collect();
            let (batch, s) = self.or_fall_back("crop_warp", resident::crops(matcher, self.device(), &sources, size))?;
            if b == 0 {
                sharpness = s;
            }
            batches.push(batch);
        }
        Some((batches, sharpness))
    }

    /// Decode, detect, choose the face per policy, check quality, and describe it.
    pub fn analyze(&self, images: &[&[u8]], policies: &[FacePolicy]) -> BatchResult<Result<Face, Rejection>> {
        assert_eq!(images.len(), policies.len());
        let start = Instant::now();
        let mut timings = Timings::default();
        let mut items = Vec::with_capacity(images.len());
        // Decode a batch at a time, so memory stays bounded by the batch size.
        let size = self.config.batch_size;
        for (chunk, pols) in images.chunks(size).zip(policies.chunks(size)) {
            let t = Instant::now();
            let mut decoded: Vec<_> = chunk.iter().map(|b| self.decode(b)).collect();
            timings.decode_ms += ms(t);
            let images: Vec<_> = decoded.iter().map(|d| d.as_ref().map(|p| &p.image)).collect();
            let batch = self.analyze_decoded(&images, pols);
            let scales: Vec<f32> = decoded.iter().map(|d| d.as_ref().map_or(1.0, |p| p.scale)).collect();
            wipe(&mut decoded);
            let items_in_original = (batch.items.into_iter().zip(scales)).map(|(f, s)| f.map(|f| f.in_original(s)));
            items.extend(items_in_original);
            timings.detect_ms += batch.timings.detect_ms;
            timings.landmarks_ms += batch.timings.landmarks_ms;
            timings.embed_ms += batch.timings.embed_ms;
        }
        timings.total_ms = ms(start);
        BatchResult { items, timings }
    }

    /// [`Self::analyze`] for photos already decoded (the service decodes on a CPU pool while
    /// the previous batch runs on the device). The caller owns, and wipes, the pixels.
    pub fn analyze_decoded(
        &self,
        decoded: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
    ) -> BatchResult<Result<Face, Rejection>> {
        let start = Instant::now();
        let (measured, embeddings, mut timings) = self.analyze_on_device(decoded, policies);
        let t = Instant::now();
        let mut descriptors = host_rows(embeddings);
        timings.embed_ms += ms(t);
        let items = measured
            .into_iter()
            .map(|m| m.map(|m| m.into_face(&mut descriptors)))
            .collect();
        timings.total_ms = ms(start);
        BatchResult { items, timings }
    }

    /// Detection, the face policy, landmarks, quality checks and the recognition network, a
    /// batch at a time; the descriptors of every accepted face stay on the device, one row each.
    fn analyze_on_device(
        &self,
        decoded: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
    ) -> (Vec<Result<Measured, Rejection>>, Option<Tensor<2>>, Timings) {
        assert_eq!(decoded.len(), policies.len());
        let mut timings = Timings::default();
        let start = Instant::now();
        let mut items: Vec<Result<Measured, Rejection>> = Vec::with_capacity(decoded.len());
        let mut embeddings = Vec::new();
        let mut rows = 0;
        for (chunk, pols) in decoded
            .chunks(self.config.batch_size)
            .zip(policies.chunks(self.config.batch_size))
        {
            let t = Instant::now();
            let ok: Vec<usize> = (0..chunk.len()).filter(|&i| chunk[i].is_ok()).collect();
            let imgs: Vec<&RgbImage> = ok.iter().map(|&i| *chunk[i].as_ref().unwrap()).collect();
            let mut detections: Vec<Vec<Detected>> = vec![Vec::new(); chunk.len()];
            for (&i, d) in ok.iter().zip(self.detect(&imgs)) {
                detections[i] = d;
            }
            timings.detect_ms += ms(t);
            // Choose one face per image, or the reason there is none.
            let mut chosen: Vec<Result<Detected, Rejection>> = (0..chunk.len())
                .map(|i| match chunk[i] {
                    Err(e) => Err(e.clone()),
                    Ok(img) => choose(&self.config, &detections[i], pols[i], img.width(), img.height()),
                })
                .collect();
            let t = Instant::now();
            let mut turned = self.turn_references(chunk, pols, &mut chosen);
            self.check_turns(chunk, pols, &mut chosen, &mut turned);
            self.descreen_references(chunk, pols, &mut chosen, &mut turned);
            self.deglare_references(chunk, pols, &mut chosen, &mut turned);
            self.deglare_unfound(chunk, pols, &mut chosen, &mut turned);
            timings.detect_ms += ms(t);
            let wanted: Vec<usize> = (0..chunk.len()).filter(|&i| chosen[i].is_ok()).collect();
            let turned_of = |i: usize| turned.iter().find(|t| t.item == i);
            let faces_in: Vec<(&RgbImage, Detected)> = wanted
                .iter()
                .map(|&i| {
                    let image = turned_of(i).map_or(*chunk[i].as_ref().unwrap(), |t| &t.image);
                    (image, *chosen[i].as_ref().unwrap())
                })
                .collect();
            // `measured` follows the order of the chosen faces; rows continue across batches.
            let (measured, batch_embeddings) = self.measure(&faces_in, &mut timings);
            drop(faces_in);
            // Faces found on a turned or descreened copy, in the photo's own pixels.
            let measured: Vec<Option<Measured>> = (wanted.iter().zip(measured))
                .map(|(&i, m)| match (m, turned_of(i)) {
                    (Some(m), Some(t)) => {
                        let img = chunk[i].as_ref().unwrap();
                        let mut m = m.turned_back(t.turn, img.width(), img.height());
                        m.descreened = t.sigma;
                        Some(m)
                    }
                    (m, _) => m,
                })
                .collect();
            turned.iter_mut().for_each(|t| turn::wipe(&mut t.image));
            let mut measured = measured.into_iter();
            items.extend(chosen.into_iter().map(|c| {
                c.and_then(|_| match measured.next().flatten() {
                    None => Err(Rejection::NoFace),
                    Some(mut face) => self.check_quality(&face).map(|()| {
                        face.row += rows;
                        face
                    }),
                })
            }));
            if let Some(e) = batch_embeddings {
                rows += e.dims()[0];
                embeddings.push(e);
            }
        }
        let embeddings = (!embeddings.is_empty()).then(|| Tensor::cat(embeddings, 0));
        timings.total_ms = ms(start);
        (items, embeddings, timings)
    }

    /// For each reference whose face is in doubt upright (see `Config::reference_rotations`),
    /// detect again on copies turned 90°, 180° and 270°, and keep the turn whose chosen face
    /// the detector is surest of: an ID card photographed sideways or upside down. Returns the
    /// turned copies that won; the caller measures the face there, then wipes them.
    fn turn_references(
        &self,
        chunk: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
        chosen: &mut [Result<Detected, Rejection>],
    ) -> Vec<Turned> {
        if !self.config.reference_rotations {
            return Vec::new();
        }
        let in_doubt = |c: &Result<Detected, Rejection>| match c {
            Err(Rejection::NoFace | Rejection::PortraitTooSmall { .. }) => true,
            // Scores are comparable with the threshold only for detectors with landmarks (the
            // one it was fitted on); others turn only when nothing usable is found upright.
            Ok(d) => d.points.is_some() && (d.face.score < self.config.reference_upright_score || !upright(d)),
            Err(_) => false,
        };
        let retry: Vec<usize> = (0..chunk.len())
            .filter(|&i| policies[i] == FacePolicy::Dominant && in_doubt(&chosen[i]))
            .collect();
        let upright_score = |i: usize| chosen[i].as_ref().map_or(f32::NEG_INFINITY, |d| d.face.score);
        let mut best: Vec<Option<Turned>> = retry.iter().map(|_| None).collect();
        for quarter in 1..=3 {
            let turn = Turn(quarter);
            let copies: Vec<RgbImage> = retry.iter().map(|&i| turn.apply(chunk[i].as_ref().unwrap())).collect();
            let found = self.detect(&copies.iter().collect::<Vec<_>>());
            for (k, (mut image, faces)) in copies.into_iter().zip(found).enumerate() {
                let face = choose(
                    &self.config,
                    &faces,
                    FacePolicy::Dominant,
                    image.width(),
                    image.height(),
                );
                let to_beat = best[k]
                    .as_ref()
                    .map_or(upright_score(retry[k]), |b| b.detected.face.score);
                match face {
                    // A turn wins only with its landmarks upright in the turned frame.
                    Ok(detected) if detected.face.score > to_beat && upright(&detected) => {
                        let item = retry[k];
                        if let Some(mut old) = best[k].replace(Turned {
                            item,
                            turn,
                            image,
                            detected,
                            sigma: 0.0,
                        }) {
                            turn::wipe(&mut old.image);
                        }
                    }
                    _ => turn::wipe(&mut image),
                }
            }
        }
        let turned: Vec<Turned> = best.into_iter().flatten().collect();
        for t in &turned {
            chosen[t.item] = Ok(t.detected);
        }
        turned
    }

    /// See `Config::reference_turn_check`: each reference's face is looked at again on a small
    /// crop around it at the four quarter turns, and a clearly better turn sends the whole
    /// photo to be searched again at that turn (kept only if its face is found upright there).
    fn check_turns(
        &self,
        chunk: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
        chosen: &mut [Result<Detected, Rejection>],
        turned: &mut Vec<Turned>,
    ) {
        if !self.config.reference_rotations || !self.config.reference_turn_check {
            return;
        }
        let items: Vec<usize> = (0..chunk.len())
            .filter(|&i| policies[i] == FacePolicy::Dominant)
            .filter(|&i| (chosen[i].as_ref()).is_ok_and(|d| d.points.is_some() && d.face.score < TURN_CHECK_BELOW))
            .collect();
        if items.is_empty() {
            return;
        }
        let mut crops = Vec::with_capacity(4 * items.len());
        for &i in &items {
            let (image, _, _) = current(chunk, turned, i);
            let Ok(d) = &chosen[i] else { unreachable!() };
            let mut crop = turn_check_crop(image, &d.face);
            crops.extend((0..4).map(|q| Turn(q).apply(&crop)));
            turn::wipe(&mut crop);
        }
        let found = self.detect(&crops.iter().collect::<Vec<_>>());
        crops.iter_mut().for_each(turn::wipe);
        let mut copies = Vec::new();
        for (k, &i) in items.iter().enumerate() {
            let surest = |q: usize| {
                found[4 * k + q]
                    .iter()
                    .map(|d| log_odds(d.face.score))
                    .fold(f32::NEG_INFINITY, f32::max)
            };
            let best = (1..4).max_by(|&a, &b| surest(a).total_cmp(&surest(b))).unwrap();
            if surest(best) >= surest(0) + TURN_MARGIN {
                let (image, turn, _) = current(chunk, turned, i);
                let q = Turn(best as u8);
                copies.push((i, Turn((turn.0 + q.0) % 4), q.apply(image), 0.0));
            }
        }
        self.adopt_corrected(copies, chosen, turned);
    }

    /// For each reference whose chosen face shows a halftone screen (see
    /// `Config::reference_descreen`), blur a copy of its photo (turned, where it was) around
    /// the face by half the screen's period and detect again; the face found there, upright,
    /// replaces the first. The copies that won join `turned`; the caller wipes them.
    fn descreen_references(
        &self,
        chunk: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
        chosen: &mut [Result<Detected, Rejection>],
        turned: &mut Vec<Turned>,
    ) {
        if !self.config.reference_descreen {
            return;
        }
        let mut copies: Vec<(usize, Turn, RgbImage, f32)> = Vec::new();
        for i in 0..chunk.len() {
            let Ok(d) = &chosen[i] else { continue };
            if policies[i] != FacePolicy::Dominant {
                continue;
            }
            let (image, turn, _) = current(chunk, turned, i);
            let Some(screen) = descreen::find_screen(image, &d.face) else {
                continue;
            };
            // A lattice coarse against the face is not a print screen (LFW's JPEG blocks,
            // resampled, have 13–17 periods across the box), and blurring it would take the
            // face's features with it.
            let periods = d.face.width.min(d.face.height) / screen.period;
            if screen.strength < self.config.reference_screen_strength
                || periods < self.config.reference_screen_min_periods
            {
                continue;
            }
            // The face and as much again on each side: what the detector and the crops read.
            let f = &d.face;
            let around = Rect::clip(
                (f.x - f.width) as f64,
                (f.y - f.height) as f64,
                3.0 * f.width as f64,
                3.0 * f.height as f64,
                image.width(),
                image.height(),
            );
            let Some(around) = around else { continue };
            let mut copy = image.clone();
            let sigma = screen.sigma(self.config.reference_descreen_sigma);
            descreen::blur_rect(&mut copy, around, sigma);
            copies.push((i, turn, copy, sigma));
        }
        self.adopt_corrected(copies, chosen, turned);
    }

    /// A reference whose portrait is washed by glare (`deglare`) is corrected around the face
    /// on a copy (of its turned or descreened copy, if any) and found again there; the copy
    /// replaces the photo only if its face is found upright.
    fn deglare_references(
        &self,
        chunk: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
        chosen: &mut [Result<Detected, Rejection>],
        turned: &mut Vec<Turned>,
    ) {
        let gate = self.config.reference_glare_gate;
        if gate <= 0.0 {
            return;
        }
        let mut copies: Vec<(usize, Turn, RgbImage, f32)> = Vec::new();
        for i in 0..chunk.len() {
            let Ok(d) = &chosen[i] else { continue };
            if policies[i] != FacePolicy::Dominant {
                continue;
            }
            let (image, turn, sigma) = current(chunk, turned, i);
            // Found on the photo itself; only a photo with glare is copied.
            if let Some(glare) = deglare::find_glare(image, &d.face, gate) {
                let mut copy = image.clone();
                glare.remove(&mut copy);
                copies.push((i, turn, copy, sigma));
            }
        }
        self.adopt_corrected(copies, chosen, turned);
    }

    /// A reference in which no face was found at all may have it hidden under glare: the most
    /// washed-out spot (`deglare::find_glare_spot`) is corrected as if a face were there, and
    /// the copy searched as a photo is (upright, then turned where in doubt: see
    /// `turn_references`); a face found upright is taken. Where none is, the refusal names the glare (`glare_on_portrait`): the
    /// person can tilt the card away from the light.
    fn deglare_unfound(
        &self,
        chunk: &[Result<&RgbImage, &Rejection>],
        policies: &[FacePolicy],
        chosen: &mut [Result<Detected, Rejection>],
        turned: &mut Vec<Turned>,
    ) {
        let gate = self.config.reference_glare_gate;
        if gate <= 0.0 {
            return;
        }
        let mut glared: Vec<(usize, RgbImage)> = Vec::new();
        for i in 0..chunk.len() {
            let (Ok(image), Err(Rejection::NoFace)) = (chunk[i], &chosen[i]) else {
                continue;
            };
            if policies[i] != FacePolicy::Dominant {
                continue;
            }
            let Some(spot) = deglare::find_glare_spot(image, self.config.reference_glare_spot) else {
                continue;
            };
            if let Some(glare) = deglare::find_glare(image, &spot, gate) {
                let mut copy = image.clone();
                glare.remove(&mut copy);
                glared.push((i, copy));
            }
        }
        if glared.is_empty() {
            return;
        }
        // The corrected copies go through the same search as photos: upright first, then the
        // other turns where the face is in doubt.
        let found = self.detect(&glared.iter().map(|(_, c)| c).collect::<Vec<_>>());
        let mut found_here: Vec<Result<Detected, Rejection>> = (glared.iter().zip(&found))
            .map(|((_, c), f)| choose(&self.config, f, FacePolicy::Dominant, c.width(), c.height()))
            .collect();
        let mut turned_here = {
            let copies: Vec<Result<&RgbImage, &Rejection>> = glared.iter().map(|(_, c)| Ok(c)).collect();
            self.turn_references(&copies, &vec![FacePolicy::Dominant; copies.len()], &mut found_here)
        };
        for (k, (item, mut copy)) in glared.into_iter().enumerate() {
            let won = match turned_here.iter().position(|t| t.item == k) {
                Some(at) => {
                    turn::wipe(&mut copy);
                    Some(turned_here.swap_remove(at))
                }
                None => match found_here[k] {
                    Ok(detected) if upright(&detected) => Some(Turned {
                        item: k,
                        turn: Turn::NONE,
                        image: copy,
                        detected,
                        sigma: 0.0,
                    }),
                    _ => {
                        turn::wipe(&mut copy);
                        None
                    }
                },
            };
            match won {
                Some(t) => {
                    chosen[item] = Ok(t.detected);
                    turned.push(Turned { item, ..t });
                }
                None => chosen[item] = Err(Rejection::GlareOnPortrait),
            }
        }
    }

    /// Finds the face again on each corrected copy (descreened, glare removed) of a reference;
    /// a copy whose face is found upright replaces the photo (or its earlier copy), any other
    /// is wiped.
    fn adopt_corrected(
        &self,
        copies: Vec<(usize, Turn, RgbImage, f32)>,
        chosen: &mut [Result<Detected, Rejection>],
        turned: &mut Vec<Turned>,
    ) {
        if copies.is_empty() {
            return;
        }
        let found = self.detect(&copies.iter().map(|c| &c.2).collect::<Vec<_>>());
        for ((item, turn, mut image, sigma), faces) in copies.into_iter().zip(found) {
            let (w, h) = (image.width(), image.height());
            match choose(&self.config, &faces, FacePolicy::Dominant, w, h) {
                Ok(detected) if upright(&detected) => {
                    chosen[item] = Ok(detected);
                    if let Some(at) = turned.iter().position(|t| t.item == item) {
                        turn::wipe(&mut turned.swap_remove(at).image);
                    }
                    turned.push(Turned {
                        item,
                        turn,
                        image,
                        detected,
                        sigma,
                    });
                }
                _ => turn::wipe(&mut image),
            }
        }
    }

    fn check_quality(&self, face: &Measured) -> Result<(), Rejection> {
        let c = &self.config;
        if c.max_yaw > 0.0 && face.yaw.abs() > c.max_yaw {
            return Err(Rejection::TurnedAway {
                yaw: face.yaw,
                max_yaw: c.max_yaw,
            });
        }
        if c.min_sharpness > 0.0 && face.sharpness < c.min_sharpness {
            return Err(Rejection::Blurred {
                sharpness: face.sharpness,
                min_sharpness: c.min_sharpness,
            });
        }
        Ok(())
    }

    /// `bytes` decoded to the working copy the stages run on (`Config::work_max_side`).
    pub fn decode(&self, bytes: &[u8]) -> Result<Photo, Rejection> {
        decode_photo(bytes, self.config.max_pixels, self.config.work_max_side)
    }

    /// Verify (probe, reference) pairs: all photos of the batch go through each stage together.
    pub fn verify(&self, pairs: &[(&[u8], &[u8])]) -> Vec<Verification> {
        let start = Instant::now();
        let mut decoded: Vec<_> = pairs.iter().map(|(p, r)| (self.decode(p), self.decode(r))).collect();
        let decode_ms = ms(start) / pairs.len().max(1) as f64;
        let mut out = self.verify_decoded(&decoded.iter().collect::<Vec<_>>());
        decoded.iter_mut().for_each(wipe_pair);
        for v in &mut out {
            v.timings.decode_ms = decode_ms;
            v.timings.total_ms += decode_ms;
        }
        out
    }

    /// [`Self::verify`] for decoded photos; each answer carries its share of the batch's stage
    /// times (decoding not included).
    ///
    /// On wgpu the descriptors never leave the device: the pairs kernel scores them in the
    /// buffers the network wrote, and only the scores are read back.
    pub fn verify_decoded(&self, pairs: &[&DecodedPair]) -> Vec<Verification> {
        let n = pairs.len();
        let images: Vec<Result<&RgbImage, &Rejection>> = (pairs.iter())
            .flat_map(|(p, r)| [p.as_ref().map(|p| &p.image), r.as_ref().map(|r| &r.image)])
            .collect();
        let policies: Vec<FacePolicy> = (0..n)
            .flat_map(|_| [FacePolicy::from(Role::Probe), FacePolicy::from(Role::Reference)])
            .collect();
        let start = Instant::now();
        let (items, embeddings, mut timings) = self.analyze_on_device(&images, &policies);
        let mut it = items.into_iter();
        let mut analysed = Vec::with_capacity(n);
        while let (Some(probe), Some(reference)) = (it.next(), it.next()) {
            analysed.push((probe, reference));
        }
        let t = Instant::now();
        let rows: Vec<Option<(usize, usize)>> = analysed
            .iter()
            .map(|(p, r)| Some((p.as_ref().ok()?.row, r.as_ref().ok()?.row)))
            .collect();
        let scores = match embeddings {
            Some(e) => self.score_rows(e, &rows),
            None => vec![None; n],
        };
        // Waiting for the network is part of scoring on an asynchronous device: count it as
        // embedding, as the host read in `analyze` is.
        timings.embed_ms += ms(t);
        timings.total_ms = ms(start);
        let n = n.max(1) as f64;
        let per_pair = Timings {
            decode_ms: 0.0,
            detect_ms: timings.detect_ms / n,
            landmarks_ms: timings.landmarks_ms / n,
            embed_ms: timings.embed_ms / n,
            total_ms: timings.total_ms / n,
        };
        let scale = |p: &Result<Photo, Rejection>| p.as_ref().map_or(1.0, |p| p.scale);
        (analysed.into_iter().zip(scores).zip(pairs))
            .map(|(((probe, reference), score), (p, r))| {
                self.decide(
                    probe.map(|m| m.face.in_original(scale(p))),
                    reference.map(|m| m.face.in_original(scale(r))),
                    score,
                    per_pair.clone(),
                )
            })
            .collect()
    }

    /// Scores for (probe row, reference row) pairs of `embeddings`, `None` where a face is
    /// missing: the WGSL kernel on the descriptors in place when on wgpu, the f64 formula on
    /// the host otherwise (or if the kernel fails, e.g. the device is lost).
    fn score_rows(&self, embeddings: Tensor<2>, rows: &[Option<(usize, usize)>]) -> Vec<Option<f32>> {
        let present: Vec<(usize, usize)> = rows.iter().flatten().copied().collect();
        let on_device = (self.matcher.as_ref())
            .and_then(|m| self.or_fall_back("pairs in place", resident::score_rows(m, &embeddings, &present)));
        let scores = on_device.unwrap_or_else(|| {
            let descriptors = to_host(embeddings);
            present
                .iter()
                .map(|&(a, b)| cosine_similarity(descriptors[a].as_slice(), descriptors[b].as_slice()))
                .collect()
        });
        where_present(rows, scores)
    }

    /// The decision for one analysed pair, given its score (`None` when a face is missing).
    pub fn decide(
        &self,
        probe: Result<FaceBox, Rejection>,
        reference: Result<FaceBox, Rejection>,
        score: Option<f32>,
        timings: Timings,
    ) -> Verification {
        let threshold = self.threshold;
        let mut reasons = Vec::new();
        let (probe_face, reference_face) = (probe.as_ref().ok().copied(), reference.as_ref().ok().copied());
        if let Err(e) = probe {
            reasons.push(Reason::new(Role::Probe, e));
        }
        if let Err(e) = reference {
            reasons.push(Reason::new(Role::Reference, e));
        }
        let decision = score.map_or(Decision::Rejected, |s| Verification::decide(s, threshold));
        Verification {
            decision,
            score,
            threshold,
            reasons,
            probe_face,
            reference_face,
            model: self.model_version().to_string(),
            device: self.device.label.clone(),
            timings,
        }
    }
}

/// A face found, measured and aligned, whose descriptor is row `row` of its batch's
/// embeddings (still on the device).
#[derive(Debug, Clone)]
struct Measured {
    face: FaceBox,
    landmarks: Vec<[f32; 2]>,
    aligned: Option<Rect>,
    sharpness: f32,
    yaw: f32,
    row: usize,
    turn: Turn,
    /// See `Face::descreened`.
    descreened: f32,
}

/// A reference's face found on a copy of its photo: turned, descreened, or both.
/// The photo item `i` is read from now: its turned or corrected copy if it has one, with the
/// copy's turn and descreening σ, else the decoded photo.
/// How much surer (log-odds) the detector must be of a face at another quarter turn of the
/// turn check's crop for the photo to be searched again at that turn.
const TURN_MARGIN: f32 = 1.0;
/// Faces the detector is surer of are not turn-checked: the check's four crop detections cost
/// about 260 ms a photo on 2 CPU cores (100 LFW photos, `facegate embed`: 14.6 → 40.5 s).
/// The 4 wrongly turned DevTrain card faces scored 0.72–0.997; 17 of 272 plain LFW photos and
/// 79 of 267 cards score under 0.999.
const TURN_CHECK_BELOW: f32 = 0.999;
/// The size (px) the turn check scales a face's longer side down to: large for MTCNN, and a
/// crop of three times that is a cheap detection.
const TURN_CHECK_FACE_PX: f32 = 80.0;

/// The square three times `face`'s longer side around it (clipped to the photo), scaled so
/// the face is at most `TURN_CHECK_FACE_PX`; the caller wipes it.
fn turn_check_crop(image: &RgbImage, face: &FaceBox) -> RgbImage {
    let side = 3.0 * face.width.max(face.height);
    let (cx, cy) = (face.x + face.width / 2.0, face.y + face.height / 2.0);
    let r = Rect::clip(
        f64::from(cx - side / 2.0),
        f64::from(cy - side / 2.0),
        f64::from(side),
        f64::from(side),
        image.width(),
        image.height(),
    )
    .unwrap_or_else(|| imageops::full(image));
    let mut crop = image::imageops::crop_imm(image, r.x, r.y, r.width, r.height).to_image();
    let scale = (TURN_CHECK_FACE_PX / face.width.max(face.height)).min(1.0);
    if scale < 1.0 {
        let (w, h) = (
            ((r.width as f32 * scale).round() as u32).max(1),
            ((r.height as f32 * scale).round() as u32).max(1),
        );
        let small = image::imageops::resize(&crop, w, h, image::imageops::FilterType::Triangle);
        turn::wipe(&mut crop);
        crop = small;
    }
    crop
}

/// A detector's score as log-odds, where scores near 1 still differ.
fn log_odds(p: f32) -> f32 {
    let p = p.clamp(1e-7, 1.0 - 1e-7);
    (p / (1.0 - p)).ln()
}

fn current<'a>(
    chunk: &[Result<&'a RgbImage, &Rejection>],
    turned: &'a [Turned],
    i: usize,
) -> (&'a RgbImage, Turn, f32) {
    match turned.iter().find(|t| t.item == i) {
        Some(t) => (&t.image, t.turn, t.sigma),
        None => (*chunk[i].as_ref().expect("a decoded photo"), Turn::NONE, 0.0),
    }
}

struct Turned {
    item: usize,
    turn: Turn,
    image: RgbImage,
    detected: Detected,
    /// The descreening blur's σ in the copy's pixels; 0 when only turned.
    sigma: f32,
}

/// A face to describe: its item, landmarks, and how each embedder's crop is cut.
struct Aligned {
    item: usize,
    points: Vec<[f64; 2]>,
    warps: Vec<Warp>,
}

impl Measured {
    /// The face with its descriptor, taken (not copied) from the host rows.
    fn into_face(self, descriptors: &mut [Option<Descriptor>]) -> Face {
        Face {
            face: self.face,
            landmarks: self.landmarks,
            aligned: self.aligned,
            descriptor: descriptors[self.row].take().expect("one descriptor per measured face"),
            sharpness: self.sharpness,
            yaw: self.yaw,
            rotation: self.turn.degrees(),
            descreened: self.descreened,
        }
    }

    /// This face, measured on a copy of a `width`×`height` photo turned by `turn`, in the
    /// photo's own pixels.
    fn turned_back(mut self, turn: Turn, width: u32, height: u32) -> Self {
        self.face = turn.box_back(self.face, width, height);
        for p in &mut self.landmarks {
            *p = turn.point_back(*p, width, height);
        }
        self.aligned = self.aligned.map(|r| turn.rect_back(r, width, height));
        self.turn = turn;
        self
    }
}

/// Read embeddings back to the host, one descriptor per row; the flat copy is wiped.
fn to_host(embeddings: Tensor<2>) -> Vec<Descriptor> {
    let dim = embeddings.dims()[1];
    let mut flat: Vec<f32> = embeddings.into_data().try_to_vec().expect("f32 descriptors");
    let descriptors = flat.chunks_exact(dim).map(|d| Descriptor::new(d.to_vec())).collect();
    flat.zeroize();
    descriptors
}

/// [`to_host`], each row in a slot that [`Measured::into_face`] takes it from.
fn host_rows(embeddings: Option<Tensor<2>>) -> Vec<Option<Descriptor>> {
    embeddings
        .map_or_else(Vec::new, to_host)
        .into_iter()
        .map(Some)
        .collect()
}

/// Scores for the slots of `slots` that are present, in order; `None` for the others.
fn where_present<T>(slots: &[Option<T>], scores: Vec<f32>) -> Vec<Option<f32>> {
    let mut scores = scores.into_iter();
    slots.iter().map(|s| s.as_ref().and_then(|_| scores.next())).collect()
}

/// Wipe decoded pixels now rather than whenever the allocator reuses them.
pub fn wipe(photos: &mut [Result<Photo, Rejection>]) {
    photos.iter_mut().flatten().for_each(Photo::wipe);
}

/// [`wipe`] both photos of a pair.
pub fn wipe_pair(pair: &mut DecodedPair) {
    wipe(std::slice::from_mut(&mut pair.0));
    wipe(std::slice::from_mut(&mut pair.1));
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Whether a detection's landmarks, where it has them, put the mouth below the eyes (within
/// 45° of straight down): a face boxed on a turned photo often has them anywhere.
fn upright(d: &Detected) -> bool {
    d.points.is_none_or(|p| {
        let eyes = [(p[0][0] + p[1][0]) / 2.0, (p[0][1] + p[1][1]) / 2.0];
        let mouth = [(p[3][0] + p[4][0]) / 2.0, (p[3][1] + p[4][1]) / 2.0];
        let (dx, dy) = (mouth[0] - eyes[0], mouth[1] - eyes[1]);
        dy > dx.abs()
    })
}

/// The face a photo is about, per policy, or why there is none (see
/// `Config::reference_dominance`).
pub fn choose(
    config: &Config,
    faces: &[Detected],
    policy: FacePolicy,
    img_w: u32,
    img_h: u32,
) -> Result<Detected, Rejection> {
    let (w, h) = (img_w as f32, img_h as f32);
    let size = |f: &Detected| f.face.width.min(f.face.height).max(0.0) as u32;
    // A face cut by the border counts for the part in the picture: MTCNN boxes a
    // bystander's half face as if the rest were there.
    let area = |f: &Detected| {
        let b = &f.face;
        let cw = (b.x + b.width).min(w) - b.x.max(0.0);
        let ch = (b.y + b.height).min(h) - b.y.max(0.0);
        cw.max(0.0) * ch.max(0.0)
    };
    // Faces too small to verify do not make a photo ambiguous (a crowd far behind).
    let mut usable: Vec<&Detected> = faces.iter().filter(|f| size(f) >= config.min_face_px).collect();
    usable.sort_by(|a, b| area(b).total_cmp(&area(a)));
    let covers_centre = |f: &&&Detected| {
        let b = &f.face;
        b.x <= w / 2.0 && w / 2.0 <= b.x + b.width && b.y <= h / 2.0 && h / 2.0 <= b.y + b.height
    };
    let off_centre = |f: &Detected| {
        let b = &f.face;
        (b.x + b.width / 2.0 - w / 2.0).powi(2) + (b.y + b.height / 2.0 - h / 2.0).powi(2)
    };
    match (usable.as_slice(), policy) {
        ([], _) => match faces.iter().max_by(|a, b| size(a).cmp(&size(b))) {
            None => Err(Rejection::NoFace),
            Some(largest) if policy == FacePolicy::Dominant => Err(Rejection::PortraitTooSmall {
                size_px: size(largest),
                min_px: config.min_face_px,
            }),
            Some(largest) => Err(Rejection::FaceTooSmall {
                size_px: size(largest),
                min_px: config.min_face_px,
            }),
        },
        ([one], _) => Ok(**one),
        ([first, second, ..], FacePolicy::Dominant) if area(first) >= config.reference_dominance * area(second) => {
            Ok(**first)
        }
        // Otherwise the photo's subject is the face over its centre (the nearest one, if
        // boxes overlap there), as dlib's pipeline picks it.
        (many, FacePolicy::Dominant) => many
            .iter()
            .filter(covers_centre)
            .min_by(|a, b| off_centre(a).total_cmp(&off_centre(b)))
            .map(|f| **f)
            .ok_or(Rejection::MultipleFaces { count: many.len() }),
        (many, _) => Err(Rejection::MultipleFaces { count: many.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, width: f32, height: f32) -> Detected {
        Detected::from(FaceBox {
            x,
            y,
            width,
            height,
            score: 1.0,
        })
    }

    #[test]
    fn a_reference_takes_the_dominant_face_then_the_one_over_the_centre() {
        let c = Config::default();
        let subject = face(80.0, 60.0, 95.0, 125.0);
        // A bystander cut by the border: its box (169×207) is larger than the subject's, but
        // only 67×122 of it is in the 250×250 picture, so it does not dominate.
        let cut = face(-102.0, 128.0, 169.0, 207.0);
        assert_eq!(choose(&c, &[cut, subject], FacePolicy::Dominant, 250, 250), Ok(subject));
        // Two boxes over the centre: the nearer one.
        let off = face(107.0, 42.0, 110.0, 151.0);
        let near = face(68.0, 63.0, 93.0, 134.0);
        assert_eq!(choose(&c, &[off, near], FacePolicy::Dominant, 250, 250), Ok(near));
        // A main photo twice the area of a ghost image, neither over the centre.
        let main = face(10.0, 10.0, 100.0, 120.0);
        let ghost = face(300.0, 100.0, 60.0, 70.0);
        assert_eq!(choose(&c, &[ghost, main], FacePolicy::Dominant, 400, 250), Ok(main));
        // Similar faces, none over the centre: refused.
        let left = face(0.0, 0.0, 80.0, 90.0);
        let right = face(300.0, 0.0, 80.0, 90.0);
        assert_eq!(
            choose(&c, &[left, right], FacePolicy::Dominant, 400, 250),
            Err(Rejection::MultipleFaces { count: 2 })
        );
        // A probe must show one face, wherever the others are.
        assert_eq!(
            choose(&c, &[cut, subject], FacePolicy::Single, 250, 250),
            Err(Rejection::MultipleFaces { count: 2 })
        );
    }

    #[test]
    fn faces_too_small_to_verify_do_not_count() {
        let c = Config {
            min_face_px: 32,
            ..Config::default()
        };
        let subject = face(80.0, 60.0, 95.0, 125.0);
        let far = face(10.0, 10.0, 20.0, 25.0);
        assert_eq!(choose(&c, &[far, subject], FacePolicy::Single, 250, 250), Ok(subject));
        assert_eq!(
            choose(&c, &[far], FacePolicy::Single, 250, 250),
            Err(Rejection::FaceTooSmall {
                size_px: 20,
                min_px: 32
            })
        );
        assert_eq!(choose(&c, &[], FacePolicy::Dominant, 250, 250), Err(Rejection::NoFace));
        // A reference is a document's portrait: the person is told to come closer to the card.
        assert_eq!(
            choose(&c, &[far], FacePolicy::Dominant, 250, 250),
            Err(Rejection::PortraitTooSmall {
                size_px: 20,
                min_px: 32
            })
        );
    }
}
