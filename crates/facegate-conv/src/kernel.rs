//! The convolution itself, on NCHW `f32` slices in host memory.
//!
//! Three shapes of work:
//! - **pointwise** (1×1, stride 1, no padding): the input already is the `[C_in, H·W]` matrix
//!   gemm wants, so no copy at all;
//! - **depthwise** (one input channel per group): a direct loop per channel; each input row is
//!   copied between the padding's zeros and every tap is a multiply-add over blocks of output
//!   columns held in registers (`simd.rs`);
//! - **im2col**: any other layer, one `[C_in/groups·kh·kw, oh·ow]` patch matrix per image and
//!   group, then one gemm.
//!
//! The output is filled with the bias before gemm accumulates into it, and the activation is
//! one pass after it: two passes over the output instead of burn's four or five. A batch runs
//! one image per worker; a single image lets gemm split its work over the threads, after
//! packing the weights once.

use std::mem::MaybeUninit;

use gemm::Parallelism;
use rayon::prelude::*;

use crate::simd;

/// What runs on the convolution's output, per output channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// `x` where positive, `slope[c] · x` elsewhere (PyTorch's `nn.PReLU(C)`, ONNX's `PRelu`
    /// with one slope per channel).
    PRelu(Vec<f32>),
}

impl Activation {
    #[inline]
    fn apply(&self, channel: usize, row: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => simd::relu(row),
            Activation::PRelu(slopes) => simd::prelu(row, slopes[channel]),
        }
    }
}

/// A convolution's geometry, in PyTorch's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub out_channels: usize,
    pub in_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// `[(top, bottom), (left, right)]`.
    pub padding: [(usize, usize); 2],
    pub groups: usize,
}

impl ConvGeometry {
    /// `in_channels → out_channels` through a `kh × kw` kernel: stride 1, no dilation, no
    /// padding, one group (change the fields for others).
    pub fn new(in_channels: usize, out_channels: usize, kernel: [usize; 2]) -> Self {
        Self {
            out_channels,
            in_channels,
            kernel,
            stride: [1, 1],
            dilation: [1, 1],
            padding: [(0, 0); 2],
            groups: 1,
        }
    }

    /// Output height and width for an input of `h × w`, or `None` when the (padded) input is
    /// smaller than the kernel.
    pub fn output_size(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let axis = |size: usize, i: usize| {
            let (a, b) = self.padding[i];
            let span = self.dilation[i] * (self.kernel[i] - 1) + 1;
            let padded = size + a + b;
            (padded >= span).then(|| (padded - span) / self.stride[i] + 1)
        };
        Some([axis(h, 0)?, axis(w, 1)?])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// im2col and gemm per group, or gemm alone for a 1×1 kernel that needs no patches.
    Dense,
    Depthwise,
}

/// A convolution layer's weights in host memory, ready to run.
#[derive(Debug, Clone)]
pub struct PackedConv2d {
    geometry: ConvGeometry,
    plan: Plan,
    /// OIHW flattened: row `o` is `[C_in/groups · kh · kw]` in (channel, y, x) order, which is
    /// already the row order of the im2col matrix.
    weight: Vec<f32>,
    bias: Vec<f32>,
    activation: Activation,
}

/// A layer whose weights do not match its geometry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("convolution weights: {0}")]
pub struct BadLayer(pub String);

impl PackedConv2d {
    /// `weight`: OIHW, `[out, in/groups, kh, kw]`; `bias`: `[out]` or none.
    pub fn new(
        geometry: ConvGeometry,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        activation: Activation,
    ) -> Result<Self, BadLayer> {
        let g = geometry;
        if g.groups == 0 || !g.in_channels.is_multiple_of(g.groups) || !g.out_channels.is_multiple_of(g.groups) {
            return Err(BadLayer(format!(
                "{} groups do not divide {} → {} channels",
                g.groups, g.in_channels, g.out_channels
            )));
        }
        if g.kernel.contains(&0) || g.stride.contains(&0) || g.dilation.contains(&0) {
            return Err(BadLayer("a zero kernel, stride or dilation".into()));
        }
        let per_group = g.in_channels / g.groups;
        let plan = if g.groups > 1 && per_group == 1 && g.out_channels == g.groups {
            Plan::Depthwise
        } else {
            Plan::Dense
        };
        let k = per_group * g.kernel[0] * g.kernel[1];
        if weight.len() != g.out_channels * k {
            return Err(BadLayer(format!(
                "{} weights for a [{}, {per_group}, {}, {}] kernel",
                weight.len(),
                g.out_channels,
                g.kernel[0],
                g.kernel[1]
            )));
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; g.out_channels]);
        if bias.len() != g.out_channels {
            return Err(BadLayer(format!(
                "{} biases for {} channels",
                bias.len(),
                g.out_channels
            )));
        }
        if let Activation::PRelu(s) = &activation
            && s.len() != g.out_channels
        {
            return Err(BadLayer(format!(
                "{} PReLU slopes for {} channels",
                s.len(),
                g.out_channels
            )));
        }
        Ok(Self {
            geometry,
            plan,
            weight,
            bias,
            activation,
        })
    }

