// The sharpness of aligned crops (see crop_warp.wgsl): the variance of the 4-neighbour
// Laplacian of each crop's grey level (0.299 R + 0.587 G + 0.114 B) over the interior, as
// `imageops::laplacian_variance` defines it. One workgroup per crop, two passes (the mean,
// then the squared deviations) so f32 sums do not cancel.

struct SharpnessParams {
    size: u32,
    count: u32,
    _pad0: u32,
    _pad1: u32,
}

const GROUP: u32 = 256u;

@group(0) @binding(0) var<storage, read> chw: array<f32>;
@group(0) @binding(1) var<storage, read_write> variance: array<f32>;
@group(0) @binding(2) var<uniform> sharp_params: SharpnessParams;

var<workgroup> part: array<f32, 256>;
var<workgroup> mean_of_group: f32;

fn grey(base: u32, i: u32) -> f32 {
    let plane = sharp_params.size * sharp_params.size;
    return 0.299 * chw[base + i] + 0.587 * chw[base + plane + i] + 0.114 * chw[base + 2u * plane + i];
}

// The Laplacian at interior pixel j (row-major over the (size − 2)² interior).
fn laplacian(base: u32, j: u32) -> f32 {
    let size = sharp_params.size;
    let inner = size - 2u;
    let i = (j / inner + 1u) * size + j % inner + 1u;
    return grey(base, i - 1u) + grey(base, i + 1u) + grey(base, i - size) + grey(base, i + size) - 4.0 * grey(base, i);
}

// Sum of part[] into part[0]; every thread of the group calls it.
fn reduce(lid: u32) {
    workgroupBarrier();
    for (var stride = GROUP / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            part[lid] += part[lid + stride];
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(256)
fn sharpness(@builtin(local_invocation_id) local: vec3<u32>, @builtin(workgroup_id) group: vec3<u32>) {
    let lid = local.x;
    let k = group.x;
    let size = sharp_params.size;
    let base = k * 3u * size * size;
    let m = (size - 2u) * (size - 2u);
    var s = 0.0;
    for (var j = lid; j < m; j += GROUP) {
        s += laplacian(base, j);
    }
    part[lid] = s;
    reduce(lid);
    if lid == 0u {
        mean_of_group = part[0] / f32(m);
    }
    workgroupBarrier();
    let mean = mean_of_group;
    var q = 0.0;
    for (var j = lid; j < m; j += GROUP) {
        let e = laplacian(base, j) - mean;
        q += e * e;
    }
    part[lid] = q;
    reduce(lid);
    if lid == 0u {
        variance[k] = part[0] / f32(m);
    }
}
