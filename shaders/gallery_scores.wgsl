// 1:N scan, every score: out[probe][gallery_row] for a chunk of the gallery (the full score
// matrix, e.g. all-vs-all impostor scores for an evaluation). Prepended: a storage snippet
// and gallery_scan.wgsl.

// Gallery rows per workgroup, as in topk_common.wgsl (which this kernel does not need).
const BLOCK: u32 = 256u;

@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let scores = scan_scores(lid, wid);
    let row = wid.x * BLOCK + lid;
    let p0 = wid.y * TILE_P;
    if row < params.rows {
        for (var p = 0u; p < TILE_P; p++) {
            if p0 + p < params.m {
                out[(p0 + p) * params.gallery_len + params.row_offset + row] = scores[p];
            }
        }
    }
}