    /// Geometry, OIHW weights, bias and activation back.
    pub fn into_parts(self) -> (ConvGeometry, Vec<f32>, Vec<f32>, Activation) {
        (self.geometry, self.weight, self.bias, self.activation)
    }

    /// Runs on `input`, NCHW `[n, in, h, w]`; returns NCHW `[n, out, oh, ow]` and `[oh, ow]`,
    /// or `None` when the input is smaller than the kernel.
    pub fn forward(&self, input: &[f32], n: usize, h: usize, w: usize) -> Option<(Vec<f32>, [usize; 2])> {
        self.forward_padded(input, n, h, w, self.geometry.padding)
    }

    /// [`Self::forward`] with padding decided per input (ONNX's `SAME` pads).
    pub fn forward_padded(
        &self,
        input: &[f32],
        n: usize,
        h: usize,
        w: usize,
        padding: [(usize, usize); 2],
    ) -> Option<(Vec<f32>, [usize; 2])> {
        let g = ConvGeometry {
            padding,
            ..self.geometry
        };
        assert_eq!(input.len(), n * g.in_channels * h * w, "input length against its shape");
        let [oh, ow] = g.output_size(h, w)?;
        // The output starts as the bias (written once, not zeroed first); the kernels add to it.
        let cols = oh * ow;
        let mut out = Vec::with_capacity(n * g.out_channels * cols);
        for _ in 0..n {
            for &b in &self.bias {
                out.resize(out.len() + cols, b);
            }
        }
        if !out.is_empty() {
            match self.plan {
                Plan::Depthwise => self.depthwise(&g, input, [h, w], [oh, ow], &mut out),
                Plan::Dense => self.dense(&g, input, n, [h, w], [oh, ow], &mut out),
            }
        }
        Some((out, [oh, ow]))
    }

    fn dense(
        &self,
        g: &ConvGeometry,
        input: &[f32],
        n: usize,
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        out: &mut [f32],
    ) {
        let (cin, cout, cols) = (g.in_channels, g.out_channels, oh * ow);
        let threads = rayon::current_num_threads().max(1);
        let one = |image: &[f32], dst: &mut [f32], parallel: bool| {
            self.dense_image(g, image, [h, w], [oh, ow], dst, parallel)
        };
        let macs_per_image = cout * cols * (cin / g.groups) * g.kernel[0] * g.kernel[1];
        if !parallel_worth(n * macs_per_image) {
            for (dst, image) in out.chunks_mut(cout * cols).zip(input.chunks(cin * h * w)) {
                one(image, dst, false);
            }
        } else if n >= threads {
            // A batch: one image per worker, each gemm on one thread.
            out.par_chunks_mut(cout * cols)
                .zip(input.par_chunks(cin * h * w))
                .for_each(|(dst, image)| one(image, dst, false));
        } else {
            // One image (or fewer than the threads): gemm splits each image's work itself,
            // after packing the weights once.
            let parallel = parallel_worth(macs_per_image);
            for (dst, image) in out.chunks_mut(cout * cols).zip(input.chunks(cin * h * w)) {
                one(image, dst, parallel);
            }
        }
    }

