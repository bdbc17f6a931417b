//! Descreening printed portraits. The portrait on an ID card is printed with a halftone screen
//! (a lattice of dots); photographed, the lattice survives into the face crop, where the
//! networks read it as texture and the detector's landmarks wander. A screen shows as evenly
//! spaced peaks in the autocorrelation of the face's fine detail, which a photographed face
//! does not have; a Gaussian of half the screen's period removes the lattice (its fundamental
//! is attenuated to under 1 %) and keeps what is coarser than it, the face.

use facegate_core::FaceBox;
use image::RgbImage;
use zeroize::Zeroize;

use crate::imageops::{self, Rect};

/// The side of the grey patch the screen is looked for in: about twice the embedders' face
/// resolution, so a screen too fine to show at 128 px is too fine to matter to them.
const PATCH: usize = 128;
/// Longest lag searched, in patch pixels (a screen of 128 / 12 ≈ 11 dots across the face box
/// is coarser than any print we expect).
const MAX_LAG: i64 = 12;
/// Shortest lag: one and two pixels are where any fine detail correlates.
const MIN_LAG: f64 = 2.5;
/// Fine detail: the patch less its Gaussian blur of this σ (patch pixels).
const DETAIL_SIGMA: f32 = 3.0;

/// A halftone screen found on a face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Screen {
    /// The lattice period, in the photo's pixels.
    pub period: f32,
    /// The normalised autocorrelation at the lattice peak (0..1): how regular the screen is.
    pub strength: f32,
}

impl Screen {
    /// The Gaussian σ, in the photo's pixels, of `fraction` of the period (0.5 leaves under
    /// 1 % of the screen's fundamental: `Config::reference_descreen_sigma`).
    pub fn sigma(&self, fraction: f32) -> f32 {
        fraction * self.period
    }
}

/// The strongest lattice peak of the fine detail inside `face` (its central square), or
/// `None` when the box is too small to tell. The caller compares `strength` with its threshold.
pub fn find_screen(img: &RgbImage, face: &FaceBox) -> Option<Screen> {
    let side = 0.8 * face.width.min(face.height) as f64;
    if side < 32.0 {
        return None;
    }
    let (cx, cy) = ((face.x + face.width / 2.0) as f64, (face.y + face.height / 2.0) as f64);
    // Patch pixel → photo pixel (centres at integers), area-averaged by `warp_affine`.
    let s = side / PATCH as f64;
    let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
    let m = [s, 0.0, x0 + 0.5 * s - 0.5, 0.0, s, y0 + 0.5 * s - 0.5];
    let mut rgb = vec![0f32; 3 * PATCH * PATCH];
    imageops::warp_affine(img, m, PATCH, &mut rgb);
    let plane = PATCH * PATCH;
    let mut grey: Vec<f32> = (0..plane)
        .map(|i| (rgb[i] + rgb[plane + i] + rgb[2 * plane + i]) / 3.0)
        .collect();
    rgb.zeroize();
    let mut low = grey.clone();
    gaussian(&mut low, PATCH, PATCH, DETAIL_SIGMA);
    for (g, l) in grey.iter_mut().zip(&low) {
        *g -= l;
    }
    low.zeroize();
    let peak = lattice_peak(&grey, PATCH);
    grey.zeroize();
    peak.map(|(lag, strength)| Screen {
        period: (lag * s) as f32,
        strength,
    })
}

