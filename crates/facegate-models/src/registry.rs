//! The model registry: the models built into the binary, plus every directory with a
//! `model.toml` in a models directory (`facegate models add` writes them). An embedder is
//! loaded by name; the engine takes whatever the card describes.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use facegate_onnx::OnnxNet;
use sha2::{Digest, Sha256};

use crate::card::{Card, Colour, Format, Task};
use crate::mtcnn::Mtcnn;
use crate::{FaceLandmark68Net, FaceRecognitionNet, LandmarkVariant, ModelError, TinyFaceDetector, Weights, embedded};

/// The cards of the built-in models (weights in [`embedded`]).
static BUILTIN: &[(&str, &[u8])] = &[
    (
        include_str!("../../../models/cards/dlib-resnet-v1.toml"),
        embedded::DLIB_RESNET,
    ),
    (
        include_str!("../../../models/cards/dlib-resnet-v1-face-api-uint8.toml"),
        embedded::FACE_RECOGNITION,
    ),
    (
        include_str!("../../../models/faceplugin-mobilefacenet-512/model.toml"),
        embedded::FACEPLUGIN_MOBILEFACENET_512,
    ),
    (include_str!("../../../models/cards/mtcnn.toml"), embedded::MTCNN_ONET),
    (
        include_str!("../../../models/cards/tiny-face-detector.toml"),
        embedded::TINY_FACE_DETECTOR,
    ),
    (
        include_str!("../../../models/cards/face-landmark-68.toml"),
        embedded::FACE_LANDMARK_68,
    ),
    (
        include_str!("../../../models/cards/face-landmark-68-tiny.toml"),
        embedded::FACE_LANDMARK_68_TINY,
    ),
];

/// Where a model's weights are.
#[derive(Debug, Clone)]
pub enum Origin {
    Embedded(&'static [u8]),
    /// A directory holding `model.toml` and the file it names.
    Dir(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub card: Card,
    pub origin: Origin,
}

impl Entry {
    pub fn origin_label(&self) -> String {
        match &self.origin {
            Origin::Embedded(_) => "built in".into(),
            Origin::Dir(d) => d.display().to_string(),
        }
    }

    /// The weight file's bytes, checked against the card's sha256.
    pub fn bytes(&self) -> Result<std::borrow::Cow<'static, [u8]>, ModelError> {
        let bytes: std::borrow::Cow<'static, [u8]> = match &self.origin {
            Origin::Embedded(b) => std::borrow::Cow::Borrowed(b),
            Origin::Dir(d) => {
                let path = d.join(&self.card.file);
                std::borrow::Cow::Owned(
                    std::fs::read(&path).map_err(|e| ModelError::Registry(format!("{}: {e}", path.display())))?,
                )
            }
        };
        let found = sha256_hex(&bytes);
        // MTCNN's card names its O-Net; its P- and R-Net are checked by models/IMPORTED.json.
        if found != self.card.sha256 {
            return Err(ModelError::Registry(format!(
                "{}: the weights' sha256 is {found}, the card says {}",
                self.card.name, self.card.sha256
            )));
        }
        Ok(bytes)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone)]
pub struct Registry {
    entries: Vec<Entry>,
}

impl Registry {
    /// The models built into the binary.
    pub fn builtin() -> Self {
        let entries = BUILTIN
            .iter()
            .map(|(card, bytes)| Entry {
                card: Card::from_toml(card).expect("built-in cards parse"),
                origin: Origin::Embedded(bytes),
            })
            .collect();
        Self { entries }
    }

