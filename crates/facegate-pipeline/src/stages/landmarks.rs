//! Landmarks: points on a detected face, for a detector that gives none (face-api's 68-point
//! net after TinyFaceDetector).

use burn::prelude::*;
use facegate_core::FaceBox;
use facegate_models::{FaceLandmark68Net, landmarks};
use image::RgbImage;

use crate::imageops::{self, Rect};

/// Points on each (image, face box), in image pixels, with the crop they were found in;
/// `None` where the box is outside the image.
pub trait Landmark: Send + Sync {
    fn landmarks(&self, items: &[(&RgbImage, FaceBox)]) -> Vec<Option<(Vec<[f64; 2]>, Rect)>>;
}

/// face-api.js' 68-point net (iBUG order) on the square crop of each box.
pub struct FaceApi68 {
    net: Box<FaceLandmark68Net>,
    device: Device,
}

impl FaceApi68 {
    pub fn new(net: FaceLandmark68Net, device: &Device) -> Self {
        Self {
            net: Box::new(net),
            device: device.clone(),
        }
    }
}

impl Landmark for FaceApi68 {
    fn landmarks(&self, items: &[(&RgbImage, FaceBox)]) -> Vec<Option<(Vec<[f64; 2]>, Rect)>> {
        let size = landmarks::INPUT_SIZE;
        let plane = 3 * size * size;
        let rects: Vec<Option<Rect>> = items
            .iter()
            .map(|(img, b)| {
                Rect::clip(
                    b.x as f64,
                    b.y as f64,
                    b.width as f64,
                    b.height as f64,
                    img.width(),
                    img.height(),
                )
            })
            .collect();
        let valid: Vec<usize> = (0..items.len()).filter(|&i| rects[i].is_some()).collect();
        let mut out = vec![None; items.len()];
        if valid.is_empty() {
            return out;
        }
        let mut input = vec![0.0f32; valid.len() * plane];
        for (&i, buf) in valid.iter().zip(input.chunks_exact_mut(plane)) {
            imageops::crop_square_resize(items[i].0, rects[i].unwrap(), true, size, buf);
        }
        let batch = Tensor::from_data(TensorData::new(input, [valid.len(), 3, size, size]), &self.device);
        let pred: Vec<f32> = self
            .net
            .forward(batch)
            .into_data()
            .try_to_vec()
            .expect("landmark output is f32");
        for (&i, p) in valid.iter().zip(pred.chunks_exact(2 * landmarks::NUM_POINTS)) {
            let rect = rects[i].unwrap();
            let face = items[i].1;
            // face-api `postProcess`: undo the centred square padding of the 112 input.
            let (w, h) = (rect.width as f64, rect.height as f64);
            let s = size as f64 / w.max(h);
            let (ws, hs) = (w * s, h * s);
            let pad_x = if ws < hs { (hs - ws).abs() / 2.0 } else { 0.0 };
            let pad_y = if hs < ws { (hs - ws).abs() / 2.0 } else { 0.0 };
            let points = p
                .chunks_exact(2)
                .map(|xy| {
                    let rx = ((xy[0] as f64 * size as f64) - pad_x) / ws;
                    let ry = ((xy[1] as f64 * size as f64) - pad_y) / hs;
                    // Relative to the (floored) crop, shifted by the unfloored detection box,
                    // exactly as face-api's `FaceLandmarks.shiftBy` does.
                    [rx * w + face.x as f64, ry * h + face.y as f64]
                })
                .collect();
            out[i] = Some((points, rect));
        }
        out
    }
}
