//! Named weights in TensorFlow layout, turned into burn modules layer by layer.
//!
//! The converted files keep tfjs names and TF layouts (HWIO kernels, `[in, out]` dense), so
//! every layer here names exactly the tensors it reads and does its own layout change.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use facegate_tfjs::{NamedTensor, TensorValues};

use crate::ModelError;

pub struct Weights {
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

/// A convolution with the activation after it fused in (`facegate-conv`: our kernel on the CPU
/// device, burn's convolution elsewhere). `padding`: `[(top, bottom), (left, right)]`.
#[allow(clippy::too_many_arguments)]
pub fn fused_conv2d(
    layer: &str,
    weight_oihw: Vec<f32>,
    shape_oihw: [usize; 4],
    bias: Option<Vec<f32>>,
    stride: usize,
    padding: [(usize, usize); 2],
    activation: facegate_conv::Activation,
    device: &Device,
) -> Result<facegate_conv::Conv2d, ModelError> {
    let [out_channels, per_group, kh, kw] = shape_oihw;
    let geometry = facegate_conv::ConvGeometry {
        stride: [stride, stride],
        padding,
        ..facegate_conv::ConvGeometry::new(per_group, out_channels, [kh, kw])
    };
    facegate_conv::Conv2d::new(geometry, weight_oihw, bias, activation, device).map_err(|error| ModelError::Layer {
        layer: layer.to_string(),
        error,
    })
}

impl Weights {
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ModelError> {
        let tensors = facegate_tfjs::from_safetensors(bytes)?
            .into_iter()
            .filter_map(|NamedTensor { name, shape, values }| match values {
                TensorValues::F32(v) => Some((name, (shape, v))),
                TensorValues::I32(_) => None,
            })
            .collect();
        Ok(Self { tensors })
    }

    /// The values of `name`, checked against the shape the architecture expects.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&[f32], ModelError> {
        let (s, v) = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingWeight(name.to_string()))?;
        if s != shape {
            return Err(ModelError::WeightShape {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: s.clone(),
            });
        }
        Ok(v)
    }

    /// The shape of `name` as stored.
    pub fn shape(&self, name: &str) -> Result<&[usize], ModelError> {
        self.tensors
            .get(name)
            .map(|(s, _)| s.as_slice())
            .ok_or_else(|| ModelError::MissingWeight(name.to_string()))
    }

    pub fn tensor1(&self, name: &str, len: usize, device: &Device) -> Result<Tensor<1>, ModelError> {
        let v = self.get(name, &[len])?;
        Ok(Tensor::from_data(TensorData::new(v.to_vec(), [len]), device))
    }

    /// A dense `[in, out]` matrix (tfjs and burn's `Linear` agree on this layout).
    pub fn matrix(&self, name: &str, shape: [usize; 2], device: &Device) -> Result<Tensor<2>, ModelError> {
        let v = self.get(name, &shape)?;
        Ok(Tensor::from_data(TensorData::new(v.to_vec(), shape), device))
    }
}

/// HWIO `[kh, kw, cin, cout]` → OIHW `[cout, cin, kh, kw]`.
pub fn hwio_to_oihw(v: &[f32], [kh, kw, cin, cout]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for y in 0..kh {
        for x in 0..kw {
            for i in 0..cin {
                for o in 0..cout {
                    out[((o * cin + i) * kh + y) * kw + x] = v[((y * kw + x) * cin + i) * cout + o];
                }
            }
        }
    }
    out
}

/// A conv layer from given weights, no random initialisation.
pub fn conv2d(
    weight_oihw: Vec<f32>,
    shape_oihw: [usize; 4],
    bias: Option<Vec<f32>>,
    stride: usize,
    padding: PaddingConfig2d,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let cout = shape_oihw[0];
    Conv2d {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(weight_oihw, shape_oihw), device)),
        bias: bias.map(|b| Param::from_tensor(Tensor::from_data(TensorData::new(b, [cout]), device))),
        stride: [stride, stride],
        kernel_size: [shape_oihw[2], shape_oihw[3]],
        dilation: [1, 1],
        groups,
        padding,
    }
}

impl Weights {
    /// A regular convolution from `{prefix}/filters` (HWIO) and optionally `{prefix}/bias`.
    pub fn conv(
        &self,
        filters: &str,
        bias: Option<&str>,
        stride: usize,
        padding: PaddingConfig2d,
        device: &Device,
    ) -> Result<Conv2d, ModelError> {
        let s = self.shape4(filters)?;
        let w = hwio_to_oihw(self.get(filters, &s)?, s);
        let b = bias.map(|b| self.get(b, &[s[3]]).map(<[f32]>::to_vec)).transpose()?;
        Ok(conv2d(w, [s[3], s[2], s[0], s[1]], b, stride, padding, 1, device))
    }

    /// A depthwise convolution (multiplier 1) from a `[kh, kw, c, 1]` kernel, no bias.
    pub fn depthwise(
        &self,
        filters: &str,
        stride: usize,
        padding: PaddingConfig2d,
        device: &Device,
    ) -> Result<Conv2d, ModelError> {
        let [kh, kw, c, m] = self.shape4(filters)?;
        if m != 1 {
            return Err(ModelError::WeightShape {
                name: filters.into(),
                expected: vec![kh, kw, c, 1],
                found: vec![kh, kw, c, m],
            });
        }
        // [kh, kw, c, 1] → [c, 1, kh, kw]
        let w = hwio_to_oihw(self.get(filters, &[kh, kw, c, 1])?, [kh, kw, 1, c]);
        Ok(conv2d(w, [c, 1, kh, kw], None, stride, padding, c, device))
    }

    /// The shape of a 4-d tensor, or a typed error for any other rank.
    pub fn shape4(&self, name: &str) -> Result<[usize; 4], ModelError> {
        let s = self.shape(name)?;
        s.try_into().map_err(|_| ModelError::WeightShape {
            name: name.into(),
            expected: vec![0; 4],
            found: s.to_vec(),
        })
    }
}

/// A TF `separableConv2d + bias`: depthwise (multiplier 1, no bias) then pointwise 1×1 with
/// bias, no activation. Weights `{prefix}/depthwise_filter`, `/pointwise_filter`, `/bias`.
#[derive(Debug)]
pub struct SeparableConv {
    depthwise_filter: Conv2d,
    pointwise_filter: Conv2d,
}

impl SeparableConv {
    pub fn load(
        w: &Weights,
        prefix: &str,
        stride: usize,
        padding: PaddingConfig2d,
        device: &Device,
    ) -> Result<Self, ModelError> {
        Ok(Self {
            depthwise_filter: w.depthwise(&format!("{prefix}/depthwise_filter"), stride, padding, device)?,
            pointwise_filter: w.conv(
                &format!("{prefix}/pointwise_filter"),
                Some(&format!("{prefix}/bias")),
                1,
                PaddingConfig2d::Valid,
                device,
            )?,
        })
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.pointwise_filter.forward(self.depthwise_filter.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwio_to_oihw_moves_every_element() {
        let shape = [2, 3, 4, 5];
        let v: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let out = hwio_to_oihw(&v, shape);
        for (y, x, i, o) in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 3), (0, 2, 1, 0)] {
            assert_eq!(out[((o * 4 + i) * 2 + y) * 3 + x], v[((y * 3 + x) * 4 + i) * 5 + o]);
        }
    }
}
