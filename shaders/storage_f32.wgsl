// f32 storage: one vec4 of the embedding per element.
alias Packed = vec4<f32>;

fn unpack(v: Packed) -> vec4<f32> {
    return v;
}
