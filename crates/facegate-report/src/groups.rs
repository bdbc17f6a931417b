//! The report's "by group" part: a table per dimension, and FNMR per group with its 95 %
//! interval at each threshold as a plot.

use std::fmt::Write as _;

use std::collections::BTreeMap;

use facegate_eval::groups::{Dimension, Estimate, GroupFigures, UNKNOWN};
use facegate_eval::report::Report;
use plotters::prelude::*;

use crate::{Area, PALETTE, pct};

/// A rate in percent with two significant digits under 1 % (FMRs within a group are
/// small), one decimal above.
fn short_pct(v: f64) -> String {
    let p = 100.0 * v;
    if p == 0.0 || p >= 1.0 {
        format!("{p:.1}")
    } else {
        let digits = (1.0 - p.log10().floor()) as usize;
        format!("{p:.digits$}")
    }
}

fn interval(e: Option<Estimate>) -> String {
    e.map_or("–".into(), |e| {
        format!(
            "{} % [{}, {}] ({}/{})",
            short_pct(e.rate),
            short_pct(e.lo),
            short_pct(e.hi),
            e.errors,
            e.trials
        )
    })
}

/// The markdown of every dimension (empty without groups).
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    if r.groups.is_empty() {
        return s;
    }
    let _ = writeln!(s, "\n## By group\n");
    let _ = writeln!(
        s,
        "Genuine comparisons count in a group when both photos are in it (a photo the file does \
         not list takes its partner's group); impostor comparisons when both people are. Each rate is followed by its 95 % Wilson interval in percent and \
         its count. Thresholds are the overall ones (the configured threshold and the operating \
         points calibrated on all comparisons). FMR inflation is the group's FMR over the overall \
         FMR at the same threshold. `{UNKNOWN}` holds the people or photos the group file does \
         not list.\n\n![FNMR by group](groups.svg)\n"
    );
    for d in &r.groups {
        dimension(&mut s, d);
    }
    s
}

fn dimension(s: &mut String, d: &Dimension) {
    let _ = writeln!(s, "### `{}`\n", d.name);
    let Some(first) = d.groups.first() else { return };
    let points: Vec<String> = first
        .at
        .iter()
        .map(|x| format!("`{}` ({:.4})", x.point, x.threshold))
        .collect();
    let _ = write!(s, "| group | people | photos | genuine | refused genuine |");
    for p in &points {
        let _ = write!(s, " FNMR @ {p} |");
    }
    let _ = writeln!(s, "\n|---|---|---|---|---|{}", "---|".repeat(points.len()));
    for g in &d.groups {
        let _ = write!(
            s,
            "| {} | {} | {} | {} | {} |",
            g.name, g.people, g.images, g.genuine, g.genuine_refused
        );
        for x in &g.at {
            let _ = write!(s, " {} |", interval(x.fnmr));
        }
        let _ = writeln!(s);
    }
    let _ = write!(s, "\n| group | FRR @ threshold |");
    for p in &points {
        let _ = write!(s, " FMR within group, inflation @ {p} |");
    }
    let _ = writeln!(s, "\n|---|---|{}", "---|".repeat(points.len()));
    for g in &d.groups {
        let _ = write!(s, "| {} | {} |", g.name, interval(g.at[0].frr));
        for x in &g.at {
            let inflation = x.fmr_inflation.map_or("–".into(), |v| format!("{v:.2}×"));
            let _ = write!(s, " {}, {inflation} |", interval(x.fmr));
        }
        let _ = writeln!(s);
    }
    shares(
        s,
        d,
        "Photos refused, by reason, as a share of the group's photos:",
        |g| &g.refusals,
    );
    shares(
        s,
        d,
        "Photos in each quality bucket (measured past the bucket's limit, or refused for it), as a \
         share of the group's photos; a check that reads one group's faces as worse shows here \
         before it refuses anyone:",
        |g| &g.quality,
    );
    if d.mixed_genuine > 0 {
        let _ = writeln!(
            s,
            "\n{} genuine comparisons have their two photos in different groups and count in none.",
            d.mixed_genuine
        );
    }
    let _ = writeln!(
        s,
        "\nHighest against lowest FNMR among the labelled groups, and the highest FMR inflation:\n"
    );
    let _ = writeln!(
        s,
        "| threshold | highest FNMR | lowest FNMR | ratio | intervals | highest FMR inflation |\n|---|---|---|---|---|---|"
    );
    for x in &d.disparities {
        let inflation = x
            .fmr_inflation
            .as_ref()
            .map_or("–".into(), |(g, v)| format!("{g} {v:.2}×"));
        let _ = writeln!(
            s,
            "| `{}` | {} {} | {} {} | {} | {} | {inflation} |",
            x.point,
            x.highest,
            pct(x.highest_fnmr.rate),
            x.lowest,
            pct(x.lowest_fnmr.rate),
            x.ratio.map_or("–".into(), |v| format!("{v:.2}×")),
            if x.flagged { "**do not overlap**" } else { "overlap" }
        );
    }
    let _ = writeln!(s);
}

