// 1:N scan shared by gallery_topk.wgsl and gallery_scores.wgsl: cosine similarity of M probes
// against one chunk of the gallery.
//
// Workgroup (x = gallery block, y = probe tile): each thread owns one gallery row and scores it
// against TILE_P probes at once, so a gallery row read from memory serves TILE_P probes; the
// probes are staged through workgroup memory CHUNK4 vec4s at a time. Norms are accumulated in
// the same pass (fused normalisation). Prepended: a storage snippet (`Packed`, `unpack`) for
// the gallery; BLOCK comes from topk_common.wgsl or the kernel. Probes are always f32.

struct Params {
    m: u32,
    // Rows in this chunk.
    rows: u32,
    dim4: u32,
    k: u32,
    // Global index of the chunk's first row.
    row_offset: u32,
    // Candidate blocks per probe over all chunks, and this chunk's first block (top-k only).
    blocks: u32,
    block_offset: u32,
    // Rows in the whole gallery: the row stride of the score matrix (scores only).
    gallery_len: u32,
}

const TILE_P: u32 = 4u;
const CHUNK4: u32 = 64u;

@group(0) @binding(0) var<storage, read> probes: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> gallery: array<Packed>;
@group(0) @binding(2) var<uniform> params: Params;

var<workgroup> probe_tile: array<vec4<f32>, 256>; // TILE_P * CHUNK4
var<workgroup> probe_sq: array<f32, 4>;

// This thread's gallery row (`wid.x * BLOCK + lid`) against the workgroup's TILE_P probes.
// Entries for a missing row or probe are meaningless; callers mask them. Every thread of the
// workgroup must call it (it synchronises the workgroup).
fn scan_scores(lid: u32, wid: vec3<u32>) -> vec4<f32> {
    let row = wid.x * BLOCK + lid;
    let p0 = wid.y * TILE_P;
    let has_row = row < params.rows;
    var dots = vec4<f32>(0.0);
    var row_sq = 0.0;
    var own_probe_sq = 0.0;
    for (var c = 0u; c < params.dim4; c += CHUNK4) {
        let p = lid / CHUNK4;
        let j = c + lid % CHUNK4;
        var v = vec4<f32>(0.0);
        if p0 + p < params.m && j < params.dim4 {
            v = probes[(p0 + p) * params.dim4 + j];
        }
        probe_tile[lid] = v;
        workgroupBarrier();
        let end = min(CHUNK4, params.dim4 - c);
        if lid < TILE_P {
            for (var jj = 0u; jj < end; jj++) {
                let q = probe_tile[lid * CHUNK4 + jj];
                own_probe_sq += dot(q, q);
            }
        }
        if has_row {
            let base = row * params.dim4 + c;
            for (var jj = 0u; jj < end; jj++) {
                let x = unpack(gallery[base + jj]);
                row_sq += dot(x, x);
                dots += vec4<f32>(
                    dot(x, probe_tile[jj]),
                    dot(x, probe_tile[CHUNK4 + jj]),
                    dot(x, probe_tile[2u * CHUNK4 + jj]),
                    dot(x, probe_tile[3u * CHUNK4 + jj]),
                );
            }
        }
        workgroupBarrier();
    }
    if lid < TILE_P {
        probe_sq[lid] = own_probe_sq;
    }
    workgroupBarrier();
    var scores = vec4<f32>(0.0);
    for (var p = 0u; p < TILE_P; p++) {
        let norms = sqrt(row_sq) * sqrt(probe_sq[p]);
        scores[p] = select(0.0, dots[p] / norms, norms > 0.0);
    }
    return scores;
}
