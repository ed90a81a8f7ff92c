-- Adopting a warehouse built the seeds' way, after scripts/adopt.sh moved the seeds' `_wh`
-- aside as `_wh_seeds` and their views as `<name>_seeds` (README, "Adopting a seeds'
-- warehouse"). Run as an operator: CALL _wh.adopt_seeds(); reruns are safe.
CREATE PROCEDURE @extschema@.adopt_seeds(source_schema text DEFAULT '_wh_seeds')
LANGUAGE plpgsql AS $body$
DECLARE
    t record;
    a jsonb;
    r jsonb;
    n_tenants integer := 0;
    n_templates integer := 0;
    refused text[] := '{}';
    prev text[] := @extschema@._enter();
BEGIN
    IF pg_catalog.to_regclass(pg_catalog.format('%I.tenant_connections', source_schema)) IS NULL THEN
        RAISE EXCEPTION 'wh: %.tenant_connections does not exist', source_schema
            USING ERRCODE = 'undefined_table',
                  HINT = 'Run scripts/adopt.sh first: it moves the seeds'' _wh aside as _wh_seeds and installs wh.';
    END IF;
    -- Tenants: their password goes into wh's user mapping, never into a wh table.
    FOR t IN EXECUTE pg_catalog.format(
        'SELECT tenant_name, host, coalesce(port, 5432) AS port, dbname, username, password FROM %I.tenant_connections ORDER BY 1', source_schema)
    LOOP
        IF NOT EXISTS (SELECT 1 FROM @extschema@.tenant_connections c WHERE c.tenant_name = t.tenant_name) THEN
            PERFORM @extschema@.set_tenant_connection(t.tenant_name, t.host, t.port, t.dbname, t.username, t.password);
            n_tenants := n_tenants + 1;
            RAISE NOTICE 'adopt: tenant % imported (its password is now in wh''s user mapping)', t.tenant_name;
        END IF;
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    -- Templates: converted, or listed with the reason wh cannot take them.
    FOR t IN EXECUTE pg_catalog.format(
        'SELECT template_name, description, query_template, column_definitions, pg_catalog.to_jsonb(indexes) AS ix FROM %I.mv_templates ORDER BY 1', source_schema)
    LOOP
        -- The seeds kept indexes as an array of statements, or as one text of them.
        a := @extschema@._adopt_template(t.query_template, t.column_definitions,
            CASE pg_catalog.jsonb_typeof(t.ix)
                WHEN 'array' THEN ARRAY(SELECT pg_catalog.jsonb_array_elements_text(t.ix))
                WHEN 'string' THEN pg_catalog.regexp_split_to_array(t.ix #>> '{}', ';\s*')
            END);
        IF NOT (a->>'ok')::boolean THEN
            refused := refused || pg_catalog.format('%s: %s', t.template_name, a->>'reason');
            RAISE WARNING 'adopt: template % not adopted: %', t.template_name, a->>'reason';
            CONTINUE;
        END IF;
        BEGIN
            PERFORM @extschema@.set_template(
                template_name => t.template_name, query_template => a->>'query',
                column_definitions => t.column_definitions, time_column => a->>'time_column',
                unique_key => a->>'unique_key',
                indexes => ARRAY(SELECT pg_catalog.jsonb_array_elements_text(a->'indexes')),
                description => coalesce(t.description, 'adopted from the seeds'));
            n_templates := n_templates + 1;
            RAISE NOTICE 'adopt: template % (time column %, unique key %)%', t.template_name, a->>'time_column',
                coalesce(a->>'unique_key', 'none'),
                CASE WHEN pg_catalog.jsonb_array_length(a->'notes') > 0
                     THEN ': ' || (SELECT pg_catalog.string_agg(x, '; ') FROM pg_catalog.jsonb_array_elements_text(a->'notes') x) ELSE '' END;
        EXCEPTION WHEN OTHERS THEN
            refused := refused || pg_catalog.format('%s: %s', t.template_name, SQLERRM);
            RAISE WARNING 'adopt: template % not adopted: %', t.template_name, SQLERRM;
        END;
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    -- Rows: a tenant and template per transaction, from the seeds' views, never re-fetched.
    FOR t IN SELECT m.template_name, c.tenant_name FROM @extschema@.mv_templates m
             CROSS JOIN @extschema@.tenant_connections c ORDER BY 1, 2
    LOOP
        r := @extschema@._adopt_days(t.template_name, t.tenant_name);
        COMMIT;
        PERFORM @extschema@._enter();
        IF r->>'status' = 'succeeded' THEN
            RAISE NOTICE 'adopt: %.% % rows, % days, verified', t.tenant_name, t.template_name, r->>'rows', r->'details'->>'days';
            -- wh's job replaces the seeds' one (scripts/adopt.sh stopped those).
            IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
                PERFORM @extschema@.schedule_tenant(t.template_name, t.tenant_name);
                COMMIT;
                PERFORM @extschema@._enter();
            END IF;
        END IF;
    END LOOP;
    RAISE NOTICE 'adopt: % tenant(s) and % template(s) imported%; the seeds'' objects stay until you drop them: SELECT drop_statement FROM _wh.seed_leftovers() \gexec',
        n_tenants, n_templates,
        CASE WHEN pg_catalog.cardinality(refused) > 0 THEN '; not adopted: ' || pg_catalog.array_to_string(refused, ' | ') ELSE '' END;
    PERFORM @extschema@._leave(prev);
END
$body$;
COMMENT ON PROCEDURE @extschema@.adopt_seeds(text) IS
    'Adopt a warehouse built the seeds'' way (after scripts/adopt.sh): tenants, templates, rows (copied and verified per day, never re-fetched), jobs';