/// Σ aᵢbᵢ in four running sums, which the compiler can keep in vector lanes (one running
/// sum is a chain of dependent adds it must not reorder).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// The normalised autocorrelation of `d` (mean removed, `n`×`n`) at every lag up to
/// `MAX_LAG`, and its highest local maximum beyond `MIN_LAG`: (lag length, value).
fn lattice_peak(d: &[f32], n: usize) -> Option<(f64, f32)> {
    let mean = d.iter().map(|&v| v as f64).sum::<f64>() / d.len() as f64;
    let mut c: Vec<f64> = d.iter().map(|&v| v as f64 - mean).collect();
    let energy = c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64;
    if energy <= 1e-9 {
        c.zeroize();
        return None;
    }
    let r = MAX_LAG + 1; // one more ring, so every searched lag has all its neighbours
    let side = (2 * r + 1) as usize;
    let mut acf = vec![0f64; side * side];
    // The autocorrelation is symmetric, acf(−dx, −dy) = acf(dx, dy) (the same products): the
    // lower half plane is copied from the upper one.
    for dy in 0..=r {
        for dx in -r..=r {
            let (x0, x1) = (0i64.max(-dx) as usize, (n as i64).min(n as i64 - dx) as usize);
            let rows = n - dy as usize;
            let mut sum = 0.0;
            for y in 0..rows {
                let a = &c[y * n + x0..y * n + x1];
                let b = &c[(y + dy as usize) * n + (x0 as i64 + dx) as usize..][..x1 - x0];
                sum += dot(a, b);
            }
            let v = sum / (rows * (x1 - x0)) as f64 / energy;
            acf[(dy + r) as usize * side + (dx + r) as usize] = v;
            acf[(r - dy) as usize * side + (r - dx) as usize] = v;
        }
    }
    c.zeroize(); // the face's fine detail
    let at = |dx: i64, dy: i64| acf[(dy + r) as usize * side + (dx + r) as usize];
    // Local maxima over half the plane (the autocorrelation is symmetric).
    let mut peaks: Vec<(i64, i64, f64)> = Vec::new();
    for dy in 0..=MAX_LAG {
        for dx in -MAX_LAG..=MAX_LAG {
            let len = ((dx * dx + dy * dy) as f64).sqrt();
            if len < MIN_LAG || len > MAX_LAG as f64 {
                continue;
            }
            let v = at(dx, dy);
            if (-1..=1).all(|j| (-1..=1).all(|i| (i == 0 && j == 0) || at(dx + i, dy + j) < v)) {
                peaks.push((dx, dy, v));
            }
        }
    }
    let strongest = peaks.iter().map(|p| p.2).fold(f64::NEG_INFINITY, f64::max);
    // A lattice repeats its peak at every multiple of its period, the multiples sometimes
    // higher where they fall nearer the integer grid: the period is the shortest lag nearly
    // as strong as the strongest, refined to a fraction of a pixel by a parabola each way.
    let &(dx, dy, v) = peaks
        .iter()
        .filter(|p| p.2 >= 0.8 * strongest)
        .min_by(|a, b| (a.0 * a.0 + a.1 * a.1).cmp(&(b.0 * b.0 + b.1 * b.1)))?;
    let vertex = |minus: f64, plus: f64| {
        let curve = minus - 2.0 * v + plus;
        if curve < 0.0 {
            (0.5 * (minus - plus) / curve).clamp(-0.5, 0.5)
        } else {
            0.0
        }
    };
    let fx = dx as f64 + vertex(at(dx - 1, dy), at(dx + 1, dy));
    let fy = dy as f64 + vertex(at(dx, dy - 1), at(dx, dy + 1));
    Some(((fx * fx + fy * fy).sqrt(), v as f32))
}

