//! From ONNX bytes to steps: parse with onnx-ir, check every node, fold batch norms into the
//! convolutions before them, and put the weights on the device.

use std::collections::HashMap;

use burn::prelude::*;
use facegate_conv::{Activation, Conv2d, ConvGeometry};
use onnx_ir::node::pad::{ConstantValueInput, PadInput, PadMode as OnnxPadMode};
use onnx_ir::node::padding::{AutoPad, PaddingConfig2d as OnnxPadding};
use onnx_ir::node::reduce::ReduceAxes;
use onnx_ir::{ArgType, Argument, Message, ModelProto, Node, OnnxGraphBuilder, TensorDataExt};

use crate::run::{Op, Operand, Pads, PoolKind, Reduce, Step, Value};
use crate::{Dense, InputSpec, OnnxError, OnnxNet};

/// The ONNX operators we run (onnx-ir's names; it turns Gemm and MatMul with a constant
/// weight into Linear, and splits Conv/pools by rank).
pub const SUPPORTED_OPS: &[&str] = &[
    "Conv (2-D, groups, pads, strides, dilations, auto_pad)",
    "BatchNormalization",
    "PRelu",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Clip",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "MatMul",
    "Gemm",
    "Flatten",
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "AveragePool (2-D)",
    "MaxPool (2-D)",
    "Concat",
    "Pad",
    "Softmax",
    "ReduceL2",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "Constant",
    "Shape",
    "Gather",
    "Identity",
    "Dropout",
    "Cast",
];

