//! Audio measurements over decoded PCM: levels (peak, RMS, clipping, silence, an SNR estimate)
//! and a Chromaprint-style fingerprint (chroma features to 32-bit sub-fingerprints) with
//! bit-error-rate matching for near-duplicate audio. It decodes and resamples nothing itself:
//! it measures interleaved `f32` samples at full scale ±1.0 (and mono at [`FINGERPRINT_RATE`] for
//! the fingerprint), and [`decode_audio_levels`] runs `decode`'s audio decoding with the level
//! meter as its sink. The sub-fingerprint bits are our own design, documented at
//! [`fingerprint`].

use std::sync::{Arc, OnceLock};

use realfft::{RealFftPlanner, RealToComplex};

use crate::decode::av::{decode_audio, AudioSink, DecodedAudio};
use crate::decode::DecodeError;

/// The rate the fingerprint is computed at (Chromaprint uses 11025 Hz).
pub const FINGERPRINT_RATE: u32 = 11025;

/// Analysis frame of the fingerprint, in samples at [`FINGERPRINT_RATE`] (0.372 s).
pub const FINGERPRINT_FRAME: usize = 4096;

/// Hop between fingerprint frames, in samples at [`FINGERPRINT_RATE`]: 2/3 overlap, 0.124 s.
pub const FINGERPRINT_HOP: usize = 1365;

/// The level reported for digital silence, in dBFS, so that no figure is ever `-inf`.
pub const LEVEL_FLOOR_DBFS: f64 = -120.0;

/// A sample counts as clipped when its magnitude reaches this: 32766/32768, so that the two
/// largest int16 codes of either sign (and any float sample at or past full scale) count, as
/// clippers and limiters often stop a code short of the rail.
pub const CLIP_LEVEL: f32 = 32766.0 / 32768.0;

/// Length of the windows that silence and the SNR estimate are measured over, in seconds.
pub const LEVEL_WINDOW_S: f64 = 0.05;

/// Fewer windows than this (one second) give no SNR estimate: the percentiles would be noise.
pub const SNR_MIN_WINDOWS: usize = 20;

/// Spectrum range folded into chroma, in Hz: below it a bin is wider than an octave's worth of
/// pitch classes, above it harmonics and codec noise dominate.
const CHROMA_MIN_HZ: f64 = 28.0;
const CHROMA_MAX_HZ: f64 = 3520.0;

/// A frame whose chroma is quieter than a sine at this level is treated as silent (all-zero
/// chroma, hence all-zero bits) instead of being normalised up into random bits.
const CHROMA_FLOOR_DBFS: f64 = -60.0;

/// Loudness of a signal, measured over all of its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioLevels {
    /// Largest `|x|` over all samples and channels, in dBFS (20 log10), at least
    /// [`LEVEL_FLOOR_DBFS`].
    pub peak_dbfs: f64,
    /// Root mean square over all samples and channels, in dBFS (a full-scale sine is -3.01), at
    /// least [`LEVEL_FLOOR_DBFS`].
    pub rms_dbfs: f64,
    /// Fraction (0–1) of samples, over all channels, with `|x| >=` [`CLIP_LEVEL`].
    pub clipped_fraction: f64,
    /// Fraction (0–1) of the [`LEVEL_WINDOW_S`] windows whose RMS over all channels is below the
    /// caller's silence threshold; 1 for empty input.
    pub silence_fraction: f64,
    /// Estimated signal-to-noise ratio in dB: the mean power of the loud windows (95th percentile
    /// of window power) over the noise floor (10th percentile, at least [`LEVEL_FLOOR_DBFS`]).
    /// It is an estimate that needs pauses: it reads (S+N)/N, so it overstates the true S/N by
    /// 10 log10(1 + N/S) (0.04 dB at 20 dB), and it reads about 0 dB on a signal without quiet
    /// moments whatever its noise. `None` with fewer than [`SNR_MIN_WINDOWS`] windows.
    pub snr_db: Option<f64>,
    /// Number of [`LEVEL_WINDOW_S`] windows the silence fraction and the SNR are taken over.
    pub window_count: usize,
    /// Length of the signal in seconds (frames / sample rate; 0 when the rate is 0).
    pub duration_s: f64,
}

fn power_dbfs(power: f64) -> f64 {
    if power > 0.0 {
        (10.0 * power.log10()).max(LEVEL_FLOOR_DBFS)
    } else {
        LEVEL_FLOOR_DBFS
    }
}

/// Nearest-rank percentile of sorted values; `p` in 0–1, `sorted` not empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Levels of interleaved samples (full scale ±1.0). A trailing partial frame (fewer samples
/// than `channels`) is ignored; `channels == 0` is read as mono. Windows are
/// [`LEVEL_WINDOW_S`] long; a last partial window counts when it is at least half a window or
/// the only one. The same as one [`LevelMeter::push`] of all the samples.
pub fn audio_levels(
    interleaved: &[f32],
    channels: u32,
    sample_rate: u32,
    silence_threshold_dbfs: f64,
) -> AudioLevels {
    let mut meter = LevelMeter::new(channels, sample_rate, silence_threshold_dbfs);
    meter.push(interleaved);
    meter.finish()
}

/// Decodes the audio stream of `bytes` (see [`decode_audio`]) and measures the levels of its
/// native-rate samples as they are decoded: [`audio_levels`] of all of them, bit for bit.
pub fn decode_audio_levels(
    bytes: &[u8],
    analysis_rate: u32,
    max_seconds: f64,
    silence_threshold_dbfs: f64,
) -> Result<(DecodedAudio, AudioLevels), DecodeError> {
    let mut meter = LevelMeter::new(1, 0, silence_threshold_dbfs);
    let decoded = decode_audio(bytes, analysis_rate, max_seconds, &mut meter)?;
    Ok((decoded, meter.finish()))
}

