//! Pair lists: LFW's `pairs*.txt` and TSV files.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub probe: PathBuf,
    pub reference: PathBuf,
    pub same: bool,
    /// The people shown, where the list names them (LFW does; a TSV does not).
    pub people: Option<[String; 2]>,
}

#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    #[error("reading {0}: {1}")]
    Io(String, std::io::Error),
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
}

/// Read an LFW pairs file (`name i j` / `name i name2 j`, first line a header) or a TSV
/// (`probe<TAB>reference<TAB>same`, optionally then `probe_person<TAB>reference_person` so
/// that all-vs-all knows who is who; optional header). Paths resolve against `images`
/// (default: the pair file's folder; for LFW files, `lfw-deepfunneled` beside it if present).
pub fn read_pairs(file: &Path, images: Option<&Path>) -> Result<Vec<Pair>, PairsError> {
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| PairsError::Io(name.clone(), e))?;
    let dir = file.parent().unwrap_or(Path::new("."));
    let err = |line: usize, message: String| PairsError::Syntax {
        file: name.clone(),
        line,
        message,
    };
    let mut pairs = Vec::new();
    let columns = text.lines().next().map_or(0, |l| l.split('\t').count());
    if columns == 3 || columns == 5 {
        let root = images.unwrap_or(dir);
        for (n, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split('\t').collect();
            if line.trim().is_empty() {
                continue;
            }
            if f.len() != columns {
                return Err(err(n + 1, format!("expected {columns} tab-separated fields")));
            }
            let (p, r, s) = (f[0], f[1], f[2]);
            let same = match s.trim() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ if n == 0 => continue, // header
                other => return Err(err(n + 1, format!("`same` must be 1/0, found `{other}`"))),
            };
            pairs.push(Pair {
                probe: root.join(p),
                reference: root.join(r),
                same,
                people: (columns == 5).then(|| [f[3].trim().to_string(), f[4].trim().to_string()]),
            });
        }
    } else {
        let lfw_default = dir.join("lfw-deepfunneled");
        let root = images.map(Path::to_path_buf).unwrap_or(if lfw_default.is_dir() {
            lfw_default
        } else {
            dir.to_path_buf()
        });
        let path = |person: &str, idx: &str| -> Result<PathBuf, String> {
            let i: u32 = idx
                .parse()
                .map_err(|_| format!("image number `{idx}` is not a number"))?;
            Ok(root.join(person).join(format!("{person}_{i:04}.jpg")))
        };
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (a, i, b, j, same) = match f.as_slice() {
                [] => continue,
                [who, i, j] => (*who, *i, *who, *j, true),
                [a, i, b, j] => (*a, *i, *b, *j, false),
                _ => return Err(err(n + 1, "expected `name i j` or `name i name2 j`".into())),
            };
            let (probe, reference) = (path(a, i), path(b, j));
            pairs.push(Pair {
                probe: probe.map_err(|m| err(n + 1, m))?,
                reference: reference.map_err(|m| err(n + 1, m))?,
                same,
                people: Some([a.to_string(), b.to_string()]),
            });
        }
    }
    Ok(pairs)
}

/// The distinct images of a pair list, sorted, and an identity number for each: the person's
/// name where the list gives it, otherwise the images joined by a genuine pair (transitively)
/// are one person and every other image is somebody else. The second rule assumes the list
/// links all photos of a person, as a complete TSV such as `faces-labeled/pairs.tsv` does.
pub fn identities(pairs: &[Pair]) -> (Vec<PathBuf>, Vec<usize>) {
    let mut images: Vec<PathBuf> = pairs
        .iter()
        .flat_map(|p| [p.probe.clone(), p.reference.clone()])
        .collect();
    images.sort();
    images.dedup();
    let index = |p: &PathBuf| images.binary_search(p).expect("listed image");
    // Union-find over images; named people join their images too.
    let mut parent: Vec<usize> = (0..images.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    fn union(parent: &mut [usize], a: usize, b: usize) {
        let (ra, rb) = (root(parent, a), root(parent, b));
        parent[ra.max(rb)] = ra.min(rb);
    }
    let mut named: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for p in pairs {
        let (a, b) = (index(&p.probe), index(&p.reference));
        if p.same {
            union(&mut parent, a, b);
        }
        if let Some(people) = &p.people {
            for (who, i) in people.iter().zip([a, b]) {
                let first = *named.entry(who).or_insert(i);
                union(&mut parent, first, i);
            }
        }
    }
    let ids = (0..images.len()).map(|i| root(&mut parent, i)).collect();
    (images, ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lfw_and_tsv_pair_files_parse() {
        let dir = std::env::temp_dir().join(format!("facegate-pairs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lfw = dir.join("p.txt");
        std::fs::write(&lfw, "2\nAbel_Pacheco\t1\t4\nAbdel_Madi_Shabneh\t1\tDean_Barker\t1\n").unwrap();
        let p = read_pairs(&lfw, Some(Path::new("/img"))).unwrap();
        assert_eq!(
            p[0],
            Pair {
                probe: "/img/Abel_Pacheco/Abel_Pacheco_0001.jpg".into(),
                reference: "/img/Abel_Pacheco/Abel_Pacheco_0004.jpg".into(),
                same: true,
                people: Some(["Abel_Pacheco".into(), "Abel_Pacheco".into()]),
            }
        );
        assert!(!p[1].same && p[1].reference.ends_with("Dean_Barker/Dean_Barker_0001.jpg"));
        let tsv = dir.join("p.tsv");
        std::fs::write(&tsv, "probe\treference\tsame\na.jpg\tb.jpg\t1\nc.jpg\td.jpg\t0\n").unwrap();
        let p = read_pairs(&tsv, None).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].probe, dir.join("a.jpg"));
        // Named people, in two more columns.
        std::fs::write(
            &tsv,
            "probe\treference\tsame\tprobe_person\treference_person\na.jpg\t/x/b.jpg\t0\tAnn\tBob\n",
        )
        .unwrap();
        let p = read_pairs(&tsv, None).unwrap();
        assert_eq!(p[0].people, Some(["Ann".into(), "Bob".into()]));
        assert_eq!(p[0].reference, PathBuf::from("/x/b.jpg"));
        std::fs::write(&tsv, "probe\treference\tsame\na.jpg\tb.jpg\tmaybe\n").unwrap();
        assert!(matches!(
            read_pairs(&tsv, None),
            Err(PairsError::Syntax { line: 2, .. })
        ));
    }

    #[test]
    fn identities_follow_names_and_genuine_pairs() {
        let pair = |a: &str, b: &str, same: bool, people: Option<[&str; 2]>| Pair {
            probe: a.into(),
            reference: b.into(),
            same,
            people: people.map(|p| p.map(String::from)),
        };
        // Unnamed: a-b and b-c are genuine, so a, b, c are one person; d is another.
        let (images, ids) = identities(&[
            pair("a", "b", true, None),
            pair("c", "b", true, None),
            pair("a", "d", false, None),
        ]);
        assert_eq!(images, ["a", "b", "c", "d"].map(PathBuf::from));
        assert!(ids[0] == ids[1] && ids[1] == ids[2] && ids[3] != ids[0]);
        // Named: x1 and x2 never meet in a genuine pair but share a name.
        let (_, ids) = identities(&[
            pair("x1", "y1", false, Some(["X", "Y"])),
            pair("x2", "z1", false, Some(["X", "Z"])),
        ]);
        assert_eq!(ids[0], ids[1]); // x1, x2
        assert!(ids[2] != ids[0] && ids[3] != ids[0] && ids[2] != ids[3]);
    }
}
