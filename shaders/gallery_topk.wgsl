// 1:N scan, stage 1: the top-k of every block of BLOCK gallery rows per probe. Each probe's
// BLOCK scores (gallery_scan.wgsl) are sorted in workgroup memory and the best k written as
// candidates[probe][block][0..k]; topk_merge.wgsl reduces the candidates to the final top-k.
// Prepended: a storage snippet, topk_common.wgsl and gallery_scan.wgsl.

@group(0) @binding(3) var<storage, read_write> cand_score: array<f32>;
@group(0) @binding(4) var<storage, read_write> cand_index: array<u32>;

var<workgroup> keys: array<f32, 1024>; // TILE_P * BLOCK
var<workgroup> idx: array<u32, 1024>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let scores = scan_scores(lid, wid);
    let row = wid.x * BLOCK + lid;
    let p0 = wid.y * TILE_P;
    for (var p = 0u; p < TILE_P; p++) {
        var score = neg_inf();
        var index = EMPTY_INDEX;
        if row < params.rows && p0 + p < params.m {
            score = scores[p];
            index = params.row_offset + row;
        }
        keys[p * BLOCK + lid] = score;
        idx[p * BLOCK + lid] = index;
    }
    workgroupBarrier();
    bitonic_sort(lid, TILE_P);
    if lid < params.k {
        for (var p = 0u; p < TILE_P; p++) {
            if p0 + p < params.m {
                let o = ((p0 + p) * params.blocks + params.block_offset + wid.x) * params.k + lid;
                cand_score[o] = keys[p * BLOCK + lid];
                cand_index[o] = idx[p * BLOCK + lid];
            }
        }
    }
}
