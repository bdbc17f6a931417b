//! The verification engine: batches of photos in, faces and decisions out.
//!
//! Every stage works on a batch (one network call per stage per batch); a single photo is a
//! batch of one. A photo that fails any stage fails alone, with a typed [`Rejection`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use burn::prelude::*;
use facegate_core::{
    Alignment, Calibration, ChipTargets, Config, ConfigError, Decision, Descriptor, Detector, FaceBox, Reason,
    Rejection, Role, Timings, Verification, cosine_similarity,
};
use facegate_kernels::{Gallery, KernelError, MAX_K, Matcher, Storage, reference};
use facegate_models::{
    DetectorChoice, FaceModels, LandmarkVariant, Localizer, ModelError, Registry, Template, detector, landmarks,
};
use image::RgbImage;
use zeroize::Zeroize;

use crate::align;
use crate::decode::decode;
use crate::device::{DeviceChoice, SelectedDevice, select};
use crate::imageops::{self, Rect};
use crate::mtcnn::{self, MtcnnSettings};

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

/// A face the detector found, with its five landmarks when the detector gives them (MTCNN:
/// eye centres, nose tip, mouth corners, in image pixels).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Detected {
    #[serde(flatten)]
    pub face: FaceBox,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<[[f64; 2]; 5]>,
}

