//! The layer structure of a serialised dlib DNN (dnn/core.h, layers.h, loss.h, input.h).
//!
//! `add_loss_layer` writes its version, its loss details, then its subnetwork; `add_layer`
//! writes its version, its subnetwork, then its own details; tag/skip layers write a version and
//! their subnetwork only. So the stream is: loss, the version of every layer from the output
//! inwards, the input layer, then each layer's details from the input outwards. Versions are
//! 1 (tag/skip), 2 (`add_layer`) or 2/3 (the `add_layer` over the input layer); the input layer
//! starts with its name's length, which is longer than 3, so it ends the run of versions.

use crate::DlibError;
use crate::serial::{Reader, Tensor, numel};

#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// `loss_metric_2`: the training margin and the distance threshold.
    Metric { margin: f64, distance_threshold: f64 },
}

/// `input_rgb_image_sized`: per-channel means (dlib subtracts them and divides by 256).
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub mean_rgb: [f64; 3],
    pub rows: usize,
    pub cols: usize,
}

/// `con_`: filters OIHW `[num_filters, k_in, nr, nc]` and, when used, one bias per filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Con {
    pub filter_shape: [usize; 4],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub filters: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

/// `affine_` (batch norm folded into `gamma · x + beta`), per channel in conv mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    pub shape: [usize; 4],
    pub conv_mode: bool,
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
}

/// `avg_pool_`/`max_pool_` geometry; a 0×0 window pools everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub window: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

/// `fc_`: weights `[num_inputs, num_outputs]` row-major, optional bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Fc {
    pub num_inputs: usize,
    pub num_outputs: usize,
    pub weights: Vec<f32>,
    pub bias: Option<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    Con(Con),
    Affine(Affine),
    Relu,
    AddPrev,
    AvgPool(Pool),
    MaxPool(Pool),
    Fc(Fc),
    /// A tag or skip layer: both are written as version 1 with no details, and which one (and
    /// its id) lives only in the C++ type, so the stream cannot tell them apart.
    TagOrSkip,
}

impl Layer {
    /// Short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Layer::Con(c) => format!(
                "con {:?} stride {:?} padding {:?}{}",
                c.filter_shape,
                c.stride,
                c.padding,
                if c.bias.is_some() { "" } else { " no bias" }
            ),
            Layer::Affine(a) => format!("affine {:?}{}", a.shape, if a.conv_mode { "" } else { " fc mode" }),
            Layer::Relu => "relu".into(),
            Layer::AddPrev => "add_prev".into(),
            Layer::AvgPool(p) => format!("avg_pool {p:?}"),
            Layer::MaxPool(p) => format!("max_pool {p:?}"),
            Layer::Fc(f) => format!(
                "fc {}->{}{}",
                f.num_inputs,
                f.num_outputs,
                if f.bias.is_some() { " with bias" } else { "" }
            ),
            Layer::TagOrSkip => "tag/skip".into(),
        }
    }
}

/// A parsed network: `layers` run from the input to the output (the loss excluded).
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub loss: Loss,
    pub input: Input,
    pub layers: Vec<Layer>,
}

/// Parse a whole serialised network; bytes left over are an error.
pub fn parse(data: &[u8]) -> Result<Network, DlibError> {
    let mut r = Reader::new(data);
    r.expect_int("add_loss_layer version", 1)?;
    let loss = loss(&mut r)?;

    // The versions, outermost first, until the input layer's name length.
    let mut versions = Vec::new();
    loop {
        let mut ahead = r;
        let offset = ahead.offset();
        match ahead.int()? {
            v @ 1..=3 => versions.push((offset, v)),
            _ => break,
        }
        r = ahead;
    }
    let input_layer_version = match versions.pop() {
        Some((_, v @ (2 | 3))) => v,
        other => {
            return Err(DlibError::Unexpected {
                offset: other.map_or(r.offset(), |(o, _)| o),
                what: "version of the add_layer over the input",
                expected: "2 or 3".into(),
                found: other.map_or("none".into(), |(_, v)| v.to_string()),
            });
        }
    };
    // Only the add_layer over the input may be version 3.
    if let Some(&(offset, version)) = versions.iter().find(|&&(_, v)| v == 3) {
        return Err(DlibError::Unexpected {
            offset,
            what: "layer version",
            expected: "1 (tag/skip) or 2 (add_layer)".into(),
            found: version.to_string(),
        });
    }
    let input = input(&mut r)?;

    let mut layers = vec![details(&mut r)?];
    layer_state(&mut r)?;
    if input_layer_version == 3 {
        // `_sample_expansion_factor`
        r.count("sample expansion factor", usize::MAX)?;
    }
    for &(_, version) in versions.iter().rev() {
        if version == 1 {
            layers.push(Layer::TagOrSkip);
        } else {
            layers.push(details(&mut r)?);
            layer_state(&mut r)?;
        }
    }
    if r.remaining() != 0 {
        return Err(DlibError::TrailingBytes {
            offset: r.offset(),
            count: r.remaining(),
        });
    }
    Ok(Network { loss, input, layers })
}

