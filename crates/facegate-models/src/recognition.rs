//! FaceRecognitionNet: face-api.js' port of dlib's `dlib_face_recognition_resnet_model_v1`
//! (a ResNet-29 variant), 150×150 RGB → 128-d descriptor compared by Euclidean distance.
//!
//! Field names are the tfjs weight prefixes (`conv32_down`, `conv64_1`, …). Each "conv layer"
//! is dlib's `con` + `affine` (folded batch norm): conv + bias, then × scale + offset; we fold
//! the affine into the conv at load time, which is the same function with one op per layer.

use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::ModelError;
use facegate_conv::{Activation, Conv2d, MaxPool2d};

use crate::weights::{Weights, fused_conv2d, hwio_to_oihw};

/// dlib's zero padding of 1 on every side (its `con<…,3,3,1,1>` layers).
const PAD1: [(usize, usize); 2] = [(1, 1); 2];
const VALID: [(usize, usize); 2] = [(0, 0); 2];

pub const INPUT_SIZE: usize = 150;
pub const DESCRIPTOR_LEN: usize = 128;
/// Per-channel RGB means subtracted before dividing by 255 (face-api `FaceRecognitionNet`).
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// `conv(x) + bias`, then `* scale/weights + scale/biases`, folded into one convolution, with
/// the ReLU after it (when there is one) fused in.
#[derive(Debug)]
pub struct ConvLayer {
    conv: Conv2d,
}

impl ConvLayer {
    fn load(
        w: &Weights,
        prefix: &str,
        stride: usize,
        padding: [(usize, usize); 2],
        activation: Activation,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let filters = format!("{prefix}/conv/filters");
        let shape = w.shape4(&filters)?;
        let cout = shape[3];
        let kernel = hwio_to_oihw(w.get(&filters, &shape)?, shape);
        let bias = w.get(&format!("{prefix}/conv/bias"), &[cout])?;
        let scale = w.get(&format!("{prefix}/scale/weights"), &[cout])?;
        let offset = w.get(&format!("{prefix}/scale/biases"), &[cout])?;
        let per_out = kernel.len() / cout;
        let folded: Vec<f32> = kernel
            .iter()
            .enumerate()
            .map(|(i, &k)| (k as f64 * scale[i / per_out] as f64) as f32)
            .collect();
        let folded_bias = (0..cout)
            .map(|o| (bias[o] as f64 * scale[o] as f64 + offset[o] as f64) as f32)
            .collect();
        let conv = fused_conv2d(
            prefix,
            folded,
            [cout, shape[2], shape[0], shape[1]],
            Some(folded_bias),
            stride,
            padding,
            activation,
            device,
        )?;
        Ok(Self { conv })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.conv.forward(x)
    }
}

/// `relu(conv2(relu(conv1(x))) + x)`, 3×3 convolutions with symmetric padding 1.
#[derive(Debug)]
pub struct Residual {
    conv1: ConvLayer,
    conv2: ConvLayer,
}

impl Residual {
    fn load(w: &Weights, prefix: &str, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: ConvLayer::load(w, &format!("{prefix}/conv1"), 1, PAD1, Activation::Relu, device)?,
            conv2: ConvLayer::load(w, &format!("{prefix}/conv2"), 1, PAD1, Activation::Identity, device)?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        // conv1's ReLU is fused into it.
        let out = self.conv2.forward(self.conv1.forward(x.clone()));
        relu(out + x)
    }
}

/// The down-sampling residual block. dlib's `add_prev` zero-pads the smaller operand, so when
/// the strided VALID conv yields fewer rows/columns than the 2×2 average pool, the conv output
/// gets one zero row at the bottom and one zero column at the right, and a shortcut with fewer
/// channels gets zero channels appended.
#[derive(Debug)]
pub struct ResidualDown {
    conv1: ConvLayer,
    conv2: ConvLayer,
    pool: AvgPool2d,
}

