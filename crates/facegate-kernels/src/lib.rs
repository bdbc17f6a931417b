//! Hand-written WGSL matcher kernels (`shaders/`): cosine similarity of many (probe, reference)
//! pairs in one dispatch, and 1:N scans of probes against a gallery (top-k, or every score), each with f32 or f16
//! storage and f32 accumulation, normalisation fused in.
//!
//! The kernels run on a plain `wgpu::Device`: [`Matcher::new`] opens one on the best adapter
//! with the adapter's real limits, and [`Matcher::with_device`] takes an existing one. The
//! pipeline hands it the device and queue burn's wgpu runtime runs on, so
//! [`Matcher::pairs_resident`] scores the descriptors in the very buffers the network wrote.
//! [`reference`] holds the f64 CPU definitions the kernels are tested against.

pub mod crops;
pub mod reference;

pub use crops::CropSource;

use std::sync::mpsc;

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

const STORAGE_F32: &str = include_str!("../../../shaders/storage_f32.wgsl");
const STORAGE_F16: &str = include_str!("../../../shaders/storage_f16.wgsl");
const PAIRS: &str = include_str!("../../../shaders/pairs.wgsl");
const TOPK_COMMON: &str = include_str!("../../../shaders/topk_common.wgsl");
const GALLERY_SCAN: &str = include_str!("../../../shaders/gallery_scan.wgsl");
const GALLERY_TOPK: &str = include_str!("../../../shaders/gallery_topk.wgsl");
const GALLERY_SCORES: &str = include_str!("../../../shaders/gallery_scores.wgsl");
const TOPK_MERGE: &str = include_str!("../../../shaders/topk_merge.wgsl");

/// Pairs scored per workgroup (`PAIRS_PER_GROUP` in pairs.wgsl).
const PAIRS_PER_GROUP: usize = 8;
/// Gallery rows per candidate block and probes per tile (`BLOCK`, `TILE_P` in the shaders).
const BLOCK: usize = 256;
const TILE_P: usize = 4;
/// wgpu's limit on workgroups per dispatch dimension.
const MAX_GROUPS: usize = 65_535;
/// The largest k the top-k kernels keep per block (they sort BLOCK entries; 32 keeps the
/// merge shrinking the candidate list at least 8× per pass).
pub const MAX_K: usize = 32;
/// The largest embedding length the kernels accept.
pub const MAX_DIM: usize = 1024;

/// How embeddings are stored on the GPU. Accumulation is f32 either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    F32,
    /// IEEE half, packed two per u32 (works without the `shader-f16` feature).
    F16,
}

