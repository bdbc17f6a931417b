//! Where a face's landmarks go in the recognition network's input: similarity transforms
//! (rotation, uniform scale, shift) onto the templates the networks were trained with.

use facegate_core::ChipTargets;

use crate::imageops::{self, Rect};

/// dlib's mean face (`get_face_chip_details`, dlib/image_transforms/interpolation.h; dlib is
/// Boost-licensed): x, y of iBUG points 17..=67 in the unit square.
const MEAN_FACE_X: [f64; 51] = [
    0.000213256,
    0.0752622,
    0.18113,
    0.29077,
    0.393397,
    0.586856,
    0.689483,
    0.799124,
    0.904991,
    0.98004,
    0.490127,
    0.490127,
    0.490127,
    0.490127,
    0.36688,
    0.426036,
    0.490127,
    0.554217,
    0.613373,
    0.121737,
    0.187122,
    0.265825,
    0.334606,
    0.260918,
    0.182743,
    0.645647,
    0.714428,
    0.793132,
    0.858516,
    0.79751,
    0.719335,
    0.254149,
    0.340985,
    0.428858,
    0.490127,
    0.551395,
    0.639268,
    0.726104,
    0.642159,
    0.556721,
    0.490127,
    0.423532,
    0.338094,
    0.290379,
    0.428096,
    0.490127,
    0.552157,
    0.689874,
    0.553364,
    0.490127,
    0.42689,
];
const MEAN_FACE_Y: [f64; 51] = [
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891, 0.0187482, 0.038915, 0.106454, 0.203352,
    0.307009, 0.409805, 0.515625, 0.587326, 0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852,
    0.231733, 0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099, 0.780233, 0.745405,
    0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805, 0.902192, 0.909281, 0.902192, 0.864805, 0.784792,
    0.778746, 0.785343, 0.778746, 0.784792, 0.824182, 0.831803, 0.824182,
];
/// The padding dlib's face recognition example chips with (`get_face_chip_details(shape, 150, 0.25)`).
const CHIP_PADDING: f64 = 0.25;

/// A mean-face coordinate (unit square) in a padded chip of `size` pixels.
fn in_chip(m: f64, size: usize) -> f64 {
    (CHIP_PADDING + m) / (2.0 * CHIP_PADDING + 1.0) * size as f64
}

/// dlib's chip: the similarity transform taking the landmarks (nose, eyes, upper mouth; not
/// the eyebrows or lower lip) onto the padded mean face, mapping image → chip.
pub fn dlib_chip_transform(points: &[[f64; 2]], size: usize) -> [f64; 6] {
    let used = (27..=54).chain(60..=64);
    let (from, to): (Vec<_>, Vec<_>) = used
        .map(|i| {
            (
                (points[i][0], points[i][1]),
                (in_chip(MEAN_FACE_X[i - 17], size), in_chip(MEAN_FACE_Y[i - 17], size)),
            )
        })
        .unzip();
    imageops::similarity(&from, &to)
}

/// MTCNN's five points (eye centres, nose tip, mouth corners) in dlib's mean face, derived as
/// the 68-point model defines them: eye centre = mean of the six eye-contour points (36..=41,
/// 42..=47), nose tip = 30, mouth corners = 48 and 54. Unit square.
pub fn mean_face_five_points() -> [(f64, f64); 5] {
    let at = |i: usize| (MEAN_FACE_X[i - 17], MEAN_FACE_Y[i - 17]);
    let eye = |r: std::ops::RangeInclusive<usize>| {
        let n = r.clone().count() as f64;
        let (x, y) = r.map(at).fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        (x / n, y / n)
    };
    [eye(36..=41), eye(42..=47), at(30), at(48), at(54)]
}

/// Where MTCNN's five points fall, on average, in dlib's own 150 px chips (chip pixels):
/// measured over 3,442 LFW DevTrain photos by mapping facenet-pytorch's points through the
/// transform of `dlib.get_face_chip` (dlib's 5-point shape predictor on MTCNN's box), variant F
/// of `tools/reference/chip_fit_experiment.py`. Against the mean-face derivation the mouth
/// corners sit 3.4 px lower, the nose 1.8 px lower and the eyes 2 px wider apart; on DevTrain
/// this took FNMR at FMR 1e-3 from 7.19 % to 6.92 % (same photos, same detections).
pub const MTCNN_IN_DLIB_CHIP_150: [(f64, f64); 5] = [
    (47.5508, 45.9933),
    (102.7509, 45.8825),
    (74.8690, 78.3714),
    (50.5296, 106.4835),
    (99.3354, 106.4532),
];

