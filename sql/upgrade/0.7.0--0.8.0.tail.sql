
-- ---------------------------------------------------------------- 0.8.0: the tables move
-- Each template's (and rollup's) table public.<template> moves into _wh_data, where its
-- partitions already are: its indexes, row-level policies and grants go with it, and the
-- tenant views (bound to it, not to its name) keep reading it. public.<template> becomes
-- the all-tenant readers' view: the table's columns in their order, owned by wh_admin,
-- SELECT for wh_reader and for every other role that had SELECT on the table except the
-- tenant-scoped readers (they read their tenant views, under row-level security).
-- ALTER TABLE … SET SCHEMA takes ACCESS EXCLUSIVE: readers wait for this transaction.
DO $move$
DECLARE
    t record;
    cols pg_catalog.text;
    g record;
BEGIN
    FOR t IN
        SELECT m.template_name, c.oid AS rel
        FROM @extschema@.mv_templates m
        JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) m.template_name::pg_catalog.name
             AND c.relnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace::pg_catalog.oid
        WHERE c.relkind OPERATOR(pg_catalog.=) 'p' AND c.relowner OPERATOR(pg_catalog.=) 'wh_admin'::pg_catalog.regrole::pg_catalog.oid
          AND pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', m.template_name)) IS NULL
        ORDER BY 1
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE public.%I SET SCHEMA _wh_data', t.template_name);
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) t.rel AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        EXECUTE pg_catalog.format('CREATE VIEW public.%1$I AS SELECT %2$s FROM _wh_data.%1$I', t.template_name, cols);
        EXECUTE pg_catalog.format('ALTER VIEW public.%I OWNER TO wh_admin', t.template_name);
        EXECUTE pg_catalog.format('REVOKE ALL ON public.%I FROM PUBLIC', t.template_name);
        EXECUTE pg_catalog.format('GRANT SELECT ON public.%I TO wh_reader', t.template_name);
        FOR g IN
            SELECT DISTINCT a.grantee::pg_catalog.regrole AS role
            FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
            WHERE c.oid OPERATOR(pg_catalog.=) t.rel AND a.privilege_type OPERATOR(pg_catalog.=) 'SELECT'
              AND a.grantee OPERATOR(pg_catalog.<>) 0 AND a.grantee OPERATOR(pg_catalog.<>) c.relowner
              AND a.grantee OPERATOR(pg_catalog.<>) 'wh_reader'::pg_catalog.regrole::pg_catalog.oid
              AND NOT EXISTS (SELECT 1 FROM _wh_scope.readers s WHERE s.role_oid OPERATOR(pg_catalog.=) a.grantee)
              AND NOT EXISTS (SELECT 1 FROM @extschema@.tenant_readers r WHERE r.role_oid OPERATOR(pg_catalog.=) a.grantee)
        LOOP
            EXECUTE pg_catalog.format('GRANT SELECT ON public.%I TO %s', t.template_name, g.role);
        END LOOP;
    END LOOP;
END
$move$;

-- Rollups read their base's table, not the readers' view.
UPDATE @extschema@.mv_templates m
SET query_template = pg_catalog.replace(m.query_template,
        pg_catalog.format('FROM public."%s" AS wh_b', m.base_template),
        pg_catalog.format('FROM "_wh_data"."%s" AS wh_b', m.base_template))
WHERE m.base_template IS NOT NULL;

-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.7.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;
