//! `dlib_face_recognition_resnet_model_v1` → face-api's tensor names and TensorFlow layouts.
//!
//! face-api.js' FaceRecognitionNet is a port of this network, and our loader
//! (`facegate-models/src/recognition.rs`) reads face-api's names. dlib's definition
//! (dnn_face_recognition_ex.cpp) is, from the input up:
//!
//! ```text
//! con<32,7,7,2,2> affine relu max_pool<3,3,2,2>
//! ares<32> ×3, ares_down<64>, ares<64> ×3, ares_down<128>, ares<128> ×2,
//! ares_down<256>, ares<256> ×2, ares_down<256>, avg_pool_everything, fc_no_bias<128>
//! ares      = tag1, con(s1), affine, relu, con(s1), affine, add_prev1, relu
//! ares_down = tag1, con(s2), affine, relu, con(s1), affine, tag2, skip1, avg_pool<2,2,2,2>, add_prev2, relu
//! ```
//!
//! We walk the parsed layers against this list, so any difference in a shape, stride, padding
//! or layer kind is an [`DlibError::Architecture`] error instead of a file that loads but computes
//! something else.

use facegate_tfjs::{NamedTensor, TensorValues};

use crate::DlibError;
use crate::net::{Layer, Network, Pool};

pub const INPUT_SIZE: usize = 150;
pub const DESCRIPTOR_LEN: usize = 128;

/// One expected layer, input to output.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Con {
        prefix: String,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        pad: usize,
    },
    Affine {
        prefix: String,
        channels: usize,
    },
    Relu,
    AddPrev,
    TagOrSkip,
    AvgPool(Pool),
    MaxPool(Pool),
    Fc {
        inputs: usize,
        outputs: usize,
    },
}

fn pool(window: usize, stride: usize) -> Pool {
    Pool {
        window: [window; 2],
        stride: [stride; 2],
        padding: [0; 2],
    }
}

/// face-api's block names with their width and whether they down-sample.
const BLOCKS: [(&str, usize, bool); 14] = [
    ("conv32_1", 32, false),
    ("conv32_2", 32, false),
    ("conv32_3", 32, false),
    ("conv64_down", 64, true),
    ("conv64_1", 64, false),
    ("conv64_2", 64, false),
    ("conv64_3", 64, false),
    ("conv128_down", 128, true),
    ("conv128_1", 128, false),
    ("conv128_2", 128, false),
    ("conv256_down", 256, true),
    ("conv256_1", 256, false),
    ("conv256_2", 256, false),
    ("conv256_down_out", 256, true),
];

fn expected() -> Vec<Step> {
    // dlib pads stride-1 3×3 convs by 1 and strided layers by 0 (its template defaults).
    let con = |prefix: String, cin, cout, k, stride| Step::Con {
        prefix,
        cin,
        cout,
        k,
        stride,
        pad: if stride == 1 { k / 2 } else { 0 },
    };
    let affine = |prefix: String, channels| Step::Affine { prefix, channels };
    let mut steps = vec![
        con("conv32_down".into(), 3, 32, 7, 2),
        affine("conv32_down".into(), 32),
        Step::Relu,
        Step::MaxPool(pool(3, 2)),
    ];
    let mut cin = 32;
    for (name, n, down) in BLOCKS {
        let (c1, c2) = (format!("{name}/conv1"), format!("{name}/conv2"));
        steps.push(Step::TagOrSkip);
        steps.push(con(c1.clone(), cin, n, 3, if down { 2 } else { 1 }));
        steps.extend([affine(c1, n), Step::Relu]);
        steps.push(con(c2.clone(), n, n, 3, 1));
        steps.push(affine(c2, n));
        if down {
            // tag2 on the block output, skip1 back to the block input, then its 2×2 average.
            steps.extend([Step::TagOrSkip, Step::TagOrSkip, Step::AvgPool(pool(2, 2))]);
        }
        steps.extend([Step::AddPrev, Step::Relu]);
        cin = n;
    }
    steps.push(Step::AvgPool(pool(0, 1)));
    steps.push(Step::Fc {
        inputs: 256,
        outputs: DESCRIPTOR_LEN,
    });
    steps
}

fn describe(step: &Step) -> String {
    match step {
        Step::Con {
            prefix,
            cin,
            cout,
            k,
            stride,
            pad,
        } => format!("con [{cout}, {cin}, {k}, {k}] stride {stride} padding {pad} with bias ({prefix})"),
        Step::Affine { prefix, channels } => format!("affine [1, {channels}, 1, 1] ({prefix})"),
        Step::Fc { inputs, outputs } => format!("fc {inputs}->{outputs} without bias"),
        other => fixed_layer(other).map_or_else(String::new, |l| l.describe()),
    }
}

