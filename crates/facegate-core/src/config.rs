//! Engine configuration (TOML or JSON via serde). Every default is either the source
//! library's own setting (facenet-pytorch's MTCNN, dlib's chip, face-api's detector) or a value
//! measured on LFW's DevTrain split (see README).

use serde::{Deserialize, Serialize};

/// `Config::reference_screen_strength`'s default: fitted on LFW DevTrain (see README).
pub const SCREEN_STRENGTH: f32 = 0.35;

/// Which detector finds the faces and their landmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// MTCNN (facenet-pytorch's weights): boxes and five landmarks (eye centres, nose tip,
    /// mouth corners), which align the face as the recognition networks were trained.
    #[default]
    Mtcnn,
    /// face-api.js' TinyFaceDetector, then its 68-point landmark net (face-api.js parity).
    TinyFaceDetector,
}

/// How the face is cropped for the recognition net.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// face-api.js' `alignDlib` box: an axis-aligned, unrotated square from the eye and mouth
    /// centres (what face-api.js feeds its recognition net; kept for parity).
    FaceApi,
    /// dlib's `get_face_chip_details(shape, 150, 0.25)`: a similarity transform onto dlib's mean
    /// face (rotation and scale removed), as the network was trained: from MTCNN's five points
    /// onto their places in the mean face, or from 68 landmarks as dlib fits them.
    #[default]
    DlibChip,
}

