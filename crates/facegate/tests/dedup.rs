//! `facegate dedup` on the fixtures in data/: which photos show a face enrolled under another
//! identity. The expected answer is computed here, independently, from `facegate embed`'s
//! descriptors and f64 cosines; the command is run on the CPU (f64 top-k) and on wgpu (the
//! WGSL top-k kernel; lavapipe in CI).

mod common;

use std::collections::BTreeMap;

use common::{cosine, run};
use serde_json::Value;

fn data(name: &str) -> String {
    common::data(name).display().to_string()
}

/// The command's JSON lines.
fn facegate(args: &[&str]) -> Vec<Value> {
    String::from_utf8(run(args).stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect()
}

#[test]
fn duplicates_across_identities_are_flagged() {
    // face-a.png and exif-rotated.jpg are the same photo of one person (the JPEG rotated by
    // EXIF), face-a.jpg the same person again; enrolled as alice twice and bob once.
    let list = [
        ("alice", "face-a.png"),
        ("bob", "exif-rotated.jpg"),
        ("alice", "face-a.jpg"),
        ("carol", "face-c.png"),
        ("dave", "face-d.png"),
        ("erin", "no-face.png"),
        ("frank", "missing.png"),
        ("gina", "face-e.png"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("enrolment.tsv");
    let text: String = list
        .iter()
        .map(|(id, photo)| format!("{id}\t{}\n", data(photo)))
        .collect();
    std::fs::write(&path, format!("# identity\tphoto\n{text}")).unwrap();

    // The reference: every pair of templates of different identities at or above the threshold.
    let photos: Vec<String> = list
        .iter()
        .filter(|(_, p)| *p != "missing.png")
        .map(|(_, p)| data(p))
        .collect();
    let mut args = vec!["embed", "--json", "--device", "cpu"];
    args.extend(photos.iter().map(String::as_str));
    let embedded = facegate(&args);
    let descriptor: BTreeMap<String, Vec<f64>> = embedded
        .iter()
        .filter(|v| v["descriptor"].is_array())
        .map(|v| {
            let d = v["descriptor"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            (v["image"].as_str().unwrap().to_string(), d)
        })
        .collect();
    // At the shipped DevTrain calibration's strict point (FMR 1e-3): at the best-accuracy
    // threshold (FMR about 1 %) face-e.png, another woman, already scores 0.916 against alice.
    let calibration = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/calibration/mtcnn-faceplugin-mobilefacenet-512.lfw-devtrain.toml");
    let threshold = facegate_core::Calibration::read(&calibration)
        .unwrap()
        .threshold(Some("fmr_1e-3"))
        .unwrap() as f64;
    let mut want: BTreeMap<usize, BTreeMap<usize, f64>> = BTreeMap::new();
    for (i, (id_i, p_i)) in list.iter().enumerate() {
        for (j, (id_j, p_j)) in list.iter().enumerate() {
            if let (Some(a), Some(b)) = (descriptor.get(&data(p_i)), descriptor.get(&data(p_j))) {
                let s = cosine(a, b);
                if i != j && id_i != id_j && s >= threshold {
                    want.entry(i).or_default().insert(j, s);
                }
            }
        }
    }
    // What the fixtures are for: alice and bob flagged, alice's two photos not against each
    // other, the rest clean.
    assert_eq!(want.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2], "{want:?}");
    assert!(!want[&0].contains_key(&2) && want[&1].contains_key(&0) && want[&1].contains_key(&2));

    let mut devices = vec!["cpu"];
    if !facegate_pipeline::device::wgpu_adapters().is_empty() {
        devices.push("gpu");
    } else {
        assert!(std::env::var_os("FACEGATE_REQUIRE_WGPU").is_none(), "no wgpu adapter");
    }
    for device in devices {
        let out = facegate(&[
            "dedup",
            path.to_str().unwrap(),
            "--k",
            "7",
            "--device",
            device,
            "--calibration",
            calibration.to_str().unwrap(),
            "--operating-point",
            "fmr_1e-3",
        ]);
        let summary = &out.last().unwrap()["summary"];
        assert_eq!(summary["photos"], 8, "{device}");
        assert_eq!(summary["templates"], 6, "{device}");
        assert_eq!(summary["refused"], 2, "{device}");
        assert_eq!(summary["flagged"], 3, "{device}");
        let refused: BTreeMap<u64, &str> = out
            .iter()
            .filter(|v| v["refused"].is_object())
            .map(|v| (v["row"].as_u64().unwrap(), v["refused"]["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            refused,
            BTreeMap::from([(5, "no_face"), (6, "unreadable_file")]),
            "{device}"
        );
        let got: BTreeMap<usize, BTreeMap<usize, f64>> = out
            .iter()
            .filter(|v| v["matches"].is_array())
            .map(|v| {
                let row = v["row"].as_u64().unwrap() as usize;
                assert_eq!(v["identity"], list[row].0);
                let matches = v["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| (m["row"].as_u64().unwrap() as usize, m["score"].as_f64().unwrap()))
                    .collect();
                (row, matches)
            })
            .collect();
        assert_eq!(
            got.iter()
                .map(|(r, m)| (*r, m.keys().copied().collect()))
                .collect::<Vec<(usize, Vec<usize>)>>(),
            want.iter()
                .map(|(r, m)| (*r, m.keys().copied().collect()))
                .collect::<Vec<(usize, Vec<usize>)>>(),
            "{device}"
        );
        for (row, matches) in &got {
            for (other, score) in matches {
                let w = want[row][other];
                // Descriptors from the CPU engine; wgpu's differ by float rounding.
                assert!((score - w).abs() < 1e-4, "{device}: {row}~{other} {score} vs {w}");
            }
        }
        // Nothing biometric or identifying beyond the list's identities: no path, no template.
        let lines: String = out[..out.len() - 1].iter().map(|v| v.to_string()).collect();
        assert!(
            !lines.contains(".png") && !lines.contains(".jpg") && !lines.contains("descriptor"),
            "{lines}"
        );
    }
}
