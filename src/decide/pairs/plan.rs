//! The pair search split into steps that run as separate tasks, and the files that carry one
//! step's result to the next, under `DIR/state/partitions/`:
//!
//! - `--step partitions` (one task): the sample and the k-means, once. Writes `centroids.npy`
//!   (partitions × dim, float32), `top.npy` (the group centres, with two levels) and, last,
//!   `plan.json` (the parameters, the groups' partition ranges and a checksum of both
//!   matrices). A step reads a plan only when `plan.json` is there and the matrices match it.
//! - `--step assign --num-shards N --shard-index I`: the rows of range I of N (whole chunks of
//!   [`CHUNK_ROWS`]) assigned once, written as `memberships-0000I-of-0000N.bin` in N sections,
//!   section S holding the rows that touch the partitions search shard S of N searches.
//! - `--step search --num-shards N --shard-index I`: reads section I of every row range's file
//!   (about 1/N of all memberships), gathers its partitions' rows and writes its pairs as an
//!   unsplit sharded search does.
//!
//! Each row is assigned in the same chunk as in a whole scan and each shard searches the same
//! partitions, so the merged pairs are those of one process, bit for bit (tested).
//!
//! A memberships file, little-endian: `MMCMEMB1`, the plan's checksum (u64), the row range
//! (u64, u64), the rows assigned and their memberships (u64, u64), the section count N (u64),
//! N + 1 section offsets from the file's start (u64), then each section: its row count n
//! (u64), then n row numbers, n primary partitions and n partition counts (u32 each), then the
//! count of partitions m (u64) and m partitions (u32). Hand-written: a flat table of u32 read
//! in one piece by a task, for which Arrow or Parquet would add a dependency on column
//! encodings and nothing a reader needs (these files are the search's own state, not output).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::assign::Memberships;
use super::engine::{partition_range, PairSearch, PairStats, Partitions, Shard};
use super::kmeans::{Centroids, PartitionGroups};
use super::npy::{decode_f32, npy_header};
use super::source::CHUNK_ROWS;
use super::{format_error, io_error, mix, PairsError};

const MAGIC: &[u8; 8] = b"MMCMEMB1";
const FORMAT: u32 = 1;

/// The folder of a search's plan and memberships: `DIR/state/partitions`.
pub fn plan_dir(output: &Path) -> PathBuf {
    output.join("state").join("partitions")
}

/// The rows of row range `shard`: whole chunks of [`CHUNK_ROWS`], split as evenly as chunks
/// allow.
pub fn row_range(rows: u64, shard: Shard) -> Range<u64> {
    let chunks = rows.div_ceil(CHUNK_ROWS as u64);
    let (count, index) = (u64::from(shard.count), u64::from(shard.index));
    let start = (chunks * index / count) * CHUNK_ROWS as u64;
    let end = (chunks * (index + 1) / count) * CHUNK_ROWS as u64;
    start.min(rows)..end.min(rows)
}

/// What `plan.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PlanRecord {
    format: u32,
    rows: u64,
    dim: usize,
    /// The parameters the assignment and the search depend on: every step must be given the
    /// same.
    min_cosine: f32,
    margin: f32,
    max_replicas: usize,
    probes: usize,
    normalise: bool,
    seed: u64,
    partitions: usize,
    /// With two levels, the first partition of each group and, last, the partition count.
    group_starts: Option<Vec<u32>>,
    sample_rows: usize,
    sample_held: bool,
    /// Of the centroids and the group centres, in hex.
    checksum: String,
}

/// What `plan.json` says of the partitions, without reading the matrices: all a search task
/// needs (at 10⁹ rows the centroids are 4 GB).
pub(crate) struct PlanInfo {
    pub partitions: usize,
    /// Groups of partitions (1: one level).
    pub groups: usize,
    /// Of the matrices: what the memberships files carry.
    pub checksum: u64,
    pub sample_rows: usize,
    pub sample_held: bool,
}

impl PlanInfo {
    /// The partitions search task `shard` searches.
    pub fn range_of(&self, shard: Shard) -> Range<u32> {
        partition_range(self.partitions, shard)
    }
}

/// A plan read back whole: what it says, and the partitions.
pub(crate) struct Plan {
    pub info: PlanInfo,
    pub partitions: Partitions,
}

/// A checksum of the centroids' and group centres' bits.
fn checksum(partitions: &Partitions) -> u64 {
    let mut h = mix(partitions.centroids.dim as u64);
    let top = partitions.groups.as_ref().map(|g| &g.top.vectors[..]);
    for values in [&partitions.centroids.vectors[..], top.unwrap_or(&[])] {
        h = mix(h ^ values.len() as u64);
        for v in values {
            h = mix(h ^ u64::from(v.to_bits()));
        }
    }
    h
}