/// The parameterless layer a step stands for, to compare and describe it.
fn fixed_layer(step: &Step) -> Option<Layer> {
    Some(match step {
        Step::Relu => Layer::Relu,
        Step::AddPrev => Layer::AddPrev,
        Step::TagOrSkip => Layer::TagOrSkip,
        Step::AvgPool(p) => Layer::AvgPool(*p),
        Step::MaxPool(p) => Layer::MaxPool(*p),
        _ => return None,
    })
}

fn f32_tensor(name: String, shape: Vec<usize>, values: Vec<f32>) -> NamedTensor {
    NamedTensor {
        name,
        shape,
        values: TensorValues::F32(values),
    }
}

/// dlib filters OIHW `[o, i, h, w]` → TensorFlow HWIO `[h, w, i, o]` (transpose (2, 3, 1, 0)).
/// `v.len()` must be `o·i·h·w`; callers pass shapes already checked against the expected net.
fn oihw_to_hwio(v: &[f32], [o, i, h, w]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; v.len()];
    for (src, &x) in v.iter().enumerate() {
        let (oi, hw) = (src / (h * w), src % (h * w));
        let (oo, ii) = (oi / i, oi % i);
        let (hh, ww) = (hw / w, hw % w);
        out[((hh * w + ww) * i + ii) * o + oo] = x;
    }
    out
}