/// [`audio_levels`] measured as the samples arrive, so that a decoder need not keep them: push
/// interleaved samples in chunks of any size (a frame or a window may straddle two pushes),
/// then [`finish`](LevelMeter::finish). The result is bit-identical to [`audio_levels`] over
/// the concatenation of the pushes: every sum is accumulated in the same order. It keeps one
/// `f64` per window (20 a second), not the samples.
#[derive(Debug, Clone)]
pub struct LevelMeter {
    channels: usize,
    sample_rate: u32,
    silence_threshold_dbfs: f64,
    /// Samples (not frames) in a full window.
    window_samples: usize,
    /// The start of a frame that the last push cut: at most `channels - 1` samples.
    partial_frame: Vec<f32>,
    /// Whole frames measured.
    frames: usize,
    peak: f32,
    clipped: usize,
    /// Sum of squares over the completed windows.
    sum_sq: f64,
    /// Sum of squares and sample count of the window being filled.
    window_sq: f64,
    window_filled: usize,
    window_powers: Vec<f64>,
}

/// The meter as decoding's sink: [`AudioSink::start`] sets it up for the stream's format
/// (keeping its silence threshold), then every push is measured.
impl AudioSink for LevelMeter {
    fn start(&mut self, channels: u32, sample_rate: u32) {
        *self = LevelMeter::new(channels, sample_rate, self.silence_threshold_dbfs);
    }

    fn push(&mut self, interleaved: &[f32]) {
        LevelMeter::push(self, interleaved);
    }
}

impl LevelMeter {
    /// A meter for `channels` interleaved channels (0 is read as mono) at `sample_rate`;
    /// windows whose power is below `silence_threshold_dbfs` count as silent.
    pub fn new(channels: u32, sample_rate: u32, silence_threshold_dbfs: f64) -> LevelMeter {
        let channels = channels.max(1) as usize;
        let window_frames = ((sample_rate as f64 * LEVEL_WINDOW_S).round() as usize).max(1);
        LevelMeter {
            channels,
            sample_rate,
            silence_threshold_dbfs,
            window_samples: window_frames * channels,
            partial_frame: Vec::with_capacity(channels),
            frames: 0,
            peak: 0.0,
            clipped: 0,
            sum_sq: 0.0,
            window_sq: 0.0,
            window_filled: 0,
            window_powers: Vec::new(),
        }
    }

    /// Measures the next interleaved samples; they continue the frame and the window that the
    /// previous push left unfinished.
    pub fn push(&mut self, mut interleaved: &[f32]) {
        if !self.partial_frame.is_empty() {
            let missing = self.channels - self.partial_frame.len();
            let (head, rest) = interleaved.split_at(missing.min(interleaved.len()));
            self.partial_frame.extend_from_slice(head);
            interleaved = rest;
            if self.partial_frame.len() < self.channels {
                return;
            }
            let frame = std::mem::take(&mut self.partial_frame);
            self.measure_frames(&frame);
            self.partial_frame = frame;
            self.partial_frame.clear();
        }
        let whole = interleaved.len() / self.channels * self.channels;
        self.measure_frames(&interleaved[..whole]);
        self.partial_frame.extend_from_slice(&interleaved[whole..]);
    }

    /// Whole frames only, so that a trailing partial frame never reaches the sums.
    fn measure_frames(&mut self, mut samples: &[f32]) {
        self.frames += samples.len() / self.channels;
        while !samples.is_empty() {
            let take = (self.window_samples - self.window_filled).min(samples.len());
            let (window, rest) = samples.split_at(take);
            samples = rest;
            let mut peak = self.peak;
            let mut clipped = self.clipped;
            let mut window_sq = self.window_sq;
            for &x in window {
                // A NaN sample is not a level; it counts neither as peak nor as power.
                let a = if x.is_nan() { 0.0 } else { x.abs() };
                peak = peak.max(a);
                clipped += usize::from(a >= CLIP_LEVEL);
                window_sq += f64::from(a) * f64::from(a);
            }
            self.peak = peak;
            self.clipped = clipped;
            self.window_sq = window_sq;
            self.window_filled += take;
            if self.window_filled == self.window_samples {
                self.close_window();
            }
        }
    }

    fn close_window(&mut self) {
        self.sum_sq += self.window_sq;
        self.window_powers
            .push(self.window_sq / self.window_filled as f64);
        self.window_sq = 0.0;
        self.window_filled = 0;
    }

    /// Whole frames measured so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The levels of everything pushed; a trailing partial frame is ignored.
    pub fn finish(mut self) -> AudioLevels {
        let duration_s = if self.sample_rate > 0 {
            self.frames as f64 / self.sample_rate as f64
        } else {
            0.0
        };
        if self.frames == 0 {
            return AudioLevels {
                peak_dbfs: LEVEL_FLOOR_DBFS,
                rms_dbfs: LEVEL_FLOOR_DBFS,
                clipped_fraction: 0.0,
                silence_fraction: 1.0,
                snr_db: None,
                window_count: 0,
                duration_s,
            };
        }
        if self.window_filled > 0 {
            // The last partial window: its power counts when it is at least half a window or
            // the only one, its samples always.
            if self.window_filled * 2 >= self.window_samples || self.window_powers.is_empty() {
                self.close_window();
            } else {
                self.sum_sq += self.window_sq;
            }
        }
        let window_powers = self.window_powers;
        let total = (self.frames * self.channels) as f64;
        let silence_power = 10f64.powf(self.silence_threshold_dbfs / 10.0);
        let silent = window_powers.iter().filter(|&&p| p < silence_power).count();
        let window_count = window_powers.len();
        let snr_db = (window_count >= SNR_MIN_WINDOWS).then(|| {
            let mut sorted = window_powers;
            sorted.sort_by(f64::total_cmp);
            let floor = 10f64.powf(LEVEL_FLOOR_DBFS / 10.0);
            let loud = percentile(&sorted, 0.95).max(floor);
            let noise = percentile(&sorted, 0.10).max(floor);
            10.0 * (loud / noise).log10()
        });
        AudioLevels {
            peak_dbfs: if self.peak > 0.0 {
                (20.0 * f64::from(self.peak).log10()).max(LEVEL_FLOOR_DBFS)
            } else {
                LEVEL_FLOOR_DBFS
            },
            rms_dbfs: power_dbfs(self.sum_sq / total),
            clipped_fraction: self.clipped as f64 / total,
            silence_fraction: silent as f64 / window_count as f64,
            snr_db,
            window_count,
            duration_s,
        }
    }
}

