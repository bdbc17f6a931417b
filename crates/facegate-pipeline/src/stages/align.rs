//! Align: the crop a network takes, from a face's landmarks and the template on its card.

use facegate_core::{Alignment, ChipTargets, Config, ConfigError, Detector};
use facegate_models::{Card, Template, landmarks};
use image::RgbImage;

use crate::align;
use crate::imageops::{self, Rect};

/// How one embedder's crops are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aligner {
    /// InsightFace's five-point ArcFace template, scaled to `size`.
    Arcface { size: usize },
    /// dlib's chip: from five points onto `targets`, or from 68 landmarks as dlib fits them.
    DlibChip { size: usize, targets: ChipTargets },
    /// face-api.js' axis-aligned box (68 landmarks and the crop they were found in only).
    FaceApiBox { size: usize },
}

impl Aligner {
    /// The alignment `card`'s network was trained with, as the configuration refines it.
    pub fn for_embedder(card: &Card, config: &Config) -> Result<Self, ConfigError> {
        let size = card.input_size;
        match (card.template.unwrap_or(Template::DlibChip150), config.alignment) {
            (Template::Arcface112, Alignment::FaceApi) => Err(ConfigError::Invalid(format!(
                "alignment = \"face_api\" makes 150 px dlib crops; {} takes the ArcFace template",
                card.name
            ))),
            (Template::Arcface112, _) => Ok(Self::Arcface { size }),
            (Template::DlibChip150, Alignment::DlibChip) => Ok(Self::DlibChip {
                size,
                targets: config.chip_targets,
            }),
            (Template::DlibChip150, Alignment::FaceApi) => Ok(Self::FaceApiBox { size }),
        }
    }

    /// The crop's side, in pixels.
    pub fn size(&self) -> usize {
        match *self {
            Self::Arcface { size } | Self::DlibChip { size, .. } | Self::FaceApiBox { size } => size,
        }
    }

    /// The alignment's part of a model id (scores belong to the alignment as much as to the
    /// weights).
    pub fn id(&self, detector: Detector) -> &'static str {
        match (self, detector) {
            (Self::Arcface { .. }, _) => "arcface-112",
            (
                Self::DlibChip {
                    targets: ChipTargets::Measured,
                    ..
                },
                Detector::Mtcnn,
            ) => "dlib-chip-150-mtcnn-targets",
            (Self::DlibChip { .. }, _) => "dlib-chip-150",
            (Self::FaceApiBox { .. }, _) => "face-api-box-150",
        }
    }

    /// How to cut the crop from `img`'s pixels: `None` if these landmarks cannot make it.
    pub fn warp(&self, img: &RgbImage, points: &[[f64; 2]], crop: Option<Rect>) -> Option<Warp> {
        let five = <&[[f64; 2]; 5]>::try_from(points).ok();
        let is_68 = points.len() == landmarks::NUM_POINTS;
        let to_input = match *self {
            Self::Arcface { size } => {
                let five = five.copied().or_else(|| is_68.then(|| align::five_from_68(points)))?;
                align::arcface_transform(&five, size)
            }
            Self::DlibChip { size, targets } => match five {
                Some(five) => align::five_point_chip_transform(five, size, targets),
                None if is_68 => align::dlib_chip_transform(points, size),
                None => return None,
            },
            Self::FaceApiBox { .. } => {
                if !is_68 {
                    return None;
                }
                let crop = crop?;
                let rect = align::face_api_aligned_rect(points, crop.width, crop.height, img.width(), img.height())?;
                return Some(Warp::Box(rect));
            }
        };
        Some(Warp::Affine(imageops::invert_affine(to_input)))
    }

    /// Writes the crop `warp` cuts from `img` (planar RGB, 0..255) into `out`.
    pub fn cut(&self, img: &RgbImage, warp: Warp, out: &mut [f32]) {
        match warp {
            Warp::Affine(to_image) => imageops::warp_affine(img, to_image, self.size(), out),
            Warp::Box(rect) => imageops::crop_square_resize(img, rect, true, self.size(), out),
        }
    }
}

/// How a crop is cut from an image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Warp {
    /// Sampled through a similarity: crop pixel → image pixel (`imageops::warp_affine`'s `m`).
    Affine([f64; 6]),
    /// face-api's axis-aligned square, resized (`imageops::crop_square_resize`).
    Box(Rect),
}
