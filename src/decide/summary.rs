//! The decide phase's compact view of a run: what the run-wide decisions need of each sample
//! (sha256, pHash, the keep order's sharpness and pixels, the values of percentile thresholds,
//! its kept flag, id and key, which parts it has), built one work unit at a time from the
//! units' records and held instead of the records, so that deciding over ten million samples
//! holds a few hundred MB, not tens of GB. The decisions (percentile thresholds, then exact,
//! pHash, video and audio dedup) are made here by the same searches and keep rule as over
//! records ([`super::run_wide`]), group by group, and come out identical. It reads no state and
//! plans no shards: the phase streams the records in, `write::layout` plans from this view.

use std::collections::{BTreeMap, HashMap};

use super::dedup::{
    audio_duplicates, exact_duplicates, near_duplicates, video_duplicates, Candidate,
};
use super::hamming_index::pairs_within;
use super::percentiles::{
    apply_percentile_thresholds_to, percentile_rules, ResolvedThreshold, Rule, ThresholdSamples,
};
use super::run_wide::candidate;
use super::Drop;
use crate::config::Config;
use crate::measure::video::Signature;
use crate::measure::MediaKind;
use crate::record::Record;

/// Flags of a [`SampleSummary`].
const KEPT: u8 = 1;
const HAS_SHA256: u8 = 1 << 1;
const HAS_PHASH: u8 = 1 << 2;
/// One of its staged parts is a `.txt` (a caption).
const HAS_TXT: u8 = 1 << 3;
const IS_VIDEO: u8 = 1 << 4;
const IS_AUDIO: u8 = 1 << 5;

/// What the run-wide decisions know of one sample: 72 bytes, plus its id and key in the text
/// arena. Video signatures and audio fingerprints are held beside, for those samples only.
#[derive(Debug, Clone)]
struct SampleSummary {
    sha256: [u8; 32],
    phash: u64,
    /// The keep order's first two keys ([`candidate`]).
    sharpness: f64,
    pixels: u64,
    /// Where its id starts in the text arena; its key follows the id.
    text_at: u64,
    id_len: u16,
    key_len: u16,
    /// Its staged part extensions but `.txt` and `.json`, as an index into `part_sets`.
    part_set: u16,
    flags: u8,
}

/// Why a record cannot be summarised.
#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("sample {id}: its sha256 `{sha256}` is not 64 hex digits")]
    Sha256 { id: String, sha256: String },
    #[error("sample {id}: its id or key is longer than {} bytes", u16::MAX)]
    TooLong { id: String },
    #[error("more than {} distinct sets of part extensions", u16::MAX)]
    PartSets,
    #[error("more than {} samples in one run", u32::MAX)]
    TooMany,
}

/// Every sample of a run, summarised, numbered in the order they were added ("positions":
/// unit by unit, each unit's records in their stored order), and the decisions made over them.
pub struct SampleSummaries {
    samples: Vec<SampleSummary>,
    text: Vec<u8>,
    part_sets: Vec<Vec<String>>,
    part_set_of: HashMap<Vec<String>, u16>,
    /// For each percentile rule of the config, each sample's value (NaN for none: a NaN is
    /// neither counted in the quantile nor dropped, exactly as a missing value).
    threshold_values: Vec<Vec<f64>>,
    rules: Vec<Rule>,
    video_signatures: HashMap<u32, (Vec<f64>, Vec<u64>)>,
    audio_fingerprints: HashMap<u32, Vec<u32>>,
    /// Positions in id order, once [`SampleSummaries::sort`] has run.
    order: Vec<u32>,
    /// Drops made by the run-wide decisions, by position.
    drops: Vec<(u32, Drop)>,
}

impl SampleSummaries {
    pub fn new(config: &Config) -> SampleSummaries {
        let rules: Vec<Rule> = percentile_rules(config)
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        SampleSummaries {
            samples: Vec::new(),
            text: Vec::new(),
            part_sets: Vec::new(),
            part_set_of: HashMap::new(),
            threshold_values: vec![Vec::new(); rules.len()],
            rules,
            video_signatures: HashMap::new(),
            audio_fingerprints: HashMap::new(),
            order: Vec::new(),
            drops: Vec::new(),
        }
    }