/// A fingerprint: one 32-bit sub-fingerprint per analysis frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Sample rate the fingerprint was computed at, in Hz; only fingerprints of equal rate and
    /// hop compare.
    pub rate: u32,
    /// Samples at `rate` between the starts of consecutive frames.
    pub hop: usize,
    /// One sub-fingerprint per frame, in time order; frame `i` starts at sample `i * hop`.
    pub frames: Vec<u32>,
}

impl Fingerprint {
    /// Seconds between consecutive sub-fingerprints (0 when the rate is 0).
    pub fn hop_seconds(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.hop as f64 / self.rate as f64
        }
    }
}

fn fft_plan() -> &'static Arc<dyn RealToComplex<f32>> {
    static PLAN: OnceLock<Arc<dyn RealToComplex<f32>>> = OnceLock::new();
    PLAN.get_or_init(|| RealFftPlanner::<f32>::new().plan_fft_forward(FINGERPRINT_FRAME))
}

fn hann_window() -> &'static [f32] {
    static WINDOW: OnceLock<Vec<f32>> = OnceLock::new();
    WINDOW.get_or_init(|| {
        let n = FINGERPRINT_FRAME as f64;
        (0..FINGERPRINT_FRAME)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos()) as f32)
            .collect()
    })
}

/// The spectrum bins that fold into chroma, and the pitch class (0 = A) of each.
fn chroma_bins(sample_rate: u32) -> (usize, Vec<u8>) {
    let bin_hz = sample_rate as f64 / FINGERPRINT_FRAME as f64;
    let first = (CHROMA_MIN_HZ / bin_hz).ceil().max(1.0) as usize;
    let last = ((CHROMA_MAX_HZ / bin_hz).floor() as usize).min(FINGERPRINT_FRAME / 2);
    let classes = (first..=last)
        .map(|bin| {
            // Semitones from A440, rounded to the nearest pitch class.
            let semitones = 12.0 * (bin as f64 * bin_hz / 440.0).log2();
            semitones.round().rem_euclid(12.0) as u8
        })
        .collect();
    (first, classes)
}

/// Temporal smoothing of the chroma (a 5-tap binomial filter centred on the frame): it makes
/// the bits robust to the fraction-of-a-hop misalignment of a trimmed copy and to codec noise.
const SMOOTHING: [f64; 5] = [1.0, 4.0, 6.0, 4.0, 1.0];

/// Frames each side of the window whose mean chroma the shape and harmony bits subtract.
const DETREND_RADIUS: usize = 8;

/// Frames between the two chroma vectors of the temporal-difference bits.
const DELTA_FRAMES: usize = 2;

/// Chromaprint-style fingerprint of mono samples at [`FINGERPRINT_RATE`] (full scale ±1.0).
///
/// Frames of [`FINGERPRINT_FRAME`] samples every [`FINGERPRINT_HOP`], Hann window, power
/// spectrum; the bins from 28 to 3520 Hz fold into 12 pitch classes (nearest semitone); the
/// chroma is smoothed over 5 frames ([`SMOOTHING`]) and L2-normalised, which makes it
/// independent of level; a frame quieter than a -60 dBFS sine becomes all zeros. With `C[t][k]`
/// that chroma and `D[t][k]` the same less its mean over frames `t-8..=t+8` (frame indices
/// clamped to the signal), the 32 bits of frame `t` are:
///
/// - bits 0–11, change of class `k`: `C[t][k] > C[t-2][k]`;
/// - bits 12–23, spectral shape: `D[t][k] > D[t][(k+1) % 12]`;
/// - bits 24–27, slow change of the group of classes `3g..3g+3`: its sum of `C` over frames
///   `t+1..=t+3` exceeds its sum over `t-3..=t-1`;
/// - bits 28–31, harmony: over frames `t-1..=t+1`, the sum of `D` over the classes
///   `{j, j+4, j+8}` (an augmented triad) exceeds that over the triad a semitone up.
///
/// Every bit is a strict comparison of quantities that trade places in music; subtracting the
/// local mean keeps the key of a piece from fixing the class-against-class bits. So each bit is
/// set about half the time (0.37–0.66 per bit, 0.50 overall on the test music), unrelated audio
/// differs in about half of its bits, and silent frames give 0. Input at another rate is
/// analysed with the same frame and hop in samples (the pitch classes follow the true rate);
/// its fingerprint only compares with fingerprints of that rate. Input shorter than one frame,
/// or a rate of 0, gives an empty fingerprint.
pub fn fingerprint(mono: &[f32], sample_rate: u32) -> Fingerprint {
    let mut out = Fingerprint {
        rate: sample_rate,
        hop: FINGERPRINT_HOP,
        frames: Vec::new(),
    };
    if sample_rate == 0 || mono.len() < FINGERPRINT_FRAME {
        return out;
    }
    let n_frames = (mono.len() - FINGERPRINT_FRAME) / FINGERPRINT_HOP + 1;
    let (first_bin, classes) = chroma_bins(sample_rate);
    let plan = fft_plan();
    let window = hann_window();
    let mut input = plan.make_input_vec();
    let mut spectrum = plan.make_output_vec();
    let mut scratch = plan.make_scratch_vec();
    // Scaled so a sine of amplitude A puts A^2 in its peak bin.
    let scale = {
        let gain = 2.0 / (FINGERPRINT_FRAME as f64 / 2.0);
        gain * gain
    };

    let mut raw = vec![[0f64; 12]; n_frames];
    for (t, chroma) in raw.iter_mut().enumerate() {
        let start = t * FINGERPRINT_HOP;
        let frame = &mono[start..start + FINGERPRINT_FRAME];
        for ((dst, &x), &w) in input.iter_mut().zip(frame).zip(window) {
            *dst = if x.is_finite() { x * w } else { 0.0 };
        }
        // Only a buffer of the wrong length makes this fail, and the plan sized them all.
        plan.process_with_scratch(&mut input, &mut spectrum, &mut scratch)
            .expect("FFT buffers come from the plan");
        for (bin, &class) in spectrum[first_bin..].iter().zip(&classes) {
            chroma[usize::from(class)] += f64::from(bin.norm_sqr()) * scale;
        }
    }

    // A -60 dBFS sine puts about 1.5 A^2 into the chroma (its peak bin and the two Hann side
    // bins at a quarter of it each), and that is the L2 norm of a one-class chroma.
    let floor = 1.5 * 10f64.powf(CHROMA_FLOOR_DBFS / 10.0);
    let last = n_frames as isize - 1;
    let at = |t: isize| t.clamp(0, last) as usize;
    let taps_total: f64 = SMOOTHING.iter().sum();
    let half = (SMOOTHING.len() / 2) as isize;
    let chroma: Vec<[f64; 12]> = (0..n_frames as isize)
        .map(|t| {
            let mut c = [0f64; 12];
            for (i, tap) in SMOOTHING.iter().enumerate() {
                let src = &raw[at(t + i as isize - half)];
                for k in 0..12 {
                    c[k] += tap * src[k] / taps_total;
                }
            }
            let norm = c.iter().map(|v| v * v).sum::<f64>().sqrt();
            if norm < floor {
                [0.0; 12]
            } else {
                c.map(|v| v / norm)
            }
        })
        .collect();

    // The chroma less its mean over the surrounding seconds: within one piece the key would
    // otherwise fix the class-against-class bits, which then carry no information.
    let radius = DETREND_RADIUS as isize;
    let detrended: Vec<[f64; 12]> = (0..n_frames as isize)
        .map(|t| {
            let mut mean = [0f64; 12];
            for u in t - radius..=t + radius {
                for k in 0..12 {
                    mean[k] += chroma[at(u)][k];
                }
            }
            let now = &chroma[at(t)];
            std::array::from_fn(|k| now[k] - mean[k] / (2 * radius + 1) as f64)
        })
        .collect();
    let box_sum = |from: isize, to: isize, classes: &[usize], of: &[[f64; 12]]| -> f64 {
        (from..=to)
            .map(|t| classes.iter().map(|&k| of[at(t)][k]).sum::<f64>())
            .sum()
    };
    out.frames = (0..n_frames as isize)
        .map(|t| {
            let now = &chroma[at(t)];
            let before = &chroma[at(t - DELTA_FRAMES as isize)];
            let mut bits = 0u32;
            for k in 0..12 {
                bits |= u32::from(now[k] > before[k]) << k;
                let shape = &detrended[at(t)];
                bits |= u32::from(shape[k] > shape[(k + 1) % 12]) << (12 + k);
            }
            for g in 0..4 {
                let group = [3 * g, 3 * g + 1, 3 * g + 2];
                let later = box_sum(t + 1, t + 3, &group, &chroma);
                let earlier = box_sum(t - 3, t - 1, &group, &chroma);
                bits |= u32::from(later > earlier) << (24 + g);
            }
            for j in 0..4 {
                let triad = [j, j + 4, j + 8];
                let up = [j + 1, (j + 5) % 12, (j + 9) % 12];
                bits |= u32::from(
                    box_sum(t - 1, t + 1, &triad, &detrended)
                        > box_sum(t - 1, t + 1, &up, &detrended),
                ) << (28 + j);
            }
            bits
        })
        .collect();
    out
}

