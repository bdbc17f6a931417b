//! PyTorch legacy `torch.save` state dicts → safetensors, without executing anything.
//!
//! The legacy stream (torch < 1.6 default, still what facenet-pytorch ships) is five pickles
//! — magic number, protocol version, sys_info, the state dict, the list of storage keys —
//! followed by each storage's raw data. [`pickle`] runs the pickles on a machine that can only
//! build data; [`read_state_dict`] checks the framing and cuts each tensor out of its storage.
//! Names and layouts stay PyTorch's (conv OIHW, linear `[out, in]`, PReLU `[C]`).

pub mod pickle;

use std::collections::{BTreeMap, HashMap};

use facegate_tfjs::{NamedTensor, Provenance, TensorValues};

use crate::pickle::{Object, Pickled, TensorRef};

/// The first pickle of a legacy file.
pub const MAGIC: i128 = 0x1950a86a20f9469cfc6c;
pub const PROTOCOL_VERSION: i128 = 1001;
/// What the output's `layout` metadata says (facegate-tfjs writes TensorFlow's by default).
pub const LAYOUT: &str = "pytorch (NCHW; conv OIHW, linear [out, in]), names as in the state_dict";

#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    #[error("truncated at offset {offset}: needed {needed} bytes, {available} left")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("pickle at offset {offset}: {what}")]
    Pickle { offset: usize, what: String },
    #[error("pickle at offset {offset} imports `{name}`, which is not on the allow-list")]
    ForbiddenGlobal { offset: usize, name: String },
    #[error("a zip-format torch.save file; only the legacy format is supported")]
    ZipFormat,
    #[error("not a legacy torch.save file: {0}")]
    NotLegacy(String),
    #[error("tensor `{name}`: {what}")]
    Tensor { name: String, what: String },
    #[error("storage `{key}`: {what}")]
    Storage { key: String, what: String },
    #[error("{count} bytes left over at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("tfjs/safetensors: {0}")]
    Safetensors(#[from] facegate_tfjs::TfjsError),
    #[error("safetensors header: {0}")]
    Header(String),
}

/// Read a legacy `torch.save(state_dict)` file: tensors in the state dict's order.
pub fn read_state_dict(bytes: &[u8]) -> Result<Vec<NamedTensor>, TorchError> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(TorchError::ZipFormat);
    }
    let (magic, pos) = pickle::load(bytes, 0)?;
    if magic.root() != &Object::Int(MAGIC) {
        return Err(TorchError::NotLegacy(format!(
            "first pickle is a {}",
            magic.root().kind()
        )));
    }
    let (protocol, pos) = pickle::load(bytes, pos)?;
    if protocol.root() != &Object::Int(PROTOCOL_VERSION) {
        return Err(TorchError::NotLegacy(format!("protocol version {:?}", protocol.root())));
    }
    let (sys_info, pos) = pickle::load(bytes, pos)?;
    // Storage bytes are in the saving machine's order; everything we read is little-endian.
    if lookup(&sys_info, "little_endian") != Some(&Object::Bool(true)) {
        return Err(TorchError::NotLegacy("sys_info does not say little_endian".into()));
    }
    let (state, pos) = pickle::load(bytes, pos)?;
    let tensors = state_dict(&state)?;
    let (keys, mut pos) = pickle::load(bytes, pos)?;
    let keys = storage_keys(&keys)?;

    // Every storage the state dict names, with the size its persistent id declared.
    let mut declared: HashMap<&str, usize> = HashMap::new();
    for object in state.objects() {
        if let Object::Storage(s) = object
            && *declared.entry(&s.key).or_insert(s.elements) != s.elements
        {
            return Err(storage_err(&s.key, "declared with two sizes"));
        }
    }
    // Then each storage in `keys` order: an int64 element count and the float32 data.
    let mut storages: HashMap<&str, Vec<f32>> = HashMap::new();
    for key in &keys {
        let elements = *declared
            .get(key.as_str())
            .ok_or_else(|| storage_err(key, "listed but no tensor uses it"))?;
        let count = i64::from_le_bytes(
            take(bytes, &mut pos, 8)?
                .try_into()
                .map_err(|_| storage_err(key, "count"))?,
        );
        if usize::try_from(count) != Ok(elements) {
            return Err(storage_err(
                key,
                &format!("holds {count} elements, its id says {elements}"),
            ));
        }
        let len = elements.checked_mul(4).ok_or_else(|| storage_err(key, "too large"))?;
        let data = take(bytes, &mut pos, len)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if storages.insert(key, data).is_some() {
            return Err(storage_err(key, "listed twice"));
        }
    }
    if pos != bytes.len() {
        return Err(TorchError::TrailingBytes {
            offset: pos,
            count: bytes.len() - pos,
        });
    }
    tensors
        .into_iter()
        .map(|(name, t)| {
            let storage = storages
                .get(t.storage.key.as_str())
                .ok_or_else(|| storage_err(&t.storage.key, "used but not in the key list"))?;
            let values = gather(storage, &t).map_err(|what| TorchError::Tensor {
                name: name.clone(),
                what,
            })?;
            Ok(NamedTensor {
                name,
                shape: t.shape,
                values: TensorValues::F32(values),
            })
        })
        .collect()
}