pub(crate) fn load(bytes: &[u8], device: &Device) -> Result<OnnxNet, OnnxError> {
    let (bytes, batch_freed, names) = free_batch(bytes)?;
    // onnx-ir is a third-party parser fed with files from outside: a panic in it is a parse
    // error for this file, not the end of the process.
    let graph = std::panic::catch_unwind(|| OnnxGraphBuilder::new().parse_bytes(&bytes))
        .map_err(|_| OnnxError::Parse("the ONNX parser failed on this file".into()))?
        .map_err(|e| OnnxError::Parse(e.to_string()))?;
    let inputs: Vec<&Argument> = graph.inputs.iter().filter(|a| a.value().is_none()).collect();
    if inputs.len() != 1 || graph.outputs.is_empty() {
        return Err(OnnxError::Interface {
            inputs: inputs.len(),
            outputs: graph.outputs.len(),
        });
    }
    let input_arg = inputs[0];
    let input = match &input_arg.ty {
        ArgType::Tensor(t) if t.dtype.is_float() && (1..=Dense::MAX_RANK).contains(&t.rank) => InputSpec {
            name: names.input.clone(),
            dims: t.static_shape.clone().unwrap_or_else(|| vec![None; t.rank]),
        },
        other => {
            return Err(OnnxError::Node {
                node: input_arg.name.clone(),
                what: format!("the input must be a float tensor of rank 1 to 4, not {other:?}"),
            });
        }
    };

    let mut b = Builder {
        device: device.clone(),
        slots: HashMap::new(),
        next: 0,
        steps: Vec::new(),
        constants: Vec::new(),
        batch_freed,
    };
    let input_slot = b.slot(&input_arg.name);

    // Batch norms that can be folded into the convolution before them: the conv's output
    // feeds nothing else and is not a graph output.
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for node in &graph.nodes {
        for a in node.inputs() {
            *consumers.entry(a.name.as_str()).or_default() += 1;
        }
    }
    for a in &graph.outputs {
        *consumers.entry(a.name.as_str()).or_default() += 1;
    }
    let producers: HashMap<&str, &Node> = graph
        .nodes
        .iter()
        .flat_map(|n| n.outputs().iter().map(move |o| (o.name.as_str(), n)))
        .collect();
    let mut folded: HashMap<String, &onnx_ir::node::batch_norm::BatchNormalizationNode> = HashMap::new();
    for node in &graph.nodes {
        if let Node::BatchNormalization(bn) = node {
            let x = &bn.inputs[0].name;
            if let Some(Node::Conv2d(conv)) = producers.get(x.as_str())
                && consumers.get(x.as_str()) == Some(&1)
                && bn.inputs[1..5].iter().all(|a| a.value().is_some())
            {
                folded.insert(conv.name.clone(), bn);
            }
        }
    }
    // A Relu or PRelu (one constant slope per channel, or one for all) right after a
    // convolution, or after the batch norm folded into one, runs inside it (facegate-conv).
    let mut fused: HashMap<String, &Node> = HashMap::new();
    for node in &graph.nodes {
        let x = match node {
            Node::Relu(n) => &n.inputs[0],
            Node::PRelu(n) if n.inputs.get(1).is_some_and(|s| s.value().is_some()) => &n.inputs[0],
            _ => continue,
        };
        if consumers.get(x.name.as_str()) != Some(&1) {
            continue;
        }
        let conv = match producers.get(x.name.as_str()) {
            Some(Node::Conv2d(conv)) => Some(conv.name.clone()),
            Some(Node::BatchNormalization(bn)) => folded
                .iter()
                .find(|(_, f)| f.name == bn.name)
                .map(|(conv, _)| conv.clone()),
            _ => None,
        };
        if let Some(conv) = conv {
            fused.insert(conv, node);
        }
    }
    let skipped: Vec<&str> = folded
        .values()
        .map(|bn| bn.name.as_str())
        .chain(fused.values().map(|n| n.name()))
        .collect();

    for node in &graph.nodes {
        if skipped.contains(&node.name()) {
            continue;
        }
        b.node(node, folded.get(node.name()).copied(), fused.get(node.name()).copied())?;
    }
    // onnx-ir renames arguments; outputs keep the file's names, by position.
    let outputs = graph
        .outputs
        .iter()
        .zip(names.outputs.iter().map(String::as_str).chain(std::iter::repeat("")))
        .map(|(o, original)| {
            let name = if original.is_empty() {
                o.name.clone()
            } else {
                original.to_string()
            };
            b.slots.get(&o.name).map(|&s| (name, s)).ok_or_else(|| OnnxError::Node {
                node: o.name.clone(),
                what: "graph output is produced by no node".into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    // Free each slot after the last step that reads it.
    let mut last_use = vec![None; b.next];
    for (i, step) in b.steps.iter().enumerate() {
        for op in &step.inputs {
            if let Operand::Slot(s) = op {
                last_use[*s] = Some(i);
            }
        }
    }
    let mut free_after = vec![Vec::new(); b.steps.len()];
    for (slot, last) in last_use.iter().enumerate() {
        if let Some(i) = last
            && !outputs.iter().any(|&(_, o)| o == slot)
        {
            free_after[*i].push(slot);
        }
    }
    // A slot read for the last time by exactly one operand of that step is moved into it.
    for (step, freed) in b.steps.iter_mut().zip(&free_after) {
        for &slot in freed {
            let mut reads = step
                .inputs
                .iter_mut()
                .filter(|o| matches!(o, Operand::Slot(t) if *t == slot));
            if let (Some(only), None) = (reads.next(), reads.next()) {
                *only = Operand::Take(slot);
            }
        }
    }
    Ok(OnnxNet {
        steps: b.steps,
        constants: b.constants,
        input,
        input_slot,
        outputs,
        slots: b.next,
        free_after,
        folded_batch_norms: folded.len(),
        fused_activations: fused.len(),
        device: device.clone(),
    })
}

/// Exporters often fix the batch at 1 (`[1, 3, 112, 112]`). Declare it free before onnx-ir
/// infers shapes, so nothing downstream is folded for batch 1; intermediate shapes recorded
/// by the exporter are dropped for the same reason. Returns the bytes, whether it did, and the
/// file's own input and output names.
fn free_batch(bytes: &[u8]) -> Result<(Vec<u8>, bool, Names), OnnxError> {
    let mut model = ModelProto::parse_from_bytes(bytes).map_err(|e| OnnxError::Parse(e.to_string()))?;
    let Some(graph) = model.graph.as_mut() else {
        return Err(OnnxError::Parse("the file has no graph".into()));
    };
    let initializers: Vec<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    let names = Names {
        input: graph
            .input
            .iter()
            .map(|vi| vi.name.clone())
            .find(|n| !initializers.contains(n))
            .unwrap_or_default(),
        outputs: graph.output.iter().map(|vi| vi.name.clone()).collect(),
    };
    let mut freed = false;
    for vi in graph.input.iter_mut().filter(|vi| !initializers.contains(&vi.name)) {
        let Some(ty) = vi.type_.as_mut() else { continue };
        if !ty.has_tensor_type() {
            continue;
        }
        if let Some(shape) = ty.mut_tensor_type().shape.as_mut()
            && let Some(d) = shape.dim.first_mut()
            && d.has_dim_value()
            && d.dim_value() == 1
        {
            d.set_dim_param("N".into());
            freed = true;
        }
    }
    if freed {
        graph.value_info.clear();
        for vi in graph.output.iter_mut() {
            if let Some(ty) = vi.type_.as_mut()
                && ty.has_tensor_type()
                && let Some(shape) = ty.mut_tensor_type().shape.as_mut()
                && let Some(d) = shape.dim.first_mut()
            {
                d.set_dim_param("N".into());
            }
        }
    }
    let bytes = model.write_to_bytes().map_err(|e| OnnxError::Parse(e.to_string()))?;
    Ok((bytes, freed, names))
}

/// The names the file gives its input and outputs.
struct Names {
    input: String,
    outputs: Vec<String>,
}

struct Builder {
    device: Device,
    slots: HashMap<String, usize>,
    next: usize,
    steps: Vec<Step>,
    constants: Vec<(usize, Value)>,
    batch_freed: bool,
}

fn err(node: &str, what: impl Into<String>) -> OnnxError {
    OnnxError::Node {
        node: node.to_string(),
        what: what.into(),
    }
}

/// The rank of a tensor argument, refused above what we store.
fn rank_of(node: &str, a: &Argument) -> Result<usize, OnnxError> {
    let rank = a.ty.rank();
    if rank > Dense::MAX_RANK {
        return Err(err(
            node,
            format!("`{}` has rank {rank}; at most 4 is supported", a.name),
        ));
    }
    Ok(rank)
}

fn floats(node: &str, a: &Argument) -> Result<(Vec<f32>, Vec<usize>), OnnxError> {
    let data = a
        .value()
        .ok_or_else(|| err(node, format!("`{}` must be a constant (a weight)", a.name)))?;
    let shape = data.shape().to_vec();
    let values = data
        .to_f32_vec()
        .map_err(|e| err(node, format!("`{}`: {e:?}", a.name)))?;
    Ok((values, shape))
}

fn ints(node: &str, a: &Argument) -> Result<Vec<i64>, OnnxError> {
    a.value()
        .ok_or_else(|| err(node, format!("`{}` must be a constant", a.name)))?
        .to_i64_vec()
        .map_err(|e| err(node, format!("`{}`: {e:?}", a.name)))
}

fn pads_2d(p: &OnnxPadding, auto: &AutoPad) -> Pads {
    match auto {
        AutoPad::SameUpper => Pads::Same { upper: true },
        AutoPad::SameLower => Pads::Same { upper: false },
        AutoPad::Valid => Pads::Explicit([(0, 0), (0, 0)]),
        AutoPad::NotSet => match *p {
            OnnxPadding::Valid => Pads::Explicit([(0, 0), (0, 0)]),
            OnnxPadding::Explicit(top, left, bottom, right) => Pads::Explicit([(top, bottom), (left, right)]),
        },
    }
}

impl Builder {
    fn slot(&mut self, name: &str) -> usize {
        if let Some(&s) = self.slots.get(name) {
            return s;
        }
        self.next += 1;
        self.slots.insert(name.to_string(), self.next - 1);
        self.next - 1
    }

    /// An input as a step reads it: a slot some earlier step (or the graph input) fills, or a
    /// constant prepared now.
    fn operand(&mut self, node: &str, a: &Argument) -> Result<Operand, OnnxError> {
        if let Some(data) = a.value() {
            let shape = data.shape().to_vec();
            if shape.len() > Dense::MAX_RANK {
                return Err(err(node, format!("constant `{}` has rank {}", a.name, shape.len())));
            }
            let value = if data.dtype().is_float() {
                let v = data.to_f32_vec().map_err(|e| err(node, format!("{e:?}")))?;
                Value::Dense(Dense::from_vec(v, shape, &self.device))
            } else {
                let v = data.to_i64_vec().map_err(|e| err(node, format!("{e:?}")))?;
                Value::Ints {
                    scalar: shape.is_empty(),
                    values: v,
                }
            };
            return Ok(Operand::Const(value));
        }
        rank_of(node, a)?;
        match self.slots.get(&a.name) {
            Some(&s) => Ok(Operand::Slot(s)),
            None => Err(err(node, format!("input `{}` is produced by no earlier node", a.name))),
        }
    }

    fn push(&mut self, node: &Node, op: Op, inputs: &[&Argument]) -> Result<(), OnnxError> {
        let name = node.name().to_string();
        let inputs = inputs
            .iter()
            .map(|a| self.operand(&name, a))
            .collect::<Result<Vec<_>, _>>()?;
        let out = node
            .outputs()
            .first()
            .ok_or_else(|| err(&name, "the node has no output"))?;
        rank_of(&name, out)?;
        let output = self.slot(&out.name.clone());
        self.steps.push(Step {
            name,
            op,
            inputs,
            output,
        });
        Ok(())
    }

    fn node(
        &mut self,
        node: &Node,
        bn: Option<&onnx_ir::node::batch_norm::BatchNormalizationNode>,
        activation: Option<&Node>,
    ) -> Result<(), OnnxError> {
        let name = node.name();
        let ins: Vec<&Argument> = node.inputs().iter().collect();
        let first = || ins.first().copied().ok_or_else(|| err(name, "the node has no input"));
        let rank = |a: &Argument| rank_of(name, a);
        match node {
            Node::Conv2d(c) => {
                let (mut w, shape) = floats(name, ins[1])?;
                let cout = shape[0];
                let mut bias = match ins.get(2) {
                    Some(a) if a.value().is_some() => floats(name, a)?.0,
                    _ => vec![0.0; cout],
                };
                let mut out_arg = node.outputs()[0].clone();
                if let Some(bn) = bn {
                    // y = (conv(x) + b − mean) · γ/√(var+ε) + β, so scale the filters and the bias.
                    let (gamma, mean, var, beta) = bn_params(bn)?;
                    let per_out = w.len() / cout;
                    for o in 0..cout {
                        let s = gamma[o] as f64 / (var[o] as f64 + bn_epsilon(bn)).sqrt();
                        for k in &mut w[o * per_out..(o + 1) * per_out] {
                            *k = (*k as f64 * s) as f32;
                        }
                        bias[o] = ((bias[o] as f64 - mean[o] as f64) * s + beta[o] as f64) as f32;
                    }
                    out_arg = bn.outputs[0].clone();
                }
                let fused = match activation {
                    Some(Node::Relu(n)) => {
                        out_arg = n.outputs[0].clone();
                        Activation::Relu
                    }
                    Some(Node::PRelu(n)) => {
                        let (slope, _) = floats(n.name.as_str(), &n.inputs[1])?;
                        out_arg = n.outputs[0].clone();
                        match slope.len() {
                            1 => Activation::PRelu(vec![slope[0]; cout]),
                            l if l == cout => Activation::PRelu(slope),
                            l => return Err(err(&n.name, format!("{l} slopes for {cout} channels"))),
                        }
                    }
                    _ => Activation::Identity,
                };
                let pads = pads_2d(&c.config.padding, &c.config.auto_pad);
                let geometry = ConvGeometry {
                    out_channels: cout,
                    in_channels: shape[1] * c.config.groups,
                    kernel: [shape[2], shape[3]],
                    stride: c.config.stride,
                    dilation: c.config.dilation,
                    // SAME pads depend on the input and are given per run.
                    padding: match pads {
                        Pads::Explicit(p) => p,
                        Pads::Same { .. } => [(0, 0); 2],
                    },
                    groups: c.config.groups,
                };
                let conv =
                    Conv2d::new(geometry, w, Some(bias), fused, &self.device).map_err(|e| err(name, e.to_string()))?;
                let op = Op::Conv { conv, pads };
                let input = self.operand(name, ins[0])?;
                let output = self.slot(&out_arg.name);
                self.steps.push(Step {
                    name: name.to_string(),
                    op,
                    inputs: vec![input],
                    output,
                });
                Ok(())
            }
            Node::BatchNormalization(bn) => {
                let x = first()?;
                let r = rank(x)?;
                if r < 2 {
                    return Err(err(name, "BatchNormalization needs a channel axis"));
                }
                let (gamma, mean, var, beta) = bn_params(bn)?;
                let eps = bn_epsilon(bn);
                let scale: Vec<f32> = (0..gamma.len())
                    .map(|c| (gamma[c] as f64 / (var[c] as f64 + eps).sqrt()) as f32)
                    .collect();
                let shift: Vec<f32> = (0..gamma.len())
                    .map(|c| (beta[c] as f64 - mean[c] as f64 * scale[c] as f64) as f32)
                    .collect();
                // Channels on axis 1: [C, 1, …] broadcasts against [N, C, …].
                let mut dims = vec![1; r - 1];
                dims[0] = gamma.len();
                let op = Op::ChannelAffine {
                    scale: Dense::from_vec(scale, dims.clone(), &self.device),
                    shift: Dense::from_vec(shift, dims, &self.device),
                };
                self.push(node, op, &[x])
            }
            Node::PRelu(_) => self.push(node, Op::PRelu, &[ins[0], ins[1]]),
            Node::Relu(_) => self.push(node, Op::Relu, &[first()?]),
            Node::Sigmoid(_) => self.push(node, Op::Sigmoid, &[first()?]),
            Node::Tanh(_) => self.push(node, Op::Tanh, &[first()?]),
            Node::LeakyRelu(n) => self.push(node, Op::LeakyRelu(n.config.alpha), &[first()?]),
            Node::Clip(n) => {
                let bound = |b: &Option<onnx_ir::node::clip::ClipInput>| -> Result<Option<f32>, OnnxError> {
                    match b {
                        None => Ok(None),
                        Some(onnx_ir::node::clip::ClipInput::Static(v)) => Ok(Some(*v as f32)),
                        Some(onnx_ir::node::clip::ClipInput::Runtime(r)) => match ins.get(r.input_index) {
                            Some(a) if a.value().is_some() => Ok(floats(name, a)?.0.first().copied()),
                            _ => Err(err(name, "Clip bounds computed at run time are not supported")),
                        },
                    }
                };
                let (min, max) = (bound(&n.config.min)?, bound(&n.config.max)?);
                self.push(node, Op::Clip { min, max }, &[first()?])
            }
            Node::Add(_) => self.push(node, Op::Add, &[ins[0], ins[1]]),
            Node::Sub(_) => self.push(node, Op::Sub, &[ins[0], ins[1]]),
            Node::Mul(_) => self.push(node, Op::Mul, &[ins[0], ins[1]]),
            Node::Div(_) => self.push(node, Op::Div, &[ins[0], ins[1]]),
            Node::MatMul(_) => {
                for a in &ins[..2] {
                    if rank(a)? < 2 {
                        return Err(err(name, "MatMul of a vector is not supported"));
                    }
                }
                self.push(node, Op::MatMul, &[ins[0], ins[1]])
            }
            Node::Linear(n) => {
                let (w, shape) = floats(name, ins[1])?;
                if shape.len() != 2 {
                    return Err(err(name, format!("Linear weight of shape {shape:?}")));
                }
                // Stored as [K, M] for x · W.
                let m = if n.config.transpose_weight { shape[0] } else { shape[1] };
                let mut weight: Tensor<2> = Tensor::from_data(TensorData::new(w, [shape[0], shape[1]]), &self.device);
                if n.config.transpose_weight {
                    weight = weight.transpose();
                }
                let bias = match ins.get(2) {
                    Some(a) if a.value().is_some() => {
                        let (b, _) = floats(name, a)?;
                        Some(Tensor::from_data(TensorData::new(b, [1, m]), &self.device))
                    }
                    Some(a) if !a.is_optional() => return Err(err(name, "a Linear bias computed at run time")),
                    _ => None,
                };
                self.push(node, Op::Linear { weight, bias }, &[ins[0]])
            }
            Node::Gemm(n) => {
                let c = &n.config;
                let mut operands = vec![ins[0], ins[1]];
                if let Some(cin) = ins.get(2).filter(|a| !a.is_optional()) {
                    operands.push(cin);
                }
                let op = Op::Gemm {
                    alpha: c.alpha,
                    beta: c.beta,
                    trans_a: c.trans_a != 0,
                    trans_b: c.trans_b != 0,
                };
                self.push(node, op, &operands)
            }
            Node::Flatten(n) => self.push(node, Op::Flatten(n.config.axis), &[first()?]),
            Node::Reshape(n) => {
                use onnx_ir::node::reshape::ReshapeInput;
                let x = first()?;
                // Batch 1 baked into the target by an exporter follows the input's free batch.
                let batch_first = self.batch_freed
                    && matches!(&x.ty, ArgType::Tensor(t) if t.static_shape.as_ref().is_some_and(|s| s.first() == Some(&None)));
                match &n.config.shape {
                    ReshapeInput::Static(target) => {
                        let mut target = target.clone();
                        if batch_first && target.first() == Some(&1) {
                            target[0] = 0;
                        }
                        self.push(node, Op::Reshape(Some(target)), &[x])
                    }
                    ReshapeInput::Runtime(r) => {
                        let shape = ins
                            .get(r.input_index)
                            .ok_or_else(|| err(name, "Reshape without a shape input"))?;
                        if !matches!(shape.ty, ArgType::Shape(_) | ArgType::ScalarNative(_)) && shape.value().is_none()
                        {
                            return Err(err(name, "a Reshape target computed from tensor data is not supported"));
                        }
                        self.push(node, Op::Reshape(None), &[x, shape])
                    }
                }
            }
            Node::Transpose(n) => {
                let perm = n.config.perm.iter().map(|&p| p as usize).collect();
                self.push(node, Op::Transpose(perm), &[first()?])
            }
            Node::Squeeze(n) => {
                use onnx_ir::node::squeeze::SqueezeInput;
                let axes = match &n.config.axes {
                    None => None,
                    Some(SqueezeInput::Static(a)) => Some(a.clone()),
                    Some(SqueezeInput::Runtime(r)) => Some(ints(name, ins[r.input_index])?),
                };
                self.push(node, Op::Squeeze(axes), &[first()?])
            }
            Node::Unsqueeze(n) => {
                use onnx_ir::node::unsqueeze::UnsqueezeConfig;
                let axes = match &n.config {
                    UnsqueezeConfig::Static(a) => a.clone(),
                    UnsqueezeConfig::Runtime(r) => ints(name, ins[r.input_index])?,
                };
                self.push(node, Op::Unsqueeze(axes), &[first()?])
            }
            Node::GlobalAveragePool(_) => self.push(node, Op::GlobalPool(PoolKind::Average), &[first()?]),
            Node::GlobalMaxPool(_) => self.push(node, Op::GlobalPool(PoolKind::Max), &[first()?]),
            Node::AveragePool2d(n) => {
                let c = &n.config;
                if c.dilation != [1, 1] {
                    return Err(err(name, "AveragePool with dilations is not supported"));
                }
                let op = Op::Pool {
                    kind: PoolKind::Average,
                    kernel: c.kernel_size,
                    stride: c.strides,
                    dilation: c.dilation,
                    pads: pads_2d(&c.padding, &c.auto_pad),
                    ceil_mode: c.ceil_mode,
                    count_include_pad: c.count_include_pad,
                };
                self.push(node, op, &[first()?])
            }
            Node::MaxPool2d(n) => {
                let c = &n.config;
                let op = Op::Pool {
                    kind: PoolKind::Max,
                    kernel: c.kernel_size,
                    stride: c.strides,
                    dilation: c.dilation,
                    pads: pads_2d(&c.padding, &c.auto_pad),
                    ceil_mode: c.ceil_mode,
                    count_include_pad: false,
                };
                self.push(node, op, &[first()?])
            }
            Node::Concat(n) => self.push(node, Op::Concat(n.config.axis), &ins),
            Node::Pad(n) => {
                let c = &n.config;
                let pads = match &c.pads {
                    PadInput::Static(p) => p.clone(),
                    PadInput::Runtime { .. } => {
                        return Err(err(name, "Pad amounts computed at run time are not supported"));
                    }
                };
                let value = match &c.constant_value {
                    ConstantValueInput::Static(v) => *v,
                    ConstantValueInput::Runtime(_) => {
                        return Err(err(name, "a Pad value computed at run time is not supported"));
                    }
                };
                let mode = match c.mode {
                    OnnxPadMode::Constant => burn::tensor::ops::PadMode::Constant(value),
                    OnnxPadMode::Reflect => burn::tensor::ops::PadMode::Reflect,
                    OnnxPadMode::Edge => burn::tensor::ops::PadMode::Edge,
                };
                self.push(node, Op::Pad { pads, mode }, &[first()?])
            }
            Node::Softmax(n) => self.push(node, Op::Softmax(n.config.axis), &[first()?]),
            Node::ReduceL2(n) => self.reduce(node, Reduce::L2, &n.config, &ins),
            Node::ReduceMean(n) => self.reduce(node, Reduce::Mean, &n.config, &ins),
            Node::ReduceSum(n) => self.reduce(node, Reduce::Sum, &n.config, &ins),
            Node::ReduceMax(n) => self.reduce(node, Reduce::Max, &n.config, &ins),
            Node::Shape(n) => self.push(node, Op::Shape(n.config.start, n.config.end), &[first()?]),
            Node::Gather(n) => self.push(node, Op::Gather(n.config.axis), &[ins[0], ins[1]]),
            Node::Identity(_) | Node::Dropout(_) | Node::Cast(_) => {
                let x = first()?;
                if let Node::Cast(_) = node {
                    let from_float = x.ty.elem_type().is_float();
                    let to_float = node.outputs()[0].ty.elem_type().is_float();
                    if from_float != to_float {
                        return Err(err(name, "Cast between floats and integers is not supported"));
                    }
                }
                self.push(node, Op::Identity, &[x])
            }
            Node::Constant(_) => {
                // Usually lifted into its consumers by onnx-ir; otherwise its value fills a slot.
                let out = &node.outputs()[0];
                let value = match self.operand(name, out)? {
                    Operand::Const(v) => v,
                    Operand::Slot(_) | Operand::Take(_) => return Err(err(name, "a Constant without a value")),
                };
                let slot = self.slot(&out.name);
                self.constants.push((slot, value));
                Ok(())
            }
            other => Err(OnnxError::Unsupported {
                node: name.to_string(),
                op: other.node_type().to_string(),
            }),
        }
    }

    fn reduce(
        &mut self,
        node: &Node,
        kind: Reduce,
        c: &onnx_ir::node::reduce::ReduceConfig,
        ins: &[&Argument],
    ) -> Result<(), OnnxError> {
        let name = node.name();
        let axes = match &c.axes {
            ReduceAxes::Static(a) => a.clone(),
            ReduceAxes::Runtime(r) => {
                let a = ins.get(r.input_index).ok_or_else(|| err(name, "no axes input"))?;
                let rank = rank_of(name, ins[0])? as i64;
                ints(name, a)?
                    .into_iter()
                    .map(|x| if x < 0 { (x + rank) as usize } else { x as usize })
                    .collect()
            }
        };
        if axes.is_empty() && c.noop_with_empty_axes {
            return self.push(node, Op::Identity, &[ins[0]]);
        }
        let op = Op::Reduce {
            kind,
            axes,
            keepdims: c.keepdims,
        };
        self.push(node, op, &[ins[0]])
    }
}

fn bn_epsilon(bn: &onnx_ir::node::batch_norm::BatchNormalizationNode) -> f64 {
    use onnx_ir::node::batch_norm::BatchNormConfig;
    match &bn.config {
        BatchNormConfig::Static(c) => c.epsilon,
        BatchNormConfig::Runtime(c) => c.epsilon,
    }
}

/// γ, mean, variance, β of an inference batch norm (all constants).
#[allow(clippy::type_complexity)]
fn bn_params(
    bn: &onnx_ir::node::batch_norm::BatchNormalizationNode,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>), OnnxError> {
    let get = |i: usize| floats(&bn.name, &bn.inputs[i]).map(|(v, _)| v);
    // ONNX order: X, scale (γ), B (β), input_mean, input_var.
    Ok((get(1)?, get(3)?, get(4)?, get(2)?))
}
