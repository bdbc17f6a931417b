//! The kernels against a direct convolution in f64 (the definition, written out), and the
//! burn adapter against burn's own `conv2d` on the same device; the max-pool likewise.

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::prelu;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use facegate_conv::{Activation, Conv2d, ConvGeometry, MaxPool2d, PackedConv2d};

/// A fixed pseudo-random stream in [-1, 1) (no dependency, same values every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// out[b, o, y, x] = bias[o] + Σ w[o, c, ky, kx] · in[b, g·C/G + c, y·s − p + ky·d, x·s − p + kx·d],
/// then the activation, all in f64.
fn reference(
    g: &ConvGeometry,
    input: &[f32],
    [n, h, w]: [usize; 3],
    weight: &[f32],
    bias: &[f32],
    act: &Activation,
) -> (Vec<f64>, [usize; 2]) {
    let [kh, kw] = g.kernel;
    let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let oh = (h + g.padding[0].0 + g.padding[0].1 - g.dilation[0] * (kh - 1) - 1) / g.stride[0] + 1;
    let ow = (w + g.padding[1].0 + g.padding[1].1 - g.dilation[1] * (kw - 1) - 1) / g.stride[1] + 1;
    let mut out = vec![0.0f64; n * g.out_channels * oh * ow];
    for b in 0..n {
        for o in 0..g.out_channels {
            let grp = o / cout_g;
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = bias[o] as f64;
                    for c in 0..cin_g {
                        let ci = grp * cin_g + c;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * g.stride[0] + ky * g.dilation[0]) as isize - g.padding[0].0 as isize;
                                let ix = (x * g.stride[1] + kx * g.dilation[1]) as isize - g.padding[1].0 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let v = input[((b * g.in_channels + ci) * h + iy as usize) * w + ix as usize] as f64;
                                let k = weight[((o * cin_g + c) * kh + ky) * kw + kx] as f64;
                                acc += v * k;
                            }
                        }
                    }
                    acc = match act {
                        Activation::Identity => acc,
                        Activation::Relu => acc.max(0.0),
                        Activation::PRelu(s) if acc < 0.0 => acc * s[o] as f64,
                        Activation::PRelu(_) => acc,
                    };
                    out[((b * g.out_channels + o) * oh + y) * ow + x] = acc;
                }
            }
        }
    }
    (out, [oh, ow])
}

struct Case {
    g: ConvGeometry,
    hw: [usize; 2],
    n: usize,
}

impl Case {
    fn weights(&self) -> usize {
        self.g.out_channels * self.g.in_channels / self.g.groups * self.g.kernel[0] * self.g.kernel[1]
    }
}

fn cases() -> Vec<Case> {
    #[allow(clippy::too_many_arguments)]
    let c = |cin, cout, kernel, stride, dilation, padding, groups, hw, n| Case {
        g: ConvGeometry {
            out_channels: cout,
            in_channels: cin,
            kernel,
            stride,
            dilation,
            padding,
            groups,
        },
        hw,
        n,
    };
    vec![
        // MTCNN: 3×3 VALID; the last P-Net layers (1×1); R-Net's 2×2.
        c(3, 10, [3, 3], [1, 1], [1, 1], [(0, 0); 2], 1, [31, 27], 1),
        c(32, 4, [1, 1], [1, 1], [1, 1], [(0, 0); 2], 1, [9, 11], 3),
        c(48, 64, [2, 2], [1, 1], [1, 1], [(0, 0); 2], 1, [3, 3], 5),
        // MobileFaceNet: 3×3 stride 2 with padding, depthwise at stride 1 and 2, the 7×7 GDC.
        c(3, 16, [3, 3], [2, 2], [1, 1], [(1, 1); 2], 1, [28, 28], 2),
        c(16, 16, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 16, [14, 14], 2),
        c(16, 16, [3, 3], [2, 2], [1, 1], [(1, 1); 2], 16, [14, 13], 1),
        c(24, 24, [7, 7], [1, 1], [1, 1], [(0, 0); 2], 24, [7, 7], 3),
        // dlib's ResNet: 7×7 stride 2 and 3×3 stride 2 with padding.
        c(3, 8, [7, 7], [2, 2], [1, 1], [(3, 3); 2], 1, [37, 37], 1),
        // Asymmetric (ONNX SAME_UPPER), dilation, groups of several channels, P-Net's largest
        // level, a strided and dilated depthwise layer.
        c(4, 6, [3, 2], [2, 1], [1, 1], [(0, 1), (1, 0)], 1, [10, 9], 2),
        c(5, 7, [3, 3], [1, 2], [2, 1], [(2, 2), (1, 1)], 1, [12, 15], 1),
        c(8, 6, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 2, [10, 10], 2),
        c(3, 10, [3, 3], [1, 1], [1, 1], [(0, 0); 2], 1, [151, 151], 1),
        c(16, 16, [3, 3], [2, 1], [2, 1], [(2, 1), (0, 2)], 16, [40, 23], 1),
        // Large enough to run on rayon's workers: one image split by gemm, a batch split by
        // image, a depthwise layer split by plane, at stride 1 and 2.
        c(16, 32, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 1, [20, 20], 1),
        c(16, 32, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 1, [20, 20], 5),
        c(64, 128, [1, 1], [1, 1], [1, 1], [(0, 0); 2], 1, [28, 28], 2),
        c(64, 64, [3, 3], [2, 2], [1, 1], [(1, 1); 2], 64, [112, 111], 1),
        c(64, 64, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 64, [28, 28], 3),
        // An im2col matrix over its 4 MiB band (576 × 64² floats): built in bands of rows.
        c(64, 8, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 1, [64, 64], 1),
        // Dilated, asymmetric padding, a non-square kernel, 16 channels.
        c(16, 8, [3, 2], [1, 1], [2, 1], [(2, 1), (0, 2)], 1, [11, 9], 2),
        // A batch of small outputs (dlib's ResNet's last layers), split by image.
        c(128, 256, [3, 3], [1, 1], [1, 1], [(1, 1); 2], 1, [7, 7], 4),
    ]
}

