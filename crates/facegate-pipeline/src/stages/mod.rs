//! The engine's stages — detect → landmarks → align → embed — each built from the model
//! registry by what the configuration names. The engine runs whatever this gives it: adding a
//! model is a card (and, for a new detector architecture, an adapter here), not engine code.

pub mod align;
pub mod detect;
pub mod embed;
pub mod landmarks;

use burn::prelude::*;
use facegate_core::{Calibration, Config, ConfigError, Detector};
use facegate_models::{Card, DetectorNet, ModelError, Registry, Task, registry::Origin};

pub use align::{Aligner, Warp};
pub use detect::{Detect, Detected, MtcnnDetect, TinyFaceDetect};
pub use embed::{Branch, Embedding, ImpostorStats};
pub use landmarks::{FaceApi68, Landmark};

/// The calibrations we ship (LFW View 1 DevTrain), by the model id they name: the default
/// threshold of a model without one on its card (a fusion), and the impostor statistics a
/// fusion normalises by.
const SHIPPED_CALIBRATIONS: &[&str] = &[
    include_str!("../../../../models/calibration/mtcnn-dlib-resnet-v1-f32.lfw-devtrain.toml"),
    include_str!("../../../../models/calibration/mtcnn-faceplugin-mobilefacenet-512.lfw-devtrain.toml"),
    include_str!("../../../../models/calibration/mtcnn-dlib-resnet-v1+faceplugin-mobilefacenet-512.lfw-devtrain.toml"),
];

/// The shipped calibration of model `id`, if there is one.
pub fn shipped_calibration(id: &str) -> Option<Calibration> {
    SHIPPED_CALIBRATIONS
        .iter()
        .map(|text| Calibration::parse(text).expect("shipped calibrations parse"))
        .find(|c| c.model == id)
}

/// The embedder names in `config.embedder`: one name, or several joined by `+` (score fusion).
pub fn embedder_names(config: &Config) -> Vec<&str> {
    config.embedder.split('+').map(str::trim).collect()
}

/// The configured detector: its registry name, its landmark net's, and its part of a model id.
fn detector_names(config: &Config) -> (&'static str, Option<&'static str>, &'static str) {
    match (config.detector, config.full_landmarks) {
        (Detector::Mtcnn, _) => ("mtcnn", None, "mtcnn-facenet-pytorch-2.6.0"),
        (Detector::TinyFaceDetector, true) => (
            "tiny-face-detector",
            Some("face-landmark-68"),
            "tinyface+lm68-face-api-1.7.15",
        ),
        (Detector::TinyFaceDetector, false) => (
            "tiny-face-detector",
            Some("face-landmark-68-tiny"),
            "tinyface+lm68tiny-face-api-1.7.15",
        ),
    }
}

/// The id of a pipeline's models, written into calibrations, reports and audit records:
/// detector, then alignment/embedder for each embedder (joined by `+` for a fusion). An
/// embedder from the registry is named with the start of its sha256, so a calibration fits
/// one file, not one name.
pub fn model_id(config: &Config, branches: &[(&Card, Aligner)]) -> String {
    let (_, _, detector) = detector_names(config);
    let parts: Vec<String> = branches
        .iter()
        .map(|(card, aligner)| {
            // The two dlib builds keep the ids their calibrations were written with.
            let embedder = match card.name.as_str() {
                "dlib-resnet-v1" => "dlib-resnet-v1-f32".to_string(),
                "dlib-resnet-v1-face-api-uint8" => card.name.clone(),
                name => format!("{name}@{}", &card.sha256[..12.min(card.sha256.len())]),
            };
            format!("{}/{embedder}", aligner.id(config.detector))
        })
        .collect();
    format!("{detector}/{}", parts.join("+"))
}

