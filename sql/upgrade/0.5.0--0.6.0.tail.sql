-- ---------------------------------------------------------------- 0.6.0: per template, jobs
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.5.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- The jobs 0.5.0 made: named wh:…, running one of wh's commands, owned by a login that is a
-- member of wh_admin and no superuser. From now on wh touches only jobs recorded here.
DO $jobs$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        EXECUTE $q$
            INSERT INTO @extschema@.cron_jobs (jobid, username)
            SELECT j.jobid, j.username::name FROM cron.job j
            JOIN pg_catalog.pg_roles r ON r.rolname OPERATOR(pg_catalog.=) j.username::name
            WHERE j.jobname OPERATOR(pg_catalog.~~) 'wh:%'::text AND NOT r.rolsuper
              AND pg_catalog.pg_has_role(r.oid, 'wh_admin', 'MEMBER')
              AND @extschema@._is_wh_job_command(j.command)
            ON CONFLICT DO NOTHING $q$;
    END IF;
END
$jobs$;

-- Tenant-scoped readers: 0.5.0 listed them in a policy per tenant ("wh:<tenant>" TO its
-- readers), which a revocation had to change under ACCESS EXCLUSIVE. Now one policy per
-- table, "wh:scoped", reads _wh_scope.readers: filled here from the registry, then each
-- table's tenant policies are replaced (this takes each table's ACCESS EXCLUSIVE lock once,
-- for the upgrade's transaction: run it in a quiet moment).
INSERT INTO _wh_scope.readers (role_oid, tenant_name)
SELECT r.role_oid, r.tenant_name FROM @extschema@.tenant_readers r
JOIN pg_catalog.pg_roles o ON o.oid OPERATOR(pg_catalog.=) r.role_oid AND o.rolname OPERATOR(pg_catalog.=) r.role_name
ON CONFLICT DO NOTHING;
DO $policies$
DECLARE
    t record;
    p record;
BEGIN
    -- Every per-tenant policy wh made, on any table of wh_admin's in public (templates
    -- removed since included), goes.
    FOR p IN SELECT y.polname, y.polrelid::pg_catalog.regclass AS rel FROM pg_catalog.pg_policy y
             JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) y.polrelid
             WHERE c.relnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace::pg_catalog.oid
               AND c.relowner OPERATOR(pg_catalog.=) 'wh_admin'::pg_catalog.regrole::pg_catalog.oid
               AND y.polname OPERATOR(pg_catalog.~~) 'wh:%'::pg_catalog.text
               AND y.polname NOT IN ('wh:all', 'wh:scoped') LOOP
        EXECUTE pg_catalog.format('DROP POLICY %I ON %s', p.polname, p.rel);
    END LOOP;
    -- Each template's table gets the policies a fresh install gives it.
    FOR t IN SELECT c.oid::pg_catalog.regclass AS rel, m.template_name FROM @extschema@.mv_templates m
             JOIN pg_catalog.pg_class c ON c.relname OPERATOR(pg_catalog.=) m.template_name
                                       AND c.relnamespace OPERATOR(pg_catalog.=) 'public'::pg_catalog.regnamespace::pg_catalog.oid
             WHERE c.relkind OPERATOR(pg_catalog.=) 'p' ORDER BY 1 LOOP
        FOR p IN SELECT x.policy_name, x.create_statement FROM @extschema@._table_policies(t.template_name) x
                 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_policy y WHERE y.polrelid OPERATOR(pg_catalog.=) t.rel::pg_catalog.oid
                                   AND y.polname OPERATOR(pg_catalog.=) x.policy_name) LOOP
            EXECUTE p.create_statement;
        END LOOP;
    END LOOP;
END
$policies$;
