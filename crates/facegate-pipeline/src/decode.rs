//! Image decoding with the checks a public endpoint needs: format from the bytes (never the
//! file name), a pixel limit enforced from the header before any pixel is decoded, EXIF
//! orientation applied, and every failure a typed [`Rejection`].

use std::io::Cursor;

use facegate_core::Rejection;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use zeroize::Zeroize;

/// A photo as the engine works on it: upright RGB, its longer side capped at
/// `Config::work_max_side`, and the factor from its pixels to the original's.
#[derive(Debug, Default)]
pub struct Photo {
    pub image: RgbImage,
    /// Working-copy pixels per original pixel (1 when the photo was small enough).
    pub scale: f32,
}

impl Photo {
    /// Overwrite the pixels with zeros and free them.
    pub fn wipe(&mut self) {
        std::mem::take(&mut self.image).into_raw().zeroize();
    }
}

/// Decode `bytes` and reduce the result to the working copy: the full-resolution pixels are
/// wiped and freed before this returns, so only `3·max_side²` bytes outlive the call.
pub fn decode_photo(bytes: &[u8], max_pixels: u64, max_side: u32) -> Result<Photo, Rejection> {
    let mut full = decode(bytes, max_pixels)?;
    let (w, h) = work_size(full.width(), full.height(), max_side);
    if (w, h) == full.dimensions() {
        return Ok(Photo {
            image: full,
            scale: 1.0,
        });
    }
    let image = area_downscale(&full, w, h);
    full.as_mut().zeroize();
    Ok(Photo {
        image,
        scale: w as f32 / full.width() as f32,
    })
}

/// The bytes a photo's working copy will hold, from its header alone (no pixel decoded); `None`
/// when the header cannot be read (the decode will refuse it, holding nothing).
pub fn photo_bytes(bytes: &[u8], max_side: u32) -> Option<u64> {
    let (w, h) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?
        .into_dimensions()
        .ok()?;
    let (w, h) = work_size(w, h, max_side);
    Some(w as u64 * h as u64 * 3)
}

/// The working copy's size for a `w`×`h` photo: its longer side cut to `max_side` (0: kept).
fn work_size(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let long = w.max(h);
    if max_side == 0 || long <= max_side {
        return (w, h);
    }
    let s = max_side as f64 / long as f64;
    let cut = |v: u32| ((v as f64 * s).round() as u32).max(1);
    (cut(w), cut(h))
}

/// Box-average `img` down to `w`×`h` (each output pixel is the mean of the input pixels its
/// footprint covers, partial ones weighted): no aliasing, whatever the ratio.
fn area_downscale(img: &RgbImage, w: u32, h: u32) -> RgbImage {
    let (iw, ih) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (w as usize, h as usize);
    // Each output index's input span with weights, per axis.
    let spans = |n: usize, o: usize| -> Vec<Vec<(usize, f32)>> {
        let step = n as f64 / o as f64;
        (0..o)
            .map(|i| {
                let (a, b) = (i as f64 * step, ((i + 1) as f64 * step).min(n as f64));
                let mut v = Vec::new();
                let mut x = a.floor() as usize;
                while (x as f64) < b && x < n {
                    let wgt = (b.min(x as f64 + 1.0) - a.max(x as f64)) / step;
                    if wgt > 0.0 {
                        v.push((x, wgt as f32));
                    }
                    x += 1;
                }
                v
            })
            .collect()
    };
    let (xs, ys) = (spans(iw, ow), spans(ih, oh));
    let raw = img.as_raw();
    let mut out = RgbImage::new(w, h);
    let mut row = vec![0f32; ow * 3];
    for (oy, yspan) in ys.iter().enumerate() {
        row.iter_mut().for_each(|v| *v = 0.0);
        for &(y, wy) in yspan {
            let line = &raw[y * iw * 3..(y + 1) * iw * 3];
            for (ox, xspan) in xs.iter().enumerate() {
                let mut acc = [0f32; 3];
                for &(x, wx) in xspan {
                    for c in 0..3 {
                        acc[c] += wx * line[x * 3 + c] as f32;
                    }
                }
                for c in 0..3 {
                    row[ox * 3 + c] += wy * acc[c];
                }
            }
        }
        let dst = &mut out.as_mut()[oy * ow * 3..(oy + 1) * ow * 3];
        for (d, v) in dst.iter_mut().zip(&row) {
            *d = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    row.zeroize();
    out
}

/// Decode `bytes` to upright RGB.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, Rejection> {
    if bytes.is_empty() {
        return Err(Rejection::EmptyImage);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Rejection::CorruptImage { detail: e.to_string() })?;
    match reader.format() {
        Some(image::ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(Rejection::CorruptImage {
                detail: "JPEG data ends before the end-of-image marker".into(),
            });
        }
        Some(image::ImageFormat::Jpeg | image::ImageFormat::Png | image::ImageFormat::WebP) => {}
        _ => return Err(Rejection::UnsupportedFormat),
    }
    // A second line of defence under our own pixel check: cap what the decoder may allocate.
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(1 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > max_pixels {
        return Err(Rejection::ImageTooLarge {
            width,
            height,
            max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(Rejection::CorruptImage {
            detail: "zero-sized image".into(),
        });
    }
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// The JPEG decoder fills a cut-off scan with grey instead of failing, so check that the last
/// start-of-scan marker is followed by an end-of-image marker. Entropy-coded data stuffs every
/// 0xFF byte, so these byte pairs only occur as markers (an EXIF thumbnail's own markers come
/// before the main image's scan).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    sos.is_some_and(|s| bytes[s..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

fn corrupt(e: image::ImageError) -> Rejection {
    match e {
        image::ImageError::Unsupported(_) => Rejection::UnsupportedFormat,
        image::ImageError::Limits(_) => Rejection::CorruptImage {
            detail: "image exceeds decoder limits".into(),
        },
        other => Rejection::CorruptImage {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean of the input over each output pixel's footprint, in f64: every input pixel
    /// weighted by the area of its overlap with the footprint.
    fn reference(img: &RgbImage, w: u32, h: u32) -> Vec<f64> {
        let (sx, sy) = (img.width() as f64 / w as f64, img.height() as f64 / h as f64);
        let overlap = |a0: f64, a1: f64, b0: f64, b1: f64| (a1.min(b1) - a0.max(b0)).max(0.0);
        let mut out = Vec::new();
        for oy in 0..h as usize {
            for ox in 0..w as usize {
                let (x0, y0) = (ox as f64 * sx, oy as f64 * sy);
                let mut acc = [0.0; 3];
                for (x, y, p) in img.enumerate_pixels() {
                    let (x, y) = (x as f64, y as f64);
                    let a = overlap(x0, x0 + sx, x, x + 1.0) * overlap(y0, y0 + sy, y, y + 1.0);
                    (0..3).for_each(|c| acc[c] += a * p[c] as f64);
                }
                out.extend(acc.map(|v| v / (sx * sy)));
            }
        }
        out
    }

    #[test]
    fn area_downscale_is_the_footprint_mean() {
        let img = RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7 % 256) as u8, (y * 11 % 256) as u8, ((x * y) % 256) as u8])
        });
        for (w, h) in [(10, 6), (16, 9), (37, 23), (1, 1)] {
            let got = area_downscale(&img, w, h);
            let want = reference(&img, w, h);
            let worst = got
                .as_raw()
                .iter()
                .zip(&want)
                .map(|(g, r)| (*g as f64 - r).abs())
                .fold(0.0, f64::max);
            // Rounding to u8, plus f32 accumulation.
            assert!(worst < 0.51, "{w}x{h}: worst {worst:.3}");
        }
    }
}
