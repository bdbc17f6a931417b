//! End-to-end accuracy on real photos from ../shared/data, through the CLI.

mod common;

use common::{cosine, data, run, shared};

/// Regression floors under the measured values (README "Accuracy"; MTCNN, ArcFace template,
/// faceplugin's MobileFaceNet-512): LFW DevTest 99.2 % at the DevTrain threshold, 99.4 % best,
/// FNMR 1.4 % at FMR 1e-3 all-vs-all, no failure to detect. Each bound leaves two genuine pairs
/// (0.4 points) of slack; the issue asked for faceplugin's 2.8 % within 0.5 points.
const MIN_LFW_ACCURACY: f64 = 0.988;
const MIN_LFW_BEST_ACCURACY: f64 = 0.99;
const MAX_LFW_FNMR_AT_FMR_1E3: f64 = 0.018;
const MAX_LFW_FAILURE_TO_DETECT: f64 = 0.003;
const MAX_FACES_LABELED_EER: f64 = 0.01;

fn eval(pairs: &str, extra: &[&str]) -> serde_json::Value {
    let pairs = shared(pairs);
    let mut args = vec!["eval", "--pairs", &pairs, "--device", "cpu", "--json"];
    args.extend(extra);
    serde_json::from_slice(&run(&args).stdout).expect("JSON")
}

