//! Pixel operations reproducing face-api.js / tfjs exactly, so our crops feed the networks
//! the same numbers face-api.js does.

use image::RgbImage;

/// An integer pixel rectangle inside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    /// face-api's `Box.clipAtImageBorders` (which floors): clip a float box to the image.
    /// `None` when nothing of it is inside.
    pub fn clip(x: f64, y: f64, width: f64, height: f64, img_w: u32, img_h: u32) -> Option<Rect> {
        let (right, bottom) = (x + width, y + height);
        let cx = x.max(0.0);
        let cy = y.max(0.0);
        let w = (right - cx).min(img_w as f64 - cx).floor();
        let h = (bottom - cy).min(img_h as f64 - cy).floor();
        let (cx, cy) = (cx.floor(), cy.floor());
        if w <= 0.0 || h <= 0.0 || cx >= img_w as f64 || cy >= img_h as f64 {
            return None;
        }
        Some(Rect {
            x: cx as u32,
            y: cy as u32,
            width: w as u32,
            height: h as u32,
        })
    }
}

/// A sampling window on an image; it may reach past the borders, where pixels read as zero
/// (used to "zoom out" around close-up faces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x: i64,
    pub y: i64,
    pub width: u32,
    pub height: u32,
}

impl From<Rect> for Region {
    fn from(r: Rect) -> Self {
        Region {
            x: r.x as i64,
            y: r.y as i64,
            width: r.width,
            height: r.height,
        }
    }
}

/// JavaScript's `Math.round` (halves round up).
fn js_round(v: f64) -> f64 {
    (v + 0.5).floor()
}

/// face-api's `toBatchTensor` for one crop: take `rect` of `img`, zero-pad it to a square
/// (centred, or at the right/bottom), bilinear-resize to `size` (tfjs `resizeBilinear`,
/// alignCorners = false, halfPixelCenters = false). Writes planar RGB (CHW) in 0..255.
pub fn crop_square_resize(img: &RgbImage, region: impl Into<Region>, centred: bool, size: usize, out: &mut [f32]) {
    assert_eq!(out.len(), 3 * size * size);
    let rect = region.into();
    let (w, h) = (rect.width as usize, rect.height as usize);
    let side = w.max(h);
    let diff = side - w.min(h);
    // Padding before the image along the short axis.
    let before = if centred {
        diff - js_round(diff as f64 * 0.5) as usize
    } else {
        0
    };
    let (pad_x, pad_y) = if w < h { (before, 0) } else { (0, before) };
    let raw = img.as_raw();
    let stride = img.width() as usize * 3;
    let (img_w, img_h) = (img.width() as i64, img.height() as i64);
    let pixel = |r: usize, c: usize, ch: usize| -> f64 {
        // (r, c) in the padded square; zero outside the crop and outside the image.
        if r < pad_y || c < pad_x || r - pad_y >= h || c - pad_x >= w {
            return 0.0;
        }
        let (y, x) = (rect.y + (r - pad_y) as i64, rect.x + (c - pad_x) as i64);
        if x < 0 || y < 0 || x >= img_w || y >= img_h {
            0.0
        } else {
            raw[y as usize * stride + x as usize * 3 + ch] as f64
        }
    };
    let ratio = side as f64 / size as f64;
    let plane = size * size;
    for r in 0..size {
        let fr = r as f64 * ratio;
        let r0 = fr.floor() as usize;
        let r1 = (fr.ceil() as usize).min(side - 1);
        let dr = fr - r0 as f64;
        for c in 0..size {
            let fc = c as f64 * ratio;
            let c0 = fc.floor() as usize;
            let c1 = (fc.ceil() as usize).min(side - 1);
            let dc = fc - c0 as f64;
            for ch in 0..3 {
                let (tl, tr) = (pixel(r0, c0, ch), pixel(r0, c1, ch));
                let (bl, br) = (pixel(r1, c0, ch), pixel(r1, c1, ch));
                let top = tl + (tr - tl) * dc;
                let bottom = bl + (br - bl) * dc;
                out[ch * plane + r * size + c] = (top + (bottom - top) * dr) as f32;
            }
        }
    }
}

/// The whole image as a rectangle.
pub fn full(img: &RgbImage) -> Rect {
    Rect {
        x: 0,
        y: 0,
        width: img.width(),
        height: img.height(),
    }
}

