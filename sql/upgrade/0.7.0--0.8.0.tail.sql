
-- ---------------------------------------------------------------- 0.8.0: the tables move
-- Each template's (and rollup's) table public.<template> moves into _wh_data, where its
-- partitions already are: its indexes, row-level policies and grants go with it, and the
-- tenant views (bound to it, not to its name) keep reading it. public.<template> becomes
-- the all-tenant readers' view: the table's columns in their order, owned by wh_admin,
-- SELECT for wh_reader and for every other role that had SELECT on the table except the
-- tenant-scoped readers (they read their tenant views, under row-level security). It
-- holds rows only for roles that read every tenant (_wh_scope.reads_every_tenant()): a
-- role a DBA granted SELECT on the table reads from the view what row-level security let
-- it read before, nothing (it never was a reader of every tenant).
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
        EXECUTE pg_catalog.format('CREATE VIEW public.%1$I AS SELECT %2$s FROM _wh_data.%1$I WHERE _wh_scope.reads_every_tenant()',
                                  t.template_name, cols);
        -- Like the table, not a member of the extension (DROP EXTENSION leaves it readable).
        EXECUTE pg_catalog.format('ALTER EXTENSION wh DROP VIEW public.%I', t.template_name);
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

-- Each template's table gets _wh_data."<template>:all" (its rows with the owner's rights,
-- for readers of every tenant only) and each tenant view becomes its two branches: the
-- one a reader may take is kept at planning (_wh_scope.reads_every_tenant()), so readers of
-- every tenant plan a tenant view as a flat table too and scoped readers keep row-level
-- security. Tenant-scoped readers (SELECT on the table) get SELECT on the new view too.
DO $views$
DECLARE
    t record;
    v record;
    cols pg_catalog.text;
    g record;
BEGIN
    FOR t IN
        SELECT m.template_name, c.oid AS rel
        FROM @extschema@.mv_templates m
        JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) m.template_name::pg_catalog.name
             AND c.relnamespace OPERATOR(pg_catalog.=) '_wh_data'::pg_catalog.regnamespace::pg_catalog.oid
        WHERE c.relkind OPERATOR(pg_catalog.=) 'p'
          AND pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', m.template_name OPERATOR(pg_catalog.||) ':all')) IS NULL
        ORDER BY 1
    LOOP
        SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid OPERATOR(pg_catalog.=) t.rel AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
        EXECUTE pg_catalog.format('CREATE VIEW _wh_data.%I AS SELECT %s FROM _wh_data.%I WHERE _wh_scope.reads_every_tenant()',
                                  t.template_name OPERATOR(pg_catalog.||) ':all', cols, t.template_name);
        EXECUTE pg_catalog.format('ALTER EXTENSION wh DROP VIEW _wh_data.%I', t.template_name OPERATOR(pg_catalog.||) ':all');
        EXECUTE pg_catalog.format('ALTER VIEW _wh_data.%I OWNER TO wh_admin', t.template_name OPERATOR(pg_catalog.||) ':all');
        EXECUTE pg_catalog.format('REVOKE ALL ON _wh_data.%I FROM PUBLIC', t.template_name OPERATOR(pg_catalog.||) ':all');
        EXECUTE pg_catalog.format('GRANT SELECT ON _wh_data.%I TO wh_reader', t.template_name OPERATOR(pg_catalog.||) ':all');
        FOR g IN
            SELECT DISTINCT a.grantee::pg_catalog.regrole AS role
            FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
            WHERE c.oid OPERATOR(pg_catalog.=) t.rel AND a.privilege_type OPERATOR(pg_catalog.=) 'SELECT'
              AND EXISTS (SELECT 1 FROM @extschema@.tenant_readers r WHERE r.role_oid OPERATOR(pg_catalog.=) a.grantee)
        LOOP
            EXECUTE pg_catalog.format('GRANT SELECT ON _wh_data.%I TO %s', t.template_name OPERATOR(pg_catalog.||) ':all', g.role);
        END LOOP;
        -- The tenant views over the table: wh_admin's views in tenant schemas named as the template.
        FOR v IN
            SELECT DISTINCT w.ev_class AS view, n.nspname
            FROM pg_catalog.pg_rewrite w
            JOIN pg_catalog.pg_depend d ON d.objid OPERATOR(pg_catalog.=) w.oid
                 AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_rewrite'::pg_catalog.regclass::pg_catalog.oid
            JOIN pg_catalog.pg_class k ON k.oid OPERATOR(pg_catalog.=) w.ev_class
            JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) k.relnamespace
            WHERE d.refobjid OPERATOR(pg_catalog.=) t.rel AND k.relkind OPERATOR(pg_catalog.=) 'v'
              AND k.relname OPERATOR(pg_catalog.=) t.template_name::pg_catalog.name
              AND k.relowner OPERATOR(pg_catalog.=) 'wh_admin'::pg_catalog.regrole::pg_catalog.oid
              AND n.nspname NOT IN ('public', '_wh_data')
        LOOP
            SELECT pg_catalog.string_agg(pg_catalog.quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO cols
            FROM pg_catalog.pg_attribute a
            WHERE a.attrelid OPERATOR(pg_catalog.=) v.view AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped;
            -- Replaced in place (its grants and any view over it stay): an extension script
            -- may replace only its own objects, so it is one for this statement.
            EXECUTE pg_catalog.format('ALTER EXTENSION wh ADD VIEW %I.%I', v.nspname, t.template_name);
            EXECUTE pg_catalog.format(
                'CREATE OR REPLACE VIEW %1$I.%2$I WITH (security_invoker = true) AS '
                'SELECT %3$s FROM _wh_data.%4$I WHERE schema_name = %5$L::text '
                'UNION ALL SELECT %3$s FROM _wh_data.%2$I WHERE schema_name = %5$L::text AND NOT _wh_scope.reads_every_tenant()',
                v.nspname, t.template_name, cols, t.template_name OPERATOR(pg_catalog.||) ':all', v.nspname);
            EXECUTE pg_catalog.format('ALTER EXTENSION wh DROP VIEW %I.%I', v.nspname, t.template_name);
        END LOOP;
    END LOOP;
END
$views$;

-- Rollups read their base's table, not the readers' view.
UPDATE @extschema@.mv_templates m
SET query_template = pg_catalog.replace(m.query_template,
        pg_catalog.format('FROM public."%s" AS wh_b', m.base_template),
        pg_catalog.format('FROM "_wh_data"."%s" AS wh_b', m.base_template))
WHERE m.base_template IS NOT NULL;

-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.7.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;
