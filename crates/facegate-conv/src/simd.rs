//! The loops the compiler vectorises, built once per instruction set and picked at run time.
//! Our crates target baseline x86-64 (SSE2, four lanes), where gemm and burn dispatch to AVX2 or
//! AVX-512 themselves; without this the depthwise loops ran at a quarter of the width.

/// One depthwise plane: `dst` (`oh × ow`, already holding the bias) += Σ taps · input.
pub(crate) struct Plane<'a> {
    pub src: &'a [f32],
    pub taps: &'a [f32],
    pub hw: [usize; 2],
    pub ow: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub dilation: [usize; 2],
    /// Top and left padding.
    pub pad: [usize; 2],
    /// Per kernel column, the output columns whose input lies inside the image.
    pub ranges: &'a [(usize, usize)],
}

#[inline(always)]
fn depthwise_body(p: &Plane, dst: &mut [f32], phases: &mut Vec<f32>) {
    let [h, w] = p.hw;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [dh, dw] = p.dilation;
    let [pt, pl] = p.pad;
    // A strided row is split into its `sw` phases once, so every tap reads contiguously.
    let pw = w.div_ceil(sw);
    if sw > 1 {
        phases.resize(sw * pw, 0.0);
    }
    for (oy, row) in dst.chunks_mut(p.ow).enumerate() {
        for ky in 0..kh {
            let Some(iy) = (oy * sh + ky * dh).checked_sub(pt).filter(|&iy| iy < h) else {
                continue;
            };
            let line = &p.src[iy * w..(iy + 1) * w];
            if sw > 1 {
                for (x, &v) in line.iter().enumerate() {
                    phases[(x % sw) * pw + x / sw] = v;
                }
            }
            for (kx, &(lo, hi)) in p.ranges.iter().enumerate() {
                if lo >= hi {
                    continue;
                }
                let t = p.taps[ky * kw + kx];
                let x0 = lo * sw + kx * dw - pl;
                let seg = if sw == 1 {
                    &line[x0..x0 + (hi - lo)]
                } else {
                    let start = (x0 % sw) * pw + x0 / sw;
                    &phases[start..start + (hi - lo)]
                };
                for (d, &s) in row[lo..hi].iter_mut().zip(seg) {
                    *d += t * s;
                }
            }
        }
    }
}

#[inline(always)]
fn prelu_body(row: &mut [f32], a: f32) {
    row.iter_mut().for_each(|v| *v = if *v > 0.0 { *v } else { *v * a });
}

#[inline(always)]
fn relu_body(row: &mut [f32]) {
    row.iter_mut().for_each(|v| *v = v.max(0.0));
}

#[inline(always)]
fn max_into_body(acc: &mut [f32], row: &[f32]) {
    for (a, &b) in acc.iter_mut().zip(row) {
        *a = crate::pool::nan_max(*a, b);
    }
}

macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        pub(crate) fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn v4($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn v3($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the feature the function was built for.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { v3($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

dispatch!(depthwise, depthwise_body, (p: &Plane, dst: &mut [f32], phases: &mut Vec<f32>));
dispatch!(prelu, prelu_body, (row: &mut [f32], a: f32));
dispatch!(relu, relu_body, (row: &mut [f32]));
dispatch!(max_into, max_into_body, (acc: &mut [f32], row: &[f32]));