/// The cards and alignments of the configured embedders, without loading any network.
pub fn embedder_cards<'r>(config: &Config, registry: &'r Registry) -> Result<Vec<(&'r Card, Aligner)>, StageError> {
    let names = embedder_names(config);
    if names.iter().any(|n| n.is_empty()) || names.len() > 4 {
        return Err(StageError::Config(ConfigError::Invalid(format!(
            "embedder `{}`: one model name, or two to four joined by `+`",
            config.embedder
        ))));
    }
    let mut seen = std::collections::BTreeSet::new();
    names
        .iter()
        .map(|&name| {
            if !seen.insert(name) {
                return Err(StageError::Config(ConfigError::Invalid(format!(
                    "embedder `{}` names {name} twice",
                    config.embedder
                ))));
            }
            let card = &registry.for_task(name, Task::Embedder)?.card;
            Ok((card, Aligner::for_embedder(card, config)?))
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The stages of one pipeline, loaded on one device.
pub struct Stages {
    pub detect: Box<dyn Detect>,
    /// For a detector that gives no landmarks.
    pub landmarks: Option<Box<dyn Landmark>>,
    pub embedding: Embedding,
    /// See [`model_id`].
    pub model_id: String,
    /// The shipped calibration of this exact pipeline, if any.
    pub shipped: Option<Calibration>,
    /// The card of every model loaded (detector, landmark net, embedders), for `/info`.
    pub cards: Vec<Card>,
}

impl Stages {
    pub fn load(config: &Config, registry: &Registry, device: &Device) -> Result<Self, StageError> {
        // Names first: a misspelt model fails before any network is loaded.
        let cards = embedder_cards(config, registry)?;
        let model_id = model_id(config, &cards);
        let (detector, landmark_net, _) = detector_names(config);
        let detect: Box<dyn Detect> = match registry.detector(detector, device)? {
            DetectorNet::Mtcnn(nets) => Box::new(MtcnnDetect::new(nets, config, device)),
            DetectorNet::TinyFace(net) => Box::new(TinyFaceDetect::new(net, config, device)),
        };
        let landmarks: Option<Box<dyn Landmark>> = match (detect.gives_landmarks(), landmark_net) {
            (true, _) => None,
            (false, Some(name)) => Some(Box::new(FaceApi68::new(registry.landmarks(name, device)?, device))),
            (false, None) => {
                return Err(StageError::Config(ConfigError::Invalid(format!(
                    "detector {detector} gives no landmarks and no landmark net is configured"
                ))));
            }
        };
        let shipped = shipped_calibration(&model_id);
        let mut loaded: Vec<Card> = [Some(detector), landmark_net.filter(|_| landmarks.is_some())]
            .into_iter()
            .flatten()
            .filter_map(|name| registry.get(name).map(|e| e.card.clone()))
            .collect();
        loaded.extend(cards.iter().map(|(card, _)| (*card).clone()));
        let mut parts = Vec::with_capacity(cards.len());
        for &(card, aligner) in &cards {
            let embedder = registry.embedder(&card.name, device)?;
            parts.push(Branch { aligner, embedder });
        }
        let embedding = if parts.len() == 1 {
            Embedding::single(parts.remove(0))
        } else {
            let mut fused = Vec::with_capacity(parts.len());
            for (branch, &(card, aligner)) in parts.into_iter().zip(&cards) {
                let stats = impostor_stats(config, registry, card, aligner)?;
                fused.push((branch, stats));
            }
            Embedding::fused(fused)
        };
        Ok(Self {
            detect,
            landmarks,
            embedding,
            model_id,
            shipped,
            cards: loaded,
        })
    }
}

/// One fused embedder's impostor statistics: from its shipped calibration, or from
/// `calibration.toml` beside a user model's card (`facegate eval --write-calibration`).
fn impostor_stats(
    config: &Config,
    registry: &Registry,
    card: &Card,
    aligner: Aligner,
) -> Result<ImpostorStats, StageError> {
    let id = model_id(config, &[(card, aligner)]);
    let beside = registry.get(&card.name).and_then(|e| match &e.origin {
        Origin::Dir(d) => Calibration::read(&d.join("calibration.toml")).ok(),
        Origin::Embedded(_) => None,
    });
    let calibration = beside.filter(|c| c.model == id).or_else(|| shipped_calibration(&id));
    match calibration
        .as_ref()
        .and_then(|c| Some((c.impostor_mean?, c.impostor_std?)))
    {
        Some((mean, std)) if std > 0.0 && mean.is_finite() => Ok(ImpostorStats { mean, std }),
        _ => Err(StageError::Config(ConfigError::Invalid(format!(
            "score fusion needs the impostor mean and deviation of {id}: write a calibration of that \
             model alone (`facegate eval --all-pairs --write-calibration DIR/{}/calibration.toml`)",
            card.name
        )))),
    }
}
