//! Quarter turns of a photo, for references photographed sideways or upside down (an ID card
//! on a desk), and the way back from the turned copy's pixels to the photo's own.

use facegate_core::FaceBox;
use image::RgbImage;
use zeroize::Zeroize;

use crate::imageops::Rect;

/// A clockwise turn by `0..=3` quarters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Turn(pub u8);

impl Turn {
    pub const NONE: Turn = Turn(0);

    /// In degrees, clockwise.
    pub fn degrees(self) -> u16 {
        u16::from(self.0) * 90
    }

    /// A copy of `image` turned clockwise (the caller wipes it, see [`wipe`]).
    pub fn apply(self, image: &RgbImage) -> RgbImage {
        match self.0 % 4 {
            1 => image::imageops::rotate90(image),
            2 => image::imageops::rotate180(image),
            3 => image::imageops::rotate270(image),
            _ => image.clone(),
        }
    }

    /// A point of the turned copy in the pixels of the `width`×`height` original (continuous
    /// coordinates: pixel corners at integers, so the mapping is exact for boxes).
    pub fn point_back(self, [x, y]: [f32; 2], width: u32, height: u32) -> [f32; 2] {
        let (w, h) = (width as f32, height as f32);
        match self.0 % 4 {
            // rotate90 sends (x, y) to (h − y, x).
            1 => [y, h - x],
            2 => [w - x, h - y],
            // rotate270 sends (x, y) to (y, w − x).
            3 => [w - y, x],
            _ => [x, y],
        }
    }

    /// A box of the turned copy in the original's pixels.
    pub fn box_back(self, b: FaceBox, width: u32, height: u32) -> FaceBox {
        let [x0, y0] = self.point_back([b.x, b.y], width, height);
        let [x1, y1] = self.point_back([b.x + b.width, b.y + b.height], width, height);
        FaceBox {
            x: x0.min(x1),
            y: y0.min(y1),
            width: (x1 - x0).abs(),
            height: (y1 - y0).abs(),
            score: b.score,
        }
    }

    /// A pixel rectangle of the turned copy in the original's pixels.
    pub fn rect_back(self, r: Rect, width: u32, height: u32) -> Rect {
        let b = self.box_back(
            FaceBox {
                x: r.x as f32,
                y: r.y as f32,
                width: r.width as f32,
                height: r.height as f32,
                score: 0.0,
            },
            width,
            height,
        );
        Rect {
            x: b.x.round() as u32,
            y: b.y.round() as u32,
            width: b.width.round() as u32,
            height: b.height.round() as u32,
        }
    }
}

/// Overwrite a turned copy's pixels and free them.
pub fn wipe(image: &mut RgbImage) {
    std::mem::take(image).into_raw().zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_boxes_come_back_to_the_original() {
        // A 5×3 image with one marked pixel at (3, 1): its centre is (3.5, 1.5).
        let mut img = RgbImage::new(5, 3);
        img.put_pixel(3, 1, image::Rgb([255, 0, 0]));
        for q in 0..4 {
            let turn = Turn(q);
            let turned = turn.apply(&img);
            let (tx, ty) = turned
                .enumerate_pixels()
                .find(|p| p.2.0[0] == 255)
                .map(|p| (p.0, p.1))
                .unwrap();
            let back = turn.point_back([tx as f32 + 0.5, ty as f32 + 0.5], 5, 3);
            assert_eq!(back, [3.5, 1.5], "{} degrees", turn.degrees());
            // The pixel's own 1×1 box comes back as that pixel.
            let b = turn.box_back(
                FaceBox {
                    x: tx as f32,
                    y: ty as f32,
                    width: 1.0,
                    height: 1.0,
                    score: 0.9,
                },
                5,
                3,
            );
            assert_eq!((b.x, b.y, b.width, b.height, b.score), (3.0, 1.0, 1.0, 1.0, 0.9));
        }
    }
}