fn loss(r: &mut Reader) -> Result<Loss, DlibError> {
    let offset = r.offset();
    match r.string()?.as_str() {
        "loss_metric_2" => Ok(Loss::Metric {
            margin: r.float()?,
            distance_threshold: r.float()?,
        }),
        name => Err(DlibError::UnknownLayer {
            offset,
            name: name.into(),
        }),
    }
}

fn input(r: &mut Reader) -> Result<Input, DlibError> {
    let offset = r.offset();
    match r.string()?.as_str() {
        "input_rgb_image_sized" => Ok(Input {
            mean_rgb: [r.float()?, r.float()?, r.float()?],
            rows: r.count("input rows", usize::MAX)?,
            cols: r.count("input columns", usize::MAX)?,
        }),
        name => Err(DlibError::UnknownLayer {
            offset,
            name: name.into(),
        }),
    }
}

/// What `add_layer` writes after its details: three bools and three tensors (gradients and
/// cached outputs; empty in a cleaned network, read and dropped either way).
fn layer_state(r: &mut Reader) -> Result<(), DlibError> {
    for _ in 0..3 {
        r.bool()?;
    }
    for _ in 0..3 {
        r.tensor()?;
    }
    Ok(())
}

fn details(r: &mut Reader) -> Result<Layer, DlibError> {
    let offset = r.offset();
    let name = r.string()?;
    match name.as_str() {
        "con_4" | "con_5" | "con_6" => con(r, offset, &name),
        "affine_" => affine(r, offset),
        "relu_" => Ok(Layer::Relu),
        "add_prev_" => Ok(Layer::AddPrev),
        "avg_pool_2" => Ok(Layer::AvgPool(pool(r)?)),
        "max_pool_2" => Ok(Layer::MaxPool(pool(r)?)),
        "fc_2" => fc(r, offset),
        _ => Err(DlibError::UnknownLayer { offset, name }),
    }
}

/// The learning-rate and weight-decay multipliers: training-only, read and dropped.
fn multipliers(r: &mut Reader) -> Result<(), DlibError> {
    for _ in 0..4 {
        r.float()?;
    }
    Ok(())
}

/// Split a layer's params tensor into the parts its aliases describe (in order, from the
/// start), requiring that they cover it exactly.
fn split_params(
    layer: &'static str,
    offset: usize,
    params: Tensor,
    parts: &[[usize; 4]],
) -> Result<Vec<Vec<f32>>, DlibError> {
    let sizes: Vec<usize> = parts
        .iter()
        .map(|s| numel(s))
        .collect::<Option<_>>()
        .ok_or(DlibError::ParamSize {
            layer,
            offset,
            params: params.data.len(),
            needed: usize::MAX,
        })?;
    let needed = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
    if needed != Some(params.data.len()) {
        return Err(DlibError::ParamSize {
            layer,
            offset,
            params: params.data.len(),
            needed: needed.unwrap_or(usize::MAX),
        });
    }
    let mut rest = params.data.as_slice();
    Ok(sizes
        .iter()
        .map(|&n| {
            let (part, tail) = rest.split_at(n);
            rest = tail;
            part.to_vec()
        })
        .collect())
}

fn con(r: &mut Reader, offset: usize, name: &str) -> Result<Layer, DlibError> {
    let params = r.tensor()?;
    let num_filters = r.count("num_filters", usize::MAX)?;
    let nr = r.count("filter rows", usize::MAX)?;
    let nc = r.count("filter columns", usize::MAX)?;
    let stride = [r.count("stride", usize::MAX)?, r.count("stride", usize::MAX)?];
    let padding = [r.count("padding", usize::MAX)?, r.count("padding", usize::MAX)?];
    let filter_shape = r.alias()?;
    let bias_shape = r.alias()?;
    multipliers(r)?;
    let use_bias = if name == "con_4" { true } else { r.bool()? };
    if name == "con_6" && r.bool()? {
        // A fused ReLU would change what the layer computes; no model we read has one.
        return Err(DlibError::Unsupported {
            offset,
            what: "con_ with use_relu".into(),
        });
    }
    if filter_shape[0] != num_filters || filter_shape[2..] != [nr, nc] || bias_shape != [1, num_filters, 1, 1] {
        return Err(DlibError::Unexpected {
            offset,
            what: "con_ filter/bias alias shapes",
            expected: format!("[{num_filters}, _, {nr}, {nc}] and [1, {num_filters}, 1, 1]"),
            found: format!("{filter_shape:?} and {bias_shape:?}"),
        });
    }
    let shapes = [filter_shape, bias_shape];
    let shapes = if use_bias { &shapes[..] } else { &shapes[..1] };
    let mut parts = split_params("con_", offset, params, shapes)?.into_iter();
    Ok(Layer::Con(Con {
        filter_shape,
        stride,
        padding,
        filters: parts.next().unwrap_or_default(),
        bias: parts.next(),
    }))
}

