//! MTCNN's staged detection, step for step as facenet-pytorch 2.6.0's `detect_face` does it
//! (`facenet_pytorch/models/utils/detect_face.py`), so our boxes and five landmarks match
//! facenet-pytorch's (`data/reference-mtcnn.json`): P-Net over an image pyramid, R-Net on
//! 24×24 and O-Net on 48×48 crops of the surviving candidates, with its NMS thresholds and
//! modes, its 1-based box arithmetic and its area resampling.
//!
//! Each stage is one network call for the whole batch (P-Net: one per pyramid level per group
//! of equally sized images).

use burn::prelude::*;
use facegate_core::FaceBox;
use facegate_models::mtcnn::{Mtcnn, ONET_SIZE, PNET_CELL, PNET_STRIDE, RNET_SIZE};
use image::RgbImage;

/// Detection settings; the defaults are facenet-pytorch's `MTCNN()`.
#[derive(Debug, Clone, PartialEq)]
pub struct MtcnnSettings {
    /// Smallest face searched for, in pixels.
    pub min_face_px: f64,
    /// …or this fraction of the image's shorter side, when larger: a large selfie is not
    /// scanned for faces a few pixels wide (0 disables).
    pub min_face_fraction: f64,
    /// Pyramid step.
    pub factor: f64,
    /// P-Net, R-Net, O-Net face-probability thresholds.
    pub thresholds: [f32; 3],
}

impl Default for MtcnnSettings {
    fn default() -> Self {
        Self {
            min_face_px: 20.0,
            min_face_fraction: 0.0,
            factor: 0.709,
            thresholds: [0.6, 0.7, 0.7],
        }
    }
}

/// A face and its five landmarks (eye centres, nose tip, mouth corners; image pixels, the
/// subject's right eye first, as it appears on the left of the image).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub face: FaceBox,
    pub points: [[f64; 2]; 5],
}

/// One candidate box `[x1, y1, x2, y2]` of image `img` with its score and regression. f32, as
/// facenet-pytorch computes: the boxes are truncated to pixels between stages, so f64 would
/// move some by one.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    img: usize,
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

/// Faces in each image, largest first (facenet-pytorch's `select_largest` order).
pub fn detect(nets: &Mtcnn, images: &[&RgbImage], s: &MtcnnSettings, device: &Device) -> Vec<Vec<Detection>> {
    let mut candidates = propose(nets, images, s, device);
    // R-Net: refine and rescore every proposal of the batch in one call.
    let (inputs, kept) = crops(images, &candidates, RNET_SIZE);
    candidates = kept;
    if !candidates.is_empty() {
        let (reg, prob) = nets.rnet.forward(batch(inputs, candidates.len(), RNET_SIZE, device));
        let (reg, prob) = (host(reg), host(prob));
        let passed = passing(&candidates, &reg, &prob, s.thresholds[1]);
        candidates = per_image(passed, |c| nms(c, 0.7, Overlap::Union))
            .into_iter()
            .map(|mut c| {
                c.b = regress(c.b, c.reg, 1.0);
                c.b = square(c.b);
                c
            })
            .collect();
    }
    // O-Net: final boxes and landmarks.
    let (inputs, kept) = crops(images, &candidates, ONET_SIZE);
    candidates = kept;
    let mut out = vec![Vec::new(); images.len()];
    if candidates.is_empty() {
        return out;
    }
    let n = candidates.len();
    let (reg, marks, prob) = nets.onet.forward(batch(inputs, n, ONET_SIZE, device));
    let (reg, marks, prob) = (host(reg), host(marks), host(prob));
    let mut finals = Vec::new();
    for (i, c) in candidates.iter().enumerate() {
        let score = prob[2 * i + 1];
        if score <= s.thresholds[2] {
            continue;
        }
        let [x1, y1, x2, y2] = c.b;
        let (w, h) = (x2 - x1 + 1.0, y2 - y1 + 1.0);
        let m = &marks[10 * i..10 * i + 10];
        let points = std::array::from_fn(|k| [(w * m[k] + x1 - 1.0) as f64, (h * m[5 + k] + y1 - 1.0) as f64]);
        let reg = std::array::from_fn(|k| reg[4 * i + k]);
        let b = regress(c.b, reg, 1.0);
        finals.push((
            Candidate {
                img: c.img,
                b,
                score,
                reg,
            },
            points,
        ));
    }
    for (img, slot) in out.iter_mut().enumerate() {
        let (cands, points): (Vec<Candidate>, Vec<[[f64; 2]; 5]>) =
            finals.iter().filter(|(c, _)| c.img == img).copied().unzip();
        let keep = nms_indices(&cands, 0.7, Overlap::Min);
        let mut faces: Vec<Detection> = keep
            .into_iter()
            .map(|k| {
                let [x1, y1, x2, y2] = cands[k].b;
                Detection {
                    face: FaceBox {
                        x: x1,
                        y: y1,
                        width: x2 - x1,
                        height: y2 - y1,
                        score: cands[k].score,
                    },
                    points: points[k],
                }
            })
            .collect();
        faces.sort_by(|a, b| (b.face.width * b.face.height).total_cmp(&(a.face.width * a.face.height)));
        *slot = faces;
    }
    out
}

