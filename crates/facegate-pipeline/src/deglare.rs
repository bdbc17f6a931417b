//! Glare on a photographed document portrait. Light reflected by the card's laminate washes
//! the portrait towards white: a pixel becomes I = J·t + 255·(1 − t), with t smooth over the
//! face: the image model of haze with white airlight. The dark-channel prior (He, Sun and Tang,
//! 2009) estimates t: in a window as large as a sixth of the face, some pixel (an eye, a
//! nostril, hair, shadow) is nearly black in some channel, so the window's darkest value is
//! what the wash added. Inverting the model restores the contrast the wash took. A face
//! without glare has t near 1 at its centre and is left alone (the gate).
//!
//! Prototyped on DevTrain card photos: `tools/cards/glare/results.md`.

use facegate_core::FaceBox;
use image::RgbImage;
use zeroize::Zeroize;

use crate::descreen::gaussian;

/// The window of the dark channel, as a fraction of the face's size √(w·h).
const WINDOW: f32 = 0.17;
/// The smoothing of t (σ, as a fraction of the face's size): glare varies slowly.
const SMOOTH: f32 = 0.20;
/// How much of the darkest value is taken for glare (He et al.'s ω): a little is left, so a
/// face that is grey all over is not made black.
const OMEGA: f32 = 0.95;
/// The least t divided by: where the wash is nearly total, the little left is not amplified
/// past what it can carry.
const T_FLOOR: f32 = 0.10;
/// The grid t is estimated on: the face about this many cells across (t is smooth, so a
/// coarse grid loses nothing and costs a sixty-fourth of full resolution).
const GRID_FACE: f32 = 64.0;

/// The size of the stand-in face [`find_glare_spot`] returns, as a share of the photo's longer
/// side: a card over 30–80 % of the frame, its portrait's face about a sixth of the card.
const SPOT_FACE: f32 = 0.09;
/// Where a photo in which no face was found is washed out most: the brightest smooth blob of
/// its darkest channel, if bright enough to be glare, as a stand-in face box (a card
/// portrait's face at the usual framing) for [`find_glare`]. `[level, contrast]`
/// (`Config::reference_glare_spot`): how washed out the spot must be (its darkest channel,
/// 0..1, averaged and smoothed over about a face), and how much brighter than its
/// surroundings (the median over a ring one to one and a half stand-in faces from it):
/// glare is a highlight, a white desk or wall is bright all round.
pub fn find_glare_spot(img: &RgbImage, [spot_level, spot_contrast]: [f32; 2]) -> Option<FaceBox> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let long = w.max(h) as f32;
    let side = SPOT_FACE * long;
    let cell = (long / 256.0).max(1.0);
    let gw = ((w as f32 / cell).ceil() as usize).max(1);
    let gh = ((h as f32 / cell).ceil() as usize).max(1);
    let mut plane = vec![0f32; gw * gh];
    let mut count = vec![0u32; gw * gh];
    for (x, y, p) in img.enumerate_pixels() {
        let g = ((y as f32 / cell) as usize).min(gh - 1) * gw + ((x as f32 / cell) as usize).min(gw - 1);
        plane[g] += p.0[0].min(p.0[1]).min(p.0[2]) as f32 / 255.0;
        count[g] += 1;
    }
    plane.iter_mut().zip(&count).for_each(|(v, &n)| *v /= n.max(1) as f32);
    gaussian(&mut plane, gw, gh, (0.25 * side / cell).max(0.5));
    let (at, &level) = plane.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1))?;
    let (ax, ay) = ((at % gw) as f32, (at / gw) as f32);
    let (r0, r1) = (side / cell, 1.5 * side / cell);
    let mut ring: Vec<f32> = (0..gw * gh)
        .filter(|&g| {
            let d = ((g % gw) as f32 - ax).hypot((g / gw) as f32 - ay);
            (r0..=r1).contains(&d)
        })
        .map(|g| plane[g])
        .collect();
    plane.zeroize();
    if level < spot_level || ring.is_empty() {
        return None;
    }
    ring.sort_by(f32::total_cmp);
    if level - ring[ring.len() / 2] < spot_contrast {
        return None;
    }
    let (cx, cy) = ((ax + 0.5) * cell, (ay + 0.5) * cell);
    Some(FaceBox {
        x: cx - side / 2.0,
        y: cy - side / 2.0,
        width: side,
        height: side,
        score: 0.0,
    })
}

