//! Reading a `manifest` input's rows: JSON Lines, Parquet, CSV or TSV, each row naming an
//! object by URI (`url_column`), usually with a caption (`caption_column`), as LAION, DataComp
//! and CC12M publish their URL lists. Every other column is carried along for the sample's
//! `.json`. Relative URIs resolve against the manifest's own folder. This only reads the
//! manifest: `source::manifest` fetches the object each row names.

use bytes::Bytes;
use serde_json::{Map, Value};

use super::PlanError;
use crate::contain::contain_panic;
use crate::store::{split_extension, Location};

/// File extensions read as manifests.
pub const EXTENSIONS: &[&str] = &["jsonl", "json", "parquet", "csv", "tsv"];

/// One manifest row, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRow {
    /// 0-based row number in the manifest.
    pub row: u64,
    /// The URI in `url_column`, if the row has a non-empty string there.
    pub url: Option<String>,
    pub caption: Option<String>,
    /// The row's other columns.
    pub columns: Map<String, Value>,
    /// Why this row (or, for a manifest that cannot be read past some point, the rest of the
    /// manifest) could not be read; the row then becomes a dropped sample saying so, and an
    /// input error in the run manifest.
    pub error: Option<String>,
}

impl ManifestRow {
    /// A row that could not be read.
    pub fn unreadable(row: u64, error: String) -> ManifestRow {
        ManifestRow {
            row,
            url: None,
            caption: None,
            columns: Map::new(),
            error: Some(error),
        }
    }
}

/// Parses a manifest's bytes: Parquet when they start with `PAR1`, CSV or TSV by the name's
/// extension (a header row, then one row per line; cells are strings, empty cells null), else
/// JSON Lines. A line that is not a JSON object (a manifest cut short ends in one), or Parquet
/// that cannot be read past some row, becomes a row with `error` set; the rows around it are
/// kept. Fails only when no row has `url_column`, naming the columns that exist.
pub fn parse(
    uri: &str,
    bytes: Bytes,
    url_column: &str,
    caption_column: &str,
) -> Result<Vec<ManifestRow>, PlanError> {
    let err = |message: String| PlanError::Manifest {
        uri: uri.to_string(),
        message,
    };
    let extension = split_extension(uri).1;
    let objects: Vec<Result<Map<String, Value>, String>> = if bytes.starts_with(b"PAR1") {
        // A panic in the Parquet reader (on bytes it does not expect) is this manifest's
        // unreadable row, not the end of the run.
        let (mut rows, error) = contain_panic(|| parquet_rows(bytes)).unwrap_or_else(|panic| {
            (
                Vec::new(),
                Some(format!("the reader panicked: {panic}").into()),
            )
        });
        if let Some(e) = error {
            rows.push(Err(format!(
                "cannot read the Parquet manifest past row {}: {e}",
                rows.len()
            )));
        }
        rows
    } else if extension == "csv" || extension == "tsv" {
        let delimiter = if extension == "csv" { b',' } else { b'\t' };
        contain_panic(|| delimited_rows(&bytes, delimiter))
            .unwrap_or_else(|panic| vec![Err(format!("the CSV reader panicked: {panic}"))])
    } else {
        let mut rows = Vec::new();
        for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            rows.push(match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(map)) => Ok(map),
                Ok(_) => Err(format!("line {}: expected a JSON object", n + 1)),
                Err(e) => Err(format!("line {}: not a JSON object: {e}", n + 1)),
            });
        }
        rows
    };
    let read: Vec<&Map<String, Value>> = objects.iter().filter_map(|o| o.as_ref().ok()).collect();
    if !read.is_empty() && !read.iter().any(|o| o.contains_key(url_column)) {
        let mut columns: Vec<&String> = read.iter().flat_map(|o| o.keys()).collect();
        columns.sort();
        columns.dedup();
        let columns: Vec<&str> = columns.into_iter().map(String::as_str).collect();
        return Err(err(format!(
            "no row has the URL column `{url_column}` (columns: {}); set the input's url_column",
            columns.join(", ")
        )));
    }
    Ok(objects
        .into_iter()
        .enumerate()
        .map(|(row, columns)| {
            let mut columns = match columns {
                Ok(columns) => columns,
                Err(e) => return ManifestRow::unreadable(row as u64, format!("{uri}: {e}")),
            };
            let url = match columns.remove(url_column) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s),
                _ => None,
            };
            let caption = match columns.remove(caption_column) {
                Some(Value::String(s)) => Some(s),
                Some(other) if !other.is_null() => Some(other.to_string()),
                _ => None,
            };
            ManifestRow {
                row: row as u64,
                url,
                caption,
                columns,
                error: None,
            }
        })
        .collect())
}