/// Overlap, in frames, below which a match is not trusted: 40 frames is 5 s, 1,280 bits. With
/// fewer, the best of many offsets of unrelated audio drifts down from 0.5 towards the
/// threshold.
pub const DEFAULT_MIN_OVERLAP_FRAMES: usize = 40;

/// The best alignment of two fingerprints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FingerprintMatch {
    /// Frames of `a` before the first frame of `b`: `b.frames[i]` lines up with
    /// `a.frames[i + offset_frames]` (positive when `b` starts later in the audio, e.g. `b` is
    /// `a` with its start trimmed). Multiply by the hop for samples.
    pub offset_frames: i64,
    /// Differing bits over all bits of the counted overlap, 0–1; about 0.5 for unrelated audio.
    pub bit_error_rate: f64,
    /// Overlapping frames at that offset that were counted: those where at least one side is
    /// not silent (a sub-fingerprint of 0).
    pub overlap_frames: usize,
}

/// Best alignment of two fingerprints: the offset (b relative to a) that minimises the bit
/// error rate over the overlap, requiring an overlap of at least `min_overlap_frames` (at
/// least 1). None when no offset has that overlap, or when the two differ in rate or hop.
///
/// Frames where both sides are silent (sub-fingerprint 0) are left out of the overlap: silence
/// says nothing about identity, and two different tracks that both end in silence must not
/// match on their tails. Every offset is tried (cost `len(a) × len(b)` XOR-popcounts, pruned
/// once an offset can no longer win); ties go to the larger overlap, then to the offset nearest
/// zero, then to the smaller offset, so the answer does not depend on the search order.
pub fn compare_fingerprints(
    a: &Fingerprint,
    b: &Fingerprint,
    min_overlap_frames: usize,
) -> Option<FingerprintMatch> {
    if a.rate != b.rate || a.hop != b.hop {
        return None;
    }
    let (fa, fb) = (&a.frames[..], &b.frames[..]);
    let min_overlap = min_overlap_frames.max(1);
    if fa.len() < min_overlap || fb.len() < min_overlap {
        return None;
    }
    let (na, nb) = (fa.len() as i64, fb.len() as i64);
    // Offsets whose span is long enough: a_start = max(0, o), end = min(na, nb + o).
    let lowest = min_overlap as i64 - nb;
    let highest = na - min_overlap as i64;
    let mut best: Option<(u64, usize, i64)> = None; // (differing bits, overlap, offset)
    for offset in lowest..=highest {
        let a_start = offset.max(0) as usize;
        let b_start = (-offset).max(0) as usize;
        let span = (fa.len() - a_start).min(fb.len() - b_start);
        // The counted overlap is at most the span, so more differing bits than this can no
        // longer beat the best rate: err/overlap > best_err/best_overlap.
        let budget = best.map(|(err, best_overlap, _)| {
            (u128::from(err) * span as u128 / best_overlap as u128) as u64
        });
        let xa = &fa[a_start..a_start + span];
        let xb = &fb[b_start..b_start + span];
        let (mut errors, mut overlap) = (0u64, 0usize);
        let mut pruned = false;
        for (ca, cb) in xa.chunks(64).zip(xb.chunks(64)) {
            for (&x, &y) in ca.iter().zip(cb) {
                errors += u64::from((x ^ y).count_ones());
                overlap += usize::from((x | y) != 0);
            }
            if budget.is_some_and(|budget| errors > budget) {
                pruned = true;
                break;
            }
        }
        if pruned || overlap < min_overlap {
            continue;
        }
        let better = match best {
            None => true,
            Some((best_err, best_overlap, best_offset)) => {
                // err/overlap against best_err/best_overlap, exactly, by cross-multiplying.
                let lhs = u128::from(errors) * best_overlap as u128;
                let rhs = u128::from(best_err) * overlap as u128;
                let key = |overlap: usize, offset: i64| {
                    (
                        overlap,
                        std::cmp::Reverse(offset.abs()),
                        std::cmp::Reverse(offset),
                    )
                };
                lhs < rhs || (lhs == rhs && key(overlap, offset) > key(best_overlap, best_offset))
            }
        };
        if better {
            best = Some((errors, overlap, offset));
        }
    }
    best.map(|(errors, overlap, offset)| FingerprintMatch {
        offset_frames: offset,
        bit_error_rate: errors as f64 / (32.0 * overlap as f64),
        overlap_frames: overlap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// Real music from the repository's test media (CC BY 3.0, tests/media/LICENSES.md).
    const MUSIC: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/media/audio/Kevin_MacLeod_-_Vibe_Ace.ogg"
    );

    /// The speech clip tests/media/make_speech.sh makes in `dir` (espeak-ng, then the ffmpeg
    /// CLI): 29.435 s of 16 kHz mono, about 24 s of speech with pauses, then silence.
    fn make_speech(dir: &Path) -> PathBuf {
        let path = dir.join("speech.wav");
        let status = Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/media/make_speech.sh"
            ))
            .arg(&path)
            .status()
            .expect("bash runs");
        assert!(status.success(), "tests/media/make_speech.sh failed");
        path
    }

    fn sine(amplitude: f32, hz: f32, rate: u32, seconds: f32) -> Vec<f32> {
        let n = (rate as f32 * seconds) as usize;
        (0..n)
            .map(|i| amplitude * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Uniform white noise in ±amplitude from a fixed xorshift, so the tests are repeatable.
    fn white_noise(amplitude: f32, n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
                amplitude * (2.0 * unit - 1.0)
            })
            .collect()
    }

    fn ffmpeg(args: &[&str]) -> Vec<u8> {
        let out = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin"])
            .args(args)
            .output()
            .expect("the ffmpeg CLI runs");
        assert!(
            out.status.success(),
            "ffmpeg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Mono f32 at FINGERPRINT_RATE, as the decoder hands it to the fingerprint.
    fn decode_mono(path: &Path, extra: &[&str]) -> Vec<f32> {
        let path = path.to_str().expect("UTF-8 path");
        let mut args = vec!["-i", path];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-f", "f32le", "-ac", "1", "-ar", "11025", "-"]);
        ffmpeg(&args)
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    fn encode(src: &str, dir: &Path, name: &str, args: &[&str]) -> PathBuf {
        let dst = dir.join(name);
        let mut all = vec!["-y", "-i", src];
        all.extend_from_slice(args);
        all.push(dst.to_str().expect("UTF-8 path"));
        ffmpeg(&all);
        dst
    }

    #[test]
    fn levels_of_a_half_scale_sine() {
        let x = sine(0.5, 997.0, 48000, 2.0);
        let l = audio_levels(&x, 1, 48000, -60.0);
        assert!((l.peak_dbfs - -6.0206).abs() < 0.01, "{l:?}");
        assert!((l.rms_dbfs - -9.0309).abs() < 0.01, "{l:?}");
        assert_eq!(l.clipped_fraction, 0.0);
        assert_eq!(l.silence_fraction, 0.0);
        assert_eq!(l.window_count, 40);
        assert!((l.duration_s - 2.0).abs() < 1e-9);
        // Steady tone, no pauses: the estimate sees no noise floor below the signal.
        assert!(l.snr_db.is_some_and(|s| s.abs() < 0.5), "{l:?}");
    }

    #[test]
    fn clipped_fraction_counts_the_samples_at_full_scale() {
        // A sine of amplitude 2 clipped at ±1: |2 sin θ| >= 1 for θ within 30° of the peaks,
        // i.e. 2/3 of the time; the generated share is counted directly.
        let x: Vec<f32> = sine(2.0, 50.0, 48000, 1.0)
            .into_iter()
            .map(|v| v.clamp(-1.0, 1.0))
            .collect();
        // Unclipped samples are pulled below 0.99 so the generated share is exact.
        let x: Vec<f32> = x
            .into_iter()
            .map(|v| if v.abs() >= 1.0 { v } else { v * 0.99 })
            .collect();
        let share = x.iter().filter(|v| v.abs() >= 1.0).count() as f64 / x.len() as f64;
        assert!((share - 2.0 / 3.0).abs() < 0.01);
        // Stereo: the other channel a quiet tone that never clips, halving the share.
        let stereo: Vec<f32> = x.iter().flat_map(|&v| [v, v * 0.1]).collect();
        let l = audio_levels(&stereo, 2, 48000, -60.0);
        assert!((l.clipped_fraction - share / 2.0).abs() < 1e-4, "{l:?}");
        assert!(l.peak_dbfs.abs() < 1e-6);
        // int16 rails: -32768 and 32767 (FFmpeg's s16 to flt) both count, 32765 does not.
        let rails = [-1.0, 32767.0 / 32768.0, 32765.0 / 32768.0, 0.0];
        assert_eq!(audio_levels(&rails, 1, 48000, -60.0).clipped_fraction, 0.5);
    }

    #[test]
    fn half_silence_half_tone() {
        let mut x = vec![0.0f32; 48000];
        x.extend(sine(0.25, 440.0, 48000, 1.0));
        let l = audio_levels(&x, 1, 48000, -50.0);
        assert_eq!(l.window_count, 40);
        assert!((l.silence_fraction - 0.5).abs() < 1e-9, "{l:?}");
        // Silence floors the noise at -120 dBFS; the tone is at -15.05 dBFS RMS.
        assert!(l.snr_db.is_some_and(|s| (s - 104.95).abs() < 0.1), "{l:?}");
    }

    #[test]
    fn snr_of_tone_bursts_in_white_noise() {
        // 0.5 s bursts of a 0.5-amplitude tone (power 0.125) every second, over uniform noise
        // of amplitude 0.1 (power 0.01/3): true S/N 10 log10(37.5) = 15.74 dB.
        let rate = 16000;
        let mut x = white_noise(0.1, rate as usize * 10, 7);
        let tone = sine(0.5, 1000.0, rate, 10.0);
        for (i, v) in x.iter_mut().enumerate() {
            if (i / (rate as usize / 2)) % 2 == 0 {
                *v += tone[i];
            }
        }
        let l = audio_levels(&x, 1, rate, -60.0);
        let snr = l.snr_db.expect("10 s is enough windows");
        assert!((snr - 15.74).abs() < 1.0, "{l:?}");
        assert_eq!(l.silence_fraction, 0.0);
    }

    #[test]
    fn digital_silence_and_empty_input_give_the_floor() {
        for x in [vec![0.0f32; 48000], Vec::new(), vec![0.0; 1]] {
            let l = audio_levels(&x, 2, 48000, -60.0);
            assert_eq!(l.peak_dbfs, LEVEL_FLOOR_DBFS);
            assert_eq!(l.rms_dbfs, LEVEL_FLOOR_DBFS);
            assert_eq!(l.clipped_fraction, 0.0);
            assert_eq!(l.silence_fraction, 1.0);
            assert!(l.snr_db.is_none_or(|s| s == 0.0), "{l:?}");
        }
        let l = audio_levels(&[f32::NAN, 0.5], 1, 0, -60.0);
        assert!(l.peak_dbfs.is_finite() && l.rms_dbfs.is_finite(), "{l:?}");
    }

    /// The one-pass `audio_levels` from before [`LevelMeter`], kept verbatim as the reference
    /// the meter must reproduce bit for bit.
    fn reference_levels(
        interleaved: &[f32],
        channels: u32,
        sample_rate: u32,
        silence_threshold_dbfs: f64,
    ) -> AudioLevels {
        let channels = channels.max(1) as usize;
        let frames = interleaved.len() / channels;
        let samples = &interleaved[..frames * channels];
        let duration_s = if sample_rate > 0 {
            frames as f64 / sample_rate as f64
        } else {
            0.0
        };
        if samples.is_empty() {
            return AudioLevels {
                peak_dbfs: LEVEL_FLOOR_DBFS,
                rms_dbfs: LEVEL_FLOOR_DBFS,
                clipped_fraction: 0.0,
                silence_fraction: 1.0,
                snr_db: None,
                window_count: 0,
                duration_s,
            };
        }

        let mut peak = 0.0f32;
        let mut clipped = 0usize;
        let mut sum_sq = 0.0f64;
        // Window powers accumulate in the same pass as the totals.
        let window_frames = ((sample_rate as f64 * LEVEL_WINDOW_S).round() as usize).max(1);
        let mut window_powers = Vec::with_capacity(frames / window_frames + 1);
        for window in samples.chunks(window_frames * channels) {
            let mut window_sq = 0.0f64;
            for &x in window {
                // A NaN sample is not a level; it counts neither as peak nor as power.
                let a = if x.is_nan() { 0.0 } else { x.abs() };
                peak = peak.max(a);
                clipped += usize::from(a >= CLIP_LEVEL);
                window_sq += f64::from(a) * f64::from(a);
            }
            sum_sq += window_sq;
            let is_last_partial = window.len() < window_frames * channels;
            if !is_last_partial
                || window.len() * 2 >= window_frames * channels
                || window_powers.is_empty()
            {
                window_powers.push(window_sq / window.len() as f64);
            }
        }

        let total = samples.len() as f64;
        let silence_power = 10f64.powf(silence_threshold_dbfs / 10.0);
        let silent = window_powers.iter().filter(|&&p| p < silence_power).count();
        let window_count = window_powers.len();
        let snr_db = (window_count >= SNR_MIN_WINDOWS).then(|| {
            let mut sorted = window_powers.clone();
            sorted.sort_by(f64::total_cmp);
            let floor = 10f64.powf(LEVEL_FLOOR_DBFS / 10.0);
            let loud = percentile(&sorted, 0.95).max(floor);
            let noise = percentile(&sorted, 0.10).max(floor);
            10.0 * (loud / noise).log10()
        });
        AudioLevels {
            peak_dbfs: if peak > 0.0 {
                (20.0 * f64::from(peak).log10()).max(LEVEL_FLOOR_DBFS)
            } else {
                LEVEL_FLOOR_DBFS
            },
            rms_dbfs: power_dbfs(sum_sq / total),
            clipped_fraction: clipped as f64 / total,
            silence_fraction: silent as f64 / window_count as f64,
            snr_db,
            window_count,
            duration_s,
        }
    }

    /// Pushing in pieces gives exactly what one call gives, and what the one-pass reference
    /// gave, bit for bit: chunks of odd sizes
    /// (1, 2, 3, 7, ..., a prime larger than a window) cut frames and windows at every place,
    /// and the signals end in a partial frame and in partial windows both above and below half
    /// a window.
    #[test]
    fn level_meter_in_pieces_is_bit_identical() {
        let rate = 8000; // 400-frame windows
        let mut tone = sine(0.7, 311.0, rate, 3.0);
        for (v, n) in tone.iter_mut().zip(white_noise(0.05, 24_000, 9)) {
            *v += n;
        }
        // Loud and quiet stretches, so that the silence and SNR figures are not trivial.
        for v in &mut tone[4000..9000] {
            *v *= 1e-4;
        }
        tone[123] = 1.0;
        tone[5000] = f32::NAN;
        let cases: Vec<(Vec<f32>, u32)> = vec![
            (tone.clone(), 1),
            (tone[..tone.len() - 150].to_vec(), 1), // last window 250/400: counts
            (tone[..tone.len() - 250].to_vec(), 1), // last window 150/400: does not
            (tone[..2 * 8000 + 2 * 390 + 1].to_vec(), 2), // partial frame after 390 of 400
            (tone[..3 * 7000 + 2].to_vec(), 3),
            (tone[..150].to_vec(), 1), // the only window, partial
            (tone[..1].to_vec(), 2),   // no whole frame
        ];
        for (x, channels) in &cases {
            let whole = audio_levels(x, *channels, rate, -50.0);
            let reference = reference_levels(x, *channels, rate, -50.0);
            assert_eq!(format!("{whole:?}"), format!("{reference:?}"));
            for chunk in [1, 2, 3, 7, 64, 399, 401, 997, 1601] {
                let mut meter = LevelMeter::new(*channels, rate, -50.0);
                for piece in x.chunks(chunk) {
                    meter.push(piece);
                }
                meter.push(&[]);
                let frames = x.len() / (*channels as usize);
                assert_eq!(meter.frames(), frames);
                let pieces = meter.finish();
                let what = format!(
                    "{} samples, {channels} channels, chunks of {chunk}",
                    x.len()
                );
                assert_eq!(
                    pieces.peak_dbfs.to_bits(),
                    whole.peak_dbfs.to_bits(),
                    "{what}"
                );
                assert_eq!(
                    pieces.rms_dbfs.to_bits(),
                    whole.rms_dbfs.to_bits(),
                    "{what}"
                );
                assert_eq!(
                    pieces.clipped_fraction.to_bits(),
                    whole.clipped_fraction.to_bits(),
                    "{what}"
                );
                assert_eq!(
                    pieces.silence_fraction.to_bits(),
                    whole.silence_fraction.to_bits(),
                    "{what}"
                );
                assert_eq!(
                    pieces.snr_db.map(f64::to_bits),
                    whole.snr_db.map(f64::to_bits),
                    "{what}"
                );
                assert_eq!(pieces.window_count, whole.window_count, "{what}");
                assert_eq!(
                    pieces.duration_s.to_bits(),
                    whole.duration_s.to_bits(),
                    "{what}"
                );
            }
        }
        // The partial last windows were counted or not as intended.
        assert_eq!(audio_levels(&cases[0].0, 1, rate, -50.0).window_count, 60);
        assert_eq!(audio_levels(&cases[1].0, 1, rate, -50.0).window_count, 60);
        assert_eq!(audio_levels(&cases[2].0, 1, rate, -50.0).window_count, 59);
        assert_eq!(audio_levels(&cases[5].0, 1, rate, -50.0).window_count, 1);
        let l = audio_levels(&cases[0].0, 1, rate, -50.0);
        assert!(
            l.silence_fraction > 0.1 && l.snr_db.is_some_and(|s| s > 20.0),
            "{l:?}"
        );
    }

    #[test]
    fn fingerprint_edge_cases() {
        let empty = fingerprint(&[0.0; FINGERPRINT_FRAME - 1], FINGERPRINT_RATE);
        assert!(empty.frames.is_empty());
        assert_eq!(compare_fingerprints(&empty, &empty, 1), None);
        // Digital silence: every frame is below the chroma floor, so all bits are 0.
        let silent = fingerprint(&vec![0.0; 11025 * 5], FINGERPRINT_RATE);
        assert_eq!(silent.frames.len(), (11025 * 5 - 4096) / 1365 + 1);
        assert!(silent.frames.iter().all(|&f| f == 0));
        // Different rates do not compare.
        let other = fingerprint(&vec![0.0; 22050 * 5], 22050);
        assert_eq!(compare_fingerprints(&silent, &other, 1), None);
    }

    fn music() -> Fingerprint {
        fingerprint(&decode_mono(Path::new(MUSIC), &[]), FINGERPRINT_RATE)
    }

    fn part(f: &Fingerprint, from: usize, len: usize) -> Fingerprint {
        Fingerprint {
            frames: f.frames[from..from + len].to_vec(),
            ..f.clone()
        }
    }

    #[test]
    fn fingerprint_bits_are_balanced_on_music() {
        let fa = music();
        // 61.46 s at 11025 Hz: (677,567 - 4096) / 1365 + 1 frames.
        assert_eq!(fa.frames.len(), 494);
        let n = fa.frames.len() as f64;
        let ones: u32 = fa.frames.iter().map(|f| f.count_ones()).sum();
        // Observed 0.499.
        assert!((f64::from(ones) / (32.0 * n) - 0.5).abs() < 0.05);
        // Observed per bit 0.37–0.66: none is stuck, as the key would make the raw
        // class-against-class comparisons without the detrending.
        for bit in 0..32 {
            let share = fa.frames.iter().filter(|&&f| f >> bit & 1 == 1).count() as f64 / n;
            assert!((0.25..=0.75).contains(&share), "bit {bit}: {share}");
        }
    }

    #[test]
    fn copies_match_the_original() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let fa = music();
        // (name, file, ffmpeg output options, observed bit error rate); the bound, 0.05, is
        // three times the worst.
        let copies: [(&str, &str, &[&str], f64); 9] = [
            (
                "mp3 128k",
                "a.mp3",
                &["-c:a", "libmp3lame", "-b:a", "128k"],
                0.005,
            ),
            (
                "mp3 64k",
                "b.mp3",
                &["-c:a", "libmp3lame", "-b:a", "64k"],
                0.007,
            ),
            ("flac", "a.flac", &[], 0.0),
            (
                "vorbis q2",
                "a.ogg",
                &["-c:a", "libvorbis", "-q:a", "2"],
                0.010,
            ),
            (
                "opus 48k",
                "a.opus",
                &["-c:a", "libopus", "-b:a", "48k"],
                0.016,
            ),
            ("22050 Hz", "a22.wav", &["-ar", "22050"], 0.0),
            ("44100 Hz", "a44.wav", &["-ar", "44100"], 0.0),
            ("-10 dB", "v.flac", &["-af", "volume=-10dB"], 0.003),
            (
                "3 kHz low-pass",
                "lp.flac",
                &["-af", "lowpass=f=3000"],
                0.001,
            ),
        ];
        for (name, file, args, _observed) in copies {
            let path = encode(MUSIC, d, file, args);
            let fb = fingerprint(&decode_mono(&path, &[]), FINGERPRINT_RATE);
            let m = compare_fingerprints(&fa, &fb, DEFAULT_MIN_OVERLAP_FRAMES).expect("overlap");
            println!("{name}: {m:?}");
            assert_eq!(m.offset_frames, 0, "{name}: {m:?}");
            assert!(m.overlap_frames >= 490, "{name}: {m:?}");
            assert!(m.bit_error_rate < 0.05, "{name}: {m:?}");
        }
    }

    #[test]
    fn trimmed_copies_are_found_at_their_offset() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let fa = music();
        let hop_s = FINGERPRINT_HOP as f64 / FINGERPRINT_RATE as f64;
        // 3 s is 24.23 hops; 3.0333 s is 24.5, the worst misalignment of the frame grids; the
        // last one (56.5 hops) also re-encodes at 64k and turns the level down. Observed bit
        // error rates 0.051, 0.099 and 0.093: the misalignment costs more than the codec.
        let trims: [(&str, f64, &[&str]); 3] = [
            ("t1.flac", 3.0, &[]),
            ("t2.flac", 24.5 * hop_s, &[]),
            (
                "t3.mp3",
                7.0,
                &["-c:a", "libmp3lame", "-b:a", "64k", "-af", "volume=-10dB"],
            ),
        ];
        for (file, seconds, args) in trims {
            let ss = format!("{seconds:.4}");
            let mut all = vec!["-ss", ss.as_str()];
            all.extend_from_slice(args);
            let path = encode(MUSIC, d, file, &all);
            let fb = fingerprint(&decode_mono(&path, &[]), FINGERPRINT_RATE);
            let m = compare_fingerprints(&fa, &fb, DEFAULT_MIN_OVERLAP_FRAMES).expect("overlap");
            println!("trim {seconds:.4} s {args:?}: {m:?}");
            let expected = seconds / hop_s;
            assert!(
                (m.offset_frames as f64 - expected).abs() <= 1.0,
                "{seconds}: {m:?}"
            );
            assert!(m.bit_error_rate < 0.15, "{seconds}: {m:?}");
            // The other way round, the offset is negative.
            let back = compare_fingerprints(&fb, &fa, DEFAULT_MIN_OVERLAP_FRAMES).expect("overlap");
            assert_eq!(back.offset_frames, -m.offset_frames);
        }
    }

    #[test]
    fn different_audio_does_not_match() {
        let fa = music();
        let dir = tempfile::tempdir().expect("temp dir");
        let speech = fingerprint(
            &decode_mono(&make_speech(dir.path()), &[]),
            FINGERPRINT_RATE,
        );
        let noise = fingerprint(&white_noise(0.3, 11025 * 30, 3), FINGERPRINT_RATE);
        for (name, other) in [("speech", &speech), ("noise", &noise)] {
            let m = compare_fingerprints(&fa, other, DEFAULT_MIN_OVERLAP_FRAMES).expect("overlap");
            println!("music vs {name}: {m:?}");
            // Observed 0.457 (speech) and 0.453 (noise), at the best of ~500 offsets.
            assert!(m.bit_error_rate > 0.4, "{name}: {m:?}");
        }
        // Ten-second parts of the music from other times, the overlap forced to all of it.
        // Observed 0.49–0.56.
        for (from, to) in [
            (0, 250),
            (0, 100),
            (100, 300),
            (50, 400),
            (0, 24),
            (200, 210),
        ] {
            let m = compare_fingerprints(&part(&fa, from, 80), &part(&fa, to, 80), 80)
                .expect("overlap");
            println!("music {from} vs {to}: {m:?}");
            assert!(m.bit_error_rate > 0.4, "{from} vs {to}: {m:?}");
        }
    }

    #[test]
    fn speech_copy_matches_speech() {
        let dir = tempfile::tempdir().expect("temp dir");
        let original = make_speech(dir.path());
        let fa = fingerprint(&decode_mono(&original, &[]), FINGERPRINT_RATE);
        let path = encode(
            original.to_str().expect("UTF-8 path"),
            dir.path(),
            "s.mp3",
            &["-c:a", "libmp3lame", "-b:a", "64k"],
        );
        let fb = fingerprint(&decode_mono(&path, &[]), FINGERPRINT_RATE);
        let m = compare_fingerprints(&fa, &fb, DEFAULT_MIN_OVERLAP_FRAMES).expect("overlap");
        println!("speech mp3: {m:?}");
        // Observed 0.0008: the pauses are silent frames, left out of the overlap.
        assert_eq!(m.offset_frames, 0);
        assert!(m.bit_error_rate < 0.05, "{m:?}");
    }

    #[test]
    fn silent_tails_do_not_match() {
        // Two unrelated signals that both end in 10 s of digital silence: aligning the tails
        // must not count as a match.
        let rate = FINGERPRINT_RATE as usize;
        let mut tone: Vec<f32> = sine(0.3, 330.0, FINGERPRINT_RATE, 8.0)
            .iter()
            .zip(white_noise(0.3, rate * 8, 11))
            .map(|(s, n)| s * n.signum())
            .collect();
        let mut noise = white_noise(0.3, rate * 8, 5);
        tone.extend(std::iter::repeat_n(0.0, rate * 10));
        noise.extend(std::iter::repeat_n(0.0, rate * 10));
        let (fa, fb) = (
            fingerprint(&tone, FINGERPRINT_RATE),
            fingerprint(&noise, FINGERPRINT_RATE),
        );
        let m = compare_fingerprints(&fa, &fb, DEFAULT_MIN_OVERLAP_FRAMES);
        println!("silent tails: {m:?}");
        // Observed 0.42 (without leaving the silent frames out it would be 0 at the tails).
        assert!(m.is_some_and(|m| m.bit_error_rate > 0.3), "{m:?}");
        // All silence: nothing to compare.
        let silent = fingerprint(&vec![0.0; rate * 10], FINGERPRINT_RATE);
        assert_eq!(compare_fingerprints(&silent, &silent, 1), None);
    }
}
