-- The seeds' calls (the hand-written system wh replaces), kept working where they are not
-- ambiguous with wh's own: thin wrappers onto wh's functions. README, "The seeds' calls".
-- update_mv_window(tenant, schema, start, end, force, function_name) is in src/api.rs;
-- update_<template>(…) and create_<template>_mv(…) are made per template by
-- _wh._seed_functions (sql/privileges.sql) when the template is set.

-- 001's *_by_template names.
CREATE FUNCTION @extschema@.update_mv_window_by_template(
    template_name text, tenant_name text, start_date date, end_date date, force_recreate boolean DEFAULT false
) RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_mv_window(template_name, tenant_name, start_date, end_date, force_recreate)
$body$;

CREATE FUNCTION @extschema@.update_tenant_union_view_by_template(template_name text, tenant_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_tenant_union_view(template_name, tenant_name)
$body$;

CREATE FUNCTION @extschema@.update_public_view_by_template(template_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.update_public_view(template_name)
$body$;

CREATE FUNCTION @extschema@.create_combined_table_from_template_by_year(template_name text, tenant_name text, year integer)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.create_combined_table_by_year(template_name, tenant_name, year)
$body$;

-- The seeds' view names: <template>_YYYY_MM_DD, as (template, day); anything else fails
-- with a HINT naming wh's call `wh_function(template_name, tenant_name, target_date)`.
CREATE FUNCTION @extschema@._seed_mv_name(view_name text, wh_function text, OUT template_name text, OUT day date)
LANGUAGE plpgsql IMMUTABLE AS $body$
DECLARE
    m text[] := pg_catalog.regexp_match(view_name, '^([a-z_][a-z0-9_]*)_([0-9]{4})_([0-9]{2})_([0-9]{2})$');
BEGIN
    IF m IS NOT NULL THEN
        BEGIN
            template_name := m[1];
            day := pg_catalog.make_date(m[2]::int, m[3]::int, m[4]::int);
            RETURN;
        EXCEPTION WHEN datetime_field_overflow OR invalid_datetime_format THEN
            NULL;
        END;
    END IF;
    RAISE EXCEPTION 'wh: %: not a day''s name (<template>_YYYY_MM_DD)', view_name
        USING ERRCODE = 'invalid_parameter_value',
              HINT = pg_catalog.format('wh''s call: SELECT _wh.%s(template_name, tenant_name, target_date)', wh_function);
END
$body$;

-- The seeds' does_mv_exist(schema, view_name) and refresh_mv(schema, view_name): a
-- tenant's schema is its name in wh, and a view name says the template and the day.
CREATE FUNCTION @extschema@.does_mv_exist(target_schema text, view_name text)
RETURNS boolean LANGUAGE sql AS $body$
    SELECT @extschema@.does_mv_exist(v.template_name, target_schema, v.day)
    FROM @extschema@._seed_mv_name(view_name, 'does_mv_exist') v
$body$;

CREATE FUNCTION @extschema@.refresh_mv(target_schema text, view_name text)
RETURNS jsonb LANGUAGE sql AS $body$
    SELECT @extschema@.refresh_mv(v.template_name, target_schema, v.day)
    FROM @extschema@._seed_mv_name(view_name, 'refresh_mv') v
$body$;

-- The seeds' update_tenant_view(tenant, schema, view_basename).
CREATE FUNCTION @extschema@.update_tenant_view(tenant_name text, target_schema text, view_basename text)
RETURNS jsonb LANGUAGE plpgsql AS $body$
BEGIN
    IF target_schema IS DISTINCT FROM tenant_name THEN
        RAISE EXCEPTION 'wh: in wh a tenant''s schema is its name: schema % cannot differ from tenant %', target_schema, tenant_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = pg_catalog.format('wh''s call: SELECT _wh.update_tenant_union_view(%L, %L)', view_basename, tenant_name);
    END IF;
    RETURN @extschema@.update_tenant_union_view(view_basename, tenant_name);
END
$body$;