fn activations(cout: usize, rng: &mut Lcg) -> Vec<Activation> {
    vec![Activation::Identity, Activation::Relu, Activation::PRelu(rng.vec(cout))]
}

/// With 1, 2 and 5 threads: each layer's work is split differently (serial, per image, by
/// gemm), and every split must give the same result.
#[test]
fn kernels_match_the_definition_in_f64() {
    for threads in [1, 2, 5] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(check_against_f64);
    }
}

fn check_against_f64() {
    let mut rng = Lcg(7);
    for (i, c) in cases().iter().enumerate() {
        let g = c.g;
        let k = c.weights() / g.out_channels;
        let input = rng.vec(c.n * g.in_channels * c.hw[0] * c.hw[1]);
        let weight = rng.vec(c.weights());
        let bias = rng.vec(g.out_channels);
        for act in activations(g.out_channels, &mut rng) {
            let packed = PackedConv2d::new(g, weight.clone(), Some(bias.clone()), act.clone()).unwrap();
            let (got, size) = packed.forward(&input, c.n, c.hw[0], c.hw[1]).unwrap();
            let (want, want_size) = reference(&g, &input, [c.n, c.hw[0], c.hw[1]], &weight, &bias, &act);
            assert_eq!(size, want_size, "case {i}");
            assert_eq!(got.len(), want.len(), "case {i}");
            // f32 sums of up to a few hundred products of values in [-1, 1).
            let tol = 2e-6 * (k as f64).sqrt() * 8.0;
            let worst = got
                .iter()
                .zip(&want)
                .map(|(&a, &b)| (a as f64 - b).abs())
                .fold(0.0, f64::max);
            let threads = rayon::current_num_threads();
            assert!(
                worst <= tol,
                "case {i} {act:?}, {threads} threads: max error {worst:e} > {tol:e}"
            );
        }
    }
}

#[test]
fn a_kernel_larger_than_the_input_gives_no_output() {
    let g = ConvGeometry::new(1, 2, [3, 3]);
    let packed = PackedConv2d::new(g, vec![0.5; 18], None, Activation::Identity).unwrap();
    assert!(packed.forward(&[1.0; 4], 1, 2, 2).is_none());
    let (out, size) = packed.forward(&[1.0; 9], 1, 3, 3).unwrap();
    assert_eq!((out, size), (vec![4.5, 4.5], [1, 1]));
}

#[test]
fn weights_that_do_not_fit_the_geometry_are_refused() {
    let g = ConvGeometry {
        padding: [(1, 1); 2],
        groups: 4,
        ..ConvGeometry::new(6, 4, [3, 3])
    };
    assert!(PackedConv2d::new(g, vec![0.0; 4 * 9], None, Activation::Identity).is_err());
    let g = ConvGeometry { groups: 1, ..g };
    assert!(PackedConv2d::new(g, vec![0.0; 4 * 6 * 9 - 1], None, Activation::Identity).is_err());
    assert!(PackedConv2d::new(g, vec![0.0; 4 * 6 * 9], Some(vec![0.0; 3]), Activation::Identity).is_err());
    assert!(PackedConv2d::new(g, vec![0.0; 4 * 6 * 9], None, Activation::PRelu(vec![0.1; 5])).is_err());
}

