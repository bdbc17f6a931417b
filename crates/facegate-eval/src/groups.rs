//! Error rates by group (age, sex, region, ...): who the threshold fails. The figures follow
//! NIST's demographic evaluation (NISTIR 8280): FNMR over genuine comparisons of a group, FMR
//! over impostor comparisons between two people of the same group, and that FMR's ratio to the
//! overall FMR at the same threshold ("FMR inflation"). Every rate comes with a 95 % Wilson
//! interval, because group samples are small.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rates::ScoreSets;
use crate::report::{Comparison, OperatingPoint, Quality};

/// The group of people or photos a group file does not list.
pub const UNKNOWN: &str = "unknown";

/// The two-sided 95 % normal quantile (`scipy.stats.norm.isf(0.025)`).
const Z95: f64 = 1.959_963_984_540_054;

/// What a group file's rows are keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupKey {
    /// The person: the name a pair list gives, else the image's folder name (LFW's layout).
    Person,
    /// The image, as a path in the pair list (its trailing components are matched).
    Image,
}

/// A group file: a TSV with a header whose first column is `person` or `image` and whose
/// other columns are group dimensions, one group label per row and dimension.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupFile {
    pub key: GroupKey,
    pub dimensions: Vec<String>,
    rows: HashMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum GroupsError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
}

/// Read a group file (see [`GroupFile`]).
pub fn read_groups(file: &Path) -> Result<GroupFile, GroupsError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| GroupsError::Io(name.clone(), e))?;
    parse_groups(&text).map_err(|(line, message)| GroupsError::Syntax {
        file: name,
        line,
        message,
    })
}

/// [`read_groups`] on text; errors are (line, message).
pub fn parse_groups(text: &str) -> Result<GroupFile, (usize, String)> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines.next().ok_or((1, "empty: expected a header line".to_string()))?;
    let columns: Vec<&str> = header.split('\t').map(str::trim).collect();
    let key = match columns[0] {
        "person" => GroupKey::Person,
        "image" => GroupKey::Image,
        other => {
            return Err((
                1,
                format!("the first column must be `person` or `image`, found `{other}`"),
            ));
        }
    };
    let dimensions: Vec<String> = columns[1..].iter().map(|c| c.to_string()).collect();
    if dimensions.is_empty() {
        return Err((1, "no group column after the key".into()));
    }
    if let Some(bad) = dimensions.iter().find(|d| d.is_empty()) {
        return Err((1, format!("a column without a name (`{bad}`)")));
    }
    let mut rows = HashMap::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split('\t').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err((
                n + 1,
                format!(
                    "expected {} tab-separated fields, found {}",
                    columns.len(),
                    fields.len()
                ),
            ));
        }
        // An empty cell is a person or photo without a label for that dimension.
        let labels = fields[1..]
            .iter()
            .map(|f| {
                if f.is_empty() {
                    UNKNOWN.to_string()
                } else {
                    f.to_string()
                }
            })
            .collect();
        if rows.insert(fields[0].to_string(), labels).is_some() {
            return Err((n + 1, format!("`{}` is listed twice", fields[0])));
        }
    }
    Ok(GroupFile { key, dimensions, rows })
}

impl GroupFile {
    /// Each image's label per dimension (`[dimension][image]`); an image the file does not
    /// list is [`UNKNOWN`]. `people` gives each image's person where the pair list names it.
    pub fn labels(&self, images: &[PathBuf], people: &[Option<String>]) -> Vec<Vec<String>> {
        let row = |i: usize| -> Option<&Vec<String>> {
            match self.key {
                GroupKey::Person => {
                    let folder = || images[i].parent()?.file_name()?.to_str().map(str::to_string);
                    let who = people.get(i).cloned().flatten().or_else(folder)?;
                    self.rows.get(&who)
                }
                // The longest listed suffix of the image's path.
                GroupKey::Image => {
                    let parts: Vec<_> = images[i].components().collect();
                    (0..parts.len()).find_map(|k| {
                        let suffix: PathBuf = parts[k..].iter().collect();
                        self.rows.get(suffix.to_str()?)
                    })
                }
            }
        };
        let rows: Vec<Option<&Vec<String>>> = (0..images.len()).map(row).collect();
        (0..self.dimensions.len())
            .map(|d| {
                rows.iter()
                    .map(|r| r.map_or(UNKNOWN.to_string(), |r| r[d].clone()))
                    .collect()
            })
            .collect()
    }
}

