//! Synthetic state for timing the decide phase at corpus scale, without decoding anything: for
//! a config whose input is a folder of `.tar` shards (one work unit each), it makes the shard
//! files (empty: the decide phase lists them, never opens them), cuts the plan into units as a
//! run does (`Job::prepare`), and commits each unit's records through the real state writer
//! (`MeasureState::commit_unit`), as a measure phase would have. Each shard holds
//! `per_shard` image samples with realistic measurements: sizes, dimensions, sharpness,
//! brightness, a pHash and dHash, a sha256, caption metadata and a staged `.jpg` and `.txt`.
//! About 1 in 100 samples is a byte-identical copy of an earlier one, 1 in 20 a near copy (its
//! pHash 1 to 3 bits away), 1 in 25 was already dropped by a per-sample filter. The staged
//! parts have their samples' real lengths but the staged files hold no bytes (the decide phase
//! reads only `.json` parts, which these samples have none of), so the state is only the
//! records' CBOR (about 0.9 KB a sample). Then time the phase:
//!
//! ```text
//! cargo bench --profile test --bench decide_state -- /tmp/decide-bench 1000000
//! /usr/bin/time -v target/bench/mmcurate run /tmp/decide-bench/config.toml --phase decide
//! ```
//!
//! Usage: `decide_state DIR SAMPLES [PER_SHARD]` (default 1000 samples a shard); writes
//! `DIR/config.toml`, `DIR/in/` and `DIR/out/state/`, and prints one JSON line.

use std::time::Instant;

use mmcurate::config::Config;
use mmcurate::measure::{Measurements, MediaKind};
use mmcurate::pipeline::phases::Job;
use mmcurate::record::{Decision, Drop, Reason, Record, Stage, StagedPart};
use mmcurate::source::Origin;
use mmcurate::state::UnitRecords;

/// splitmix64, for values that depend only on the sample's number.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What sample `i` is a copy of: (original, exact) for about 1 in 100 exact and 1 in 20 near
/// copies, of an earlier sample that is itself an original.
fn copy_of(i: u64) -> Option<(u64, bool)> {
    let h = mix(i ^ 0xC0FF_EE00) % 100;
    if i == 0 || h >= 6 {
        return None;
    }
    let mut j = mix(h ^ i) % i;
    while j > 0 && mix(j ^ 0xC0FF_EE00) % 100 < 6 {
        j -= 1;
    }
    Some((j, h == 0))
}

/// `value` with 1 to 3 distinct bits flipped, chosen by `seed`.
fn near(value: u64, seed: u64) -> u64 {
    let flips = 1 + (mix(seed) % 3) as u32;
    let mut out = value;
    let mut s = seed;
    while (out ^ value).count_ones() < flips {
        s = mix(s);
        let bit = 1u64 << (s % 64);
        if (out ^ value) & bit == 0 {
            out ^= bit;
        }
    }
    out
}

/// Sample `i`'s own measurements (before any copying): 20 KB to 500 KB, 256 to 2047 px a side.
fn measurements(i: u64) -> Measurements {
    let h = mix(i);
    let (w, hgt) = (256 + (h % 1792) as u32, 256 + ((h >> 11) % 1792) as u32);
    let words = 3 + ((h >> 22) % 30) as u32;
    Measurements {
        size_bytes: 20_000 + (h >> 27) % 480_000,
        sha256: Some(hex::encode(
            [mix(h ^ 1), mix(h ^ 2), mix(h ^ 3), mix(h ^ 4)]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect::<Vec<u8>>(),
        )),
        format: Some("jpeg".into()),
        width: Some(w),
        height: Some(hgt),
        sharpness: Some((mix(h ^ 5) % 1_000_000) as f64 / 1000.0),
        brightness: Some(30.0 + (mix(h ^ 6) % 190_000) as f64 / 1000.0),
        clipped_fraction: Some((mix(h ^ 7) % 1000) as f64 / 10_000.0),
        phash: Some(mix(h ^ 8)),
        dhash: Some(mix(h ^ 9)),
        caption_chars: Some(words * 6),
        caption_words: Some(words),
        caption_tokens: Some(words + words / 3),
        caption_truncated: Some(false),
        media_kind: Some(MediaKind::Image),
        ..Measurements::default()
    }
}