    /// One image: gemm per group accumulating into `out` (which holds the bias), then the
    /// activation.
    fn dense_image(
        &self,
        g: &ConvGeometry,
        image: &[f32],
        [h, w]: [usize; 2],
        [oh, ow]: [usize; 2],
        out: &mut [f32],
        parallel: bool,
    ) {
        // A 1×1 kernel at stride 1 without padding reads the input as gemm's matrix directly.
        let pointwise = g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [(0, 0); 2];
        let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let k = cin_g * g.kernel[0] * g.kernel[1];
        let cols = oh * ow;
        let parallelism = if parallel {
            Parallelism::Rayon(rayon::current_num_threads())
        } else {
            Parallelism::None
        };
        // The patch matrix is kh·kw times the input: on a large photo (MTCNN's first pyramid
        // level of a 2048 px image has 1.5 M output pixels) it is built a band of output rows
        // at a time, so it stays under IM2COL_BYTES whatever the photo.
        let band = (IM2COL_BYTES / (4 * k * ow).max(1)).clamp(1, oh);
        for group in 0..g.groups {
            let channels = &image[group * cin_g * h * w..(group + 1) * cin_g * h * w];
            let dst = &mut out[group * cout_g * cols..(group + 1) * cout_g * cols];
            let lhs = &self.weight[group * cout_g * k..(group + 1) * cout_g * k];
            if pointwise {
                matmul_add(dst, cols, lhs, channels, [cout_g, cols, k], parallelism);
                continue;
            }
            for y0 in (0..oh).step_by(band) {
                let rows = y0..(y0 + band).min(oh);
                let width = rows.len() * ow;
                let patches = im2col(channels, cin_g, g, [h, w], [oh, ow], rows, parallel);
                // This band's columns of every output row: row stride `cols` in `dst`.
                let dst = &mut dst[y0 * ow..];
                matmul_add(dst, cols, lhs, &patches, [cout_g, width, k], parallelism);
            }
        }
        if self.activation != Activation::Identity {
            let act = |(o, row): (usize, &mut [f32])| self.activation.apply(o, row);
            if parallel {
                out.par_chunks_mut(cols).enumerate().for_each(act);
            } else {
                out.chunks_mut(cols).enumerate().for_each(act);
            }
        }
    }

    fn depthwise(&self, g: &ConvGeometry, input: &[f32], [h, w]: [usize; 2], [oh, ow]: [usize; 2], out: &mut [f32]) {
        let c = g.out_channels;
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.stride;
        let [dh, dw] = g.dilation;
        let (pt, pl) = (g.padding[0].0, g.padding[1].0);
        let plane = |(plane, dst): (usize, &mut [f32]), scratch: &mut simd::DepthwiseScratch| {
            let (img, ch) = (plane / c, plane % c);
            let p = simd::Plane {
                src: &input[(img * c + ch) * h * w..(img * c + ch + 1) * h * w],
                taps: &self.weight[ch * kh * kw..(ch + 1) * kh * kw],
                hw: [h, w],
                ow,
                kernel: [kh, kw],
                stride: [sh, sw],
                dilation: [dh, dw],
                pad: [pt, pl],
            };
            simd::depthwise(&p, dst, scratch);
            self.activation.apply(ch, dst);
        };
        let parallel = parallel_worth(out.len() * kh * kw);
        for_each_plane(out, oh * ow, parallel, plane);
    }
}

/// The most bytes one im2col band may take.
const IM2COL_BYTES: usize = 4 << 20;

