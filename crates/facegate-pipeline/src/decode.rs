//! Image decoding with the checks a public endpoint needs: format from the bytes (never the
//! file name), a pixel limit enforced from the header before any pixel is decoded, EXIF
//! orientation applied, and every failure a typed [`Rejection`].

use std::io::Cursor;

use facegate_core::Rejection;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};

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
