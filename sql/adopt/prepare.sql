-- Adopting a warehouse built the seeds' way, step 1 (scripts/adopt.sh runs it as a
-- superuser in the seeds' database; reruns are safe). It renames, never drops, and takes
-- ownership of nothing:
--   _wh (the seeds' functions and tables)         -> _wh_seeds
--   each tenant's schema (daily views, year tables, its union view) -> _wh_seeds_<tenant>
--   public.<template> (the seeds' union view)      -> public.<template>_seeds
-- records each by oid in _wh.seed_objects (what _wh.seed_leftovers() may offer to drop),
-- installs wh, lets wh_admin read what it adopts, and stops (never deletes) the seeds'
-- pg_cron jobs. Step 2 is CALL _wh.adopt_seeds() as an operator; wh makes the tenant
-- schemas anew, owned by wh_admin.
--
-- In the seeds' design a less privileged role (the seeds' admin) owns _wh, public and the
-- tenant schemas, and can write the seeds' tables. So this superuser step calls no function
-- and reads no view such a role controls: it reads only plain tables whose kind, owner and
-- column types it has checked, trusts no name in them (system and wh schemas refused), and
-- renames only schemas the seeds' owner owns.
\set ON_ERROR_STOP on
-- Nothing wh_admin members or the seeds' admin may have put in public is ever used.
SET search_path = pg_catalog, pg_temp;

CREATE TEMPORARY TABLE adopt_names (kind text, name text) ON COMMIT PRESERVE ROWS;

DO $read$
DECLARE
    seeds_owner oid;
    rel record;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh')
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'wh') THEN
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh_seeds') THEN
            RAISE EXCEPTION 'both _wh and _wh_seeds exist and wh is not installed: move one of them yourself first';
        END IF;
        ALTER SCHEMA _wh RENAME TO _wh_seeds;
        RAISE NOTICE 'adopt: the seeds'' _wh is now _wh_seeds';
    END IF;
    SELECT n.nspowner INTO seeds_owner FROM pg_catalog.pg_namespace n WHERE n.nspname = '_wh_seeds';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no seeds'' warehouse here: schema _wh_seeds does not exist';
    END IF;
    IF seeds_owner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'wh_admin') THEN
        RAISE EXCEPTION 'schema _wh_seeds is owned by wh_admin, so wh made it: it is not the seeds'' _wh';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relname = 'seed_objects'
               AND c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '_wh')) THEN
        IF EXISTS (SELECT 1 FROM _wh.seed_objects WHERE kind = 'schema' AND tenant_name IS NULL)
           AND NOT EXISTS (SELECT 1 FROM _wh.seed_objects o JOIN pg_catalog.pg_namespace n ON n.oid = o.object_oid
                           WHERE o.kind = 'schema' AND o.tenant_name IS NULL AND n.nspname = '_wh_seeds') THEN
            RAISE EXCEPTION 'schema _wh_seeds is not the one the first run of this step set aside (oid differs)';
        END IF;
    END IF;
    -- The two tables read here: plain tables of the seeds' owner, names in text columns,
    -- no rules, no children. Locked first (SHARE, to the end of this block's transaction),
    -- so neither can become a view (CREATE RULE "_RETURN") between the check and the read.
    IF pg_catalog.to_regclass('_wh_seeds.tenant_connections') IS NULL OR pg_catalog.to_regclass('_wh_seeds.mv_templates') IS NULL THEN
        RAISE EXCEPTION 'no seeds'' warehouse here: _wh_seeds.tenant_connections or _wh_seeds.mv_templates does not exist';
    END IF;
    LOCK TABLE _wh_seeds.tenant_connections, _wh_seeds.mv_templates IN SHARE MODE;
    FOR rel IN SELECT * FROM (VALUES ('tenant_connections', 'tenant_name'), ('mv_templates', 'template_name')) v(tbl, col) LOOP
        IF NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_class c
            JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attname = rel.col AND NOT a.attisdropped
            WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '_wh_seeds')
              AND c.relname = rel.tbl AND c.relkind = 'r' AND c.relowner = seeds_owner
              AND NOT c.relhasrules AND NOT c.relhassubclass AND NOT c.relispartition
              AND a.atttypid IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype)) THEN
            RAISE EXCEPTION 'no seeds'' warehouse here: _wh_seeds.% is not a plain table of the seeds'' owner with a text column %',
                rel.tbl, rel.col;
        END IF;
    END LOOP;
    INSERT INTO pg_temp.adopt_names SELECT 'template', template_name::text FROM _wh_seeds.mv_templates;
    INSERT INTO pg_temp.adopt_names SELECT 'tenant', tenant_name::text FROM _wh_seeds.tenant_connections;
END
$read$;

