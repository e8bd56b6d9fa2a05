//! A bounds check of a Parquet file's footer before the `parquet` crate reads it: the footer is
//! Thrift compact protocol, and the crate (57.3) allocates a list as long as its header says
//! before reading its elements, so a 1 KB footer declaring 2^31 elements aborts the process
//! (found by `fuzz/fuzz_targets/manifest_parquet.rs`). This walks the footer without allocating
//! and refuses any list, set, map or string that declares more elements or bytes than remain,
//! and any non-empty list of booleans (the crate skips an unknown list's booleans as zero bytes
//! each, so a few bytes declaring 2^31 of them keep it looping for minutes).
//!
//! The walk follows the crate's own schema (`FOOTER`, from `file/metadata/thrift/mod.rs`,
//! `basic.rs` and `file/metadata/mod.rs` of 57.3.2): the crate reads a field it knows by that
//! schema whatever type its header declares, so a known field declaring another type is refused
//! here (a footer whose `schema`, a list, was declared an i32 had the crate take the varint as
//! a list header and abort on 201 GB: `tests/fixtures/fuzz/manifest_parquet-footer-list-201gb.parquet`),
//! and what this walk accepts, the crate reads the same way. Fields it does not know it skips by
//! their declared types, as this walk does. It does not read the metadata's meaning; the crate
//! does that after. `parquet_pages` walks the page headers with the same `Walk` and `Field`.
//! Written by hand because no crate offers a non-allocating Thrift walk; the protocol is
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
    #[error("the list in field {id} holds elements of Thrift type {declared}, not {expected}")]
    ElementType { id: i16, declared: u8, expected: u8 },
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
    walk.known_struct(FOOTER, 0, 0, &mut |_, _, _, _| {})
        .map_err(|what| MalformedFooter {
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

/// A field as the crate reads it, whatever type its header declares.
#[derive(Clone, Copy)]
pub(super) enum Field {
    I8,
    I16,
    I32,
    I64,
    Double,
    Binary,
    Bool,
    /// A struct or a union (a union is read as a struct of one field: the crate stops at a
    /// second, so walking on is only more lenient than the crate, never less).
    Struct(&'static [(i16, Field)]),
    List(&'static Field),
}

impl Field {
    /// The Thrift compact type a header must declare for it (a boolean: 1, or 2).
    fn kind(self) -> u8 {
        match self {
            Field::Bool => 1,
            Field::I8 => 3,
            Field::I16 => 4,
            Field::I32 => 5,
            Field::I64 => 6,
            Field::Double => 7,
            Field::Binary => 8,
            Field::List(_) => 9,
            Field::Struct(_) => 12,
        }
    }
}

/// Whether a value declared as the Thrift type `declared` has the bytes of one of type
/// `expected`: the same type, a boolean either way, integers (i16, i32 and i64 are all zig-zag
/// varints, which the crate reads alike whatever width a header declares), or a list or a set
/// (encoded alike, and both read by the crate's `read_list_begin`).
fn same_wire_form(declared: u8, expected: u8) -> bool {
    declared == expected
        || (matches!(declared, 1 | 2) && matches!(expected, 1 | 2))
        || (matches!(declared, 4..=6) && matches!(expected, 4..=6))
        || (matches!(declared, 9 | 10) && matches!(expected, 9 | 10))
}

/// Called with each integer a known struct holds: its depth, the id of the field holding its
/// struct (0 at the top), its own id and its value.
pub(super) type Visit<'v> = dyn FnMut(usize, i16, i16, i64) + 'v;

impl Walk<'_> {
    /// A struct of the schema `fields`, read as the crate reads it: a field it knows must declare
    /// the type it reads; one it does not is walked by its declared type. `parent` is the id of
    /// the field holding it, for `visit`.
    pub(super) fn known_struct(
        &mut self,
        fields: &'static [(i16, Field)],
        depth: usize,
        parent: i16,
        visit: &mut Visit,
    ) -> Result<(), Wrong> {
        if depth > MAX_DEPTH {
            return Err(Wrong::TooDeep);
        }
        let mut last = 0i16;
        loop {
            let header = self.byte()?;
            let kind = header & 0x0f;
            if kind == 0 {
                return Ok(());
            }
            let delta = header >> 4;
            let id = if delta != 0 {
                last.checked_add(i16::from(delta))
                    .ok_or(Wrong::FieldId(delta, last))?
            } else {
                self.zigzag()? as i16
            };
            last = id;
            let Some(&(_, field)) = fields.iter().find(|(known, _)| *known == id) else {
                match kind {
                    1 | 2 => {}
                    kind => self.value(kind, depth + 1)?,
                }
                continue;
            };
            let expected = field.kind();
            if !same_wire_form(kind, expected) {
                return Err(Wrong::FieldType {
                    id,
                    declared: kind,
                    expected,
                });
            }
            if !matches!(field, Field::Bool) {
                self.known_value(field, depth, parent, id, visit)?;
            }
        }
    }

    /// The value of the known field `id` (or an element of its list), read as `field`.
    fn known_value(
        &mut self,
        field: Field,
        depth: usize,
        parent: i16,
        id: i16,
        visit: &mut Visit,
    ) -> Result<(), Wrong> {
        match field {
            Field::I8 | Field::Bool => self.skip(1),
            Field::I16 | Field::I32 | Field::I64 => {
                let value = self.zigzag()?;
                let value = match field {
                    Field::I16 => i64::from(value as i16),
                    Field::I32 => i64::from(value as i32),
                    _ => value,
                };
                visit(depth, parent, id, value);
                Ok(())
            }
            Field::Double => self.skip(8),
            Field::Binary => self.value(8, depth + 1),
            Field::Struct(fields) => self.known_struct(fields, depth + 1, id, visit),
            Field::List(element) => {
                // As the crate's `read_list_begin`: a zero byte is an empty list.
                let header = self.byte()?;
                let declared = match header >> 4 {
                    15 => self.varint()?,
                    short => u64::from(short),
                };
                let count = self.count(declared)?;
                if count == 0 {
                    return Ok(());
                }
                let (kind, expected) = (header & 0x0f, element.kind());
                if matches!(kind, 1 | 2) {
                    return Err(Wrong::BooleanList(declared));
                }
                if !same_wire_form(kind, expected) {
                    return Err(Wrong::ElementType {
                        id,
                        declared: kind,
                        expected,
                    });
                }
                for _ in 0..count {
                    self.known_value(*element, depth + 1, parent, id, visit)?;
                }
                Ok(())
            }
        }
    }
}

/// An empty struct (the crate reads one byte, which must be 0) and the unions made of them.
const EMPTY: &[(i16, Field)] = &[];
const TIME_UNIT: &[(i16, Field)] = &[
    (1, Field::Struct(EMPTY)),
    (2, Field::Struct(EMPTY)),
    (3, Field::Struct(EMPTY)),
];
const TIMESTAMP: &[(i16, Field)] = &[(1, Field::Bool), (2, Field::Struct(TIME_UNIT))];
const LOGICAL_TYPE: &[(i16, Field)] = &[
    (1, Field::Struct(EMPTY)),
    (2, Field::Struct(EMPTY)),
    (3, Field::Struct(EMPTY)),
    (4, Field::Struct(EMPTY)),
    (5, Field::Struct(&[(1, Field::I32), (2, Field::I32)])), // DecimalType
    (6, Field::Struct(EMPTY)),
    (7, Field::Struct(TIMESTAMP)), // TimeType is TimestampType
    (8, Field::Struct(TIMESTAMP)),
    (10, Field::Struct(&[(1, Field::I8), (2, Field::Bool)])), // IntType
    (11, Field::Struct(EMPTY)),
    (12, Field::Struct(EMPTY)),
    (13, Field::Struct(EMPTY)),
    (14, Field::Struct(EMPTY)),
    (15, Field::Struct(EMPTY)),
    (16, Field::Struct(&[(1, Field::I8)])),     // VariantType
    (17, Field::Struct(&[(1, Field::Binary)])), // GeometryType
    (18, Field::Struct(&[(1, Field::Binary), (2, Field::I32)])), // GeographyType
];
const SCHEMA_ELEMENT: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::I32),
    (3, Field::I32),
    (4, Field::Binary),
    (5, Field::I32),
    (6, Field::I32),
    (7, Field::I32),
    (8, Field::I32),
    (9, Field::I32),
    (10, Field::Struct(LOGICAL_TYPE)),
];
/// `Statistics` in the footer, `PageStatistics` in a page header: the same fields.
pub(super) const STATISTICS: &[(i16, Field)] = &[
    (1, Field::Binary),
    (2, Field::Binary),
    (3, Field::I64),
    (4, Field::I64),
    (5, Field::Binary),
    (6, Field::Binary),
    (7, Field::Bool),
    (8, Field::Bool),
];
const PAGE_ENCODING_STATS: &[(i16, Field)] = &[(1, Field::I32), (2, Field::I32), (3, Field::I32)];
const SIZE_STATISTICS: &[(i16, Field)] = &[
    (1, Field::I64),
    (2, Field::List(&Field::I64)),
    (3, Field::List(&Field::I64)),
];
const BOUNDING_BOX: &[(i16, Field)] = &[
    (1, Field::Double),
    (2, Field::Double),
    (3, Field::Double),
    (4, Field::Double),
    (5, Field::Double),
    (6, Field::Double),
    (7, Field::Double),
    (8, Field::Double),
];
const GEOSPATIAL_STATISTICS: &[(i16, Field)] = &[
    (1, Field::Struct(BOUNDING_BOX)),
    (2, Field::List(&Field::I32)),
];
/// `ColumnMetaData` as `read_column_metadata` reads it: `path_in_schema` (3) and
/// `key_value_metadata` (8) it skips.
const COLUMN_META_DATA: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::List(&Field::I32)),
    (4, Field::I32),
    (5, Field::I64),
    (6, Field::I64),
    (7, Field::I64),
    (9, Field::I64),
    (10, Field::I64),
    (11, Field::I64),
    (12, Field::Struct(STATISTICS)),
    (13, Field::List(&Field::Struct(PAGE_ENCODING_STATS))),
    (14, Field::I64),
    (15, Field::I32),
    (16, Field::Struct(SIZE_STATISTICS)),
    (17, Field::Struct(GEOSPATIAL_STATISTICS)),
];
/// `ColumnChunk` as `read_column_chunk` reads it without the crate's `encryption` feature
/// (this build's): fields 8 and 9 it skips.
const COLUMN_CHUNK: &[(i16, Field)] = &[
    (1, Field::Binary),
    (2, Field::I64),
    (3, Field::Struct(COLUMN_META_DATA)),
    (4, Field::I64),
    (5, Field::I32),
    (6, Field::I64),
    (7, Field::I32),
];
const SORTING_COLUMN: &[(i16, Field)] = &[(1, Field::I32), (2, Field::Bool), (3, Field::Bool)];
/// `RowGroup` as `read_row_group` reads it: `total_compressed_size` (6) it skips.
const ROW_GROUP: &[(i16, Field)] = &[
    (1, Field::List(&Field::Struct(COLUMN_CHUNK))),
    (2, Field::I64),
    (3, Field::I64),
    (4, Field::List(&Field::Struct(SORTING_COLUMN))),
    (5, Field::I64),
    (7, Field::I16),
];
/// `FileMetaData` as `parquet_metadata_from_bytes` reads it without the `encryption` feature:
/// fields 8 and 9 it skips.
const FOOTER: &[(i16, Field)] = &[
    (1, Field::I32),
    (2, Field::List(&Field::Struct(SCHEMA_ELEMENT))),
    (3, Field::I64),
    (4, Field::List(&Field::Struct(ROW_GROUP))),
    (
        5,
        Field::List(&Field::Struct(&[(1, Field::Binary), (2, Field::Binary)])),
    ), // KeyValue
    (6, Field::Binary),
    (7, Field::List(&Field::Struct(&[(1, Field::Struct(EMPTY))]))), // ColumnOrder
];

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
    fn footers_of_many_types_pass_and_are_read_whole() {
        // pyarrow 26: logical types (timestamps, times, date, decimal, int8, uint16, float16,
        // UUID-sized fixed binary), nested lists, structs and maps, a dictionary column, key-value
        // metadata, sorting columns, page indexes, 2 row groups, Snappy.
        let bytes = include_bytes!("../../tests/fixtures/parquet/pyarrow-many-types.parquet");
        check_footer(bytes).unwrap();
        let rows = crate::plan::manifest::parse(
            "t.parquet",
            bytes::Bytes::from_static(bytes),
            "url",
            "caption",
        )
        .unwrap();
        assert_eq!(rows.len(), 6);
        assert!(
            rows.iter().all(|row| row.error.is_none()),
            "{:?}",
            rows[0].error
        );
        assert_eq!(rows[5].url.as_deref(), Some("http://h/5.jpg"));
        assert_eq!(rows[5].columns["dec"], 5.25);
        // A named zone needs arrow's `chrono-tz` feature: without it the manifest failed whole.
        assert_eq!(rows[5].columns["ts_ns_tz"], "2026-01-01T00:00:05Z");
    }

    #[test]
    fn known_fields_of_another_type_are_refused() {
        // A footer of the fields' headers only: `version` (1) as a list of 2 i32s; `schema` (2)
        // as a list of i32s instead of structs; `num_rows` (3) as a string.
        let cases: [(&[u8], &str); 3] = [
            (
                &[0x19, 0x25, 0x02, 0x04, 0x00],
                "field 1 has Thrift type 9, not 5",
            ),
            (
                &[0x15, 0x02, 0x19, 0x25, 0x02, 0x04, 0x00],
                "the list in field 2 holds elements of Thrift type 5, not 12",
            ),
            (
                &[0x15, 0x02, 0x19, 0x00, 0x18, 0x01, 0x41, 0x00],
                "field 3 has Thrift type 8, not 6",
            ),
        ];
        for (footer, expected) in cases {
            let mut file = b"PAR1".to_vec();
            file.extend_from_slice(footer);
            file.extend_from_slice(&(footer.len() as u32).to_le_bytes());
            file.extend_from_slice(b"PAR1");
            let error = check_footer(&file).unwrap_err().to_string();
            assert!(error.ends_with(expected), "{error}");
        }
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
