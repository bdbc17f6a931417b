//! Max pooling after a convolution (MTCNN's), with the same split as [`crate::Conv2d`]: our
//! loop on burn's CPU device, where flex's max-pool (with indices it then drops) was a third
//! of a whole verification's time; burn's `max_pool2d` elsewhere.

use burn::prelude::*;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use crate::kernel::for_each_plane;
use crate::{on_host, on_host_buffer, simd};

/// `k × k` windows at stride `s`, no padding, PyTorch's `ceil_mode` rule for the last window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d {
    pub kernel: usize,
    pub stride: usize,
    pub ceil_mode: bool,
}

impl MaxPool2d {
    pub fn new(kernel: usize, stride: usize, ceil_mode: bool) -> Self {
        assert!(kernel > 0 && stride > 0, "a max-pool needs a kernel and a stride");
        Self {
            kernel,
            stride,
            ceil_mode,
        }
    }

    /// Output length along an axis of `len` (0 when the kernel does not fit).
    pub fn output_len(&self, len: usize) -> usize {
        if len < self.kernel {
            return 0;
        }
        let span = len - self.kernel;
        let mut out = if self.ceil_mode {
            span.div_ceil(self.stride) + 1
        } else {
            span / self.stride + 1
        };
        // PyTorch: the last window must start inside the input.
        if self.ceil_mode && (out - 1) * self.stride >= len {
            out -= 1;
        }
        out
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        if !on_host(&device) {
            let options = MaxPoolOptions::new([self.kernel; 2])
                .with_stride([self.stride; 2])
                .with_ceil_mode(self.ceil_mode);
            return max_pool2d(x, options);
        }
        on_host_buffer(x, &device, |input, [n, c, h, w]| {
            let out = self.forward_host(input, n * c, h, w);
            (out, [n, c, self.output_len(h), self.output_len(w)])
        })
    }

    /// `planes` planes of `h × w`, NCHW order, in; `planes` planes of `oh × ow` out. A window
    /// with a NaN gives NaN, as PyTorch's does.
    pub fn forward_host(&self, input: &[f32], planes: usize, h: usize, w: usize) -> Vec<f32> {
        assert_eq!(input.len(), planes * h * w, "input length against its shape");
        let (oh, ow) = (self.output_len(h), self.output_len(w));
        let mut out = vec![0.0f32; planes * oh * ow];
        if out.is_empty() {
            return out;
        }
        let (k, s) = (self.kernel, self.stride);
        let plane = |(p, dst): (usize, &mut [f32]), (column, phases): &mut (Vec<f32>, Vec<f32>)| {
            let src = &input[p * h * w..(p + 1) * h * w];
            column.resize(w, 0.0);
            for (oy, row) in dst.chunks_mut(ow).enumerate() {
                let (y0, y1) = (oy * s, (oy * s + k).min(h));
                // Each column's maximum over the window's rows, then along the row.
                column.copy_from_slice(&src[y0 * w..(y0 + 1) * w]);
                for y in y0 + 1..y1 {
                    simd::max_into(column, &src[y * w..(y + 1) * w]);
                }
                simd::pool_row(column, k, s, phases, row);
            }
        };
        // A comparison is cheaper than a multiply-add: more of them before the workers pay.
        for_each_plane(&mut out, oh * ow, planes * h * w >= 1 << 16, plane);
        out
    }
}

/// The larger, or NaN if either is.
#[inline(always)]
pub(crate) fn nan_max(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() { b } else { a }
}
