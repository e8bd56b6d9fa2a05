//! A bounds check of a Parquet file's column chunks and page headers, after its footer passed
//! `parquet_footer` and before the `parquet` crate reads a row: every column chunk must lie in
//! the file's data, apart from the others, and be a run of page headers each followed by the
//! page it declares; no chunk may declare more values, and no row group more rows, than
//! `MAX_ROWS_PER_BYTE` a byte of the file. It reads no page data and does not decode values.
//!
//! Why: the crate (57.3) reads each page header from the chunk's offset with a reader that runs
//! to the end of the file, and skips a header's unknown fields with `skip_till_depth`
//! (`parquet_thrift.rs`), which takes a list's booleans as zero bytes each and, through its
//! `Read` input, skips past the end of the input without an error: a 1 KB file whose page header
//! holds a list declaring 2^31 booleans, or nested lists of them, or of doubles at the end of
//! the file, keeps it looping for hours (`tests/fixtures/fuzz/manifest_parquet-page-header-hang.parquet`,
//! found by `fuzz/fuzz_targets/manifest_parquet.rs`). A header's known fields are read as the
//! crate's schema says whatever type they declare (a boolean field of another type is an
//! `unwrap` on `None`), and a statistics value is allocated at the length it declares. So the
//! headers are walked as the crate reads them, field by field with its field ids and schema
//! (`PageHeader` and the structs under it in `file/metadata/thrift/mod.rs`), refusing a known
//! field of another type, any length or count past the chunk's end and any list of booleans:
//! what the walk accepts, the crate reads the same way, within the chunk.

use parquet::basic::Compression;
use parquet::file::metadata::ParquetMetaData;

use super::parquet_footer::{Field, Walk, Wrong, STATISTICS};

/// The most rows a row group, and values a column chunk, may declare per byte of the file:
/// fewer than one bit a row cannot name distinct objects, while a few bytes of run-length
/// encoding can declare 2^31 null rows, each a row of the plan in memory.
const MAX_ROWS_PER_BYTE: i64 = 8;

/// The most a Snappy page can expand, as a ratio (64 to 3): the format's longest output per
/// input byte is a 3-byte copy of 64 bytes (literals and the length preamble expand nothing).
/// The crate allocates and zeroes the `uncompressed_page_size` a page header declares before it
/// decompresses (`decode_page`, `SnappyCodec::decompress`): a 1 KB file declaring 2^31 bytes
/// cost 2 GB a page (`tests/fixtures/fuzz/manifest_parquet-page-size-2gb.parquet`).
const SNAPPY_EXPANSION: (i64, i64) = (64, 3);

/// A column chunk the `parquet` crate must not read: which one, and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Parquet column chunk {column} (`{path}`) of row group {row_group} is malformed: {what}"
)]
pub struct MalformedChunk {
    row_group: usize,
    column: usize,
    path: String,
    what: String,
}

/// A row group declaring more rows than the file can hold.
#[derive(Debug, thiserror::Error)]
pub enum MalformedPages {
    #[error(transparent)]
    Chunk(#[from] MalformedChunk),
    #[error(
        "the Parquet row groups declare {rows} rows in {bytes} bytes (at most {MAX_ROWS_PER_BYTE} a byte)"
    )]
    Rows { rows: i64, bytes: usize },
}

