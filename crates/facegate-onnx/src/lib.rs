//! ONNX face networks on burn. A model file is parsed by `onnx-ir` (type inference, constant
//! folding) and turned, once, into a list of steps over burn tensor ops with the weights
//! already on the device; running it is a walk down that list. Any burn device works (flex on
//! the CPU, wgpu on a GPU or lavapipe), and the batch dimension is free even where the exporter
//! fixed it at 1. Convolutions, with the batch norm and Relu/PRelu after them folded in, run on
//! `facegate-conv` (our kernel on the CPU device).
//!
//! Everything that can be refused is refused at load, with the node's name: an operator we do
//! not run, a rank above 4, a shape computed from tensor data. Running never meets an unknown
//! op. Covered: what face detectors and embedders use (see [`SUPPORTED_OPS`]).

mod load;
mod run;

use burn::prelude::*;

pub use load::SUPPORTED_OPS;

/// Why a model cannot be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("not an ONNX model we can read: {0}")]
    Parse(String),
    #[error("node `{node}`: operator {op} is not supported (supported: {})", SUPPORTED_OPS.join(", "))]
    Unsupported { node: String, op: String },
    #[error("node `{node}`: {what}")]
    Node { node: String, what: String },
    #[error("the model must have one float input and at least one output; it has {inputs} inputs, {outputs} outputs")]
    Interface { inputs: usize, outputs: usize },
    #[error("input has shape {found:?}; the model takes {expected}")]
    InputShape { found: Vec<usize>, expected: String },
}

/// A float tensor on the device. Stored as rank 5 with leading ones (face networks stay within
/// it), so one type carries every ONNX rank; `dims` is its ONNX shape.
#[derive(Debug, Clone)]
pub struct Dense {
    pub tensor: Tensor<5>,
    pub dims: Vec<usize>,
}

impl Dense {
    /// Maximum ONNX rank we run.
    pub const MAX_RANK: usize = 5;

    pub fn new(tensor: Tensor<5>, dims: Vec<usize>) -> Self {
        debug_assert!(dims.len() <= Self::MAX_RANK);
        Self { tensor, dims }
    }

    fn from_vec(values: Vec<f32>, dims: Vec<usize>, device: &Device) -> Self {
        let physical = physical(&dims);
        Self::new(Tensor::from_data(TensorData::new(values, physical), device), dims)
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// The tensor as `[N, rest]` (an embedder's `[N, D]`, or `[N, D, 1, 1]` flattened).
    pub fn into_rows(self) -> Tensor<2> {
        let n = self.dims.first().copied().unwrap_or(1);
        let rest = self.dims.iter().skip(1).product::<usize>();
        self.tensor.reshape([n, rest])
    }
}

/// `dims` padded with leading ones to rank 5.
fn physical(dims: &[usize]) -> [usize; 5] {
    let mut out = [1; 5];
    out[5 - dims.len()..].copy_from_slice(dims);
    out
}

/// The axis of the rank-5 storage that holds ONNX axis `axis` of a rank-`rank` tensor.
fn phys_axis(axis: usize, rank: usize) -> usize {
    axis + (5 - rank)
}

/// What the graph's input looks like: `None` for a free dimension (the batch, at least).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    pub name: String,
    pub dims: Vec<Option<usize>>,
}

impl std::fmt::Display for InputSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dims: Vec<String> = self
            .dims
            .iter()
            .map(|d| d.map_or("N".to_string(), |d| d.to_string()))
            .collect();
        write!(f, "{} [{}]", self.name, dims.join(", "))
    }
}

/// A loaded ONNX network: steps over burn ops, weights on one device.
#[derive(Debug)]
pub struct OnnxNet {
    steps: Vec<run::Step>,
    /// Values known at load (weights a step takes from another step's slot, folded constants).
    constants: Vec<(usize, run::Value)>,
    input: InputSpec,
    input_slot: usize,
    outputs: Vec<(String, usize)>,
    slots: usize,
    /// After step `i`, the slots no later step reads (freed so memory follows the live set).
    free_after: Vec<Vec<usize>>,
    folded_batch_norms: usize,
    fused_activations: usize,
    device: Device,
}

impl OnnxNet {
    /// Parse and prepare a model from its bytes.
    pub fn load(bytes: &[u8], device: &Device) -> Result<Self, OnnxError> {
        load::load(bytes, device)
    }

    pub fn input(&self) -> &InputSpec {
        &self.input
    }

    pub fn output_names(&self) -> Vec<&str> {
        self.outputs.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// How many steps run (after batch norms were folded into their convolutions).
    pub fn steps(&self) -> usize {
        self.steps.len()
    }

    /// How many batch norms were folded into the convolution before them.
    pub fn folded_batch_norms(&self) -> usize {
        self.folded_batch_norms
    }

    /// How many Relu and PRelu nodes run inside the convolution before them.
    pub fn fused_activations(&self) -> usize {
        self.fused_activations
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Run the network on an NCHW batch (any batch size). Returns each graph output.
    pub fn run(&self, input: Tensor<4>) -> Result<Vec<Dense>, OnnxError> {
        let dims = input.dims().to_vec();
        self.check_input(&dims)?;
        let rank = self.input.dims.len();
        let dims = dims[4 - rank..].to_vec();
        let input = Dense::new(input.reshape(physical(&dims)), dims);
        run::run(self, input)
    }

    /// [`Self::run`] for a network with one output, as `[N, rest]` rows.
    pub fn forward_rows(&self, input: Tensor<4>) -> Result<Tensor<2>, OnnxError> {
        let mut out = self.run(input)?;
        Ok(out.swap_remove(0).into_rows())
    }

    fn check_input(&self, dims: &[usize]) -> Result<(), OnnxError> {
        let rank = self.input.dims.len();
        // A rank-4 burn tensor carries lower ranks with leading ones.
        let ok = rank <= 4
            && dims.len() == 4
            && dims[..4 - rank].iter().all(|&d| d == 1)
            && dims[4 - rank..]
                .iter()
                .zip(&self.input.dims)
                .all(|(&d, want)| want.is_none_or(|w| w == d));
        if ok {
            Ok(())
        } else {
            Err(OnnxError::InputShape {
                found: dims.to_vec(),
                expected: self.input.to_string(),
            })
        }
    }
}
