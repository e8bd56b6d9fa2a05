//! The run report at scale: N synthetic ledger rows (N from the first argument or
//! `MMCURATE_BENCH_N`, default 1,000,000; images with sharpness, brightness, size, caption and
//! CLIP score; 10% dropped over seven reasons, a third of them duplicates of kept rows), made
//! on the fly row by row as the ledger reader streams them, through the whole report: figures
//! and histograms over every row, the gallery samples' bytes fetched (the quickstart images,
//! which the rows point at) and thumbnailed, the page rendered and both files written.
//!
//! Prints one JSON line: rows, seconds to make the rows alone (the generator's share), for the
//! figures (made twice: the second pass finds the duplicates' kept side) and for the whole report, the
//! sizes of report.html and report.json, pictures shown, peak memory (VmHWM).
//! Run with `cargo bench --bench report -- 1000000`.

use serde_json::json;
use std::time::Instant;

use mmcurate::store::Stores;
use mmcurate::write::report::{figures, write_report, ReportError, ReportRow, RowSource};

/// splitmix64: each row's values come from its own index.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform value in [0, 1) from a row's stream.
fn unit(seed: u64, k: u64) -> f64 {
    (mix(seed.wrapping_mul(31).wrapping_add(k)) >> 11) as f64 / (1u64 << 53) as f64
}

struct Synthetic {
    rows: u64,
    images: Vec<String>,
}

impl Synthetic {
    fn row(&self, i: u64) -> ReportRow {
        let image = &self.images[(mix(i) % self.images.len() as u64) as usize];
        let id = format!("0:part-{:05}/{i:09}.jpg", i / 10_000);
        let sharpness = 10f64.powf(1.0 + 3.0 * unit(i, 1));
        let brightness = 255.0 * unit(i, 2);
        let clip = 0.15 + 0.2 * unit(i, 3);
        let side = 64 + (unit(i, 4) * 1500.0) as u32;
        let mut row = ReportRow {
            key: format!("{i:09}"),
            name: format!("part-{:05}/{i:09}.jpg", i / 10_000),
            source_uri: format!("file://{image}"),
            media_kind: Some("image".into()),
            size_bytes: 20_000 + (unit(i, 5) * 400_000.0) as u64,
            width: Some(side * 4 / 3),
            height: Some(side),
            sharpness: Some(sharpness),
            brightness: Some(brightness),
            caption_words: Some(3 + (unit(i, 6) * 30.0) as u32),
            clip_score: Some(clip),
            kept: true,
            id,
            ..ReportRow::default()
        };
        let mut drop = |stage: &str, reason: &str| {
            row.kept = false;
            row.drop_stage = Some(stage.into());
            row.drop_reason = Some(reason.into());
            row.drop_detail = Some(format!("synthetic {reason}"));
        };
        match mix(i ^ 0xABCD) % 100 {
            0 => drop("decode", "unreadable"),
            1 if sharpness < 300.0 => drop("filter", "too_blurry"),
            2 => drop("filter", "too_dark"),
            3 => drop("filter", "too_small"),
            4..=6 if i > 0 => {
                drop("dedup", "near_duplicate");
                row.duplicate_of = Some(format!("0:part-{:05}/{:09}.jpg", (i - 1) / 10_000, i - 1));
                row.duplicate_distance = Some((mix(i) % 7) as f64);
            }
            7 => drop("dedup", "exact_duplicate"),
            8 | 9 => drop("alignment", "low_clip_score"),
            _ => {}
        }
        row
    }
}

impl RowSource for Synthetic {
    fn for_each_row(&self, visit: &mut dyn FnMut(ReportRow)) -> Result<(), ReportError> {
        for i in 0..self.rows {
            visit(self.row(i));
        }
        Ok(())
    }
}

fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .or_else(|| std::env::var("MMCURATE_BENCH_N").ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let folder =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/images");
    let mut images: Vec<String> = [
        "opencv_baboon.jpg",
        "opencv_butterfly.jpg",
        "skimage_camera.png",
        "opencv_home.jpg",
        "opencv_aero1.jpg",
    ]
    .iter()
    .map(|n| folder.join(n).display().to_string())
    .collect();
    images.sort();
    let source = Synthetic { rows, images };
    let manifest = json!({
        "run": {"name": "bench", "output": "file:///tmp/bench", "device": "cpu"},
        "config": {
            "filters": {"image": {"min_side": 64, "min_sharpness": 30.0, "min_brightness": 20.0,
                                  "max_brightness": 235.0, "max_aspect_ratio": 4.0},
                        "caption": {"min_words": 2}},
            "dedup": {"phash_max_distance": 6},
        },
        "alignment": {"quantile_threshold": 0.17},
        "stage_seconds": {"plan": 1.0, "measure": 600.0, "decide": 20.0, "write": 60.0},
        "inputs": [{"uri": "s3://bucket/raw", "format": "files", "object_count": rows}],
    });

    // The rows alone (made and dropped), to tell the generator's share from the report's.
    let started = Instant::now();
    let mut made = 0u64;
    source
        .for_each_row(&mut |row| made += u64::from(row.kept))
        .expect("rows");
    let rows_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let figures = figures::gather(&source, &manifest).expect("figures");
    let figures_seconds = started.elapsed().as_secs_f64();
    assert_eq!(figures.run.samples, rows);

    let out = tempfile::tempdir().expect("a temporary folder");
    let stores = Stores::new();
    let output = stores
        .open(out.path().to_str().expect("UTF-8"))
        .expect("output");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let files =
        write_report(&source, &manifest, &output, &stores, runtime.handle()).expect("report");
    let report_seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "rows": rows,
            "threads": rayon::current_num_threads(),
            "kept": made,
            "rows_only_seconds": (rows_seconds * 100.0).round() / 100.0,
            "figures_seconds": (figures_seconds * 100.0).round() / 100.0,
            "report_seconds": (report_seconds * 100.0).round() / 100.0,
            "report_html_bytes": files.html_bytes,
            "report_json_bytes": files.json_bytes,
            "pictures": files.pictures,
            "peak_memory_mb": peak_memory_mb().round(),
        })
    );
}