    /// Adds one record at the next position.
    pub fn push(&mut self, record: &Record) -> Result<(), SummaryError> {
        let position = u32::try_from(self.samples.len()).map_err(|_| SummaryError::TooMany)?;
        let m = &record.measurements;
        let mut flags = 0;
        if record.decision.is_keep() {
            flags |= KEPT;
        }
        let mut sha256 = [0u8; 32];
        if let Some(hex_digits) = &m.sha256 {
            hex::decode_to_slice(hex_digits, &mut sha256).map_err(|_| SummaryError::Sha256 {
                id: record.id.clone(),
                sha256: hex_digits.clone(),
            })?;
            // Upper-case digits would come back lower-case in a drop's detail.
            if hex::encode(sha256) != *hex_digits {
                return Err(SummaryError::Sha256 {
                    id: record.id.clone(),
                    sha256: hex_digits.clone(),
                });
            }
            flags |= HAS_SHA256;
        }
        if m.phash.is_some() {
            flags |= HAS_PHASH;
        }
        if record.staged.iter().any(|p| p.ext == "txt") {
            flags |= HAS_TXT;
        }
        if let Some(video) = &m.video {
            flags |= IS_VIDEO;
            self.video_signatures.insert(
                position,
                (video.frame_timestamps.clone(), video.frame_phashes.clone()),
            );
        }
        if let (Some(MediaKind::Audio), Some(audio)) = (record.media_kind(), &m.audio) {
            flags |= IS_AUDIO;
            self.audio_fingerprints
                .insert(position, audio.fingerprint.clone());
        }
        let exts: Vec<String> = record
            .staged
            .iter()
            .map(|p| p.ext.as_str())
            .filter(|e| *e != "txt" && *e != "json")
            .map(str::to_string)
            .collect();
        let part_set = match self.part_set_of.get(&exts) {
            Some(&set) => set,
            None => {
                let set =
                    u16::try_from(self.part_sets.len()).map_err(|_| SummaryError::PartSets)?;
                self.part_sets.push(exts.clone());
                self.part_set_of.insert(exts, set);
                set
            }
        };
        let too_long = || SummaryError::TooLong {
            id: record.id.clone(),
        };
        let id_len = u16::try_from(record.id.len()).map_err(|_| too_long())?;
        let key_len = u16::try_from(record.key.len()).map_err(|_| too_long())?;
        let text_at = self.text.len() as u64;
        self.text.extend_from_slice(record.id.as_bytes());
        self.text.extend_from_slice(record.key.as_bytes());
        for (values, rule) in self.threshold_values.iter_mut().zip(&self.rules) {
            values.push((rule.value)(m).unwrap_or(f64::NAN));
        }
        let c = candidate(record);
        self.samples.push(SampleSummary {
            sha256,
            phash: m.phash.unwrap_or_default(),
            sharpness: c.sharpness,
            pixels: c.pixels,
            text_at,
            id_len,
            key_len,
            part_set,
            flags,
        });
        Ok(())
    }

    /// Samples added.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Sorts the positions by id (stably, as the records are sorted), once all are added.
    pub fn sort(&mut self) {
        let mut order: Vec<u32> = (0..self.samples.len() as u32).collect();
        order.sort_by(|&a, &b| self.id(a as usize).cmp(self.id(b as usize)));
        self.order = order;
    }

    /// Positions in id order (after [`SampleSummaries::sort`]).
    pub fn order(&self) -> &[u32] {
        &self.order
    }

    pub fn id(&self, position: usize) -> &str {
        let s = &self.samples[position];
        let start = s.text_at as usize;
        text_of(&self.text[start..start + s.id_len as usize])
    }

    pub fn key(&self, position: usize) -> &str {
        let s = &self.samples[position];
        let start = s.text_at as usize + s.id_len as usize;
        text_of(&self.text[start..start + s.key_len as usize])
    }

    pub fn is_kept(&self, position: usize) -> bool {
        self.samples[position].flags & KEPT != 0
    }

    pub fn has_txt(&self, position: usize) -> bool {
        self.samples[position].flags & HAS_TXT != 0
    }

    /// Its part extensions but `.txt` and `.json`, as an index into [`Self::part_sets`].
    pub fn part_set(&self, position: usize) -> usize {
        self.samples[position].part_set as usize
    }

    /// Every distinct set of part extensions met, by index.
    pub fn part_sets(&self) -> &[Vec<String>] {
        &self.part_sets
    }