fn affine(r: &mut Reader, offset: usize) -> Result<Layer, DlibError> {
    let params = r.tensor()?;
    let gamma_shape = r.alias()?;
    let beta_shape = r.alias()?;
    let mode_offset = r.offset();
    let conv_mode = match r.int()? {
        0 => true,
        1 => false,
        mode => {
            return Err(DlibError::Unexpected {
                offset: mode_offset,
                what: "affine_ mode",
                expected: "0 (conv) or 1 (fc)".into(),
                found: mode.to_string(),
            });
        }
    };
    if gamma_shape != beta_shape {
        return Err(DlibError::Unexpected {
            offset,
            what: "affine_ beta alias shape",
            expected: format!("{gamma_shape:?}"),
            found: format!("{beta_shape:?}"),
        });
    }
    let mut parts = split_params("affine_", offset, params, &[gamma_shape, beta_shape])?.into_iter();
    Ok(Layer::Affine(Affine {
        shape: gamma_shape,
        conv_mode,
        gamma: parts.next().unwrap_or_default(),
        beta: parts.next().unwrap_or_default(),
    }))
}

fn pool(r: &mut Reader) -> Result<Pool, DlibError> {
    let mut v = [0; 6];
    for x in &mut v {
        *x = r.count("pool geometry", usize::MAX)?;
    }
    Ok(Pool {
        window: [v[0], v[1]],
        stride: [v[2], v[3]],
        padding: [v[4], v[5]],
    })
}

