//! `report.html`: the figures as one self-contained page. CSS is inline, charts are inline
//! SVG, thumbnails are `data:` URIs, and a Content-Security-Policy forbids the page any other
//! request, so it shows the same from a local disk, an object store or an air-gapped laptop.
//!
//! There is no script: everything is rendered here, once.

use std::collections::HashMap;
use std::fmt::Write;

use super::charts::{bars_svg, histogram_svg, short};
use super::escape;
use super::figures::{Figures, Tile};
use super::histogram::Side;
use super::thumbnails::{NotDrawn, Picture, WAVEFORM_WIDTH};

/// The sections, in page order: (id, title). Tests look for each.
pub const SECTIONS: [(&str, &str); 7] = [
    ("funnel", "Funnel"),
    ("histograms", "Measurements"),
    ("dropped", "Dropped samples by reason"),
    ("duplicates", "Duplicates"),
    ("clip", "CLIP scores"),
    ("timing", "Time per stage"),
    ("sweeps", "Threshold sweeps"),
];

const STYLE: &str = r#"
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:16px 24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}h3{font-size:15px;margin:16px 0 6px}
nav a{margin-right:12px}.meta{color:#555}.note{color:#666;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:14px}.card{background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:8px 10px;max-width:380px}
.tiles{display:flex;flex-wrap:wrap;gap:10px}
figure.tile{margin:0;width:180px;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:6px;font-size:12px;overflow:hidden}
figure.tile.video{width:320px}
figure.tile img{display:block;max-width:100%;height:auto;margin:0 auto}
figure.tile figcaption{margin-top:4px;overflow-wrap:anywhere}
.nopic{height:90px;display:flex;align-items:center;justify-content:center;text-align:center;background:#eee;color:#666;font-size:11px;padding:4px}
svg.wave{width:100%;height:90px;background:#f2f5fa}svg.wave path{stroke:#1b4f9c;stroke-width:1;fill:none}
.pair{display:flex;gap:6px;align-items:flex-start;background:#fff;border:1px solid #e2e2e2;border-radius:6px;padding:6px}
.pair .dist{font-weight:600;padding:4px;min-width:90px}
.kept{color:#3a7d44}.dropped{color:#c8553d}q{font-style:italic;color:#333}
table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg .tick,svg .label{font-size:11px;fill:#333}svg .threshold{font-size:11px;fill:#1b4f9c;font-weight:600}
"#;

/// Cuts long text (captions, details) for a tile.
fn clip_text(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Renders the page. `pictures` holds each shown sample's picture (or why there is none).
pub fn render(f: &Figures, pictures: &HashMap<String, Result<Picture, NotDrawn>>) -> String {
    let mut h = String::with_capacity(256 * 1024);
    let title = format!("mmcurate report: {}", f.run.name);
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title><style>{STYLE}</style></head><body>
<header><h1>{}</h1><p class="meta">{} samples → <span class="kept">{} kept</span>, <span class="dropped">{} dropped</span> · {} · device {} · mmcurate {} · config sha256 {}…</p><p class="meta">output {} · {} to {}</p><nav>"#,
        escape(&title),
        escape(&title),
        f.run.samples,
        f.run.kept,
        f.run.dropped,
        if f.run.seconds > 0.0 {
            format!(
                "{:.1} s, {:.1} samples/s",
                f.run.seconds, f.run.samples_per_second
            )
        } else {
            "no stage times".to_string()
        },
        escape(&f.run.device),
        escape(&f.run.tool_version),
        escape(f.run.config_sha256.get(..12).unwrap_or_default()),
        escape(&f.run.output),
        escape(&f.run.started_at),
        escape(&f.run.finished_at),
    );
    for (id, name) in SECTIONS {
        let _ = write!(h, r##"<a href="#{id}">{name}</a>"##);
    }
    h.push_str("</nav></header>\n");
    funnel(&mut h, f);
    histograms(&mut h, f);
    dropped(&mut h, f, pictures);
    duplicates(&mut h, f, pictures);
    clip(&mut h, f, pictures);
    timing(&mut h, f);
    sweeps(&mut h, f);
    h.push_str("</body></html>\n");
    h
}

fn open_section(h: &mut String, id: &str) {
    let title = SECTIONS
        .iter()
        .find(|(s, _)| *s == id)
        .map_or(id, |(_, t)| t);
    let _ = write!(
        h,
        r#"<section id="{id}" data-section="{id}"><h2>{title}</h2>"#
    );
}

fn funnel(h: &mut String, f: &Figures) {
    open_section(h, "funnel");
    let fu = &f.funnel;
    h.push_str("<table><tr><th>input</th><th>format</th><th>objects</th></tr>");
    for i in &fu.inputs {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#,
            escape(&i.uri),
            escape(&i.format),
            i.objects
        );
    }
    h.push_str("</table>");
    let mut bars = vec![(
        "samples".to_string(),
        fu.samples as f64,
        fu.samples.to_string(),
    )];
    for s in fu.stages.iter().filter(|s| s.dropped > 0) {
        bars.push((
            format!("after {}", s.stage),
            s.remaining as f64,
            format!("{} (−{})", s.remaining, s.dropped),
        ));
    }
    bars.push(("kept".to_string(), fu.kept as f64, fu.kept.to_string()));
    h.push_str(&bars_svg(&bars, fu.samples as f64, "#3a7d44"));
    h.push_str(
        "<table><tr><th>stage</th><th>reason</th><th>dropped</th><th>share of samples</th></tr>",
    );
    for s in &fu.stages {
        for (reason, n) in &s.reasons {
            let _ = write!(
                h,
                r##"<tr><td>{}</td><td><a href="#drop-{}">{}</a></td><td class="n">{n}</td><td class="n">{:.1}%</td></tr>"##,
                escape(&s.stage),
                escape(reason),
                escape(reason),
                100.0 * *n as f64 / fu.samples.max(1) as f64
            );
        }
    }
    h.push_str("</table>");
    if fu.by_media_kind.len() > 1 {
        h.push_str("<p class=\"meta\">");
        for (kind, (n, kept)) in &fu.by_media_kind {
            let _ = write!(h, "{}: {n} samples, {kept} kept · ", escape(kind));
        }
        h.push_str("</p>");
    }
    h.push_str("</section>\n");
}

fn histograms(h: &mut String, f: &Figures) {
    open_section(h, "histograms");
    h.push_str(r#"<p class="note">Every sample with the measurement; <span class="kept">kept</span> below <span class="dropped">dropped</span> (for any reason) in each bar; dashed lines are the thresholds in force.</p><div class="grid">"#);
    for hist in &f.histograms {
        let _ = write!(
            h,
            r#"<div class="card" data-histogram="{}"><h3>{}</h3>{}<div class="note">{} samples, {} to {} ({})</div>"#,
            escape(&hist.id),
            escape(&hist.label),
            histogram_svg(hist),
            hist.samples,
            short(hist.min),
            short(hist.max),
            hist.scale
        );
        for t in &hist.thresholds {
            let pct = |n: u64| 100.0 * n as f64 / hist.samples.max(1) as f64;
            let (drop_side, keep_side) = match t.side {
                Side::DropsBelow => ("below", "at or above"),
                Side::DropsAbove => ("above", "at or below"),
            };
            let (dropping, keeping) = match t.side {
                Side::DropsBelow => (&t.below, &t.above),
                Side::DropsAbove => (&t.above, &t.below),
            };
            let _ = write!(
                h,
                r#"<div class="note"><b>{} = {}</b>: {drop_side}: {} ({:.1}%, {} kept, {} dropped) · {keep_side}: {} ({:.1}%, {} kept, {} dropped)</div>"#,
                escape(&t.key),
                short(t.value),
                dropping.samples,
                pct(dropping.samples),
                dropping.kept,
                dropping.dropped,
                keeping.samples,
                pct(keeping.samples),
                keeping.kept,
                keeping.dropped
            );
        }
        h.push_str("</div>");
    }
    if f.histograms.is_empty() {
        h.push_str("<p>No sample was measured.</p>");
    }
    h.push_str("</div></section>\n");
}

/// One sample: its picture (or why there is none), name, reason, value and caption.
fn tile(
    h: &mut String,
    t: &Tile,
    pictures: &HashMap<String, Result<Picture, NotDrawn>>,
    label: &str,
) {
    let video = matches!(
        pictures.get(&t.id),
        Some(Ok(Picture::Jpeg { video: true, .. }))
    );
    let _ = write!(
        h,
        r#"<figure class="tile{}" title="{}">"#,
        if video { " video" } else { "" },
        escape(&t.id)
    );
    match pictures.get(&t.id) {
        Some(Ok(Picture::Jpeg { data_uri, .. })) => {
            let _ = write!(h, r#"<img src="{data_uri}" alt="{}">"#, escape(&t.name));
        }
        Some(Ok(Picture::Waveform(d))) => {
            let _ = write!(
                h,
                r#"<svg class="wave" viewBox="0 0 {WAVEFORM_WIDTH} 100" preserveAspectRatio="none" role="img" aria-label="waveform of {}"><path d="{d}"/></svg>"#,
                escape(&t.name)
            );
        }
        Some(Err(why)) => {
            let _ = write!(
                h,
                r#"<div class="nopic">{}</div>"#,
                escape(&clip_text(&why.to_string(), 120))
            );
        }
        None => h.push_str(r#"<div class="nopic">not fetched</div>"#),
    }
    let _ = write!(h, "<figcaption><b>{}</b>", escape(&clip_text(&t.name, 80)));
    if !label.is_empty() {
        let _ = write!(h, "<br>{}", escape(label));
    }
    if let Some(detail) = &t.detail {
        let _ = write!(
            h,
            r#"<br><span class="note">{}</span>"#,
            escape(&clip_text(detail, 140))
        );
    }
    if let Some(caption) = &t.caption {
        let _ = write!(h, "<br><q>{}</q>", escape(&clip_text(caption.trim(), 160)));
    }
    h.push_str("</figcaption></figure>");
}

fn dropped(h: &mut String, f: &Figures, pictures: &HashMap<String, Result<Picture, NotDrawn>>) {
    open_section(h, "dropped");
    let _ = write!(
        h,
        r#"<p class="note">Up to {} samples per reason, picked by a hash of their id (the same ones every time). Videos show {} frames; audio shows its waveform.</p>"#,
        f.limits.dropped_shown_per_reason,
        super::thumbnails::STRIP_FRAMES
    );
    for g in &f.dropped {
        let _ = write!(
            h,
            r#"<h3 id="drop-{}">{} <span class="note">({}; {} dropped, {} shown)</span></h3><div class="tiles">"#,
            escape(&g.reason),
            escape(&g.reason),
            escape(&g.stage),
            g.count,
            g.shown.len()
        );
        for t in &g.shown {
            let label = t
                .value
                .map(|v| format!("value {}", short(v)))
                .unwrap_or_default();
            tile(h, t, pictures, &label);
        }
        h.push_str("</div>");
    }
    if f.dropped.is_empty() {
        h.push_str("<p>No sample was dropped by a filter.</p>");
    }
    h.push_str("</section>\n");
}

fn duplicates(h: &mut String, f: &Figures, pictures: &HashMap<String, Result<Picture, NotDrawn>>) {
    open_section(h, "duplicates");
    let _ = write!(
        h,
        r#"<p class="note">Each duplicate beside the sample kept instead, nearest to the threshold first (up to {} pairs per kind).</p>"#,
        f.limits.pairs_shown_per_kind
    );
    for g in &f.duplicates {
        let threshold = match (&g.threshold_key, g.threshold) {
            (Some(k), Some(v)) => format!("; {} = {}", k, short(v)),
            _ => String::new(),
        };
        let _ = write!(
            h,
            r#"<h3 id="drop-{}">{} <span class="note">({} dropped{})</span></h3><div class="grid">"#,
            escape(&g.reason),
            escape(&g.reason),
            g.count,
            escape(&threshold)
        );
        for p in &g.pairs {
            let measure = match (p.distance, p.similarity) {
                (_, Some(s)) => format!("similarity {s:.4}"),
                (Some(d), None) => format!("distance {}", short(d)),
                (None, None) => String::new(),
            };
            let _ = write!(
                h,
                r#"<div class="pair"><div class="dist">{}</div>"#,
                escape(&measure)
            );
            tile(h, &p.duplicate, pictures, "dropped");
            match &p.kept {
                Some(k) => tile(h, k, pictures, "kept instead"),
                None => {
                    h.push_str(r#"<div class="nopic">the kept sample is not in the ledger</div>"#)
                }
            }
            h.push_str("</div>");
        }
        h.push_str("</div>");
    }
    if f.duplicates.is_empty() {
        h.push_str("<p>No duplicates were dropped.</p>");
    }
    h.push_str("</section>\n");
}

fn clip(h: &mut String, f: &Figures, pictures: &HashMap<String, Result<Picture, NotDrawn>>) {
    open_section(h, "clip");
    if f.clip.scored == 0 {
        h.push_str("<p>No CLIP scores in this run (it had no <code>[models.clip]</code>, or no sample had a caption).</p></section>\n");
        return;
    }
    let _ = write!(
        h,
        r#"<p class="note">{} samples scored.</p>"#,
        f.clip.scored
    );
    for (title, tiles) in [("Lowest", &f.clip.lowest), ("Highest", &f.clip.highest)] {
        let _ = write!(h, r#"<h3>{title}</h3><div class="tiles">"#);
        for t in tiles.iter() {
            let status = if t.kept { "kept" } else { "dropped" };
            let label = format!("score {:.4} · {status}", t.value.unwrap_or_default());
            tile(h, t, pictures, &label);
        }
        h.push_str("</div>");
    }
    h.push_str("</section>\n");
}

fn timing(h: &mut String, f: &Figures) {
    open_section(h, "timing");
    if f.stages.is_empty() {
        h.push_str("<p>The manifest has no stage times.</p></section>\n");
        return;
    }
    let total: f64 = f.stages.iter().map(|s| s.seconds).sum();
    let bars: Vec<(String, f64, String)> = f
        .stages
        .iter()
        .map(|s| {
            (
                s.stage.clone(),
                s.seconds,
                format!("{:.2} s · {:.1} samples/s", s.seconds, s.samples_per_second),
            )
        })
        .collect();
    let longest = f.stages.iter().map(|s| s.seconds).fold(0.0, f64::max);
    h.push_str(&bars_svg(&bars, longest, "#1b4f9c"));
    let _ = write!(
        h,
        r#"<p class="meta">{:.2} s in all · {:.1} samples/s over the whole run</p></section>"#,
        total, f.run.samples_per_second
    );
    h.push('\n');
}

/// What each filter would keep and each dedup would drop at other thresholds (calibration).
fn sweeps(h: &mut String, f: &Figures) {
    open_section(h, "sweeps");
    let Some(sweeps) = &f.sweeps else {
        h.push_str("<p>Threshold sweeps are made by <code>mmcurate calibrate CONFIG</code>, which measures a sample of the inputs and writes this report without writing shards.</p></section>\n");
        return;
    };
    h.push_str(r#"<p class="note">From one pass of measuring: the share each filter alone keeps at a range of thresholds, and what each dedup drops at a range of distances or similarities (its keep rule as in a run), with the pairs that a step adds. ◆ marks the configured value.</p><div class="grid">"#);
    for s in &sweeps.filters {
        let sign = match s.side {
            crate::decide::percentiles::Side::Min => "≥",
            crate::decide::percentiles::Side::Max => "≤",
        };
        let items: Vec<(String, f64, String)> = s
            .points
            .iter()
            .map(|p| {
                let at = s
                    .configured
                    .is_some_and(|c| (c - p.threshold).abs() <= step_of(s) / 2.0);
                (
                    format!(
                        "{}{sign} {}",
                        if at { "◆ " } else { "" },
                        short(p.threshold)
                    ),
                    p.kept_share,
                    format!("{:.1}% kept ({})", p.kept_share * 100.0, p.kept),
                )
            })
            .collect();
        let _ = write!(
            h,
            r#"<div class="card sweep" data-key="{}"><h3>{} <span class="note">{} · {} samples{}</span></h3>{}</div>"#,
            escape(&s.key),
            escape(&s.label),
            escape(&s.key),
            s.samples,
            s.configured
                .map_or(String::new(), |c| format!(" · configured {}", short(c))),
            bars_svg(&items, 1.0, "#3a7d44")
        );
    }
    h.push_str("</div>");
    for d in &sweeps.dedups {
        let _ = write!(
            h,
            r#"<h3>{} <span class="note">{} candidates · configured {}</span></h3><table class="sweep" data-key="{}"><tr><th>threshold</th><th>groups</th><th>dropped</th><th>pairs added at this step (duplicate → kept, value)</th></tr>"#,
            escape(&d.key),
            d.candidates,
            short(d.configured),
            escape(&d.key),
        );
        for p in &d.points {
            let mark = if (p.threshold - d.configured).abs() < 1e-9 {
                "◆ "
            } else {
                ""
            };
            let examples: Vec<String> = p
                .examples
                .iter()
                .map(|e| {
                    format!(
                        "{} → {} ({})",
                        escape(&clip_text(&e.duplicate, 60)),
                        escape(&clip_text(&e.kept, 60)),
                        short(e.value)
                    )
                })
                .collect();
            let _ = write!(
                h,
                r#"<tr><td class="n">{mark}{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td></tr>"#,
                short(p.threshold),
                p.groups,
                p.dropped,
                examples.join("<br>")
            );
        }
        h.push_str("</table>");
    }
    if sweeps.dedups.is_empty() {
        h.push_str("<p>No dedup had two candidates to compare.</p>");
    }
    h.push_str("</section>\n");
}

/// The spacing of a filter sweep's thresholds.
fn step_of(s: &crate::decide::sweeps::FilterSweep) -> f64 {
    match s.points.as_slice() {
        [a, b, ..] => (b.threshold - a.threshold).abs(),
        _ => 0.0,
    }
}