/// Checks the column chunks of the Parquet file `bytes`, whose footer the crate parsed into
/// `metadata`: `Err` names the chunk and what is wrong.
pub fn check_pages(bytes: &[u8], metadata: &ParquetMetaData) -> Result<(), MalformedPages> {
    let cap = MAX_ROWS_PER_BYTE.saturating_mul(bytes.len() as i64);
    let mut rows = 0i64;
    for group in metadata.row_groups() {
        // A negative count is made the largest, so that it is refused too.
        let declared = if group.num_rows() < 0 {
            i64::MAX
        } else {
            group.num_rows()
        };
        rows = rows.saturating_add(declared);
    }
    if rows > cap {
        return Err(MalformedPages::Rows {
            rows,
            bytes: bytes.len(),
        });
    }
    // The pages lie between the leading `PAR1` and the footer (its length and `PAR1` last).
    let footer = bytes.len().checked_sub(8).map(|tail| {
        u32::from_le_bytes([
            bytes[tail],
            bytes[tail + 1],
            bytes[tail + 2],
            bytes[tail + 3],
        ])
    });
    let data_end = footer
        .and_then(|length| bytes.len().checked_sub(8 + length as usize))
        .unwrap_or(0);
    let mut chunks = Vec::new();
    for (row_group, group) in metadata.row_groups().iter().enumerate() {
        for (column, chunk) in group.columns().iter().enumerate() {
            let wrong = |what: String| MalformedChunk {
                row_group,
                column,
                path: chunk.column_path().string(),
                what,
            };
            let start = chunk
                .dictionary_page_offset()
                .unwrap_or(chunk.data_page_offset());
            let length = chunk.compressed_size();
            let end = start.checked_add(length).unwrap_or(i64::MAX);
            if start < 4 || length < 0 || end > data_end as i64 {
                return Err(wrong(format!(
                    "its {length} bytes at byte {start} are not within the file's data, bytes 4 to {data_end}"
                ))
                .into());
            }
            let (start, end) = (start as usize, end as usize);
            let expansion = match chunk.compression() {
                Compression::UNCOMPRESSED => None,
                Compression::SNAPPY => Some(SNAPPY_EXPANSION),
                other => {
                    return Err(wrong(format!(
                        "its compression {other} is not one this build reads (none or Snappy); \
                         rewrite the manifest with Snappy"
                    ))
                    .into());
                }
            };
            let values = pages(&bytes[start..end], expansion).map_err(|(at, what)| {
                wrong(format!("the page header at byte {}: {what}", start + at))
            })?;
            if values > cap || chunk.num_values() > cap {
                return Err(wrong(format!(
                    "its pages declare {values} values and the chunk {} in {} bytes (at most {MAX_ROWS_PER_BYTE} a byte)",
                    chunk.num_values(),
                    bytes.len()
                ))
                .into());
            }
            chunks.push((start, end, row_group, column, chunk.column_path().string()));
        }
    }
    // Chunks apart: the crate reads each chunk's pages once, so the whole read stays within
    // the file's size (overlapping chunks would read the same pages again and again).
    chunks.sort();
    for pair in chunks.windows(2) {
        let ((_, end, ..), (start, _, row_group, column, path)) = (&pair[0], &pair[1]);
        if start < end {
            return Err(MalformedChunk {
                row_group: *row_group,
                column: *column,
                path: path.clone(),
                what: format!("it starts at byte {start}, inside the chunk before it (to {end})"),
            }
            .into());
        }
    }
    Ok(())
}

/// Walks the pages of one column chunk: each a page header, then the page's bytes. A page may
/// declare at most `expansion` (a ratio) uncompressed bytes a compressed byte; `None` for pages
/// that are not decompressed. Returns the values its data pages declare, or where (from the
/// chunk's start) and what is wrong.
fn pages(chunk: &[u8], expansion: Option<(i64, i64)>) -> Result<i64, (usize, Wrong)> {
    let mut at = 0;
    let mut values = 0i64;
    while at < chunk.len() {
        let mut walk = Walk::new(&chunk[at..]);
        let header = page_header(&mut walk).map_err(|what| (at + walk.at, what))?;
        let missing = |what| (at, Wrong::Missing(what));
        header.kind.ok_or_else(|| missing("type"))?;
        let uncompressed = header
            .uncompressed
            .ok_or_else(|| missing("uncompressed_page_size"))?;
        let compressed = header
            .compressed
            .ok_or_else(|| missing("compressed_page_size"))?;
        // Errors from here on name the header's first byte, as those above do.
        let data = at + walk.at;
        let remain = chunk.len() - data;
        if compressed < 0 || uncompressed < 0 {
            let (what, value) = if compressed < 0 {
                ("compressed_page_size", compressed)
            } else {
                ("uncompressed_page_size", uncompressed)
            };
            return Err((at, Wrong::Value { what, value }));
        }
        if compressed as u64 > remain as u64 {
            return Err((
                at,
                Wrong::Bytes {
                    declared: compressed as usize,
                    remain,
                },
            ));
        }
        if let Some((times, per)) = expansion {
            // Rounded up: the most the format lets `compressed` bytes expand to.
            let most = compressed.saturating_mul(times).saturating_add(per - 1) / per;
            if uncompressed > most {
                return Err((
                    at,
                    Wrong::Expands {
                        compressed,
                        uncompressed,
                        most,
                    },
                ));
            }
        }
        if let Some(n) = header.num_values {
            if n < 0 {
                return Err((
                    at,
                    Wrong::Value {
                        what: "num_values",
                        value: n,
                    },
                ));
            }
            values = values.saturating_add(n);
        }
        at = data + compressed as usize;
    }
    Ok(values)
}

