// Top-k helpers shared by gallery_topk.wgsl and topk_merge.wgsl: a bitonic sort of BLOCK
// (score, index) entries per segment in workgroup memory, best first. "Best" is the higher
// score, then the lower index, so duplicate scores come out in a stable order by index. Empty
// slots hold (-inf, 0xffffffff) and sort last.

const BLOCK: u32 = 256u;
const EMPTY_INDEX: u32 = 0xffffffffu;

fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u);
}

fn better(ka: f32, ia: u32, kb: f32, ib: u32) -> bool {
    return ka > kb || (ka == kb && ia < ib);
}

// Sorts `segments` segments of BLOCK entries of `keys`/`idx`, one thread per entry. Every
// thread of the workgroup must call it (it synchronises the workgroup).
fn bitonic_sort(lid: u32, segments: u32) {
    for (var size = 2u; size <= BLOCK; size <<= 1u) {
        for (var stride = size >> 1u; stride > 0u; stride >>= 1u) {
            let partner = lid ^ stride;
            if partner > lid {
                // Best-first runs where (lid & size) == 0, worst-first elsewhere: bitonic merges.
                let best_first = (lid & size) == 0u;
                for (var s = 0u; s < segments; s++) {
                    let i = s * BLOCK + lid;
                    let j = s * BLOCK + partner;
                    let j_better = better(keys[j], idx[j], keys[i], idx[i]);
                    if j_better == best_first {
                        let k = keys[i];
                        keys[i] = keys[j];
                        keys[j] = k;
                        let x = idx[i];
                        idx[i] = idx[j];
                        idx[j] = x;
                    }
                }
            }
            workgroupBarrier();
        }
    }
}