fn record(i: u64, shard: &str, unit: u32, offset: &mut u64) -> Record {
    let key = format!("{i:09}");
    let mut m = measurements(i);
    if let Some((original, exact)) = copy_of(i) {
        let o = measurements(original);
        if exact {
            m = o;
        } else {
            m.phash = o.phash.map(|p| near(p, i));
        }
    }
    let dropped = mix(i ^ 0xD0) % 25 == 0;
    let (decision, staged) = if dropped {
        let side = m.width.unwrap_or(0).min(m.height.unwrap_or(0));
        (
            Decision::Drop(Drop::new(
                Stage::Filter,
                Reason::TooSmall,
                format!("shorter side {side} px < min_side 300"),
            )),
            Vec::new(),
        )
    } else {
        let jpg = StagedPart {
            unit,
            ext: "jpg".into(),
            offset: *offset,
            len: m.size_bytes,
        };
        let txt_len = u64::from(m.caption_chars.unwrap_or(0));
        let txt = StagedPart {
            unit,
            ext: "txt".into(),
            offset: *offset + m.size_bytes,
            len: txt_len,
        };
        *offset += m.size_bytes + txt_len;
        (Decision::Keep, vec![jpg, txt])
    };
    Record {
        id: format!("0:{shard}/{key}"),
        key: key.clone(),
        name: format!("{shard}/{key}.jpg"),
        origin: Origin {
            uri: format!("file:///bench/in/{shard}"),
            tar_member: Some(format!("{key}.jpg")),
            etag: Some(format!("\"{:016x}\"", mix(i ^ 0xE7))),
            ..Origin::default()
        },
        measurements: m,
        decision,
        staged,
        shard: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(dir), Some(samples)) = (args.first(), args.get(1)) else {
        return Err("usage: decide_state DIR SAMPLES [PER_SHARD]".into());
    };
    let samples: u64 = samples.parse()?;
    let per_shard: u64 = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    let dir = std::path::Path::new(dir);
    let input = dir.join("in");
    std::fs::create_dir_all(&input)?;
    let shards = samples.div_ceil(per_shard);
    for s in 0..shards {
        std::fs::File::create(input.join(format!("shard-{s:06}.tar")))?;
    }
    let config_text = format!(
        "[run]\noutput = \"{out}\"\ndevice = \"cpu\"\nthreads = 2\n\
         [[inputs]]\nuri = \"{input}\"\nformat = \"webdataset\"\n\
         [filters.image]\nmin_sharpness = \"p5\"\n",
        out = dir.join("out").display(),
        input = input.display(),
    );
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, &config_text)?;
    let config = Config::from_toml_str(&config_text, &config_path.display().to_string(), &[])?;

    let started = Instant::now();
    let job = Job::prepare(&config)?;
    let empty = dir.join("empty.staged");
    std::fs::File::create(&empty)?;
    let mut next = 0u64;
    for unit in &job.units {
        let shard = format!("shard-{:06}.tar", unit.ordinal);
        let count = per_shard.min(samples - next);
        let mut offset = 0;
        let records = (next..next + count)
            .map(|i| record(i, &shard, unit.ordinal as u32, &mut offset))
            .collect();
        next += count;
        let state = UnitRecords {
            unit_id: unit.id.clone(),
            records,
            input_errors: Vec::new(),
        };
        job.runtime
            .block_on(job.measure.commit_unit(&empty, &state))?;
    }
    let state_bytes: u64 = walk_bytes(&dir.join("out").join("state"))?;
    println!(
        "{}",
        serde_json::json!({
            "bench": "decide_state",
            "samples": samples,
            "units": job.units.len(),
            "state_bytes": state_bytes,
            "seconds": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "config": config_path.display().to_string(),
        })
    );
    Ok(())
}

fn walk_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            walk_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
