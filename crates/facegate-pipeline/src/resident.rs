//! Working on burn's tensors where they lie: scoring descriptors where the network left them,
//! and cutting crops where the network will read them.
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
use facegate_kernels::{CropSource, Matcher};
use image::RgbImage;

use crate::imageops;

/// Cosine similarity of rows `(a, b)` of `descriptors` (`[rows, dim]`, on the matcher's
/// device) for each pair, computed by the WGSL pairs kernel on the tensor's own memory.
pub fn score_rows(matcher: &Matcher, descriptors: &Tensor<2>, pairs: &[(usize, usize)]) -> Result<Vec<f32>, String> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let [_, dim] = descriptors.dims();
    let pairs: Vec<[u32; 2]> = pairs.iter().map(|&(a, b)| [a as u32, b as u32]).collect();
    in_place(descriptors, |matrix| matcher.pairs_resident(matrix, dim, &pairs))?.map_err(|e| e.to_string())
}

/// Aligned crops cut on the device: `[n, 3, size, size]` written by the warp kernel into a
/// fresh burn tensor (the embedder's input, never on the host), and each crop's sharpness.
pub fn crops(
    matcher: &Matcher,
    device: &Device,
    sources: &[CropSource],
    size: usize,
) -> Result<(Tensor<4>, Vec<f32>), String> {
    let batch = Tensor::<4>::empty([sources.len(), 3, size, size], device);
    let sharpness = in_place(&batch, |crops| {
        matcher.warp_crops(sources, size, crops.clone())?;
        matcher.crop_sharpness(crops, sources.len(), size)
    })?
    .map_err(|e| e.to_string())?;
    Ok((batch, sharpness))
}

/// The source of the `size`² crop that `to_image` (crop pixel → image pixel) cuts from `img`:
/// the window of pixels it can read ([`imageops::warp_window`]), in place in `img`, and the
/// map shifted to the window's origin.
pub fn crop_source(img: &RgbImage, to_image: [f64; 6], size: usize) -> CropSource<'_> {
    let window = imageops::warp_window(to_image, size, img.width(), img.height());
    let stride = img.width() as usize * 3;
    let [a, b, tx, c, d, ty] = to_image;
    CropSource {
        rgb: &img.as_raw()[window.y as usize * stride + window.x as usize * 3..],
        width: window.width,
        height: window.height,
        stride,
        to_source: [a, b, tx - window.x as f64, c, d, ty - window.y as f64],
    }
}

/// Runs `f` on the wgpu binding of `tensor`'s memory (a contiguous f32 tensor of burn's
/// cubecl backend), after submitting burn's queued work so that it precedes ours.
fn in_place<const D: usize, R>(tensor: &Tensor<D>, f: impl FnOnce(wgpu::BufferBinding) -> R) -> Result<R, String> {
    let bytes = (tensor.shape().num_elements() * 4) as u64;
    let t: CubeTensor = tensor
        .clone()
        .try_into_primitive::<Cube>()
        .map_err(|e| format!("tensor is not on burn's cubecl backend: {e:?}"))?;
    // The kernels read and write row-major f32: a fresh network output or `empty` is.
    if !t.is_contiguous() || t.dtype != burn::tensor::DType::F32 {
        return Err(format!("tensor is not a contiguous f32 array ({:?})", t.dtype));
    }
    // Holding the resource keeps the allocation in place until our kernels are done with it.
    let resource = t
        .client
        .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
        .map_err(|e| format!("tensor buffer: {e:?}"))?;
    // burn's last kernels may still sit in its command encoder: submit them, so they precede
    // our dispatches on the shared queue.
    t.client.flush().map_err(|e| format!("submitting burn's work: {e:?}"))?;
    let r = resource.resource();
    Ok(f(wgpu::BufferBinding {
        buffer: &r.buffer,
        offset: r.offset,
        size: NonZeroU64::new(bytes),
    }))
}