    /// The built-in models and every `DIR/*/model.toml`; a user model may not take a built-in
    /// name (a calibration names its model, so a name must mean one file).
    pub fn with_dir(dir: Option<&Path>) -> Result<Self, ModelError> {
        let mut registry = Self::builtin();
        let Some(dir) = dir else { return Ok(registry) };
        let listing = match std::fs::read_dir(dir) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(registry),
            Err(e) => return Err(ModelError::Registry(format!("{}: {e}", dir.display()))),
        };
        let mut dirs: Vec<PathBuf> = listing
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("model.toml").is_file())
            .collect();
        dirs.sort();
        for d in dirs {
            let path = d.join("model.toml");
            let text =
                std::fs::read_to_string(&path).map_err(|e| ModelError::Registry(format!("{}: {e}", path.display())))?;
            let card = Card::from_toml(&text).map_err(|e| ModelError::Registry(format!("{}: {e}", path.display())))?;
            card.validate()
                .map_err(|e| ModelError::Registry(format!("{}: {e}", path.display())))?;
            if registry.get(&card.name).is_some() {
                return Err(ModelError::Registry(format!(
                    "{}: the name `{}` is taken",
                    path.display(),
                    card.name
                )));
            }
            registry.entries.push(Entry {
                card,
                origin: Origin::Dir(d),
            });
        }
        Ok(registry)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.card.name == name)
    }

    /// The entry called `name`, which must do `task`; the error lists the known names.
    pub fn for_task(&self, name: &str, task: Task) -> Result<&Entry, ModelError> {
        let entry = self.get(name).ok_or_else(|| {
            let names: Vec<&str> = self
                .entries
                .iter()
                .filter(|e| e.card.task == task)
                .map(|e| e.card.name.as_str())
                .collect();
            ModelError::Registry(format!("no {} `{name}` (known: {})", task.as_str(), names.join(", ")))
        })?;
        if entry.card.task != task {
            return Err(ModelError::Registry(format!(
                "`{name}` is {}, not {}",
                entry.card.task.with_article(),
                task.with_article()
            )));
        }
        Ok(entry)
    }

    /// The embedder called `name`, on `device`.
    pub fn embedder(&self, name: &str, device: &Device) -> Result<Embedder, ModelError> {
        Embedder::load(self.for_task(name, Task::Embedder)?, device)
    }

    /// The detector called `name`, on `device`. Detectors are built in: a detector's output
    /// needs decoding that a card cannot describe (anchors, pyramids, stages), so each has its
    /// adapter here, chosen by the card.
    pub fn detector(&self, name: &str, device: &Device) -> Result<DetectorNet, ModelError> {
        let entry = self.for_task(name, Task::Detector)?;
        let st = Weights::from_safetensors;
        match (entry.card.format, entry.card.name.as_str()) {
            (Format::Builtin, "mtcnn") => Ok(DetectorNet::Mtcnn(Box::new(Mtcnn::load(
                &st(embedded::MTCNN_PNET)?,
                &st(embedded::MTCNN_RNET)?,
                &st(&entry.bytes()?)?,
                device,
            )?))),
            (Format::Builtin, "tiny-face-detector") => Ok(DetectorNet::TinyFace(Box::new(TinyFaceDetector::load(
                &st(&entry.bytes()?)?,
                device,
            )?))),
            _ => Err(ModelError::Registry(format!(
                "detector `{name}`: facegate has no adapter for it (built in: mtcnn, tiny-face-detector)"
            ))),
        }
    }

    /// The landmark net called `name`, on `device` (face-api's 68-point nets, built in).
    pub fn landmarks(&self, name: &str, device: &Device) -> Result<FaceLandmark68Net, ModelError> {
        let entry = self.for_task(name, Task::Landmarks)?;
        let variant = match (entry.card.format, entry.card.name.as_str()) {
            (Format::Builtin, "face-landmark-68") => LandmarkVariant::Full,
            (Format::Builtin, "face-landmark-68-tiny") => LandmarkVariant::Tiny,
            _ => {
                return Err(ModelError::Registry(format!(
                    "landmark net `{name}`: facegate has no adapter for it (built in: face-landmark-68, face-landmark-68-tiny)"
                )));
            }
        };
        FaceLandmark68Net::load(&Weights::from_safetensors(&entry.bytes()?)?, variant, device)
    }
}

/// A detector's networks.
#[derive(Debug)]
pub enum DetectorNet {
    // Boxed: the module trees are kilobytes each, and of different sizes.
    /// Boxes and five landmarks from one staged detector.
    Mtcnn(Box<Mtcnn>),
    /// Boxes only: landmarks come from a landmark net.
    TinyFace(Box<TinyFaceDetector>),
}

/// The network behind an embedder.
#[derive(Debug)]
enum Net {
    /// dlib's ResNet, written in Rust (it normalises its input itself).
    Resnet(Box<FaceRecognitionNet>),
    Onnx(Box<OnnxNet>),
}

/// A face embedder: aligned crops in (RGB, 0..255, `input_size` square), one vector per face out.
#[derive(Debug)]
pub struct Embedder {
    pub card: Card,
    net: Net,
    mean: Tensor<4>,
}