/// The whole image with `margin` zero pixels added on every side.
pub fn with_margin(img: &RgbImage, margin: u32) -> Region {
    let m = margin as i64;
    Region {
        x: -m,
        y: -m,
        width: img.width() + 2 * margin,
        height: img.height() + 2 * margin,
    }
}

/// Sample `img` at `size`×`size` through the affine map `dst → src`
/// (`src = [a b; c d]·dst + [tx ty]`), bilinear, zeros outside. Planar RGB out. When the map
/// shrinks (one output pixel spans several input pixels) each output pixel averages an n×n
/// grid of bilinear samples, so large selfies do not alias (dlib's chip extractor blurs
/// through an image pyramid for the same reason).
/// `v.floor() as i64` without the libm call baseline x86-64 makes for `floor` (it has no
/// rounding instruction before SSE4.1): truncate, then step down for negative fractions.
#[inline(always)]
fn floor(v: f64) -> i64 {
    let t = v as i64;
    if (t as f64) > v { t - 1 } else { t }
}

pub fn warp_affine(img: &RgbImage, m: [f64; 6], size: usize, out: &mut [f32]) {
    assert_eq!(out.len(), 3 * size * size);
    let [a, b, tx, c, d, ty] = m;
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let stride = img.width() as usize * 3;
    let at = |x: i64, y: i64, ch: usize| -> f64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            raw[y as usize * stride + x as usize * 3 + ch] as f64
        }
    };
    let scale = (a * d - b * c).abs().sqrt();
    let n = scale.ceil().max(1.0) as usize;
    let plane = size * size;
    for r in 0..size {
        for col in 0..size {
            let mut acc = [0.0f64; 3];
            for sy in 0..n {
                for sx in 0..n {
                    // Sub-sample positions centred on the output pixel.
                    let u = col as f64 + (sx as f64 + 0.5) / n as f64 - 0.5;
                    let v = r as f64 + (sy as f64 + 0.5) / n as f64 - 0.5;
                    let (px, py) = (a * u + b * v + tx, c * u + d * v + ty);
                    let (x0, y0) = (floor(px), floor(py));
                    let (fx, fy) = (px - x0 as f64, py - y0 as f64);
                    if x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h {
                        // All four neighbours inside: read them without the bounds test.
                        let i = y0 as usize * stride + x0 as usize * 3;
                        let (p0, p1) = (&raw[i..i + 6], &raw[i + stride..i + stride + 6]);
                        for (ch, acc) in acc.iter_mut().enumerate() {
                            let top = p0[ch] as f64 * (1.0 - fx) + p0[ch + 3] as f64 * fx;
                            let bottom = p1[ch] as f64 * (1.0 - fx) + p1[ch + 3] as f64 * fx;
                            *acc += top * (1.0 - fy) + bottom * fy;
                        }
                        continue;
                    }
                    for (ch, acc) in acc.iter_mut().enumerate() {
                        let top = at(x0, y0, ch) * (1.0 - fx) + at(x0 + 1, y0, ch) * fx;
                        let bottom = at(x0, y0 + 1, ch) * (1.0 - fx) + at(x0 + 1, y0 + 1, ch) * fx;
                        *acc += top * (1.0 - fy) + bottom * fy;
                    }
                }
            }
            for (ch, acc) in acc.iter().enumerate() {
                out[ch * plane + r * size + col] = (acc / (n * n) as f64) as f32;
            }
        }
    }
}

/// The pixels a `size`² [`warp_affine`] through `m` can read: the bounding box of its sample
/// positions and their bilinear neighbours, clipped to a `width`×`height` image (empty when
/// the crop lies outside it). Sampling this window through `m` shifted by its origin gives
/// the same crop, so only these bytes need to go to a device ([`crate::resident::crop_source`]).
pub fn warp_window(m: [f64; 6], size: usize, width: u32, height: u32) -> Rect {
    let [a, b, tx, c, d, ty] = m;
    let (lo, hi) = (-0.5, size as f64 - 0.5);
    let corners = [(lo, lo), (hi, lo), (lo, hi), (hi, hi)].map(|(u, v)| (a * u + b * v + tx, c * u + d * v + ty));
    let span = |p: fn(&(f64, f64)) -> f64, limit: u32| {
        let (min, max) = corners
            .iter()
            .map(p)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let start = (min.floor() - 1.0).clamp(0.0, limit as f64);
        let end = (max.floor() + 2.0).clamp(0.0, limit as f64);
        (start as u32, (end - start).max(0.0) as u32)
    };
    let ((x, width), (y, height)) = (span(|p| p.0, width), span(|p| p.1, height));
    if width == 0 || height == 0 {
        return Rect {
            x: 0,
            y: 0,
            width: 0,
            height: 0,
        };
    }
    Rect { x, y, width, height }
}

