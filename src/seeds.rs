//! The seeds' calls (the hand-written system wh replaces): their argument orders mapped to
//! wh's, for the compatible forms and for the HINTs of calls typed the old way. Pure.

/// The seeds name a template's refresh function `update_<template>`
/// (`update_mv_window(…, function_name => 'update_foodlogstats')`): the template.
pub fn template_of_function(function_name: &str) -> Option<&str> {
    let t = function_name.trim().strip_prefix("update_")?;
    let ok = !t.is_empty()
        && t.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(t)
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// wh's window call, as text for a HINT.
pub fn window_call(template: &str, tenant: &str, start: &str, end: &str, force: bool) -> String {
    let force = if force {
        ", force_recreate => true"
    } else {
        ""
    };
    format!(
        "SELECT _wh.update_mv_window({}, {}, {}, {}{force})",
        lit(template),
        lit(tenant),
        lit(start),
        lit(end)
    )
}

/// The HINT for a template name that is a tenant's: the seeds put the tenant first.
pub fn tenant_first_hint(tenant: &str, templates: &[String]) -> String {
    let example = templates
        .first()
        .map(String::as_str)
        .unwrap_or("<template>");
    format!(
        "{tenant} is a tenant: wh's calls take the template first, then the tenant (the seeds' functions took the tenant and schema first), \
         e.g. SELECT _wh.update_mv_window({}, {}, start_date, end_date); templates: {}",
        lit(example),
        lit(tenant),
        if templates.is_empty() { "none yet (_wh.set_template)".to_string() } else { templates.join(", ") }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_give_templates() {
        assert_eq!(
            template_of_function("update_foodlogstats"),
            Some("foodlogstats")
        );
        assert_eq!(template_of_function(" update_x1 "), Some("x1"));
        for bad in [
            "foodlogstats",
            "update_",
            "update_Food",
            "update_a;drop",
            "create_foodlogstats_mv",
        ] {
            assert_eq!(template_of_function(bad), None, "{bad}");
        }
    }

    #[test]
    fn hints_name_the_exact_call() {
        assert_eq!(
            window_call("foodlogstats", "tenant_a", "2025-01-01", "2025-01-31", true),
            "SELECT _wh.update_mv_window('foodlogstats', 'tenant_a', '2025-01-01', '2025-01-31', force_recreate => true)"
        );
        let h = tenant_first_hint("tenant_a", &["foodlogstats".into(), "sales".into()]);
        assert!(
            h.contains("_wh.update_mv_window('foodlogstats', 'tenant_a', start_date, end_date)"),
            "{h}"
        );
        assert!(h.ends_with("templates: foodlogstats, sales"), "{h}");
        assert!(tenant_first_hint("o'x", &[]).contains("'o''x'"));
    }
}