/// Where MTCNN's five points go in dlib's chip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChipTargets {
    /// Where MTCNN's points fall, on average, in dlib's own chips (dlib's 5-point shape
    /// predictor and `get_face_chip`) of the LFW DevTrain photos: MTCNN marks the mouth
    /// corners and nose lower and the eyes wider than the 68-point definitions.
    #[default]
    Measured,
    /// Derived from dlib's 68-point mean face: eye centres from the eye contours, nose tip (30),
    /// mouth corners (48, 54).
    MeanFace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Cosine similarity at or above which two faces match. Unset: the embedder's own (its
    /// card's `threshold`, the best accuracy on LFW DevTrain; for a fusion, its shipped
    /// calibration's default point); a calibration overrides both.
    pub threshold: Option<f32>,
    pub detector: Detector,
    /// The embedding network, by its name in the model registry (`facegate models list`):
    /// a built-in model or a directory under `models_dir`. Its card gives input size, colour
    /// order, normalisation and alignment template. Two to four names joined by `+` fuse their
    /// scores (each z-normalised by its calibration's impostor statistics, then averaged).
    pub embedder: String,
    /// A directory of user models (`facegate models add` writes them); built-in models are
    /// always there.
    pub models_dir: Option<std::path::PathBuf>,
    /// MTCNN: the smallest face searched for, in pixels…
    pub mtcnn_min_face_px: f64,
    /// …or this fraction of the image's shorter side when that is larger (a 12 MP selfie is
    /// not scanned for 20-pixel faces).
    pub mtcnn_min_face_fraction: f64,
    /// MTCNN: the image pyramid's step.
    pub mtcnn_factor: f64,
    /// MTCNN: P-Net, R-Net and O-Net face-probability thresholds.
    pub mtcnn_thresholds: [f32; 3],
    /// MTCNN: where nothing was found, search again with each of these thresholds in turn
    /// (a P-Net of 0.5 finds faces the default's 0.6 misses; O-Net still decides); empty
    /// disables.
    pub mtcnn_retry_thresholds: Vec<[f32; 3]>,
    /// Images with more pixels are refused from the header, before decoding.
    pub max_pixels: u64,
    /// The engine works on a copy of each photo whose longer side is at most this many pixels
    /// (area-averaged down; 0 keeps full resolution), so a queued photo holds at most
    /// 3·side² bytes whatever its size. Detection already ignores faces under
    /// `mtcnn_min_face_fraction` of the shorter side, and such a face still spans well over
    /// the embedders' 112–150 px chips at 2048. Boxes and landmarks are reported in the
    /// original photo's pixels.
    pub work_max_side: u32,
    /// TinyFaceDetector input side (multiple of 32; `detector = "tiny_face_detector"`).
    pub detector_input_size: usize,
    /// TinyFaceDetector score threshold.
    pub detector_score_threshold: f64,
    /// When nothing is found, search again "zoomed out", with a zero margin of each of these
    /// fractions of the image's longer side on every side in turn (close-up faces fill the
    /// frame, and the detector misses them); empty disables.
    pub detector_zoom_out: Vec<f64>,
    /// Smallest acceptable face (the detection box's shorter side, in pixels).
    pub min_face_px: u32,
    /// A reference portrait with several faces is accepted when its main face is clear: the
    /// largest face is at least this many times the area (inside the picture) of the next one
    /// (a document's main photo beside a small ghost image), or else the face over the image
    /// centre (a centred portrait with bystanders). A probe (selfie) must show exactly one
    /// face. Faces under `min_face_px` are not counted.
    pub reference_dominance: f32,
    /// A reference whose face is in doubt upright (none usable, a detection score under
    /// `reference_upright_score`, or landmarks with the mouth not below the eyes) is searched
    /// again turned by 90°, 180° and 270° (an ID card photographed sideways or upside down,
    /// where a detector still boxes the face, with its landmarks wrong); the turn whose chosen
    /// face the detector is surest of, with its landmarks upright, wins. A detector without
    /// landmarks turns a reference only when no usable face is found upright. Probes are
    /// never turned: a selfie is taken upright.
    pub reference_rotations: bool,
    /// See `reference_rotations`. 0.98 is under the detector's score for 99 % of LFW's upright
    /// faces (MTCNN, 400 photos), so the other turns are tried for about one plain photo in
    /// a hundred.
    pub reference_upright_score: f32,
    /// A reference's face, upright or turned, is checked once more where a detector is
    /// surest: on a small crop around it (three times its box, the face about 80 px) at the
    /// four quarter turns. When another turn's face scores clearly higher (log-odds 1.0 or
    /// more) the whole photo is searched again at that turn. On the full photo MTCNN chose an
    /// upside-down or sideways face, scored 0.72–0.997, on 4 of 298 DevTrain card photos (each
    /// then compared upside down); on the crop the upright turn scored highest in all 20 checked.
    /// Faces the detector scores 0.999 or more are not checked (it costs ~260 ms a photo on
    /// 2 CPU cores; those 4 scored 0.72–0.997, and 6 % of plain LFW photos score under 0.999).
    /// Needs a detector with landmarks (their upright check decides the search).
    pub reference_turn_check: bool,
    /// A reference face printed with a halftone screen (an ID card's portrait: evenly spaced
    /// peaks in the autocorrelation of its fine detail) is blurred by half the screen's period
    /// around the face and found again, so the networks see the face and not the dots.
    pub reference_descreen: bool,
    /// See `reference_descreen`: the autocorrelation a lattice peak needs (0..1) to be a screen.
    pub reference_screen_strength: f32,
    /// See `reference_descreen`: the fewest screen periods across the face box (a print screen
    /// is fine against the face; JPEG's 8-pixel blocks on a small face are not).
    pub reference_screen_min_periods: f32,
    /// See `reference_descreen`: the blur's σ as a fraction of the screen's period (0.5
    /// leaves under 1 % of the screen's fundamental).
    pub reference_descreen_sigma: f32,
    /// Glare on a reference's portrait (a white wash from the card's laminate) is undone around
    /// the face, by the dark-channel prior, when the wash's transmission t at the face's centre
    /// is under this (0..1; 0 never). A face without glare has t near 1.
    pub reference_glare_gate: f32,
    /// A reference with no face found is searched for a glare spot (`[level, contrast]`): the
    /// most washed-out smooth blob of its darkest channel (0..1), at least `level` and at least
    /// `contrast` above its surroundings (so a white desk is not taken for glare). Where one is
    /// found it is corrected as `reference_glare_gate` describes and the copy searched again.
    pub reference_glare_spot: [f32; 2],
    /// Minimum sharpness (variance of the Laplacian of the 150 px face crop); 0 disables.
    pub min_sharpness: f32,
    /// Maximum |yaw| estimated from landmarks (0 = frontal, 1 = full profile); 0 disables.
    pub max_yaw: f32,
    pub alignment: Alignment,
    /// The dlib chip's targets for five points (`alignment = "dlib_chip"` with MTCNN).
    pub chip_targets: ChipTargets,
    /// Use the full 68-point landmark net instead of the tiny one.
    pub full_landmarks: bool,
    /// Images per GPU/CPU batch in bulk work.
    pub batch_size: usize,
    /// On wgpu, cut the aligned crops on the device (`shaders/crop_warp.wgsl`) rather than on
    /// the host; false keeps the host's warp (for comparing the two).
    pub device_crops: bool,
    /// A calibration file (`facegate eval --write-calibration`; relative to the working directory):
    /// when set, the threshold is its operating point's, checked against the model.
    pub calibration: Option<std::path::PathBuf>,
    /// The calibration's operating point (`fmr_1e-3`, …); its default when unset.
    pub operating_point: Option<String>,
}

