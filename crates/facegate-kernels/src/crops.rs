//! Aligned face crops made on the device (`shaders/crop_warp.wgsl`, `crop_sharpness.wgsl`):
//! the bytes a crop reads go up once, the crop is written as the network's input where burn
//! will read it, and only the sharpness of each crop (one float) comes back.

use bytemuck::{Pod, Zeroable};
use zeroize::Zeroize;

use crate::{KernelError, MAX_GROUPS, Matcher};

pub(crate) const WARP: &str = include_str!("../../../shaders/crop_warp.wgsl");
pub(crate) const SHARPNESS: &str = include_str!("../../../shaders/crop_sharpness.wgsl");

/// Output pixels per workgroup of the warp (`@workgroup_size` in crop_warp.wgsl).
const WARP_GROUP: usize = 64;

/// One crop's source: `height` rows of `width` RGB pixels, `stride` bytes apart, from the start
/// of `rgb` (a window read in place from a larger image), and the map from crop pixels to
/// source pixels (`[a, b, tx, c, d, ty]`: x = a·u + b·v + tx, y = c·u + d·v + ty).
#[derive(Debug, Clone, Copy)]
pub struct CropSource<'a> {
    pub rgb: &'a [u8],
    pub width: u32,
    pub height: u32,
    pub stride: usize,
    pub to_source: [f64; 6],
}

