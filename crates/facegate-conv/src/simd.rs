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
}

/// `phases[p·pw + j] = line[j·s + p]`: the row's `s` phases one after the other (no division
/// per element: that was a fifth of the depthwise loop's time).
#[inline(always)]
fn deinterleave(line: &[f32], s: usize, pw: usize, phases: &mut [f32]) {
    for (p, phase) in phases.chunks_mut(pw).enumerate().take(s) {
        for (d, &v) in phase.iter_mut().zip(line.iter().skip(p).step_by(s)) {
            *d = v;
        }
    }
}

/// Output columns per register block of the depthwise loop (one AVX2 register, half an
/// AVX-512 one).
const BLOCK: usize = 8;

/// Buffers one depthwise worker reuses from row to row.
#[derive(Default)]
pub(crate) struct DepthwiseScratch {
    /// An input row with the padding's zeros on both sides.
    padded: Vec<f32>,
    /// Its phases, for strided layers.
    phases: Vec<f32>,
    /// The output row, rounded up to whole blocks.
    acc: Vec<f32>,
}

#[inline(always)]
fn depthwise_body(p: &Plane, dst: &mut [f32], scratch: &mut DepthwiseScratch) {
    let [h, w] = p.hw;
    let [kh, kw] = p.kernel;
    let [sh, sw] = p.stride;
    let [dh, dw] = p.dilation;
    let [pt, pl] = p.pad;
    let ow = p.ow;
    // Every input row is copied between zeros (the padding, and more on the right so the last
    // block reads zeros instead of past the end), then every tap is a multiply-add over whole
    // blocks of BLOCK output columns held in registers: no per-tap edge cases and no scalar
    // tails. The taps are summed in (ky, kx) order as before; a padding tap adds t·0.
    let owp = ow.next_multiple_of(BLOCK);
    let span = (owp - 1) * sw + (kw - 1) * dw + 1;
    let len = span.max(pl + w);
    let pw = len.div_ceil(sw);
    let DepthwiseScratch { padded, phases, acc } = scratch;
    padded.clear();
    padded.resize(len, 0.0);
    phases.resize(sw * pw, 0.0);
    acc.resize(owp, 0.0);
    for (oy, row) in dst.chunks_mut(ow).enumerate() {
        acc[..ow].copy_from_slice(row);
        for ky in 0..kh {
            let Some(iy) = (oy * sh + ky * dh).checked_sub(pt).filter(|&iy| iy < h) else {
                continue;
            };
            padded[pl..pl + w].copy_from_slice(&p.src[iy * w..(iy + 1) * w]);
            let source: &[f32] = if sw == 1 {
                padded
            } else {
                deinterleave(padded, sw, pw, phases);
                phases
            };
            // Tap kx reads from here on, one element per output column.
            let start = |kx: usize| {
                let x = kx * dw;
                if sw == 1 { x } else { (x % sw) * pw + x / sw }
            };
            let taps = &p.taps[ky * kw..(ky + 1) * kw];
            for o in (0..owp).step_by(BLOCK) {
                let mut a = [0.0f32; BLOCK];
                a.copy_from_slice(&acc[o..o + BLOCK]);
                for (kx, &t) in taps.iter().enumerate() {
                    let s = &source[start(kx) + o..][..BLOCK];
                    for i in 0..BLOCK {
                        a[i] += t * s[i];
                    }
                }
                acc[o..o + BLOCK].copy_from_slice(&a);
            }
        }
        row.copy_from_slice(&acc[..ow]);
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

/// One output row of a max-pool from `column` (the window rows' maxima per input column):
/// `out[o] = max(column[o·s .. o·s + k])`, clipped at the right edge. The column is split into
/// its `s` phases so that every window offset is one contiguous pass; each output still takes
/// its window in left-to-right order.
#[inline(always)]
fn pool_row_body(column: &[f32], k: usize, s: usize, phases: &mut Vec<f32>, out: &mut [f32]) {
    let w = column.len();
    let pw = w.div_ceil(s);
    phases.resize(s * pw, 0.0);
    deinterleave(column, s, pw, phases);
    out.copy_from_slice(&phases[..out.len()]);
    for dx in 1..k.min(w) {
        let valid = out.len().min((w - dx).div_ceil(s));
        let start = (dx % s) * pw + dx / s;
        for (o, &v) in out[..valid].iter_mut().zip(&phases[start..start + valid]) {
            *o = crate::pool::nan_max(*o, v);
        }
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

dispatch!(depthwise, depthwise_body, (p: &Plane, dst: &mut [f32], scratch: &mut DepthwiseScratch));
dispatch!(prelu, prelu_body, (row: &mut [f32], a: f32));
dispatch!(relu, relu_body, (row: &mut [f32]));
dispatch!(max_into, max_into_body, (acc: &mut [f32], row: &[f32]));
dispatch!(pool_row, pool_row_body, (column: &[f32], k: usize, s: usize, phases: &mut Vec<f32>, out: &mut [f32]));
