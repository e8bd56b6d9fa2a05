//! NumPy .npy matrices as an [`EmbeddingSource`]: one file or a folder of them (read in name
//! order, rows numbered across files), float32 or float16, little-endian, C order, N × D, as
//! LAION publishes its CLIP embeddings. Scanned front to back in blocks, never whole; a gather
//! maps one window of the file at a time (memmap2) and converts only the rows it wants, so
//! resident memory stays at one window whatever the file's size.
//!
//! The header is parsed here rather than through a crate: candle's and the npy crates' readers
//! load the whole array, and a streaming reader needs only the dtype, order and shape.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use memmap2::MmapOptions;

use super::source::{ChunkVisit, EmbeddingSource, Rechunker, RowVisit};
use super::PairsError;

/// The element type of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NpyElement {
    F32,
    F16,
}

impl NpyElement {
    fn bytes(self) -> usize {
        match self {
            NpyElement::F32 => 4,
            NpyElement::F16 => 2,
        }
    }

    /// Converts little-endian stored values to f32 (`out.len()` of them).
    fn decode(self, bytes: &[u8], out: &mut [f32]) {
        match self {
            NpyElement::F32 => {
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            NpyElement::F16 => {
                for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *v = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
        }
    }
}

/// Bytes of a file mapped at once by a gather: the pages it touches count as the process's
/// resident memory until the window is unmapped.
const GATHER_WINDOW_BYTES: u64 = 64 << 20;

/// One .npy file's layout.
#[derive(Debug, Clone)]
pub struct NpyFile {
    pub path: PathBuf,
    pub element: NpyElement,
    pub rows: u64,
    pub dim: usize,
    /// Where the data starts.
    pub data_offset: u64,
}

impl NpyFile {
    pub fn open(path: &Path) -> Result<NpyFile, PairsError> {
        let shown = path.display().to_string();
        let io = |source| PairsError::Io {
            path: shown.clone(),
            source,
        };
        let bad = |message: String| PairsError::Format {
            path: shown.clone(),
            message,
        };
        let mut file = File::open(path).map_err(io)?;
        let mut preamble = [0u8; 10];
        match file.read_exact(&mut preamble) {
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(bad("not a .npy file (shorter than a .npy preamble)".into()))
            }
            other => other.map_err(io)?,
        }
        if &preamble[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
        }
        let (header_len, header_start) = match preamble[6] {
            1 => (
                u64::from(u16::from_le_bytes([preamble[8], preamble[9]])),
                10u64,
            ),
            2 | 3 => {
                let mut more = [0u8; 2];
                file.read_exact(&mut more).map_err(io)?;
                let len = u32::from_le_bytes([preamble[8], preamble[9], more[0], more[1]]);
                (u64::from(len), 12u64)
            }
            v => {
                return Err(bad(format!(
                    ".npy format version {v} (1, 2 and 3 are read)"
                )))
            }
        };
        if header_len > 1 << 20 {
            return Err(bad(format!("header of {header_len} bytes")));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(io)?;
        let header = String::from_utf8_lossy(&header);
        let descr =
            quoted_value(&header, "descr").ok_or_else(|| bad("no 'descr' in the header".into()))?;
        let element = match descr.as_str() {
            "<f4" => NpyElement::F32,
            "<f2" => NpyElement::F16,
            other => {
                return Err(bad(format!(
                    "dtype {other}: embeddings must be float32 ('<f4') or float16 ('<f2')"
                )))
            }
        };
        if header.contains("'fortran_order': True") {
            return Err(bad(
                "Fortran order: save the array in C order (np.ascontiguousarray)".into(),
            ));
        }
        let shape =
            shape(&header).ok_or_else(|| bad("no readable 'shape' in the header".into()))?;
        let [rows, dim] = shape[..] else {
            return Err(bad(format!(
                "shape {shape:?}: embeddings must be a 2-d array (rows, dim)"
            )));
        };
        let data_offset = header_start + header_len;
        let expected = data_offset + rows * dim * element.bytes() as u64;
        let actual = file.metadata().map_err(io)?.len();
        if actual < expected {
            return Err(bad(format!(
                "{actual} bytes, but a {rows} × {dim} array needs {expected}: the file is cut short"
            )));
        }
        Ok(NpyFile {
            path: path.to_path_buf(),
            element,
            rows,
            dim: dim as usize,
            data_offset,
        })
    }

    /// Reads the rows front to back, in blocks, converted to f32, into `chunker`.
    fn read_into(&self, chunker: &mut Rechunker, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        let io = |source| PairsError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let file = File::open(&self.path).map_err(io)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        std::io::copy(
            &mut (&mut reader).take(self.data_offset),
            &mut std::io::sink(),
        )
        .map_err(io)?;
        let row_bytes = self.dim * self.element.bytes();
        let block_rows = (4 << 20) / row_bytes.max(1) + 1;
        let mut bytes = vec![0u8; block_rows * row_bytes];
        let mut values = vec![0f32; block_rows * self.dim];
        let mut left = self.rows;
        while left > 0 {
            let n = (left as usize).min(block_rows);
            reader.read_exact(&mut bytes[..n * row_bytes]).map_err(io)?;
            let out = &mut values[..n * self.dim];
            self.element.decode(&bytes[..n * row_bytes], out);
            chunker.push(out, visit)?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Visits the rows `rows` (ascending, numbered from `base_row` for this file's first row)
    /// as `visit(first_index + i, values)`, mapping one window of the file at a time.
    fn gather(
        &self,
        rows: &[u32],
        base_row: u64,
        first_index: usize,
        window_bytes: u64,
        visit: RowVisit<'_>,
    ) -> Result<(), PairsError> {
        let io = |source| PairsError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let file = File::open(&self.path).map_err(io)?;
        let row_bytes = (self.dim * self.element.bytes()) as u64;
        let window_rows = (window_bytes / row_bytes.max(1)).max(1);
        let mut values = vec![0f32; self.dim];
        let local = |k: usize| u64::from(rows[k]) - base_row;
        let mut i = 0;
        while i < rows.len() {
            let first = local(i);
            let j =
                i + rows[i..].partition_point(|&r| u64::from(r) - base_row < first + window_rows);
            let len = (local(j - 1) - first + 1) * row_bytes;
            // SAFETY: a read-only map of a range `open` checked lies inside the file. Like every
            // reader of a memory-mapped file, this assumes the file is not cut short by another
            // process while the search runs (the pages would then read as SIGBUS).
            let map = unsafe {
                MmapOptions::new()
                    .offset(self.data_offset + first * row_bytes)
                    .len(len as usize)
                    .map(&file)
            }
            .map_err(io)?;
            for k in i..j {
                let at = ((local(k) - first) * row_bytes) as usize;
                self.element
                    .decode(&map[at..at + row_bytes as usize], &mut values);
                visit(first_index + k, &values)?;
            }
            i = j;
        }
        Ok(())
    }
}

/// The value of `'key': '...'` in a .npy header dict.
fn quoted_value(header: &str, key: &str) -> Option<String> {
    let at = header.find(&format!("'{key}'"))?;
    let rest = &header[at + key.len() + 2..];
    let rest = &rest[rest.find(':')? + 1..];
    let open = rest.find('\'')?;
    let rest = &rest[open + 1..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// The numbers of `'shape': (a, b)`.
fn shape(header: &str) -> Option<Vec<u64>> {
    let at = header.find("'shape'")?;
    let rest = &header[at..];
    let open = rest.find('(')?;
    let close = rest.find(')')?;
    rest[open + 1..close]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// A `rows × dim` float32 matrix (row-major) as the bytes of a .npy file (format 1.0,
/// little-endian, C order, header padded to 64 bytes), as NumPy writes it: how the decide
/// phase leaves the run's embeddings for its partition tasks.
pub fn encode_f32(values: &[f32], dim: usize) -> Vec<u8> {
    let rows = values.len().checked_div(dim).unwrap_or(0);
    let mut bytes = npy_header(rows, dim);
    bytes.reserve(rows * dim * 4);
    for v in &values[..rows * dim] {
        bytes.extend(v.to_le_bytes());
    }
    bytes
}

/// The bytes before the values of [`encode_f32`]'s file: magic, version and header.
pub fn npy_header(rows: usize, dim: usize) -> Vec<u8> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes
}

/// The `rows × dim` float32 values of a .npy that [`encode_f32`] wrote, or `None` when the
/// bytes are not such a matrix (another format version, type or shape, or cut short).
pub fn decode_f32(bytes: &[u8], dim: usize, rows: usize) -> Option<Vec<f32>> {
    if bytes.get(..8)? != b"\x93NUMPY\x01\x00" {
        return None;
    }
    let header_len = usize::from(u16::from_le_bytes([*bytes.get(8)?, *bytes.get(9)?]));
    let header = std::str::from_utf8(bytes.get(10..10 + header_len)?).ok()?;
    let described =
        quoted_value(header, "descr")? == "<f4" && shape(header)? == [rows as u64, dim as u64];
    let data = &bytes[10 + header_len..];
    (described && data.len() == rows * dim * 4).then(|| {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    })
}

/// One .npy file or a folder of them, read as one matrix.
#[derive(Debug, Clone)]
pub struct NpyFiles {
    pub files: Vec<NpyFile>,
    /// Bytes mapped at once by a gather.
    window_bytes: u64,
}

impl NpyFiles {
    /// `path` is a .npy file or a folder whose `*.npy` files are read in name order.
    pub fn open(path: &Path) -> Result<NpyFiles, PairsError> {
        let paths = if path.is_dir() {
            list_files(path, "npy")?
        } else {
            vec![path.to_path_buf()]
        };
        let files = paths
            .iter()
            .map(|p| NpyFile::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(first) = files.first() {
            if let Some(other) = files.iter().find(|f| f.dim != first.dim) {
                return Err(PairsError::Format {
                    path: other.path.display().to_string(),
                    message: format!(
                        "{} columns, but {} has {}: all files must have the same width",
                        other.dim,
                        first.path.display(),
                        first.dim
                    ),
                });
            }
        }
        Ok(NpyFiles {
            files,
            window_bytes: GATHER_WINDOW_BYTES,
        })
    }

    /// Maps at most `bytes` at once when gathering (at least one row); for tests.
    #[cfg(test)]
    pub(crate) fn with_window_bytes(mut self, bytes: u64) -> NpyFiles {
        self.window_bytes = bytes;
        self
    }
}

/// The files named `*.{extension}` in `folder`, in name order.
pub(crate) fn list_files(folder: &Path, extension: &str) -> Result<Vec<PathBuf>, PairsError> {
    let io = |source| PairsError::Io {
        path: folder.display().to_string(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == extension))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(PairsError::Format {
            path: folder.display().to_string(),
            message: format!("no .{extension} files in this folder"),
        });
    }
    Ok(paths)
}

impl EmbeddingSource for NpyFiles {
    fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    fn dim(&self) -> usize {
        self.files.first().map_or(0, |f| f.dim)
    }

    fn scan(&self, visit: ChunkVisit<'_>) -> Result<(), PairsError> {
        let mut chunker = Rechunker::new(self.dim());
        for file in &self.files {
            file.read_into(&mut chunker, visit)?;
        }
        chunker.finish(visit)
    }

    fn gather(&self, rows: &[u32], visit: RowVisit<'_>) -> Result<(), PairsError> {
        let (mut start, mut file_first) = (0usize, 0u64);
        for file in &self.files {
            let file_end = file_first + file.rows;
            let end = start + rows[start..].partition_point(|&r| u64::from(r) < file_end);
            if end > start {
                file.gather(
                    &rows[start..end],
                    file_first,
                    start,
                    self.window_bytes,
                    visit,
                )?;
            }
            (start, file_first) = (end, file_end);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A .npy file as NumPy writes it (format 1.0, header padded to 64 bytes).
    pub(crate) fn write_npy(path: &Path, descr: &str, rows: usize, dim: usize, data: &[u8]) {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        std::fs::write(path, bytes).unwrap();
    }

    fn collect(source: &dyn EmbeddingSource) -> Vec<f32> {
        let mut all = Vec::new();
        source
            .scan(&mut |first, values| {
                assert_eq!(first as usize, all.len() / source.dim());
                all.extend_from_slice(values);
                Ok(())
            })
            .unwrap();
        all
    }

    #[test]
    fn reads_f32_and_f16_files_and_folders_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<f32> = (0..6).map(|i| i as f32 * 0.5).collect();
        let a_bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&dir.path().join("b.npy"), "<f4", 2, 3, &a_bytes);
        let h: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_bits().to_le_bytes())
            .collect();
        write_npy(&dir.path().join("a.npy"), "<f2", 1, 3, &h);
        let single = NpyFiles::open(&dir.path().join("b.npy")).unwrap();
        assert_eq!((single.rows(), single.dim()), (2, 3));
        assert_eq!(collect(&single), a);
        let folder = NpyFiles::open(dir.path()).unwrap();
        assert_eq!(folder.rows(), 3);
        let all = collect(&folder);
        assert_eq!(&all[..3], &[1.5, -2.0, 0.25]);
        assert_eq!(&all[3..], &a[..]);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        write_npy(&p, "<f8", 1, 2, &[0; 16]);
        let e = NpyFiles::open(&p).unwrap_err().to_string();
        assert!(e.contains("dtype <f8"), "{e}");
        write_npy(&p, "<f4", 4, 2, &[0; 16]);
        let e = NpyFiles::open(&p).unwrap_err().to_string();
        assert!(e.contains("cut short"), "{e}");
        std::fs::write(&p, b"hello world, not numpy").unwrap();
        let e = NpyFiles::open(&p).unwrap_err().to_string();
        assert!(e.contains("not a .npy"), "{e}");
        std::fs::write(&p, b"short").unwrap();
        let e = NpyFiles::open(&p).unwrap_err().to_string();
        assert!(e.contains("not a .npy"), "{e}");
        let e = NpyFiles::open(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.npy"), "{e}");
    }

    #[test]
    fn encoded_matrices_are_what_numpy_writes_and_read_back() {
        let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.25 - 1.0).collect();
        let bytes = encode_f32(&values, 5);
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        write_npy(&dir.path().join("ref.npy"), "<f4", 3, 5, &data);
        assert_eq!(bytes, std::fs::read(dir.path().join("ref.npy")).unwrap());
        std::fs::write(dir.path().join("m.npy"), &bytes).unwrap();
        let files = NpyFiles::open(&dir.path().join("m.npy")).unwrap();
        assert_eq!((files.rows(), files.dim()), (3, 5));
        assert_eq!(collect(&files), values);
        assert_eq!(decode_f32(&bytes, 5, 3), Some(values.clone()));
        assert_eq!(decode_f32(&bytes, 3, 5), None, "another shape");
        assert_eq!(
            decode_f32(&bytes[..bytes.len() - 4], 5, 3),
            None,
            "cut short"
        );
        // No rows: a valid empty matrix.
        std::fs::write(dir.path().join("e.npy"), encode_f32(&[], 5)).unwrap();
        assert_eq!(NpyFiles::open(&dir.path().join("e.npy")).unwrap().rows(), 0);
    }
}
