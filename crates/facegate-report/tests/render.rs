//! A report from synthetic scores renders to every file, with the figures where people look.

use facegate_eval::report::{self, BucketLimits, Comparison, Context, Inputs, Quality};
use facegate_eval::{Scored, metrics};

/// A report on 40 photos of 20 people: genuine scores from `genuine`, impostors spread below.
fn synthetic(model: &str, genuine: f64) -> report::Report {
    synthetic_with(model, genuine, false)
}

/// [`synthetic`], optionally with an `age` dimension: people 0–9 `old`, 10–17 `young`, 18–19
/// unlisted.
fn synthetic_with(model: &str, genuine: f64, with_groups: bool) -> report::Report {
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
                if same { genuine + noise / 2.0 } else { 0.80 + noise }
            });
            comparisons.push(Comparison {
                a,
                b,
                scored: Scored { same, score },
            });
        }
    }
    let scored: Vec<Scored> = comparisons.iter().map(|c| c.scored).collect();
    let dimensions = ["age".to_string()];
    let labels = [(0..40)
        .map(|i| match i / 2 {
            0..10 => "old".to_string(),
            10..18 => "young".to_string(),
            _ => facegate_eval::groups::UNKNOWN.to_string(),
        })
        .collect::<Vec<_>>()];
    let people: Vec<usize> = (0..40).map(|i| i / 2).collect();
    report::build(Inputs {
        context: Context {
            pairs_file: "synthetic".into(),
            model: model.into(),
            ..Context::default()
        },
        quality: &quality,
        comparisons: &comparisons,
        pairs: metrics(&scored, 0.9),
        threshold: 0.9,
        target_fmrs: &[1e-2, 1e-4],
        limits: BucketLimits::default(),
        groups: with_groups.then_some(report::Groups {
            dimensions: &dimensions,
            labels: &labels,
            people: &people,
        }),
    })
}

#[test]
fn a_report_renders_to_json_markdown_svg_and_png() {
    let r = synthetic("test-model@1", 0.93);
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

#[test]
fn groups_render_as_tables_and_a_plot() {
    let r = synthetic_with("test-model@1", 0.93, true);
    let dir = tempfile::tempdir().unwrap();
    let files = facegate_report::write(&r, dir.path()).unwrap();
    assert_eq!(files.len(), 8);
    let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(md.contains("## By group") && md.contains("### `age`") && md.contains("(groups.svg)"));
    // old: 10 people, 20 photos, 10 genuine pairs; all genuine scores pass 0.9.
    assert!(
        md.contains("| old | 10 | 20 | 10 | 0 | 0.0 % [0.0, 27.8] (0/10) |"),
        "{md}"
    );
    // unknown: people 18 and 19, the last photo refused (its pair counts in FRR).
    assert!(md.contains("| unknown | 2 | 4 | 2 | 1 |"), "{md}");
    // The refusals table: none of old's 20 photos, one of unknown's 4 (Wilson 4.6–69.9 %).
    assert!(md.contains("| old | 0.0 % [0.0, 16.1] (0/20) |"), "{md}");
    assert!(md.contains("| unknown | 25.0 % [4.6, 69.9] (1/4) |"), "{md}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(json["groups"][0]["groups"][2]["name"], "unknown");
    let svg = std::fs::read_to_string(dir.path().join("groups.svg")).unwrap();
    assert!(svg.contains("FNMR by age"));
    let img = image::open(dir.path().join("groups.png")).unwrap().to_rgb8();
    // Each labelled group's points and bars in its own colour.
    for colour in [[0u8, 114, 178], [213, 94, 0]] {
        let painted = img.pixels().filter(|p| p.0 == colour).count();
        assert!(painted > 50, "{painted} pixels of {colour:?}");
    }
    // Without a group file the report has no group part.
    let plain = synthetic("test-model@1", 0.93);
    assert!(plain.groups.is_empty() && !facegate_report::markdown(&plain).contains("By group"));
}

#[test]
fn two_models_share_one_det_plot_and_one_table() {
    // A weak model, whose genuine scores overlap the impostors', and a strong one.
    let weak = synthetic("weak@1", 0.84);
    let strong = synthetic("strong@2", 0.93);
    assert!(weak.eer > strong.eer, "{} vs {}", weak.eer, strong.eer);
    let reports = vec![
        ("weak".to_string(), weak.clone()),
        ("strong".to_string(), strong.clone()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let files = facegate_report::write_comparison(&reports, dir.path()).unwrap();
    assert_eq!(files.len(), 3);
    let md = std::fs::read_to_string(dir.path().join("compare.md")).unwrap();
    // One row per model, with its own EER and FNMR at the resolved point.
    for (label, r) in &reports {
        let fnmr = r.operating_points[0].fnmr.unwrap();
        let row = md
            .lines()
            .find(|l| l.starts_with(&format!("| {label} |")))
            .expect("a row");
        assert!(row.contains(&format!("`{}`", r.context.model)), "{row}");
        assert!(row.contains(&format!("{:.2} %", 100.0 * r.eer)), "{row}");
        assert!(row.contains(&format!("{:.2} %", 100.0 * fnmr)), "{row}");
        assert!(row.contains("not resolved"), "{row}"); // FMR 1e-4 on 742 impostors
    }
    assert!(!md.contains("do not compare"));
    // Both curves, each in its own colour.
    let svg = std::fs::read_to_string(dir.path().join("compare-det.svg")).unwrap();
    for stroke in ["#0072B2", "#D55E00"] {
        let curves = svg
            .lines()
            .filter(|l| l.contains("<polyline") && l.contains(stroke))
            .count();
        // The curve, and its legend sample.
        assert!(curves >= 1, "no {stroke} curve");
    }
    let img = image::open(dir.path().join("compare-det.png")).unwrap().to_rgb8();
    for colour in [[0u8, 114, 178], [213, 94, 0]] {
        let painted = img.pixels().filter(|p| p.0 == colour).count();
        assert!(painted > 100, "{painted} pixels of {colour:?}");
    }
    // Reports on different pair files are flagged.
    let mut other = strong;
    other.context.pairs_file = "elsewhere".into();
    let md = facegate_report::comparison_markdown(&[("weak".into(), weak), ("other".into(), other)]);
    assert!(md.contains("do not compare"), "{md}");
}