/// The pyramid's scales: P-Net sees 12 px, so the first level scales `min_face` to 12 px, and
/// levels shrink by `factor` while the shorter side is at least 12 px.
fn scales(h: usize, w: usize, s: &MtcnnSettings) -> Vec<f64> {
    let min_face = s.min_face_px.max(s.min_face_fraction * h.min(w) as f64);
    let m = PNET_CELL as f64 / min_face;
    let mut minl = h.min(w) as f64 * m;
    let mut scale = m;
    let mut out = Vec::new();
    while minl >= PNET_CELL as f64 {
        out.push(scale);
        scale *= s.factor;
        minl *= s.factor;
    }
    out
}

/// Stage one: P-Net over each image's pyramid; NMS 0.5 per level, 0.7 across levels, box
/// regression and squaring.
fn propose(nets: &Mtcnn, images: &[&RgbImage], s: &MtcnnSettings, device: &Device) -> Vec<Candidate> {
    let mut per_img: Vec<Vec<Candidate>> = vec![Vec::new(); images.len()];
    // Images of one size share their pyramid, so each level is one P-Net call for all of them.
    let mut groups: Vec<((u32, u32), Vec<usize>)> = Vec::new();
    for (i, img) in images.iter().enumerate() {
        match groups.iter_mut().find(|(d, _)| *d == img.dimensions()) {
            Some((_, members)) => members.push(i),
            None => groups.push((img.dimensions(), vec![i])),
        }
    }
    for ((w, h), members) in groups {
        for scale in scales(h as usize, w as usize, s) {
            // Python's `int(h * scale + 1)`.
            let (hs, ws) = ((h as f64 * scale + 1.0) as usize, (w as f64 * scale + 1.0) as usize);
            let plane = 3 * hs * ws;
            let mut input = vec![0.0f32; members.len() * plane];
            for (&i, out) in members.iter().zip(input.chunks_exact_mut(plane)) {
                area_resize(images[i], [0, 0, w as usize, h as usize], hs, ws, out);
            }
            let tensor = Tensor::from_data(TensorData::new(input, [members.len(), 3, hs, ws]), device);
            let (reg, prob) = nets.pnet.forward(tensor);
            let [_, _, gh, gw] = prob.dims();
            let (reg, prob) = (host(reg), host(prob));
            let cells = gh * gw;
            for (n, &i) in members.iter().enumerate() {
                let mut level = Vec::new();
                // facenet-pytorch's `generateBoundingBox`: cells in row-major order.
                for y in 0..gh {
                    for x in 0..gw {
                        let score = prob[(2 * n + 1) * cells + y * gw + x];
                        if score < s.thresholds[0] {
                            continue;
                        }
                        let at = |k: usize| reg[(4 * n + k) * cells + y * gw + x];
                        // In f32 with the scale cast to f32, as torch divides: in f64 some
                        // cells land one pixel away.
                        let (x, y, scale) = ((PNET_STRIDE * x) as f32, (PNET_STRIDE * y) as f32, scale as f32);
                        let cell = PNET_CELL as f32;
                        level.push(Candidate {
                            img: i,
                            b: [
                                ((x + 1.0) / scale).floor(),
                                ((y + 1.0) / scale).floor(),
                                ((x + cell) / scale).floor(),
                                ((y + cell) / scale).floor(),
                            ],
                            score,
                            reg: [at(0), at(1), at(2), at(3)],
                        });
                    }
                }
                per_img[i].extend(nms(level, 0.5, Overlap::Union));
            }
        }
    }
    per_img
        .into_iter()
        .flat_map(|c| nms(c, 0.7, Overlap::Union))
        .map(|mut c| {
            // Stage one regresses by the box's size without facenet-pytorch's "+1".
            c.b = square(regress(c.b, c.reg, 0.0));
            c
        })
        .collect()
}