/// The most bytes of rows (as JSON) a Parquet manifest may decode to, per byte of the file; and
/// at least `MIN_ROW_BYTES` in all. URLs and captions compress a few times at most, but
/// dictionary encoding lets one long value stand for every row: a 4 KB file of 30,000 rows
/// naming one 80 KB string decoded to 2.4 GB
/// (`tests/fixtures/fuzz/manifest_parquet-dictionary-2gb.parquet`).
const MAX_ROW_BYTES_PER_BYTE: usize = 64;
const MIN_ROW_BYTES: usize = 64 << 20;

/// The rows of a Parquet manifest, up to the first error (returned beside them).
#[allow(clippy::type_complexity)]
fn parquet_rows(
    bytes: Bytes,
) -> (
    Vec<Result<Map<String, Value>, String>>,
    Option<Box<dyn std::error::Error>>,
) {
    let mut rows = Vec::new();
    // The parquet crate allocates what its footer declares: a footer that declares more than
    // it holds is refused first (`parquet_footer`), or it could abort the process.
    if let Err(e) = super::parquet_footer::check_footer(&bytes) {
        return (rows, Some(e.into()));
    }
    let builder =
        match parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
        {
            Ok(builder) => builder,
            Err(e) => return (rows, Some(e.into())),
        };
    // It also loops for hours on some page headers, and trusts the column chunks' offsets and
    // the counts of rows and values: those are checked before it reads a page
    // (`parquet_pages`).
    if let Err(e) = super::parquet_pages::check_pages(&bytes, builder.metadata()) {
        return (rows, Some(e.into()));
    }
    let reader = match builder.build() {
        Ok(reader) => reader,
        Err(e) => return (rows, Some(e.into())),
    };
    let most = (bytes.len().saturating_mul(MAX_ROW_BYTES_PER_BYTE)).max(MIN_ROW_BYTES);
    let mut decoded = 0usize;
    for batch in reader {
        let values = batch
            .map_err(Box::<dyn std::error::Error>::from)
            .and_then(|batch| {
                let mut writer = arrow_json::ArrayWriter::new(Vec::new());
                writer.write(&batch)?;
                writer.finish()?;
                let json = writer.into_inner();
                if json.is_empty() {
                    return Ok(Vec::new());
                }
                decoded = decoded.saturating_add(json.len());
                if decoded > most {
                    return Err(format!(
                        "its rows decode to more than {most} bytes, the most a file of {} bytes \
                         may ({MAX_ROW_BYTES_PER_BYTE} a byte, at least {} MiB): a long value its \
                         dictionary repeats, or a manifest to split into smaller files",
                        bytes.len(),
                        MIN_ROW_BYTES >> 20
                    )
                    .into());
                }
                Ok(serde_json::from_slice::<Vec<Map<String, Value>>>(&json)?)
            });
        match values {
            Ok(values) => rows.extend(values.into_iter().map(Ok)),
            Err(e) => return (rows, Some(e)),
        }
    }
    (rows, None)
}

/// The rows of a CSV or TSV file with a header row, quoted as RFC 4180 and pandas quote. A
/// record that cannot be read (a different number of fields than the header, bytes that are not
/// UTF-8) is a row with its error, and the records after it are read; a header that cannot be
/// read is one such row for the whole file.
fn delimited_rows(bytes: &[u8], delimiter: u8) -> Vec<Result<Map<String, Value>, String>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(bytes);
    let header: Vec<String> = match reader.headers() {
        Ok(header) => header.iter().map(str::to_string).collect(),
        Err(e) => return vec![Err(format!("cannot read the header row: {e}"))],
    };
    reader
        .records()
        .map(|record| {
            let record = record.map_err(|e| match e.position() {
                Some(p) => format!("line {}: {e}", p.line()),
                None => e.to_string(),
            })?;
            Ok(header
                .iter()
                .zip(record.iter())
                .map(|(column, cell)| {
                    let value = match cell {
                        "" => Value::Null,
                        text => Value::String(text.to_string()),
                    };
                    (column.clone(), value)
                })
                .collect())
        })
        .collect()
}