/// Removes glare from the face in `face` and around it, in place, when the wash at the face's
/// centre is strong enough: the median t over the central half of the box under `gate`.
/// Returns that median when it did (the image is unchanged otherwise).
pub fn deglare(img: &mut RgbImage, face: &FaceBox, gate: f32) -> Option<f32> {
    let glare = find_glare(img, face, gate)?;
    glare.remove(img);
    Some(glare.t_centre)
}

/// The wash found over a face: t on a coarse grid around it.
pub struct Glare {
    /// The median t over the central half of the face box.
    pub t_centre: f32,
    t: Vec<f32>,
    grid: (usize, usize),
    origin: (f32, f32),
    cell: f32,
    centre: (f32, f32),
    size: f32,
}

impl Drop for Glare {
    fn drop(&mut self) {
        self.t.zeroize();
    }
}

/// The glare over `face`, if the wash at its centre is strong enough (t under `gate`).
pub fn find_glare(img: &RgbImage, face: &FaceBox, gate: f32) -> Option<Glare> {
    let s = (face.width * face.height).max(1.0).sqrt();
    let (cx, cy) = (face.x + face.width / 2.0, face.y + face.height / 2.0);
    let cell = (s / GRID_FACE).max(1.0);
    // The estimate's square (2.6 s, room for the window), clipped, on the coarse grid.
    let half = 1.3 * s;
    let (w, h) = (img.width() as f32, img.height() as f32);
    let (x0, y0) = ((cx - half).max(0.0).floor(), (cy - half).max(0.0).floor());
    let (x1, y1) = ((cx + half).min(w).ceil(), (cy + half).min(h).ceil());
    let gw = ((x1 - x0) / cell).ceil() as usize;
    let gh = ((y1 - y0) / cell).ceil() as usize;
    if gw < 4 || gh < 4 {
        return None;
    }
    // The dark channel: each cell's darkest channel value (a min over the cell, the first
    // step of the min filter).
    let mut dark = vec![1f32; gw * gh];
    for y in y0 as u32..y1 as u32 {
        let gy = ((y as f32 - y0) / cell) as usize;
        for x in x0 as u32..x1 as u32 {
            let gx = ((x as f32 - x0) / cell) as usize;
            let p = img.get_pixel(x, y).0;
            let v = p[0].min(p[1]).min(p[2]) as f32 / 255.0;
            let d = &mut dark[gy.min(gh - 1) * gw + gx.min(gw - 1)];
            *d = d.min(v);
        }
    }
    let radius = ((WINDOW * s / cell) / 2.0).round().max(1.0) as usize;
    min_filter(&mut dark, gw, gh, radius);
    let mut t: Vec<f32> = dark.iter().map(|d| (1.0 - OMEGA * d).clamp(0.0, 1.0)).collect();
    dark.zeroize();
    gaussian(&mut t, gw, gh, (SMOOTH * s / cell).max(0.5));
    // The gate: the wash over the middle of the face.
    let mut centre: Vec<f32> = Vec::new();
    let (qx, qy) = (face.width / 4.0, face.height / 4.0);
    for gy in 0..gh {
        for gx in 0..gw {
            let (x, y) = (x0 + (gx as f32 + 0.5) * cell, y0 + (gy as f32 + 0.5) * cell);
            if (x - cx).abs() <= qx && (y - cy).abs() <= qy {
                centre.push(t[gy * gw + gx]);
            }
        }
    }
    if centre.is_empty() {
        t.zeroize();
        return None;
    }
    centre.sort_by(f32::total_cmp);
    let t_centre = centre[centre.len() / 2];
    if t_centre >= gate {
        t.zeroize();
        return None;
    }
    Some(Glare {
        t_centre,
        t,
        grid: (gw, gh),
        origin: (x0, y0),
        cell,
        centre: (cx, cy),
        size: s,
    })
}