/// A rate with its 95 % Wilson score interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub errors: usize,
    pub trials: usize,
    pub rate: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Estimate {
    /// `errors` of `trials`; `None` without trials (nothing was measured).
    pub fn new(errors: usize, trials: usize) -> Option<Self> {
        let (lo, hi) = wilson(errors, trials)?;
        Some(Self {
            errors,
            trials,
            rate: errors as f64 / trials as f64,
            lo,
            hi,
        })
    }

    pub fn overlaps(&self, other: &Self) -> bool {
        self.lo <= other.hi && other.lo <= self.hi
    }
}

/// The 95 % Wilson score interval of `k` successes in `n` trials (what statsmodels'
/// `proportion_confint(method="wilson")` gives); `None` when `n` is 0.
pub fn wilson(k: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 {
        return None;
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some(((center - half).max(0.0), (center + half).min(1.0)))
}

/// A group's rates at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupRates {
    /// `threshold` (the configured one) or an operating point's name.
    pub point: String,
    pub threshold: f64,
    /// Genuine comparisons with both templates that score below the threshold.
    pub fnmr: Option<Estimate>,
    /// Genuine comparisons rejected: below the threshold or with a refused photo.
    pub frr: Option<Estimate>,
    /// Impostor comparisons between two people of the group at or above the threshold.
    pub fmr: Option<Estimate>,
    /// The group's FMR over the FMR of all impostor comparisons at the same threshold.
    pub fmr_inflation: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupFigures {
    pub name: String,
    pub people: usize,
    pub images: usize,
    /// Genuine comparisons whose photos are in the group (an unlisted one taking its partner's
    /// group), and how many had a refused photo.
    pub genuine: usize,
    pub genuine_refused: usize,
    /// Impostor comparisons whose two photos are in the group (both with a template).
    pub impostor: usize,
    /// The group's photos refused, per reason code, as a share of the group's photos.
    pub refusals: BTreeMap<String, Estimate>,
    /// The group's photos in each quality bucket (`small_face`, `blur`, `pose`: measured or
    /// refused), as a share of its photos: a check that reads one group's faces as worse
    /// shows here before its threshold refuses anyone.
    pub quality: BTreeMap<String, Estimate>,
    /// At the configured threshold, then at each resolved operating point.
    pub at: Vec<GroupRates>,
}

/// The highest and lowest FNMR among a dimension's labelled groups at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disparity {
    pub point: String,
    pub highest: String,
    pub highest_fnmr: Estimate,
    pub lowest: String,
    pub lowest_fnmr: Estimate,
    /// highest / lowest; `None` when the lowest is 0.
    pub ratio: Option<f64>,
    /// The two 95 % intervals do not overlap: a difference the sample supports.
    pub flagged: bool,
    /// The labelled group whose people are most often mistaken for one another, and its FMR
    /// inflation.
    #[serde(default)]
    pub fmr_inflation: Option<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    pub name: String,
    /// Genuine comparisons whose two photos are listed in different groups (possible when
    /// the file is keyed by image); they count in no group. A genuine photo the file does not
    /// list takes its partner's group.
    pub mixed_genuine: usize,
    /// Labelled groups by name, then [`UNKNOWN`] last.
    pub groups: Vec<GroupFigures>,
    /// One per threshold of [`GroupFigures::at`]; the [`UNKNOWN`] group takes no part.
    pub disparities: Vec<Disparity>,
}

/// What the group figures need from an evaluation.
pub struct GroupInputs<'a> {
    pub dimensions: &'a [String],
    /// `[dimension][image]`, from [`GroupFile::labels`].
    pub labels: &'a [Vec<String>],
    /// Each image's identity number (distinct people are distinct numbers).
    pub people: &'a [usize],
    pub quality: &'a [Quality],
    /// Each image's quality flags ([`crate::report::BucketLimits::flags`]).
    pub flags: &'a [[bool; 3]],
    pub comparisons: &'a [Comparison],
    /// All comparisons, for the overall FMR.
    pub all: &'a ScoreSets,
    pub threshold: f64,
    pub operating_points: &'a [OperatingPoint],
}

