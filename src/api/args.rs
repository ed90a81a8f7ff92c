//! Arguments at the SQL boundary: names into `CheckedName`, years into range. Every SQL
//! argument is nullable so that NULL is a clear error (22004) rather than a silent NULL.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::JsonB;

use crate::pure::error::{WhError, WhResult};
use crate::pure::names::CheckedName;

/// What every jsonb-returning wrapper returns.
pub type Out = Result<JsonB, ErrorReport>;

pub fn tenant(v: Option<&str>) -> WhResult<CheckedName> {
    CheckedName::tenant(v)
}
pub fn template(v: Option<&str>) -> WhResult<CheckedName> {
    CheckedName::template(v)
}
/// A tenant filter: NULL means every tenant.
pub fn opt_tenant(v: Option<&str>) -> WhResult<Option<CheckedName>> {
    v.map(|s| CheckedName::tenant(Some(s))).transpose()
}
/// A template filter: NULL means every template.
pub fn opt_template(v: Option<&str>) -> WhResult<Option<CheckedName>> {
    v.map(|s| CheckedName::template(Some(s))).transpose()
}
pub fn year(v: Option<i32>) -> WhResult<i32> {
    let y = v.ok_or(WhError::NullArgument { what: "year" })?;
    if !(1900..=2199).contains(&y) {
        return Err(WhError::invalid(
            "year",
            format!("{y} is outside 1900..2199"),
        ));
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_years() {
        assert!(opt_tenant(None).unwrap().is_none());
        assert_eq!(
            opt_tenant(Some("tenant_a")).unwrap().unwrap().as_str(),
            "tenant_a"
        );
        assert!(opt_template(Some("Bad")).is_err());
        assert!(matches!(
            year(None),
            Err(WhError::NullArgument { what: "year" })
        ));
        assert!(year(Some(1800)).is_err() && year(Some(2025)).is_ok());
    }
}
