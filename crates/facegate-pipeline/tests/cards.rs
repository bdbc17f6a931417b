//! References that are phone photos of ID cards (`data/cards/`, made by
//! `tools/cards/make_cards.py` from the shipped faces): the main portrait is found past its
//! ghost, at every quarter turn, where the generator says it is; a selfie with a card held
//! beside the face is refused.

mod common;

use common::{data, engine, read};
use facegate_core::{Config, FaceBox, Rejection, cosine_similarity};
use facegate_pipeline::{Detected, DeviceChoice, Engine, FacePolicy, decode};

/// The generator's record of a card photo: the homography from the source photo's pixels to
/// the card photo's, and its conditions.
fn truth(name: &str) -> serde_json::Value {
    let path = data(&format!("cards/{name}.json"));
    serde_json::from_slice(&read(&path)).unwrap()
}

fn apply(h: &serde_json::Value, [x, y]: [f64; 2]) -> [f64; 2] {
    let m = |r: usize, c: usize| h[r][c].as_f64().unwrap();
    let w = m(2, 0) * x + m(2, 1) * y + m(2, 2);
    [
        (m(0, 0) * x + m(0, 1) * y + m(0, 2)) / w,
        (m(1, 0) * x + m(1, 1) * y + m(1, 2)) / w,
    ]
}

/// The largest face the detector finds on the plain source photo.
fn source_face(engine: &Engine, source: &str) -> Detected {
    let img = decode(&read(&data(source)), u64::MAX).unwrap();
    let found = engine.detect(&[&img]).remove(0);
    found
        .into_iter()
        .max_by(|a, b| a.face.width.total_cmp(&b.face.width))
        .unwrap()
}

/// The face box the detector draws on the plain source photo, carried into the card photo by
/// the generator's homography: the box the card's portrait should give.
fn expected_box(engine: &Engine, source: &str, h: &serde_json::Value) -> [f64; 4] {
    box_in_card(&source_face(engine, source), h)
}

fn box_in_card(source: &Detected, h: &serde_json::Value) -> [f64; 4] {
    let b = source.face;
    let (x0, y0, x1, y1) = (b.x as f64, b.y as f64, (b.x + b.width) as f64, (b.y + b.height) as f64);
    let corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]].map(|p| apply(h, p));
    let xs = corners.map(|p| p[0]);
    let ys = corners.map(|p| p[1]);
    let min = |v: [f64; 4]| v.into_iter().fold(f64::INFINITY, f64::min);
    let max = |v: [f64; 4]| v.into_iter().fold(f64::NEG_INFINITY, f64::max);
    [min(xs), min(ys), max(xs), max(ys)]
}

