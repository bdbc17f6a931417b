//! Running the prepared steps: each op in ONNX's terms (its shape rules, its axes) on the
//! rank-4 storage of [`Dense`].

use burn::prelude::*;
use burn::tensor::activation::{leaky_relu, relu, sigmoid, softmax};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use facegate_conv::Conv2d;

use crate::{Dense, OnnxError, OnnxNet, phys_axis, physical};

/// A value between steps: a tensor on the device, or integers on the host (shapes and the
/// arithmetic on them, indices).
// A burn tensor handle is some hundred bytes; a net holds a few dozen values, so boxing them
// would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Dense(Dense),
    Ints { values: Vec<i64>, scalar: bool },
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Operand {
    Slot(usize),
    /// A slot this step reads for the last time, and once: its value is moved, not shared, so
    /// an op that owns its input's buffer works in it (our convolution reads the buffer in
    /// place; a shared one would be copied first). Marked at load.
    Take(usize),
    Const(Value),
}

#[derive(Debug)]
pub(crate) struct Step {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<Operand>,
    pub output: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Pads {
    /// (begin, end) for height, then width.
    Explicit([(usize, usize); 2]),
    /// `auto_pad` SAME_UPPER / SAME_LOWER: from the input size at run time.
    Same { upper: bool },
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum PoolKind {
    Average,
    Max,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Reduce {
    L2,
    Mean,
    Sum,
    Max,
}

// One step per node, built once at load: the size of the largest op (a convolution's layer)
// costs nothing per run.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Op {
    /// A convolution, with the batch norm and the Relu or PRelu after it when they fold in.
    Conv {
        conv: Conv2d,
        pads: Pads,
    },
    /// An unfolded batch norm: x · scale + shift per channel.
    ChannelAffine {
        scale: Dense,
        shift: Dense,
    },
    PRelu,
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f64),
    Clip {
        min: Option<f32>,
        max: Option<f32>,
    },
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
    /// x · W (+ b), W stored `[K, M]`.
    Linear {
        weight: Tensor<2>,
        bias: Option<Tensor<2>>,
    },
    Gemm {
        alpha: f32,
        beta: f32,
        trans_a: bool,
        trans_b: bool,
    },
    Flatten(usize),
    /// A static target (0 copies, −1 infers), or `None`: the target is input 1.
    Reshape(Option<Vec<i64>>),
    Transpose(Vec<usize>),
    Squeeze(Option<Vec<i64>>),
    Unsqueeze(Vec<i64>),
    GlobalPool(PoolKind),
    Pool {
        kind: PoolKind,
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
        pads: Pads,
        ceil_mode: bool,
        count_include_pad: bool,
    },
    Concat(usize),
    Pad {
        pads: Vec<(usize, usize)>,
        mode: PadMode,
    },
    Softmax(usize),
    Reduce {
        kind: Reduce,
        axes: Vec<usize>,
        keepdims: bool,
    },
    Shape(usize, usize),
    Gather(usize),
    Identity,
}

pub(crate) fn run(net: &OnnxNet, input: Dense) -> Result<Vec<Dense>, OnnxError> {
    let mut env: Vec<Option<Value>> = vec![None; net.slots];
    for (slot, value) in &net.constants {
        env[*slot] = Some(value.clone());
    }
    env[net.input_slot] = Some(Value::Dense(input));
    for (i, step) in net.steps.iter().enumerate() {
        let args = step
            .inputs
            .iter()
            .map(|o| match o {
                Operand::Const(v) => Ok(v.clone()),
                Operand::Slot(s) => env[*s].clone().ok_or_else(|| not_computed(step)),
                Operand::Take(s) => env[*s].take().ok_or_else(|| not_computed(step)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out = eval(&step.op, args, &net.device).map_err(|what| OnnxError::Node {
            node: step.name.clone(),
            what,
        })?;
        env[step.output] = Some(out);
        for &s in &net.free_after[i] {
            env[s] = None;
        }
    }
    net.outputs
        .iter()
        .map(|(name, slot)| match env[*slot].take() {
            Some(Value::Dense(d)) => Ok(d),
            _ => Err(OnnxError::Node {
                node: name.clone(),
                what: "the output is not a float tensor".into(),
            }),
        })
        .collect()
}

fn not_computed(step: &Step) -> OnnxError {
    OnnxError::Node {
        node: step.name.clone(),
        what: "an input was not computed".into(),
    }
}

fn dense(v: Value) -> Result<Dense, String> {
    match v {
        Value::Dense(d) => Ok(d),
        Value::Ints { values, .. } => Err(format!("expected a float tensor, got integers {values:?}")),
    }
}

/// numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let x = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (x, y) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => Err(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

/// `(begin, end)` pads for one spatial axis under SAME_UPPER/LOWER.
fn same_pads(size: usize, kernel: usize, stride: usize, dilation: usize, upper: bool) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let total = ((out - 1) * stride + (kernel - 1) * dilation + 1).saturating_sub(size);
    if upper {
        (total / 2, total - total / 2)
    } else {
        (total - total / 2, total / 2)
    }
}

fn resolve_pads(
    pads: Pads,
    dims: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
) -> [(usize, usize); 2] {
    match pads {
        Pads::Explicit(p) => p,
        Pads::Same { upper } => [
            same_pads(dims[2], kernel[0], stride[0], dilation[0], upper),
            same_pads(dims[3], kernel[1], stride[1], dilation[1], upper),
        ],
    }
}

fn spatial(d: &Dense) -> Result<(), String> {
    if d.rank() == 4 {
        Ok(())
    } else {
        Err(format!("needs an NCHW tensor, got shape {:?}", d.dims))
    }
}

/// An NCHW tensor (checked by [`spatial`]) as burn's rank-4 tensor, for convolutions and pools.
fn nchw(x: Dense) -> Tensor<4> {
    let [n, c, h, w] = [x.dims[0], x.dims[1], x.dims[2], x.dims[3]];
    x.tensor.reshape([n, c, h, w])
}

fn from_nchw(y: Tensor<4>) -> Value {
    let dims = y.dims().to_vec();
    with_dims(y.reshape(physical(&dims)), dims)
}

fn with_dims(t: Tensor<5>, dims: Vec<usize>) -> Value {
    let t = t.reshape(physical(&dims));
    Value::Dense(Dense::new(t, dims))
}

fn ints_binary(op: &Op, a: &[i64], b: &[i64]) -> Result<Vec<i64>, String> {
    let n = a.len().max(b.len());
    let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    if !(a.len() == n || a.len() == 1) || !(b.len() == n || b.len() == 1) {
        return Err(format!("integer shapes {} and {} do not broadcast", a.len(), b.len()));
    }
    (0..n)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            match op {
                Op::Add => Ok(x + y),
                Op::Sub => Ok(x - y),
                Op::Mul => Ok(x * y),
                Op::Div if y != 0 => Ok(x.div_euclid(y)),
                _ => Err("integer division by zero".to_string()),
            }
        })
        .collect()
}

fn eval(op: &Op, mut args: Vec<Value>, device: &Device) -> Result<Value, String> {
    let arg = |args: &mut Vec<Value>, i: usize| -> Result<Dense, String> {
        dense(std::mem::replace(
            &mut args[i],
            Value::Ints {
                values: vec![],
                scalar: true,
            },
        ))
    };
    Ok(match op {
        Op::Conv { conv, pads } => {
            let x = arg(&mut args, 0)?;
            spatial(&x)?;
            let g = conv.geometry();
            if x.dims[1] != g.in_channels {
                return Err(format!(
                    "{} input channels, the kernel takes {}",
                    x.dims[1], g.in_channels
                ));
            }
            let padding = resolve_pads(*pads, &x.dims, g.kernel, g.stride, g.dilation);
            let geometry = facegate_conv::ConvGeometry { padding, ..*g };
            if geometry.output_size(x.dims[2], x.dims[3]).is_none() {
                return Err(format!(
                    "a {}×{} input is smaller than the kernel",
                    x.dims[2], x.dims[3]
                ));
            }
            from_nchw(conv.forward_padded(nchw(x), padding))
        }
        Op::ChannelAffine { scale, shift } => {
            let x = arg(&mut args, 0)?;
            Value::Dense(Dense::new(
                x.tensor * scale.tensor.clone() + shift.tensor.clone(),
                x.dims,
            ))
        }
        Op::PRelu => {
            let x = arg(&mut args, 0)?;
            let slope = arg(&mut args, 1)?;
            let dims = broadcast(&x.dims, &slope.dims)?;
            let y = x.tensor.clone().clamp_min(0.0) + x.tensor.clamp_max(0.0) * slope.tensor;
            Value::Dense(Dense::new(y, dims))
        }
        Op::Relu => unary(&mut args, relu)?,
        Op::Sigmoid => unary(&mut args, sigmoid)?,
        Op::Tanh => unary(&mut args, |t| t.tanh())?,
        Op::LeakyRelu(alpha) => unary(&mut args, |t| leaky_relu(t, *alpha))?,
        Op::Clip { min, max } => unary(&mut args, |mut t| {
            if let Some(m) = min {
                t = t.clamp_min(*m);
            }
            if let Some(m) = max {
                t = t.clamp_max(*m);
            }
            t
        })?,
        Op::Add | Op::Sub | Op::Mul | Op::Div => {
            let b = args.pop().expect("two inputs");
            let a = args.pop().expect("two inputs");
            match (a, b) {
                (Value::Ints { values: a, scalar: sa }, Value::Ints { values: b, scalar: sb }) => Value::Ints {
                    values: ints_binary(op, &a, &b)?,
                    scalar: sa && sb,
                },
                (a, b) => {
                    let (a, b) = (dense(a)?, dense(b)?);
                    let dims = broadcast(&a.dims, &b.dims)?;
                    let y = match op {
                        Op::Add => a.tensor + b.tensor,
                        Op::Sub => a.tensor - b.tensor,
                        Op::Mul => a.tensor * b.tensor,
                        _ => a.tensor / b.tensor,
                    };
                    Value::Dense(Dense::new(y, dims))
                }
            }
        }
        Op::MatMul => {
            let a = arg(&mut args, 0)?;
            let b = arg(&mut args, 1)?;
            matmul(a, b)?
        }
        Op::Linear { weight, bias } => {
            let x = arg(&mut args, 0)?;
            let [k, m] = weight.dims();
            let last = *x.dims.last().ok_or("Linear of a scalar")?;
            if last != k {
                return Err(format!("input {:?} against a weight of {k} rows", x.dims));
            }
            let rows = x.dims.iter().rev().skip(1).product::<usize>();
            let mut y = x.tensor.reshape([rows, k]).matmul(weight.clone());
            if let Some(b) = bias {
                y = y + b.clone();
            }
            let mut dims = x.dims.clone();
            *dims.last_mut().unwrap() = m;
            with_dims(y.reshape([1, 1, 1, rows, m]), dims)
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let a = arg(&mut args, 0)?;
            let b = arg(&mut args, 1)?;
            if a.rank() != 2 || b.rank() != 2 {
                return Err("Gemm needs two matrices".into());
            }
            let t = |d: Dense, tr: bool| {
                let m = d.tensor.reshape([d.dims[0], d.dims[1]]);
                if tr { m.transpose() } else { m }
            };
            let mut y = t(a, *trans_a).matmul(t(b, *trans_b)) * *alpha;
            let [r, c] = y.dims();
            if args.len() > 2 {
                let cterm = arg(&mut args, 2)?;
                broadcast(&[r, c], &cterm.dims)?;
                let cterm: Tensor<2> = cterm.tensor.reshape(physical2(&cterm.dims));
                y = y + cterm * *beta;
            }
            with_dims(y.reshape([1, 1, 1, r, c]), vec![r, c])
        }
        Op::Flatten(axis) => {
            let x = arg(&mut args, 0)?;
            let outer = x.dims[..*axis].iter().product::<usize>();
            let inner = x.dims[*axis..].iter().product::<usize>();
            with_dims(x.tensor, vec![outer, inner])
        }
        Op::Reshape(target) => {
            let x = arg(&mut args, 0)?;
            let target = match target {
                Some(t) => t.clone(),
                None => match args.pop() {
                    Some(Value::Ints { values, .. }) => values,
                    _ => return Err("the Reshape target is not a shape".into()),
                },
            };
            let dims = reshape_dims(&x.dims, &target)?;
            if dims.len() > Dense::MAX_RANK {
                return Err(format!("Reshape to rank {}", dims.len()));
            }
            with_dims(x.tensor, dims)
        }
        Op::Transpose(perm) => {
            let x = arg(&mut args, 0)?;
            let r = x.rank();
            let perm: Vec<usize> = if perm.is_empty() {
                (0..r).rev().collect()
            } else {
                perm.clone()
            };
            let mut p = [0, 1, 2, 3, 4];
            for (i, &axis) in perm.iter().enumerate() {
                p[phys_axis(i, r)] = phys_axis(axis, r);
            }
            let dims = perm.iter().map(|&a| x.dims[a]).collect();
            Value::Dense(Dense::new(x.tensor.permute(p), dims))
        }
        Op::Squeeze(axes) => {
            let x = arg(&mut args, 0)?;
            let r = x.rank() as i64;
            let axes: Vec<usize> = match axes {
                Some(a) => a
                    .iter()
                    .map(|&a| if a < 0 { (a + r) as usize } else { a as usize })
                    .collect(),
                None => (0..x.rank()).filter(|&i| x.dims[i] == 1).collect(),
            };
            let dims = x
                .dims
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            with_dims(x.tensor, dims)
        }
        Op::Unsqueeze(axes) => {
            let x = args.pop().expect("one input");
            let (old, ints): (Vec<usize>, Option<Vec<i64>>) = match &x {
                Value::Dense(d) => (d.dims.clone(), None),
                Value::Ints { values, scalar } => {
                    // A shape scalar made a one-element shape (shape arithmetic).
                    if *scalar {
                        return Ok(Value::Ints {
                            values: values.clone(),
                            scalar: false,
                        });
                    }
                    (vec![values.len()], Some(values.clone()))
                }
            };
            if let Some(values) = ints {
                return Ok(Value::Ints { values, scalar: false });
            }
            let r = (old.len() + axes.len()) as i64;
            let mut axes: Vec<usize> = axes
                .iter()
                .map(|&a| if a < 0 { (a + r) as usize } else { a as usize })
                .collect();
            axes.sort_unstable();
            let mut dims = old;
            for a in axes {
                dims.insert(a, 1);
            }
            if dims.len() > Dense::MAX_RANK {
                return Err(format!("Unsqueeze to rank {}", dims.len()));
            }
            with_dims(dense(x)?.tensor, dims)
        }
        Op::GlobalPool(kind) => {
            let x = arg(&mut args, 0)?;
            spatial(&x)?;
            let y = match kind {
                PoolKind::Average => x.tensor.mean_dim(4).mean_dim(3),
                PoolKind::Max => x.tensor.max_dim(4).max_dim(3),
            };
            let dims = vec![x.dims[0], x.dims[1], 1, 1];
            Value::Dense(Dense::new(y, dims))
        }
        Op::Pool {
            kind,
            kernel,
            stride,
            dilation,
            pads,
            ceil_mode,
            count_include_pad,
        } => {
            let x = arg(&mut args, 0)?;
            spatial(&x)?;
            let padding = resolve_pads(*pads, &x.dims, *kernel, *stride, *dilation);
            let y = match kind {
                PoolKind::Average => avg_pool2d(
                    nchw(x),
                    AvgPoolOptions::new(*kernel)
                        .with_stride(*stride)
                        .with_padding_pairs(padding)
                        .with_count_include_pad(*count_include_pad)
                        .with_ceil_mode(*ceil_mode),
                ),
                PoolKind::Max => max_pool2d(
                    nchw(x),
                    MaxPoolOptions::new(*kernel)
                        .with_stride(*stride)
                        .with_padding_pairs(padding)
                        .with_dilation(*dilation)
                        .with_ceil_mode(*ceil_mode),
                ),
            };
            from_nchw(y)
        }
        Op::Concat(axis) => {
            if args.iter().all(|a| matches!(a, Value::Ints { .. })) {
                let values = args
                    .into_iter()
                    .flat_map(|a| match a {
                        Value::Ints { values, .. } => values,
                        Value::Dense(_) => unreachable!(),
                    })
                    .collect();
                return Ok(Value::Ints { values, scalar: false });
            }
            let parts = args.into_iter().map(dense).collect::<Result<Vec<_>, _>>()?;
            let r = parts[0].rank();
            let mut dims = parts[0].dims.clone();
            dims[*axis] = parts.iter().map(|p| p.dims[*axis]).sum();
            let y = Tensor::cat(parts.into_iter().map(|p| p.tensor).collect(), phys_axis(*axis, r));
            Value::Dense(Dense::new(y, dims))
        }
        Op::Pad { pads, mode } => {
            let x = arg(&mut args, 0)?;
            if pads.len() != x.rank() {
                return Err(format!("{} pad pairs for rank {}", pads.len(), x.rank()));
            }
            let mut pairs = [(0, 0); 5];
            pairs[5 - x.rank()..].copy_from_slice(pads);
            let dims = x.dims.iter().zip(pads).map(|(&d, (b, e))| d + b + e).collect();
            Value::Dense(Dense::new(x.tensor.pad(pairs, *mode), dims))
        }
        Op::Softmax(axis) => {
            let x = arg(&mut args, 0)?;
            let r = x.rank();
            Value::Dense(Dense::new(softmax(x.tensor, phys_axis(*axis, r)), x.dims))
        }
        Op::Reduce { kind, axes, keepdims } => {
            let x = arg(&mut args, 0)?;
            let r = x.rank();
            let axes: Vec<usize> = if axes.is_empty() {
                (0..r).collect()
            } else {
                axes.clone()
            };
            let mut t = match kind {
                Reduce::L2 => x.tensor.clone() * x.tensor,
                _ => x.tensor,
            };
            for &a in &axes {
                let p = phys_axis(a, r);
                t = match kind {
                    Reduce::Mean => t.mean_dim(p),
                    Reduce::Max => t.max_dim(p),
                    Reduce::Sum | Reduce::L2 => t.sum_dim(p),
                };
            }
            if let Reduce::L2 = kind {
                t = t.sqrt();
            }
            let dims: Vec<usize> = (0..r)
                .filter_map(|i| match (axes.contains(&i), keepdims) {
                    (false, _) => Some(x.dims[i]),
                    (true, true) => Some(1),
                    (true, false) => None,
                })
                .collect();
            with_dims(t, dims)
        }
        Op::Shape(start, end) => {
            let dims = match &args[0] {
                Value::Dense(d) => d.dims.clone(),
                Value::Ints { values, .. } => vec![values.len()],
            };
            let end = (*end).min(dims.len());
            Value::Ints {
                values: dims[(*start).min(end)..end].iter().map(|&d| d as i64).collect(),
                scalar: false,
            }
        }
        Op::Gather(axis) => {
            let index = args.pop().expect("two inputs");
            let data = args.pop().expect("two inputs");
            let Value::Ints { values: idx, scalar } = index else {
                return Err("Gather indices must be integers".into());
            };
            match data {
                Value::Ints { values, .. } => {
                    let n = values.len() as i64;
                    let picked = idx
                        .iter()
                        .map(|&i| {
                            let i = if i < 0 { i + n } else { i };
                            values.get(i as usize).copied().ok_or(format!("index {i} out of {n}"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Value::Ints { values: picked, scalar }
                }
                Value::Dense(d) => {
                    let r = d.rank();
                    let n = d.dims[*axis] as i64;
                    let idx: Vec<i64> = idx.iter().map(|&i| if i < 0 { i + n } else { i }).collect();
                    if idx.iter().any(|&i| i < 0 || i >= n) {
                        return Err(format!("Gather index out of 0..{n}"));
                    }
                    let indices = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [idx.len()]), device);
                    let y = d.tensor.select(phys_axis(*axis, r), indices);
                    let mut dims = d.dims.clone();
                    if scalar {
                        dims.remove(*axis);
                    } else {
                        dims[*axis] = idx.len();
                    }
                    with_dims(y, dims)
                }
            }
        }
        Op::Identity => args.swap_remove(0),
    })
}

fn physical2(dims: &[usize]) -> [usize; 2] {
    match dims {
        [] => [1, 1],
        [c] => [1, *c],
        [r, c] => [*r, *c],
        _ => [dims[..dims.len() - 1].iter().product(), dims[dims.len() - 1]],
    }
}

fn unary(args: &mut [Value], f: impl FnOnce(Tensor<5>) -> Tensor<5>) -> Result<Value, String> {
    let x = dense(std::mem::replace(
        &mut args[0],
        Value::Ints {
            values: vec![],
            scalar: true,
        },
    ))?;
    Ok(Value::Dense(Dense::new(f(x.tensor), x.dims)))
}

/// ONNX MatMul of two tensors of rank ≥ 2, batch dimensions broadcast.
fn matmul(a: Dense, b: Dense) -> Result<Value, String> {
    let (ra, rb) = (a.rank(), b.rank());
    if ra < 2 || rb < 2 {
        return Err("MatMul of a vector is not supported".into());
    }
    let (m, k) = (a.dims[ra - 2], a.dims[ra - 1]);
    let (k2, n) = (b.dims[rb - 2], b.dims[rb - 1]);
    if k != k2 {
        return Err(format!("MatMul of {:?} and {:?}", a.dims, b.dims));
    }
    let mut dims = broadcast(&a.dims[..ra - 2], &b.dims[..rb - 2])?;
    dims.extend([m, n]);
    let target = physical(&dims);
    let expand = |t: Tensor<5>, rows: usize, cols: usize| t.expand([target[0], target[1], target[2], rows, cols]);
    let y = expand(a.tensor, m, k).matmul(expand(b.tensor, k, n));
    Ok(Value::Dense(Dense::new(y, dims)))
}

fn reshape_dims(dims: &[usize], target: &[i64]) -> Result<Vec<usize>, String> {
    let total: usize = dims.iter().product();
    let mut out: Vec<usize> = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => out.push(*dims.get(i).ok_or("Reshape copies a dimension the input lacks")?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            t if t > 0 => out.push(t as usize),
            _ => return Err(format!("Reshape target {target:?}")),
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {dims:?} to {target:?}"));
        }
        out[i] = total / known;
    }
    if out.iter().product::<usize>() != total {
        return Err(format!("cannot reshape {dims:?} to {target:?}"));
    }
    Ok(out)
}