/// A table of each group's photos by key (a refusal reason, a quality bucket), as shares of
/// its photos; nothing when no group has a key.
fn shares(s: &mut String, d: &Dimension, title: &str, of: impl Fn(&GroupFigures) -> &BTreeMap<String, Estimate>) {
    let mut keys: Vec<&str> = d.groups.iter().flat_map(|g| of(g).keys().map(String::as_str)).collect();
    keys.sort_unstable();
    keys.dedup();
    if keys.is_empty() {
        return;
    }
    let _ = write!(s, "\n{title}\n\n| group |");
    for k in &keys {
        let _ = write!(s, " `{k}` |");
    }
    let _ = writeln!(s, "\n|---|{}", "---|".repeat(keys.len()));
    for g in &d.groups {
        let _ = write!(s, "| {} |", g.name);
        for k in &keys {
            // A key a group lacks is none of its photos.
            let e = of(g).get(*k).copied().or(Estimate::new(0, g.images));
            let _ = write!(s, " {} |", interval(e));
        }
        let _ = writeln!(s);
    }
}

/// The plot's size: a panel of 420 px per dimension.
pub fn size(r: &Report) -> (u32, u32) {
    (900, 420 * r.groups.len().max(1) as u32)
}

/// FNMR by group with interval bars, one panel per dimension; x is the threshold.
pub fn draw<B: DrawingBackend>(root: Area<B>, r: &Report) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<B::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let panels = root.split_evenly((r.groups.len().max(1), 1));
    for (d, panel) in r.groups.iter().zip(panels) {
        let Some(first) = d.groups.first() else { continue };
        let points: Vec<&str> = first.at.iter().map(|x| x.point.as_str()).collect();
        let top = d
            .groups
            .iter()
            .flat_map(|g| g.at.iter().filter_map(|x| x.fnmr.map(|f| f.hi)))
            .fold(0.01f64, f64::max);
        let mut chart = ChartBuilder::on(&panel)
            .caption(
                format!("FNMR by {} (95 % Wilson intervals)", d.name),
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.5f64..points.len() as f64 - 0.5, 0.0..top * 1.1)
            .map_err(e)?;
        let labels = points.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(points.len() * 2 + 1)
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() < 1e-6 && i >= 0.0 {
                    labels.get(i as usize).map_or(String::new(), |s| s.to_string())
                } else {
                    String::new()
                }
            })
            .y_desc("FNMR")
            .y_label_formatter(&|v| format!("{:.0} %", 100.0 * v))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        let n = d.groups.len() as f64;
        // A group without genuine pairs (photos the file does not list, keyed by image) has
        // nothing to draw.
        for (k, g) in d.groups.iter().enumerate().filter(|(_, g)| g.genuine > 0) {
            let colour = if g.name == UNKNOWN {
                RGBColor(120, 120, 120)
            } else {
                PALETTE[k % PALETTE.len()]
            };
            // Groups side by side around each threshold's position.
            let dx = (k as f64 - (n - 1.0) / 2.0) * 0.6 / n.max(1.0);
            let mut shapes = Vec::new();
            for (i, x) in g.at.iter().enumerate() {
                let Some(f) = x.fnmr else { continue };
                let at = i as f64 + dx;
                shapes.push(PathElement::new([(at, f.lo), (at, f.hi)], colour.stroke_width(2)).into_dyn());
                for y in [f.lo, f.hi] {
                    shapes.push(PathElement::new([(at - 0.03, y), (at + 0.03, y)], colour.stroke_width(2)).into_dyn());
                }
                shapes.push(Circle::new((at, f.rate), 5, colour.filled()).into_dyn());
            }
            chart
                .draw_series(shapes)
                .map_err(e)?
                .label(format!("{} ({} genuine)", g.name, g.genuine))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, colour.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(e)?;
    }
    root.present().map_err(e)
}