fn storage_err(key: &str, what: &str) -> TorchError {
    TorchError::Storage {
        key: key.into(),
        what: what.into(),
    }
}

fn take<'a>(bytes: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], TorchError> {
    let available = bytes.len() - *pos;
    if n > available {
        return Err(TorchError::Truncated {
            offset: *pos,
            needed: n,
            available,
        });
    }
    *pos += n;
    Ok(&bytes[*pos - n..*pos])
}

fn lookup<'p>(p: &'p Pickled, key: &str) -> Option<&'p Object> {
    let Object::Dict(pairs) = p.root() else { return None };
    pairs
        .iter()
        .find(|&&(k, _)| matches!(p.get(k), Object::Str(s) if s == key))
        .map(|&(_, v)| p.get(v))
}

/// The state dict: string keys to tensors, nothing else, no name twice.
fn state_dict(p: &Pickled) -> Result<Vec<(String, TensorRef)>, TorchError> {
    let Object::Dict(pairs) = p.root() else {
        return Err(TorchError::NotLegacy(format!(
            "the saved object is a {}",
            p.root().kind()
        )));
    };
    let mut seen = BTreeMap::new();
    pairs
        .iter()
        .map(|&(k, v)| match (p.get(k), p.get(v)) {
            (Object::Str(name), Object::Tensor(t)) => match seen.insert(name, ()) {
                None => Ok((name.clone(), t.clone())),
                Some(()) => Err(TorchError::Tensor {
                    name: name.clone(),
                    what: "appears twice".into(),
                }),
            },
            (k, v) => Err(TorchError::NotLegacy(format!(
                "state dict entry {} → {} (expected str → tensor)",
                k.kind(),
                v.kind()
            ))),
        })
        .collect()
}

fn storage_keys(p: &Pickled) -> Result<Vec<String>, TorchError> {
    let Object::List(items) = p.root() else {
        return Err(TorchError::NotLegacy(format!("storage keys are a {}", p.root().kind())));
    };
    items
        .iter()
        .map(|&i| match p.get(i) {
            Object::Str(s) => Ok(s.clone()),
            other => Err(TorchError::NotLegacy(format!("a storage key is a {}", other.kind()))),
        })
        .collect()
}

/// Copy a (possibly strided) view out of its storage in row-major order. A tensor with more
/// elements than its storage could only be a zero-stride (expanded) view, which state dicts
/// do not hold; refusing it keeps memory bounded by the file size.
fn gather(storage: &[f32], t: &TensorRef) -> Result<Vec<f32>, String> {
    let numel = t
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|&n| n <= storage.len())
        .ok_or_else(|| {
            format!(
                "shape {:?} has more elements than its storage ({})",
                t.shape,
                storage.len()
            )
        })?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The last element's index bounds every other one (strides are non-negative).
    let last = t
        .shape
        .iter()
        .zip(&t.stride)
        .try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        })
        .filter(|&i| i < storage.len())
        .ok_or_else(|| {
            format!(
                "offset {} shape {:?} stride {:?} reaches past its storage ({})",
                t.offset,
                t.shape,
                t.stride,
                storage.len()
            )
        })?;
    let contiguous = t
        .shape
        .iter()
        .zip(&t.stride)
        .rev()
        .try_fold(1usize, |expect, (&d, &s)| (d == 1 || s == expect).then(|| expect * d))
        .is_some();
    if contiguous {
        return Ok(storage[t.offset..=last].to_vec());
    }
    let mut index = vec![0usize; t.shape.len()];
    let mut out = Vec::with_capacity(numel);
    for _ in 0..numel {
        let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
        out.push(storage[at]);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < t.shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Ok(out)
}

