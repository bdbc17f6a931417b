// f16 storage without the `shader-f16` feature: four halves packed in two u32
// (`pack2x16float` layout: the lower 16 bits hold the first element). Accumulation stays f32.
alias Packed = vec2<u32>;

fn unpack(v: Packed) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}
