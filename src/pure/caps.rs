//! A source's COPY answer checked and counted as it arrives, message by message: each
//! CopyData message must be exactly one row of the shape asked for (text: one line with
//! the staging table's number of fields; binary: the field count and lengths walked to the
//! message's end, the header before the first row, the trailer last) whose first field is
//! one of the days asked for. Rows and bytes are counted per day against the template's
//! caps (`Limits`), a row's bytes on their own; the first row over a cap, or not of that
//! shape, stops the answer. A source therefore cannot hide rows from the caps by how it
//! splits or tags them. Pure: no SPI.

use std::collections::BTreeMap;

use pgrx::pg_sys::Oid;

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

/// Built-in types whose binary form is not a value the warehouse can take as is: the
/// reg* types (a source's oids, where text would name objects) and aclitem (no binary
/// form), with their arrays.
const NOT_BINARY: &[u32] = &[
    24, 1008, 2202, 2207, 2203, 2208, 2204, 2209, 2205, 2210, 2206, 2211, 4096, 4097, 4089, 4090,
    3734, 3735, 3769, 3770, 4191, 4192, 1033, 1034,
];

/// Binary when the source's column types are exactly the staging table's and all base
/// types of PostgreSQL's own catalog (oids under 10000: fixed across installations; a
/// type made in a database, or by initdb's later steps, has its own oid there); text
/// otherwise, each value read by the declared type's input.
pub fn format_for(source: &[Oid], stage: &[Oid]) -> CopyFormat {
    let fixed = |o: &Oid| o.to_u32() < 10_000 && !NOT_BINARY.contains(&o.to_u32());
    if !source.is_empty() && source == stage && source.iter().all(fixed) {
        CopyFormat::Binary
    } else {
        CopyFormat::Text
    }
}

/// The binary COPY signature, then flags and the header extension's length.
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

/// Why a message stopped the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowFault {
    Cap(CapHit),
    /// Not a row of the shape asked for (what is wrong, in words).
    Malformed(&'static str),
}

/// Rows and bytes so far, per day.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    pub rows: i64,
    pub bytes: i64,
}

/// Checks and counts an answer's rows.
#[derive(Debug)]
pub struct CapCounter {
    limits: Limits,
    format: CopyFormat,
    /// Fields per row: `wh_day` and the template's columns.
    fields: usize,
    /// The days asked for, by the bytes their first field carries.
    days: BTreeMap<Vec<u8>, (Day, DayCount)>,
    header_seen: bool,
    ended: bool,
}

impl CapCounter {
    pub fn new(limits: Limits, format: CopyFormat, fields: usize, days: &[Day]) -> Self {
        let key = |d: &Day| match format {
            CopyFormat::Text => d.iso().into_bytes(),
            CopyFormat::Binary => d.pg_epoch_days().to_be_bytes().to_vec(),
        };
        CapCounter {
            limits,
            format,
            fields,
            days: days
                .iter()
                .map(|d| (key(d), (*d, DayCount::default())))
                .collect(),
            header_seen: false,
            ended: false,
        }
    }

    /// Check and count one CopyData message; what it runs into, if anything.
    pub fn take(&mut self, message: &[u8]) -> Result<(), RowFault> {
        let bytes = message.len() as i64;
        if bytes > self.limits.max_row_bytes {
            return Err(RowFault::Cap(CapHit::RowBytes {
                bytes,
                max: self.limits.max_row_bytes,
            }));
        }
        if self.ended {
            return Err(RowFault::Malformed("data after the end of the rows"));
        }
        let day = match self.format {
            CopyFormat::Text => text_day(message, self.fields)?,
            CopyFormat::Binary => {
                let row = self.past_header(message)?;
                if row == [0xff, 0xff] {
                    self.ended = true;
                    return Ok(());
                }
                binary_day(row, self.fields)?
            }
        };
        let Some((d, count)) = self.days.get_mut(day) else {
            return Err(RowFault::Malformed("a row of a day that was not asked for"));
        };
        count.rows += 1;
        count.bytes += bytes;
        if count.rows > self.limits.max_rows_per_day {
            return Err(RowFault::Cap(CapHit::Rows {
                day: d.iso(),
                max: self.limits.max_rows_per_day,
            }));
        }
        if count.bytes > self.limits.max_bytes_per_day {
            return Err(RowFault::Cap(CapHit::Bytes {
                day: d.iso(),
                max: self.limits.max_bytes_per_day,
            }));
        }
        Ok(())
    }

