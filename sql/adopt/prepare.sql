-- Adopting a warehouse built the seeds' way, step 1 (scripts/adopt.sh runs it as a
-- superuser in the seeds' database; reruns are safe). It renames, never drops:
--   _wh (the seeds' functions and tables)        -> _wh_seeds
--   public.<template>, <tenant>.<template> views  -> <template>_seeds
-- then installs wh, gives wh_admin the tenant schemas and read access to what it adopts,
-- and stops (never deletes) the seeds' pg_cron jobs. Step 2 is CALL _wh.adopt_seeds() as an
-- operator.
\set ON_ERROR_STOP on
-- A superuser's statements: nothing wh_admin members may have put in public is ever used.
SET search_path = pg_catalog, pg_temp;
DO $prepare$
DECLARE
    t record;
    v record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'wh') THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh_seeds') THEN
            RAISE EXCEPTION 'both _wh and _wh_seeds exist and wh is not installed: move one of them yourself first';
        END IF;
        ALTER SCHEMA _wh RENAME TO _wh_seeds;
        RAISE NOTICE 'adopt: the seeds'' _wh is now _wh_seeds';
    END IF;
    IF pg_catalog.to_regclass('_wh_seeds.mv_templates') IS NULL THEN
        RAISE EXCEPTION 'no seeds'' warehouse here: _wh_seeds.mv_templates does not exist';
    END IF;
    -- The seeds' views take the names wh's tables and views will have: set them aside.
    FOR t IN SELECT template_name FROM _wh_seeds.mv_templates LOOP
        FOR v IN SELECT n.nspname, c.relname, c.relkind FROM pg_catalog.pg_class c
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relname = t.template_name AND c.relkind IN ('v', 'm')
                   AND n.nspname NOT IN ('_wh', '_wh_seeds', '_wh_data', 'pg_catalog', 'information_schema')
        LOOP
            IF pg_catalog.to_regclass(pg_catalog.format('%I.%I', v.nspname, v.relname || '_seeds')) IS NULL THEN
                EXECUTE pg_catalog.format('ALTER %s %I.%I RENAME TO %I',
                    CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, v.nspname, v.relname, v.relname || '_seeds');
                RAISE NOTICE 'adopt: %.% is now %.%_seeds', v.nspname, v.relname, v.nspname, v.relname;
            END IF;
        END LOOP;
    END LOOP;
END
$prepare$;

-- Extensions without a fixed schema (dblink, pulled in by CASCADE) go to public, as usual.
SET search_path = public, pg_catalog, pg_temp;
CREATE EXTENSION IF NOT EXISTS wh CASCADE;
SET search_path = pg_catalog, pg_temp;

DO $grant$
DECLARE
    t record;
BEGIN
    -- wh reads the seeds' tenants and templates (their passwords go into user mappings).
    GRANT USAGE ON SCHEMA _wh_seeds TO wh_admin;
    GRANT SELECT ON _wh_seeds.tenant_connections, _wh_seeds.mv_templates TO wh_admin;
    FOR t IN SELECT c.tenant_name FROM _wh_seeds.tenant_connections c
             JOIN pg_catalog.pg_namespace n ON n.nspname = c.tenant_name LOOP
        -- A tenant's schema becomes wh's (wh makes its views there); the seeds' relations
        -- in it keep their owners, and wh_admin may read them.
        EXECUTE pg_catalog.format('ALTER SCHEMA %I OWNER TO wh_admin', t.tenant_name);
        EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO wh_admin', t.tenant_name);
    END LOOP;
    -- The seeds' jobs stop (they stay in cron.job, inactive); wh's replace them, scheduled
    -- by the operator (README, "Scheduling": pg_cron's schema for wh_admin).
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        GRANT USAGE ON SCHEMA cron TO wh_admin;
        UPDATE cron.job SET active = false
        WHERE active AND (jobname IS NULL OR jobname NOT LIKE 'wh:%') AND command ~ '_wh\.';
    END IF;
END
$grant$;
