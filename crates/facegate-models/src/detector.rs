//! TinyFaceDetector: face-api.js' Tiny-YOLOv2 with depthwise-separable convolutions, one class,
//! five anchors, a 13×13 grid at 416×416 input (stride 32).

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::leaky_relu;

use crate::ModelError;
use crate::weights::{SeparableConv, Weights};

pub const DEFAULT_INPUT_SIZE: usize = 416;
pub const MEAN_RGB: [f32; 3] = [117.001, 114.697, 97.404];
pub const IOU_THRESHOLD: f64 = 0.4;
/// Anchor (width, height) in grid cells.
pub const ANCHORS: [(f64, f64); 5] = [
    (1.603231, 2.094468),
    (6.041143, 7.080126),
    (2.882459, 3.518061),
    (4.266906, 5.178857),
    (9.041765, 10.66308),
];
const LEAKY_SLOPE: f64 = 0.1;

#[derive(Debug)]
pub struct TinyFaceDetector {
    conv0: Conv2d,
    conv1: SeparableConv,
    conv2: SeparableConv,
    conv3: SeparableConv,
    conv4: SeparableConv,
    conv5: SeparableConv,
    conv8: Conv2d,
    pool_s2: MaxPool2d,
    pool_s1: MaxPool2d,
    mean_rgb: Tensor<4>,
}

impl TinyFaceDetector {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        // face-api pads 1 all round, then runs the separable conv VALID.
        let sep = |p: &str| SeparableConv::load(w, p, 1, PaddingConfig2d::Explicit(1, 1, 1, 1), device);
        // TF "SAME" max pooling pads at the end only (and with -inf): burn's `Same` does both.
        let pool = |stride| {
            MaxPool2dConfig::new([2, 2])
                .with_strides([stride, stride])
                .with_padding(PaddingConfig2d::Same)
                .init()
        };
        Ok(Self {
            conv0: w.conv("conv0/filters", Some("conv0/bias"), 1, PaddingConfig2d::Valid, device)?,
            conv1: sep("conv1")?,
            conv2: sep("conv2")?,
            conv3: sep("conv3")?,
            conv4: sep("conv4")?,
            conv5: sep("conv5")?,
            conv8: w.conv("conv8/filters", Some("conv8/bias"), 1, PaddingConfig2d::Valid, device)?,
            pool_s2: pool(2),
            pool_s1: pool(1),
            mean_rgb: crate::mean_rgb_tensor(MEAN_RGB, device),
        })
    }

    fn leaky(&self, conv: &SeparableConv, x: Tensor<4>) -> Tensor<4> {
        leaky_relu(conv.forward(x), LEAKY_SLOPE)
    }

    /// `[N, 3, S, S]` RGB in 0..255 (S a multiple of 32) → `[N, 25, S/32, S/32]` raw YOLO output.
    pub fn forward(&self, rgb: Tensor<4>) -> Tensor<4> {
        let x = (rgb - self.mean_rgb.clone()) / 255.0;
        let x = leaky_relu(self.conv0.forward(x), LEAKY_SLOPE);
        let x = self.leaky(&self.conv1, self.pool_s2.forward(x));
        let x = self.leaky(&self.conv2, self.pool_s2.forward(x));
        let x = self.leaky(&self.conv3, self.pool_s2.forward(x));
        let x = self.leaky(&self.conv4, self.pool_s2.forward(x));
        let x = self.leaky(&self.conv5, self.pool_s2.forward(x));
        self.conv8.forward(self.pool_s1.forward(x))
    }
}

/// A detection in coordinates relative to the (unpadded) image, 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelBox {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub score: f64,
}

impl RelBox {
    fn iou(&self, o: &RelBox) -> f64 {
        let w = (self.x + self.width).min(o.x + o.width) - self.x.max(o.x);
        let h = (self.y + self.height).min(o.y + o.height) - self.y.max(o.y);
        let inter = w.max(0.0) * h.max(0.0);
        inter / (self.width * self.height + o.width * o.height - inter)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Decode one image's `[25, G, G]` output (channel = anchor·5 + k) into boxes, then greedy NMS.
///
/// `reshaped` is the image size after scaling its longer side to the network input
/// (`round(w·s), round(h·s)`): the square input was zero-padded right/bottom, and the
/// correction factors undo that padding.
pub fn decode(output: &[f32], grid: usize, reshaped: (f64, f64), score_threshold: f64) -> Vec<RelBox> {
    let (w, h) = reshaped;
    let side = w.max(h);
    let (cfx, cfy) = (side / w, side / h);
    let g = grid as f64;
    let at = |ch: usize, row: usize, col: usize| output[(ch * grid + row) * grid + col] as f64;
    let mut boxes = Vec::new();
    for row in 0..grid {
        for col in 0..grid {
            for (a, &(ax, ay)) in ANCHORS.iter().enumerate() {
                let score = sigmoid(at(a * 5 + 4, row, col));
                if score <= score_threshold {
                    continue;
                }
                let cx = (col as f64 + sigmoid(at(a * 5, row, col))) / g * cfx;
                let cy = (row as f64 + sigmoid(at(a * 5 + 1, row, col))) / g * cfy;
                let bw = at(a * 5 + 2, row, col).exp() * ax / g * cfx;
                let bh = at(a * 5 + 3, row, col).exp() * ay / g * cfy;
                boxes.push(RelBox {
                    x: cx - bw / 2.0,
                    y: cy - bh / 2.0,
                    width: bw,
                    height: bh,
                    score,
                });
            }
        }
    }
    non_max_suppression(boxes, IOU_THRESHOLD)
}

/// Greedy NMS in face-api's order: highest score first, ties broken towards the later box.
pub fn non_max_suppression(mut boxes: Vec<RelBox>, iou_threshold: f64) -> Vec<RelBox> {
    // A stable ascending sort then popping from the end, as face-api does.
    boxes.sort_by(|a, b| a.score.total_cmp(&b.score));
    let mut picked = Vec::new();
    while let Some(best) = boxes.pop() {
        boxes.retain(|b| best.iou(b) <= iou_threshold);
        picked.push(best);
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nms_keeps_the_best_of_overlapping_boxes() {
        let b = |x: f64, score| RelBox {
            x,
            y: 0.0,
            width: 1.0,
            height: 1.0,
            score,
        };
        let kept = non_max_suppression(vec![b(0.0, 0.6), b(0.1, 0.9), b(5.0, 0.7)], 0.4);
        assert_eq!(kept, vec![b(0.1, 0.9), b(5.0, 0.7)]);
    }

    #[test]
    fn decode_places_a_centred_box() {
        // One confident anchor-0 prediction in the centre cell of a 3x3 grid: offsets 0 mean
        // sigmoid 0.5 (the cell centre) and exp(0) = anchor size.
        let grid = 3;
        let mut out = vec![-20.0f32; 25 * grid * grid];
        let idx = |ch: usize| (ch * grid + 1) * grid + 1;
        for ch in 0..4 {
            out[idx(ch)] = 0.0;
        }
        out[idx(4)] = 5.0;
        let boxes = decode(&out, grid, (100.0, 100.0), 0.5);
        assert_eq!(boxes.len(), 1);
        let b = boxes[0];
        assert!((b.x + b.width / 2.0 - 0.5).abs() < 1e-12);
        assert!((b.width - ANCHORS[0].0 / 3.0).abs() < 1e-12);
        assert!((b.score - sigmoid(5.0)).abs() < 1e-12);
    }
}