/// Writes `values` (rows × dim) as a float32 .npy file, next to `path` and then renamed.
fn write_matrix(path: &Path, values: &[f32], dim: usize) -> Result<(), PairsError> {
    let partial = path.with_extension("npy.partial");
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::new(File::create(&partial)?);
        out.write_all(&npy_header(values.len() / dim.max(1), dim))?;
        for v in values {
            out.write_all(&v.to_le_bytes())?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(|e| io_error(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), PairsError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes).map_err(|e| io_error(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| io_error(path, e))
}

/// Writes the plan of a search over `rows × dim` rows into `dir`: the matrices, then
/// `plan.json` (with the sample's size from `stats`).
pub(crate) fn write_plan(
    dir: &Path,
    params: &PairSearch,
    rows: u64,
    dim: usize,
    partitions: &Partitions,
    stats: &PairStats,
) -> Result<(), PairsError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    write_matrix(
        &dir.join("centroids.npy"),
        &partitions.centroids.vectors,
        dim,
    )?;
    let group_starts = partitions.groups.as_ref().map(|groups| {
        write_matrix(&dir.join("top.npy"), &groups.top.vectors, dim)?;
        let mut starts: Vec<u32> = groups.members.iter().map(|r| r.start).collect();
        starts.push(partitions.len() as u32);
        Ok::<_, PairsError>(starts)
    });
    let record = PlanRecord {
        format: FORMAT,
        rows,
        dim,
        min_cosine: params.min_cosine,
        margin: params.margin,
        max_replicas: params.max_replicas,
        probes: params.probes,
        normalise: params.normalise,
        seed: params.seed,
        partitions: partitions.len(),
        group_starts: group_starts.transpose()?,
        sample_rows: stats.sample_rows,
        sample_held: stats.sample_held,
        checksum: format!("{:016x}", checksum(partitions)),
    };
    let json = serde_json::to_string_pretty(&record).expect("a plan serialises");
    write_file_atomically(&dir.join("plan.json"), format!("{json}\n").as_bytes())
}

/// Reads and checks `plan.json` in `dir` for a search over `rows × dim` rows with `params`; an
/// error says what differs and what to run.
fn read_record(
    dir: &Path,
    params: &PairSearch,
    rows: u64,
    dim: usize,
) -> Result<(PlanRecord, u64), PairsError> {
    let path = dir.join("plan.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format_error(
                &path,
                "no plan: run this command with --step partitions first (once, on one task)".into(),
            ))
        }
        Err(e) => return Err(io_error(&path, e)),
    };
    let record: PlanRecord = serde_json::from_str(&text).map_err(|e| {
        format_error(
            &path,
            format!("not a plan this version wrote ({e}): run --step partitions again"),
        )
    })?;
    if record.format != FORMAT {
        return Err(format_error(
            &path,
            format!(
                "plan format {} (this version reads {FORMAT}): run --step partitions again",
                record.format
            ),
        ));
    }
    let differs = [
        (
            "rows of the input",
            record.rows.to_string(),
            rows.to_string(),
        ),
        (
            "dimension of the input",
            record.dim.to_string(),
            dim.to_string(),
        ),
        (
            "--min-cosine",
            record.min_cosine.to_string(),
            params.min_cosine.to_string(),
        ),
        (
            "--margin",
            record.margin.to_string(),
            params.margin.to_string(),
        ),
        (
            "--max-replicas",
            record.max_replicas.to_string(),
            params.max_replicas.to_string(),
        ),
        (
            "--probes",
            record.probes.to_string(),
            params.probes.to_string(),
        ),
        (
            "normalising",
            record.normalise.to_string(),
            params.normalise.to_string(),
        ),
    ];
    for (name, planned, given) in differs {
        if planned != given {
            return Err(format_error(
                &path,
                format!(
                    "the plan was made with {name} {planned}, this step has {given}: give every step the same input and parameters, or run --step partitions again"
                ),
            ));
        }
    }
    let checksum = u64::from_str_radix(&record.checksum, 16).map_err(|_| {
        format_error(
            &path,
            format!(
                "checksum {:?} is not hexadecimal: run --step partitions again",
                record.checksum
            ),
        )
    })?;
    Ok((record, checksum))
}

