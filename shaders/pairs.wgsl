// Cosine similarity of N (probe, reference) pairs, normalisation fused in:
// out[i] = <a_i, b_i> / (|a_i| |b_i|), and 0 when either vector is zero.
//
// Two entry points: `main` scores row i of a with row i of b; `main_rows` scores the rows an
// index buffer names (descriptors in place, as the network wrote them).
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
// `main_rows` only: the (a row, b row) of each pair, so a matrix of descriptors (both bindings
// on the same buffer) is scored where it lies, without gathering the rows first.
@group(0) @binding(4) var<storage, read> rows: array<vec2<u32>>;

var<workgroup> sums: array<vec3<f32>, 256>;

// Pair `pair` is a[ra], b[rb] (rows of dim4 vec4s); every thread of the group must call this,
// as it holds barriers.
fn score(lid: u32, pair: u32, ra: u32, rb: u32) {
    let lane = lid % LANES;
    var acc = vec3<f32>(0.0);
    if pair < params.n {
        let base_a = ra * params.dim4;
        let base_b = rb * params.dim4;
        for (var i = lane; i < params.dim4; i += LANES) {
            let x = unpack(a[base_a + i]);
            let y = unpack(b[base_b + i]);
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

fn pair_index(lid: u32, wid: vec3<u32>) -> u32 {
    return (wid.y * params.groups_x + wid.x) * PAIRS_PER_GROUP + lid / LANES;
}

// Pair i is row i of a and row i of b.
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let pair = pair_index(lid, wid);
    score(lid, pair, pair, pair);
}

// Pair i is row rows[i].x of a and row rows[i].y of b.
@compute @workgroup_size(256)
fn main_rows(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let pair = pair_index(lid, wid);
    var r = vec2<u32>(0u);
    if pair < params.n {
        r = rows[pair];
    }
    score(lid, pair, r.x, r.y);
}