/// Least-squares similarity transform (Umeyama, no reflection) taking `from` onto `to`.
/// Returns `[a, -b, tx, b, a, ty]`: `to ≈ [a -b; b a]·from + t`.
pub fn similarity(from: &[(f64, f64)], to: &[(f64, f64)]) -> [f64; 6] {
    let n = from.len() as f64;
    let mean = |p: &[(f64, f64)]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(a, b), &(x, y)| (a + x, b + y));
        (sx / n, sy / n)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    let (mut num_a, mut num_b, mut den) = (0.0, 0.0, 0.0);
    for (&(x, y), &(u, v)) in from.iter().zip(to) {
        let (x, y, u, v) = (x - fx, y - fy, u - tx, v - ty);
        num_a += x * u + y * v;
        num_b += x * v - y * u;
        den += x * x + y * y;
    }
    let (a, b) = (num_a / den, num_b / den);
    [a, -b, tx - (a * fx - b * fy), b, a, ty - (b * fx + a * fy)]
}

/// Invert a 2×3 affine map.
pub fn invert_affine(m: [f64; 6]) -> [f64; 6] {
    let [a, b, tx, c, d, ty] = m;
    let det = a * d - b * c;
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
    [ia, ib, -(ia * tx + ib * ty), ic, id, -(ic * tx + id * ty)]
}

