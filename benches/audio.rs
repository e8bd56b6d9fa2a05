//! Timings of the audio fingerprint on real music (../shared/media/audio, decoded to mono at
//! 11025 Hz by the ffmpeg CLI): computing the fingerprint of 60 s, and matching two 60 s
//! fingerprints over all offsets. Run with `cargo bench --bench audio`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mmcurate::measure::audio::{
    compare_fingerprints, fingerprint, Fingerprint, DEFAULT_MIN_OVERLAP_FRAMES, FINGERPRINT_RATE,
};
use std::process::Command;

const MUSIC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/media/audio/Kevin_MacLeod_-_Vibe_Ace.ogg"
);

/// The first 60 s of the music, mono f32 at FINGERPRINT_RATE; `extra` are ffmpeg output options.
fn decode(extra: &[&str]) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i", MUSIC, "-t", "60"])
        .args(extra)
        .args(["-f", "f32le", "-ac", "1", "-ar", "11025", "-"])
        .output()
        .expect("the ffmpeg CLI runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn audio(c: &mut Criterion) {
    let mono = decode(&[]);
    let mut group = c.benchmark_group("audio");
    // Throughput in samples: divide by 11025 for seconds of audio per second.
    group.throughput(Throughput::Elements(mono.len() as u64));
    group.bench_function("fingerprint_60s", |b| {
        b.iter(|| fingerprint(&mono, FINGERPRINT_RATE))
    });
    group.finish();

    let a = fingerprint(&mono, FINGERPRINT_RATE);
    // A different encoding of the same audio, so the search has a real best offset to find.
    let b: Fingerprint = fingerprint(&decode(&["-af", "volume=-10dB"]), FINGERPRINT_RATE);
    c.bench_function("audio/compare_60s_vs_60s", |bench| {
        bench.iter(|| compare_fingerprints(&a, &b, DEFAULT_MIN_OVERLAP_FRAMES))
    });
    // Unrelated fingerprints: the pruning helps less when no offset stands out.
    let shifted = Fingerprint {
        frames: a
            .frames
            .iter()
            .map(|f| f.rotate_left(7) ^ 0x5555_5555)
            .collect(),
        ..a.clone()
    };
    c.bench_function("audio/compare_60s_vs_60s_unrelated", |bench| {
        bench.iter(|| compare_fingerprints(&a, &shifted, DEFAULT_MIN_OVERLAP_FRAMES))
    });
}

criterion_group!(benches, audio);
criterion_main!(benches);