impl From<FaceBox> for Detected {
    fn from(face: FaceBox) -> Self {
        Self { face, points: None }
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

pub struct Engine {
    models: FaceModels,
    config: Config,
    device: SelectedDevice,
    /// The WGSL pairs kernel, when the networks run on wgpu; `None` scores on the CPU.
    matcher: Option<Matcher>,
    /// Batches the kernel failed to score, scored on the host instead (see [`Self::scoring_fallbacks`]).
    fallbacks: AtomicU64,
    /// Names the detector, alignment and weights: scores (and so thresholds) belong to all three.
    model_version: String,
    /// Where a score becomes a match (cosine similarity).
    threshold: f32,
    mtcnn: MtcnnSettings,
}

/// A face's landmarks in image pixels, and the crop the landmark net saw (face-api only).
type Landmarks = (Vec<[f64; 2]>, Option<Rect>);

/// The id of a pipeline's models, written into calibrations, reports and audit records:
/// detector, alignment, embedder. An embedder from the registry is named with the start of its
/// sha256, so a calibration fits one file, not one name.
pub fn model_version(c: &Config) -> String {
    let registry = Registry::with_dir(c.models_dir.as_deref()).unwrap_or_else(|_| Registry::builtin());
    model_id(c, registry.get(&c.embedder).map(|e| &e.card))
}

/// [`model_version`] for an embedder whose card is at hand (the engine's, already loaded).
fn model_id(c: &Config, card: Option<&facegate_models::Card>) -> String {
    let detector = match (c.detector, c.full_landmarks) {
        (Detector::Mtcnn, _) => "mtcnn-facenet-pytorch-2.6.0",
        (Detector::TinyFaceDetector, false) => "tinyface+lm68tiny-face-api-1.7.15",
        (Detector::TinyFaceDetector, true) => "tinyface+lm68-face-api-1.7.15",
    };
    let template = card.and_then(|c| c.template).unwrap_or(Template::DlibChip150);
    let alignment = match (template, c.alignment, c.detector, c.chip_targets) {
        (Template::Arcface112, ..) => "arcface-112",
        (Template::DlibChip150, Alignment::DlibChip, Detector::Mtcnn, ChipTargets::Measured) => {
            "dlib-chip-150-mtcnn-targets"
        }
        (Template::DlibChip150, Alignment::DlibChip, _, _) => "dlib-chip-150",
        (Template::DlibChip150, Alignment::FaceApi, _, _) => "face-api-box-150",
    };
    // The two dlib builds keep the ids their calibrations were written with.
    let embedder = match (c.embedder.as_str(), card) {
        ("dlib-resnet-v1", _) => "dlib-resnet-v1-f32".to_string(),
        ("dlib-resnet-v1-face-api-uint8", _) => "dlib-resnet-v1-face-api-uint8".to_string(),
        (name, Some(card)) => format!("{name}@{}", &card.sha256[..12.min(card.sha256.len())]),
        (name, None) => name.to_string(),
    };
    format!("{detector}/{alignment}/{embedder}")
}

/// A (probe, reference) pair after decoding: each photo, or why it could not be decoded.
pub type DecodedPair = (Result<RgbImage, Rejection>, Result<RgbImage, Rejection>);

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
        let detector = match config.detector {
            Detector::Mtcnn => DetectorChoice::Mtcnn,
            Detector::TinyFaceDetector if config.full_landmarks => DetectorChoice::TinyFace(LandmarkVariant::Full),
            Detector::TinyFaceDetector => DetectorChoice::TinyFace(LandmarkVariant::Tiny),
        };
        let registry = Registry::with_dir(config.models_dir.as_deref())?;
        let models = FaceModels::load(detector, &registry, &config.embedder, &device.device)?;
        let model_version = model_id(&config, Some(&models.embedder.card));
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
        // A calibration's threshold, else the configured one, else the embedder's.
        let threshold = config.threshold.or(models.embedder.card.threshold).ok_or_else(|| {
            EngineError::Config(ConfigError::Invalid(format!(
                "model {} has no threshold of its own: set `threshold` (--threshold) or a calibration",
                config.embedder
            )))
        })?;
        if models.embedder.card.template == Some(Template::Arcface112) && config.alignment == Alignment::FaceApi {
            return Err(EngineError::Config(ConfigError::Invalid(
                "alignment = \"face_api\" makes 150 px dlib crops; this embedder takes the ArcFace template".into(),
            )));
        }
        let mtcnn = MtcnnSettings {
            min_face_px: config.mtcnn_min_face_px,
            min_face_fraction: config.mtcnn_min_face_fraction,
            factor: config.mtcnn_factor,
            thresholds: config.mtcnn_thresholds,
        };
        // The matcher compiles its kernels for the device and queue burn runs on.
        let matcher = device
            .wgpu
            .as_ref()
            .map(|w| Matcher::with_device(w.device.clone(), w.queue.clone(), device.label.clone()));
        Ok(Self {
            models,
            threshold,
            model_version,
            config,
            device,
            matcher,
            fallbacks: AtomicU64::new(0),
            mtcnn,
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

    /// How many batches the WGSL kernels failed to score on wgpu (device lost, limits), so
    /// that the f64 formula on the host scored them instead. Decisions stay right either way;
    /// a count above 0 means the GPU path is not doing its job.
    pub fn scoring_fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }

    /// The kernel's result, or `None` after counting and logging its failure, so the caller
    /// scores on the host.
    fn or_fall_back<T, E: std::fmt::Display>(&self, kernel: &str, result: Result<T, E>) -> Option<T> {
        result
            .inspect_err(|error| {
                let total = self.fallbacks.fetch_add(1, Ordering::Relaxed) + 1;
                // The decisions stay right (the host scores them), but the GPU path is broken.
                tracing::warn!(kernel, %error, total, "a WGSL kernel failed; scoring on the host instead");
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

    fn device(&self) -> &Device {
        &self.models.device
    }

    /// NCHW batch from planar RGB crops; our host copy is handed to burn (not kept).
    fn batch(&self, data: Vec<f32>, n: usize, size: usize) -> Tensor<4> {
        Tensor::from_data(TensorData::new(data, [n, 3, size, size]), self.device())
    }

    /// The faces in each image, in image pixels: MTCNN's boxes and five landmarks (largest
    /// first), or TinyFaceDetector's boxes (best first).
    pub fn detect(&self, images: &[&RgbImage]) -> Vec<Vec<Detected>> {
        match &self.models.localizer {
            Localizer::Mtcnn(nets) => {
                let mut found = mtcnn::detect(nets, images, &self.mtcnn, self.device());
                // A face MTCNN misses is a person refused without a good reason: images where
                // nothing was found are searched again with each looser set of thresholds.
                for &thresholds in &self.config.mtcnn_retry_thresholds {
                    let empty: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_empty()).collect();
                    if empty.is_empty() {
                        break;
                    }
                    let settings = MtcnnSettings {
                        thresholds,
                        ..self.mtcnn
                    };
                    let again: Vec<&RgbImage> = empty.iter().map(|&i| images[i]).collect();
                    for (&i, faces) in empty.iter().zip(mtcnn::detect(nets, &again, &settings, self.device())) {
                        found[i] = faces;
                    }
                }
                found
                    .into_iter()
                    .map(|faces| {
                        faces
                            .into_iter()
                            .map(|d| Detected {
                                face: d.face,
                                points: Some(d.points),
                            })
                            .collect()
                    })
                    .collect()
            }
            Localizer::FaceApi { .. } => self
                .detect_tiny(images)
                .into_iter()
                .map(|boxes| boxes.into_iter().map(Detected::from).collect())
                .collect(),
        }
    }

    /// TinyFaceDetector on each image. Images where nothing is found are searched again
    /// "zoomed out" (`detector_zoom_out`): the detector misses faces that fill most of the
    /// frame, as close-up selfies, ID portraits and LFW's crops do.
    fn detect_tiny(&self, images: &[&RgbImage]) -> Vec<Vec<FaceBox>> {
        let mut found = self.detect_in(images, 0.0);
        for &zoom in &self.config.detector_zoom_out {
            let retry: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_empty()).collect();
            if retry.is_empty() {
                break;
            }
            let again: Vec<&RgbImage> = retry.iter().map(|&i| images[i]).collect();
            for (&i, boxes) in retry.iter().zip(self.detect_in(&again, zoom)) {
                found[i] = boxes;
            }
        }
        found
    }

    /// One detector pass with a zero margin of `margin` × the longer side around each image.
    fn detect_in(&self, images: &[&RgbImage], margin: f64) -> Vec<Vec<FaceBox>> {
        let Localizer::FaceApi { detector, .. } = &self.models.localizer else {
            return vec![Vec::new(); images.len()];
        };
        if images.is_empty() {
            return Vec::new();
        }
        let size = self.config.detector_input_size;
        let plane = 3 * size * size;
        let margins: Vec<u32> = images
            .iter()
            .map(|img| (img.width().max(img.height()) as f64 * margin).round() as u32)
            .collect();
        let mut input = vec![0.0f32; images.len() * plane];
        for ((img, &m), out) in images.iter().zip(&margins).zip(input.chunks_exact_mut(plane)) {
            imageops::crop_square_resize(img, imageops::with_margin(img, m), false, size, out);
        }
        let raw = detector.forward(self.batch(input, images.len(), size));
        let [_, ch, grid, _] = raw.dims();
        let raw: Vec<f32> = raw.into_data().try_to_vec().expect("detector output is f32");
        images
            .iter()
            .zip(&margins)
            .zip(raw.chunks_exact(ch * grid * grid))
            .map(|((img, &m), out)| {
                let (w, h) = ((img.width() + 2 * m) as f64, (img.height() + 2 * m) as f64);
                let scale = size as f64 / w.max(h);
                let reshaped = ((w * scale).round(), (h * scale).round());
                let m = m as f64;
                detector::decode(out, grid, reshaped, self.config.detector_score_threshold)
                    .into_iter()
                    .map(|b| FaceBox {
                        x: (b.x * w - m) as f32,
                        y: (b.y * h - m) as f32,
                        width: (b.width * w) as f32,
                        height: (b.height * h) as f32,
                        score: b.score as f32,
                    })
                    .collect()
            })
            .collect()
    }

    /// 68 landmarks (image pixels) for each (image, face box), with the crop they were found
    /// in; `None` if the box is outside the image, or without face-api's landmark net.
    pub fn landmarks(&self, items: &[(&RgbImage, FaceBox)]) -> Vec<Option<(Vec<[f64; 2]>, Rect)>> {
        let Localizer::FaceApi { landmarks: net, .. } = &self.models.localizer else {
            return vec![None; items.len()];
        };
        let size = landmarks::INPUT_SIZE;
        let plane = 3 * size * size;
        let rects: Vec<Option<Rect>> = items
            .iter()
            .map(|(img, b)| {
                Rect::clip(
                    b.x as f64,
                    b.y as f64,
                    b.width as f64,
                    b.height as f64,
                    img.width(),
                    img.height(),
                )
            })
            .collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| rects[i].is_some()).collect();
        let mut out = vec![None; items.len()];
        if valid.is_empty() {
            return out;
        }
        let mut input = vec![0.0f32; valid.len() * plane];
        for (&i, buf) in valid.iter().zip(input.chunks_exact_mut(plane)) {
            imageops::crop_square_resize(items[i].0, rects[i].unwrap(), true, size, buf);
        }
        let pred: Vec<f32> = net
            .forward(self.batch(input, valid.len(), size))
            .into_data()
            .try_to_vec()
            .expect("landmark output is f32");
        for (&i, p) in valid.iter().zip(pred.chunks_exact(2 * landmarks::NUM_POINTS)) {
            let rect = rects[i].unwrap();
            let face = items[i].1;
            // face-api `postProcess`: undo the centred square padding of the 112 input.
            let (w, h) = (rect.width as f64, rect.height as f64);
            let s = size as f64 / w.max(h);
            let (ws, hs) = (w * s, h * s);
            let pad_x = if ws < hs { (hs - ws).abs() / 2.0 } else { 0.0 };
            let pad_y = if hs < ws { (hs - ws).abs() / 2.0 } else { 0.0 };
            let points = p
                .chunks_exact(2)
                .map(|xy| {
                    let rx = ((xy[0] as f64 * size as f64) - pad_x) / ws;
                    let ry = ((xy[1] as f64 * size as f64) - pad_y) / hs;
                    // Relative to the (floored) crop, shifted by the unfloored detection box,
                    // exactly as face-api's `FaceLandmarks.shiftBy` does.
                    [rx * w + face.x as f64, ry * h + face.y as f64]
                })
                .collect();
            out[i] = Some((points, rect));
        }
        out
    }

    /// Descriptors for planar RGB crops of the embedder's input size, one network call.
    pub fn embed_crops(&self, crops: Vec<f32>) -> Vec<Descriptor> {
        self.embed(crops).map_or_else(Vec::new, to_host)
    }

    /// The embedder's input side, in pixels (its card's).
    pub fn crop_size(&self) -> usize {
        self.models.embedder.input_size()
    }

    /// The embedding network's output for planar RGB crops, `[n, dim]`, left on the device;
    /// `None` for no crops.
    fn embed(&self, crops: Vec<f32>) -> Option<Tensor<2>> {
        let size = self.crop_size();
        let n = crops.len() / (3 * size * size);
        (n > 0).then(|| self.models.embedder.forward(self.batch(crops, n, size)))
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

    /// The recognition crop for a face: dlib's chip (from five or 68 landmarks), or face-api's
    /// padded landmark box (68 landmarks and their crop only). `None` if it cannot be made.
    pub fn align(
        &self,
        img: &RgbImage,
        points: &[[f64; 2]],
        crop: Option<Rect>,
        out: &mut [f32],
    ) -> Option<Option<Rect>> {
        let size = self.crop_size();
        if self.models.embedder.card.template == Some(Template::Arcface112) {
            let five = match <&[[f64; 2]; 5]>::try_from(points) {
                Ok(five) => *five,
                Err(_) if points.len() == landmarks::NUM_POINTS => align::five_from_68(points),
                Err(_) => return None,
            };
            let to_input = align::arcface_transform(&five, size);
            imageops::warp_affine(img, imageops::invert_affine(to_input), size, out);
            return Some(None);
        }
        match (self.config.alignment, <&[[f64; 2]; 5]>::try_from(points)) {
            (Alignment::DlibChip, Ok(five)) => {
                let to_chip = align::five_point_chip_transform(five, size, self.config.chip_targets);
                imageops::warp_affine(img, imageops::invert_affine(to_chip), size, out);
                Some(None)
            }
            (Alignment::DlibChip, Err(_)) if points.len() == landmarks::NUM_POINTS => {
                let to_chip = align::dlib_chip_transform(points, size);
                imageops::warp_affine(img, imageops::invert_affine(to_chip), size, out);
                Some(None)
            }
            (Alignment::FaceApi, Err(_)) if points.len() == landmarks::NUM_POINTS => {
                let crop = crop?;
                let rect = face_api_aligned_rect(points, crop.width, crop.height, img.width(), img.height())?;
                imageops::crop_square_resize(img, rect, true, size, out);
                Some(Some(rect))
            }
            _ => None,
        }
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
        let size = self.crop_size();
        let plane = 3 * size * size;
        let mut crops = Vec::new();
        let mut out: Vec<Option<Measured>> = vec![None; items.len()];
        let mut row = 0;
        for (i, m) in marks.into_iter().enumerate() {
            let Some((points, landmark_crop)) = m else { continue };
            // Write each crop straight into the batch buffer; drop it again if alignment fails.
            let start = crops.len();
            crops.resize(start + plane, 0.0);
            let Some(aligned) = self.align(items[i].0, &points, landmark_crop, &mut crops[start..]) else {
                crops.truncate(start);
                continue;
            };
            out[i] = Some(Measured {
                face: items[i].1.face,
                yaw: yaw(&points),
                landmarks: points.iter().map(|p| [p[0] as f32, p[1] as f32]).collect(),
                aligned,
                sharpness: imageops::laplacian_variance(&crops[start..], size),
                row,
            });
            row += 1;
        }
        let embeddings = self.embed(crops);
        timings.embed_ms += ms(t);
        (out, embeddings)
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
            let mut decoded: Vec<_> = chunk.iter().map(|b| decode(b, self.config.max_pixels)).collect();
            timings.decode_ms += ms(t);
            let batch = self.analyze_decoded(&decoded.iter().map(|d| d.as_ref()).collect::<Vec<_>>(), pols);
            wipe(&mut decoded);
            items.extend(batch.items);
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
            let chosen: Vec<Result<Detected, Rejection>> = (0..chunk.len())
                .map(|i| match chunk[i] {
                    Err(e) => Err(e.clone()),
                    Ok(img) => choose(&self.config, &detections[i], pols[i], img.width(), img.height()),
                })
                .collect();
            let wanted: Vec<usize> = (0..chunk.len()).filter(|&i| chosen[i].is_ok()).collect();
            let faces_in: Vec<(&RgbImage, Detected)> = wanted
                .iter()
                .map(|&i| (*chunk[i].as_ref().unwrap(), *chosen[i].as_ref().unwrap()))
                .collect();
            // `measured` follows the order of the chosen faces; rows continue across batches.
            let (measured, batch_embeddings) = self.measure(&faces_in, &mut timings);
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

    /// Verify (probe, reference) pairs: all photos of the batch go through each stage together.
    pub fn verify(&self, pairs: &[(&[u8], &[u8])]) -> Vec<Verification> {
        let start = Instant::now();
        let max = self.config.max_pixels;
        let mut decoded: Vec<_> = pairs.iter().map(|(p, r)| (decode(p, max), decode(r, max))).collect();
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
        let images: Vec<Result<&RgbImage, &Rejection>> =
            pairs.iter().flat_map(|(p, r)| [p.as_ref(), r.as_ref()]).collect();
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
        analysed
            .into_iter()
            .zip(scores)
            .map(|((probe, reference), score)| {
                self.decide(
                    probe.map(|m| m.face),
                    reference.map(|m| m.face),
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
            .and_then(|m| self.or_fall_back("pairs in place", crate::resident::score_rows(m, &embeddings, &present)));
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
        }
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
pub fn wipe(images: &mut [Result<RgbImage, Rejection>]) {
    for img in images.iter_mut().flatten() {
        let mut raw = std::mem::take(img).into_raw();
        raw.zeroize();
    }
}

/// [`wipe`] both photos of a pair.
pub fn wipe_pair(pair: &mut DecodedPair) {
    wipe(std::slice::from_mut(&mut pair.0));
    wipe(std::slice::from_mut(&mut pair.1));
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn mean(points: &[[f64; 2]]) -> (f64, f64) {
    let n = points.len() as f64;
    let (x, y) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + p[0], b + p[1]));
    (x / n, y / n)
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

/// Eye centres, nose tip, mouth corners: MTCNN's five as they are, or from iBUG's 68.
pub fn five_points(p: &[[f64; 2]]) -> [(f64, f64); 5] {
    if let [l, r, n, ml, mr] = p {
        return [l, r, n, ml, mr].map(|q| (q[0], q[1]));
    }
    [
        mean(&p[36..42]),
        mean(&p[42..48]),
        (p[30][0], p[30][1]),
        (p[48][0], p[48][1]),
        (p[54][0], p[54][1]),
    ]
}

/// Head yaw from landmarks: the nose tip's offset from the eyes' midpoint, in half
/// inter-ocular distances (0 frontal; about ±1 when the nose reaches an eye in profile).
pub fn yaw(p: &[[f64; 2]]) -> f32 {
    let [l, r, nose, _, _] = five_points(p);
    let (mx, my) = ((l.0 + r.0) / 2.0, (l.1 + r.1) / 2.0);
    let (ex, ey) = (r.0 - l.0, r.1 - l.1);
    let half = (ex * ex + ey * ey).sqrt() / 2.0;
    if half == 0.0 {
        return 0.0;
    }
    // Project the nose offset on the eye axis.
    (((nose.0 - mx) * ex + (nose.1 - my) * ey) / (2.0 * half) / half) as f32
}

/// face-api's descriptor crop (`FaceLandmarks68.alignDlib`, as `withFaceDescriptors` uses it):
/// a square of side ⌊d / 0.45⌋, d the mean eye-to-mouth distance, placed at 0.5 / 0.43 of its
/// side from the centroid of the eye and mouth centres; axis-aligned, then clipped and floored
/// as `extractFaceTensors` does. `crop_w`/`crop_h` are the landmark crop's size, which face-api
/// (oddly) uses as the image size in its bound.
pub fn face_api_aligned_rect(points: &[[f64; 2]], crop_w: u32, crop_h: u32, img_w: u32, img_h: u32) -> Option<Rect> {
    let [l, r, _, _, _] = five_points(points);
    let m = mean(&points[48..68]);
    let dist = |p: (f64, f64)| ((m.0 - p.0).powi(2) + (m.1 - p.1).powi(2)).sqrt();
    let size = ((dist(l) + dist(r)) / 2.0 / 0.45).floor();
    let (cx, cy) = ((l.0 + r.0 + m.0) / 3.0, (l.1 + r.1 + m.1) / 3.0);
    let x = (cx - 0.5 * size).max(0.0).floor();
    let y = (cy - 0.43 * size).max(0.0).floor();
    let (w, h) = (size.min(crop_w as f64 + x), size.min(crop_h as f64 + y));
    Rect::clip(x, y, w, h, img_w, img_h)
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
    }
}