impl Embedder {
    fn load(entry: &Entry, device: &Device) -> Result<Self, ModelError> {
        let card = entry.card.clone();
        card.validate().map_err(ModelError::Registry)?;
        let bytes = entry.bytes()?;
        let net = match card.format {
            Format::Onnx => {
                let net =
                    OnnxNet::load(&bytes, device).map_err(|e| ModelError::Registry(format!("{}: {e}", card.name)))?;
                let s = card.input_size;
                let dims = &net.input().dims;
                let fits = dims.len() == 4
                    && [Some(3), Some(s), Some(s)]
                        .iter()
                        .zip(&dims[1..])
                        .all(|(want, have)| have.is_none() || have == want);
                if !fits {
                    return Err(ModelError::Registry(format!(
                        "{}: the card says 3×{s}×{s} input, the graph takes {}",
                        card.name,
                        net.input()
                    )));
                }
                Net::Onnx(Box::new(net))
            }
            Format::Builtin => {
                let resnet = FaceRecognitionNet::load(&Weights::from_safetensors(&bytes)?, device)?;
                // dlib's input layer divides by 256, face-api's port by 255 (cards: `scale`).
                Net::Resnet(Box::new(resnet.with_input_divisor(1.0 / card.scale)))
            }
        };
        let mean = Tensor::from_data(TensorData::new(card.mean.to_vec(), [1, 3, 1, 1]), device);
        let embedder = Self { card, net, mean };
        // The card's output length, checked once on a blank face rather than trusted.
        let probe = Tensor::zeros([1, 3, embedder.card.input_size, embedder.card.input_size], device);
        let dim = embedder.try_forward(probe)?.dims()[1];
        if dim != embedder.card.dim {
            return Err(ModelError::Registry(format!(
                "{}: the card says {} dimensions, the network gives {dim}",
                embedder.card.name, embedder.card.dim
            )));
        }
        Ok(embedder)
    }

    pub fn input_size(&self) -> usize {
        self.card.input_size
    }

    pub fn dim(&self) -> usize {
        self.card.dim
    }

    /// `[N, 3, S, S]` RGB crops in 0..255 → `[N, dim]` embeddings (not normalised).
    pub fn forward(&self, rgb: Tensor<4>) -> Tensor<2> {
        // The input's shape is the card's, checked against the graph at load.
        self.try_forward(rgb).expect("embedder input matches its card")
    }

    fn try_forward(&self, rgb: Tensor<4>) -> Result<Tensor<2>, ModelError> {
        match &self.net {
            Net::Resnet(net) => Ok(net.forward(rgb)),
            Net::Onnx(net) => {
                let x = match self.card.colour {
                    Colour::Rgb => rgb,
                    Colour::Bgr => rgb.flip([1]),
                };
                let x = (x - self.mean.clone()) * self.card.scale;
                net.forward_rows(x)
                    .map_err(|e| ModelError::Registry(format!("{}: {e}", self.card.name)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_card_names_the_weights_built_in() {
        for entry in Registry::builtin().entries() {
            let Origin::Embedded(bytes) = entry.origin else {
                unreachable!()
            };
            assert_eq!(sha256_hex(bytes), entry.card.sha256, "{}", entry.card.name);
            entry.card.validate().unwrap();
        }
    }

    #[test]
    fn detectors_and_landmark_nets_load_by_name_and_task() {
        let (registry, device) = (Registry::builtin(), Device::flex());
        assert!(matches!(registry.detector("mtcnn", &device), Ok(DetectorNet::Mtcnn(_))));
        assert!(matches!(
            registry.detector("tiny-face-detector", &device),
            Ok(DetectorNet::TinyFace(_))
        ));
        assert!(registry.landmarks("face-landmark-68-tiny", &device).is_ok());
        let wrong = |r: Result<(), ModelError>| r.unwrap_err().to_string();
        let e = wrong(registry.detector("faceplugin-mobilefacenet-512", &device).map(drop));
        assert!(e.contains("an embedder, not a detector"), "{e}");
        let e = wrong(registry.landmarks("mtcnn", &device).map(drop));
        assert!(e.contains("not a landmark net"), "{e}");
        let e = wrong(registry.detector("retinaface", &device).map(drop));
        assert!(e.contains("no detector `retinaface`") && e.contains("mtcnn"), "{e}");
    }
}
