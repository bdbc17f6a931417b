//! A report from synthetic scores renders to every file, with the figures where people look.

use facegate_eval::report::{self, BucketLimits, Comparison, Context, Inputs, Quality};
use facegate_eval::{Scored, metrics};

#[test]
fn a_report_renders_to_json_markdown_svg_and_png() {
    // 40 photos of 20 people; genuine scores high, impostor scores spread lower, one refused.
    let quality: Vec<Quality> = (0..40)
        .map(|i| Quality {
            face_px: Some(80.0 + i as f32 * 2.0),
            sharpness: Some(10.0 + i as f32),
            yaw: Some(0.01 * i as f32),
            refused: (i == 39).then(|| "no_face".to_string()),
        })
        .collect();
    let mut comparisons = Vec::new();
    for a in 0..40usize {
        for b in a + 1..40 {
            let same = a / 2 == b / 2;
            let score = (a != 39 && b != 39).then(|| {
                let noise = ((a * 31 + b * 17) % 100) as f64 / 1000.0;
                if same { 0.93 + noise / 2.0 } else { 0.80 + noise }
            });
            comparisons.push(Comparison {
                a,
                b,
                scored: Scored { same, score },
            });
        }
    }
    let scored: Vec<Scored> = comparisons.iter().map(|c| c.scored).collect();
    let r = report::build(Inputs {
        context: Context {
            pairs_file: "synthetic".into(),
            model: "test-model@1".into(),
            ..Context::default()
        },
        quality: &quality,
        comparisons: &comparisons,
        pairs: metrics(&scored, 0.9),
        threshold: 0.9,
        target_fmrs: &[1e-2, 1e-4],
        limits: BucketLimits::default(),
    });
    let dir = tempfile::tempdir().unwrap();
    let files = facegate_report::write(&r, dir.path()).unwrap();
    assert_eq!(files.len(), 6);

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["context"]["model"], "test-model@1");
    assert_eq!(json["failed_images"], 1);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    // 780 comparisons, 20 genuine; 761 impostor of which 19 refused: 1e-4 is not resolved.
    assert!(md.contains("| `fmr_1e-2` | 0."), "{md}");
    assert!(
        md.contains("| `fmr_1e-4` | not resolved: needs 10000 impostor comparisons"),
        "{md}"
    );
    assert!(md.contains("| small_face |") && md.contains("(det.svg)"));

    let svg = std::fs::read_to_string(dir.path().join("det.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("DET curve") && svg.contains("<polyline"));
    for (name, colour) in [("det.png", [0u8, 114, 178]), ("scores.png", [0, 0, 0])] {
        let img = image::open(dir.path().join(name)).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (900, 640), "{name}");
        let painted = img.pixels().filter(|p| p.0 == colour).count();
        assert!(painted > 100, "{name}: {painted} pixels of {colour:?}");
    }
    // Text is drawn with the embedded font: the title row of the PNG is not blank.
    let det = image::open(dir.path().join("det.png")).unwrap().to_rgb8();
    let title_ink = (10..40)
        .flat_map(|y| (0..900).map(move |x| (x, y)))
        .filter(|&(x, y)| det.get_pixel(x, y).0 != [255, 255, 255])
        .count();
    assert!(title_ink > 200, "{title_ink} title pixels");
}