fn fc(r: &mut Reader, offset: usize) -> Result<Layer, DlibError> {
    let num_outputs = r.count("fc outputs", usize::MAX)?;
    let num_inputs = r.count("fc inputs", usize::MAX)?;
    let params = r.tensor()?;
    let weights_shape = r.alias()?;
    let bias_shape = r.alias()?;
    let mode_offset = r.offset();
    // fc_bias_mode: FC_HAS_BIAS = 0, FC_NO_BIAS = 1.
    let has_bias = match r.int()? {
        0 => true,
        1 => false,
        mode => {
            return Err(DlibError::Unexpected {
                offset: mode_offset,
                what: "fc_ bias mode",
                expected: "0 or 1".into(),
                found: mode.to_string(),
            });
        }
    };
    multipliers(r)?;
    if weights_shape != [num_inputs, num_outputs, 1, 1] {
        return Err(DlibError::Unexpected {
            offset,
            what: "fc_ weights alias shape",
            expected: format!("[{num_inputs}, {num_outputs}, 1, 1]"),
            found: format!("{weights_shape:?}"),
        });
    }
    if has_bias && bias_shape != [1, num_outputs, 1, 1] {
        return Err(DlibError::Unexpected {
            offset,
            what: "fc_ bias alias shape",
            expected: format!("[1, {num_outputs}, 1, 1]"),
            found: format!("{bias_shape:?}"),
        });
    }
    let shapes = [weights_shape, bias_shape];
    let shapes = if has_bias { &shapes[..] } else { &shapes[..1] };
    let mut parts = split_params("fc_", offset, params, shapes)?.into_iter();
    Ok(Layer::Fc(Fc {
        num_inputs,
        num_outputs,
        weights: parts.next().unwrap_or_default(),
        bias: parts.next(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serial::tests::{alias, float, int, string, tensor};

    const EMPTY: [i64; 4] = [0, 0, 0, 0];

    /// Three bools and three empty tensors, as a cleaned network has after each layer.
    fn state() -> Vec<u8> {
        let mut out = b"110".to_vec();
        (0..3).for_each(|_| out.extend(tensor(EMPTY, &[])));
        out
    }

    fn multipliers() -> Vec<u8> {
        [float(1.0), float(1.0), float(1.0), float(0.0)].concat()
    }

    /// fc_no_bias<2, tag<relu<con<2,1,1,1,1, input_rgb_image_sized<4>>>>> under loss_metric.
    fn tiny_network() -> Vec<u8> {
        let mut b = [int(1), string("loss_metric_2"), float(0.04), float(0.6)].concat();
        for version in [2, 1, 2, 3] {
            b.extend(int(version));
        }
        b.extend(
            [
                string("input_rgb_image_sized"),
                float(122.782),
                float(117.001),
                float(104.298),
            ]
            .concat(),
        );
        b.extend([int(4), int(4)].concat());
        // con: 2 filters of 3×1×1 and 2 biases.
        b.extend(string("con_4"));
        b.extend(tensor([8, 1, 1, 1], &[1., 2., 3., 4., 5., 6., 0.5, -0.5]));
        for v in [2, 1, 1, 1, 1, 0, 0] {
            b.extend(int(v));
        }
        b.extend([alias([2, 3, 1, 1]), alias([1, 2, 1, 1]), multipliers(), state(), int(1)].concat());
        b.extend([string("relu_"), state()].concat());
        b.extend(string("fc_2"));
        b.extend([int(1), int(2)].concat());
        b.extend(tensor([2, 1, 1, 1], &[0.25, -0.75]));
        b.extend([alias([2, 1, 1, 1]), alias(EMPTY), int(1), multipliers(), state()].concat());
        b
    }

    #[test]
    fn parses_a_hand_built_network() {
        let net = parse(&tiny_network()).unwrap();
        assert_eq!(
            net.loss,
            Loss::Metric {
                margin: 0.04,
                distance_threshold: 0.6
            }
        );
        assert_eq!(net.input.mean_rgb, [122.782, 117.001, 104.298]);
        assert_eq!((net.input.rows, net.input.cols), (4, 4));
        assert_eq!(
            net.layers,
            [
                Layer::Con(Con {
                    filter_shape: [2, 3, 1, 1],
                    stride: [1, 1],
                    padding: [0, 0],
                    filters: vec![1., 2., 3., 4., 5., 6.],
                    bias: Some(vec![0.5, -0.5]),
                }),
                Layer::Relu,
                Layer::TagOrSkip,
                Layer::Fc(Fc {
                    num_inputs: 2,
                    num_outputs: 1,
                    weights: vec![0.25, -0.75],
                    bias: None,
                }),
            ]
        );
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = tiny_network();
        for cut in 0..bytes.len() {
            let err = parse(&bytes[..cut]).unwrap_err();
            assert!(matches!(err, DlibError::Truncated { .. }), "cut at {cut}: {err}");
        }
        let mut longer = bytes;
        longer.push(b'0');
        assert!(matches!(parse(&longer), Err(DlibError::TrailingBytes { count: 1, .. })));
    }

    #[test]
    fn unexpected_structure_is_a_typed_error() {
        let bytes = tiny_network();
        let replace = |from: &[u8], to: &[u8]| {
            let at = bytes.windows(from.len()).position(|w| w == from).unwrap();
            [&bytes[..at], to, &bytes[at + from.len()..]].concat()
        };
        assert!(matches!(
            parse(&replace(&string("relu_"), &string("relu6"))),
            Err(DlibError::UnknownLayer { name, .. }) if name == "relu6"
        ));
        assert!(matches!(
            parse(&replace(&string("loss_metric_2"), &string("loss_mmod_"))),
            Err(DlibError::UnknownLayer { .. })
        ));
        // The con's params hold 8 values; claim 3 filters of 3 (9 + 2 needed).
        assert!(matches!(
            parse(&replace(&alias([2, 3, 1, 1]), &alias([2, 4, 1, 1]))),
            Err(DlibError::ParamSize {
                params: 8,
                needed: 10,
                ..
            })
        ));
        assert!(matches!(
            parse(&replace(&alias([1, 2, 1, 1]), &alias([1, 3, 1, 1]))),
            Err(DlibError::Unexpected { .. })
        ));
        // Version 3 is only for the add_layer over the input.
        assert!(matches!(
            parse(&replace(&[1, 2, 1, 1, 1, 2, 1, 3], &[1, 3, 1, 1, 1, 2, 1, 3])),
            Err(DlibError::Unexpected {
                what: "layer version",
                ..
            })
        ));
        // A bool that is not '0'/'1'.
        assert!(matches!(
            parse(&replace(b"110", b"11x")),
            Err(DlibError::BadBool { byte: b'x', .. })
        ));
        // The innermost version must be an add_layer over the input.
        let mut tag_over_input = [int(1), string("loss_metric_2"), float(0.04), float(0.6), int(1)].concat();
        tag_over_input.extend(string("input_rgb_image_sized"));
        assert!(matches!(parse(&tag_over_input), Err(DlibError::Unexpected { .. })));
    }
}