/// Sharpness: variance of the 4-neighbour Laplacian of the grey image (planar RGB input).
pub fn laplacian_variance(chw: &[f32], size: usize) -> f32 {
    let plane = size * size;
    let grey: Vec<f64> = (0..plane)
        .map(|i| 0.299 * chw[i] as f64 + 0.587 * chw[plane + i] as f64 + 0.114 * chw[2 * plane + i] as f64)
        .collect();
    let mut vals = Vec::with_capacity(plane);
    for r in 1..size - 1 {
        for c in 1..size - 1 {
            let i = r * size + c;
            vals.push(grey[i - 1] + grey[i + 1] + grey[i - size] + grey[i + size] - 4.0 * grey[i]);
        }
    }
    let n = vals.len() as f64;
    let mean = vals.iter().sum::<f64>() / n;
    (vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_floor_is_floor() {
        for v in [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.999_999,
            -2.000_001,
            1e9 + 0.5,
            -1e9 - 0.5,
            149.0,
            -1e-300,
        ] {
            assert_eq!(floor(v), v.floor() as i64, "{v}");
        }
    }

    #[test]
    fn identity_resize_keeps_pixels_and_pads_centred() {
        // 2 wide, 4 high: centred padding puts one zero column on each side.
        let img = RgbImage::from_fn(2, 4, |x, y| image::Rgb([(10 * x + y) as u8, 7, 9]));
        let mut out = vec![0.0; 3 * 16];
        crop_square_resize(&img, full(&img), true, 4, &mut out);
        for r in 0..4 {
            assert_eq!(out[r * 4], 0.0);
            assert_eq!(out[r * 4 + 1], r as f32);
            assert_eq!(out[r * 4 + 2], (10 + r) as f32);
            assert_eq!(out[r * 4 + 3], 0.0);
        }
        // Not centred: the padding goes right.
        crop_square_resize(&img, full(&img), false, 4, &mut out);
        assert_eq!(out[0], 0.0 + 0.0);
        assert_eq!(out[1], 10.0);
        assert_eq!(out[2], 0.0);
    }

    #[test]
    fn downscale_by_two_samples_even_pixels() {
        // alignCorners=false, halfPixelCenters=false: output i reads input 2i exactly.
        let img = RgbImage::from_fn(4, 4, |x, y| image::Rgb([(x + 4 * y) as u8, 0, 0]));
        let mut out = vec![0.0; 3 * 4];
        crop_square_resize(&img, full(&img), true, 2, &mut out);
        assert_eq!(&out[..4], &[0.0, 2.0, 8.0, 10.0]);
    }

    #[test]
    fn upscale_interpolates_linearly() {
        let img = RgbImage::from_fn(2, 2, |x, _| image::Rgb([(100 * x) as u8, 0, 0]));
        let mut out = vec![0.0; 3 * 16];
        crop_square_resize(&img, full(&img), true, 4, &mut out);
        // Columns read input x = 0, 0.5, 1, 1.5 → 0, 50, 100, 100 (clamped).
        assert_eq!(&out[..4], &[0.0, 50.0, 100.0, 100.0]);
    }

    #[test]
    fn margins_read_as_zero() {
        let img = RgbImage::from_fn(2, 2, |_, _| image::Rgb([9, 9, 9]));
        let mut out = vec![0.0; 3 * 16];
        crop_square_resize(&img, with_margin(&img, 1), true, 4, &mut out);
        let expect = [0., 0., 0., 0., 0., 9., 9., 0., 0., 9., 9., 0., 0., 0., 0., 0.];
        assert_eq!(&out[..16], &expect);
    }

    #[test]
    fn clip_floors_and_clips() {
        assert_eq!(
            Rect::clip(-3.5, 2.7, 10.0, 5.0, 5, 100),
            Some(Rect {
                x: 0,
                y: 2,
                width: 5,
                height: 5
            })
        );
        assert_eq!(Rect::clip(10.0, 0.0, 5.0, 5.0, 5, 5), None);
    }

    #[test]
    fn similarity_recovers_a_known_transform() {
        let (s, th, t) = (1.7f64, 0.3f64, (4.0, -2.0));
        let f = |(x, y): (f64, f64)| {
            (
                s * (th.cos() * x - th.sin() * y) + t.0,
                s * (th.sin() * x + th.cos() * y) + t.1,
            )
        };
        let from = [(0.0, 0.0), (3.0, 1.0), (-2.0, 5.0), (1.0, -1.0)];
        let to: Vec<_> = from.iter().map(|&p| f(p)).collect();
        let m = similarity(&from, &to);
        for (&p, &q) in from.iter().zip(&to) {
            let (u, v) = (m[0] * p.0 + m[1] * p.1 + m[2], m[3] * p.0 + m[4] * p.1 + m[5]);
            assert!((u - q.0).abs() < 1e-9 && (v - q.1).abs() < 1e-9);
        }
        let inv = invert_affine(m);
        let (x, y) = (
            inv[0] * to[1].0 + inv[1] * to[1].1 + inv[2],
            inv[3] * to[1].0 + inv[4] * to[1].1 + inv[5],
        );
        assert!((x - 3.0).abs() < 1e-9 && (y - 1.0).abs() < 1e-9);
    }

    #[test]
    fn warp_identity_and_shift() {
        let img = RgbImage::from_fn(4, 4, |x, y| image::Rgb([(x + 4 * y) as u8 * 10, 0, 0]));
        let mut out = vec![0.0; 3 * 16];
        warp_affine(&img, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 4, &mut out);
        assert_eq!(out[5], 50.0);
        // Shifted by one column: output (x, y) reads input (x + 1, y); zero past the border.
        warp_affine(&img, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0], 4, &mut out);
        assert_eq!(out[5], 60.0);
        assert_eq!(out[3], 0.0);
        // Halving a linear ramp keeps the value at the output pixel's source centre (2, 2).
        let mut small = vec![0.0; 3 * 4];
        warp_affine(&img, [2.0, 0.0, 0.0, 0.0, 2.0, 0.0], 2, &mut small);
        assert!((small[3] - 100.0).abs() < 1e-4, "{}", small[3]);
        // Halving a one-pixel checkerboard gives grey, not the aliased black or white that a
        // single sample per output pixel would.
        let board = RgbImage::from_fn(16, 16, |x, y| image::Rgb([if (x + y) % 2 == 0 { 200 } else { 0 }; 3]));
        let mut half = vec![0.0; 3 * 64];
        warp_affine(&board, [2.0, 0.0, 0.0, 0.0, 2.0, 0.0], 8, &mut half);
        for r in 1..7 {
            for c in 1..7 {
                assert!((half[r * 8 + c] - 100.0).abs() < 1e-3, "{}", half[r * 8 + c]);
            }
        }
    }

    #[test]
    fn blur_lowers_laplacian_variance() {
        let size = 32;
        let sharp: Vec<f32> = (0..3 * size * size)
            .map(|i| if (i / 2) % 2 == 0 { 255.0 } else { 0.0 })
            .collect();
        let flat = vec![128.0; 3 * size * size];
        assert!(laplacian_variance(&sharp, size) > 1000.0);
        assert_eq!(laplacian_variance(&flat, size), 0.0);
    }
}