/// dlib's chip from MTCNN's five points: the similarity taking them onto `targets` (image →
/// chip).
pub fn five_point_chip_transform(points: &[[f64; 2]; 5], size: usize, targets: ChipTargets) -> [f64; 6] {
    let to: Vec<(f64, f64)> = match targets {
        ChipTargets::MeanFace => mean_face_five_points()
            .iter()
            .map(|&(x, y)| (in_chip(x, size), in_chip(y, size)))
            .collect(),
        ChipTargets::Measured => {
            let s = size as f64 / 150.0;
            MTCNN_IN_DLIB_CHIP_150.iter().map(|&(x, y)| (x * s, y * s)).collect()
        }
    };
    let from: Vec<(f64, f64)> = points.iter().map(|p| (p[0], p[1])).collect();
    imageops::similarity(&from, &to)
}

/// InsightFace's ArcFace template: where the five points go in a 112×112 input (the alignment
/// MobileFaceNet- and ArcFace-type networks are trained with).
pub const ARCFACE_112: [(f64, f64); 5] = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
];

/// The least-squares similarity taking five points onto the ArcFace template scaled to `size`
/// (image → input), as InsightFace's `norm_crop` estimates it.
pub fn arcface_transform(points: &[[f64; 2]; 5], size: usize) -> [f64; 6] {
    let s = size as f64 / 112.0;
    let to: Vec<(f64, f64)> = ARCFACE_112.iter().map(|&(x, y)| (x * s, y * s)).collect();
    let from: Vec<(f64, f64)> = points.iter().map(|p| (p[0], p[1])).collect();
    imageops::similarity(&from, &to)
}

/// MTCNN's five points (eye centres, nose tip, mouth corners; image left first) from 68 iBUG
/// landmarks: the eye contours' means, point 30, points 48 and 54.
pub fn five_from_68(p: &[[f64; 2]]) -> [[f64; 2]; 5] {
    let mean = |r: std::ops::Range<usize>| {
        let n = r.len() as f64;
        let (x, y) = r.fold((0.0, 0.0), |(x, y), i| (x + p[i][0], y + p[i][1]));
        [x / n, y / n]
    };
    [mean(36..42), mean(42..48), p[30], p[48], p[54]]
}

fn mean(points: &[[f64; 2]]) -> (f64, f64) {
    let n = points.len() as f64;
    let (x, y) = points.iter().fold((0.0, 0.0), |(a, b), p| (a + p[0], b + p[1]));
    (x / n, y / n)
}

/// Eye centres, nose tip, mouth corners: MTCNN's five as they are, or from iBUG's 68.
pub fn five_points(p: &[[f64; 2]]) -> [(f64, f64); 5] {
    if let [l, r, n, ml, mr] = p {
        return [l, r, n, ml, mr].map(|q| (q[0], q[1]));
    }
    [
        mean(&p[36..42]),
        mean(&p[42..48]),
        (p[30][0], p[30][1]),
        (p[48][0], p[48][1]),
        (p[54][0], p[54][1]),
    ]
}

/// Head yaw from landmarks: the nose tip's offset from the eyes' midpoint, in half
/// inter-ocular distances (0 frontal; about ±1 when the nose reaches an eye in profile).
pub fn yaw(p: &[[f64; 2]]) -> f32 {
    let [l, r, nose, _, _] = five_points(p);
    let (mx, my) = ((l.0 + r.0) / 2.0, (l.1 + r.1) / 2.0);
    let (ex, ey) = (r.0 - l.0, r.1 - l.1);
    let half = (ex * ex + ey * ey).sqrt() / 2.0;
    if half == 0.0 {
        return 0.0;
    }
    // Project the nose offset on the eye axis.
    (((nose.0 - mx) * ex + (nose.1 - my) * ey) / (2.0 * half) / half) as f32
}