/// Blurs `rect` of `img` in place with a Gaussian of `sigma` pixels, reading the pixels
/// around it (clamped at the photo's edges) so the rectangle's border is blurred like its
/// inside.
pub fn blur_rect(img: &mut RgbImage, rect: Rect, sigma: f32) {
    let radius = (3.0 * sigma).ceil() as u32;
    let (w, h) = (img.width(), img.height());
    // The rectangle and the margin the kernel reads.
    let x0 = rect.x.saturating_sub(radius);
    let y0 = rect.y.saturating_sub(radius);
    let x1 = (rect.x + rect.width + radius).min(w);
    let y1 = (rect.y + rect.height + radius).min(h);
    let (pw, ph) = ((x1 - x0) as usize, (y1 - y0) as usize);
    let mut buf = vec![0f32; pw * ph];
    for ch in 0..3 {
        for y in 0..ph {
            for x in 0..pw {
                buf[y * pw + x] = img.get_pixel(x0 + x as u32, y0 + y as u32)[ch] as f32;
            }
        }
        gaussian(&mut buf, pw, ph, sigma);
        for y in rect.y..(rect.y + rect.height).min(h) {
            for x in rect.x..(rect.x + rect.width).min(w) {
                let v = buf[(y - y0) as usize * pw + (x - x0) as usize];
                img.get_pixel_mut(x, y)[ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    buf.zeroize();
}

/// Separable Gaussian of `sigma` over a `w`×`h` plane, edges clamped.
pub(crate) fn gaussian(plane: &mut [f32], w: usize, h: usize, sigma: f32) {
    if w == 0 || h == 0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as usize;
    let mut k: Vec<f32> = (-(radius as i64)..=radius as i64)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= total);
    // Each tap is one multiply-add over a whole row, in tap order (the sums are the same as
    // tap by tap per pixel): along rows from the row padded with its edge values, down columns
    // from whole input rows, the edge rows repeated.
    let mut padded = vec![0f32; w + 2 * radius];
    for row in plane.chunks_mut(w) {
        padded[..radius].fill(row[0]);
        padded[radius..radius + w].copy_from_slice(row);
        padded[radius + w..].fill(row[w - 1]);
        row.fill(0.0);
        for (j, &kv) in k.iter().enumerate() {
            for (o, &p) in row.iter_mut().zip(&padded[j..j + w]) {
                *o += kv * p;
            }
        }
    }
    padded.zeroize();
    let mut src = plane.to_vec();
    for (y, out) in plane.chunks_mut(w).enumerate() {
        out.fill(0.0);
        for (j, &kv) in k.iter().enumerate() {
            let sy = (y + j).saturating_sub(radius).min(h - 1);
            for (o, &p) in out.iter_mut().zip(&src[sy * w..(sy + 1) * w]) {
                *o += kv * p;
            }
        }
    }
    src.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2-D Gaussian sum the separable blur stands for, in f64, at (x, y) of a `w`×`h`
    /// plane read through `at` with its edges clamped.
    fn gaussian_f64(at: impl Fn(usize, usize) -> f64, [w, h]: [usize; 2], sigma: f32, [x, y]: [i64; 2]) -> f64 {
        let r = (3.0 * sigma as f64).ceil() as i64;
        let weight = |d: i64| (-(d * d) as f64 / (2.0 * (sigma as f64).powi(2))).exp();
        let norm: f64 = (-r..=r).map(weight).sum();
        let mut acc = 0.0;
        for j in -r..=r {
            for i in -r..=r {
                let sx = (x + i).clamp(0, w as i64 - 1) as usize;
                let sy = (y + j).clamp(0, h as i64 - 1) as usize;
                acc += weight(i) * weight(j) * at(sx, sy);
            }
        }
        acc / (norm * norm)
    }

    /// The separable blur against the 2-D sum, on odd sizes and a radius wider than the plane.
    #[test]
    fn gaussian_is_the_clamped_two_dimensional_sum() {
        for (w, h, sigma) in [(37usize, 23usize, 1.5f32), (5, 9, 3.0), (64, 64, 0.5)] {
            let plane: Vec<f32> = (0..w * h).map(|i| ((i * 7919) % 255) as f32).collect();
            let mut got = plane.clone();
            gaussian(&mut got, w, h, sigma);
            for y in 0..h {
                for x in 0..w {
                    let want = gaussian_f64(|sx, sy| plane[sy * w + sx] as f64, [w, h], sigma, [x as i64, y as i64]);
                    let d = (got[y * w + x] as f64 - want).abs();
                    assert!(d < 1e-3, "{w}×{h} σ {sigma} at ({x}, {y}): {d}");
                }
            }
        }
    }

    /// A grey gradient printed with a dot screen of `cell` pixels at `angle` degrees:
    /// amplitude-modulated dots, the way a halftone prints.
    fn halftone(w: u32, h: u32, cell: f64, angle: f64) -> RgbImage {
        let (s, c) = angle.to_radians().sin_cos();
        RgbImage::from_fn(w, h, |x, y| {
            let tone = 0.25 + 0.5 * (x as f64 / w as f64); // ink coverage
            let (u, v) = (c * x as f64 + s * y as f64, -s * x as f64 + c * y as f64);
            let fu = (u / cell).rem_euclid(1.0) - 0.5;
            let fv = (v / cell).rem_euclid(1.0) - 0.5;
            let ink = (fu * fu + fv * fv).sqrt() < (tone / std::f64::consts::PI).sqrt();
            let g = if ink { 30 } else { 235 };
            image::Rgb([g, g, g])
        })
    }

    fn whole(img: &RgbImage) -> FaceBox {
        FaceBox {
            x: 0.0,
            y: 0.0,
            width: img.width() as f32,
            height: img.height() as f32,
            score: 1.0,
        }
    }

    #[test]
    fn a_dot_screen_is_found_with_its_period() {
        for (cell, angle, side) in [(4.0, 45.0, 200), (6.0, 45.0, 300), (9.0, 15.0, 500), (5.0, 0.0, 160)] {
            let img = halftone(side, side, cell, angle);
            let screen = find_screen(&img, &whole(&img)).expect("a peak");
            assert!(screen.strength > 0.5, "cell {cell}: {screen:?}");
            assert!(
                (screen.period as f64 - cell).abs() < 0.12 * cell,
                "cell {cell}: {screen:?}"
            );
        }
    }

    #[test]
    fn a_smooth_face_photo_has_no_strong_lattice() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data");
        let mut seen = 0;
        for name in [
            "face-a.jpg",
            "face-a.png",
            "face-b.png",
            "face-c.png",
            "face-d.png",
            "face-e.png",
        ] {
            let img = image::open(format!("{root}/{name}")).unwrap().to_rgb8();
            let strength = find_screen(&img, &whole(&img)).map_or(0.0, |s| s.strength);
            assert!(strength < 0.3, "{name}: {strength}");
            seen += 1;
        }
        assert!(seen >= 2);
    }

    #[test]
    fn blurring_matches_a_direct_f64_convolution() {
        let img = RgbImage::from_fn(40, 30, |x, y| {
            let v = ((x * 37 + y * 91) % 251) as u8;
            image::Rgb([v, v.wrapping_mul(3), 255 - v])
        });
        let (sigma, rect) = (
            1.7f32,
            Rect {
                x: 5,
                y: 4,
                width: 20,
                height: 15,
            },
        );
        let mut out = img.clone();
        blur_rect(&mut out, rect, sigma);
        for y in 0..30i64 {
            for x in 0..40i64 {
                let inside = (5..25).contains(&x) && (4..19).contains(&y);
                for ch in 0..3 {
                    let want = if inside {
                        let at = |sx: usize, sy: usize| img.get_pixel(sx as u32, sy as u32)[ch] as f64;
                        gaussian_f64(at, [40, 30], sigma, [x, y])
                    } else {
                        img.get_pixel(x as u32, y as u32)[ch] as f64
                    };
                    let got = out.get_pixel(x as u32, y as u32)[ch] as f64;
                    assert!((got - want).abs() <= 0.51 + 1e-3, "({x},{y},{ch}): {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn descreening_removes_the_lattice() {
        let mut img = halftone(240, 240, 6.0, 45.0);
        let screen = find_screen(&img, &whole(&img)).unwrap();
        let rect = Rect {
            x: 0,
            y: 0,
            width: 240,
            height: 240,
        };
        // The tone is constant down a column: what varies there is the lattice.
        let ripple = |img: &RgbImage| {
            let column: Vec<f64> = (20..220).map(|y| img.get_pixel(120, y)[0] as f64).collect();
            let mean = column.iter().sum::<f64>() / column.len() as f64;
            (column.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / column.len() as f64).sqrt()
        };
        let before = ripple(&img);
        blur_rect(&mut img, rect, screen.sigma(0.5));
        let after = ripple(&img);
        assert!(
            before > 50.0 && after < 0.03 * before,
            "{screen:?}: ripple {before} → {after}"
        );
    }
}