pub fn build(inputs: GroupInputs) -> Vec<Dimension> {
    let GroupInputs {
        dimensions,
        labels,
        people,
        quality,
        flags,
        comparisons,
        all,
        threshold,
        operating_points,
    } = inputs;
    let mut points = vec![("threshold".to_string(), threshold)];
    points.extend(
        operating_points
            .iter()
            .filter_map(|p| Some((p.name.clone(), p.threshold?))),
    );
    dimensions
        .iter()
        .zip(labels)
        .map(|(dimension, label)| {
            let mut names: Vec<&str> = label.iter().map(String::as_str).filter(|&l| l != UNKNOWN).collect();
            names.sort_unstable();
            names.dedup();
            if label.iter().any(|l| l == UNKNOWN) {
                names.push(UNKNOWN);
            }
            let groups: Vec<GroupFigures> = names
                .iter()
                .map(|&name| {
                    let photos = Photos {
                        label,
                        people,
                        quality,
                        flags,
                    };
                    group(name, &photos, comparisons, all, &points)
                })
                .collect();
            let mixed_genuine = comparisons
                .iter()
                .filter(|c| {
                    let (a, b) = (&label[c.a], &label[c.b]);
                    c.scored.same && a != b && a != UNKNOWN && b != UNKNOWN
                })
                .count();
            let disparities = (0..points.len()).filter_map(|k| disparity(&groups, k)).collect();
            Dimension {
                name: dimension.clone(),
                mixed_genuine,
                groups,
                disparities,
            }
        })
        .collect()
}

/// What is known of each photo, by index.
struct Photos<'a> {
    label: &'a [String],
    people: &'a [usize],
    quality: &'a [Quality],
    flags: &'a [[bool; 3]],
}

fn group(
    name: &str,
    photos: &Photos,
    comparisons: &[Comparison],
    all: &ScoreSets,
    points: &[(String, f64)],
) -> GroupFigures {
    let Photos {
        label,
        people,
        quality,
        flags,
    } = *photos;
    let member = |i: usize| label[i] == name;
    let images: Vec<usize> = (0..label.len()).filter(|&i| member(i)).collect();
    let mut persons: Vec<usize> = images.iter().map(|&i| people[i]).collect();
    persons.sort_unstable();
    persons.dedup();
    let mut refused: BTreeMap<String, usize> = BTreeMap::new();
    for q in images.iter().filter_map(|&i| quality[i].refused.as_ref()) {
        *refused.entry(q.clone()).or_default() += 1;
    }
    let refusals = refused
        .into_iter()
        .filter_map(|(code, n)| Some((code, Estimate::new(n, images.len())?)))
        .collect();
    let quality_buckets = ["small_face", "blur", "pose"]
        .iter()
        .enumerate()
        .filter_map(|(k, bucket)| {
            let n = images.iter().filter(|&&i| flags[i][k]).count();
            Some((bucket.to_string(), Estimate::new(n, images.len())?))
        })
        .collect();
    let within = ScoreSets::new(
        &comparisons
            .iter()
            .filter(|c| {
                // A genuine photo the file does not list takes its partner's group (a card
                // photo keyed by image beside a plain probe); impostors need both people in it.
                let unlisted = |i: usize| c.scored.same && label[i] == UNKNOWN;
                (member(c.a) || unlisted(c.a)) && (member(c.b) || unlisted(c.b)) && (member(c.a) || member(c.b))
            })
            .map(|c| c.scored)
            .collect::<Vec<_>>(),
    );
    let genuine = within.genuine();
    let impostor = within.impostor();
    let (genuine_all, _) = within.counts();
    let at = points
        .iter()
        .map(|(point, t)| {
            let below = genuine.partition_point(|&v| v < *t);
            let false_matches = impostor.len() - impostor.partition_point(|&v| v < *t);
            let fmr = Estimate::new(false_matches, impostor.len());
            let overall = all.fmr(*t);
            GroupRates {
                point: point.clone(),
                threshold: *t,
                fnmr: Estimate::new(below, genuine.len()),
                frr: Estimate::new(below + within.genuine_failed(), genuine_all),
                fmr_inflation: fmr.filter(|_| overall > 0.0).map(|f| f.rate / overall),
                fmr,
            }
        })
        .collect();
    GroupFigures {
        name: name.to_string(),
        people: persons.len(),
        images: images.len(),
        genuine: genuine_all,
        genuine_refused: within.genuine_failed(),
        impostor: impostor.len(),
        refusals,
        quality: quality_buckets,
        at,
    }
}