fn iou(a: [f64; 4], b: FaceBox) -> f64 {
    let b = [b.x as f64, b.y as f64, (b.x + b.width) as f64, (b.y + b.height) as f64];
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: [f64; 4]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

#[test]
fn the_main_portrait_is_found_past_its_ghost_at_every_turn() {
    let engine = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let plain = engine
        .analyze(&[&read(&data("face-a.png"))], &[FacePolicy::Dominant])
        .items
        .remove(0)
        .unwrap();
    let source = source_face(&engine, "face-a.png");
    let source_points = source.points.expect("MTCNN gives five points");
    for name in ["card-a-ghost", "card-a-rot90", "card-a-rot180", "card-a-rot270"] {
        let t = truth(name);
        assert_eq!(t["labels"]["ghost"], "yes", "{name}");
        let card = read(&data(&format!("cards/{name}.jpg")));
        let face = engine
            .analyze(&[&card], &[FacePolicy::Dominant])
            .items
            .remove(0)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Where the generator printed the portrait's face, not the ghost's.
        let want = box_in_card(&source, &t["H"]);
        let overlap = iou(want, face.face);
        assert!(
            overlap >= 0.8,
            "{name}: IoU {overlap:.3}, {:?} against {want:?}",
            face.face
        );
        // The five landmarks come back in the card photo's own pixels, turned or not: the
        // detector's points on the plain photo, carried by the homography, within a quarter of
        // the eyes' distance (a print this small moves them by up to about a tenth; a turn
        // mapped back wrongly, or the eyes swapped, moves them by the whole distance).
        let want_points = source_points.map(|p| apply(&t["H"], p));
        let eyes = (want_points[1][0] - want_points[0][0]).hypot(want_points[1][1] - want_points[0][1]);
        assert_eq!(face.landmarks.len(), 5, "{name}");
        for (got, want) in face.landmarks.iter().zip(want_points) {
            let off = (got[0] as f64 - want[0]).hypot(got[1] as f64 - want[1]);
            assert!(
                off < 0.25 * eyes,
                "{name}: {got:?} against {want:?} ({eyes:.1} px between the eyes)"
            );
        }
        // Turned back upright: the card's turn and ours make a whole one.
        let card_turn = t["labels"]["rotation"].as_u64().unwrap() as u16;
        assert_eq!(
            (card_turn + face.rotation) % 360,
            0,
            "{name}: found at {}°",
            face.rotation
        );
        // And it is the same person as the plain photo, by a wide margin.
        let score = cosine_similarity(plain.descriptor.as_slice(), face.descriptor.as_slice());
        assert!(score >= engine.threshold(), "{name}: {score}");
    }
}

#[test]
fn turning_is_for_references_and_can_be_switched_off() {
    let card = read(&data("cards/card-a-rot180.jpg"));
    let on = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let off = Config {
        reference_rotations: false,
        ..Config::default()
    };
    let off = facegate_pipeline::Engine::new(off, DeviceChoice::Cpu).unwrap();
    let turned = on.analyze(&[&card], &[FacePolicy::Dominant]).items.remove(0).unwrap();
    assert_eq!(turned.rotation, 180);
    // A selfie is never turned, nor a reference with turning off: whatever the detector makes
    // of the upside-down card, it is not the face found turned.
    for (engine, policy) in [(&on, FacePolicy::Single), (&off, FacePolicy::Dominant)] {
        if let Ok(face) = engine.analyze(&[&card], &[policy]).items.remove(0) {
            assert_eq!(face.rotation, 0);
            let same = cosine_similarity(face.descriptor.as_slice(), turned.descriptor.as_slice());
            assert!(same < 0.9, "{policy:?}: {same}");
        }
    }
}

#[test]
fn a_card_held_beside_the_face_in_a_selfie_is_refused() {
    let engine = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let selfie = read(&data("cards/selfie-b-with-card-a.jpg"));
    let out = engine.analyze(&[&selfie], &[FacePolicy::Single]).items.remove(0);
    assert!(
        matches!(out, Err(Rejection::MultipleFaces { count: 2.. })),
        "{:?}",
        out.map(|f| f.face)
    );
}

/// Encodes `img` as PNG (lossless: what the test drew is what the engine reads).
fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// `bytes` read as a reference (an ID card's photo): its face, or why there is none.
fn as_reference(engine: &Engine, bytes: &[u8]) -> Result<facegate_pipeline::Face, Rejection> {
    engine.analyze(&[bytes], &[FacePolicy::Dominant]).items.remove(0)
}

/// The default engine with glare removal off (`reference_glare_gate` 0).
fn without_glare_removal() -> Engine {
    let config = Config {
        reference_glare_gate: 0.0,
        ..Config::default()
    };
    Engine::new(config, DeviceChoice::Cpu).unwrap()
}

#[test]
fn a_portrait_hidden_by_glare_is_found_after_removal_or_refused_as_glare() {
    // Glare over card-c's portrait hides its face from the detector.
    let t = truth("card-c-glare");
    assert_eq!(t["labels"]["glare"], "on_portrait");
    let card = read(&data("cards/card-c-glare.jpg"));
    let analyse = as_reference;
    let off = without_glare_removal();
    assert_eq!(analyse(&off, &card).map(|f| f.face), Err(Rejection::NoFace));
    // Removed around the most washed-out spot, the face is found where the generator put it.
    let on = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let found = analyse(&on, &card).expect("found under the glare");
    let want = expected_box(&on, "face-c.png", &t["H"]);
    assert!(iou(want, found.face) >= 0.6, "{:?} against {want:?}", found.face);
    // A highlight that leaves nothing of the face (97 % white over the portrait's middle) is
    // refused with the reason the person can act on, not as "no face".
    let mut img = decode(&card, u64::MAX).unwrap();
    let size = |k: usize| t["source_size"][k].as_f64().unwrap();
    let [cx, cy] = apply(&t["H"], [(size(0) - 1.0) / 2.0, (size(1) - 1.0) / 2.0]);
    let q = &t["portrait_quad"];
    let width = (q[1][0].as_f64().unwrap() - q[0][0].as_f64().unwrap())
        .hypot(q[1][1].as_f64().unwrap() - q[0][1].as_f64().unwrap());
    let sigma = 0.45 * width;
    for (x, y, p) in img.enumerate_pixels_mut() {
        let d2 = (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2);
        let g = (0.97 * (-d2 / (2.0 * sigma * sigma)).exp()) as f32;
        for c in p.0.iter_mut() {
            *c = (*c as f32 + (255.0 - *c as f32) * g).round() as u8;
        }
    }
    assert_eq!(
        analyse(&on, &png(&img)).map(|f| f.face),
        Err(Rejection::GlareOnPortrait)
    );
    // Probes are never searched this way: a selfie has no card to tilt.
    let probe = on.analyze(&[&png(&img)], &[FacePolicy::Single]).items.remove(0);
    assert_eq!(probe.map(|f| f.face), Err(Rejection::NoFace));
}

#[test]
fn a_portrait_under_a_fainter_wash_is_found_by_the_glare_search_and_matches_its_photo() {
    // card-c-glare-faint: a wash the eye sees through but MTCNN does not; its most washed
    // spot averages under 0.85, the glare search's level before it was chosen on DevTrain.
    let t = truth("card-c-glare-faint");
    assert_eq!(t["labels"]["glare"], "on_portrait");
    let card = read(&data("cards/card-c-glare-faint.jpg"));
    let before = Engine::new(
        Config {
            reference_glare_spot: [0.85, 0.10],
            ..Config::default()
        },
        DeviceChoice::Cpu,
    )
    .unwrap();
    assert_eq!(as_reference(&before, &card).map(|f| f.face), Err(Rejection::NoFace));
    let engine = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let found = as_reference(&engine, &card).expect("found under the glare");
    let want = expected_box(&engine, "face-c.png", &t["H"]);
    assert!(iou(want, found.face) >= 0.6, "{:?} against {want:?}", found.face);
    // The face found is the person's: it matches her plain photo.
    let plain = as_reference(&engine, &read(&data("face-c.png"))).unwrap();
    let score = cosine_similarity(found.descriptor.as_slice(), plain.descriptor.as_slice());
    assert!(score >= engine.threshold(), "{score} under {}", engine.threshold());
}

#[test]
fn an_upside_down_face_the_detector_is_sure_of_is_turned_by_the_turn_check() {
    // face-a upside down: MTCNN still boxes it with a high score. The turn check looks at it
    // again on a small crop at each quarter turn and searches the photo at the turn it is
    // surest of, so the face is described upright.
    let plain = read(&data("face-a.png"));
    let upside_down = png(&image::imageops::rotate180(&decode(&plain, u64::MAX).unwrap()));
    let config = |check: bool| Config {
        // Only the check decides: the first search's doubt (a low score) is switched off.
        reference_upright_score: 0.0,
        reference_turn_check: check,
        ..Config::default()
    };
    let analyse = |engine: &Engine, bytes: &[u8]| as_reference(engine, bytes).unwrap();
    let on = Engine::new(config(true), DeviceChoice::Cpu).unwrap();
    let upright = analyse(&on, &plain);
    assert_eq!(upright.rotation, 0, "an upright photo stays as it is");
    let turned = analyse(&on, &upside_down);
    assert_eq!(turned.rotation, 180);
    let same = cosine_similarity(upright.descriptor.as_slice(), turned.descriptor.as_slice());
    assert!(same > 0.9, "{same}");
    // Without the check the face is described as the first search left it.
    let off = Engine::new(config(false), DeviceChoice::Cpu).unwrap();
    let first = analyse(&off, &upside_down);
    assert_eq!(first.rotation, 0, "the first search kept the upside-down face");
}

#[test]
fn a_halftone_portrait_is_descreened_and_matches_its_photo_better() {
    let t = truth("card-a-halftone");
    assert_eq!(t["labels"]["print"], "halftone");
    let on = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let off = Config {
        reference_descreen: false,
        ..Config::default()
    };
    let off = facegate_pipeline::Engine::new(off, DeviceChoice::Cpu).unwrap();
    let card = read(&data("cards/card-a-halftone.jpg"));
    let analyse = |engine: &Engine, bytes: &[u8]| as_reference(engine, bytes).unwrap();
    let plain = analyse(&on, &read(&data("face-a.png")));
    // The plain photo has no screen to take off; the card's portrait has one.
    assert_eq!(plain.descreened, 0.0);
    let (descreened, screened) = (analyse(&on, &card), analyse(&off, &card));
    assert_eq!(screened.descreened, 0.0);
    // The generator's screen, 3.5–6 px on its 1012 px card, is 2.2–3.8 px in this photo
    // (card 0.6 of 1200 px): σ is half of it.
    let card_px = 0.6 * 1200.0 / 1012.0;
    assert!(
        (0.5 * 3.5 * card_px * 0.9..=0.5 * 6.0 * card_px * 1.1).contains(&(descreened.descreened as f64)),
        "σ {}",
        descreened.descreened
    );
    let want = expected_box(&on, "face-a.png", &t["H"]);
    assert!(
        iou(want, descreened.face) >= 0.8,
        "{:?} against {want:?}",
        descreened.face
    );
    let score = |f: &facegate_pipeline::Face| cosine_similarity(plain.descriptor.as_slice(), f.descriptor.as_slice());
    assert!(
        score(&descreened) > score(&screened) + 0.05,
        "descreened {} against {}",
        score(&descreened),
        score(&screened)
    );
}

#[test]
fn a_reference_washed_by_glare_is_restored_and_matches_its_photo_better() {
    // face-a with a white wash over the face, drawn as the card generator draws glare
    // (I' = I + (255 − I)·g, g peaking at 0.75 over the face's centre).
    let clean = image::load_from_memory(&read(&data("face-a.png"))).unwrap().into_rgb8();
    let on = engine(DeviceChoice::Cpu, Config::default()).unwrap();
    let off = without_glare_removal();
    let plain = on
        .analyze(&[&read(&data("face-a.png"))], &[FacePolicy::Dominant])
        .items
        .remove(0)
        .unwrap();
    let f = plain.face;
    let (cx, cy, r) = (f.x + f.width / 2.0, f.y + f.height / 2.0, 0.8 * f.width);
    let mut washed = clean.clone();
    for (x, y, p) in washed.enumerate_pixels_mut() {
        let d2 = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)) / (r * r);
        let g = 0.75 * (-2.0 * d2).exp();
        for c in p.0.iter_mut() {
            *c = (*c as f32 + (255.0 - *c as f32) * g).round() as u8;
        }
    }
    let mut png = Vec::new();
    washed
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let analyse = |engine: &Engine| {
        engine
            .analyze(&[&png], &[FacePolicy::Dominant])
            .items
            .remove(0)
            .unwrap()
    };
    let score = |f: &facegate_pipeline::Face| cosine_similarity(plain.descriptor.as_slice(), f.descriptor.as_slice());
    let (restored, washed) = (analyse(&on), analyse(&off));
    assert!(
        score(&restored) > score(&washed) + 0.05,
        "restored {} against washed {}",
        score(&restored),
        score(&washed)
    );
    // The photo without glare is not touched: the same descriptor with the correction off.
    let untouched = off
        .analyze(&[&read(&data("face-a.png"))], &[FacePolicy::Dominant])
        .items
        .remove(0)
        .unwrap();
    assert_eq!(untouched.descriptor.as_slice(), plain.descriptor.as_slice());
}
