//! MTCNN's three networks (Zhang et al. 2016), as facenet-pytorch 2.6.0 defines them, with its
//! weights (kpzhang93's Caffe models via davidsandberg/facenet; MIT). Field names are the
//! PyTorch state-dict names (`conv1`, `prelu1`, `dense4`, …); the converted files keep
//! PyTorch layouts (OIHW kernels, `[out, in]` dense).
//!
//! Inputs are NCHW RGB already normalised as `(x − 127.5) / 128`; the staged detector that
//! builds the image pyramid and the crops lives in `facegate-pipeline`.

use burn::prelude::*;
use burn::tensor::activation::softmax;
use facegate_conv::{Activation, Conv2d, MaxPool2d};

use crate::ModelError;
use crate::weights::{Weights, fused_conv2d};

/// P-Net's receptive field: one output cell scores a 12×12 window.
pub const PNET_CELL: usize = 12;
/// P-Net's output stride in input pixels.
pub const PNET_STRIDE: usize = 2;
pub const RNET_SIZE: usize = 24;
pub const ONET_SIZE: usize = 48;

/// A convolution from PyTorch's `{name}.weight` (OIHW) and `{name}.bias`, VALID, stride 1,
/// with the `nn.PReLU(C)` named `prelu` after it fused in (`None`: nothing after it).
fn conv(w: &Weights, name: &str, prelu: Option<&str>, device: &Device) -> Result<Conv2d, ModelError> {
    let weight = format!("{name}.weight");
    let shape = w.shape4(&weight)?;
    let kernel = w.get(&weight, &shape)?.to_vec();
    let bias = w.get(&format!("{name}.bias"), &[shape[0]])?.to_vec();
    let activation = match prelu {
        Some(p) => Activation::PRelu(w.get(&format!("{p}.weight"), &[shape[0]])?.to_vec()),
        None => Activation::Identity,
    };
    fused_conv2d(name, kernel, shape, Some(bias), 1, [(0, 0); 2], activation, device)
}

/// PyTorch's `nn.PReLU(C)`: `max(0, x) + a·min(0, x)` with one slope per channel (axis 1).
/// Only the dense layers' PReLUs are separate; the convolutions' are fused into them.
#[derive(Debug)]
pub struct PRelu {
    weight: Tensor<1>,
}

impl PRelu {
    fn load(w: &Weights, name: &str, device: &Device) -> Result<Self, ModelError> {
        let key = format!("{name}.weight");
        let len = w.shape(&key)?.iter().product();
        Ok(Self {
            weight: w.tensor1(&key, len, device)?,
        })
    }

    fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        burn::tensor::activation::prelu(x, self.weight.clone())
    }
}

/// PyTorch's `nn.Linear` from `{name}.weight` (`[out, in]`) and `{name}.bias`.
#[derive(Debug)]
pub struct Dense {
    weight: Tensor<2>,
    bias: Tensor<2>,
}

impl Dense {
    fn load(w: &Weights, name: &str, device: &Device) -> Result<Self, ModelError> {
        let key = format!("{name}.weight");
        let shape: [usize; 2] = w.shape(&key)?.try_into().map_err(|_| ModelError::WeightShape {
            name: key.clone(),
            expected: vec![0; 2],
            found: w.shape(&key).map(<[usize]>::to_vec).unwrap_or_default(),
        })?;
        let [out, _] = shape;
        Ok(Self {
            // `[out, in]` → `[in, out]` for `x · W`.
            weight: w.matrix(&key, shape, device)?.transpose(),
            bias: w.tensor1(&format!("{name}.bias"), out, device)?.reshape([1, out]),
        })
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        x.matmul(self.weight.clone()) + self.bias.clone()
    }
}

/// PyTorch's `nn.MaxPool2d(kernel, 2, ceil_mode=True)`.
fn pool(kernel: usize) -> MaxPool2d {
    MaxPool2d::new(kernel, 2, true)
}

/// PyTorch flattens `x.permute(0, 3, 2, 1)` (N, W, H, C) before its dense layers.
fn flatten_whc(x: Tensor<4>) -> Tensor<2> {
    let [n, c, h, w] = x.dims();
    x.permute([0, 3, 2, 1]).reshape([n, w * h * c])
}

/// The proposal network: fully convolutional, one 12×12 window per output cell at stride 2.
#[derive(Debug)]
pub struct PNet {
    /// `conv1` then `prelu1`, fused; the same for the other `conv{i}` + `prelu{i}`.
    conv1: Conv2d,
    pool1: MaxPool2d,
    conv2: Conv2d,
    conv3: Conv2d,
    conv4_1: Conv2d,
    conv4_2: Conv2d,
}