    /// The first binary message starts with the header: skip it (once).
    fn past_header<'a>(&mut self, message: &'a [u8]) -> Result<&'a [u8], RowFault> {
        if self.header_seen {
            return Ok(message);
        }
        self.header_seen = true;
        let fixed = BINARY_SIGNATURE.len() + 8;
        if message.len() < fixed || !message.starts_with(BINARY_SIGNATURE) {
            return Err(RowFault::Malformed("no binary COPY header"));
        }
        let ext = u32::from_be_bytes(message[fixed - 4..fixed].try_into().unwrap_or([0xff; 4]));
        let start = fixed.saturating_add(ext as usize);
        message
            .get(start..)
            .ok_or(RowFault::Malformed("a binary COPY header cut short"))
    }

    /// Rows and bytes of the whole answer so far.
    pub fn total(&self) -> DayCount {
        self.days
            .values()
            .fold(DayCount::default(), |a, (_, c)| DayCount {
                rows: a.rows + c.rows,
                bytes: a.bytes + c.bytes,
            })
    }
}

/// A text row: one line (its newline last, none before: COPY escapes those in values)
/// of exactly `fields` tab-separated fields; its first field.
fn text_day(row: &[u8], fields: usize) -> Result<&[u8], RowFault> {
    let (mut tabs, mut newlines) = (0usize, 0usize);
    for b in row {
        match b {
            b'\t' => tabs += 1,
            b'\n' => newlines += 1,
            _ => {}
        }
    }
    if newlines != 1 || row.last() != Some(&b'\n') || tabs + 1 != fields {
        return Err(RowFault::Malformed("a message that is not one text row"));
    }
    Ok(row.split(|b| *b == b'\t').next().unwrap_or_default())
}

