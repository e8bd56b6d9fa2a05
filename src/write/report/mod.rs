//! The run report: `report.json` (the figures) and `report.html` (the same figures drawn, with
//! thumbnails of the samples behind them) written beside the manifest. Made at the end of every
//! run from its records, and again by `mmcurate report OUTPUT` from the ledger and the shards.
//!
//! Files: `rows` (what is read of each sample), `histogram` and `figures` (what is counted and
//! picked), `fetch` and `thumbnails` (the pictures), `charts` and `html` (the drawing). The
//! report decides nothing and changes no other output file.

pub mod charts;
pub mod fetch;
pub mod figures;
pub mod histogram;
pub mod html;
pub mod rows;
pub mod thumbnails;

use object_store::ObjectStoreExt;
use serde_json::Value;
use std::collections::HashMap;

use crate::store::{Location, Stores};
pub use figures::Figures;
pub use rows::{LedgerFiles, RecordRows, ReportRow, RowSource};
use thumbnails::{NotDrawn, Picture};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read the ledger: {0}")]
    Ledger(String),
    #[error("cannot read {uri}: {message}")]
    Read { uri: String, message: String },
    #[error(transparent)]
    Write(#[from] super::WriteError),
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportFiles {
    pub html_bytes: u64,
    pub json_bytes: u64,
    /// Samples shown with a picture.
    pub pictures: usize,
}

/// Builds the figures and the page (in memory): counts and histograms over every row, then the
/// bytes of the few samples the galleries show, fetched and drawn on the CPU's cores.
pub fn build(
    rows: &dyn RowSource,
    manifest: &Value,
    output: &Location,
    stores: &Stores,
    runtime: &tokio::runtime::Handle,
) -> Result<(Figures, String), ReportError> {
    let mut figures = figures::gather(rows, manifest)?;
    let mut shown: Vec<&ReportRow> = Vec::new();
    for g in &figures.dropped {
        shown.extend(g.shown.iter().map(|t| &t.row));
    }
    for g in &figures.duplicates {
        for p in &g.pairs {
            shown.push(&p.duplicate.row);
            shown.extend(p.kept.as_ref().map(|t| &t.row));
        }
    }
    shown.extend(figures.clip.lowest.iter().map(|t| &t.row));
    shown.extend(figures.clip.highest.iter().map(|t| &t.row));
    // A sample dropped by a `[limits]` rule, or refused outside its input, is not fetched or
    // decoded again for a thumbnail: that is what the rule kept the run from doing.
    let (refused, shown): (Vec<&ReportRow>, Vec<&ReportRow>) =
        shown.into_iter().partition(|row| over_a_limit(row));
    let fetched = fetch::fetch_all(&shown, output, stores, runtime);
    let mut ids: Vec<(&String, &fetch::Fetched)> = fetched.iter().collect();
    ids.sort_by(|a, b| a.0.cmp(b.0));
    let by_id: HashMap<&str, &ReportRow> = shown.iter().map(|r| (r.id.as_str(), *r)).collect();
    let mut pictures: HashMap<String, Result<Picture, NotDrawn>> = {
        use rayon::prelude::*;
        ids.par_iter()
            .map(|(id, f)| {
                // A thumbnail is a few frames: a file that takes longer is not drawn.
                let _budget =
                    crate::decode::budget::enter(crate::decode::budget::Budget::starting_now(
                        THUMBNAIL_SECONDS,
                        THUMBNAIL_FRAMES,
                    ));
                let picture = match (&f.media, by_id.get(id.as_str())) {
                    (Some(bytes), Some(row)) => thumbnails::picture(bytes, row),
                    _ => Err(NotDrawn::NotFetched(
                        f.error
                            .clone()
                            .unwrap_or_else(|| "no media part".to_string()),
                    )),
                };
                ((*id).clone(), picture)
            })
            .collect()
    };
    for row in refused {
        let why = row.drop_reason.as_deref().unwrap_or_default();
        pictures.insert(row.id.clone(), Err(NotDrawn::OverALimit(why.to_string())));
    }
    let captions: HashMap<String, String> = fetched
        .into_iter()
        .filter_map(|(id, f)| Some((id, f.caption?)))
        .collect();
    let mut fill = |t: &mut figures::Tile| t.caption = captions.get(&t.id).cloned();
    for g in &mut figures.dropped {
        g.shown.iter_mut().for_each(&mut fill);
    }
    for g in &mut figures.duplicates {
        for p in &mut g.pairs {
            fill(&mut p.duplicate);
            p.kept.iter_mut().for_each(&mut fill);
        }
    }
    figures.clip.lowest.iter_mut().for_each(&mut fill);
    figures.clip.highest.iter_mut().for_each(&mut fill);
    let page = html::render(&figures, &pictures);
    Ok((figures, page))
}

/// How long drawing one thumbnail may decode, and how many frames.
const THUMBNAIL_SECONDS: f64 = 30.0;
const THUMBNAIL_FRAMES: u64 = 100_000;

/// Whether a row was dropped without its bytes being read or decoded whole, for a limit.
fn over_a_limit(row: &ReportRow) -> bool {
    matches!(
        row.drop_reason.as_deref(),
        Some(
            "too_large"
                | "outside_input"
                | "too_many_pixels"
                | "too_many_frames"
                | "too_many_channels"
                | "decode_timeout"
        )
    ) || row
        .drop_detail
        .as_deref()
        .is_some_and(|detail| detail.contains("limits.max_"))
}

/// Builds the report and writes `report.json` and `report.html` into the output.
pub fn write_report(
    rows: &dyn RowSource,
    manifest: &Value,
    output: &Location,
    stores: &Stores,
    runtime: &tokio::runtime::Handle,
) -> Result<ReportFiles, ReportError> {
    let (figures, page) = build(rows, manifest, output, stores, runtime)?;
    let json = serde_json::to_vec_pretty(&figures).expect("the figures serialise");
    let files = ReportFiles {
        html_bytes: page.len() as u64,
        json_bytes: json.len() as u64,
        pictures: page.matches("data:image/jpeg").count() + page.matches("class=\"wave\"").count(),
    };
    runtime.block_on(async {
        super::put(output, "report.json", json).await?;
        super::put(output, "report.html", page.into_bytes()).await
    })?;
    Ok(files)
}

/// The end of a run: the report from its records and manifest. A report that cannot be made
/// is a warning, not a failed run: the shards, ledger and manifest are already written.
pub fn write_for_run(
    records: &[super::Record],
    manifest: &impl serde::Serialize,
    output: &Location,
    runtime: &tokio::runtime::Handle,
) {
    // Through its JSON text, as `mmcurate report` reads it: a float parsed back can differ
    // from the value it was written from in the last bit, and the two reports must agree.
    let text = serde_json::to_vec(manifest).expect("the manifest serialises");
    let manifest: Value = serde_json::from_slice(&text).expect("the manifest parses");
    match write_report(
        &RecordRows(records),
        &manifest,
        output,
        &Stores::new(),
        runtime,
    ) {
        Ok(files) => tracing::info!(
            "report: {} ({} KB, {} pictures) and report.json",
            output.child("report.html").uri(),
            files.html_bytes / 1024,
            files.pictures
        ),
        Err(e) => tracing::warn!("the run report was not written: {e}"),
    }
}

/// `mmcurate report OUTPUT`: the report again, from the current version's manifest, ledger and
/// shards, written into that version's folder (`OUTPUT` may also be a version folder).
pub fn rebuild(output_uri: &str) -> Result<(String, ReportFiles), ReportError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| ReportError::Read {
            uri: output_uri.to_string(),
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
    let stores = Stores::new();
    let read_error = |uri: String, message: String| ReportError::Read { uri, message };
    let root = stores
        .open(output_uri)
        .map_err(|e| read_error(output_uri.to_string(), e.to_string()))?;
    let output = runtime
        .block_on(super::version::locate_current(&root))
        .map_err(|e| read_error(output_uri.to_string(), e.to_string()))?
        .dir;
    let get_at = |location: Location| {
        runtime
            .block_on(async {
                let object = location.store.get(&location.path).await?;
                object.bytes().await
            })
            .map_err(|e| read_error(location.uri(), e.to_string()))
    };
    let get = |relative: &str| get_at(output.child(relative));
    let manifest: Value = serde_json::from_slice(&get("manifest.json")?).map_err(|e| {
        read_error(
            output.child("manifest.json").uri(),
            format!("not a run manifest: {e}"),
        )
    })?;
    let mut ledger = Vec::new();
    for file in manifest["ledger"].as_array().into_iter().flatten() {
        if let Some(location) = super::version::listed_file(&output, file) {
            ledger.push(get_at(location)?);
        }
    }
    let files = write_report(
        &LedgerFiles(ledger),
        &manifest,
        &output,
        &stores,
        runtime.handle(),
    )?;
    Ok((output.child("report.html").uri(), files))
}

/// Escapes text for HTML content and attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