impl PNet {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: conv(w, "conv1", Some("prelu1"), device)?,
            pool1: pool(2),
            conv2: conv(w, "conv2", Some("prelu2"), device)?,
            conv3: conv(w, "conv3", Some("prelu3"), device)?,
            conv4_1: conv(w, "conv4_1", None, device)?,
            conv4_2: conv(w, "conv4_2", None, device)?,
        })
    }

    /// `(regression [N, 4, H', W'], softmax [N, 2, H', W'])`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let x = self.pool1.forward(self.conv1.forward(x));
        let x = self.conv2.forward(x);
        let x = self.conv3.forward(x);
        (self.conv4_2.forward(x.clone()), softmax(self.conv4_1.forward(x), 1))
    }
}

/// The refinement network on 24×24 candidates.
#[derive(Debug)]
pub struct RNet {
    /// `conv{i}` then `prelu{i}`, fused.
    conv1: Conv2d,
    pool1: MaxPool2d,
    conv2: Conv2d,
    pool2: MaxPool2d,
    conv3: Conv2d,
    dense4: Dense,
    prelu4: PRelu,
    dense5_1: Dense,
    dense5_2: Dense,
}

impl RNet {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: conv(w, "conv1", Some("prelu1"), device)?,
            pool1: pool(3),
            conv2: conv(w, "conv2", Some("prelu2"), device)?,
            pool2: pool(3),
            conv3: conv(w, "conv3", Some("prelu3"), device)?,
            dense4: Dense::load(w, "dense4", device)?,
            prelu4: PRelu::load(w, "prelu4", device)?,
            dense5_1: Dense::load(w, "dense5_1", device)?,
            dense5_2: Dense::load(w, "dense5_2", device)?,
        })
    }

    /// `(regression [N, 4], softmax [N, 2])`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.conv1.forward(x));
        let x = self.pool2.forward(self.conv2.forward(x));
        let x = self.conv3.forward(x);
        let x = self.prelu4.forward(self.dense4.forward(flatten_whc(x)));
        (self.dense5_2.forward(x.clone()), softmax(self.dense5_1.forward(x), 1))
    }
}

/// The output network on 48×48 candidates: final boxes and the five landmarks.
#[derive(Debug)]
pub struct ONet {
    /// `conv{i}` then `prelu{i}`, fused.
    conv1: Conv2d,
    pool1: MaxPool2d,
    conv2: Conv2d,
    pool2: MaxPool2d,
    conv3: Conv2d,
    pool3: MaxPool2d,
    conv4: Conv2d,
    dense5: Dense,
    prelu5: PRelu,
    dense6_1: Dense,
    dense6_2: Dense,
    dense6_3: Dense,
}

impl ONet {
    pub fn load(w: &Weights, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            conv1: conv(w, "conv1", Some("prelu1"), device)?,
            pool1: pool(3),
            conv2: conv(w, "conv2", Some("prelu2"), device)?,
            pool2: pool(3),
            conv3: conv(w, "conv3", Some("prelu3"), device)?,
            pool3: pool(2),
            conv4: conv(w, "conv4", Some("prelu4"), device)?,
            dense5: Dense::load(w, "dense5", device)?,
            prelu5: PRelu::load(w, "prelu5", device)?,
            dense6_1: Dense::load(w, "dense6_1", device)?,
            dense6_2: Dense::load(w, "dense6_2", device)?,
            dense6_3: Dense::load(w, "dense6_3", device)?,
        })
    }

    /// `(regression [N, 4], landmarks [N, 10] (x1..x5, y1..y5 in the box), softmax [N, 2])`.
    pub fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.conv1.forward(x));
        let x = self.pool2.forward(self.conv2.forward(x));
        let x = self.pool3.forward(self.conv3.forward(x));
        let x = self.conv4.forward(x);
        let x = self.prelu5.forward(self.dense5.forward(flatten_whc(x)));
        (
            self.dense6_2.forward(x.clone()),
            self.dense6_3.forward(x.clone()),
            softmax(self.dense6_1.forward(x), 1),
        )
    }
}

/// The three networks on one device.
#[derive(Debug)]
pub struct Mtcnn {
    pub pnet: PNet,
    pub rnet: RNet,
    pub onet: ONet,
}

impl Mtcnn {
    pub fn load(pnet: &Weights, rnet: &Weights, onet: &Weights, device: &Device) -> Result<Self, ModelError> {
        Ok(Self {
            pnet: PNet::load(pnet, device)?,
            rnet: RNet::load(rnet, device)?,
            onet: ONet::load(onet, device)?,
        })
    }
}