-- Extensions without a fixed schema (dblink, pulled in by wh) go to public, as usual.
CREATE EXTENSION IF NOT EXISTS dblink SCHEMA public;
CREATE EXTENSION IF NOT EXISTS wh;

DO $move$
DECLARE
    seeds_owner oid := (SELECT nspowner FROM pg_catalog.pg_namespace WHERE nspname = '_wh_seeds');
    name_ok text := '^[a-z_][a-z0-9_]*$';
    t record;
    v record;
    s_oid oid;
    s_owner oid;
    aside text;
BEGIN
    INSERT INTO _wh.seed_objects (object_oid, kind, name)
    SELECT n.oid, 'schema', n.nspname FROM pg_catalog.pg_namespace n WHERE n.nspname = '_wh_seeds'
    ON CONFLICT DO NOTHING;
    -- The seeds' public view of a template takes the name wh's table will have: set aside.
    FOR t IN SELECT DISTINCT name FROM pg_temp.adopt_names WHERE kind = 'template' AND name ~ name_ok
             AND pg_catalog.octet_length(name) <= 56 ORDER BY 1 LOOP
        SELECT c.oid, c.relkind, c.relowner INTO v FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'public'::pg_catalog.regnamespace AND c.relname = t.name AND c.relkind IN ('v', 'm');
        IF FOUND AND v.relowner = seeds_owner
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = 'public'::pg_catalog.regnamespace
                           AND c.relname = t.name || '_seeds') THEN
            EXECUTE pg_catalog.format('ALTER %s public.%I RENAME TO %I',
                CASE v.relkind WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'VIEW' END, t.name, t.name || '_seeds');
            INSERT INTO _wh.seed_objects (object_oid, kind, name, template_name)
            VALUES (v.oid, 'view', 'public.' || t.name || '_seeds', t.name) ON CONFLICT DO NOTHING;
            RAISE NOTICE 'adopt: public.% is now public.%_seeds', t.name, t.name;
        END IF;
    END LOOP;
    -- Each tenant's schema is set aside whole: wh makes its own, owned by wh_admin.
    FOR t IN SELECT DISTINCT name FROM pg_temp.adopt_names WHERE kind = 'tenant' ORDER BY 1 LOOP
        IF t.name !~ name_ok OR t.name ~ '^(pg|_wh)_' OR t.name IN ('public', 'information_schema', '_wh', 'cron')
           OR pg_catalog.octet_length(t.name) > 53 THEN
            RAISE WARNING 'adopt: tenant %: not a name wh can give a tenant (a system or wh schema, or over 53 bytes); its schema is left alone',
                pg_catalog.quote_literal(t.name);
            CONTINUE;
        END IF;
        aside := '_wh_seeds_' || t.name;
        SELECT n.oid, n.nspowner INTO s_oid, s_owner FROM pg_catalog.pg_namespace n WHERE n.nspname = t.name;
        IF NOT FOUND OR EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = aside) THEN
            CONTINUE;  -- no seeds schema, or set aside by an earlier run
        END IF;
        IF s_owner <> seeds_owner THEN
            RAISE WARNING 'adopt: tenant %: schema % is not owned by the seeds'' owner (%), left alone',
                t.name, t.name, seeds_owner::pg_catalog.regrole;
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('ALTER SCHEMA %I RENAME TO %I', t.name, aside);
        INSERT INTO _wh.seed_objects (object_oid, kind, name, tenant_name) VALUES (s_oid, 'schema', aside, t.name)
        ON CONFLICT DO NOTHING;
        RAISE NOTICE 'adopt: schema % is now %', t.name, aside;
    END LOOP;
    -- wh reads what it adopts: the seeds' tenants and templates (their passwords go into
    -- user mappings), and the set-aside tenant schemas' relations.
    GRANT USAGE ON SCHEMA _wh_seeds TO wh_admin;
    GRANT SELECT ON _wh_seeds.tenant_connections, _wh_seeds.mv_templates TO wh_admin;
    FOR t IN SELECT o.object_oid::pg_catalog.regnamespace::text AS nsp FROM _wh.seed_objects o
             JOIN pg_catalog.pg_namespace n ON n.oid = o.object_oid
             WHERE o.kind = 'schema' AND o.tenant_name IS NOT NULL LOOP
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %s TO wh_admin', t.nsp);
        EXECUTE pg_catalog.format('GRANT SELECT ON ALL TABLES IN SCHEMA %s TO wh_admin', t.nsp);
    END LOOP;
    -- The seeds' jobs stop (they stay in cron.job, inactive); wh's replace them, scheduled
    -- by the operator. Never a job wh made.
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        GRANT USAGE ON SCHEMA cron TO wh_admin;
        UPDATE cron.job SET active = false
        WHERE active AND command ~ '_wh\.' AND jobid NOT IN (SELECT jobid FROM _wh.cron_jobs)
          AND username = (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = seeds_owner);
    END IF;
END
$move$;