impl Glare {
    /// J = (I − 255)/t + 255 over a square of twice the face's size, blended out over its
    /// outer fifth so no edge is drawn where the correction stops.
    pub fn remove(&self, img: &mut RgbImage) {
        let ((gw, gh), (x0, y0), cell, (cx, cy), side) = (self.grid, self.origin, self.cell, self.centre, self.size);
        let t = &self.t;
        let sample = |x: f32, y: f32| -> f32 {
            // Bilinear on the grid (cell centres).
            let gx = ((x - x0) / cell - 0.5).clamp(0.0, (gw - 1) as f32);
            let gy = ((y - y0) / cell - 0.5).clamp(0.0, (gh - 1) as f32);
            let (ix, iy) = (gx.floor() as usize, gy.floor() as usize);
            let (jx, jy) = ((ix + 1).min(gw - 1), (iy + 1).min(gh - 1));
            let (fx, fy) = (gx - ix as f32, gy - iy as f32);
            let top = t[iy * gw + ix] * (1.0 - fx) + t[iy * gw + jx] * fx;
            let bottom = t[jy * gw + ix] * (1.0 - fx) + t[jy * gw + jx] * fx;
            top * (1.0 - fy) + bottom * fy
        };
        let (w, h) = (img.width() as f32, img.height() as f32);
        let (ax0, ay0) = ((cx - side).max(0.0) as u32, (cy - side).max(0.0) as u32);
        let (ax1, ay1) = ((cx + side).min(w) as u32, (cy + side).min(h) as u32);
        for y in ay0..ay1 {
            for x in ax0..ax1 {
                let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
                let edge = (px - cx).abs().max((py - cy).abs()) / side;
                let weight = ((1.0 - edge) / 0.2).clamp(0.0, 1.0);
                if weight <= 0.0 {
                    continue;
                }
                let tv = sample(px, py).max(T_FLOOR);
                let p = img.get_pixel_mut(x, y);
                for c in p.0.iter_mut() {
                    let i = *c as f32;
                    let j = ((i - 255.0) / tv + 255.0).clamp(0.0, 255.0);
                    *c = (i + weight * (j - i)).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
    }
}

/// Square min filter of `radius` over a `w`×`h` plane, separable, edges clamped (a window
/// past the edge sees only what is inside).
fn min_filter(plane: &mut [f32], w: usize, h: usize, radius: usize) {
    let mut line = vec![0f32; w.max(h)];
    let mut out = vec![0f32; w.max(h)];
    for y in 0..h {
        line[..w].copy_from_slice(&plane[y * w..(y + 1) * w]);
        running_min(&line[..w], &mut out[..w], radius);
        plane[y * w..(y + 1) * w].copy_from_slice(&out[..w]);
    }
    for x in 0..w {
        for y in 0..h {
            line[y] = plane[y * w + x];
        }
        running_min(&line[..h], &mut out[..h], radius);
        for y in 0..h {
            plane[y * w + x] = out[y];
        }
    }
}

/// out[i] = min(input[i − r ..= i + r]) within bounds, in O(n) with a monotonic deque.
fn running_min(input: &[f32], out: &mut [f32], r: usize) {
    let n = input.len();
    let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut next = 0;
    for (i, o) in out.iter_mut().enumerate().take(n) {
        while next < n && next <= i + r {
            while deque.back().is_some_and(|&b| input[b] >= input[next]) {
                deque.pop_back();
            }
            deque.push_back(next);
            next += 1;
        }
        while deque.front().is_some_and(|&f| f + r < i) {
            deque.pop_front();
        }
        *o = input[*deque.front().expect("the window holds i")];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `Config::reference_glare_spot`.
    const SPOT: [f32; 2] = facegate_core::Config::DEFAULT_GLARE_SPOT;

    #[test]
    fn running_min_matches_the_naive_minimum() {
        let mut seed = 7u64;
        for (n, r) in [(1, 1), (5, 0), (17, 3), (64, 11), (100, 60)] {
            let input: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (seed >> 40) as f32
                })
                .collect();
            let mut out = vec![0f32; n];
            running_min(&input, &mut out, r);
            for (i, got) in out.iter().enumerate() {
                let lo = i.saturating_sub(r);
                let hi = (i + r).min(n - 1);
                let want = input[lo..=hi].iter().copied().fold(f32::INFINITY, f32::min);
                assert_eq!(*got, want, "n {n} r {r} i {i}");
            }
        }
    }

    /// A 640×480 desk-and-card scene: mid-grey desk with a darker card, a face-like dark
    /// texture on it, and (optionally) a highlight: I + (255 − I)·0.9·exp(−d²/2σ²).
    fn scene(highlight: Option<(f32, f32)>, desk: u8) -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| {
            let base = if (150..490).contains(&x) && (120..360).contains(&y) {
                // the card, with fine dark detail as a printed portrait has
                if (x / 3 + y / 5) % 4 == 0 { 40.0 } else { 150.0 }
            } else {
                desk as f32
            };
            let g = highlight.map_or(0.0, |(hx, hy)| {
                let d2 = (x as f32 - hx).powi(2) + (y as f32 - hy).powi(2);
                0.9 * (-d2 / (2.0 * 30.0f32.powi(2))).exp()
            });
            let v = (base + (255.0 - base) * g).round() as u8;
            image::Rgb([v, v, v])
        })
    }

