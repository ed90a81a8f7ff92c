//! A template's caps (`Limits`) counted on a source's answer as it arrives: one COPY row
//! per CopyData message (text or binary), its first field the row's day (`wh_day`). Rows
//! and bytes are counted per day, a row's bytes on their own; the first row over a cap
//! stops the answer (the bytes before it were never more than the cap). Pure: no SPI.

use std::collections::BTreeMap;

use crate::pure::dates::Day;
use crate::pure::template::Limits;

/// How the rows travel: COPY's text, or its binary format (a 19-byte header before the
/// first row, a 2-byte trailer after the last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Binary,
}

impl CopyFormat {
    /// The COPY option's value.
    pub fn name(self) -> &'static str {
        match self {
            CopyFormat::Text => "text",
            CopyFormat::Binary => "binary",
        }
    }
}

/// Binary when the source's column types are exactly the staging table's and all built
/// in (a type made in a database has its own oid there, and its binary form is that
/// database's business); text otherwise.
pub fn format_for(source: &[pgrx::pg_sys::Oid], stage: &[pgrx::pg_sys::Oid]) -> CopyFormat {
    let built_in = |o: &pgrx::pg_sys::Oid| o.to_u32() < pgrx::pg_sys::FirstNormalObjectId;
    if !source.is_empty() && source == stage && source.iter().all(built_in) {
        CopyFormat::Binary
    } else {
        CopyFormat::Text
    }
}

/// The binary COPY signature, then flags and header-extension length (both 0 from a
/// PostgreSQL source).
const BINARY_HEADER: usize = 19;
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

/// What a row ran into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapHit {
    /// More rows of `day` than `max_rows_per_day`.
    Rows { day: String, max: i64 },
    /// More bytes of `day` than `max_bytes_per_day`.
    Bytes { day: String, max: i64 },
    /// One row of `bytes`, over `max_row_bytes`.
    RowBytes { bytes: i64, max: i64 },
}

impl CapHit {
    /// The cap in words, naming the setting (`_wh.set_template_limits`) that allows more.
    pub fn describe(&self) -> String {
        match self {
            CapHit::Rows { day, max } => {
                format!("day {day}: more than {max} rows (max_rows_per_day)")
            }
            CapHit::Bytes { day, max } => {
                format!("day {day}: more than {max} bytes (max_bytes_per_day)")
            }
            CapHit::RowBytes { bytes, max } => {
                format!("a row of {bytes} bytes, over {max} (max_row_bytes)")
            }
        }
    }
}

/// Rows and bytes so far, per day.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    pub rows: i64,
    pub bytes: i64,
}

/// Counts an answer's rows against `limits`.
#[derive(Debug)]
pub struct CapCounter {
    limits: Limits,
    format: CopyFormat,
    days: BTreeMap<Vec<u8>, DayCount>,
}

impl CapCounter {
    pub fn new(limits: Limits, format: CopyFormat) -> Self {
        CapCounter {
            limits,
            format,
            days: BTreeMap::new(),
        }
    }