impl Storage {
    fn bytes_per_value(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
        }
    }

    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Self::F32 => bytemuck::cast_slice(values).to_vec(),
            Self::F16 => {
                let halves: Vec<u16> = values.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
                bytemuck::cast_slice(&halves).to_vec()
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("no wgpu adapter found (install a Vulkan driver, e.g. mesa-vulkan-drivers)")]
    NoAdapter,
    #[error("requesting the wgpu device: {0}")]
    RequestDevice(#[from] wgpu::RequestDeviceError),
    #[error("embedding length {0} must be a positive multiple of 4, at most {MAX_DIM}")]
    Dim(usize),
    #[error("{what} holds {len} values, not a multiple of the embedding length {dim}")]
    Length { what: &'static str, len: usize, dim: usize },
    #[error("probes and references differ in count ({0} vs {1})")]
    PairCount(usize, usize),
    #[error("pair ({a}, {b}) names a row past the {rows} rows bound")]
    Row { a: u32, b: u32, rows: usize },
    #[error("k must be in 1..={MAX_K}, got {0}")]
    K(usize),
    #[error("{0} does not fit the device's limits")]
    TooLarge(String),
    #[error("crop: {0}")]
    Crop(String),
    #[error("reading results back from the GPU: {0}")]
    Map(String),
}

/// One gallery entry of a top-k answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: u32,
    pub score: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PairsParams {
    n: u32,
    dim4: u32,
    groups_x: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GalleryParams {
    m: u32,
    rows: u32,
    dim4: u32,
    k: u32,
    row_offset: u32,
    blocks: u32,
    block_offset: u32,
    gallery_len: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MergeParams {
    len: u32,
    out_len: u32,
    k: u32,
    _pad: u32,
}

struct Pipelines {
    pairs_f32: wgpu::ComputePipeline,
    pairs_f16: wgpu::ComputePipeline,
    pairs_rows_f32: wgpu::ComputePipeline,
    gallery_f32: wgpu::ComputePipeline,
    gallery_f16: wgpu::ComputePipeline,
    scores_f32: wgpu::ComputePipeline,
    scores_f16: wgpu::ComputePipeline,
    merge: wgpu::ComputePipeline,
    crop_warp: wgpu::ComputePipeline,
    crop_sharpness: wgpu::ComputePipeline,
}

/// The matcher kernels, compiled for one wgpu device.
pub struct Matcher {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipelines: Pipelines,
    /// The largest storage binding used (the device limit, or lower for tests).
    max_binding: u64,
    label: String,
}

impl Matcher {
    /// Open a device on the best adapter (real hardware first, software such as lavapipe
    /// otherwise) with the adapter's own limits rather than wgpu's conservative defaults.
    /// Only the primary backends (Vulkan, Metal, DX12): wgpu's GL backend deadlocks under
    /// concurrent use on Mesa's llvmpipe, and a machine with GL alone has no GPU worth it.
    pub fn new() -> Result<Self, KernelError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: wgpu::Backends::PRIMARY,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY));
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
            wgpu::DeviceType::Cpu => 3,
        };
        let adapter = adapters.into_iter().min_by_key(rank).ok_or(KernelError::NoAdapter)?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("facegate-kernels"),
            required_limits: adapter.limits(),
            ..Default::default()
        }))?;
        Ok(Self::with_device(
            device,
            queue,
            format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend),
        ))
    }

    /// Use an existing device and queue (for instance the ones shared with burn).
    pub fn with_device(device: wgpu::Device, queue: wgpu::Queue, label: String) -> Self {
        let module = |name: &str, parts: &[&str]| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(parts.concat().into()),
            })
        };
        let entry = |name: &str, parts: &[&str], entry_point: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: None,
                module: &module(name, parts),
                entry_point: Some(entry_point),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let pipeline = |name: &str, parts: &[&str]| entry(name, parts, "main");
        let pipelines = Pipelines {
            pairs_f32: pipeline("pairs_f32", &[STORAGE_F32, PAIRS]),
            pairs_f16: pipeline("pairs_f16", &[STORAGE_F16, PAIRS]),
            pairs_rows_f32: entry("pairs_rows_f32", &[STORAGE_F32, PAIRS], "main_rows"),
            gallery_f32: pipeline("gallery_f32", &[STORAGE_F32, TOPK_COMMON, GALLERY_SCAN, GALLERY_TOPK]),
            gallery_f16: pipeline("gallery_f16", &[STORAGE_F16, TOPK_COMMON, GALLERY_SCAN, GALLERY_TOPK]),
            scores_f32: pipeline("scores_f32", &[STORAGE_F32, GALLERY_SCAN, GALLERY_SCORES]),
            scores_f16: pipeline("scores_f16", &[STORAGE_F16, GALLERY_SCAN, GALLERY_SCORES]),
            merge: pipeline("topk_merge", &[TOPK_COMMON, TOPK_MERGE]),
            crop_warp: entry("crop_warp", &[crops::WARP], "warp"),
            crop_sharpness: entry("crop_sharpness", &[crops::SHARPNESS], "sharpness"),
        };
        let limits = device.limits();
        let max_binding = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        Self {
            device,
            queue,
            pipelines,
            max_binding,
            label,
        }
    }

    /// The adapter this matcher runs on.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Cap every storage binding at `bytes` (tests use it to exercise chunking on small data).
    pub fn with_max_binding(mut self, bytes: u64) -> Self {
        self.max_binding = self.max_binding.min(bytes);
        self
    }

    pub fn max_binding(&self) -> u64 {
        self.max_binding
    }

    /// The device the kernels were compiled for (to place buffers for [`Self::pairs_resident`]).
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// Cosine similarity of each (probes[i], references[i]) pair; 0 where either is zero.
    /// `probes` and `references` are row-major `[n, dim]`.
    pub fn pairs(
        &self,
        probes: &[f32],
        references: &[f32],
        dim: usize,
        storage: Storage,
    ) -> Result<Vec<f32>, KernelError> {
        check_dim(dim)?;
        let n = rows("probes", probes, dim)?;
        let n_ref = rows("references", references, dim)?;
        if n != n_ref {
            return Err(KernelError::PairCount(n, n_ref));
        }
        let row_bytes = (dim * storage.bytes_per_value()) as u64;
        let per_call = (self.max_binding / row_bytes) as usize;
        let per_call = per_call.min(MAX_GROUPS * MAX_GROUPS * PAIRS_PER_GROUP);
        if per_call == 0 {
            return Err(KernelError::TooLarge(format!("an embedding of {dim} values")));
        }
        let mut out = Vec::with_capacity(n);
        for start in (0..n).step_by(per_call) {
            let end = (start + per_call).min(n);
            let (a, b) = (&probes[start * dim..end * dim], &references[start * dim..end * dim]);
            out.extend(self.score(&self.upload_pairs(a, b, dim, storage)?)?);
        }
        Ok(out)
    }

    /// Upload (probe, reference) pairs to stay on the device; [`Self::score`] scores them.
    /// One storage binding per side: at most `max_binding` bytes each.
    pub fn upload_pairs(&self, a: &[f32], b: &[f32], dim: usize, storage: Storage) -> Result<PairsBatch, KernelError> {
        check_dim(dim)?;
        let n = rows("probes", a, dim)?;
        if n != rows("references", b, dim)? {
            return Err(KernelError::PairCount(n, b.len() / dim));
        }
        if (n * dim * storage.bytes_per_value()) as u64 > self.max_binding {
            return Err(KernelError::TooLarge(format!("{n} pairs in one binding")));
        }
        Ok(PairsBatch {
            a: self.storage_buffer("probes", &storage.encode(a)),
            b: self.storage_buffer("references", &storage.encode(b)),
            n,
            dim,
            storage,
        })
    }

    /// Score resident pairs: one dispatch, and only the scores come back.
    pub fn score(&self, batch: &PairsBatch) -> Result<Vec<f32>, KernelError> {
        let pipeline = match batch.storage {
            Storage::F32 => &self.pipelines.pairs_f32,
            Storage::F16 => &self.pipelines.pairs_f16,
        };
        let inputs = vec![batch.a.as_entire_binding(), batch.b.as_entire_binding()];
        self.score_pairs(pipeline, inputs, None, batch.n, batch.dim)
    }

    /// Cosine similarity of rows `[a, b]` of a row-major `[rows, dim]` f32 matrix that
    /// already sits in a buffer of this device, such as a network's output: the kernel reads
    /// the rows where they lie, and only the scores (and the row numbers, going up) cross to
    /// and from the host. The caller must have submitted the work that writes the matrix
    /// (queue order does the rest).
    pub fn pairs_resident(
        &self,
        matrix: wgpu::BufferBinding,
        dim: usize,
        pairs: &[[u32; 2]],
    ) -> Result<Vec<f32>, KernelError> {
        check_dim(dim)?;
        let n = pairs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes = matrix
            .size
            .map_or(matrix.buffer.size().saturating_sub(matrix.offset), |s| s.get());
        if bytes > self.max_binding || n * 8 > self.max_binding as usize {
            return Err(KernelError::TooLarge(format!(
                "{n} pairs of a {bytes}-byte matrix in one binding"
            )));
        }
        let rows = bytes as usize / (dim * 4);
        if let Some(&[a, b]) = pairs.iter().find(|p| p.iter().any(|&r| r as usize >= rows)) {
            return Err(KernelError::Row { a, b, rows });
        }
        let index = self.storage_buffer("rows", bytemuck::cast_slice(pairs));
        let (a, b) = (
            wgpu::BindingResource::Buffer(matrix.clone()),
            wgpu::BindingResource::Buffer(matrix),
        );
        self.score_pairs(
            &self.pipelines.pairs_rows_f32,
            vec![a, b],
            Some(index.as_entire_binding()),
            n,
            dim,
        )
    }

    /// One dispatch of a pairs pipeline over `n` pairs, bindings 0 and 1 given; the scores.
    fn score_pairs(
        &self,
        pipeline: &wgpu::ComputePipeline,
        inputs: Vec<wgpu::BindingResource>,
        rows: Option<wgpu::BindingResource>,
        n: usize,
        dim: usize,
    ) -> Result<Vec<f32>, KernelError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > MAX_GROUPS * MAX_GROUPS * PAIRS_PER_GROUP {
            return Err(KernelError::TooLarge(format!("{n} pairs in one dispatch")));
        }
        let out = self.output_buffer("scores", n * 4);
        let groups = n.div_ceil(PAIRS_PER_GROUP);
        let groups_x = groups.min(MAX_GROUPS);
        let groups_y = groups.div_ceil(groups_x);
        let params = self.uniform(&PairsParams {
            n: n as u32,
            dim4: (dim / 4) as u32,
            groups_x: groups_x as u32,
            _pad: 0,
        });
        let mut resources = inputs;
        resources.extend([out.as_entire_binding(), params.as_entire_binding()]);
        resources.extend(rows);
        let mut encoder = self.device.create_command_encoder(&Default::default());
        self.dispatch_bound(&mut encoder, pipeline, resources, (groups_x as u32, groups_y as u32));
        let [bytes] = self.read(encoder, [(&out, n * 4)])?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    /// For each probe (row-major `[m, dim]`), the `k` gallery entries with the highest cosine
    /// similarity, best first; equal scores in ascending index order. Fewer than `k` when the
    /// gallery is smaller.
    pub fn top_k(&self, probes: &[f32], gallery: &Gallery, k: usize) -> Result<Vec<Vec<Hit>>, KernelError> {
        if !(1..=MAX_K).contains(&k) {
            return Err(KernelError::K(k));
        }
        let dim = gallery.dim;
        let m = rows("probes", probes, dim)?;
        if m == 0 || gallery.len == 0 {
            return Ok(vec![Vec::new(); m]);
        }
        let blocks: usize = gallery.chunks.iter().map(|c| c.rows.div_ceil(BLOCK)).sum();
        // Candidate buffers hold `blocks * k` entries per probe: batch the probes to fit them.
        let per_probe = (blocks * k * 4) as u64;
        let batch = ((self.max_binding / per_probe) as usize / TILE_P * TILE_P).min(MAX_GROUPS * TILE_P);
        if batch == 0 || blocks * k > MAX_GROUPS * BLOCK {
            return Err(KernelError::TooLarge(format!(
                "a top-{k} scan of {} gallery entries",
                gallery.len
            )));
        }
        let mut out = Vec::with_capacity(m);
        for start in (0..m).step_by(batch) {
            let end = (start + batch).min(m);
            out.extend(self.top_k_call(&probes[start * dim..end * dim], gallery, k, blocks)?);
        }
        Ok(out)
    }

    /// Every score of a 1:N scan: the cosine similarity of each probe (row-major `[m, dim]`)
    /// with each gallery entry, row-major `[m, gallery.len()]` (0 where either is zero). For
    /// score distributions, such as all-vs-all impostor scores in an evaluation.
    pub fn scores(&self, probes: &[f32], gallery: &Gallery) -> Result<Vec<f32>, KernelError> {
        let dim = gallery.dim;
        let m = rows("probes", probes, dim)?;
        let n = gallery.len;
        if m == 0 || n == 0 {
            return Ok(Vec::new());
        }
        // One output binding per call: batch the probes so their rows of scores fit it.
        let batch = ((self.max_binding / (n as u64 * 4)) as usize / TILE_P * TILE_P).min(MAX_GROUPS * TILE_P);
        if batch == 0 {
            return Err(KernelError::TooLarge(format!("a score row of {n} gallery entries")));
        }
        let pipeline = match gallery.storage {
            Storage::F32 => &self.pipelines.scores_f32,
            Storage::F16 => &self.pipelines.scores_f16,
        };
        let mut out = Vec::with_capacity(m * n);
        for start in (0..m).step_by(batch) {
            let end = (start + batch).min(m);
            let rows_here = end - start;
            let probe_buf = self.storage_buffer("probes", bytemuck::cast_slice(&probes[start * dim..end * dim]));
            let scores = self.output_buffer("scores", rows_here * n * 4);
            let mut encoder = self.device.create_command_encoder(&Default::default());
            let mut row_offset = 0;
            for chunk in &gallery.chunks {
                let params = self.uniform(&GalleryParams {
                    m: rows_here as u32,
                    rows: chunk.rows as u32,
                    dim4: (dim / 4) as u32,
                    k: 0,
                    row_offset: row_offset as u32,
                    blocks: 0,
                    block_offset: 0,
                    gallery_len: n as u32,
                });
                self.dispatch(
                    &mut encoder,
                    pipeline,
                    &[&probe_buf, &chunk.buffer, &params, &scores],
                    (chunk.rows.div_ceil(BLOCK) as u32, rows_here.div_ceil(TILE_P) as u32),
                );
                row_offset += chunk.rows;
            }
            let [bytes] = self.read(encoder, [(&scores, rows_here * n * 4)])?;
            out.extend_from_slice(bytemuck::cast_slice(&bytes));
        }
        Ok(out)
    }

    fn top_k_call(
        &self,
        probes: &[f32],
        gallery: &Gallery,
        k: usize,
        blocks: usize,
    ) -> Result<Vec<Vec<Hit>>, KernelError> {
        let dim = gallery.dim;
        let m = probes.len() / dim;
        let probe_buf = self.storage_buffer("probes", bytemuck::cast_slice(probes));
        let mut len = blocks * k;
        let mut scores = self.output_buffer("candidate scores", m * len * 4);
        let mut indices = self.output_buffer("candidate indices", m * len * 4);
        let pipeline = match gallery.storage {
            Storage::F32 => &self.pipelines.gallery_f32,
            Storage::F16 => &self.pipelines.gallery_f16,
        };
        let mut encoder = self.device.create_command_encoder(&Default::default());
        let (mut row_offset, mut block_offset) = (0, 0);
        for chunk in &gallery.chunks {
            let chunk_blocks = chunk.rows.div_ceil(BLOCK);
            let params = self.uniform(&GalleryParams {
                m: m as u32,
                rows: chunk.rows as u32,
                dim4: (dim / 4) as u32,
                k: k as u32,
                row_offset: row_offset as u32,
                blocks: blocks as u32,
                block_offset: block_offset as u32,
                gallery_len: gallery.len as u32,
            });
            self.dispatch(
                &mut encoder,
                pipeline,
                &[&probe_buf, &chunk.buffer, &params, &scores, &indices],
                (chunk_blocks as u32, m.div_ceil(TILE_P) as u32),
            );
            row_offset += chunk.rows;
            block_offset += chunk_blocks;
        }
        // Reduce each probe's candidates BLOCK at a time until one group of k remains.
        loop {
            let groups = len.div_ceil(BLOCK);
            let out_len = groups * k;
            let next_scores = self.output_buffer("merged scores", m * out_len * 4);
            let next_indices = self.output_buffer("merged indices", m * out_len * 4);
            let params = self.uniform(&MergeParams {
                len: len as u32,
                out_len: out_len as u32,
                k: k as u32,
                _pad: 0,
            });
            self.dispatch(
                &mut encoder,
                &self.pipelines.merge,
                &[&scores, &indices, &next_scores, &next_indices, &params],
                (groups as u32, m as u32),
            );
            (scores, indices, len) = (next_scores, next_indices, out_len);
            if groups == 1 {
                break;
            }
        }
        let [score_bytes, index_bytes] = self.read(encoder, [(&scores, m * k * 4), (&indices, m * k * 4)])?;
        let s: &[f32] = bytemuck::cast_slice(&score_bytes);
        let i: &[u32] = bytemuck::cast_slice(&index_bytes);
        Ok((0..m)
            .map(|p| {
                (p * k..(p + 1) * k)
                    .filter(|&j| i[j] != u32::MAX)
                    .map(|j| Hit {
                        index: i[j],
                        score: s[j],
                    })
                    .collect()
            })
            .collect())
    }

    fn storage_buffer(&self, label: &str, contents: &[u8]) -> wgpu::Buffer {
        // wgpu rejects zero-sized bindings; a 16-byte dummy is never read (n = 0 exits early).
        let contents = if contents.is_empty() { &[0u8; 16][..] } else { contents };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// An output buffer, poisoned with NaN so an element no kernel wrote cannot pass for a result.
    fn output_buffer(&self, label: &str, bytes: usize) -> wgpu::Buffer {
        let poison = vec![0xffu8; bytes.max(16)];
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: &poison,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        })
    }

    fn uniform<T: Pod>(&self, params: &T) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: bytemuck::bytes_of(params),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        groups: (u32, u32),
    ) {
        let resources = buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.dispatch_bound(encoder, pipeline, resources, groups);
    }

    /// One dispatch with `resources` bound in order as bindings 0, 1, ….
    fn dispatch_bound(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        pipeline: &wgpu::ComputePipeline,
        resources: Vec<wgpu::BindingResource>,
        (x, y): (u32, u32),
    ) {
        let entries: Vec<wgpu::BindGroupEntry> = resources
            .into_iter()
            .enumerate()
            .map(|(i, resource)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource,
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut pass = encoder.begin_compute_pass(&Default::default());
        pass.set_pipeline(pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    /// Submit `encoder` with copies of the first `bytes` of each buffer into one staging buffer,
    /// and read them all back with a single map (one submission, one wait).
    fn read<const N: usize>(
        &self,
        mut encoder: wgpu::CommandEncoder,
        parts: [(&wgpu::Buffer, usize); N],
    ) -> Result<[Vec<u8>; N], KernelError> {
        // Byte counts are multiples of 4 (f32/u32), as buffer copies require.
        let total: usize = parts.iter().map(|p| p.1).sum();
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total.max(4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut offset = 0;
        for (buffer, bytes) in parts {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, offset as u64, bytes as u64);
            offset += bytes;
        }
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| KernelError::Map(e.to_string()))?;
        rx.recv()
            .map_err(|e| KernelError::Map(e.to_string()))?
            .map_err(|e| KernelError::Map(e.to_string()))?;
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| KernelError::Map(e.to_string()))?
            .to_vec();
        staging.unmap();
        let mut offset = 0;
        Ok(parts.map(|(_, bytes)| {
            offset += bytes;
            data[offset - bytes..offset].to_vec()
        }))
    }
}