    #[test]
    fn a_glare_spot_is_found_where_the_highlight_is_and_nowhere_else() {
        let spot = find_glare_spot(&scene(Some((260.0, 200.0)), 110), SPOT).expect("a spot");
        let (cx, cy) = (spot.x + spot.width / 2.0, spot.y + spot.height / 2.0);
        assert!((cx - 260.0).abs() < 8.0 && (cy - 200.0).abs() < 8.0, "{cx} {cy}");
        assert!((spot.width - 0.09 * 640.0).abs() < 1e-3);
        // No highlight: nothing; a white desk is bright all round, not a spot of glare.
        assert!(find_glare_spot(&scene(None, 110), SPOT).is_none());
        assert!(find_glare_spot(&scene(None, 250), SPOT).is_none());
        assert!(find_glare_spot(&RgbImage::from_pixel(300, 200, image::Rgb([255, 255, 255])), SPOT).is_none());
    }

    fn face_photo() -> RgbImage {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/face-a.png");
        image::open(path).unwrap().into_rgb8()
    }

    /// The middle half of the photo, where face-a's face is (an input, not a result: the
    /// correction is tested on whatever it is given).
    fn middle(img: &RgbImage) -> FaceBox {
        let (w, h) = (img.width() as f32, img.height() as f32);
        FaceBox {
            x: w / 4.0,
            y: h / 4.0,
            width: w / 2.0,
            height: h / 2.0,
            score: 1.0,
        }
    }

    /// Mean absolute difference over `face`, in f64.
    fn distance(a: &RgbImage, b: &RgbImage, face: &FaceBox) -> f64 {
        let mut sum = 0f64;
        let mut n = 0usize;
        for y in face.y as u32..(face.y + face.height) as u32 {
            for x in face.x as u32..(face.x + face.width) as u32 {
                for c in 0..3 {
                    sum += (a.get_pixel(x, y)[c] as f64 - b.get_pixel(x, y)[c] as f64).abs();
                    n += 1;
                }
            }
        }
        sum / n as f64
    }

    #[test]
    fn a_white_wash_over_the_face_is_mostly_undone() {
        let clean = face_photo();
        let face = middle(&clean);
        let (cx, cy) = (face.x + face.width / 2.0, face.y + face.height / 2.0);
        // Glare as the card generator draws it: I' = I + (255 − I)·g, g up to 0.7, smooth.
        let mut washed = clean.clone();
        let radius = 0.8 * face.width;
        for (x, y, p) in washed.enumerate_pixels_mut() {
            let d2 = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) / (radius * radius);
            let g = 0.7 * (-2.0 * d2).exp();
            for c in p.0.iter_mut() {
                *c = (*c as f32 + (255.0 - *c as f32) * g).round() as u8;
            }
        }
        let before = distance(&washed, &clean, &face);
        let mut fixed = washed.clone();
        let t = deglare(&mut fixed, &face, 0.8).expect("a strong wash passes the gate");
        assert!(t < 0.6, "t at the centre {t}");
        let after = distance(&fixed, &clean, &face);
        assert!(after < 0.5 * before, "mean error {before:.1} -> {after:.1}");
    }

    #[test]
    fn a_face_without_glare_is_left_alone() {
        let clean = face_photo();
        let mut copy = clean.clone();
        assert_eq!(deglare(&mut copy, &middle(&clean), 0.8), None);
        assert_eq!(copy, clean);
    }
}