    /// Bytes held, for the log: summaries, text, threshold values, signatures, order, drops.
    pub fn bytes_held(&self) -> u64 {
        let signatures: usize = self
            .video_signatures
            .values()
            .map(|(t, h)| t.len() * 8 + h.len() * 8 + 64)
            .sum::<usize>()
            + self
                .audio_fingerprints
                .values()
                .map(|f| f.len() * 4 + 40)
                .sum::<usize>();
        (self.samples.capacity() * std::mem::size_of::<SampleSummary>()
            + self.text.capacity()
            + self
                .threshold_values
                .iter()
                .map(|v| v.capacity() * 8)
                .sum::<usize>()
            + signatures
            + self.order.capacity() * 4) as u64
    }

    /// The run-wide decisions over the samples still kept, in the order of a one-machine run:
    /// percentile thresholds, then exact, pHash, video and audio dedup. Returns what each
    /// percentile threshold resolved to.
    pub fn decide(&mut self, config: &Config) -> BTreeMap<String, ResolvedThreshold> {
        let thresholds = apply_percentile_thresholds_to(self, config);
        let dedup = &config.dedup;
        if dedup.exact {
            self.drop_exact_duplicates();
        }
        if dedup.phash_max_distance > 0 {
            self.drop_near_duplicates(dedup.phash_max_distance);
        }
        if dedup.video_max_distance > 0.0 {
            let tolerance = 0.5 / config.video.sample_fps;
            let kept = self.kept_in_order(IS_VIDEO);
            let signatures: Vec<Signature> = kept
                .iter()
                .map(|p| {
                    let (times, hashes) = &self.video_signatures[p];
                    Signature { times, hashes }
                })
                .collect();
            let (candidates, _) = self.candidates(&kept);
            let drops = video_duplicates(
                &candidates,
                &signatures,
                dedup.video_max_distance,
                tolerance,
            );
            self.apply(&kept, drops);
        }
        if dedup.audio_max_bit_error_rate > 0.0 {
            let kept = self.kept_in_order(IS_AUDIO);
            let prints: Vec<&[u32]> = kept
                .iter()
                .map(|p| self.audio_fingerprints[p].as_slice())
                .collect();
            let (candidates, _) = self.candidates(&kept);
            let drops = audio_duplicates(&candidates, &prints, dedup.audio_max_bit_error_rate);
            self.apply(&kept, drops);
        }
        thresholds
    }

    /// Positions of the kept samples with all of `flags`, in id order.
    fn kept_in_order(&self, flags: u8) -> Vec<u32> {
        self.order
            .iter()
            .copied()
            .filter(|&p| {
                let f = self.samples[p as usize].flags;
                f & KEPT != 0 && f & flags == flags
            })
            .collect()
    }

    /// What dedup knows of the samples at `positions`; the sha256 digits are made here for
    /// these samples only (the summaries hold the 32 bytes).
    fn candidates(&self, positions: &[u32]) -> (Vec<Candidate<'_>>, Vec<String>) {
        let hexes: Vec<String> = positions
            .iter()
            .map(|&p| {
                let s = &self.samples[p as usize];
                if s.flags & HAS_SHA256 != 0 {
                    hex::encode(s.sha256)
                } else {
                    String::new()
                }
            })
            .collect();
        let candidates = positions
            .iter()
            .map(|&p| {
                let s = &self.samples[p as usize];
                Candidate {
                    id: self.id(p as usize),
                    sha256: "",
                    phash: s.phash,
                    sharpness: s.sharpness,
                    pixels: s.pixels,
                }
            })
            .collect();
        (candidates, hexes)
    }

    /// Exact dedup, one group of equal sha256 at a time (groups are independent, so this is
    /// what [`exact_duplicates`] over all kept samples finds). Samples without a sha256 form
    /// one group, as they do there (their digest reads as empty).
    fn drop_exact_duplicates(&mut self) {
        let mut kept = self.kept_in_order(0);
        let digest = |p: u32| {
            let s = &self.samples[p as usize];
            (s.flags & HAS_SHA256 != 0, s.sha256)
        };
        // Stable: each group stays in id order.
        kept.sort_by_key(|&p| digest(p));
        let mut groups = Vec::new();
        let mut start = 0;
        for end in 1..=kept.len() {
            if end == kept.len() || digest(kept[end]) != digest(kept[start]) {
                if end - start > 1 {
                    groups.push(kept[start..end].to_vec());
                }
                start = end;
            }
        }
        drop(kept);
        for group in groups {
            let (mut candidates, hexes) = self.candidates(&group);
            for (c, hex_digits) in candidates.iter_mut().zip(&hexes) {
                c.sha256 = hex_digits;
            }
            let drops = exact_duplicates(&candidates);
            drop(candidates);
            self.apply(&group, drops);
        }
    }

