//! dlib `dlib_face_recognition_resnet_model_v1.dat` → safetensors with face-api's names.
//!
//! [`serial`] reads dlib's primitives, [`net`] the layer structure of a serialised DNN (any
//! mix of the layer kinds this model uses), and [`resnet`] checks that structure against the
//! face recognition ResNet and names its tensors as face-api.js does, in TensorFlow layouts,
//! so `facegate-models` loads the float weights exactly like face-api's uint8 copy.
//! The whole file is parsed and must be consumed; nothing unexpected is skipped.

pub mod net;
pub mod resnet;
pub mod serial;

use facegate_tfjs::NamedTensor;

/// The PyPI package the `.dat` ships in, recorded as provenance in the output.
pub const PACKAGE: &str = "face_recognition_models";
pub const PACKAGE_VERSION: &str = "0.3.0";
pub const MODEL: &str = "dlib_face_recognition_resnet_model_v1";

#[derive(Debug, thiserror::Error)]
pub enum DlibError {
    #[error("truncated at offset {offset}: needed {needed} bytes, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad integer control byte {control:#04x} at offset {offset}")]
    BadInteger { offset: usize, control: u8 },
    #[error("{what} {value} at offset {offset} is out of range")]
    OutOfRange {
        offset: usize,
        what: &'static str,
        value: i128,
    },
    #[error("bad bool byte {byte:#04x} at offset {offset} (dlib writes '0' or '1')")]
    BadBool { offset: usize, byte: u8 },
    #[error("unexpected {what} at offset {offset}: expected {expected}, found {found}")]
    Unexpected {
        offset: usize,
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("unknown layer `{name}` at offset {offset}")]
    UnknownLayer { offset: usize, name: String },
    #[error("unsupported {what} at offset {offset}")]
    Unsupported { offset: usize, what: String },
    #[error("{layer} at offset {offset}: its params tensor holds {params} values, its aliases need {needed}")]
    ParamSize {
        layer: &'static str,
        offset: usize,
        params: usize,
        needed: usize,
    },
    #[error("{count} bytes left over after the network at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("not dlib_face_recognition_resnet_model_v1: {position}: expected {expected}, found {found}")]
    Architecture {
        position: String,
        expected: String,
        found: String,
    },
}

/// Parse the `.dat` bytes and return face-api's 117 tensors.
pub fn convert(dat: &[u8]) -> Result<Vec<NamedTensor>, DlibError> {
    resnet::face_api_tensors(&net::parse(dat)?)
}
