//! The committed conversion against face-api's uint8 copy of the same network, and (when the
//! PyPI package is unpacked under `.dev/pkgs`, see the bin's docs) against a fresh conversion.

use std::collections::BTreeMap;
use std::path::PathBuf;

use facegate_dlib::{DlibError, MODEL, PACKAGE, PACKAGE_VERSION, convert};
use facegate_tfjs::{NamedTensor, Provenance, TensorValues, from_safetensors, sha256_hex, to_safetensors};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn load(file: &str) -> BTreeMap<String, NamedTensor> {
    let path = repo().join("models").join(file);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    from_safetensors(&bytes)
        .unwrap()
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect()
}

fn f32s(t: &NamedTensor) -> &[f32] {
    match &t.values {
        TensorValues::F32(v) => v,
        TensorValues::I32(_) => panic!("{} is not f32", t.name),
    }
}

#[test]
fn committed_file_has_117_tensors_and_5614592_parameters() {
    let dlib = load("dlib_face_recognition_resnet_model_v1.safetensors");
    assert_eq!(dlib.len(), 117);
    let params: usize = dlib.values().map(|t| t.shape.iter().product::<usize>()).sum();
    assert_eq!(params, 5_614_592);
    assert_eq!(dlib["fc"].shape, [256, 128]);
    assert_eq!(dlib["conv32_down/conv/filters"].shape, [7, 7, 3, 32]);
}

/// face-api quantised 109 of these tensors to uint8 (`min + q·scale`, scale = (max − min)/255)
/// from dlib's floats, and kept the 8 conv64 filters as float32. So every face-api value must
/// be within half a step of ours, and those 8 bit-identical.
#[test]
fn matches_face_api_within_half_a_quantisation_step() {
    let dlib = load("dlib_face_recognition_resnet_model_v1.safetensors");
    let face_api = load("face_recognition_model.safetensors");
    assert_eq!(
        dlib.keys().collect::<Vec<_>>(),
        face_api.keys().collect::<Vec<_>>(),
        "same tensor names"
    );
    let mut float_tensors = 0;
    let mut worst: (f64, &str) = (0.0, "");
    for (name, ours) in &dlib {
        let theirs = &face_api[name];
        assert_eq!(ours.shape, theirs.shape, "{name}");
        let (a, b) = (f32s(ours), f32s(theirs));
        if name.starts_with("conv64_") && name.ends_with("/conv/filters") {
            float_tensors += 1;
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} is float32 in face-api and must be bit-identical"
            );
            continue;
        }
        let (min, max) = b.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        let step = (max as f64 - min as f64) / 255.0;
        let max_err = a
            .iter()
            .zip(b)
            .map(|(&x, &y)| (x as f64 - y as f64).abs())
            .fold(0.0, f64::max);
        // Half a step, plus a few f32 ulps: face-api's values (and so our estimate of its step)
        // are rounded to f32, and a value within rounding noise of a midpoint may go either way.
        let bound = 0.5 * step + 4.0 * f32::EPSILON as f64 * (max.abs().max(min.abs()) as f64);
        assert!(
            max_err <= bound,
            "{name}: max |dlib − face-api| = {max_err:e}, half a step = {:e}",
            0.5 * step
        );
        if step > 0.0 && max_err / step > worst.0 {
            worst = (max_err / step, name);
        }
    }
    assert_eq!(float_tensors, 8);
    eprintln!("largest error: {:.6} of a quantisation step ({})", worst.0, worst.1);
}

/// The unpacked PyPI package, when present (it is 100 MB; tests that need it skip without it).
fn package() -> Option<(Vec<u8>, PathBuf)> {
    let pkgs = repo().join(".dev/pkgs");
    let dat = pkgs
        .join("face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat");
    let tarball = pkgs.join("face_recognition_models-0.3.0.tar.gz");
    match std::fs::read(&dat) {
        Ok(bytes) if tarball.exists() => Some((bytes, tarball)),
        _ => {
            eprintln!("skipped: {} not unpacked", dat.display());
            None
        }
    }
}

#[test]
fn dat_converts_to_the_committed_bytes() {
    let Some((dat, tarball)) = package() else { return };
    let provenance = Provenance {
        package: PACKAGE.into(),
        version: PACKAGE_VERSION.into(),
        package_sha256: sha256_hex(&std::fs::read(tarball).unwrap()),
    };
    let bytes = to_safetensors(&convert(&dat).unwrap(), MODEL, &provenance).unwrap();
    let committed = std::fs::read(repo().join("models/dlib_face_recognition_resnet_model_v1.safetensors")).unwrap();
    assert_eq!(sha256_hex(&bytes), sha256_hex(&committed));
}

#[test]
fn damaged_dat_is_an_error_not_a_panic() {
    let Some((dat, _)) = package() else { return };
    // Cuts in the header, inside the first layers' records, in the middle of the weights,
    // and in the last layers' records.
    let n = dat.len();
    let cuts = (0..2000)
        .chain((2000..40_000).step_by(97))
        .chain([n / 2, n - 300])
        .chain((n - 200..n).step_by(19));
    for cut in cuts {
        assert!(
            matches!(convert(&dat[..cut]), Err(DlibError::Truncated { .. })),
            "cut at {cut}"
        );
    }
    let mut longer = dat.clone();
    longer.push(0);
    assert!(matches!(
        convert(&longer),
        Err(DlibError::TrailingBytes { count: 1, .. })
    ));
    // Flipped bits in the records before the first weights and after the last must fail
    // cleanly (or, where they only change a training multiplier, convert). The header flips
    // run on the first 64 KiB so each costs a short parse; the tail flips need the whole file.
    let mut head = dat[..65536].to_vec();
    for at in 0..0x15d {
        for bit in [0x01, 0x10, 0x80] {
            head[at] ^= bit;
            assert!(convert(&head).is_err());
            head[at] ^= bit;
        }
    }
    let mut bad = dat;
    for at in (n - 220..n).step_by(11) {
        for bit in [0x01, 0x80] {
            bad[at] ^= bit;
            let _ = convert(&bad);
            bad[at] ^= bit;
        }
    }
}