/// `DataPageHeader`, `IndexPageHeader`, `DictionaryPageHeader`, `DataPageHeaderV2` and
/// `PageHeader` (the crate's `file/metadata/thrift/mod.rs`).
const DATA_PAGE: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::I32),
    (3, Field::I32),
    (4, Field::I32),
    (5, Field::Struct(STATISTICS)),
];
const INDEX_PAGE: &[(i16, Field)] = &[];
const DICTIONARY_PAGE: &[(i16, Field)] = &[(1, Field::I32), (2, Field::I32), (3, Field::Bool)];
const DATA_PAGE_V2: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::I32),
    (3, Field::I32),
    (4, Field::I32),
    (5, Field::I32),
    (6, Field::I32),
    (7, Field::Bool),
    (8, Field::Struct(STATISTICS)),
];
const PAGE_HEADER: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::I32),
    (3, Field::I32),
    (4, Field::I32),
    (5, Field::Struct(DATA_PAGE)),
    (6, Field::Struct(INDEX_PAGE)),
    (7, Field::Struct(DICTIONARY_PAGE)),
    (8, Field::Struct(DATA_PAGE_V2)),
];

/// What the pages' walk needs of a page header.
struct PageFacts {
    kind: Option<i64>,
    uncompressed: Option<i64>,
    compressed: Option<i64>,
    /// A data page's (v1 or v2) `num_values`.
    num_values: Option<i64>,
}