#[test]
#[ignore = "needs ../shared/data"]
fn lfw_dev_test_accuracy_and_failure_to_detect() {
    let v = eval("lfw-view1/pairsDevTest.txt", &["--all-pairs"]);
    let m = &v["pairs"];
    assert_eq!(m["pairs"], 1000);
    let ftd = v["failure_to_detect_rate"].as_f64().unwrap();
    assert!(ftd <= MAX_LFW_FAILURE_TO_DETECT, "failure to detect {ftd}");
    let acc = m["accuracy"].as_f64().unwrap();
    assert!(acc >= MIN_LFW_ACCURACY, "accuracy {acc}");
    let best = m["best_accuracy"].as_f64().unwrap();
    assert!(best >= MIN_LFW_BEST_ACCURACY, "best accuracy {best}");
    let strict = v["operating_points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "fmr_1e-3")
        .expect("fmr_1e-3 resolved with all-vs-all impostors");
    let fnmr = strict["fnmr"].as_f64().unwrap();
    assert!(fnmr <= MAX_LFW_FNMR_AT_FMR_1E3, "FNMR at FMR 1e-3: {fnmr}");
}

#[test]
#[ignore = "needs ../shared/data"]
fn faces_labeled_pairs() {
    let v = eval("faces-labeled/pairs.tsv", &[]);
    let m = &v["pairs"];
    assert_eq!(m["pairs"], 1830);
    assert!(m["eer"].as_f64().unwrap() <= MAX_FACES_LABELED_EER, "{m}");
}

fn close(got: &serde_json::Value, want: f64, tol: f64, what: &str) {
    let g = got.as_f64().unwrap_or_else(|| panic!("{what}: {got}"));
    assert!((g - want).abs() <= tol, "{what}: report {g}, independent {want}");
}

/// The report on faces-labeled against figures computed here from `facegate embed`'s
/// descriptors in f64 with brute-force definitions; then the calibration it writes drives
/// `verify`; and `--all-pairs` (all-vs-all through the score matrix) agrees with the listed
/// pairs, which on this list are all pairs already.
#[test]
#[ignore = "needs ../shared/data"]
fn evaluation_report_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let report_dir = dir.path().join("report");
    let cal = dir.path().join("cal.toml");
    let v = eval(
        "faces-labeled/pairs.tsv",
        &[
            "--report",
            report_dir.to_str().unwrap(),
            "--write-calibration",
            cal.to_str().unwrap(),
            "--default-point",
            "fmr_1e-2",
        ],
    );

    // Independent: descriptors from `facegate embed`, pairs parsed here.
    let root = shared("faces-labeled");
    let tsv = std::fs::read_to_string(format!("{root}/pairs.tsv")).unwrap();
    let pairs: Vec<(String, String, bool)> = tsv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[1].to_string(), f[2] == "1")
        })
        .collect();
    let mut names: Vec<&String> = pairs.iter().flat_map(|p| [&p.0, &p.1]).collect();
    names.sort();
    names.dedup();
    let mut args = vec!["embed".to_string(), "--json".into(), "--device".into(), "cpu".into()];
    args.extend(names.iter().map(|n| format!("{root}/{n}")));
    let out = run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut templates = std::collections::HashMap::new();
    let mut face_px = std::collections::HashMap::new();
    for (line, name) in String::from_utf8(out.stdout).unwrap().lines().zip(&names) {
        let e: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(d) = e["descriptor"].as_array() {
            templates.insert(
                name.as_str(),
                d.iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>(),
            );
            let f = &e["face"];
            face_px.insert(
                name.as_str(),
                f["width"].as_f64().unwrap().min(f["height"].as_f64().unwrap()),
            );
            // Its five landmarks, in the photo's pixels: inside the face's box.
            let points = e["landmarks"].as_array().expect("landmarks with a face");
            assert_eq!(points.len(), 5, "{name}");
            let (x, y) = (f["x"].as_f64().unwrap(), f["y"].as_f64().unwrap());
            for p in points {
                let (px, py) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
                let inside =
                    px > x && px < x + f["width"].as_f64().unwrap() && py > y && py < y + f["height"].as_f64().unwrap();
                assert!(inside, "{name}: {p} outside {f}");
            }
        }
    }
    let failed = names.len() - templates.len();
    assert_eq!(v["images"], names.len());
    assert_eq!(v["failed_images"], failed);

    let score = |p: &(String, String, bool)| -> Option<f64> {
        Some(cosine(templates.get(p.0.as_str())?, templates.get(p.1.as_str())?))
    };
    let (mut genuine, mut impostor, mut genuine_refused) = (vec![], vec![], 0usize);
    for p in &pairs {
        match (score(p), p.2) {
            (Some(s), true) => genuine.push(s),
            (Some(s), false) => impostor.push(s),
            (None, true) => genuine_refused += 1,
            (None, false) => {}
        }
    }
    let (ng, ni) = (genuine.len() as f64, impostor.len() as f64);
    let fmr = |t: f64| impostor.iter().filter(|&&s| s >= t).count() as f64 / ni;
    let fnmr = |t: f64| genuine.iter().filter(|&&s| s < t).count() as f64 / ng;
    let frr =
        |t: f64| (genuine.iter().filter(|&&s| s < t).count() + genuine_refused) as f64 / (ng + genuine_refused as f64);
    // Scores here are f64 from the printed f32 descriptors; the engine's are f32: a rate may
    // differ by one comparison where two scores are within float noise of each other.
    let (tg, ti) = (1.0 / ng + 1e-9, 1.0 / ni + 1e-9);

    let t = v["threshold"].as_f64().unwrap();
    close(&v["at_threshold"]["fmr"], fmr(t), ti, "FMR at the threshold");
    close(&v["at_threshold"]["fnmr"], fnmr(t), tg, "FNMR at the threshold");
    close(&v["at_threshold"]["frr"], frr(t), tg, "FRR at the threshold");
    // EER by brute force over every score as a threshold.
    let mut all: Vec<f64> = genuine.iter().chain(&impostor).copied().collect();
    all.sort_by(f64::total_cmp);
    let eer = all
        .iter()
        .map(|&t| ((fmr(t) - fnmr(t)).abs(), (fmr(t) + fnmr(t)) / 2.0))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap()
        .1;
    close(&v["eer"], eer, tg.max(ti), "EER");
    // Operating points: the lowest threshold with FMR at most the target.
    let mut desc = impostor.clone();
    desc.sort_by(|a, b| b.total_cmp(a));
    for (i, target) in [1e-2, 1e-3].into_iter().enumerate() {
        let p = &v["operating_points"][i];
        let allowed = (target * ni).floor() as usize;
        let want = desc[allowed];
        close(&p["threshold"], want, 1e-5, "operating-point threshold");
        let got = p["threshold"].as_f64().unwrap();
        assert!(fmr(got) <= target + ti, "FMR {} above {target}", fmr(got));
        close(&p["fnmr"], fnmr(got), tg, "FNMR at the operating point");
    }
    // 1e-4 needs 10,000 impostor comparisons: not resolved, not guessed.
    assert!(ni < 10_000.0);
    assert!(v["operating_points"][2]["threshold"].is_null());
    // The small-face bucket, membership decided here from embed's face boxes.
    let limit = v["bucket_limits"]["small_face_px"].as_f64().unwrap();
    let small = |n: &str| face_px.get(n).is_some_and(|&px| px < limit);
    let in_bucket: Vec<f64> = pairs
        .iter()
        .filter(|p| p.2 && (small(&p.0) || small(&p.1)))
        .filter_map(score)
        .collect();
    let bucket = v["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "small_face")
        .unwrap();
    assert_eq!(
        bucket["at_threshold"]["genuine"].as_u64().unwrap() as usize,
        in_bucket.len(),
        "{bucket}"
    );

    // The files people look at.
    for f in [
        "report.json",
        "report.md",
        "det.svg",
        "scores.svg",
        "det.png",
        "scores.png",
    ] {
        assert!(report_dir.join(f).is_file(), "{f}");
    }
    let back: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(back["eer"], v["eer"]);
    let det = image::open(report_dir.join("det.png")).unwrap().to_rgb8();
    assert_eq!(det.dimensions(), (900, 640));
    // Not a blank canvas: the curve's colour is on it.
    assert!(det.pixels().filter(|p| p.0 == [0, 114, 178]).count() > 100);
    let svg = std::fs::read_to_string(report_dir.join("det.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("FMR (false match rate)"));
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| `fmr_1e-2` |") && md.contains("small_face"));

    // The calibration drives verify: its default point, then a named one.
    let threshold_of = |extra: &[&str]| {
        let mut a = vec![
            "verify",
            "--json",
            "--device",
            "cpu",
            "--calibration",
            cal.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        let img = format!("{root}/img1.jpg");
        a.extend([img.as_str(), img.as_str()]);
        let out = run(&a);
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        r["threshold"].as_f64().unwrap()
    };
    let op = |name: &str| {
        v["operating_points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap()["threshold"]
            .as_f64()
            .unwrap()
    };
    assert!((threshold_of(&[]) - op("fmr_1e-2")).abs() < 1e-6);
    assert!((threshold_of(&["--operating-point", "fmr_1e-3"]) - op("fmr_1e-3")).abs() < 1e-6);
    // A calibration for another model is refused.
    let text = std::fs::read_to_string(&cal).unwrap();
    let model = v["context"]["model"].as_str().unwrap();
    std::fs::write(&cal, text.replace(model, "another-model@0")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["verify", "--device", "cpu", "--calibration", cal.to_str().unwrap()])
        .args([format!("{root}/img1.jpg"), format!("{root}/img1.jpg")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("calibrated for model another-model@0"));

    // All-vs-all on a list that already holds every pair: the same impostors, the same EER.
    let all_pairs = eval("faces-labeled/pairs.tsv", &["--all-pairs"]);
    let (a, b) = (&all_pairs["at_threshold"], &v["at_threshold"]);
    assert_eq!(
        a["impostor"].as_u64().unwrap(),
        b["impostor"].as_u64().unwrap() - (b["refused"].as_u64().unwrap() - b["refused_genuine"].as_u64().unwrap())
    );
    assert_eq!(a["genuine"], b["genuine"]);
    close(&all_pairs["eer"], v["eer"].as_f64().unwrap(), 1e-12, "EER, all-vs-all");
}

/// `eval --compare` over two committed reports: one table row and one DET curve per model,
/// with the figures each report holds.
#[test]
fn compare_puts_two_reports_side_by_side() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let reports = [
        root.join("docs/eval/dlib-resnet-v1-lfw-devtest/report.json"),
        root.join("docs/eval/mobilefacenet-512/lfw-devtest/report.json"),
    ];
    let list = reports
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cmp");
    run(&["eval", "--compare", &list, "--report", out.to_str().unwrap()]);
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    for path in &reports {
        let r: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let model = r["context"]["model"].as_str().unwrap();
        let row = md
            .lines()
            .find(|l| l.contains(&format!("`{model}`")))
            .unwrap_or_else(|| panic!("no row for {model}:\n{md}"));
        let fnmr = r["operating_points"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fmr_1e-3")
            .unwrap()["fnmr"]
            .as_f64()
            .unwrap();
        assert!(row.contains(&format!("{:.2} %", 100.0 * fnmr)), "{row}");
    }
    assert!(out.join("compare-det.png").is_file() && out.join("compare-det.svg").is_file());
}

/// `--cross-roles`: all-vs-all impostors are only a listed probe against a listed reference
/// (selfie against ID-card photo), each scored as `embed`'s descriptors give it; without it,
/// probes of different people are compared with each other too.
#[test]
fn cross_roles_keeps_only_probe_against_reference_impostors() {
    let probes = ["face-a.png", "face-b.png", "face-d.png", "face-e.png"];
    let cards = [
        "cards/card-a-ghost.jpg",
        "cards/card-a-halftone.jpg",
        "cards/card-a-rot90.jpg",
    ];
    let path = |n: &str| data(n).display().to_string();
    // face-a and its cards show person a; face-b, -d, -e three others.
    fn person(n: &str) -> &str {
        if n.contains("card-a") { "a" } else { &n[5..6] }
    }
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("pairs.tsv");
    let mut tsv = "probe\treference\tsame\tprobe_person\treference_person\n".to_string();
    for (p, c) in probes.iter().zip(cards.iter().cycle()) {
        let same = u8::from(person(p) == "a");
        tsv += &format!("{}\t{}\t{same}\t{}\ta\n", path(p), path(c), person(p));
    }
    std::fs::write(&list, tsv).unwrap();
    let list = list.to_str().unwrap();
    let base = ["eval", "--pairs", list, "--device", "cpu", "--json", "--all-pairs"];
    let report = |extra: &[&str]| -> serde_json::Value {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        serde_json::from_slice(&run(&args).stdout).expect("JSON")
    };
    let (cross, all) = (report(&["--cross-roles"]), report(&[]));

    let names: Vec<&str> = probes.iter().chain(&cards).copied().collect();
    let mut args = vec!["embed", "--json", "--device", "cpu"];
    let paths: Vec<String> = names.iter().map(|n| path(n)).collect();
    args.extend(paths.iter().map(String::as_str));
    let out = String::from_utf8(run(&args).stdout).unwrap();
    let template: Vec<Vec<f64>> = out
        .lines()
        .map(|l| {
            let e: serde_json::Value = serde_json::from_str(l).unwrap();
            let d = e["descriptor"].as_array().expect("every photo here has a face");
            d.iter().map(|x| x.as_f64().unwrap()).collect()
        })
        .collect();
    let threshold = cross["threshold"].as_f64().unwrap();
    let impostors = |cross_only: bool| {
        let mut scores = vec![];
        for i in 0..names.len() {
            for j in i + 1..names.len() {
                let one_of_each = (i < probes.len()) != (j < probes.len());
                if person(names[i]) != person(names[j]) && (one_of_each || !cross_only) {
                    scores.push(cosine(&template[i], &template[j]));
                }
            }
        }
        scores
    };
    for (r, cross_only) in [(&cross, true), (&all, false)] {
        let want = impostors(cross_only);
        let at = &r["at_threshold"];
        assert_eq!(
            at["impostor"].as_u64().unwrap() as usize,
            want.len(),
            "cross {cross_only}"
        );
        let false_matches = want.iter().filter(|&&s| s >= threshold).count();
        let fmr = at["fmr"].as_f64().unwrap();
        assert!(
            (fmr - false_matches as f64 / want.len() as f64).abs() < 1e-12,
            "cross {cross_only}: {fmr}"
        );
    }
    // Three impostor people against person a's three cards; all-vs-all adds b, d, e and a's
    // photo against each other.
    assert_eq!(impostors(true).len(), 9);
    assert_eq!(impostors(false).len(), 15);
}

/// A list whose photos are all missing (a wrong `--images` folder) is an error naming where it
/// looked, not a report of 0 % accuracy.
#[test]
fn a_list_of_missing_photos_is_an_error_not_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("pairs.tsv");
    std::fs::write(&list, "probe\treference\tsame\nface-a.png\tface-a.jpg\t1\n").unwrap();
    let wrong = dir.path().display().to_string();
    let args = |folder: &str| {
        let list = list.to_str().unwrap().to_string();
        ["eval", "--device", "cpu", "--pairs", &list, "--images", folder].map(String::from)
    };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args(&wrong))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("none of the 2 photos") && stderr.contains(&wrong),
        "{stderr}"
    );
    // The same list against the folder that holds them runs.
    let right = data("face-a.png").parent().unwrap().display().to_string();
    let right = args(&right);
    run(&right.iter().map(String::as_str).collect::<Vec<_>>());
}

/// `--groups`: each group's FNMR and FRR at an operating point equal a separate run of
/// `facegate eval` on only that group's genuine pairs at the same threshold; people the group
/// file does not list are counted as `unknown`, never dropped.
#[test]
#[ignore = "needs ../shared/data"]
fn group_rates_equal_a_run_on_the_groups_own_pairs() {
    let dir = tempfile::tempdir().unwrap();
    let images = shared("lfw-view1/lfw-deepfunneled");
    let groups_file = shared("lfw-view1/age-groups.tsv");
    let ages: std::collections::HashMap<String, String> = std::fs::read_to_string(&groups_file)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .map(|(p, g)| (p.to_string(), g.to_string()))
        .collect();
    // DevTest's first 120 genuine and first 40 impostor pairs: every age group and some
    // unlisted people, quick enough for the CI.
    let lines: Vec<String> = std::fs::read_to_string(shared("lfw-view1/pairsDevTest.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect();
    let genuine: Vec<&String> = lines
        .iter()
        .filter(|l| l.split_whitespace().count() == 3)
        .take(120)
        .collect();
    let impostor: Vec<&String> = lines
        .iter()
        .filter(|l| l.split_whitespace().count() == 4)
        .take(40)
        .collect();
    let write_list = |name: &str, rows: &[&String]| {
        let path = dir.path().join(name);
        let body: Vec<&str> = rows.iter().map(|s| s.as_str()).collect();
        std::fs::write(&path, format!("{}\n{}\n", rows.len(), body.join("\n"))).unwrap();
        path.display().to_string()
    };
    let all: Vec<&String> = genuine.iter().chain(&impostor).copied().collect();
    let list = write_list("subset.txt", &all);
    let report = run(&[
        "eval",
        "--pairs",
        &list,
        "--images",
        &images,
        "--all-pairs",
        "--groups",
        &groups_file,
        "--device",
        "cpu",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let dimension = &report["groups"][0];
    assert_eq!(dimension["name"], "age_group");
    let group = |name: &str| {
        dimension["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == name)
            .unwrap_or_else(|| panic!("no group {name}: {dimension}"))
            .clone()
    };
    let person = |l: &String| l.split_whitespace().next().unwrap().to_string();
    let age = |l: &String| ages.get(&person(l)).cloned().unwrap_or_else(|| "unknown".into());
    let mut misses = 0;
    for name in ["young", "middle", "senior", "unknown"] {
        let own: Vec<&String> = genuine.iter().copied().filter(|l| age(l) == name).collect();
        let g = group(name);
        assert_eq!(g["genuine"].as_u64().unwrap() as usize, own.len(), "{name}");
        if name == "unknown" {
            assert!(!own.is_empty(), "the subset has unlisted people");
            continue;
        }
        assert!(own.len() >= 5, "{name}: {} genuine pairs", own.len());
        let own_list = write_list(&format!("{name}.txt"), &own);
        for point in ["fmr_1e-3", "fmr_1e-4"] {
            let at = g["at"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["point"] == point)
                .unwrap()
                .clone();
            // The threshold as the engine takes it: the f32 at or above the f64 one.
            let t = at["threshold"].as_f64().unwrap();
            let mut t32 = t as f32;
            assert!(t32 > 0.0, "{t}");
            if f64::from(t32) < t {
                t32 = f32::from_bits(t32.to_bits() + 1);
            }
            let separate = run(&[
                "eval",
                "--pairs",
                &own_list,
                "--images",
                &images,
                "--threshold",
                &t32.to_string(),
                "--device",
                "cpu",
                "--json",
            ]);
            let separate: serde_json::Value = serde_json::from_slice(&separate.stdout).unwrap();
            let s = &separate["at_threshold"];
            let what = format!("{name} at {point}");
            close(
                &at["fnmr"]["rate"],
                s["fnmr"].as_f64().unwrap(),
                1e-12,
                &format!("{what}: FNMR"),
            );
            close(
                &at["frr"]["rate"],
                s["frr"].as_f64().unwrap(),
                1e-12,
                &format!("{what}: FRR"),
            );
            assert_eq!(at["frr"]["trials"], s["genuine"], "{what}");
            misses += at["fnmr"]["errors"].as_u64().unwrap();
        }
    }
    // Some group misses pairs, so the comparison above is not of zeros alone.
    assert!(misses > 0);
}
