//! The verification pipeline: decode → detect (+ landmarks) → align → embed → compare.

pub mod align;
pub mod decode;
pub mod deglare;
pub mod descreen;
pub mod device;
pub mod engine;
pub mod imageops;
pub mod mtcnn;
pub mod resident;
pub mod stages;
pub mod turn;

pub use decode::{Photo, decode, decode_photo, photo_bytes};
pub use device::{DeviceChoice, SelectedDevice};
pub use engine::{
    BatchResult, DecodedPair, Detected, Engine, EngineError, EngineInfo, Face, FacePolicy, ModelInfo, model_version,
    wipe, wipe_pair,
};
