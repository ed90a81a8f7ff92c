//! A template's caps (`Limits`) counted on a source's answer as it arrives: one COPY text
//! row per CopyData message, its first field the row's day (`wh_day`). Rows and bytes are
//! counted per day, a row's bytes on their own; the first row over a cap stops the answer
//! (the bytes before it were never more than the cap). Pure: no SPI.

use std::collections::BTreeMap;

use crate::pure::template::Limits;

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
    days: BTreeMap<Vec<u8>, DayCount>,
}

impl CapCounter {
    pub fn new(limits: Limits) -> Self {
        CapCounter {
            limits,
            days: BTreeMap::new(),
        }
    }

    /// Count one COPY text row (`wh_day` first, tab-separated); the cap it runs over, if any.
    pub fn take(&mut self, row: &[u8]) -> Result<(), CapHit> {
        let bytes = row.len() as i64;
        if bytes > self.limits.max_row_bytes {
            return Err(CapHit::RowBytes {
                bytes,
                max: self.limits.max_row_bytes,
            });
        }
        let day = row.split(|b| *b == b'\t').next().unwrap_or_default();
        let count = match self.days.get_mut(day) {
            Some(c) => c,
            None => self.days.entry(day.to_vec()).or_default(),
        };
        count.rows += 1;
        count.bytes += bytes;
        let day = || String::from_utf8_lossy(day).into_owned();
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

    #[test]
    fn rows_are_capped_per_day_not_per_answer() {
        let mut c = CapCounter::new(limits(2, 1 << 20, 1 << 20));
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
        let mut c = CapCounter::new(limits(100, 40, 30));
        c.take(b"2026-01-01\tabcdefgh\n").unwrap(); // 20 bytes
        c.take(b"2026-01-02\tabcdefgh\n").unwrap();
        let hit = c.take(b"2026-01-01\tabcdefghi\n").unwrap_err();
        assert!(hit.describe().contains("max_bytes_per_day"), "{hit:?}");
        let mut c = CapCounter::new(limits(100, 1000, 30));
        let hit = c.take(&[b'x'; 31]).unwrap_err();
        assert_eq!(hit, CapHit::RowBytes { bytes: 31, max: 30 });
        assert!(hit.describe().contains("max_row_bytes"));
        // A row without a tab (a one-column answer) counts under its whole text.
        let mut c = CapCounter::new(limits(1, 1000, 1000));
        c.take(b"2026-01-01\n").unwrap();
        assert!(c.take(b"2026-01-01\n").is_err());
    }
}