/// face-api's descriptor crop (`FaceLandmarks68.alignDlib`, as `withFaceDescriptors` uses it):
/// a square of side ⌊d / 0.45⌋, d the mean eye-to-mouth distance, placed at 0.5 / 0.43 of its
/// side from the centroid of the eye and mouth centres; axis-aligned, then clipped and floored
/// as `extractFaceTensors` does. `crop_w`/`crop_h` are the landmark crop's size, which face-api
/// (oddly) uses as the image size in its bound.
pub fn face_api_aligned_rect(points: &[[f64; 2]], crop_w: u32, crop_h: u32, img_w: u32, img_h: u32) -> Option<Rect> {
    let [l, r, _, _, _] = five_points(points);
    let m = mean(&points[48..68]);
    let dist = |p: (f64, f64)| ((m.0 - p.0).powi(2) + (m.1 - p.1).powi(2)).sqrt();
    let size = ((dist(l) + dist(r)) / 2.0 / 0.45).floor();
    let (cx, cy) = ((l.0 + r.0 + m.0) / 3.0, (l.1 + r.1 + m.1) / 3.0);
    let x = (cx - 0.5 * size).max(0.0).floor();
    let y = (cy - 0.43 * size).max(0.0).floor();
    let (w, h) = (size.min(crop_w as f64 + x), size.min(crop_h as f64 + y));
    Rect::clip(x, y, w, h, img_w, img_h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(m: [f64; 6], (x, y): (f64, f64)) -> (f64, f64) {
        (m[0] * x + m[1] * y + m[2], m[3] * x + m[4] * y + m[5])
    }

    #[test]
    fn five_points_of_the_mean_face() {
        let [l, r, nose, ml, mr] = mean_face_five_points();
        // Symmetric about the face's vertical axis (x = 0.490127), eyes level, mouth below nose.
        for (a, b) in [(l, r), (ml, mr)] {
            assert!((a.0 + b.0 - 2.0 * 0.490127).abs() < 1e-5 && (a.1 - b.1).abs() < 1e-5);
        }
        assert!((nose.0 - 0.490127).abs() < 1e-9 && l.1 < nose.1 && nose.1 < ml.1);
        // The left eye centre is the mean of its six contour points, by hand.
        let xs = [0.121737, 0.187122, 0.265825, 0.334606, 0.260918, 0.182743];
        assert!((l.0 - xs.iter().sum::<f64>() / 6.0).abs() < 1e-12);
    }

    #[test]
    fn templates_are_reached_exactly_from_a_similar_face() {
        // A face that is the template rotated, scaled and shifted maps back onto it exactly.
        let (s, th, t) = (2.3f64, -0.4f64, (40.0, 75.0));
        let warp = |(x, y): (f64, f64)| {
            [
                s * (th.cos() * x - th.sin() * y) + t.0,
                s * (th.sin() * x + th.cos() * y) + t.1,
            ]
        };
        let points: [[f64; 2]; 5] = std::array::from_fn(|i| warp(ARCFACE_112[i]));
        let m = arcface_transform(&points, 112);
        for (p, q) in points.iter().zip(ARCFACE_112) {
            let (u, v) = apply(m, (p[0], p[1]));
            assert!((u - q.0).abs() < 1e-9 && (v - q.1).abs() < 1e-9);
        }
        let chip = |v: f64| (0.25 + v) / 1.5 * 150.0;
        let mean = mean_face_five_points();
        let points: [[f64; 2]; 5] = std::array::from_fn(|i| warp(mean[i]));
        let m = five_point_chip_transform(&points, 150, ChipTargets::MeanFace);
        for (p, q) in points.iter().zip(mean) {
            let (u, v) = apply(m, (p[0], p[1]));
            assert!((u - chip(q.0)).abs() < 1e-9 && (v - chip(q.1)).abs() < 1e-9);
        }
        let points: [[f64; 2]; 5] = std::array::from_fn(|i| warp(MTCNN_IN_DLIB_CHIP_150[i]));
        let m = five_point_chip_transform(&points, 150, ChipTargets::Measured);
        for (p, q) in points.iter().zip(MTCNN_IN_DLIB_CHIP_150) {
            let (u, v) = apply(m, (p[0], p[1]));
            assert!((u - q.0).abs() < 1e-9 && (v - q.1).abs() < 1e-9);
        }
    }
}
