// 1:N scan, stage 2: per probe, reduce `len` (score, index) candidates to the best k of every
// group of BLOCK, written as out[probe][group][0..k]. The host repeats it until one group is
// left, whose k are the answer. Workgroup: x = group, y = probe. Prepended: topk_common.wgsl.

struct Params {
    // Candidates per probe in the input, and entries per probe in the output.
    len: u32,
    out_len: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> in_score: array<f32>;
@group(0) @binding(1) var<storage, read> in_index: array<u32>;
@group(0) @binding(2) var<storage, read_write> out_score: array<f32>;
@group(0) @binding(3) var<storage, read_write> out_index: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> keys: array<f32, 256>;
var<workgroup> idx: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = wid.x * BLOCK + lid;
    if i < params.len {
        keys[lid] = in_score[wid.y * params.len + i];
        idx[lid] = in_index[wid.y * params.len + i];
    } else {
        keys[lid] = neg_inf();
        idx[lid] = EMPTY_INDEX;
    }
    workgroupBarrier();
    bitonic_sort(lid, 1u);
    if lid < params.k {
        let o = wid.y * params.out_len + wid.x * params.k + lid;
        out_score[o] = keys[lid];
        out_index[o] = idx[lid];
    }
}