/// The highest and lowest FNMR at point `k` among labelled groups with genuine templates.
fn disparity(groups: &[GroupFigures], k: usize) -> Option<Disparity> {
    let measured: Vec<(&str, Estimate)> = groups
        .iter()
        .filter(|g| g.name != UNKNOWN)
        .filter_map(|g| Some((g.name.as_str(), g.at[k].fnmr?)))
        .collect();
    if measured.len() < 2 {
        return None;
    }
    let by_rate = |a: &&(&str, Estimate), b: &&(&str, Estimate)| a.1.rate.total_cmp(&b.1.rate);
    let (highest, hi) = *measured.iter().max_by(by_rate)?;
    let (lowest, lo) = *measured.iter().min_by(by_rate)?;
    let fmr_inflation = groups
        .iter()
        .filter(|g| g.name != UNKNOWN)
        .filter_map(|g| Some((g.name.clone(), g.at[k].fmr_inflation?)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    Some(Disparity {
        fmr_inflation,
        point: groups[0].at[k].point.clone(),
        highest: highest.to_string(),
        highest_fnmr: hi,
        lowest: lowest.to_string(),
        lowest_fnmr: lo,
        ratio: (lo.rate > 0.0).then(|| hi.rate / lo.rate),
        flagged: !hi.overlaps(&lo),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::Scored;

    #[test]
    fn wilson_matches_statsmodels() {
        // data/wilson-intervals.json: statsmodels' proportion_confint(method="wilson"),
        // written by tools/eval/wilson_fixture.py.
        let text = include_str!("../../../data/wilson-intervals.json");
        let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for c in cases {
            let (k, n) = (c["k"].as_u64().unwrap() as usize, c["n"].as_u64().unwrap() as usize);
            let (lo, hi) = wilson(k, n).unwrap();
            let (want_lo, want_hi) = (c["lo"].as_f64().unwrap(), c["hi"].as_f64().unwrap());
            assert!((lo - want_lo.max(0.0)).abs() < 1e-12, "{k}/{n}: lo {lo} vs {want_lo}");
            assert!((hi - want_hi.min(1.0)).abs() < 1e-12, "{k}/{n}: hi {hi} vs {want_hi}");
        }
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn group_files_parse_and_label_images() {
        let file = parse_groups("person\tage_group\tsex\nAnn\tsenior\tf\nBob\tyoung\t\n").unwrap();
        assert_eq!(file.key, GroupKey::Person);
        assert_eq!(file.dimensions, ["age_group", "sex"]);
        let images: Vec<PathBuf> = [
            "lfw/Ann/Ann_0001.jpg",
            "lfw/Bob/Bob_0002.jpg",
            "lfw/Cy/Cy_0001.jpg",
            "x/y.jpg",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        // The last image's person is named by the pair list, not by its folder.
        let people = [None, None, None, Some("Ann".to_string())];
        let labels = file.labels(&images, &people);
        assert_eq!(labels[0], ["senior", "young", UNKNOWN, "senior"]);
        assert_eq!(labels[1], ["f", UNKNOWN, UNKNOWN, "f"]);

        let by_image = parse_groups("image\tg\nAnn/Ann_0001.jpg\ta\ny.jpg\tb\n").unwrap();
        let labels = by_image.labels(&images, &[]);
        assert_eq!(labels[0], ["a", UNKNOWN, UNKNOWN, "b"]);

        for (bad, line) in [
            ("", 1),
            ("name\tg\n", 1),
            ("person\n", 1),
            ("person\tg\nAnn\n", 2),
            ("person\tg\nAnn\ta\nAnn\tb\n", 3),
        ] {
            assert_eq!(parse_groups(bad).unwrap_err().0, line, "{bad:?}");
        }
    }

    fn c(a: usize, b: usize, same: bool, score: Option<f64>) -> Comparison {
        Comparison {
            a,
            b,
            scored: Scored { same, score },
        }
    }

    #[test]
    fn group_rates_by_hand() {
        // Images 0-3: people 0, 0, 1, 1 of group `s`; 4-5: person 2 of `y`; 6: person 3, unlisted.
        let label: Vec<String> = ["s", "s", "s", "s", "y", "y", UNKNOWN]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let people = [0, 0, 1, 1, 2, 2, 3];
        let mut quality = vec![Quality::default(); 7];
        quality[3].refused = Some("blurred".into());
        let comparisons = vec![
            c(0, 1, true, Some(0.9)),  // s genuine, a match at 0.5
            c(2, 3, true, None),       // s genuine, refused
            c(4, 5, true, Some(0.3)),  // y genuine, a non-match at 0.5
            c(0, 2, false, Some(0.6)), // s impostor, a false match at 0.5
            c(1, 2, false, Some(0.2)), // s impostor
            c(0, 4, false, Some(0.7)), // across groups: overall only
            c(4, 6, false, Some(0.1)), // y with unknown: overall only
            c(5, 6, true, Some(0.8)),  // genuine, y with unlisted: counts in y, a match
            c(6, 6, true, Some(0.2)),  // genuine, both unlisted: only in unknown
        ];
        let all = ScoreSets::new(&comparisons.iter().map(|c| c.scored).collect::<Vec<_>>());
        let dims = build(GroupInputs {
            dimensions: &["age".to_string()],
            labels: &[label],
            people: &people,
            quality: &quality,
            flags: &[
                [false, false, false],
                [true, false, false],
                [true, true, false],
                [false; 3],
                [false; 3],
                [false; 3],
                [false; 3],
            ],
            comparisons: &comparisons,
            all: &all,
            threshold: 0.5,
            operating_points: &[],
        });
        let d = &dims[0];
        let names: Vec<&str> = d.groups.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["s", "y", UNKNOWN]);
        let s = &d.groups[0];
        assert_eq!(
            (s.people, s.images, s.genuine, s.genuine_refused, s.impostor),
            (2, 4, 2, 1, 2)
        );
        let at = &s.at[0];
        assert_eq!(at.fnmr.unwrap().rate, 0.0);
        assert_eq!(at.frr.unwrap().rate, 0.5);
        assert_eq!(at.fmr.unwrap().rate, 0.5);
        // Overall FMR at 0.5: 0.6 and 0.7 of four impostors → 0.5; inflation 1.
        assert!((at.fmr_inflation.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(s.refusals["blurred"].errors, 1);
        assert_eq!(s.refusals["blurred"].trials, 4);
        assert_eq!(
            (
                s.quality["small_face"].errors,
                s.quality["blur"].errors,
                s.quality["pose"].errors
            ),
            (2, 1, 0)
        );
        assert_eq!(d.groups[1].quality["small_face"].errors, 0);
        let y = &d.groups[1];
        assert_eq!(y.genuine, 2);
        assert_eq!(y.at[0].fnmr.unwrap().rate, 0.5);
        assert_eq!(y.at[0].fmr, None);
        let unknown = &d.groups[2];
        assert_eq!((unknown.people, unknown.images, unknown.genuine), (1, 1, 1));
        // y (1/2) against s (0/1): their intervals overlap at a pair or two each.
        let disparity = &d.disparities[0];
        assert_eq!((disparity.highest.as_str(), disparity.lowest.as_str()), ("y", "s"));
        assert_eq!(disparity.ratio, None);
        assert!(!disparity.flagged);
        // Only `s` has impostors of its own.
        assert_eq!(disparity.fmr_inflation, Some(("s".to_string(), 1.0)));
    }

    #[test]
    fn a_difference_the_sample_supports_is_flagged() {
        // 200 genuine pairs each; group a fails 2, group b 40.
        let mut comparisons = Vec::new();
        let mut label = Vec::new();
        for (g, fails) in [("a", 2), ("b", 40)] {
            for k in 0..200 {
                let base = label.len();
                label.extend([g.to_string(), g.to_string()]);
                let score = if k < fails { 0.1 } else { 0.9 };
                comparisons.push(c(base, base + 1, true, Some(score)));
            }
        }
        let people: Vec<usize> = (0..label.len()).map(|i| i / 2).collect();
        let quality = vec![Quality::default(); label.len()];
        let flags = vec![[false; 3]; label.len()];
        let all = ScoreSets::new(&comparisons.iter().map(|c| c.scored).collect::<Vec<_>>());
        let dims = build(GroupInputs {
            dimensions: &["g".to_string()],
            labels: &[label],
            people: &people,
            quality: &quality,
            flags: &flags,
            comparisons: &comparisons,
            all: &all,
            threshold: 0.5,
            operating_points: &[],
        });
        let d = &dims[0].disparities[0];
        assert_eq!((d.highest.as_str(), d.lowest.as_str()), ("b", "a"));
        assert!((d.ratio.unwrap() - 20.0).abs() < 1e-12);
        assert!(d.flagged);
        assert_eq!(dims[0].groups[0].people, 200);
    }
}