impl ResidualDown {
    fn load(w: &Weights, prefix: &str, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: ConvLayer::load(w, &format!("{prefix}/conv1"), 2, VALID, Activation::Relu, device)?,
            conv2: ConvLayer::load(w, &format!("{prefix}/conv2"), 1, PAD1, Activation::Identity, device)?,
            pool: AvgPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let mut out = self.conv2.forward(self.conv1.forward(x.clone()));
        let mut pooled = self.pool.forward(x);
        let [_, c_out, h_out, w_out] = out.dims();
        let [n, c_in, h_in, w_in] = pooled.dims();
        if h_out != h_in || w_out != w_in {
            // (left, right, top, bottom)
            out = out.pad((0, w_in - w_out, 0, h_in - h_out), 0.0);
        }
        if c_in != c_out {
            let zeros = Tensor::zeros([n, c_out - c_in, h_in, w_in], &pooled.device());
            pooled = Tensor::cat(vec![pooled, zeros], 1);
        }
        relu(pooled + out)
    }
}

#[derive(Debug)]
pub struct FaceRecognitionNet {
    conv32_down: ConvLayer,
    max_pool: MaxPool2d,
    conv32_1: Residual,
    conv32_2: Residual,
    conv32_3: Residual,
    conv64_down: ResidualDown,
    conv64_1: Residual,
    conv64_2: Residual,
    conv64_3: Residual,
    conv128_down: ResidualDown,
    conv128_1: Residual,
    conv128_2: Residual,
    conv256_down: ResidualDown,
    conv256_1: Residual,
    conv256_2: Residual,
    conv256_down_out: ResidualDown,
    fc: Tensor<2>,
    mean_rgb: Tensor<4>,
    /// What the mean-subtracted pixels are divided by: dlib's input layer uses 256, face-api 255.
    input_divisor: f32,
}

impl FaceRecognitionNet {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        let r = |p: &str| Residual::load(w, p, device);
        let d = |p: &str| ResidualDown::load(w, p, device);
        Ok(Self {
            conv32_down: ConvLayer::load(w, "conv32_down", 2, VALID, Activation::Relu, device)?,
            max_pool: MaxPool2d::new(3, 2, false),
            conv32_1: r("conv32_1")?,
            conv32_2: r("conv32_2")?,
            conv32_3: r("conv32_3")?,
            conv64_down: d("conv64_down")?,
            conv64_1: r("conv64_1")?,
            conv64_2: r("conv64_2")?,
            conv64_3: r("conv64_3")?,
            conv128_down: d("conv128_down")?,
            conv128_1: r("conv128_1")?,
            conv128_2: r("conv128_2")?,
            conv256_down: d("conv256_down")?,
            conv256_1: r("conv256_1")?,
            conv256_2: r("conv256_2")?,
            conv256_down_out: d("conv256_down_out")?,
            fc: w.matrix("fc", [256, DESCRIPTOR_LEN], device)?,
            mean_rgb: crate::mean_rgb_tensor(MEAN_RGB, device),
            input_divisor: 255.0,
        })
    }

    /// dlib's own input scaling (`input_rgb_image_sized` divides by 256), for parity with dlib's
    /// descriptors when the weights are dlib's.
    pub fn with_input_divisor(self, input_divisor: f32) -> Self {
        Self { input_divisor, ..self }
    }

    /// `[N, 3, 150, 150]` RGB in 0..255 → `[N, 128]` descriptors (not normalised).
    pub fn forward(&self, rgb: Tensor<4>) -> Tensor<2> {
        let x = (rgb - self.mean_rgb.clone()) / self.input_divisor;
        let x = self.conv32_down.forward(x);
        let x = self.max_pool.forward(x);
        let x = self.conv32_3.forward(self.conv32_2.forward(self.conv32_1.forward(x)));
        let x = self.conv64_down.forward(x);
        let x = self.conv64_3.forward(self.conv64_2.forward(self.conv64_1.forward(x)));
        let x = self.conv128_down.forward(x);
        let x = self.conv128_2.forward(self.conv128_1.forward(x));
        let x = self.conv256_down.forward(x);
        let x = self.conv256_2.forward(self.conv256_1.forward(x));
        let x = self.conv256_down_out.forward(x);
        let [n, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([n, c]);
        pooled.matmul(self.fc.clone())
    }
}