    /// The bytes that tell a row's day: text's first field; binary's first field's
    /// value (4 bytes after the field count and length), past the header on the first
    /// message. None for binary's trailer (no row).
    fn day_key<'a>(&self, row: &'a [u8]) -> Option<&'a [u8]> {
        match self.format {
            CopyFormat::Text => Some(row.split(|b| *b == b'\t').next().unwrap_or_default()),
            CopyFormat::Binary => {
                let row = if row.starts_with(BINARY_SIGNATURE) && row.len() >= BINARY_HEADER {
                    &row[BINARY_HEADER..]
                } else {
                    row
                };
                if row.len() < 10 || row[..2] == [0xff, 0xff] {
                    return None;
                }
                Some(&row[6..10])
            }
        }
    }

    /// A day key in words.
    fn day_text(format: CopyFormat, key: &[u8]) -> String {
        match (format, <[u8; 4]>::try_from(key)) {
            (CopyFormat::Binary, Ok(b)) => Day::from_pg_epoch_days(i32::from_be_bytes(b)).iso(),
            _ => String::from_utf8_lossy(key).into_owned(),
        }
    }

    /// Count one COPY row (`wh_day` first); the cap it runs over, if any.
    pub fn take(&mut self, row: &[u8]) -> Result<(), CapHit> {
        let bytes = row.len() as i64;
        if bytes > self.limits.max_row_bytes {
            return Err(CapHit::RowBytes {
                bytes,
                max: self.limits.max_row_bytes,
            });
        }
        let Some(day) = self.day_key(row) else {
            return Ok(());
        };
        let count = match self.days.get_mut(day) {
            Some(c) => c,
            None => self.days.entry(day.to_vec()).or_default(),
        };
        count.rows += 1;
        count.bytes += bytes;
        let format = self.format;
        let day = || CapCounter::day_text(format, day);
        if count.rows > self.limits.max_rows_per_day {
            return Err(CapHit::Rows {
                day: day(),
                max: self.limits.max_rows_per_day,
            });
        }
        if count.bytes > self.limits.max_bytes_per_day {
            return Err(CapHit::Bytes {
                day: day(),
                max: self.limits.max_bytes_per_day,
            });
        }
        Ok(())
    }

    /// Rows and bytes of the whole answer so far.
    pub fn total(&self) -> DayCount {
        self.days
            .values()
            .fold(DayCount::default(), |a, c| DayCount {
                rows: a.rows + c.rows,
                bytes: a.bytes + c.bytes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rows: i64, bytes: i64, row: i64) -> Limits {
        Limits {
            max_rows_per_day: rows,
            max_bytes_per_day: bytes,
            max_row_bytes: row,
            max_shrink_percent: 50,
        }
    }

    impl CapCounter {
        fn new_text(limits: Limits) -> Self {
            CapCounter::new(limits, CopyFormat::Text)
        }
    }

    /// A binary row of `wh_day` (days since 2000-01-01) and one 4-byte value.
    fn binary_row(day: i32, header: bool) -> Vec<u8> {
        let mut r = Vec::new();
        if header {
            r.extend_from_slice(BINARY_SIGNATURE);
            r.extend_from_slice(&[0; 8]);
        }
        r.extend_from_slice(&2i16.to_be_bytes());
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&day.to_be_bytes());
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&7i32.to_be_bytes());
        r
    }

    #[test]
    fn binary_only_for_the_same_built_in_types() {
        use pgrx::pg_sys::Oid;
        let (date, int4, int8, custom) = (
            Oid::from(1082),
            Oid::from(23),
            Oid::from(20),
            Oid::from(16500),
        );
        assert_eq!(format_for(&[date, int4], &[date, int4]), CopyFormat::Binary);
        assert_eq!(format_for(&[date, int8], &[date, int4]), CopyFormat::Text);
        assert_eq!(
            format_for(&[date, custom], &[date, custom]),
            CopyFormat::Text
        );
        assert_eq!(format_for(&[date], &[date, int4]), CopyFormat::Text);
        assert_eq!(format_for(&[], &[]), CopyFormat::Text);
    }

    #[test]
    fn binary_rows_are_counted_by_their_day() {
        let mut c = CapCounter::new(limits(2, 1 << 20, 1 << 20), CopyFormat::Binary);
        let d = Day::parse("2026-01-01").unwrap().pg_epoch_days();
        c.take(&binary_row(d, true)).unwrap();
        c.take(&binary_row(d + 1, false)).unwrap();
        c.take(&binary_row(d, false)).unwrap();
        let hit = c.take(&binary_row(d, false)).unwrap_err();
        assert_eq!(
            hit,
            CapHit::Rows {
                day: "2026-01-01".into(),
                max: 2
            }
        );
        // The trailer is no row.
        c.take(&[0xff, 0xff]).unwrap();
        assert_eq!(c.total().rows, 4);
    }

    #[test]
    fn rows_are_capped_per_day_not_per_answer() {
        let mut c = CapCounter::new_text(limits(2, 1 << 20, 1 << 20));
        for _ in 0..2 {
            c.take(b"2026-01-01\t1\tx\n").unwrap();
            c.take(b"2026-01-02\t1\tx\n").unwrap();
        }
        assert_eq!(c.total().rows, 4);
        let hit = c.take(b"2026-01-02\t3\ty\n").unwrap_err();
        assert_eq!(
            hit,
            CapHit::Rows {
                day: "2026-01-02".into(),
                max: 2
            }
        );
        assert_eq!(
            hit.describe(),
            "day 2026-01-02: more than 2 rows (max_rows_per_day)"
        );
    }

    #[test]
    fn bytes_per_day_and_per_row() {
        let mut c = CapCounter::new_text(limits(100, 40, 30));
        c.take(b"2026-01-01\tabcdefgh\n").unwrap(); // 20 bytes
        c.take(b"2026-01-02\tabcdefgh\n").unwrap();
        let hit = c.take(b"2026-01-01\tabcdefghi\n").unwrap_err();
        assert!(hit.describe().contains("max_bytes_per_day"), "{hit:?}");
        let mut c = CapCounter::new_text(limits(100, 1000, 30));
        let hit = c.take(&[b'x'; 31]).unwrap_err();
        assert_eq!(hit, CapHit::RowBytes { bytes: 31, max: 30 });
        assert!(hit.describe().contains("max_row_bytes"));
        // A row without a tab (a one-column answer) counts under its whole text.
        let mut c = CapCounter::new_text(limits(1, 1000, 1000));
        c.take(b"2026-01-01\n").unwrap();
        assert!(c.take(b"2026-01-01\n").is_err());
    }
}
