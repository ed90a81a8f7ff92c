//! Tenant-days through stage → check → apply, the rollups kept with them, the per-day
//! isolation, fan-out, verification and folds.

pub mod compare;
pub mod days;
pub mod fanout;
pub mod fold;
pub mod isolate;
pub mod progress;
pub mod send_receive;

pub mod slice;
pub mod unit;
pub mod verify;
pub mod window;
