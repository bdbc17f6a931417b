//! The face networks of `@vladmandic/face-api` 1.7.15 in burn, on any burn `Device` (flex on
//! the CPU, wgpu on a GPU or lavapipe). Inputs are NCHW RGB batches in 0..255; each network
//! applies its own normalisation.

pub mod detector;
pub mod landmarks;
pub mod recognition;
pub mod weights;

use burn::prelude::*;

pub use detector::TinyFaceDetector;
pub use landmarks::{FaceLandmark68Net, LandmarkVariant};
pub use recognition::FaceRecognitionNet;
pub use weights::Weights;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("weight file: {0}")]
    Format(#[from] facegate_tfjs::TfjsError),
    #[error("weight `{0}` is missing")]
    MissingWeight(String),
    #[error("weight `{name}` has shape {found:?}, the architecture needs {expected:?}")]
    WeightShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
}

/// The converted weights built into the binary, so a fresh clone runs offline.
pub mod embedded {
    pub const FACE_RECOGNITION: &[u8] = include_bytes!("../../../models/face_recognition_model.safetensors");
    pub const TINY_FACE_DETECTOR: &[u8] = include_bytes!("../../../models/tiny_face_detector_model.safetensors");
    pub const FACE_LANDMARK_68: &[u8] = include_bytes!("../../../models/face_landmark_68_model.safetensors");
    pub const FACE_LANDMARK_68_TINY: &[u8] = include_bytes!("../../../models/face_landmark_68_tiny_model.safetensors");
    /// Identifies the weights in audit records and reports.
    pub const MODEL_VERSION: &str = "face-api-1.7.15/dlib-resnet-v1";
}

/// The three networks of the verification pipeline, loaded on one device.
#[derive(Debug)]
pub struct FaceModels {
    pub detector: TinyFaceDetector,
    pub landmarks: FaceLandmark68Net,
    pub recognition: FaceRecognitionNet,
    pub device: Device,
}

impl FaceModels {
    /// The embedded face-api weights.
    pub fn embedded(landmarks: LandmarkVariant, device: &Device) -> Result<Self, ModelError> {
        let lm = match landmarks {
            LandmarkVariant::Full => embedded::FACE_LANDMARK_68,
            LandmarkVariant::Tiny => embedded::FACE_LANDMARK_68_TINY,
        };
        Ok(Self {
            detector: TinyFaceDetector::load(&Weights::from_safetensors(embedded::TINY_FACE_DETECTOR)?, device)?,
            landmarks: FaceLandmark68Net::load(&Weights::from_safetensors(lm)?, landmarks, device)?,
            recognition: FaceRecognitionNet::load(&Weights::from_safetensors(embedded::FACE_RECOGNITION)?, device)?,
            device: device.clone(),
        })
    }
}

/// `[1, 3, 1, 1]` per-channel means, broadcast over a batch.
fn mean_rgb_tensor(mean: [f32; 3], device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(mean.to_vec(), [1, 3, 1, 1]), device)
}