/// A binary row: the field count, then each field's length and bytes, to the message's
/// end exactly; its first field (a 4-byte date).
fn binary_day(row: &[u8], fields: usize) -> Result<&[u8], RowFault> {
    let bad = RowFault::Malformed("a message that is not one binary row");
    let count = row.get(..2).ok_or(bad.clone())?;
    if i16::from_be_bytes([count[0], count[1]]) as usize != fields || fields == 0 {
        return Err(bad);
    }
    let mut at = 2usize;
    let mut first: Option<&[u8]> = None;
    for _ in 0..fields {
        let len = row.get(at..at + 4).ok_or(bad.clone())?;
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        at += 4;
        if len == -1 {
            first.get_or_insert(&[]);
            continue;
        }
        let len = usize::try_from(len).map_err(|_| bad.clone())?;
        let value = row.get(at..at.saturating_add(len)).ok_or(bad.clone())?;
        first.get_or_insert(value);
        at += len;
    }
    if at != row.len() {
        return Err(bad);
    }
    first.ok_or(bad)
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

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    fn text(l: Limits) -> CapCounter {
        CapCounter::new(
            l,
            CopyFormat::Text,
            3,
            &[day("2026-01-01"), day("2026-01-02")],
        )
    }

    /// A binary row of `wh_day` (days since 2000-01-01) and one 4-byte value.
    fn binary_row(d: i32, header: bool) -> Vec<u8> {
        let mut r = Vec::new();
        if header {
            r.extend_from_slice(BINARY_SIGNATURE);
            r.extend_from_slice(&[0; 8]);
        }
        r.extend_from_slice(&2i16.to_be_bytes());
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&d.to_be_bytes());
        r.extend_from_slice(&4i32.to_be_bytes());
        r.extend_from_slice(&7i32.to_be_bytes());
        r
    }

    #[test]
    fn binary_only_for_the_same_catalog_types() {
        let (date, int4, int8, custom, late, regclass) = (
            Oid::from(1082),
            Oid::from(23),
            Oid::from(20),
            Oid::from(16500),
            Oid::from(12000),
            Oid::from(2205),
        );
        assert_eq!(format_for(&[date, int4], &[date, int4]), CopyFormat::Binary);
        assert_eq!(format_for(&[date, int8], &[date, int4]), CopyFormat::Text);
        for other in [custom, late, regclass] {
            assert_eq!(format_for(&[date, other], &[date, other]), CopyFormat::Text);
        }
        assert_eq!(format_for(&[date], &[date, int4]), CopyFormat::Text);
        assert_eq!(format_for(&[], &[]), CopyFormat::Text);
    }

    #[test]
    fn binary_rows_are_walked_and_counted_by_their_day() {
        let d = day("2026-01-01");
        let mut c = CapCounter::new(
            limits(2, 1 << 20, 1 << 20),
            CopyFormat::Binary,
            2,
            &[d, d.succ()],
        );
        let n = d.pg_epoch_days();
        c.take(&binary_row(n, true)).unwrap();
        c.take(&binary_row(n + 1, false)).unwrap();
        c.take(&binary_row(n, false)).unwrap();
        let hit = c.take(&binary_row(n, false)).unwrap_err();
        assert_eq!(
            hit,
            RowFault::Cap(CapHit::Rows {
                day: "2026-01-01".into(),
                max: 2
            })
        );
        assert_eq!(c.total().rows, 4);
        // Two rows in one message, a row cut short, a day not asked for, no header.
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        let two = [binary_row(n, true), binary_row(n, false)].concat();
        assert!(matches!(c.take(&two), Err(RowFault::Malformed(_))));
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        let row = binary_row(n, true);
        assert!(matches!(
            c.take(&row[..row.len() - 1]),
            Err(RowFault::Malformed(_))
        ));
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        assert!(matches!(
            c.take(&binary_row(n + 5, true)),
            Err(RowFault::Malformed(_))
        ));
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        assert!(matches!(
            c.take(&binary_row(n, false)),
            Err(RowFault::Malformed(_))
        ));
        // The trailer ends the rows; nothing may follow it.
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        c.take(&binary_row(n, true)).unwrap();
        c.take(&[0xff, 0xff]).unwrap();
        assert!(c.take(&binary_row(n, false)).is_err());
        // No rows: the header and the trailer in one message.
        let mut c = CapCounter::new(limits(9, 1 << 20, 1 << 20), CopyFormat::Binary, 2, &[d]);
        let empty = [BINARY_SIGNATURE, &[0; 8], &[0xff, 0xff]].concat();
        c.take(&empty).unwrap();
        assert_eq!(c.total().rows, 0);
    }

    #[test]
    fn rows_are_capped_per_day_not_per_answer() {
        let mut c = text(limits(2, 1 << 20, 1 << 20));
        for _ in 0..2 {
            c.take(b"2026-01-01\t1\tx\n").unwrap();
            c.take(b"2026-01-02\t1\tx\n").unwrap();
        }
        assert_eq!(c.total().rows, 4);
        let hit = c.take(b"2026-01-02\t3\ty\n").unwrap_err();
        let RowFault::Cap(hit) = hit else {
            panic!("{hit:?}")
        };
        assert_eq!(
            hit.describe(),
            "day 2026-01-02: more than 2 rows (max_rows_per_day)"
        );
    }

    #[test]
    fn text_rows_must_be_one_row_of_a_day_asked_for() {
        let mut c = text(limits(100, 1 << 20, 1 << 20));
        for bad in [
            &b"2026-01-01\t1\tx\n2026-01-01\t2\ty\n"[..], // two rows in one message
            b"2026-01-01\t1\tx",                          // a row cut short
            b"2026-01-01\t1\n",                           // too few fields
            b"2026-01-01\t1\tx\ty\n",                     // too many
            b"2026-01-03\t1\tx\n",                        // a day not asked for
            b"2026-01-01 00:00:01\t1\tx\n",               // the day spelled otherwise
            b"\\.\n",                                     // text COPY's end marker
        ] {
            assert!(
                matches!(c.take(bad), Err(RowFault::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(c.total().rows, 0);
    }

    #[test]
    fn bytes_per_day_and_per_row() {
        let mut c = text(limits(100, 40, 30));
        c.take(b"2026-01-01\tabc\tdefg\n").unwrap(); // 20 bytes
        c.take(b"2026-01-02\tabc\tdefg\n").unwrap();
        let hit = c.take(b"2026-01-01\tabc\tdefgh\n").unwrap_err();
        assert!(
            matches!(&hit, RowFault::Cap(h) if h.describe().contains("max_bytes_per_day")),
            "{hit:?}"
        );
        let mut c = text(limits(100, 1000, 30));
        let hit = c.take(&[b'x'; 31]).unwrap_err();
        assert_eq!(hit, RowFault::Cap(CapHit::RowBytes { bytes: 31, max: 30 }));
    }
}
