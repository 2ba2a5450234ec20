//! The miss-ratio curve as an inline SVG plot: hit ratio (0-100%) against capacity on a log
//! scale, no script. Every number is formatted by this code; the only text is escaped.

use std::fmt::Write;

use super::html::escape;
use crate::memo::MissRatioCurve;

const WIDTH: f64 = 480.0;
const HEIGHT: f64 = 180.0;
/// Margins: left (axis labels), right, top, bottom (axis labels).
const LEFT: f64 = 40.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// A `<figure>` with the plot and a caption; the cache's configured capacity, if any, is
/// marked with a dashed line.
pub(super) fn svg(curve: &MissRatioCurve, capacity: Option<usize>) -> String {
    let max = curve
        .points
        .last()
        .map_or(10, |point| point.capacity)
        .max(10) as f64;
    let span = max.log10();
    let x = |capacity: f64| LEFT + (WIDTH - LEFT - RIGHT) * capacity.max(1.0).log10() / span;
    let y = |ratio: f64| TOP + (HEIGHT - TOP - BOTTOM) * (1.0 - ratio.clamp(0.0, 1.0));
    let mut out = String::new();
    let _ = write!(
        out,
        "<figure class=\"mrc\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" \
         height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"{}\"><rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" \
         fill=\"#fff\" stroke=\"#d5d9e2\"/>",
        escape("estimated LRU hit ratio by capacity"),
        WIDTH - LEFT - RIGHT,
        HEIGHT - TOP - BOTTOM,
    );
    for ratio in [0.0, 0.5, 1.0] {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\" \
             fill=\"#667\">{}%</text>",
            LEFT - 4.0,
            y(ratio) + 3.0,
            (ratio * 100.0) as u32
        );
    }
    let mut decade = 1usize;
    while decade as f64 <= max {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\" \
             fill=\"#667\">{}</text>",
            x(decade as f64),
            HEIGHT - 8.0,
            decade
        );
        match decade.checked_mul(10) {
            Some(next) => decade = next,
            None => break,
        }
    }
    if let Some(capacity) = capacity.filter(|&c| c as f64 <= max) {
        let at = x(capacity as f64);
        let _ = write!(
            out,
            "<line x1=\"{at:.1}\" y1=\"{TOP}\" x2=\"{at:.1}\" y2=\"{:.1}\" stroke=\"#b3261e\" \
             stroke-dasharray=\"4 3\"/>",
            HEIGHT - BOTTOM
        );
    }
    out.push_str("<polyline fill=\"none\" stroke=\"#2357c6\" stroke-width=\"2\" points=\"");
    for point in &curve.points {
        let _ = write!(
            out,
            "{:.1},{:.1} ",
            x(point.capacity as f64),
            y(point.hit_ratio)
        );
    }
    out.push_str("\"/></svg><figcaption>");
    out.push_str(&escape(&format!(
        "Estimated LRU hit ratio by capacity (log scale){}, from {} sampled calls ({}% of keys \
         sampled).",
        if capacity.is_some() {
            "; dashed: this cache's capacity"
        } else {
            ""
        },
        curve.sampled_references,
        curve.sampling_rate * 100.0
    )));
    out.push_str("</figcaption></figure>");
    out
}