    /// pHash dedup: the pairs within `max_distance` over every kept image, grouped (connected
    /// components), then [`near_duplicates`] within each group, whose pairs are all inside it
    /// (so it finds the same group, keeps the same sample and writes the same details).
    fn drop_near_duplicates(&mut self, max_distance: u32) {
        let kept = self.kept_in_order(HAS_PHASH);
        let hashes: Vec<u64> = kept
            .iter()
            .map(|&p| self.samples[p as usize].phash)
            .collect();
        let pairs = pairs_within(&hashes, max_distance);
        drop(hashes);
        let mut sets = super::dedup::UnionFind::new(kept.len());
        for &(i, j, _) in &pairs {
            sets.union(i, j);
        }
        drop(pairs);
        for group in sets.groups() {
            let positions: Vec<u32> = group.iter().map(|&i| kept[i as usize]).collect();
            let (candidates, _) = self.candidates(&positions);
            let drops = near_duplicates(&candidates, max_distance);
            drop(candidates);
            self.apply(&positions, drops);
        }
    }

    fn apply(&mut self, positions: &[u32], drops: Vec<Option<Drop>>) {
        for (&p, drop) in positions.iter().zip(drops) {
            if let Some(drop) = drop {
                self.drop_at(p, drop);
            }
        }
    }

    fn drop_at(&mut self, position: u32, drop: Drop) {
        self.samples[position as usize].flags &= !KEPT;
        self.drops.push((position, drop));
    }

    /// The drops made by [`SampleSummaries::decide`], by position.
    pub fn take_drops(&mut self) -> Vec<(u32, Drop)> {
        std::mem::take(&mut self.drops)
    }
}

impl ThresholdSamples for SampleSummaries {
    fn count(&self) -> usize {
        self.samples.len()
    }
    fn value(&self, k: usize, _rule: &Rule, i: usize) -> Option<f64> {
        Some(self.threshold_values[k][i]).filter(|v| !v.is_nan())
    }
    fn is_keep(&self, i: usize) -> bool {
        self.is_kept(i)
    }
    fn drop_sample(&mut self, i: usize, drop: Drop) {
        self.drop_at(i as u32, drop);
    }
}

/// Ids and keys are stored from `&str`, so they are UTF-8.
fn text_of(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// The decide phase's decisions over summaries, as committed: what changes in the records
/// (sorted by id, numbered by rank) from the units' state to the decided run. The write and
/// commit phases read the units' records again and apply these ([`DecidedSamples::apply`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecidedSamples {
    /// Samples of the run, and of them kept.
    pub samples: u64,
    pub kept: u64,
    /// The drops of the run-wide decisions, by rank, ascending.
    pub drops: Vec<(u64, Drop)>,
    /// Keys made unique, by rank, ascending (every other sample keeps its key).
    pub keys: Vec<(u64, String)>,
}

/// Decisions made over other units than those read back (the state changed under them).
#[derive(Debug, thiserror::Error)]
#[error("the units hold {held} samples, the decisions were made over {decided}")]
pub struct OtherUnits {
    held: u64,
    decided: u64,
}

