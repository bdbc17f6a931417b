//! The face networks in burn (MTCNN from facenet-pytorch; dlib's ResNet; the networks of
//! `@vladmandic/face-api` 1.7.15), on any burn `Device` (flex on the CPU, wgpu on a GPU or
//! lavapipe). Inputs are NCHW RGB batches: in 0..255 for the face-api networks and the ResNet,
//! which normalise themselves; MTCNN's nets take facenet-pytorch's `(x − 127.5) / 128`, applied
//! while its crops are resampled.

pub mod card;
pub mod detector;
pub mod landmarks;
pub mod mtcnn;
pub mod recognition;
pub mod registry;
pub mod weights;

use burn::prelude::*;

pub use card::{Card, Task, Template};
pub use detector::TinyFaceDetector;
pub use landmarks::{FaceLandmark68Net, LandmarkVariant};
pub use recognition::FaceRecognitionNet;
pub use registry::{DetectorNet, Embedder, Registry};
pub use weights::Weights;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weight file: {0}")]
    Format(#[from] facegate_tfjs::TfjsError),
    #[error("weight `{0}` is missing")]
    MissingWeight(String),
    #[error("model registry: {0}")]
    Registry(String),
    #[error("layer `{layer}`: {error}")]
    Layer {
        layer: String,
        error: facegate_conv::BadLayer,
    },
    #[error("weight `{name}` has shape {found:?}, the architecture needs {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

/// The converted weights built into the binary, so a fresh clone runs offline (model cards:
/// `models/README.md`). Statics, not consts: a const's 50 MB were copied into the crate's
/// metadata and every artifact that used them (a 212 MB .rmeta, 270 MB .rlib; now 55 / 167).
pub mod embedded {
    /// dlib's ResNet with its float weights (face_recognition_models 0.3.0, converted from
    /// dlib's `.dat` by `facegate-import-dlib`).
    pub static DLIB_RESNET: &[u8] = include_bytes!("../../../models/dlib_face_recognition_resnet_model_v1.safetensors");
    /// The same network as face-api.js ships it (uint8-quantised).
    pub static FACE_RECOGNITION: &[u8] = include_bytes!("../../../models/face_recognition_model.safetensors");
    pub static TINY_FACE_DETECTOR: &[u8] = include_bytes!("../../../models/tiny_face_detector_model.safetensors");
    pub static FACE_LANDMARK_68: &[u8] = include_bytes!("../../../models/face_landmark_68_model.safetensors");
    pub static FACE_LANDMARK_68_TINY: &[u8] = include_bytes!("../../../models/face_landmark_68_tiny_model.safetensors");
    /// MTCNN (facenet-pytorch 2.6.0, converted by `facegate-import-torch`).
    pub static MTCNN_PNET: &[u8] = include_bytes!("../../../models/mtcnn_pnet.safetensors");
    pub static MTCNN_RNET: &[u8] = include_bytes!("../../../models/mtcnn_rnet.safetensors");
    pub static MTCNN_ONET: &[u8] = include_bytes!("../../../models/mtcnn_onet.safetensors");
    /// faceplugin's MobileFaceNet-512 (npm faceplugin-face-recognition-js 0.0.1), as shipped.
    pub static FACEPLUGIN_MOBILEFACENET_512: &[u8] =
        include_bytes!("../../../models/faceplugin-mobilefacenet-512/fr_feature.onnx");
}

/// `[1, 3, 1, 1]` per-channel means, broadcast over a batch.
fn mean_rgb_tensor(mean: [f32; 3], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(mean.to_vec(), [1, 3, 1, 1]), device)
}
