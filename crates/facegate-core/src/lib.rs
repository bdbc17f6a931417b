//! Shared types of facegate: what a verification returns, why a photo is refused, how the
//! engine is configured, and the zeroizing buffers biometric data lives in.

pub mod calibration;
pub mod config;
pub mod secret;

use serde::{Deserialize, Serialize};

pub use calibration::{CalibratedPoint, Calibration};
pub use config::{Alignment, ChipTargets, Config, ConfigError, DEFAULT_EMBEDDER, Detector, Overrides};
pub use secret::{Descriptor, ImageBytes};

/// The outcome of a 1:1 check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Match,
    NoMatch,
    /// At least one photo could not be used; `reasons` says why, so the person can retry.
    Rejected,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Self::Match, Self::NoMatch, Self::Rejected];

    /// The name as serialised (`match`, `no_match`, `rejected`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Match => "match",
            Self::NoMatch => "no_match",
            Self::Rejected => "rejected",
        }
    }
}

/// Which of the two photos a rejection concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Probe,
    Reference,
}

impl Role {
    /// The name as serialised (`probe`, `reference`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Reference => "reference",
        }
    }
}

/// Why a photo cannot be used. Each has a stable `code` and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    #[error("the file is empty")]
    EmptyImage,
    #[error("the file is not a supported image (JPEG, PNG or WebP)")]
    UnsupportedFormat,
    #[error("the image is damaged or incomplete: {detail}")]
    CorruptImage { detail: String },
    #[error("the image is too large ({width}x{height} pixels; the limit is {max_pixels} pixels)")]
    ImageTooLarge { width: u32, height: u32, max_pixels: u64 },
    #[error("no face was found; face the camera in good light")]
    NoFace,
    #[error("{count} faces were found; only one person may be in the photo")]
    MultipleFaces { count: usize },
    #[error("the face is too small ({size_px} px, at least {min_px} px needed); move closer")]
    FaceTooSmall { size_px: u32, min_px: u32 },
    /// A reference (an ID document's portrait) whose face is too small: the person can move
    /// the camera closer to the card.
    #[serde(rename = "document_portrait_too_small")]
    #[error(
        "the portrait on the document is too small ({size_px} px, at least {min_px} px needed); move the camera closer to the card"
    )]
    PortraitTooSmall { size_px: u32, min_px: u32 },
    /// A reference (an ID document) with no face found and a spot washed out by light off
    /// the card: the person can tilt the card away from the light.
    #[error("light reflected off the document hides its portrait; tilt the card away from the light")]
    GlareOnPortrait,
    #[error("the face is blurred (sharpness {sharpness:.1}, at least {min_sharpness:.1} needed); hold still")]
    Blurred { sharpness: f32, min_sharpness: f32 },
    #[error("the face is turned away (yaw {yaw:.2}, at most {max_yaw:.2}); look straight at the camera")]
    TurnedAway { yaw: f32, max_yaw: f32 },
}

impl Rejection {
    /// Every code [`Rejection::code`] gives (metrics start each at zero).
    pub const CODES: &[&str] = &[
        "empty_image",
        "unsupported_format",
        "corrupt_image",
        "image_too_large",
        "no_face",
        "multiple_faces",
        "face_too_small",
        "document_portrait_too_small",
        "glare_on_portrait",
        "blurred",
        "turned_away",
    ];

    /// The machine-readable code, as serialised.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyImage => "empty_image",
            Self::UnsupportedFormat => "unsupported_format",
            Self::CorruptImage { .. } => "corrupt_image",
            Self::ImageTooLarge { .. } => "image_too_large",
            Self::NoFace => "no_face",
            Self::MultipleFaces { .. } => "multiple_faces",
            Self::FaceTooSmall { .. } => "face_too_small",
            Self::PortraitTooSmall { .. } => "document_portrait_too_small",
            Self::GlareOnPortrait => "glare_on_portrait",
            Self::Blurred { .. } => "blurred",
            Self::TurnedAway { .. } => "turned_away",
        }
    }

    /// Rejections about the file itself rather than the face in it.
    pub fn is_image_error(&self) -> bool {
        matches!(
            self,
            Self::EmptyImage | Self::UnsupportedFormat | Self::CorruptImage { .. } | Self::ImageTooLarge { .. }
        )
    }
}

