// Cosine similarity of N (probe, reference) pairs, normalisation fused in:
// out[i] = <a_i, b_i> / (|a_i| |b_i|), and 0 when either vector is zero.
//
// A workgroup scores PAIRS_PER_GROUP pairs; LANES threads share one pair and stride over its
// vec4s, so neighbouring threads read neighbouring memory. The three sums (a·b, a·a, b·b) are
// reduced in workgroup memory. Prepended at load time: a storage snippet defining `Packed` and
// `unpack` (storage_f32.wgsl or storage_f16.wgsl).

struct Params {
    n: u32,
    // Embedding length in vec4s.
    dim4: u32,
    // Workgroups along x (the grid is 2-d when N needs more than 65535 groups).
    groups_x: u32,
    _pad: u32,
}

const LANES: u32 = 32u;
const PAIRS_PER_GROUP: u32 = 8u;

@group(0) @binding(0) var<storage, read> a: array<Packed>;
@group(0) @binding(1) var<storage, read> b: array<Packed>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

var<workgroup> sums: array<vec3<f32>, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let lane = lid % LANES;
    let pair = (wid.y * params.groups_x + wid.x) * PAIRS_PER_GROUP + lid / LANES;
    var acc = vec3<f32>(0.0);
    if pair < params.n {
        let base = pair * params.dim4;
        for (var i = lane; i < params.dim4; i += LANES) {
            let x = unpack(a[base + i]);
            let y = unpack(b[base + i]);
            acc += vec3<f32>(dot(x, y), dot(x, x), dot(y, y));
        }
    }
    sums[lid] = acc;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride >>= 1u) {
        if lane < stride {
            sums[lid] += sums[lid + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u && pair < params.n {
        let s = sums[lid];
        let norms = sqrt(s.y) * sqrt(s.z);
        out[pair] = select(0.0, s.x / norms, norms > 0.0);
    }
}