/// `facegate_tfjs::to_safetensors`, with the `layout` metadata saying PyTorch's layout. The
/// header is rewritten the way facegate-tfjs writes it (sorted keys, space-padded to 8 bytes),
/// so the bytes stay deterministic.
pub fn to_safetensors(tensors: &[NamedTensor], model: &str, provenance: &Provenance) -> Result<Vec<u8>, TorchError> {
    let file = facegate_tfjs::to_safetensors(tensors, model, provenance)?;
    let header_err = |what: &str| TorchError::Header(what.into());
    let n = file
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|&n| 8 + n <= file.len())
        .ok_or_else(|| header_err("length"))?;
    let mut header: serde_json::Value =
        serde_json::from_slice(&file[8..8 + n]).map_err(|e| TorchError::Header(e.to_string()))?;
    let metadata = header
        .get_mut("__metadata__")
        .and_then(|m| m.as_object_mut())
        .ok_or_else(|| header_err("no __metadata__"))?;
    metadata.insert("layout".into(), LAYOUT.into());
    let mut json = serde_json::to_vec(&header).map_err(|e| TorchError::Header(e.to_string()))?;
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + json.len() + file.len() - 8 - n);
    out.extend((json.len() as u64).to_le_bytes());
    out.extend(json);
    out.extend_from_slice(&file[8 + n..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::tests::{int, unicode};

    fn framing() -> Vec<u8> {
        // magic (LONG1, 10 bytes), protocol version 1001, sys_info {'little_endian': True}
        let mut b = vec![0x80, 2, 0x8a, 10];
        b.extend(&MAGIC.to_le_bytes()[..10]);
        b.extend([b'.', 0x80, 2]);
        b.extend(int(1001));
        b.extend([b'.', 0x80, 2, b'}']);
        b.extend(unicode("little_endian"));
        b.extend([0x88, b's', b'.']);
        b
    }

    /// `_rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', elements, None), offset, shape, stride, False, OrderedDict())`
    fn tensor(key: &str, elements: u16, offset: u16, shape: &[u16], stride: &[u16]) -> Vec<u8> {
        let mut b = b"ctorch._utils\n_rebuild_tensor_v2\n((".to_vec();
        b.extend(unicode("storage"));
        b.extend(b"ctorch\nFloatStorage\n");
        b.extend(unicode(key));
        b.extend(unicode("cpu"));
        b.extend(int(elements));
        b.extend(b"NtQ");
        b.extend(int(offset));
        for dims in [shape, stride] {
            b.push(b'(');
            dims.iter().for_each(|&d| b.extend(int(d)));
            b.push(b't');
        }
        b.extend(b"\x89ccollections\nOrderedDict\n)RtR");
        b
    }

    /// A state dict {'w': 2×3 contiguous, 'b': [2] at offset 1, 'wt': 3×2 transposed view of
    /// 'w''s storage, 'p': a Parameter} and the storages "0" (6 floats) and "1" (3 floats).
    fn legacy_file() -> Vec<u8> {
        let mut b = framing();
        b.extend(b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(");
        b.extend(unicode("w"));
        b.extend(tensor("0", 6, 0, &[2, 3], &[3, 1]));
        b.extend(unicode("b"));
        b.extend(tensor("1", 3, 1, &[2], &[1]));
        b.extend(unicode("wt"));
        b.extend(tensor("0", 6, 0, &[3, 2], &[1, 3]));
        b.extend(unicode("p"));
        b.extend(b"ctorch._utils\n_rebuild_parameter\n(");
        b.extend(tensor("1", 3, 0, &[1, 1], &[1, 1]));
        b.extend(b"\x88h\x00)Rt");
        b.extend(b"Ru");
        // The state dict's `_metadata` attribute, set by BUILD.
        b.extend(b"}");
        b.extend(unicode("_metadata"));
        b.extend(b"h\x00)Rsb.");
        b.extend([0x80, 2, b']', b'(']);
        b.extend(unicode("0"));
        b.extend(unicode("1"));
        b.extend([b'e', b'.']);
        b.extend(6i64.to_le_bytes());
        [1.0f32, 2., 3., 4., 5., 6.]
            .iter()
            .for_each(|v| b.extend(v.to_le_bytes()));
        b.extend(3i64.to_le_bytes());
        [7.0f32, 8., 9.].iter().for_each(|v| b.extend(v.to_le_bytes()));
        b
    }

    fn values(t: &NamedTensor) -> (&str, &[usize], &[f32]) {
        let TensorValues::F32(v) = &t.values else { panic!() };
        (&t.name, &t.shape, v)
    }

    #[test]
    fn reads_a_hand_built_legacy_file() {
        let tensors = read_state_dict(&legacy_file()).unwrap();
        let got: Vec<_> = tensors.iter().map(values).collect();
        assert_eq!(
            got,
            [
                ("w", &[2, 3][..], &[1.0, 2., 3., 4., 5., 6.][..]),
                ("b", &[2], &[8., 9.]),
                ("wt", &[3, 2], &[1., 4., 2., 5., 3., 6.]),
                ("p", &[1, 1], &[7.]),
            ]
        );
    }

    #[test]
    fn truncation_anywhere_is_a_typed_error() {
        let bytes = legacy_file();
        for cut in 0..bytes.len() {
            match read_state_dict(&bytes[..cut]) {
                Err(TorchError::Truncated { .. }) => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(matches!(
            read_state_dict(&longer),
            Err(TorchError::TrailingBytes { count: 1, .. })
        ));
    }

    #[test]
    fn inconsistent_files_are_typed_errors() {
        let file = legacy_file();
        let replace = |from: &[u8], to: &[u8]| {
            let at = file.windows(from.len()).position(|w| w == from).unwrap();
            [&file[..at], to, &file[at + from.len()..]].concat()
        };
        let storage_error = |bytes: Vec<u8>| matches!(read_state_dict(&bytes), Err(TorchError::Storage { .. }));
        // The data's count disagrees with the persistent id.
        assert!(storage_error(replace(&6i64.to_le_bytes(), &5i64.to_le_bytes())));
        // A key listed that no tensor uses.
        assert!(storage_error(replace(&unicode("1"), &unicode("2"))));
        // A view that reaches past its storage.
        let past_end = replace(&tensor("1", 3, 1, &[2], &[1]), &tensor("1", 3, 2, &[2], &[1]));
        assert!(matches!(read_state_dict(&past_end), Err(TorchError::Tensor { name, .. }) if name == "b"));
        let too_big = replace(&tensor("1", 3, 1, &[2], &[1]), &tensor("1", 3, 0, &[2, 2], &[0, 0]));
        assert!(matches!(read_state_dict(&too_big), Err(TorchError::Tensor { .. })));
        // Not the legacy magic.
        assert!(matches!(
            read_state_dict(&replace(&[0x8a, 10], &[0x8a, 9])),
            Err(TorchError::NotLegacy(_) | TorchError::Pickle { .. })
        ));
        assert!(matches!(read_state_dict(b"PK\x03\x04rest"), Err(TorchError::ZipFormat)));
        // Big-endian data.
        let big_endian = replace(b"little_endian\x88", b"little_endian\x89");
        assert!(matches!(read_state_dict(&big_endian), Err(TorchError::NotLegacy(_))));
        // A forbidden global anywhere in the state dict pickle.
        let evil = replace(b"ctorch\nFloatStorage\n", b"cposix\nsystem\n\x85R");
        assert!(
            matches!(read_state_dict(&evil), Err(TorchError::ForbiddenGlobal { name, .. }) if name == "posix.system")
        );
    }

    #[test]
    fn output_metadata_names_the_pytorch_layout() {
        let tensors = read_state_dict(&legacy_file()).unwrap();
        let provenance = Provenance {
            package: "p".into(),
            version: "1".into(),
            package_sha256: "00".into(),
        };
        let bytes = to_safetensors(&tensors, "m", &provenance).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["layout"], LAYOUT);
        assert_eq!(header["__metadata__"]["model"], "m");
        let mut back = facegate_tfjs::from_safetensors(&bytes).unwrap();
        back.sort_by(|a, b| a.name.cmp(&b.name));
        let mut want = tensors;
        want.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back, want);
        assert_eq!(to_safetensors(&want, "m", &provenance).unwrap(), bytes, "deterministic");
    }
}
