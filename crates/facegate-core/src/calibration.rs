//! Calibrated operating points: thresholds measured by `facegate eval --write-calibration FILE`, read
//! by `verify`, `serve` and `batch` so the engine decides at a named false match rate.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// One operating point and what it cost on the evaluation data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibratedPoint {
    pub threshold: f32,
    pub fmr: f64,
    pub fnmr: f64,
    pub frr: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// The model the thresholds belong to; another model's scores mean something else.
    pub model: String,
    /// The evaluation data.
    pub pairs_file: String,
    pub genuine_comparisons: usize,
    pub impostor_comparisons: usize,
    /// The operating point used when none is named.
    pub default: String,
    /// By name (`fmr_1e-3`, …).
    pub operating_points: BTreeMap<String, CalibratedPoint>,
    /// The impostor scores' mean and standard deviation: what score fusion normalises a
    /// model's scores by (`--model A+B`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impostor_mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impostor_std: Option<f64>,
}

impl Calibration {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: p, message },
            other => other,
        })
    }

    /// A calibration from its TOML text, its default operating point checked.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: String::new(),
            message: e.to_string(),
        })?;
        c.threshold(None)?;
        Ok(c)
    }

    /// TOML, with a header saying where it came from and how to use it.
    pub fn to_toml(&self) -> String {
        format!(
            "# facegate calibration, written by `facegate eval --write-calibration`.\n\
             # Use: facegate verify|serve|batch --calibration FILE [--operating-point NAME],\n\
             # or `calibration = \"FILE\"` and `operating_point = \"NAME\"` in the engine config.\n{}",
            toml::to_string(self).expect("a calibration serialises")
        )
    }

    /// The threshold of the named operating point, or of the default one.
    pub fn threshold(&self, name: Option<&str>) -> Result<f32, ConfigError> {
        let name = name.unwrap_or(&self.default);
        let point = self.operating_points.get(name).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "the calibration has no operating point `{name}` (it has: {})",
                self.operating_points.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
        if !(-1.0..=1.0).contains(&point.threshold) {
            return Err(ConfigError::Invalid(format!(
                "operating point `{name}`: threshold {} is not a cosine similarity",
                point.threshold
            )));
        }
        Ok(point.threshold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_names_points() {
        let c = Calibration {
            model: "m@1".into(),
            pairs_file: "pairs.txt".into(),
            genuine_comparisons: 500,
            impostor_comparisons: 400_000,
            default: "fmr_1e-3".into(),
            operating_points: BTreeMap::from([
                (
                    "fmr_1e-2".to_string(),
                    CalibratedPoint {
                        threshold: 0.91,
                        fmr: 0.0099,
                        fnmr: 0.02,
                        frr: 0.021,
                    },
                ),
                (
                    "fmr_1e-3".to_string(),
                    CalibratedPoint {
                        threshold: 0.94,
                        fmr: 0.00099,
                        fnmr: 0.05,
                        frr: 0.051,
                    },
                ),
            ]),
            impostor_mean: Some(0.05),
            impostor_std: Some(0.09),
        };
        let dir = tempfile_dir();
        let f = dir.join("cal.toml");
        std::fs::write(&f, c.to_toml()).unwrap();
        let back = Calibration::read(&f).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.threshold(None).unwrap(), 0.94);
        assert_eq!(back.threshold(Some("fmr_1e-2")).unwrap(), 0.91);
        assert!(matches!(back.threshold(Some("fmr_1e-4")), Err(ConfigError::Invalid(m)) if m.contains("fmr_1e-2")));
        // A default that names no point is refused on reading.
        std::fs::write(&f, c.to_toml().replace("default = \"fmr_1e-3\"", "default = \"eer\"")).unwrap();
        assert!(Calibration::read(&f).is_err());
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("facegate-cal-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