/// Map a parsed network onto face-api's 117 tensors, checking every layer on the way.
pub fn face_api_tensors(net: &Network) -> Result<Vec<NamedTensor>, DlibError> {
    let architecture = |position: String, expected: String, found: String| DlibError::Architecture {
        position,
        expected,
        found,
    };
    if (net.input.rows, net.input.cols) != (INPUT_SIZE, INPUT_SIZE) {
        return Err(architecture(
            "input".into(),
            format!("input_rgb_image_sized {INPUT_SIZE}×{INPUT_SIZE}"),
            format!("{}×{}", net.input.rows, net.input.cols),
        ));
    }
    let steps = expected();
    if net.layers.len() != steps.len() {
        return Err(architecture(
            "layer count".into(),
            steps.len().to_string(),
            net.layers.len().to_string(),
        ));
    }
    let mut out = Vec::new();
    for (index, (step, layer)) in steps.iter().zip(&net.layers).enumerate() {
        let matched = match (step, layer) {
            (
                Step::Con {
                    prefix,
                    cin,
                    cout,
                    k,
                    stride,
                    pad,
                },
                Layer::Con(c),
            ) if c.filter_shape == [*cout, *cin, *k, *k] && c.stride == [*stride; 2] && c.padding == [*pad; 2] => {
                match &c.bias {
                    Some(bias) => {
                        let hwio = oihw_to_hwio(&c.filters, c.filter_shape);
                        out.push(f32_tensor(
                            format!("{prefix}/conv/filters"),
                            vec![*k, *k, *cin, *cout],
                            hwio,
                        ));
                        out.push(f32_tensor(format!("{prefix}/conv/bias"), vec![*cout], bias.clone()));
                        true
                    }
                    None => false,
                }
            }
            (Step::Affine { prefix, channels }, Layer::Affine(a)) if a.conv_mode && a.shape == [1, *channels, 1, 1] => {
                out.push(f32_tensor(
                    format!("{prefix}/scale/weights"),
                    vec![*channels],
                    a.gamma.clone(),
                ));
                out.push(f32_tensor(
                    format!("{prefix}/scale/biases"),
                    vec![*channels],
                    a.beta.clone(),
                ));
                true
            }
            // dlib's fc weights are `[inputs, outputs]` row-major: face-api's `fc` as is.
            (Step::Fc { inputs, outputs }, Layer::Fc(f))
                if f.num_inputs == *inputs && f.num_outputs == *outputs && f.bias.is_none() =>
            {
                out.push(f32_tensor("fc".into(), vec![*inputs, *outputs], f.weights.clone()));
                true
            }
            (step, layer) => fixed_layer(step).as_ref() == Some(layer),
        };
        if !matched {
            return Err(architecture(
                format!("layer {index} from the input"),
                describe(step),
                layer.describe(),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_network_has_dlibs_layer_counts() {
        let steps = expected();
        let count = |f: fn(&Step) -> bool| steps.iter().filter(|s| f(s)).count();
        // 130 layers between the input and the loss (model-notes §7.1: 132 with both).
        assert_eq!(steps.len(), 130);
        assert_eq!(count(|s| matches!(s, Step::Con { .. })), 29);
        assert_eq!(count(|s| matches!(s, Step::Affine { .. })), 29);
        assert_eq!(count(|s| matches!(s, Step::Relu)), 29);
        assert_eq!(count(|s| matches!(s, Step::AddPrev)), 14);
        assert_eq!(count(|s| matches!(s, Step::AvgPool(_))), 5);
        assert_eq!(count(|s| matches!(s, Step::MaxPool(_))), 1);
        assert_eq!(count(|s| matches!(s, Step::TagOrSkip)), 22);
    }

    /// A network with the expected layers and distinct weights, built from the step list.
    fn network() -> Network {
        let mut next = 0.0f32;
        let mut values = |n: usize| {
            (0..n)
                .map(|_| {
                    next += 1.0;
                    next
                })
                .collect::<Vec<f32>>()
        };
        let layers = expected()
            .iter()
            .map(|step| match step {
                Step::Con {
                    cin,
                    cout,
                    k,
                    stride,
                    pad,
                    ..
                } => Layer::Con(crate::net::Con {
                    filter_shape: [*cout, *cin, *k, *k],
                    stride: [*stride; 2],
                    padding: [*pad; 2],
                    filters: values(cout * cin * k * k),
                    bias: Some(values(*cout)),
                }),
                Step::Affine { channels, .. } => Layer::Affine(crate::net::Affine {
                    shape: [1, *channels, 1, 1],
                    conv_mode: true,
                    gamma: values(*channels),
                    beta: values(*channels),
                }),
                Step::Fc { inputs, outputs } => Layer::Fc(crate::net::Fc {
                    num_inputs: *inputs,
                    num_outputs: *outputs,
                    weights: values(inputs * outputs),
                    bias: None,
                }),
                other => fixed_layer(other).unwrap(),
            })
            .collect();
        Network {
            loss: crate::net::Loss::Metric {
                margin: 0.04,
                distance_threshold: 0.6,
            },
            input: crate::net::Input {
                mean_rgb: [122.782, 117.001, 104.298],
                rows: 150,
                cols: 150,
            },
            layers,
        }
    }

    #[test]
    fn maps_the_expected_network_to_face_api_names() {
        let tensors = face_api_tensors(&network()).unwrap();
        assert_eq!(tensors.len(), 117);
        let params: usize = tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum();
        assert_eq!(params, 5_614_592);
        let names: Vec<&str> = tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names[..6],
            [
                "conv32_down/conv/filters",
                "conv32_down/conv/bias",
                "conv32_down/scale/weights",
                "conv32_down/scale/biases",
                "conv32_1/conv1/conv/filters",
                "conv32_1/conv1/conv/bias"
            ]
        );
        assert_eq!(names[116], "fc");
        // The stem's first HWIO element is OIHW [0,0,0,0]; HWIO [0,0,1,0] is OIHW [0,1,0,0].
        let TensorValues::F32(stem) = &tensors[0].values else {
            panic!()
        };
        assert_eq!((stem[0], stem[32]), (1.0, 1.0 + 49.0));
    }

    #[test]
    fn any_difference_from_the_architecture_is_an_error() {
        let mismatch = |edit: fn(&mut Network)| {
            let mut net = network();
            edit(&mut net);
            match face_api_tensors(&net) {
                Err(DlibError::Architecture { position, .. }) => position,
                other => panic!("expected an architecture error, got {other:?}"),
            }
        };
        let stride = |net: &mut Network| {
            if let Layer::Con(c) = &mut net.layers[0] {
                c.stride = [1, 1];
            }
        };
        assert_eq!(mismatch(stride), "layer 0 from the input");
        let no_bias = |net: &mut Network| {
            if let Layer::Con(c) = &mut net.layers[5] {
                c.bias = None;
            }
        };
        assert_eq!(mismatch(no_bias), "layer 5 from the input");
        assert_eq!(mismatch(|net| net.layers.swap(2, 3)), "layer 2 from the input");
        assert_eq!(
            mismatch(|net| net.layers[129] = Layer::Relu),
            "layer 129 from the input"
        );
        assert_eq!(
            mismatch(|net| {
                net.layers.pop();
            }),
            "layer count"
        );
        assert_eq!(mismatch(|net| net.input.rows = 200), "input");
    }

    #[test]
    fn oihw_to_hwio_is_transpose_2_3_1_0() {
        let (o, i, h, w) = (2, 3, 4, 5);
        let v: Vec<f32> = (0..o * i * h * w).map(|x| x as f32).collect();
        let t = oihw_to_hwio(&v, [o, i, h, w]);
        for (oo, ii, hh, ww) in [(0, 0, 0, 0), (1, 2, 3, 4), (1, 0, 2, 1), (0, 2, 1, 3)] {
            assert_eq!(
                t[((hh * w + ww) * i + ii) * o + oo],
                v[((oo * i + ii) * h + hh) * w + ww]
            );
        }
    }
}
