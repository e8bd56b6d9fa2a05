//! A bounds check of a Parquet file's footer before the `parquet` crate reads it: the footer is
//! Thrift compact protocol, and the crate (57.3) allocates a list as long as its header says
//! before reading its elements, so a 1 KB footer declaring 2^31 elements aborts the process
//! (found by `fuzz/fuzz_targets/manifest_parquet.rs`). This walks the footer's structure without
//! allocating and refuses any list, set, map or string that declares more elements or bytes
//! than remain, and any non-empty list of booleans (the crate skips an unknown list's booleans
//! as zero bytes each, so a few bytes declaring 2^31 of them keep it looping for minutes, and its
//! reading of the bytes after one no longer matches this walk). It does not read the metadata's
//! meaning; the `parquet` crate does that after. `parquet_pages` walks the page headers with
//! the same `Walk`. Written by hand because no crate offers a non-allocating Thrift walk; the protocol is
//! Apache Thrift's compact protocol (thrift/doc/specs/thrift-compact-protocol.md).

/// How deep structs, lists and maps may nest (the Parquet footer nests about 6 deep).
const MAX_DEPTH: usize = 64;

/// A footer that does not hold what it declares: where, and what.
#[derive(Debug, thiserror::Error)]
#[error("the Parquet footer is malformed at byte {at} of {length}: {what}")]
pub struct MalformedFooter {
    at: usize,
    length: u32,
    what: Wrong,
}

/// What is wrong at that byte.
#[derive(Debug, thiserror::Error)]
pub(super) enum Wrong {
    #[error("it ends early")]
    EndsEarly,
    #[error("{declared} bytes declared, {remain} remain")]
    Bytes { declared: usize, remain: usize },
    #[error("a varint longer than 10 bytes")]
    LongVarint,
    #[error("{declared} elements declared, {remain} bytes remain")]
    Elements { declared: u64, remain: usize },
    #[error("nested deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("unknown Thrift type {0}")]
    UnknownType(u8),
    #[error("a list of {0} booleans (the parquet crate would skip them as zero bytes each)")]
    BooleanList(u64),
    #[error("field {id} has Thrift type {declared}, not {expected}")]
    FieldType { id: i16, declared: u8, expected: u8 },
    #[error("field id {0} overflows after field {1}")]
    FieldId(u8, i16),
    #[error("{what} is {value}")]
    Value { what: &'static str, value: i64 },
    #[error("its required field {0} is missing")]
    Missing(&'static str),
    #[error(
        "{compressed} compressed bytes declare {uncompressed} uncompressed, more than the {most} \
         they can hold"
    )]
    Expands {
        compressed: i64,
        uncompressed: i64,
        most: i64,
    },
}

/// Checks the footer of the Parquet file `bytes`: `Err` says what is wrong. A file too short to
/// have a footer is left to the `parquet` crate, which reports it.
pub fn check_footer(bytes: &[u8]) -> Result<(), MalformedFooter> {
    let Some(tail) = bytes.len().checked_sub(8) else {
        return Ok(());
    };
    let length = u32::from_le_bytes([
        bytes[tail],
        bytes[tail + 1],
        bytes[tail + 2],
        bytes[tail + 3],
    ]);
    let Some(start) = tail.checked_sub(length as usize) else {
        return Ok(());
    };
    let mut walk = Walk::new(&bytes[start..tail]);
    walk.structure(0).map_err(|what| MalformedFooter {
        at: walk.at,
        length,
        what,
    })
}

/// A Thrift compact protocol walk over `bytes`, allocating nothing.
pub(super) struct Walk<'a> {
    bytes: &'a [u8],
    /// The next byte to read.
    pub(super) at: usize,
}

impl<'a> Walk<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Walk { bytes, at: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    pub(super) fn byte(&mut self) -> Result<u8, Wrong> {
        let byte = *self.bytes.get(self.at).ok_or(Wrong::EndsEarly)?;
        self.at += 1;
        Ok(byte)
    }

    pub(super) fn skip(&mut self, n: usize) -> Result<(), Wrong> {
        if n > self.remaining() {
            return Err(Wrong::Bytes {
                declared: n,
                remain: self.remaining(),
            });
        }
        self.at += n;
        Ok(())
    }

    pub(super) fn varint(&mut self) -> Result<u64, Wrong> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Wrong::LongVarint)
    }

    /// A count that must fit in what remains (every element takes at least one byte).
    fn count(&mut self, declared: u64) -> Result<usize, Wrong> {
        match usize::try_from(declared) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(Wrong::Elements {
                declared,
                remain: self.remaining(),
            }),
        }
    }

    pub(super) fn structure(&mut self, depth: usize) -> Result<(), Wrong> {
        if depth > MAX_DEPTH {
            return Err(Wrong::TooDeep);
        }
        loop {
            let header = self.byte()?;
            if header == 0 {
                return Ok(());
            }
            if header >> 4 == 0 {
                self.varint()?; // the field id, in full
            }
            match header & 0x0f {
                1 | 2 => {} // a boolean field's value is its type
                kind => self.value(kind, depth)?,
            }
        }
    }

    /// A zig-zag varint, as the parquet crate reads an i16, i32 or i64.
    pub(super) fn zigzag(&mut self) -> Result<i64, Wrong> {
        let value = self.varint()?;
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    pub(super) fn value(&mut self, kind: u8, depth: usize) -> Result<(), Wrong> {
        match kind {
            1..=3 => self.skip(1), // a boolean in a list or map, or a byte
            4..=6 => self.varint().map(|_| ()),
            7 => self.skip(8),
            8 => {
                let length = self.varint()?;
                let length = self.count(length)?;
                self.skip(length)
            }
            9 | 10 => {
                let header = self.byte()?;
                let declared = match header >> 4 {
                    15 => self.varint()?,
                    short => u64::from(short),
                };
                let count = self.count(declared)?;
                if count > 0 && matches!(header & 0x0f, 1 | 2) {
                    return Err(Wrong::BooleanList(declared));
                }
                for _ in 0..count {
                    self.value(header & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            11 => {
                let declared = self.varint()?;
                let count = self.count(declared)?;
                if count == 0 {
                    return Ok(());
                }
                let kinds = self.byte()?;
                for _ in 0..count {
                    self.value(kinds >> 4, depth + 1)?;
                    self.value(kinds & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            12 => self.structure(depth + 1),
            13 => self.skip(16), // a UUID
            other => Err(Wrong::UnknownType(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parquet_file() -> Vec<u8> {
        use arrow_array::{RecordBatch, StringArray};
        let batch = RecordBatch::try_from_iter([(
            "url",
            std::sync::Arc::new(StringArray::from(vec!["a.jpg", "b.jpg"])) as _,
        )])
        .unwrap();
        let mut bytes = Vec::new();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    }

    #[test]
    fn a_real_footer_passes_and_a_list_longer_than_its_bytes_does_not() {
        let file = parquet_file();
        assert!(check_footer(&file).is_ok());
        // FileMetaData's first field is `version` (i32); its second, `schema`, a list of
        // structs: declare 2^31 elements for it in an otherwise real footer's place.
        let mut footer = vec![0x15, 0x02, 0x19, 0xfc, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00];
        let length = footer.len() as u32;
        footer.extend_from_slice(&length.to_le_bytes());
        footer.extend_from_slice(b"PAR1");
        let mut hostile = b"PAR1".to_vec();
        hostile.extend_from_slice(&footer);
        let error = check_footer(&hostile).unwrap_err().to_string();
        assert!(
            error.contains("2147483648 elements declared, 1 bytes remain"),
            "{error}"
        );
    }
}