/// The candidates whose face probability exceeds `threshold`, with this stage's regression.
fn passing(candidates: &[Candidate], reg: &[f32], prob: &[f32], threshold: f32) -> Vec<Candidate> {
    candidates
        .iter()
        .enumerate()
        .filter(|&(i, _)| prob[2 * i + 1] > threshold)
        .map(|(i, c)| Candidate {
            score: prob[2 * i + 1],
            reg: std::array::from_fn(|k| reg[4 * i + k]),
            ..*c
        })
        .collect()
}

/// Apply `f` to each image's candidates separately (NMS never crosses images).
fn per_image(candidates: Vec<Candidate>, f: impl Fn(Vec<Candidate>) -> Vec<Candidate>) -> Vec<Candidate> {
    let images = candidates.iter().map(|c| c.img + 1).max().unwrap_or(0);
    (0..images)
        .flat_map(|i| f(candidates.iter().filter(|c| c.img == i).copied().collect()))
        .collect()
}

/// Box regression: each edge moves by its offset times the box's size (`+ plus`: facenet-pytorch
/// adds 1 in `bbreg`, not in stage one).
fn regress([x1, y1, x2, y2]: [f32; 4], r: [f32; 4], plus: f32) -> [f32; 4] {
    let (w, h) = (x2 - x1 + plus, y2 - y1 + plus);
    [x1 + r[0] * w, y1 + r[1] * h, x2 + r[2] * w, y2 + r[3] * h]
}

/// facenet-pytorch's `rerec`: the square on the longer side, same centre.
fn square([x1, y1, x2, y2]: [f32; 4]) -> [f32; 4] {
    let (w, h) = (x2 - x1, y2 - y1);
    let l = w.max(h);
    let (x, y) = (x1 + w * 0.5 - l * 0.5, y1 + h * 0.5 - l * 0.5);
    [x, y, x + l, y + l]
}

/// The next stage's input: each candidate's box, truncated to integers and clipped to the
/// image as facenet-pytorch's `pad` does (1-based; no zero padding), area-resampled to
/// `size`² and normalised. Candidates with nothing inside the image are dropped.
fn crops(images: &[&RgbImage], candidates: &[Candidate], size: usize) -> (Vec<f32>, Vec<Candidate>) {
    let plane = 3 * size * size;
    let mut input = Vec::new();
    let mut kept = Vec::new();
    for c in candidates {
        let img = images[c.img];
        let (w, h) = (img.width() as i64, img.height() as i64);
        let [x, y, ex, ey] = c.b.map(|v| v.trunc() as i64);
        let (x, y, ex, ey) = (x.max(1), y.max(1), ex.min(w), ey.min(h));
        // facenet-pytorch's `ey > y - 1 or ex > x - 1` (1-based), negated.
        if ey < y || ex < x {
            continue;
        }
        let start = input.len();
        input.resize(start + plane, 0.0);
        let region = [
            (x - 1) as usize,
            (y - 1) as usize,
            (ex - x + 1) as usize,
            (ey - y + 1) as usize,
        ];
        area_resize(img, region, size, size, &mut input[start..]);
        kept.push(*c);
    }
    (input, kept)
}

