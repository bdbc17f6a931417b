//! The verification pipeline: decode → detect → landmarks → align/crop → embed → compare.

pub mod decode;
pub mod device;
pub mod engine;
pub mod imageops;
pub mod resident;

pub use decode::decode;
pub use device::{DeviceChoice, SelectedDevice};
pub use engine::{BatchResult, DecodedPair, Engine, EngineError, Face, FacePolicy, wipe, wipe_pair};
