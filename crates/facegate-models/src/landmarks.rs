//! FaceLandmark68Net (full: 4 dense blocks of 4 convs) and FaceLandmark68TinyNet (3 blocks of
//! 3), face-api.js' own 68-point landmark regressors on 112×112 face crops.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{AvgPool2d, AvgPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::ModelError;
use crate::weights::{SeparableConv, Weights};

pub const INPUT_SIZE: usize = 112;
pub const NUM_POINTS: usize = 68;
pub const MEAN_RGB: [f32; 3] = [122.782, 117.001, 104.298];

/// First conv of a block: a plain 3×3 conv in `dense0`, separable elsewhere.
// Built once per model load; the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum FirstConv {
    Conv(Conv2d),
    Separable(SeparableConv),
}

impl FirstConv {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Self::Conv(c) => c.forward(x),
            Self::Separable(s) => s.forward(x),
        }
    }
}

/// face-api's `denseBlock3`/`denseBlock4`: every conv sees the sum of all earlier outputs.
/// The first conv halves the resolution (TF SAME, stride 2: padding at the end only).
#[derive(Debug)]
pub struct DenseBlock {
    conv0: FirstConv,
    rest: Vec<SeparableConv>,
}

impl DenseBlock {
    fn load(w: &Weights, prefix: &str, convs: usize, first: bool, device: &Device) -> Result<Self, ModelError> {
        let conv0 = if first {
            FirstConv::Conv(w.conv(
                &format!("{prefix}/conv0/filters"),
                Some(&format!("{prefix}/conv0/bias")),
                2,
                PaddingConfig2d::Same,
                device,
            )?)
        } else {
            FirstConv::Separable(SeparableConv::load(
                w,
                &format!("{prefix}/conv0"),
                2,
                PaddingConfig2d::Same,
                device,
            )?)
        };
        let rest = (1..convs)
            .map(|i| SeparableConv::load(w, &format!("{prefix}/conv{i}"), 1, PaddingConfig2d::Same, device))
            .collect::<Result<_, _>>()?;
        Ok(Self { conv0, rest })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let out1 = relu(self.conv0.forward(x));
        let mut sum = out1.clone();
        for conv in &self.rest {
            let out = conv.forward(relu(sum.clone()));
            sum = sum + out;
        }
        relu(sum)
    }
}

#[derive(Debug)]
pub struct FaceLandmark68Net {
    dense: Vec<DenseBlock>,
    pool: AvgPool2d,
    fc_weights: Tensor<2>,
    fc_bias: Tensor<1>,
    mean_rgb: Tensor<4>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandmarkVariant {
    /// 4 blocks (32, 64, 128, 256 channels) of 4 convs; 0.10 GFLOPs.
    Full,
    /// 3 blocks (32, 64, 128 channels) of 3 convs; 0.06 GFLOPs.
    Tiny,
}

impl FaceLandmark68Net {
    pub fn load(w: &Weights, variant: LandmarkVariant, device: &Device) -> Result<Self, ModelError> {
        let (blocks, convs, channels, pool) = match variant {
            LandmarkVariant::Full => (4, 4, 256, 7),
            LandmarkVariant::Tiny => (3, 3, 128, 14),
        };
        let dense = (0..blocks)
            .map(|b| DenseBlock::load(w, &format!("dense{b}"), convs, b == 0, device))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            dense,
            pool: AvgPool2dConfig::new([pool, pool]).with_strides([2, 2]).init(),
            fc_weights: w.matrix("fc/weights", [channels, 2 * NUM_POINTS], device)?,
            fc_bias: w.tensor1("fc/bias", 2 * NUM_POINTS, device)?,
            mean_rgb: crate::mean_rgb_tensor(MEAN_RGB, device),
        })
    }

    /// `[N, 3, 112, 112]` RGB in 0..255 → `[N, 136]`: interleaved (x, y) in 0..1 of the input.
    pub fn forward(&self, rgb: Tensor<4>) -> Tensor<2> {
        let mut x = (rgb - self.mean_rgb.clone()) / 255.0;
        for block in &self.dense {
            x = block.forward(x);
        }
        let x = self.pool.forward(x);
        let [n, c, _, _] = x.dims();
        x.reshape([n, c]).matmul(self.fc_weights.clone()) + self.fc_bias.clone().unsqueeze_dim(0)
    }
}