/// What the plan in `dir` says ([`read_record`]'s checks), without its matrices.
pub(crate) fn read_plan_info(
    dir: &Path,
    params: &PairSearch,
    rows: u64,
    dim: usize,
) -> Result<PlanInfo, PairsError> {
    let (record, checksum) = read_record(dir, params, rows, dim)?;
    Ok(info_of(&record, checksum))
}

fn info_of(record: &PlanRecord, checksum: u64) -> PlanInfo {
    PlanInfo {
        partitions: record.partitions,
        groups: record
            .group_starts
            .as_ref()
            .map_or(1, |s| s.len().saturating_sub(1)),
        checksum,
        sample_rows: record.sample_rows,
        sample_held: record.sample_held,
    }
}

/// The plan in `dir` with its matrices, checked against the checksum `plan.json` records.
pub(crate) fn read_plan(
    dir: &Path,
    params: &PairSearch,
    rows: u64,
    dim: usize,
) -> Result<Plan, PairsError> {
    let (record, recorded) = read_record(dir, params, rows, dim)?;
    let path = dir.join("plan.json");
    let matrix = |name: &str, count: usize| -> Result<Vec<f32>, PairsError> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        decode_f32(&bytes, dim, count).ok_or_else(|| {
            format_error(
                &path,
                format!("not the {count} × {dim} float32 matrix plan.json names: run --step partitions again"),
            )
        })
    };
    let centroids = Centroids::from_vectors(matrix("centroids.npy", record.partitions)?, dim);
    let groups = match &record.group_starts {
        None => None,
        Some(starts) => {
            let ordered = starts.windows(2).all(|w| w[0] <= w[1])
                && starts.last() == Some(&(record.partitions as u32));
            if starts.len() < 2 || !ordered {
                return Err(format_error(
                    &path,
                    "group_starts must ascend to the partition count: run --step partitions again"
                        .into(),
                ));
            }
            let top = Centroids::from_vectors(matrix("top.npy", starts.len() - 1)?, dim);
            let members = starts.windows(2).map(|w| w[0]..w[1]).collect();
            Some(PartitionGroups { top, members })
        }
    };
    let partitions = Partitions { centroids, groups };
    if checksum(&partitions) != recorded {
        return Err(format_error(
            &path,
            "centroids.npy or top.npy is not the one this plan was written with: run --step partitions again".into(),
        ));
    }
    Ok(Plan {
        info: info_of(&record, recorded),
        partitions,
    })
}

/// `DIR/memberships-0000I-of-0000N.bin`.
pub fn memberships_path(dir: &Path, shard: Shard) -> PathBuf {
    dir.join(format!(
        "memberships-{:05}-of-{:05}.bin",
        shard.index, shard.count
    ))
}

/// Writes the memberships of row range `shard` (all rows of `rows`, every partition kept), in
/// one section per search shard of the same count.
pub(crate) fn write_memberships(
    dir: &Path,
    plan: &PlanInfo,
    shard: Shard,
    rows: Range<u64>,
    memberships: &Memberships,
) -> Result<PathBuf, PairsError> {
    let path = memberships_path(dir, shard);
    let partial = path.with_extension("bin.partial");
    let sections: Vec<Vec<usize>> = (0..shard.count)
        .map(|index| {
            let range = plan.range_of(Shard {
                count: shard.count,
                index,
            });
            (0..memberships.len())
                .filter(|&i| memberships.list(i).iter().any(|p| range.contains(p)))
                .collect()
        })
        .collect();
    let header_bytes = 8 * 7 + 8 * (u64::from(shard.count) + 1);
    let mut offsets = vec![header_bytes];
    for section in &sections {
        let partitions: usize = section.iter().map(|&i| memberships.list(i).len()).sum();
        let bytes = 8 + 12 * section.len() as u64 + 8 + 4 * partitions as u64;
        offsets.push(offsets.last().unwrap() + bytes);
    }
    let write = || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&partial)?);
        out.write_all(MAGIC)?;
        for v in [
            plan.checksum,
            rows.start,
            rows.end,
            memberships.assigned_rows,
            memberships.assigned_memberships,
            u64::from(shard.count),
        ] {
            out.write_all(&v.to_le_bytes())?;
        }
        for v in &offsets {
            out.write_all(&v.to_le_bytes())?;
        }
        for section in &sections {
            let m: usize = section.iter().map(|&i| memberships.list(i).len()).sum();
            out.write_all(&(section.len() as u64).to_le_bytes())?;
            put_u32s(&mut out, section.iter().map(|&i| memberships.rows[i]))?;
            put_u32s(&mut out, section.iter().map(|&i| memberships.primary[i]))?;
            put_u32s(
                &mut out,
                section.iter().map(|&i| memberships.list(i).len() as u32),
            )?;
            out.write_all(&(m as u64).to_le_bytes())?;
            put_u32s(
                &mut out,
                section
                    .iter()
                    .flat_map(|&i| memberships.list(i).iter().copied()),
            )?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(|e| io_error(&partial, e))?;
    std::fs::rename(&partial, &path).map_err(|e| io_error(&path, e))?;
    Ok(path)
}