/// The adapter on burn's CPU device (our kernel) against burn's `conv2d` and `prelu` there.
#[test]
fn the_layer_on_the_cpu_matches_burns_convolution() {
    let device = Device::flex();
    assert!(facegate_conv::on_host(&device));
    let mut rng = Lcg(11);
    for (i, c) in cases().iter().enumerate() {
        let g = c.g;
        let cout = g.out_channels;
        let shape = [cout, g.in_channels / g.groups, g.kernel[0], g.kernel[1]];
        let weight = rng.vec(c.weights());
        let bias = rng.vec(cout);
        let slopes = rng.vec(cout);
        let dims = [c.n, g.in_channels, c.hw[0], c.hw[1]];
        let input = rng.vec(dims.iter().product());
        let layer = Conv2d::new(
            g,
            weight.clone(),
            Some(bias.clone()),
            Activation::PRelu(slopes.clone()),
            &device,
        )
        .unwrap();
        let x = || Tensor::<4>::from_data(TensorData::new(input.clone(), dims), &device);
        let got = layer.forward(x()).into_data().try_to_vec::<f32>().unwrap();
        let options = ConvOptions::new_with_padding(g.stride, g.padding, g.dilation, g.groups);
        let want = prelu(
            conv2d(
                x(),
                Tensor::from_data(TensorData::new(weight, shape), &device),
                Some(Tensor::from_data(TensorData::new(bias, [cout]), &device)),
                options,
            ),
            Tensor::from_data(TensorData::new(slopes, [cout]), &device),
        )
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
        assert_eq!(got.len(), want.len(), "case {i}");
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "case {i}: max difference {worst:e}");
    }
}

/// Max-pooling against its definition (every window, clipped at the edge, PyTorch's ceil_mode
/// rule) and against burn's `max_pool2d` on the same device, MTCNN's sizes and odd ones.
#[test]
fn max_pool_matches_its_definition_and_burns() {
    let device = Device::flex();
    let mut rng = Lcg(3);
    for (k, s, ceil) in [(2, 2, true), (3, 2, true), (3, 2, false), (2, 1, true), (3, 3, true)] {
        for (h, w, planes) in [
            (149, 149, 10),
            (22, 22, 28),
            (9, 10, 48),
            (3, 3, 2),
            (4, 7, 1),
            (2, 2, 1),
        ] {
            let pool = MaxPool2d::new(k, s, ceil);
            let input = rng.vec(planes * h * w);
            let got = pool.forward_host(&input, planes, h, w);
            let (oh, ow) = (pool.output_len(h), pool.output_len(w));
            // PyTorch's output size, written from its documentation.
            let size = |len: usize| {
                if len < k {
                    return 0;
                }
                let q = (len - k) as f64 / s as f64;
                let mut o = if ceil { q.ceil() } else { q.floor() } as usize + 1;
                if ceil && (o - 1) * s >= len {
                    o -= 1;
                }
                o
            };
            assert_eq!((oh, ow), (size(h), size(w)), "k {k} s {s} {h}×{w}");
            let mut want = Vec::new();
            for p in 0..planes {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut m = f32::NEG_INFINITY;
                        for y in oy * s..(oy * s + k).min(h) {
                            for x in ox * s..(ox * s + k).min(w) {
                                m = m.max(input[(p * h + y) * w + x]);
                            }
                        }
                        want.push(m);
                    }
                }
            }
            assert_eq!(got, want, "k {k} s {s} ceil {ceil} {h}×{w}");
            if h >= k && w >= k {
                let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, planes, h, w]), &device);
                let options = MaxPoolOptions::new([k, k]).with_stride([s, s]).with_ceil_mode(ceil);
                let burn: Vec<f32> = max_pool2d(x.clone(), options).into_data().try_to_vec().unwrap();
                assert_eq!(got, burn, "against burn: k {k} s {s} ceil {ceil} {h}×{w}");
                let ours: Vec<f32> = pool.forward(x).into_data().try_to_vec().unwrap();
                assert_eq!(ours, want);
            }
        }
    }
    // A NaN in a window makes that window NaN, and only that one.
    let pool = MaxPool2d::new(2, 2, true);
    let mut input = vec![1.0f32; 16];
    input[5] = f32::NAN;
    let out = pool.forward_host(&input, 1, 4, 4);
    assert!(out[0].is_nan());
    assert_eq!(&out[1..], &[1.0, 1.0, 1.0]);
}