impl CropSource<'_> {
    /// Bilinear samples per axis: the CPU warp's ⌈√|det|⌉, so a downscale averages its footprint.
    pub fn samples(&self) -> u32 {
        let [a, b, _, c, d, _] = self.to_source;
        (a * d - b * c).abs().sqrt().ceil().max(1.0) as u32
    }

    fn row_bytes(&self) -> usize {
        self.width as usize * 3
    }

    /// Its packed size on the device, in u32 words.
    fn words(&self) -> usize {
        (self.row_bytes() * self.height as usize).div_ceil(4)
    }

    fn rows(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.height as usize).map(|y| &self.rgb[y * self.stride..][..self.row_bytes()])
    }
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct CropParams {
    m: [f32; 6],
    base: u32,
    width: u32,
    height: u32,
    n: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct WarpParams {
    size: u32,
    count: u32,
    out_offset: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct SharpnessParams {
    size: u32,
    count: u32,
    _pad: [u32; 2],
}

impl Matcher {
    /// Writes the aligned crops of `sources`, planar RGB in 0..255, as `[n, 3, size, size]`
    /// f32 at the start of `out` (for instance a burn tensor's buffer on this device), and
    /// submits the work: later work on the queue sees the crops. Sources go up in as few
    /// bindings as the device's limit allows.
    pub fn warp_crops(&self, sources: &[CropSource], size: usize, out: wgpu::BufferBinding) -> Result<(), KernelError> {
        let plane = size * size;
        let out_bytes = (sources.len() * 3 * plane * 4) as u64;
        let bound = out
            .size
            .map_or(out.buffer.size().saturating_sub(out.offset), |s| s.get());
        if out_bytes > bound {
            return Err(KernelError::Crop(format!(
                "{} crops of {size}² need {out_bytes} bytes, the output holds {bound}",
                sources.len()
            )));
        }
        if out_bytes > self.max_binding || plane.div_ceil(WARP_GROUP) > MAX_GROUPS || size == 0 {
            return Err(KernelError::TooLarge(format!("{} crops of {size}²", sources.len())));
        }
        for s in sources {
            let needed = (s.height as usize)
                .checked_sub(1)
                .map_or(0, |rows| rows * s.stride + s.row_bytes());
            if s.rgb.len() < needed || (s.height > 1 && s.stride < s.row_bytes()) {
                return Err(KernelError::Crop(format!(
                    "{} bytes, {}-byte rows, do not hold {}×{} RGB",
                    s.rgb.len(),
                    s.stride,
                    s.width,
                    s.height
                )));
            }
            if s.words() * 4 > self.max_binding as usize {
                return Err(KernelError::TooLarge(format!("a {}×{} crop source", s.width, s.height)));
            }
        }
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let mut first = 0;
        while first < sources.len() {
            // As many sources as one binding holds (and one dispatch row allows).
            let mut words = 0;
            let mut end = first;
            while end < sources.len()
                && end - first < MAX_GROUPS
                && (words + sources[end].words()) * 4 <= self.max_binding as usize
            {
                words += sources[end].words();
                end += 1;
            }
            self.encode_warp(&mut encoder, &sources[first..end], first, size, out.clone());
            first = end;
        }
        self.queue.submit([encoder.finish()]);
        Ok(())
    }

    fn encode_warp(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        sources: &[CropSource],
        first: usize,
        size: usize,
        out: wgpu::BufferBinding,
    ) {
        let mut pixels: Vec<u8> = Vec::with_capacity(sources.iter().map(|s| s.words() * 4).sum());
        let mut params = Vec::with_capacity(sources.len());
        for s in sources {
            let base = (pixels.len() / 4) as u32;
            s.rows().for_each(|row| pixels.extend_from_slice(row));
            pixels.resize(pixels.len().next_multiple_of(4), 0);
            params.push(CropParams {
                m: s.to_source.map(|v| v as f32),
                base,
                width: s.width,
                height: s.height,
                n: s.samples(),
            });
        }
        let pixel_buffer = self.storage_buffer("crop sources", &pixels);
        // Face pixels: the host's packed copy is wiped once it is on the device.
        pixels.zeroize();
        let param_buffer = self.storage_buffer("crops", bytemuck::cast_slice(&params));
        let uniform = self.uniform(&WarpParams {
            size: size as u32,
            count: sources.len() as u32,
            out_offset: (first * 3 * size * size) as u32,
            _pad: 0,
        });
        let resources = vec![
            pixel_buffer.as_entire_binding(),
            param_buffer.as_entire_binding(),
            wgpu::BindingResource::Buffer(out),
            uniform.as_entire_binding(),
        ];
        let groups = ((size * size).div_ceil(WARP_GROUP) as u32, sources.len() as u32);
        self.dispatch_bound(encoder, &self.pipelines.crop_warp, resources, groups);
    }

    /// The sharpness (variance of the grey level's Laplacian) of each of `count` crops
    /// `[count, 3, size, size]` at the start of `crops`, after the work already submitted.
    pub fn crop_sharpness(
        &self,
        crops: wgpu::BufferBinding,
        count: usize,
        size: usize,
    ) -> Result<Vec<f32>, KernelError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if size < 3 || count > MAX_GROUPS {
            return Err(KernelError::TooLarge(format!("sharpness of {count} crops of {size}²")));
        }
        let variance = self.output_buffer("sharpness", count * 4);
        let uniform = self.uniform(&SharpnessParams {
            size: size as u32,
            count: count as u32,
            _pad: [0; 2],
        });
        let resources = vec![
            wgpu::BindingResource::Buffer(crops),
            variance.as_entire_binding(),
            uniform.as_entire_binding(),
        ];
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.dispatch_bound(
            &mut encoder,
            &self.pipelines.crop_sharpness,
            resources,
            (count as u32, 1),
        );
        let [bytes] = self.read(encoder, [(&variance, count * 4)])?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// [`Self::warp_crops`] and [`Self::crop_sharpness`] into a buffer of our own, read back:
    /// the crops and their sharpness (for tests and benchmarks).
    pub fn crops_to_host(&self, sources: &[CropSource], size: usize) -> Result<(Vec<f32>, Vec<f32>), KernelError> {
        let bytes = sources.len() * 3 * size * size * 4;
        let out = self.output_buffer("crops", bytes);
        self.warp_crops(sources, size, out.as_entire_buffer_binding())?;
        let sharpness = self.crop_sharpness(out.as_entire_buffer_binding(), sources.len(), size)?;
        let encoder = self.device.create_command_encoder(&Default::default());
        let [crops] = self.read(encoder, [(&out, bytes)])?;
        Ok((bytemuck::cast_slice(&crops).to_vec(), sharpness))
    }
}