fn put_u32s(out: &mut impl Write, values: impl Iterator<Item = u32>) -> std::io::Result<()> {
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    Ok(())
}

/// The memberships search shard `shard` needs: its section of every row range's file, in row
/// order, and the counts of all rows assigned (for the statistics).
pub(crate) fn read_memberships(
    dir: &Path,
    plan: &PlanInfo,
    shard: Shard,
    rows: u64,
) -> Result<Memberships, PairsError> {
    let mut out = Memberships::new();
    for index in 0..shard.count {
        let range_shard = Shard {
            count: shard.count,
            index,
        };
        let path = memberships_path(dir, range_shard);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format_error(
                    &path,
                    format!(
                        "row range {index} of {} has not been assigned: run --step assign --num-shards {} --shard-index {index} first",
                        shard.count, shard.count
                    ),
                ))
            }
            Err(e) => return Err(io_error(&path, e)),
        };
        read_section(&path, file, plan, range_shard, rows, shard.index, &mut out)?;
    }
    Ok(out)
}

fn read_section(
    path: &Path,
    file: File,
    plan: &PlanInfo,
    range_shard: Shard,
    rows: u64,
    section: u32,
    out: &mut Memberships,
) -> Result<(), PairsError> {
    let again = |what: &str| {
        format_error(
            path,
            format!(
                "{what}: run --step assign --num-shards {} --shard-index {} again",
                range_shard.count, range_shard.index
            ),
        )
    };
    let length = file.metadata().map_err(|e| io_error(path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let u64s = |reader: &mut BufReader<File>, n: usize| -> Result<Vec<u64>, PairsError> {
        let mut bytes = vec![0u8; n * 8];
        reader
            .read_exact(&mut bytes)
            .map_err(|_| again("cut short"))?;
        Ok(bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .collect())
    };
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(|_| again("cut short"))?;
    if &magic != MAGIC {
        return Err(again("not a memberships file"));
    }
    let head = u64s(&mut reader, 6)?;
    if head[0] != plan.checksum {
        return Err(again("written for another plan"));
    }
    let expected = row_range(rows, range_shard);
    if head[1..3] != [expected.start, expected.end] || head[5] != u64::from(range_shard.count) {
        return Err(again("not this row range"));
    }
    out.assigned_rows += head[3];
    out.assigned_memberships += head[4];
    let offsets = u64s(&mut reader, range_shard.count as usize + 1)?;
    if offsets.last() != Some(&length) || offsets.windows(2).any(|w| w[0] > w[1]) {
        return Err(again("its sections do not match its length"));
    }
    reader
        .seek(SeekFrom::Start(offsets[section as usize]))
        .map_err(|e| io_error(path, e))?;
    let section_bytes = offsets[section as usize + 1] - offsets[section as usize];
    let u32s = |reader: &mut BufReader<File>, n: u64| -> Result<Vec<u32>, PairsError> {
        if n.saturating_mul(4) > section_bytes {
            return Err(again("a count beyond its section"));
        }
        let mut bytes = vec![0u8; n as usize * 4];
        reader
            .read_exact(&mut bytes)
            .map_err(|_| again("cut short"))?;
        Ok(bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect())
    };
    let n = u64s(&mut reader, 1)?[0];
    let row_numbers = u32s(&mut reader, n)?;
    let primaries = u32s(&mut reader, n)?;
    let lengths = u32s(&mut reader, n)?;
    let m = u64s(&mut reader, 1)?[0];
    let partitions = u32s(&mut reader, m)?;
    let k = plan.partitions as u32;
    let total: u64 = lengths.iter().map(|&l| u64::from(l)).sum();
    let in_range = row_numbers
        .iter()
        .all(|&r| (expected.start..expected.end).contains(&u64::from(r)));
    if total != m
        || !in_range
        || partitions.iter().any(|&p| p >= k)
        || primaries.iter().any(|&p| p >= k)
    {
        return Err(again("its rows or partitions are out of range"));
    }
    let mut at = 0;
    for ((row, primary), length) in row_numbers.into_iter().zip(primaries).zip(lengths) {
        out.push(row, primary, &partitions[at..at + length as usize]);
        at += length as usize;
    }
    Ok(())
}