impl DecidedSamples {
    /// Applies the decisions to the run's records, in id order.
    pub fn apply(&self, records: &mut [Record]) -> Result<(), OtherUnits> {
        if records.len() as u64 != self.samples {
            return Err(OtherUnits {
                held: records.len() as u64,
                decided: self.samples,
            });
        }
        for (rank, drop) in &self.drops {
            records[*rank as usize].drop_with(drop.clone());
        }
        for (rank, key) in &self.keys {
            records[*rank as usize].key = key.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::percentiles::apply_percentile_thresholds;
    use super::super::run_wide::drop_duplicates;
    use super::super::test_support::{config, kept_record};
    use super::*;
    use crate::measure::Measurements;
    use crate::record::{Decision, Reason, Stage};

    fn image(id: &str, sha: Option<&str>, phash: Option<u64>, sharpness: f64) -> Record {
        let m = Measurements {
            media_kind: Some(MediaKind::Image),
            sha256: sha.map(|s| s.repeat(32)),
            phash,
            sharpness: Some(sharpness),
            width: Some(64),
            height: Some(48),
            ..Measurements::default()
        };
        kept_record(id, m)
    }

    /// Records out of id order: an exact pair, a near group of three linked through its middle
    /// member, two without a sha256, one without a pHash, one dropped before, blurry ones.
    fn run() -> Vec<Record> {
        let mut dropped = image("0:z", Some("ee"), Some(0xffff), 50.0);
        dropped.drop_with(Drop::new(Stage::Filter, Reason::TooSmall, "small"));
        vec![
            image("0:m", Some("aa"), Some(0x0f0f), 30.0),
            image("0:b", Some("aa"), Some(0xf000_0000), 20.0),
            image("0:c", Some("bb"), Some(0b1111 << 40), 40.0),
            image("0:k", Some("cc"), Some((0b1111 << 40) | 0b11), 41.0),
            image("0:a", Some("dd"), Some((0b1111 << 40) | 0b1111), 39.0),
            image("0:n1", None, Some(1 << 20), 35.0),
            image("0:n2", None, Some(1 << 30), 36.0),
            image("0:p", Some("12"), None, 33.0),
            image("0:blur", Some("34"), Some(0x1234_5678_9abc), 1.0),
            dropped,
        ]
    }

    #[test]
    fn decisions_over_summaries_are_the_decisions_over_records() {
        let config =
            config("[filters.image]\nmin_sharpness = \"p10\"\n[dedup]\nphash_max_distance = 3\n");
        let mut records = run();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        let expected_thresholds = apply_percentile_thresholds(&mut records, &config);
        drop_duplicates(&mut records, &config);

        let mut summaries = SampleSummaries::new(&config);
        let unsorted = run();
        for record in &unsorted {
            summaries.push(record).unwrap();
        }
        summaries.sort();
        let thresholds = summaries.decide(&config);
        assert_eq!(thresholds, expected_thresholds);
        let mut decided: Vec<Record> = unsorted.clone();
        for (position, drop) in summaries.take_drops() {
            decided[position as usize].drop_with(drop);
        }
        decided.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(decided, records);

        // What the run-wide decisions did, so that the comparison is not between no-ops.
        let reason = |id: &str| {
            let r = records.iter().find(|r| r.id == id).unwrap();
            r.decision.dropped().map(|d| d.reason)
        };
        assert_eq!(reason("0:blur"), Some(Reason::TooBlurry));
        assert_eq!(reason("0:b"), Some(Reason::ExactDuplicate));
        assert_eq!(reason("0:n1"), Some(Reason::ExactDuplicate));
        assert_eq!(reason("0:c"), Some(Reason::NearDuplicate));
        assert_eq!(reason("0:a"), Some(Reason::NearDuplicate));
        assert_eq!(reason("0:k"), None);
        assert_eq!(reason("0:z"), Some(Reason::TooSmall));
        let a = records.iter().find(|r| r.id == "0:a").unwrap();
        let Decision::Drop(d) = &a.decision else {
            unreachable!()
        };
        assert!(d.detail.contains("group of 3"), "{}", d.detail);
    }

    #[test]
    fn decided_samples_apply_drops_and_keys_by_rank() {
        let mut records = vec![
            image("0:a", Some("aa"), None, 1.0),
            image("0:b", Some("bb"), None, 1.0),
        ];
        let decided = DecidedSamples {
            samples: 2,
            kept: 1,
            drops: vec![(0, Drop::new(Stage::Dedup, Reason::ExactDuplicate, "copy"))],
            keys: vec![(1, "b_1234".into())],
        };
        decided.apply(&mut records).unwrap();
        assert_eq!(
            records[0].decision.dropped().unwrap().reason,
            Reason::ExactDuplicate
        );
        assert!(records[0].staged.is_empty());
        assert_eq!(records[1].key, "b_1234");
        let error = decided.apply(&mut records[..1]).unwrap_err().to_string();
        assert!(error.contains("hold 1 samples"), "{error}");
    }

    #[test]
    fn a_sha256_that_is_not_hex_is_an_error() {
        let mut summaries = SampleSummaries::new(&config(""));
        let error = summaries
            .push(&image("0:x", Some("zz"), None, 1.0))
            .unwrap_err();
        assert!(error.to_string().contains("not 64 hex digits"), "{error}");
    }
}
