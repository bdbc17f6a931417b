//! Model cards (`model.toml`): what a model file is, where it came from, and how to feed it.
//! The registry routes a model to its task by its card, as InsightFace's `model_zoo` routes a
//! file by its inputs and outputs; the engine reads no model's name.

use serde::{Deserialize, Serialize};

/// What a model does in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Detector,
    Landmarks,
    Embedder,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detector => "detector",
            Self::Landmarks => "landmark net",
            Self::Embedder => "embedder",
        }
    }

    /// "a detector", "an embedder".
    pub fn with_article(self) -> String {
        match self {
            Self::Embedder => "an embedder".into(),
            other => format!("a {}", other.as_str()),
        }
    }
}

/// How the weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An ONNX graph, run by `facegate-onnx`.
    Onnx,
    /// Built in: an architecture written in Rust, its weights in safetensors.
    Builtin,
}

/// Where the face's landmarks go in the network's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// dlib's 150 px chip (`get_face_chip_details(shape, 150, 0.25)`).
    DlibChip150,
    /// InsightFace's five-point ArcFace template in a 112 px square (scaled to `input_size`).
    Arcface112,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DlibChip150 => "dlib_chip150",
            Self::Arcface112 => "arcface112",
        }
    }
}

/// The channel order the network takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    #[default]
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Source {
    /// The registry package the file comes from (`npm:faceplugin-face-recognition-js`, …).
    pub package: String,
    pub version: String,
    /// The file's path inside the package.
    pub path: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Licence {
    pub package: String,
    pub weights: String,
}

/// Accuracy: what the source publishes, and what we measured (LFW View 1 DevTest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Accuracy {
    pub published: String,
    pub devtest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    pub name: String,
    pub task: Task,
    pub format: Format,
    /// The weights, relative to the card's directory.
    pub file: String,
    /// sha256 of `file`, checked when the model is loaded.
    pub sha256: String,
    /// The square input's side, in pixels (embedders).
    #[serde(default)]
    pub input_size: usize,
    #[serde(default)]
    pub colour: Colour,
    /// `x = (pixel − mean) · scale`, per channel in the network's channel order.
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "one")]
    pub scale: f32,
    /// Where the five landmarks go in the input (embedders).
    #[serde(default)]
    pub template: Option<Template>,
    /// The embedding's length (embedders).
    #[serde(default)]
    pub dim: usize,
    /// The decision threshold (cosine) when none is configured: the best accuracy on LFW
    /// View 1 DevTrain in facegate's pipeline. Strict operating points: a calibration.
    #[serde(default)]
    pub threshold: Option<f32>,
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub licence: Licence,
    #[serde(default)]
    pub accuracy: Accuracy,
    /// Anything a user of the model should know (training data, caveats).
    #[serde(default)]
    pub notes: String,
}

fn one() -> f32 {
    1.0
}

impl Card {
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a card serialises")
    }

    /// Checks a card can be used as an embedder before anything is loaded.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!("model name `{}`: use letters, digits, - _ .", self.name));
        }
        if self.task == Task::Embedder {
            if !(16..=1024).contains(&self.input_size) {
                return Err(format!("input_size {} is outside 16..=1024", self.input_size));
            }
            if self.template.is_none() {
                return Err("an embedder needs a template (arcface112 or dlib_chip150)".into());
            }
        }
        if !(self.scale.is_finite() && self.scale > 0.0) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err("mean must be finite and scale positive".into());
        }
        if self.task == Task::Embedder && !(2..=4096).contains(&self.dim) {
            return Err(format!("an embedder's dim {} is outside 2..=4096", self.dim));
        }
        if self.sha256.len() != 64 || !self.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err("sha256 must be 64 hex digits".into());
        }
        Ok(())
    }
}