/// Whether a row's URI is downloaded over HTTP rather than read from an object store.
pub fn is_http_url(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Resolves a row's URI: absolute URIs and paths as they are, relative ones against the
/// folder holding the manifest.
pub fn resolve_url(manifest: &Location, url: &str) -> String {
    if url.contains("://") || url.starts_with('/') {
        return url.to_string();
    }
    let parent = manifest.uri();
    let folder = parent.rsplit_once('/').map_or("", |(folder, _)| folder);
    format!("{folder}/{url}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_rows_keep_other_columns() {
        let text = "{\"url\": \"a.jpg\", \"caption\": \"a cat\", \"license\": \"cc0\"}\n\n{\"url\": \"\", \"score\": 3}\n";
        let rows = parse("m.jsonl", Bytes::from(text), "url", "caption").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].url.as_deref(), Some("a.jpg"));
        assert_eq!(rows[0].caption.as_deref(), Some("a cat"));
        assert_eq!(rows[0].columns["license"], "cc0");
        assert_eq!(rows[1].url, None);
        assert_eq!(rows[1].row, 1);
    }

    #[test]
    fn csv_and_tsv_rows_read_like_jsonl() {
        let csv = "url,caption,license\nhttp://h/a.jpg,\"a cat, asleep\",cc0\nhttp://h/b.png,,\n";
        let rows = parse("m.csv", Bytes::from(csv), "url", "caption").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].url.as_deref(), Some("http://h/a.jpg"));
        assert_eq!(rows[0].caption.as_deref(), Some("a cat, asleep"));
        assert_eq!(rows[0].columns["license"], "cc0");
        assert_eq!(rows[1].caption, None);
        assert_eq!(rows[1].columns["license"], Value::Null);
        let tsv = "URL\tTEXT\nhttp://h/a.jpg\ta cat\n";
        let rows = parse("m.tsv", Bytes::from(tsv), "URL", "TEXT").unwrap();
        assert_eq!(rows[0].url.as_deref(), Some("http://h/a.jpg"));
        assert_eq!(rows[0].caption.as_deref(), Some("a cat"));
        // A record with too few fields, or bytes that are not UTF-8, is a row with its error
        // (before: the whole manifest failed the run); the records after it are read.
        let bad = b"url,caption\na\nb.jpg,\xff\xfe\nc.jpg,a cat\n";
        let rows = parse("m.csv", Bytes::from_static(bad), "url", "caption").unwrap();
        assert_eq!(rows.len(), 3);
        let error = rows[0].error.as_deref().unwrap();
        assert!(error.starts_with("m.csv: line 2: "), "{error}");
        let error = rows[1].error.as_deref().unwrap();
        assert!(error.starts_with("m.csv: line 3: "), "{error}");
        assert_eq!((rows[1].row, rows[2].row), (1, 2));
        assert_eq!(rows[2].url.as_deref(), Some("c.jpg"));
        assert_eq!(rows[2].error, None);
    }

    #[test]
    fn a_missing_url_column_names_the_columns_there_are() {
        let e = parse(
            "m.jsonl",
            Bytes::from("{\"path\": \"a.jpg\"}\n"),
            "url",
            "caption",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "m.jsonl: no row has the URL column `url` (columns: path); set the input's url_column"
        );
    }

    #[test]
    fn unreadable_lines_become_rows_that_say_why() {
        let text = b"{\"url\": \"a.jpg\"}\n[1]\n\xff\xfe\n{\"url\": \"b.jpg\"}\n{\"url\": \"c.j";
        let rows = parse("m.jsonl", Bytes::from(&text[..]), "url", "caption").unwrap();
        let summary: Vec<(u64, Option<&str>, Option<&str>)> = rows
            .iter()
            .map(|r| (r.row, r.url.as_deref(), r.error.as_deref()))
            .collect();
        assert_eq!(summary[0], (0, Some("a.jpg"), None));
        assert_eq!(
            summary[1],
            (1, None, Some("m.jsonl: line 2: expected a JSON object"))
        );
        assert_eq!(summary[2].0, 2);
        assert!(summary[2]
            .2
            .unwrap()
            .starts_with("m.jsonl: line 3: not a JSON object"));
        assert_eq!(summary[3], (3, Some("b.jpg"), None));
        assert_eq!(summary[4].0, 4);
        assert!(
            summary[4]
                .2
                .unwrap()
                .contains("line 5: not a JSON object: EOF while parsing"),
            "{:?}",
            summary[4]
        );
    }

    #[test]
    fn parquet_cut_short_is_one_row_saying_so() {
        let rows = parse(
            "m.parquet",
            Bytes::from_static(b"PAR1\0\0\0"),
            "url",
            "caption",
        )
        .unwrap();
        assert_eq!(rows.len(), 1);
        let error = rows[0].error.as_deref().unwrap();
        assert!(
            error.starts_with("m.parquet: cannot read the Parquet manifest past row 0: "),
            "{error}"
        );
    }
}
