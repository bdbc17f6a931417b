//! facenet-pytorch's MTCNN weights: the committed pnet fixture against the committed
//! conversion, and (when the wheel is unpacked under `.dev/pkgs`) all three against theirs.

use std::path::PathBuf;

use facegate_tfjs::{NamedTensor, from_safetensors};
use facegate_torch::read_state_dict;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn sorted(mut t: Vec<NamedTensor>) -> Vec<NamedTensor> {
    t.sort_by(|a, b| a.name.cmp(&b.name));
    t
}

fn committed(net: &str) -> Vec<NamedTensor> {
    let path = repo().join(format!("models/mtcnn_{net}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    sorted(from_safetensors(&bytes).unwrap())
}

fn shapes(t: &[NamedTensor]) -> Vec<(&str, &[usize])> {
    t.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect()
}

#[test]
fn pnet_fixture_gives_exactly_the_committed_tensors() {
    let pt = std::fs::read(repo().join("data/mtcnn-pnet.pt")).unwrap();
    let tensors = read_state_dict(&pt).unwrap();
    assert_eq!(
        shapes(&tensors),
        [
            ("conv1.weight", &[10, 3, 3, 3][..]),
            ("conv1.bias", &[10]),
            ("prelu1.weight", &[10]),
            ("conv2.weight", &[16, 10, 3, 3]),
            ("conv2.bias", &[16]),
            ("prelu2.weight", &[16]),
            ("conv3.weight", &[32, 16, 3, 3]),
            ("conv3.bias", &[32]),
            ("prelu3.weight", &[32]),
            ("conv4_1.weight", &[2, 32, 1, 1]),
            ("conv4_1.bias", &[2]),
            ("conv4_2.weight", &[4, 32, 1, 1]),
            ("conv4_2.bias", &[4]),
        ]
    );
    assert_eq!(sorted(tensors), committed("pnet"));
}

#[test]
fn pnet_fixture_damaged_is_an_error_not_a_panic() {
    let pt = std::fs::read(repo().join("data/mtcnn-pnet.pt")).unwrap();
    for cut in (0..pt.len()).step_by(7) {
        assert!(read_state_dict(&pt[..cut]).is_err(), "cut at {cut}");
    }
    // Flip bits throughout the pickles (the first 1,938 bytes); weight bytes are just data.
    let mut bad = pt;
    for at in 0..1938 {
        for bit in [0x01, 0x20, 0x80] {
            bad[at] ^= bit;
            let _ = read_state_dict(&bad);
            bad[at] ^= bit;
        }
    }
}

#[test]
fn all_three_nets_match_their_conversions() {
    let data = repo().join(".dev/pkgs/facenet_pytorch-2.6.0/facenet_pytorch/data");
    if !data.exists() {
        eprintln!("skipped: {} not unpacked", data.display());
        return;
    }
    let mut params = 0;
    for net in ["pnet", "rnet", "onet"] {
        let tensors = sorted(read_state_dict(&std::fs::read(data.join(format!("{net}.pt"))).unwrap()).unwrap());
        params += tensors.iter().map(|t| t.shape.iter().product::<usize>()).sum::<usize>();
        assert_eq!(tensors, committed(net), "{net}");
    }
    assert_eq!(params, 495_850);
}

#[test]
fn committed_nets_hold_495850_parameters() {
    let params: usize = ["pnet", "rnet", "onet"]
        .iter()
        .flat_map(|n| committed(n))
        .map(|t| t.shape.iter().product::<usize>())
        .sum();
    assert_eq!(params, 495_850);
    let onet = committed("onet");
    let find = |name: &str| onet.iter().find(|t| t.name == name).map(|t| t.shape.clone());
    assert_eq!(find("dense5.weight"), Some(vec![256, 1152]));
    assert_eq!(find("dense6_3.bias"), Some(vec![10]));
}