/// (probe, reference) pairs resident on the device.
pub struct PairsBatch {
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    n: usize,
    dim: usize,
    storage: Storage,
}

impl PairsBatch {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Bytes the kernel reads per scoring.
    pub fn bytes(&self) -> usize {
        2 * self.n * self.dim * self.storage.bytes_per_value()
    }
}

struct Chunk {
    buffer: wgpu::Buffer,
    rows: usize,
}

/// Gallery templates resident on the GPU, split into chunks that each fit one storage binding.
pub struct Gallery {
    chunks: Vec<Chunk>,
    dim: usize,
    len: usize,
    storage: Storage,
}

impl Gallery {
    /// Upload row-major `[g, dim]` templates.
    pub fn upload(matcher: &Matcher, templates: &[f32], dim: usize, storage: Storage) -> Result<Self, KernelError> {
        check_dim(dim)?;
        let len = rows("gallery", templates, dim)?;
        let row_bytes = (dim * storage.bytes_per_value()) as u64;
        // Whole blocks per chunk, and few enough blocks for one dispatch dimension.
        let per_chunk = ((matcher.max_binding / row_bytes) as usize / BLOCK * BLOCK).min(MAX_GROUPS * BLOCK);
        if per_chunk == 0 {
            return Err(KernelError::TooLarge(format!("a block of {BLOCK} templates")));
        }
        let chunks = (0..len)
            .step_by(per_chunk)
            .map(|start| {
                let end = (start + per_chunk).min(len);
                Chunk {
                    buffer: matcher.storage_buffer("gallery", &storage.encode(&templates[start * dim..end * dim])),
                    rows: end - start,
                }
            })
            .collect();
        Ok(Self {
            chunks,
            dim,
            len,
            storage,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes a scan reads from the gallery.
    pub fn bytes(&self) -> usize {
        self.len * self.dim * self.storage.bytes_per_value()
    }

    /// How many storage bindings the gallery spans.
    pub fn chunks(&self) -> usize {
        self.chunks.len()
    }
}

fn check_dim(dim: usize) -> Result<(), KernelError> {
    if dim == 0 || !dim.is_multiple_of(4) || dim > MAX_DIM {
        return Err(KernelError::Dim(dim));
    }
    Ok(())
}

fn rows(what: &'static str, values: &[f32], dim: usize) -> Result<usize, KernelError> {
    if !values.len().is_multiple_of(dim) {
        return Err(KernelError::Length {
            what,
            len: values.len(),
            dim,
        });
    }
    Ok(values.len() / dim)
}