fn page_header(walk: &mut Walk) -> Result<PageFacts, Wrong> {
    let mut facts = PageFacts {
        kind: None,
        uncompressed: None,
        compressed: None,
        num_values: None,
    };
    walk.known_struct(PAGE_HEADER, 0, 0, &mut |depth, parent, id, value| {
        match (depth, parent, id) {
            (0, _, 1) => facts.kind = Some(value),
            (0, _, 2) => facts.uncompressed = Some(value),
            (0, _, 3) => facts.compressed = Some(value),
            // `num_values` of `PageHeader`'s fields 5 and 8: the data page headers, v1 and v2.
            (1, 5 | 8, 1) => facts.num_values = Some(value),
            _ => {}
        }
    })?;
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

    /// A manifest of 300 rows in 2 row groups and pages of 50 rows, as the arrow writer makes it
    /// with data pages v1 or v2, with page statistics, compressed with Snappy or not.
    fn manifest(v2: bool, compression: Compression) -> Vec<u8> {
        use arrow_array::{RecordBatch, StringArray};
        use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
        let urls: Vec<String> = (0..300).map(|i| format!("http://h/{i}.jpg")).collect();
        let captions: Vec<Option<String>> = (0..300)
            .map(|i| (i % 3 != 0).then(|| format!("caption {i}")))
            .collect();
        let batch = RecordBatch::try_from_iter([
            ("url", std::sync::Arc::new(StringArray::from(urls)) as _),
            (
                "caption",
                std::sync::Arc::new(StringArray::from(captions)) as _,
            ),
        ])
        .unwrap();
        let version = if v2 {
            WriterVersion::PARQUET_2_0
        } else {
            WriterVersion::PARQUET_1_0
        };
        let props = WriterProperties::builder()
            .set_writer_version(version)
            .set_max_row_group_size(200)
            .set_data_page_row_count_limit(50)
            .set_write_batch_size(10)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_compression(compression)
            .build();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    fn metadata(bytes: &[u8]) -> ParquetMetaData {
        ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::copy_from_slice(bytes))
            .unwrap()
    }

    #[test]
    fn real_manifests_pass_and_are_read_whole() {
        for (v2, compression) in [false, true]
            .into_iter()
            .flat_map(|v2| [(v2, Compression::UNCOMPRESSED), (v2, Compression::SNAPPY)])
        {
            let bytes = manifest(v2, compression);
            let metadata = metadata(&bytes);
            assert_eq!(metadata.num_row_groups(), 2);
            check_pages(&bytes, &metadata).unwrap();
            let rows =
                crate::plan::manifest::parse("m.parquet", bytes.into(), "url", "caption").unwrap();
            assert_eq!(rows.len(), 300, "v2 {v2} {compression}");
            assert!(rows.iter().all(|row| row.error.is_none()));
            assert_eq!(rows[299].url.as_deref(), Some("http://h/299.jpg"));
        }
    }

    /// `metadata` with its chunk `column` of row group `group` changed by `change`.
    fn with_chunk(
        metadata: &ParquetMetaData,
        group: usize,
        column: usize,
        change: impl Fn(
            parquet::file::metadata::ColumnChunkMetaDataBuilder,
        ) -> parquet::file::metadata::ColumnChunkMetaDataBuilder,
    ) -> ParquetMetaData {
        let mut groups = metadata.row_groups().to_vec();
        let mut columns = groups[group].columns().to_vec();
        columns[column] = change(columns[column].clone().into_builder())
            .build()
            .unwrap();
        groups[group] = groups[group]
            .clone()
            .into_builder()
            .set_column_metadata(columns)
            .build()
            .unwrap();
        metadata
            .clone()
            .into_builder()
            .set_row_groups(groups)
            .build()
    }

    #[test]
    fn chunks_outside_the_data_over_another_or_declaring_too_many_rows_are_refused() {
        let bytes = manifest(false, Compression::UNCOMPRESSED);
        let metadata = metadata(&bytes);
        let first = metadata.row_group(0).column(0).clone();
        let cases = [
            (
                with_chunk(&metadata, 0, 1, |c| {
                    c.set_dictionary_page_offset(None)
                        .set_data_page_offset(bytes.len() as i64)
                }),
                "column chunk 1 (`caption`) of row group 0 is malformed: its ",
            ),
            (
                with_chunk(&metadata, 1, 0, |c| {
                    c.set_dictionary_page_offset(first.dictionary_page_offset())
                        .set_data_page_offset(first.data_page_offset())
                        .set_total_compressed_size(first.compressed_size())
                }),
                "of row group 1 is malformed: it starts at byte 4, inside the chunk before it",
            ),
            (
                with_chunk(&metadata, 0, 0, |c| c.set_total_compressed_size(-1)),
                "its -1 bytes at byte 4 are not within the file's data",
            ),
            (
                with_chunk(&metadata, 0, 1, |c| {
                    c.set_compression(Compression::GZIP(Default::default()))
                }),
                "column chunk 1 (`caption`) of row group 0 is malformed: its compression \
                 GZIP(GzipLevel(6)) is not one this build reads (none or Snappy); rewrite the \
                 manifest with Snappy",
            ),
        ];
        for (changed, expected) in cases {
            let error = check_pages(&bytes, &changed).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        let groups: Vec<_> = metadata
            .row_groups()
            .iter()
            .map(|g| {
                g.clone()
                    .into_builder()
                    .set_num_rows(1 << 40)
                    .build()
                    .unwrap()
            })
            .collect();
        let changed = metadata
            .clone()
            .into_builder()
            .set_row_groups(groups)
            .build();
        let error = check_pages(&bytes, &changed).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "the Parquet row groups declare 2199023255552 rows in {} bytes (at most 8 a byte)",
                bytes.len()
            )
        );
    }

    #[test]
    fn page_headers_the_parquet_crate_would_loop_on_or_misread_are_refused() {
        // A data page: type 0, sizes 4 and 4, a data page header of 2 values; then its 4 bytes.
        let header = [
            0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x2c, 0x15, 0x04, 0x15, 0x00,
        ];
        let page = |extra: &[u8]| {
            let mut bytes = header.to_vec();
            bytes.extend_from_slice(&[0x15, 0x00, 0x15, 0x00, 0x00]); // its encodings, end
            bytes.extend_from_slice(extra); // fields after the data page header
            bytes.push(0x00);
            bytes.extend_from_slice(&[1, 2, 3, 4]);
            bytes
        };
        assert_eq!(pages(&page(&[]), None).unwrap(), 2);
        let two = [page(&[]), page(&[])].concat();
        assert_eq!(pages(&two, None).unwrap(), 4);
        let refused = |bytes: &[u8]| pages(bytes, None).unwrap_err().1.to_string();
        // An unknown field 9 holding a list of 3 booleans, and one of 2^31 (the fixture's kind).
        assert_eq!(
            refused(&page(&[0x49, 0x31, 1, 1, 1])),
            "a list of 3 booleans (the parquet crate would skip them as zero bytes each)"
        );
        assert_eq!(
            refused(&page(&[0x49, 0xf1, 0x80, 0x80, 0x80, 0x80, 0x08])),
            "2147483648 elements declared, 5 bytes remain"
        );
        // The page's bytes past the chunk's end.
        assert_eq!(
            refused(&page(&[])[..page(&[]).len() - 1]),
            "4 bytes declared, 3 remain"
        );
        // A dictionary page whose `is_sorted` (a boolean) is an i32: the crate unwraps `None`.
        let dictionary = [
            0x15, 0x04, 0x15, 0x08, 0x15, 0x08, 0x4c, 0x15, 0x04, 0x15, 0x00, 0x15, 0x02, 0x00,
            0x00, 1, 2, 3, 4,
        ];
        assert_eq!(refused(&dictionary), "field 3 has Thrift type 5, not 1");
        // Statistics whose `max` declares 2^40 bytes: the crate would allocate them.
        let mut statistics = header.to_vec();
        statistics.extend_from_slice(&[0x15, 0x00, 0x15, 0x00, 0x1c, 0x18]);
        statistics.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20]);
        assert_eq!(
            refused(&statistics),
            "1099511627776 elements declared, 0 bytes remain"
        );
        // A Snappy page of 4 bytes declaring 2^31 - 1 uncompressed (the crate would zero 2 GB
        // for it), refused; 86 bytes (4 × 64 / 3, rounded up) are what 4 bytes can hold.
        let sized = |uncompressed: &[u8]| {
            let mut bytes = vec![0x15, 0x00, 0x15];
            bytes.extend_from_slice(uncompressed);
            bytes.extend_from_slice(&page(&[])[4..]);
            bytes
        };
        let big = sized(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
        assert_eq!(pages(&big, None).unwrap(), 2);
        assert_eq!(
            pages(&big, Some(SNAPPY_EXPANSION))
                .unwrap_err()
                .1
                .to_string(),
            "4 compressed bytes declare 2147483647 uncompressed, more than the 86 they can hold"
        );
        assert_eq!(
            pages(&sized(&[0xac, 0x01]), Some(SNAPPY_EXPANSION)).unwrap(),
            2
        );
        // A header without its compressed size, and a negative one.
        assert_eq!(
            refused(&[0x15, 0x00, 0x15, 0x08, 0x00]),
            "its required field compressed_page_size is missing"
        );
        assert_eq!(
            refused(&[0x15, 0x00, 0x15, 0x08, 0x15, 0x01, 0x00]),
            "compressed_page_size is -1"
        );
    }
}
