//! Scoring descriptors where the network left them.
//!
//! burn and the WGSL matcher share one wgpu device and queue ([`crate::device::SharedWgpu`]).
//! The recognition network's output is a burn tensor in a wgpu buffer; here that buffer is
//! taken from burn's wgpu server and bound by the pairs kernel's `main_rows` entry point,
//! which reads each pair's probe and reference rows where the network wrote them. Only the row
//! numbers go up and the scores come back: in `verify`, a template never exists in host memory.

use std::num::NonZeroU64;

use burn::backend::Cube;
use burn::backend::wgpu::CubeTensor;
use burn::cubecl::wgpu::{AutoCompiler, WgpuServer, wgpu};
use burn::prelude::*;
use facegate_kernels::Matcher;

/// Cosine similarity of rows `(a, b)` of `descriptors` (`[rows, dim]`, on the matcher's
/// device) for each pair, computed by the WGSL pairs kernel on the tensor's own memory.
pub fn score_rows(matcher: &Matcher, descriptors: &Tensor<2>, pairs: &[(usize, usize)]) -> Result<Vec<f32>, String> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let [rows, dim] = descriptors.dims();
    let t: CubeTensor = descriptors
        .clone()
        .try_into_primitive::<Cube>()
        .map_err(|e| format!("descriptors are not on burn's cubecl backend: {e:?}"))?;
    // The network's output is a fresh row-major f32 matrix: the layout the kernel reads.
    if !t.is_contiguous() || t.dtype != burn::tensor::DType::F32 {
        return Err(format!("descriptors are not a contiguous f32 matrix ({:?})", t.dtype));
    }
    // Holding the resource keeps the allocation in place until the kernel has read it.
    let resource = t
        .client
        .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
        .map_err(|e| format!("descriptor buffer: {e:?}"))?;
    // The network's last kernels may still sit in burn's command encoder: submit them, so they
    // precede our dispatch on the shared queue.
    t.client.flush().map_err(|e| format!("submitting burn's work: {e:?}"))?;
    let r = resource.resource();
    let matrix = wgpu::BufferBinding {
        buffer: &r.buffer,
        offset: r.offset,
        size: NonZeroU64::new((rows * dim * 4) as u64),
    };
    let pairs: Vec<[u32; 2]> = pairs.iter().map(|&(a, b)| [a as u32, b as u32]).collect();
    matcher.pairs_resident(matrix, dim, &pairs).map_err(|e| e.to_string())
}