/// PyTorch's `interpolate(mode="area")` (adaptive average pooling) of `region` = `[x, y, w, h]`
/// of `img` to `oh`×`ow`, normalised as MTCNN expects: `(v − 127.5) / 128`, planar RGB.
/// Output pixel `i` averages input `[⌊i·n/o⌋, ⌈(i+1)·n/o⌉)` on each axis.
///
/// Sums are integers, so they are exact: per output row, the span's input rows are added in
/// u32, then a running sum along x gives every column span's total at once.
fn area_resize(img: &RgbImage, [rx, ry, rw, rh]: [usize; 4], oh: usize, ow: usize, out: &mut [f32]) {
    let span = |i: usize, n: usize, o: usize| (i * n / o, ((i + 1) * n).div_ceil(o));
    let raw = img.as_raw();
    let stride = img.width() as usize * 3;
    let columns: Vec<(usize, usize)> = (0..ow).map(|c| span(c, rw, ow)).collect();
    let plane = oh * ow;
    let mut rows = vec![0u32; rw * 3];
    let mut running = vec![0u64; (rw + 1) * 3];
    for o in 0..oh {
        let (a, b) = span(o, rh, oh);
        rows.fill(0);
        for r in a..b {
            let line = &raw[(ry + r) * stride + rx * 3..][..rw * 3];
            rows.iter_mut().zip(line).for_each(|(s, &v)| *s += v as u32);
        }
        for (x, px) in rows.chunks_exact(3).enumerate() {
            for ch in 0..3 {
                running[(x + 1) * 3 + ch] = running[x * 3 + ch] + px[ch] as u64;
            }
        }
        for (c, &(xa, xb)) in columns.iter().enumerate() {
            let n = ((b - a) * (xb - xa)) as f64;
            for ch in 0..3 {
                let v = (running[xb * 3 + ch] - running[xa * 3 + ch]) as f64 / n;
                out[ch * plane + o * ow + c] = ((v - 127.5) * 0.0078125) as f32;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overlap {
    /// Intersection over union, torchvision's `nms` (no "+1" in areas).
    Union,
    /// Intersection over the smaller box, facenet-pytorch's `nms_numpy(…, 'Min')` ("+1" areas).
    Min,
}

fn nms(candidates: Vec<Candidate>, threshold: f32, overlap: Overlap) -> Vec<Candidate> {
    nms_indices(&candidates, threshold, overlap)
        .into_iter()
        .map(|i| candidates[i])
        .collect()
}

/// Greedy NMS: best score first, dropping boxes that overlap a kept one by more than `threshold`.
fn nms_indices(c: &[Candidate], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let plus = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + plus) * (b[3] - b[1] + plus);
    let mut order: Vec<usize> = (0..c.len()).collect();
    order.sort_by(|&a, &b| c[b].score.total_cmp(&c[a].score));
    let mut keep: Vec<usize> = Vec::new();
    let mut dropped = vec![false; c.len()];
    for (k, &i) in order.iter().enumerate() {
        if dropped[i] {
            continue;
        }
        keep.push(i);
        for &j in &order[k + 1..] {
            let (a, b) = (&c[i].b, &c[j].b);
            let iw = (a[2].min(b[2]) - a[0].max(b[0]) + plus).max(0.0);
            let ih = (a[3].min(b[3]) - a[1].max(b[1]) + plus).max(0.0);
            let inter = iw * ih;
            let o = match overlap {
                Overlap::Union => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if o > threshold {
                dropped[j] = true;
            }
        }
    }
    keep
}

fn batch(data: Vec<f32>, n: usize, size: usize, device: &Device) -> Tensor<4> {
    Tensor::from_data(TensorData::new(data, [n, 3, size, size]), device)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 network output")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(b: [f32; 4], score: f32) -> Candidate {
        Candidate {
            img: 0,
            b,
            score,
            reg: [0.0; 4],
        }
    }

    #[test]
    fn pyramid_follows_facenet_pytorch() {
        // 250×250, min face 20: m = 0.6, levels while 150·0.709^k ≥ 12.
        let s = scales(250, 250, &MtcnnSettings::default());
        assert_eq!(s.len(), 8);
        assert!((s[0] - 0.6).abs() < 1e-12 && (s[7] - 0.6 * 0.709f64.powi(7)).abs() < 1e-12);
        let frac = MtcnnSettings {
            min_face_fraction: 0.1,
            ..Default::default()
        };
        assert!((scales(2000, 3000, &frac)[0] - 12.0 / 200.0).abs() < 1e-12);
    }

    #[test]
    fn nms_modes() {
        let c = [
            cand([0.0, 0.0, 10.0, 10.0], 0.9),
            cand([5.0, 0.0, 15.0, 10.0], 0.95),
            cand([0.0, 0.0, 4.0, 4.0], 0.8),
        ];
        // Union (no +1): IoU of the first two = 50/150, the small box inside the first 16/100.
        assert_eq!(nms_indices(&c, 0.3, Overlap::Union), vec![1, 2]);
        assert_eq!(nms_indices(&c, 0.5, Overlap::Union), vec![1, 0, 2]);
        // Min (+1 pixel, as facenet-pytorch): the first two 66/121, the small box 25/25.
        assert_eq!(nms_indices(&c, 0.6, Overlap::Min), vec![1, 0]);
        // A dropped box suppresses nothing: the first goes (66/121 > 0.5), so the small stays.
        assert_eq!(nms_indices(&c, 0.5, Overlap::Min), vec![1, 2]);
    }

    /// Against adaptive average pooling written out in f64 (each output pixel the mean of its
    /// row span × column span), on a region of a patterned image, down and up.
    #[test]
    fn area_resize_is_adaptive_average_pooling() {
        let img = RgbImage::from_fn(53, 41, |x, y| {
            image::Rgb([(x * 37 + y * 11) as u8, (x * y) as u8, (y * 29) as u8])
        });
        let [rx, ry, rw, rh] = [5usize, 3, 44, 35];
        for (oh, ow) in [(12, 9), (24, 24), (35, 44), (48, 70)] {
            let mut out = vec![0.0; 3 * oh * ow];
            area_resize(&img, [rx, ry, rw, rh], oh, ow, &mut out);
            let span = |i: usize, n: usize, o: usize| (i * n / o, ((i + 1) * n).div_ceil(o));
            for o in 0..oh {
                for c in 0..ow {
                    let ((ya, yb), (xa, xb)) = (span(o, rh, oh), span(c, rw, ow));
                    for ch in 0..3 {
                        let mut sum = 0.0f64;
                        for y in ya..yb {
                            for x in xa..xb {
                                sum += img.get_pixel((rx + x) as u32, (ry + y) as u32)[ch] as f64;
                            }
                        }
                        let want = (sum / ((yb - ya) * (xb - xa)) as f64 - 127.5) / 128.0;
                        let got = out[ch * oh * ow + o * ow + c] as f64;
                        assert!(
                            (got - want).abs() < 1e-6,
                            "{oh}x{ow} at ({o}, {c}, {ch}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn area_resize_averages_spans() {
        // 3 columns → 2: spans [0, 2) and [1, 3) overlap, as adaptive pooling's do.
        let img = RgbImage::from_fn(3, 1, |x, _| image::Rgb([[0, 60, 120][x as usize]; 3]));
        let mut out = vec![0.0; 3 * 2];
        area_resize(&img, [0, 0, 3, 1], 1, 2, &mut out);
        let back = |v: f32| v as f64 / 0.0078125 + 127.5;
        assert!((back(out[0]) - 30.0).abs() < 1e-4 && (back(out[1]) - 90.0).abs() < 1e-4);
        // Upsampling repeats pixels.
        let mut up = vec![0.0; 3 * 6];
        area_resize(&img, [0, 0, 3, 1], 1, 6, &mut up);
        let got: Vec<f64> = up[..6].iter().map(|&v| back(v).round()).collect();
        assert_eq!(got, vec![0.0, 0.0, 60.0, 60.0, 120.0, 120.0]);
    }

    #[test]
    fn square_and_regress() {
        assert_eq!(square([0.0, 0.0, 10.0, 4.0]), [0.0, -3.0, 10.0, 7.0]);
        assert_eq!(
            regress([0.0, 0.0, 9.0, 9.0], [0.1, 0.0, -0.1, 0.5], 1.0),
            [1.0, 0.0, 8.0, 14.0]
        );
    }
}