/// The default embedder's registry name: faceplugin's MobileFaceNet-512 on the ArcFace template.
/// On LFW DevTest it misses 1.4 % of genuine pairs at FMR 1e-3 where dlib's ResNet misses
/// 6.0 % (README, "Accuracy"); `dlib-resnet-v1` stays as the CC0 choice.
pub const DEFAULT_EMBEDDER: &str = "faceplugin-mobilefacenet-512";

impl Default for Config {
    fn default() -> Self {
        Self {
            threshold: None,
            detector: Detector::Mtcnn,
            embedder: DEFAULT_EMBEDDER.into(),
            models_dir: None,
            mtcnn_min_face_px: 20.0,
            mtcnn_min_face_fraction: 0.05,
            mtcnn_factor: 0.709,
            mtcnn_thresholds: [0.6, 0.7, 0.7],
            mtcnn_retry_thresholds: vec![[0.5, 0.7, 0.7]],
            max_pixels: 40_000_000,
            work_max_side: 2048,
            detector_input_size: 416,
            detector_score_threshold: 0.5,
            detector_zoom_out: vec![0.5, 1.0],
            min_face_px: 32,
            reference_dominance: 2.0,
            reference_rotations: true,
            reference_upright_score: 0.98,
            reference_turn_check: true,
            reference_descreen: true,
            reference_screen_strength: SCREEN_STRENGTH,
            reference_screen_min_periods: 22.0,
            reference_descreen_sigma: 0.5,
            reference_glare_gate: 0.8,
            reference_glare_spot: Self::DEFAULT_GLARE_SPOT,
            min_sharpness: 0.0,
            max_yaw: 0.0,
            alignment: Alignment::DlibChip,
            chip_targets: ChipTargets::Measured,
            full_landmarks: false,
            batch_size: 16,
            device_crops: true,
            calibration: None,
            operating_point: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// What a caller sets over a configuration (the command line's flags, the Python package's
/// arguments); `None` keeps the configuration's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub embedder: Option<String>,
    pub detector: Option<Detector>,
    pub threshold: Option<f32>,
    /// A calibration file, deciding at `operating_point` (default: the file's own).
    pub calibration: Option<std::path::PathBuf>,
    pub operating_point: Option<String>,
    pub models_dir: Option<std::path::PathBuf>,
}

impl Config {
    /// `reference_glare_spot`'s default, chosen on DevTrain cards with glare on the portrait
    /// (README, "ID-card references": failures to detect 11 -> 4 of 276 against 0.85/0.10).
    pub const DEFAULT_GLARE_SPOT: [f32; 2] = [0.70, 0.05];

    /// This configuration with `o` set over it, validated.
    pub fn overridden(mut self, o: Overrides) -> Result<Self, ConfigError> {
        if o.operating_point.is_some() && o.calibration.is_none() {
            return Err(ConfigError::Invalid(
                "an operating point needs a calibration file".into(),
            ));
        }
        if let Some(m) = o.embedder {
            self.embedder = m;
        }
        if let Some(d) = o.detector {
            self.detector = d;
        }
        if let Some(t) = o.threshold {
            self.threshold = Some(t);
        }
        if let Some(c) = o.calibration {
            self.calibration = Some(c);
            self.operating_point = o.operating_point;
        }
        if let Some(d) = o.models_dir {
            self.models_dir = Some(d);
        }
        self.validate()?;
        Ok(self)
    }

    /// Load from a `.toml` or `.json` file; missing keys keep their defaults.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        let config: Config = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| ConfigError::Parse {
                path: p,
                message: e.to_string(),
            })?
        } else {
            toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: p,
                message: e.to_string(),
            })?
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.threshold.is_some_and(|t| !(-1.0..=1.0).contains(&t)) {
            return bad("threshold must be a cosine similarity in [-1, 1]");
        }
        if self.detector_input_size == 0 || !self.detector_input_size.is_multiple_of(32) {
            return bad("detector_input_size must be a positive multiple of 32");
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1");
        }
        if self.detector_zoom_out.iter().any(|&z| !(0.0..=4.0).contains(&z)) {
            return bad("detector_zoom_out fractions must be in [0, 4]");
        }
        if !(12.0..=f64::MAX).contains(&self.mtcnn_min_face_px) || !(0.0..1.0).contains(&self.mtcnn_min_face_fraction) {
            return bad("mtcnn_min_face_px must be at least 12 (P-Net's window) and mtcnn_min_face_fraction in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.reference_screen_strength)
            || !(0.1..=2.0).contains(&self.reference_descreen_sigma)
            || !(0.0..=1000.0).contains(&self.reference_screen_min_periods)
            || !(0.0..=1.0).contains(&self.reference_glare_gate)
            || self.reference_glare_spot.iter().any(|v| !(0.0..=1.0).contains(v))
        {
            return bad(
                "reference_screen_strength must be in [0, 1], reference_descreen_sigma in [0.1, 2], reference_screen_min_periods in [0, 1000], reference_glare_gate and reference_glare_spot's two values in [0, 1]",
            );
        }
        if !(0.1..0.95).contains(&self.mtcnn_factor) {
            return bad("mtcnn_factor must be in [0.1, 0.95)");
        }
        if self
            .mtcnn_thresholds
            .iter()
            .chain(self.mtcnn_retry_thresholds.iter().flatten())
            .any(|t| !(0.0..1.0).contains(t))
        {
            return bad("mtcnn_thresholds and mtcnn_retry_thresholds must be probabilities in [0, 1)");
        }
        if self.alignment == Alignment::FaceApi && self.detector != Detector::TinyFaceDetector {
            return bad("alignment = \"face_api\" needs face-api's 68 landmarks: detector = \"tiny_face_detector\"");
        }
        if self.max_pixels == 0 {
            return bad("max_pixels must be positive");
        }
        if self.work_max_side != 0 && self.work_max_side < 256 {
            return bad("work_max_side must be 0 (full resolution) or at least 256");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_what_they_name_and_are_validated() {
        let c = Config::default()
            .overridden(Overrides {
                embedder: Some("dlib-resnet-v1".into()),
                threshold: Some(0.4),
                ..Overrides::default()
            })
            .unwrap();
        assert_eq!((c.embedder.as_str(), c.threshold), ("dlib-resnet-v1", Some(0.4)));
        assert_eq!(c.detector, Config::default().detector);
        let bad = |o: Overrides| Config::default().overridden(o).unwrap_err().to_string();
        assert!(
            bad(Overrides {
                threshold: Some(3.0),
                ..Overrides::default()
            })
            .contains("threshold")
        );
        assert!(
            bad(Overrides {
                operating_point: Some("fmr_1e-3".into()),
                ..Overrides::default()
            })
            .contains("calibration")
        );
    }

    #[test]
    fn toml_overrides_and_defaults() {
        let dir = std::env::temp_dir().join(format!("facegate-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("c.toml");
        std::fs::write(&f, "threshold = 0.8\nalignment = \"dlib_chip\"\n").unwrap();
        let c = Config::from_file(&f).unwrap();
        assert_eq!(c.threshold, Some(0.8));
        assert_eq!(c.alignment, Alignment::DlibChip);
        assert_eq!(c.max_pixels, Config::default().max_pixels);
        std::fs::write(&f, "detector_input_size = 100\n").unwrap();
        assert!(matches!(Config::from_file(&f), Err(ConfigError::Invalid(_))));
        std::fs::write(&f, "no_such_key = 1\n").unwrap();
        assert!(matches!(Config::from_file(&f), Err(ConfigError::Parse { .. })));
    }
}
