//! Detect: the faces in each photo, with their five landmarks when the detector gives them.

use burn::prelude::*;
use facegate_core::{Config, FaceBox};
use facegate_models::{TinyFaceDetector, detector};
use image::RgbImage;

use crate::imageops;
use crate::mtcnn::{self, MtcnnSettings};

/// A face the detector found, with its five landmarks when the detector gives them (MTCNN:
/// eye centres, nose tip, mouth corners, in image pixels).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Detected {
    #[serde(flatten)]
    pub face: FaceBox,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<[[f64; 2]; 5]>,
}

impl Detected {
    /// This detection, made in a copy of the photo `scale` times smaller, in the original's
    /// pixels.
    pub fn in_original(mut self, scale: f32) -> Self {
        self.face = self.face.in_original(scale);
        for p in self.points.iter_mut().flatten() {
            p.iter_mut().for_each(|v| *v /= scale as f64);
        }
        self
    }
}

impl From<FaceBox> for Detected {
    fn from(face: FaceBox) -> Self {
        Self { face, points: None }
    }
}

/// Finds faces: one call per batch of photos.
pub trait Detect: Send + Sync {
    /// The faces in each image, in image pixels.
    fn detect(&self, images: &[&RgbImage]) -> Vec<Vec<Detected>>;
    /// Whether each face comes with its five landmarks (else a landmark stage follows).
    fn gives_landmarks(&self) -> bool;
}

/// MTCNN (facenet-pytorch's staged detector): boxes and five landmarks, largest face first.
pub struct MtcnnDetect {
    nets: Box<facegate_models::mtcnn::Mtcnn>,
    settings: MtcnnSettings,
    /// Looser thresholds tried, in order, on photos where nothing was found.
    retry: Vec<[f32; 3]>,
    device: Device,
}

impl MtcnnDetect {
    pub fn new(nets: Box<facegate_models::mtcnn::Mtcnn>, config: &Config, device: &Device) -> Self {
        Self {
            nets,
            settings: MtcnnSettings {
                min_face_px: config.mtcnn_min_face_px,
                min_face_fraction: config.mtcnn_min_face_fraction,
                factor: config.mtcnn_factor,
                thresholds: config.mtcnn_thresholds,
            },
            retry: config.mtcnn_retry_thresholds.clone(),
            device: device.clone(),
        }
    }
}

impl Detect for MtcnnDetect {
    fn detect(&self, images: &[&RgbImage]) -> Vec<Vec<Detected>> {
        let mut found = mtcnn::detect(&self.nets, images, &self.settings, &self.device);
        // A face MTCNN misses is a person refused without a good reason: images where
        // nothing was found are searched again with each looser set of thresholds.
        for &thresholds in &self.retry {
            let empty: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_empty()).collect();
            if empty.is_empty() {
                break;
            }
            let settings = MtcnnSettings {
                thresholds,
                ..self.settings.clone()
            };
            let again: Vec<&RgbImage> = empty.iter().map(|&i| images[i]).collect();
            for (&i, faces) in empty
                .iter()
                .zip(mtcnn::detect(&self.nets, &again, &settings, &self.device))
            {
                found[i] = faces;
            }
        }
        found
            .into_iter()
            .map(|faces| {
                faces
                    .into_iter()
                    .map(|d| Detected {
                        face: d.face,
                        points: Some(d.points),
                    })
                    .collect()
            })
            .collect()
    }

    fn gives_landmarks(&self) -> bool {
        true
    }
}

/// face-api.js' TinyFaceDetector: boxes only, best first. Images where nothing is found are
/// searched again "zoomed out" (`detector_zoom_out`): the detector misses faces that fill
/// most of the frame, as close-up selfies, ID portraits and LFW's crops do.
pub struct TinyFaceDetect {
    net: Box<TinyFaceDetector>,
    input_size: usize,
    score_threshold: f64,
    zoom_out: Vec<f64>,
    device: Device,
}

impl TinyFaceDetect {
    pub fn new(net: Box<TinyFaceDetector>, config: &Config, device: &Device) -> Self {
        Self {
            net,
            input_size: config.detector_input_size,
            score_threshold: config.detector_score_threshold,
            zoom_out: config.detector_zoom_out.clone(),
            device: device.clone(),
        }
    }

    /// One detector pass with a zero margin of `margin` × the longer side around each image.
    fn detect_in(&self, images: &[&RgbImage], margin: f64) -> Vec<Vec<FaceBox>> {
        if images.is_empty() {
            return Vec::new();
        }
        let size = self.input_size;
        let plane = 3 * size * size;
        let margins: Vec<u32> = images
            .iter()
            .map(|img| (img.width().max(img.height()) as f64 * margin).round() as u32)
            .collect();
        let mut input = vec![0.0f32; images.len() * plane];
        for ((img, &m), out) in images.iter().zip(&margins).zip(input.chunks_exact_mut(plane)) {
            imageops::crop_square_resize(img, imageops::with_margin(img, m), false, size, out);
        }
        let batch = Tensor::from_data(TensorData::new(input, [images.len(), 3, size, size]), &self.device);
        let raw = self.net.forward(batch);
        let [_, ch, grid, _] = raw.dims();
        let raw: Vec<f32> = raw.into_data().try_to_vec().expect("detector output is f32");
        images
            .iter()
            .zip(&margins)
            .zip(raw.chunks_exact(ch * grid * grid))
            .map(|((img, &m), out)| {
                let (w, h) = ((img.width() + 2 * m) as f64, (img.height() + 2 * m) as f64);
                let scale = size as f64 / w.max(h);
                let reshaped = ((w * scale).round(), (h * scale).round());
                let m = m as f64;
                detector::decode(out, grid, reshaped, self.score_threshold)
                    .into_iter()
                    .map(|b| FaceBox {
                        x: (b.x * w - m) as f32,
                        y: (b.y * h - m) as f32,
                        width: (b.width * w) as f32,
                        height: (b.height * h) as f32,
                        score: b.score as f32,
                    })
                    .collect()
            })
            .collect()
    }
}

impl Detect for TinyFaceDetect {
    fn detect(&self, images: &[&RgbImage]) -> Vec<Vec<Detected>> {
        let mut found = self.detect_in(images, 0.0);
        for &zoom in &self.zoom_out {
            let retry: Vec<usize> = (0..images.len()).filter(|&i| found[i].is_empty()).collect();
            if retry.is_empty() {
                break;
            }
            let again: Vec<&RgbImage> = retry.iter().map(|&i| images[i]).collect();
            for (&i, boxes) in retry.iter().zip(self.detect_in(&again, zoom)) {
                found[i] = boxes;
            }
        }
        found
            .into_iter()
            .map(|boxes| boxes.into_iter().map(Detected::from).collect())
            .collect()
    }

    fn gives_landmarks(&self) -> bool {
        false
    }
}
