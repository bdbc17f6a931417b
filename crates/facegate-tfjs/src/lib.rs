//! TensorFlow.js weights → safetensors.
//!
//! A tfjs "layers/weights" model is a JSON manifest (groups of `{paths, weights}`) plus binary
//! shards holding every tensor back to back, row-major, in the manifest's order and in
//! TensorFlow's layout (NHWC activations, HWIO kernels). Tensors may be quantised to uint8
//! (`min + q * scale`) or float16. We dequantise exactly as tfjs does (the affine map in f64,
//! rounded once to f32), keep the tfjs names and layouts, and write safetensors. Layout changes
//! belong to the model code, next to the layer that needs them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TfjsError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("manifest is not valid tfjs JSON: {0}")]
    Manifest(#[from] serde_json::Error),
    #[error("model `{0}` not found in the package")]
    MissingModel(String),
    #[error("shard `{0}` named by the manifest is missing")]
    MissingShard(String),
    #[error("weights need {needed} bytes but the shards hold {available}")]
    ShardSize { needed: usize, available: usize },
    #[error("unsupported dtype `{dtype}` (quantisation {quant:?}) for tensor `{name}`")]
    Unsupported {
        name: String,
        dtype: String,
        quant: Option<String>,
    },
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Quantization {
    pub dtype: String,
    pub scale: Option<f64>,
    pub min: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WeightSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
    pub quantization: Option<Quantization>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WeightGroup {
    pub paths: Vec<String>,
    pub weights: Vec<WeightSpec>,
}

/// A dequantised tensor in tfjs naming and TensorFlow layout.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: TensorValues,
}

impl WeightSpec {
    fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn stored_bytes(&self) -> Result<usize, TfjsError> {
        let per = match (
            self.quantization.as_ref().map(|q| q.dtype.as_str()),
            self.dtype.as_str(),
        ) {
            (Some("uint8"), _) => 1,
            (Some("float16"), _) => 2,
            (None, "float32" | "int32") => 4,
            _ => return Err(self.unsupported()),
        };
        Ok(per * self.numel())
    }

    fn unsupported(&self) -> TfjsError {
        TfjsError::Unsupported {
            name: self.name.clone(),
            dtype: self.dtype.clone(),
            quant: self.quantization.as_ref().map(|q| q.dtype.clone()),
        }
    }

    /// Decode this tensor's bytes exactly as tfjs' `decodeWeights` does.
    fn decode(&self, bytes: &[u8]) -> Result<TensorValues, TfjsError> {
        let quant = self.quantization.as_ref();
        let affine = |q: u8| -> f64 {
            let quant = quant.expect("affine only for quantised tensors");
            q as f64 * quant.scale.unwrap_or(1.0) + quant.min.unwrap_or(0.0)
        };
        Ok(match (quant.map(|q| q.dtype.as_str()), self.dtype.as_str()) {
            (Some("uint8"), "float32") => TensorValues::F32(bytes.iter().map(|&q| affine(q) as f32).collect()),
            (Some("uint8"), "int32") => TensorValues::I32(bytes.iter().map(|&q| affine(q).round() as i32).collect()),
            (Some("float16"), "float32") => TensorValues::F32(
                bytes
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
            ),
            (None, "float32") => TensorValues::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            (None, "int32") => TensorValues::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            _ => return Err(self.unsupported()),
        })
    }
}

/// Parse a weights manifest and decode all tensors from the concatenated shards.
///
/// `shard` returns the bytes of a shard path named in the manifest.
pub fn decode_model(
    manifest_json: &[u8],
    mut shard: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Result<Vec<NamedTensor>, TfjsError> {
    let groups: Vec<WeightGroup> = serde_json::from_slice(manifest_json)?;
    let mut out = Vec::new();
    for group in groups {
        // Shards of one group are one byte stream split into files.
        let mut data = Vec::new();
        for path in &group.paths {
            data.extend(shard(path).ok_or_else(|| TfjsError::MissingShard(path.clone()))?);
        }
        let needed: usize = group.weights.iter().map(|w| w.stored_bytes()).sum::<Result<_, _>>()?;
        if needed != data.len() {
            return Err(TfjsError::ShardSize {
                needed,
                available: data.len(),
            });
        }
        let mut offset = 0;
        for spec in &group.weights {
            let len = spec.stored_bytes()?;
            let values = spec.decode(&data[offset..offset + len])?;
            offset += len;
            out.push(NamedTensor {
                name: spec.name.clone(),
                shape: spec.shape.clone(),
                values,
            });
        }
    }
    Ok(out)
}

/// The source of a conversion, recorded in the output's metadata and the model card.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub package: String,
    pub version: String,
    pub package_sha256: String,
}

/// An npm package tarball (`npm pack` output) read into memory.
pub struct NpmPackage {
    files: BTreeMap<String, Vec<u8>>,
    pub provenance: Provenance,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl NpmPackage {
    pub fn open(path: &Path) -> Result<Self, TfjsError> {
        let raw = std::fs::read(path)?;
        let package_sha256 = sha256_hex(&raw);
        let mut files = BTreeMap::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(raw.as_slice()));
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let wanted = name.ends_with("package.json")
                || name.contains("/model/")
                || name.ends_with(".bin")
                || name.ends_with(".json");
            if wanted {
                let mut buf = Vec::new();
                entry.read_to_end(&mut buf)?;
                files.insert(name, buf);
            }
        }
        let meta: serde_json::Value = files
            .get("package/package.json")
            .map(|b| serde_json::from_slice(b))
            .transpose()?
            .unwrap_or_default();
        let field = |k: &str| meta.get(k).and_then(|v| v.as_str()).unwrap_or("unknown").to_string();
        Ok(Self {
            provenance: Provenance {
                package: field("name"),
                version: field("version"),
                package_sha256,
            },
            files,
        })
    }

    /// Decode `package/model/<model>-weights_manifest.json` and its shards.
    pub fn model(&self, model: &str) -> Result<Vec<NamedTensor>, TfjsError> {
        let manifest = self
            .files
            .get(&format!("package/model/{model}-weights_manifest.json"))
            .ok_or_else(|| TfjsError::MissingModel(model.to_string()))?;
        decode_model(manifest, |p| self.files.get(&format!("package/model/{p}")).cloned())
    }
}