/// `dst [m, n] += lhs [m, k] · rhs [k, n]`: `lhs` and `rhs` row-major and contiguous, `dst`
/// row-major with rows `dst_rs` apart (a band of a wider output).
fn matmul_add(
    dst: &mut [f32],
    dst_rs: usize,
    lhs: &[f32],
    rhs: &[f32],
    [m, n, k]: [usize; 3],
    parallelism: Parallelism,
) {
    assert!(
        lhs.len() == m * k && rhs.len() == k * n && n <= dst_rs && (m == 0 || (m - 1) * dst_rs + n <= dst.len()),
        "gemm operand extents"
    );
    // SAFETY: the asserted extents keep every element the strides address inside its slice.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `f((index, plane), scratch)` for each `len`-long plane of `out`, on rayon's workers when
/// `parallel` (one scratch value per worker), else in order on this thread.
pub(crate) fn for_each_plane<S, F>(out: &mut [f32], len: usize, parallel: bool, f: F)
where
    S: Default,
    F: Fn((usize, &mut [f32]), &mut S) + Send + Sync,
{
    if parallel {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each_init(S::default, |scratch, item| f(item, scratch));
    } else {
        let mut scratch = S::default();
        out.chunks_mut(len).enumerate().for_each(|item| f(item, &mut scratch));
    }
}

/// Whether a layer's multiply-adds are worth handing to rayon's workers: below this, waking
/// them costs more than it saves (MTCNN's smallest pyramid levels, R-Net on one face).
fn parallel_worth(macs: usize) -> bool {
    macs >= 1 << 20
}

/// The output columns `lo..hi` whose input column `o·stride + offset − pad` lies in `0..w`.
fn valid_range(offset: usize, pad: usize, stride: usize, w: usize, ow: usize) -> (usize, usize) {
    let lo = pad.saturating_sub(offset).div_ceil(stride).min(ow);
    // Last valid o: o·stride + offset − pad ≤ w − 1.
    let hi = if w + pad > offset {
        ((w - 1 + pad - offset) / stride + 1).min(ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// The patch matrix `[channels·kh·kw, rows·ow]` of one image's first `channels` planes, for the
/// output rows `rows`: row `(c, ky, kx)` holds, for every output pixel, the input pixel under
/// that tap (0 in padding).
fn im2col(
    image: &[f32],
    channels: usize,
    g: &ConvGeometry,
    [h, w]: [usize; 2],
    [oh, ow]: [usize; 2],
    rows: std::ops::Range<usize>,
    parallel: bool,
) -> Vec<f32> {
    debug_assert!(rows.end <= oh);
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [dh, dw] = g.dilation;
    let (pt, pl) = (g.padding[0].0, g.padding[1].0);
    let cols = rows.len() * ow;
    let len = channels * kh * kw * cols;
    // Every element is written below (zeros where a tap falls in the padding), so the matrix
    // is not zeroed first: that memset was a tenth of dlib's ResNet's time.
    let mut m: Vec<f32> = Vec::with_capacity(len);
    let ranges: Vec<(usize, usize)> = (0..kw).map(|kx| valid_range(kx * dw, pl, sw, w, ow)).collect();
    let fill = |(r, dst): (usize, &mut [MaybeUninit<f32>])| {
        let (c, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
        let plane = &image[c * h * w..(c + 1) * h * w];
        let (lo, hi) = ranges[kx];
        for (oy, out_row) in rows.clone().zip(dst.chunks_mut(ow)) {
            let iy = (oy * sh + ky * dh).checked_sub(pt).filter(|&iy| iy < h);
            let Some(iy) = iy.filter(|_| lo < hi) else {
                out_row.fill(MaybeUninit::new(0.0));
                continue;
            };
            let line = &plane[iy * w..(iy + 1) * w];
            let x0 = lo * sw + kx * dw - pl;
            out_row[..lo].fill(MaybeUninit::new(0.0));
            out_row[hi..].fill(MaybeUninit::new(0.0));
            if sw == 1 {
                for (d, &v) in out_row[lo..hi].iter_mut().zip(&line[x0..x0 + (hi - lo)]) {
                    d.write(v);
                }
            } else {
                for (j, d) in out_row[lo..hi].iter_mut().enumerate() {
                    d.write(line[x0 + j * sw]);
                }
            }
        }
    };
    let spare = &mut m.spare_capacity_mut()[..len];
    if parallel {
        spare.par_chunks_mut(cols).enumerate().for_each(fill);
    } else {
        spare.chunks_mut(cols).enumerate().for_each(fill);
    }
    // SAFETY: `fill` wrote all `len` elements: each row is `oh` runs of `ow`, and every run is
    // written whole (zeros, or zeros, the copied span and zeros).
    unsafe { m.set_len(len) };
    m
}
