// Aligned face crops on the device, written straight into a network's input tensor.
//
// `warp`: for each crop k and output pixel (row, col), the mean of n×n bilinear samples of its
// source at the positions m·(col + (sx + 0.5)/n − 0.5, row + (sy + 0.5)/n − 0.5), where m
// maps crop pixels to source pixels and n = ⌈√|det m|⌉ (host-computed, the CPU warp's rule):
// the same definition as `imageops::warp_affine`, pixels outside the source reading 0. Sources
// are RGB u8 rows packed four bytes to a u32, each starting at a word; the output is planar
// RGB in 0..255 (the networks normalise their own input), `[count, 3, size, size]` from
// `out_offset` floats on.

struct Crop {
    // Crop pixel → source pixel: (a b tx; c d ty).
    a: f32,
    b: f32,
    tx: f32,
    c: f32,
    d: f32,
    ty: f32,
    // The source's first word in `pixels`, and its size.
    base: u32,
    width: u32,
    height: u32,
    // Samples per axis.
    n: u32,
}

struct WarpParams {
    size: u32,
    count: u32,
    out_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> pixels: array<u32>;
@group(0) @binding(1) var<storage, read> crops: array<Crop>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> warp_params: WarpParams;

fn byte_at(i: u32) -> f32 {
    return f32((pixels[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu);
}

fn texel(c: Crop, x: i32, y: i32) -> vec3<f32> {
    if x < 0 || y < 0 || x >= i32(c.width) || y >= i32(c.height) {
        return vec3<f32>(0.0);
    }
    let i = c.base * 4u + (u32(y) * c.width + u32(x)) * 3u;
    return vec3<f32>(byte_at(i), byte_at(i + 1u), byte_at(i + 2u));
}

@compute @workgroup_size(64)
fn warp(@builtin(global_invocation_id) gid: vec3<u32>) {
    let size = warp_params.size;
    let plane = size * size;
    let p = gid.x;
    let k = gid.y;
    if p >= plane || k >= warp_params.count {
        return;
    }
    let c = crops[k];
    let row = f32(p / size);
    let col = f32(p % size);
    let nf = f32(c.n);
    var acc = vec3<f32>(0.0);
    for (var sy = 0u; sy < c.n; sy++) {
        let v = row + (f32(sy) + 0.5) / nf - 0.5;
        for (var sx = 0u; sx < c.n; sx++) {
            let u = col + (f32(sx) + 0.5) / nf - 0.5;
            let px = c.a * u + c.b * v + c.tx;
            let py = c.c * u + c.d * v + c.ty;
            let x0 = floor(px);
            let y0 = floor(py);
            let fx = px - x0;
            let fy = py - y0;
            let xi = i32(x0);
            let yi = i32(y0);
            let top = texel(c, xi, yi) * (1.0 - fx) + texel(c, xi + 1, yi) * fx;
            let bottom = texel(c, xi, yi + 1) * (1.0 - fx) + texel(c, xi + 1, yi + 1) * fx;
            acc += top * (1.0 - fy) + bottom * fy;
        }
    }
    acc /= nf * nf;
    let o = warp_params.out_offset + k * 3u * plane + p;
    out[o] = acc.x;
    out[o + plane] = acc.y;
    out[o + 2u * plane] = acc.z;
}