/// Serialise tensors to safetensors bytes with provenance metadata.
pub fn to_safetensors(tensors: &[NamedTensor], model: &str, provenance: &Provenance) -> Result<Vec<u8>, TfjsError> {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            let (dtype, data) = match &t.values {
                TensorValues::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
                TensorValues::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            };
            (t.name.clone(), dtype, t.shape.clone(), data)
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(n, d, s, b)| Ok((n.clone(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    let metadata: std::collections::HashMap<String, String> = [
        ("model", model.to_string()),
        ("source_package", provenance.package.clone()),
        ("source_version", provenance.version.clone()),
        ("source_sha256", provenance.package_sha256.clone()),
        (
            "layout",
            "tensorflow (NHWC/HWIO), names as in the tfjs manifest".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Ok(canonical_header(safetensors::serialize(views, Some(metadata))?))
}

/// safetensors writes its metadata map in hash order; rewrite the JSON header with sorted keys
/// (serde_json's default map) so the same input always gives the same bytes and sha256.
fn canonical_header(file: Vec<u8>) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().expect("8-byte length")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&file[8..8 + n]).expect("safetensors wrote valid JSON");
    let mut json = serde_json::to_vec(&header).expect("serialisable");
    // Keep the data 8-byte aligned, padding with spaces as safetensors does.
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + file.len() - 8 - n);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend_from_slice(&file[8 + n..]);
    out
}

/// Read safetensors bytes back into named tensors (f32 and i32 only).
pub fn from_safetensors(bytes: &[u8]) -> Result<Vec<NamedTensor>, TfjsError> {
    use safetensors::tensor::Dtype;
    let st = safetensors::SafeTensors::deserialize(bytes)?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values = match view.dtype() {
            Dtype::F32 => TensorValues::F32(
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            Dtype::I32 => TensorValues::I32(
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            other => {
                return Err(TfjsError::Unsupported {
                    name,
                    dtype: format!("{other:?}"),
                    quant: None,
                });
            }
        };
        out.push(NamedTensor {
            name,
            shape: view.shape().to_vec(),
            values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(weights: &str) -> Vec<u8> {
        format!(r#"[{{"paths":["a.bin"],"weights":[{weights}]}}]"#).into_bytes()
    }

    #[test]
    fn uint8_dequantisation_matches_the_affine_map() {
        let m = manifest(
            r#"{"name":"w","shape":[2,2],"dtype":"float32","quantization":{"dtype":"uint8","scale":0.5,"min":-1.0}}"#,
        );
        let t = decode_model(&m, |_| Some(vec![0, 1, 2, 255])).unwrap();
        assert_eq!(t[0].values, TensorValues::F32(vec![-1.0, -0.5, 0.0, 126.5]));
    }

    #[test]
    fn float16_and_float32_and_int32_decode() {
        let m = format!(
            r#"[{{"paths":["a.bin","b.bin"],"weights":[{},{},{}]}}]"#,
            r#"{"name":"h","shape":[2],"dtype":"float32","quantization":{"dtype":"float16"}}"#,
            r#"{"name":"f","shape":[1],"dtype":"float32"}"#,
            r#"{"name":"i","shape":[1],"dtype":"int32"}"#
        );
        let mut a: Vec<u8> = half::f16::from_f32(1.5).to_le_bytes().to_vec();
        a.extend(half::f16::from_f32(-2.0).to_le_bytes());
        let mut b = 3.25f32.to_le_bytes().to_vec();
        b.extend((-7i32).to_le_bytes());
        let t = decode_model(m.as_bytes(), |p| Some(if p == "a.bin" { a.clone() } else { b.clone() })).unwrap();
        assert_eq!(t[0].values, TensorValues::F32(vec![1.5, -2.0]));
        assert_eq!(t[1].values, TensorValues::F32(vec![3.25]));
        assert_eq!(t[2].values, TensorValues::I32(vec![-7]));
    }

    #[test]
    fn size_mismatch_and_missing_shard_are_errors() {
        let m = manifest(r#"{"name":"w","shape":[3],"dtype":"float32"}"#);
        assert!(matches!(
            decode_model(&m, |_| Some(vec![0; 8])),
            Err(TfjsError::ShardSize {
                needed: 12,
                available: 8
            })
        ));
        assert!(matches!(decode_model(&m, |_| None), Err(TfjsError::MissingShard(_))));
        assert!(matches!(
            decode_model(b"{not json", |_| None),
            Err(TfjsError::Manifest(_))
        ));
    }

    #[test]
    fn safetensors_round_trip_is_exact() {
        let tensors = vec![
            NamedTensor {
                name: "conv/filters".into(),
                shape: vec![1, 2, 3],
                values: TensorValues::F32(vec![0.1, -0.2, 0.3, f32::MIN_POSITIVE, 1e-30, 7.0]),
            },
            NamedTensor {
                name: "shape".into(),
                shape: vec![2],
                values: TensorValues::I32(vec![-1, 4]),
            },
        ];
        let prov = Provenance {
            package: "p".into(),
            version: "1".into(),
            package_sha256: "00".into(),
        };
        let bytes = to_safetensors(&tensors, "m", &prov).unwrap();
        let mut back = from_safetensors(&bytes).unwrap();
        back.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, tensors);
        // Deterministic bytes: the same input, the same file.
        assert_eq!(to_safetensors(&tensors, "m", &prov).unwrap(), bytes);
    }
}
