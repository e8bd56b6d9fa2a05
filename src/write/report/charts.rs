//! The report's charts as inline SVG, drawn by hand: a histogram with its thresholds, and
//! horizontal bars (funnel, time per stage). A few rectangles and lines each; a charting
//! library would bring JavaScript or a font, and the report must load nothing.

use std::fmt::Write;

use super::escape;
use super::histogram::{Histogram, Side};

const KEPT: &str = "#3a7d44";
const DROPPED: &str = "#c8553d";

/// A number as short text: `1.2k`, `35`, `0.281`.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn axis(scale: &str, v: f64) -> f64 {
    if scale == "linear" {
        v
    } else {
        v.max(0.0).ln_1p() / std::f64::consts::LN_10
    }
}

/// A histogram: kept (green) under dropped (red) per bin, thresholds as dashed lines.
pub fn histogram_svg(h: &Histogram) -> String {
    let (w, ht) = (380.0, 170.0);
    let (left, right, top, bottom) = (40.0, w - 10.0, 14.0, ht - 30.0);
    let (Some(first), Some(last)) = (h.bins.first(), h.bins.last()) else {
        return String::new();
    };
    let (a0, a1) = (axis(h.scale, first.lo), axis(h.scale, last.hi));
    let x_of = |v: f64| left + (axis(h.scale, v) - a0) / (a1 - a0).max(1e-12) * (right - left);
    let max_count = h
        .bins
        .iter()
        .map(|b| b.kept + b.dropped)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y_of = |n: f64| bottom - n / max_count * (bottom - top);
    let bar = (right - left) / h.bins.len() as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {w} {ht}" width="{w}" height="{ht}" role="img" aria-label="{}">"#,
        escape(&h.label)
    );
    for (i, b) in h.bins.iter().enumerate() {
        let x = left + bar * i as f64;
        let kept_top = y_of(b.kept as f64);
        let all_top = y_of((b.kept + b.dropped) as f64);
        if b.kept > 0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{kept_top:.1}" width="{:.1}" height="{:.1}" fill="{KEPT}"><title>{} to {}: {} kept</title></rect>"#,
                bar - 0.5,
                bottom - kept_top,
                short(b.lo),
                short(b.hi),
                b.kept
            );
        }
        if b.dropped > 0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{all_top:.1}" width="{:.1}" height="{:.1}" fill="{DROPPED}"><title>{} to {}: {} dropped</title></rect>"#,
                bar - 0.5,
                kept_top - all_top,
                short(b.lo),
                short(b.hi),
                b.dropped
            );
        }
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#555"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#555"/>"##
    );
    let mid = if h.scale == "linear" {
        (first.lo + last.hi) / 2.0
    } else {
        ((a0 + a1) / 2.0 * std::f64::consts::LN_10).exp_m1()
    };
    for (v, anchor) in [(first.lo, "start"), (mid, "middle"), (last.hi, "end")] {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="{anchor}" class="tick">{}</text>"#,
            x_of(v),
            bottom + 14.0,
            short(v)
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end" class="tick">{}</text><text x="{}" y="{}" text-anchor="end" class="tick">0</text>"#,
        left - 4.0,
        top + 8.0,
        max_count,
        left - 4.0,
        bottom
    );
    for t in &h.thresholds {
        let x = x_of(t.value);
        let label = match t.side {
            Side::DropsBelow => format!("min {}", short(t.value)),
            Side::DropsAbove => format!("max {}", short(t.value)),
        };
        // Labels near an edge are anchored inside the chart, so they are not cut off.
        let anchor = if x > right - 40.0 {
            "end"
        } else if x < left + 40.0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="#1b4f9c" stroke-width="2" stroke-dasharray="5 3"><title>{}</title></line><text x="{x:.1}" y="{}" text-anchor="{anchor}" class="threshold">{}</text>"##,
            top - 4.0,
            escape(&t.key),
            top - 4.0 + 1.0,
            escape(&label)
        );
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars with a label and a value each; `of` is what a full bar is.
pub fn bars_svg(items: &[(String, f64, String)], of: f64, color: &str) -> String {
    let row = 22.0;
    let (w, label_w) = (560.0, 190.0);
    let ht = row * items.len() as f64 + 4.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="bars" viewBox="0 0 {w} {ht}" width="{w}" height="{ht}" role="img">"#
    );
    for (i, (label, value, text)) in items.iter().enumerate() {
        let y = row * i as f64 + 2.0;
        let width = if of > 0.0 {
            (value / of).clamp(0.0, 1.0) * (w - label_w - 110.0)
        } else {
            0.0
        };
        let _ = write!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end" class="label">{}</text><rect x="{label_w}" y="{y:.1}" width="{width:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" class="label">{}</text>"#,
            label_w - 6.0,
            y + 14.0,
            escape(label),
            row - 6.0,
            label_w + width + 6.0,
            y + 14.0,
            escape(text)
        );
    }
    s.push_str("</svg>");
    s
}
