//! 2-D convolutions (and the max-pools after them) for the networks, with a faster path on
//! burn's CPU device.
//!
//! burn's flex backend runs a convolution generically: per call it repacks the kernel, turns
//! the input to NHWC, builds im2col tiles, runs gemm and scatters the result back to NCHW; bias
//! and PReLU are further passes over the output (`benches/README.md` measured 2.4–10× behind
//! onnxruntime on our networks). On that device a [`Conv2d`] keeps its weights in host memory
//! and runs [`kernel::PackedConv2d`] on the tensor's own buffer: no repacking, no layout change,
//! bias and activation fused. On any other device (wgpu) it is burn's `conv2d` followed by the
//! same activation, so a network's code is one forward whatever the device.

pub mod kernel;
mod pool;
mod simd;

use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::{prelu, relu};
use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;

pub use kernel::{Activation, BadLayer, ConvGeometry, PackedConv2d};
pub use pool::MaxPool2d;

/// A convolution, its bias and the activation after it, on one device.
#[derive(Debug)]
pub struct Conv2d {
    geometry: ConvGeometry,
    run: Run,
}

// burn tensor handles are a few hundred bytes and a network holds a few dozen layers, each
// on one device for its life: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Run {
    /// burn's CPU device: our kernel on host memory.
    Host { packed: PackedConv2d, device: Device },
    /// Any other device: burn's convolution, then the activation as tensor ops.
    Burn {
        weight: Tensor<4>,
        bias: Tensor<1>,
        activation: BurnActivation,
    },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum BurnActivation {
    Identity,
    Relu,
    PRelu(Tensor<1>),
}

impl Conv2d {
    /// `weight`: OIHW (`[out, in/groups, kh, kw]`), `bias`: `[out]`.
    pub fn new(
        geometry: ConvGeometry,
        weight: Vec<f32>,
        bias: Option<Vec<f32>>,
        activation: Activation,
        device: &Device,
    ) -> Result<Self, BadLayer> {
        // Checked on every device, so a bad layer is refused the same way everywhere.
        let packed = PackedConv2d::new(geometry, weight, bias, activation)?;
        let run = if on_host(device) {
            Run::Host {
                packed,
                device: device.clone(),
            }
        } else {
            packed.into_burn(device)
        };
        Ok(Self { geometry, run })
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// NCHW in, NCHW out, with the layer's own padding.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_padded(x, self.geometry.padding)
    }

    /// With padding chosen for this input (ONNX's `SAME` pads).
    pub fn forward_padded(&self, x: Tensor<4>, padding: [(usize, usize); 2]) -> Tensor<4> {
        match &self.run {
            Run::Host { packed, device } => on_host_buffer(x, device, |input, [n, _, h, w]| {
                let (out, [oh, ow]) = packed
                    .forward_padded(input, n, h, w, padding)
                    .unwrap_or((Vec::new(), [0, 0]));
                (out, [n, self.geometry.out_channels, oh, ow])
            }),
            Run::Burn {
                weight,
                bias,
                activation,
            } => {
                let g = &self.geometry;
                let options = ConvOptions::new_with_padding(g.stride, padding, g.dilation, g.groups);
                let y = conv2d(x, weight.clone(), Some(bias.clone()), options);
                match activation {
                    BurnActivation::Identity => y,
                    BurnActivation::Relu => relu(y),
                    BurnActivation::PRelu(slopes) => prelu(y, slopes.clone()),
                }
            }
        }
    }
}

impl PackedConv2d {
    fn into_burn(self, device: &Device) -> Run {
        let (g, weight, bias, activation) = self.into_parts();
        let cout = g.out_channels;
        let shape = [cout, g.in_channels / g.groups, g.kernel[0], g.kernel[1]];
        Run::Burn {
            weight: Tensor::from_data(TensorData::new(weight, shape), device),
            bias: Tensor::from_data(TensorData::new(bias, [cout]), device),
            activation: match activation {
                Activation::Identity => BurnActivation::Identity,
                Activation::Relu => BurnActivation::Relu,
                Activation::PRelu(s) => BurnActivation::PRelu(Tensor::from_data(TensorData::new(s, [cout]), device)),
            },
        }
    }
}

/// `f` run on the tensor's own f32 buffer (moved out of the tensor, not copied, when nothing
/// else holds it) and its dims; what it returns becomes a tensor on `device`.
fn on_host_buffer(
    x: Tensor<4>,
    device: &Device,
    f: impl FnOnce(&[f32], [usize; 4]) -> (Vec<f32>, [usize; 4]),
) -> Tensor<4> {
    let dims = x.dims();
    let data = x.into_data().convert::<f32>();
    let (out, shape) = f(data.as_slice::<f32>().expect("converted to f32 above"), dims);
    Tensor::from_data(TensorData::new(out, shape), device)
}

/// Whether `device` is burn's CPU backend, where host memory is the tensor's own.
pub fn on_host(device: &Device) -> bool {
    *device == Device::flex()
}