/// A rejection of one photo of a pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    pub role: Role,
    pub code: String,
    pub message: String,
    pub detail: Rejection,
}

impl Reason {
    pub fn new(role: Role, rejection: Rejection) -> Self {
        Self {
            role,
            code: rejection.code().to_string(),
            message: rejection.to_string(),
            detail: rejection,
        }
    }
}

/// A face box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
    pub score: f32,
}

impl FaceBox {
    /// This box, found in a copy of the photo made `scale` times smaller, in the original's
    /// pixels.
    pub fn in_original(self, scale: f32) -> Self {
        Self {
            x: self.x / scale,
            y: self.y / scale,
            width: self.width / scale,
            height: self.height / scale,
            score: self.score,
        }
    }
}

/// Time spent per stage, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    pub decode_ms: f64,
    pub detect_ms: f64,
    pub landmarks_ms: f64,
    pub embed_ms: f64,
    pub total_ms: f64,
}

/// The answer to one verification. Carries no image data and no descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verification {
    pub decision: Decision,
    /// Cosine similarity of the two face descriptors (higher is more alike); absent if rejected.
    pub score: Option<f32>,
    pub threshold: f32,
    pub reasons: Vec<Reason>,
    pub probe_face: Option<FaceBox>,
    pub reference_face: Option<FaceBox>,
    pub model: String,
    pub device: String,
    pub timings: Timings,
}

impl Verification {
    /// Decide from a similarity score at `threshold` (inclusive).
    pub fn decide(score: f32, threshold: f32) -> Decision {
        if score >= threshold {
            Decision::Match
        } else {
            Decision::NoMatch
        }
    }
}

/// Cosine similarity in f64; a zero vector has similarity 0 with everything (never NaN).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        dot += x as f64 * y as f64;
        na += x as f64 * x as f64;
        nb += y as f64 * y as f64;
    }
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        (dot / (na.sqrt() * nb.sqrt())) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_of_known_vectors() {
        assert!((cosine_similarity(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-7);
        assert!(cosine_similarity(&[1.0, 0.0], &[0.0, 3.0]).abs() < 1e-7);
        assert!((cosine_similarity(&[1.0, 1.0], &[-2.0, -2.0]) + 1.0).abs() < 1e-7);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn rejection_serialises_with_its_code() {
        let r = Reason::new(
            Role::Probe,
            Rejection::FaceTooSmall {
                size_px: 20,
                min_px: 40,
            },
        );
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["code"], "face_too_small");
        assert_eq!(v["detail"]["code"], "face_too_small");
        assert_eq!(v["role"], "probe");
        assert!(r.message.contains("move closer"));
        // Every variant's serialised tag is its code.
        let portrait = Rejection::PortraitTooSmall {
            size_px: 20,
            min_px: 40,
        };
        assert_eq!(serde_json::to_value(&portrait).unwrap()["code"], portrait.code());
        assert_eq!(portrait.code(), "document_portrait_too_small");
    }

    #[test]
    fn codes_lists_every_variants_serialised_code_once() {
        let every = [
            Rejection::EmptyImage,
            Rejection::UnsupportedFormat,
            Rejection::CorruptImage { detail: String::new() },
            Rejection::ImageTooLarge {
                width: 1,
                height: 1,
                max_pixels: 1,
            },
            Rejection::NoFace,
            Rejection::MultipleFaces { count: 2 },
            Rejection::FaceTooSmall { size_px: 1, min_px: 2 },
            Rejection::PortraitTooSmall { size_px: 1, min_px: 2 },
            Rejection::GlareOnPortrait,
            Rejection::Blurred {
                sharpness: 0.0,
                min_sharpness: 1.0,
            },
            Rejection::TurnedAway { yaw: 1.0, max_yaw: 0.5 },
        ];
        let serialised: Vec<String> = (every.iter())
            .map(|r| serde_json::to_value(r).unwrap()["code"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(serialised, Rejection::CODES);
    }

    #[test]
    fn names_are_the_serialised_names() {
        for d in [Decision::Match, Decision::NoMatch, Decision::Rejected] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for r in [Role::Probe, Role::Reference] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }

    #[test]
    fn decision_threshold_is_inclusive() {
        assert_eq!(Verification::decide(0.5, 0.5), Decision::Match);
        assert_eq!(Verification::decide(0.4999, 0.5), Decision::NoMatch);
    }
}
