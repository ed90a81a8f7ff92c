-- wh 0.10.0 -> 0.11.0: a backfill, a rebuild or a rollup's build that fills a month (a
-- period of the template's grain) with no partition yet builds it aside and attaches it
-- (issue 24, "months loaded in bulk"). The three committing procedures no longer make each
-- chunk's partitions in a transaction of their own first (_wh._prepare_days stays, no
-- longer called by them); no table changes.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it).
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

CREATE OR REPLACE PROCEDURE @extschema@.backfill(
    template_name text, tenant_name text, start_date date, end_date date,
    force_recreate boolean DEFAULT false, max_days integer DEFAULT 3660, chunk_days integer DEFAULT 31
) LANGUAGE plpgsql AS $body$
DECLARE
    n integer;
    c record;
    r jsonb;
    ok integer := 0;
    unchanged integer := 0;
    skipped integer := 0;
    failed integer := 0;
    total bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    n := @extschema@._plan_window(template_name, tenant_name, start_date, end_date, max_days);
    FOR c IN SELECT * FROM @extschema@._backfill_chunks(start_date, end_date, chunk_days) LOOP
        -- Where it is, for _wh.progress in other sessions (before the chunk's work).
        PERFORM @extschema@._progress_step('backfill', template_name, tenant_name, 'day', c.first_index - 1, n,
            c.days[1] || '..' || c.days[pg_catalog.array_upper(c.days, 1)], total);
        r := @extschema@._chunk(coalesce(force_recreate, false),
                                template_name, tenant_name, c.days, 'backfill');
        COMMIT;  -- the chunk is durable before its progress line is printed
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(c.first_index, n, tenant_name, r);
        ok := ok + (SELECT count(*) FROM pg_catalog.jsonb_array_elements(r->'results') x
                    WHERE x->>'status' = 'succeeded' AND x->'details'->>'action' IS DISTINCT FROM 'unchanged');
        unchanged := unchanged + (SELECT count(*) FROM pg_catalog.jsonb_array_elements(r->'results') x
                    WHERE x->'details'->>'action' = 'unchanged');
        skipped := skipped + (r->>'skipped')::int;
        failed := failed + (r->>'failed')::int;
        total := total + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'backfill % %: % built, % unchanged, % skipped, % failed, % rows', template_name, tenant_name,
        ok, unchanged, skipped, failed, total;
    IF failed > 0 THEN
        RAISE WARNING 'backfill % %: % day(s) failed; see _wh.run_log; a rerun retries them',
            template_name, tenant_name, failed;
    END IF;
    PERFORM @extschema@._leave(prev);
END
$body$;

CREATE OR REPLACE PROCEDURE @extschema@.build_rollup(rollup_name text, chunk_days integer DEFAULT 31)
LANGUAGE plpgsql AS $body$
DECLARE
    c record;
    r jsonb;
    n integer;
    i integer := 1;
    failed integer := 0;
    total bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    SELECT coalesce(sum(pg_catalog.cardinality(t.days)), 0) INTO n FROM @extschema@._rollup_todo(rollup_name, chunk_days) t;
    RAISE NOTICE 'build_rollup %: % tenant-day(s) to build', rollup_name, n;
    FOR c IN SELECT * FROM @extschema@._rollup_todo(rollup_name, chunk_days) LOOP
        PERFORM @extschema@._progress_step('build_rollup', rollup_name, c.tenant_name, 'day', i - 1, n,
            c.days[1] || '..' || c.days[pg_catalog.array_upper(c.days, 1)], total);
        r := @extschema@._chunk(false, rollup_name, c.tenant_name, c.days, 'build_rollup');
        COMMIT;
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(i, n, c.tenant_name, r);
        i := i + pg_catalog.cardinality(c.days);
        failed := failed + (r->>'failed')::int;
        total := total + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'build_rollup %: % day(s), % rows, % failed', rollup_name, n, total, failed;
    IF failed > 0 THEN
        RAISE WARNING 'build_rollup %: % day(s) failed; see _wh.run_log; a rerun retries them', rollup_name, failed;
    END IF;
    PERFORM @extschema@._leave(prev);
END
$body$;

CREATE OR REPLACE PROCEDURE @extschema@.rebuild_warehouse(tenant_name text DEFAULT NULL, template_name text DEFAULT NULL)
LANGUAGE plpgsql AS $body$
DECLARE
    run record;
    s record;
    n integer;
    i integer := 1;
    r jsonb;
    rows bigint := 0;
    prev text[] := @extschema@._enter();
BEGIN
    SELECT * INTO run FROM @extschema@._rebuild_begin(tenant_name, template_name);
    COMMIT;
    PERFORM @extschema@._enter();
    SELECT coalesce(sum(pg_catalog.cardinality(t.days)), 0) INTO n FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since) t;
    RAISE NOTICE 'rebuild run %: % day(s) to rebuild%', run.run_id, n,
        CASE WHEN run.resumed THEN ' (resuming)' ELSE '' END;
    FOR s IN SELECT * FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since) LOOP
        PERFORM @extschema@._progress_step('rebuild_warehouse', s.template_name, s.tenant_name, 'day', i - 1, n,
            s.days[1] || '..' || s.days[pg_catalog.array_upper(s.days, 1)], rows);
        r := @extschema@._chunk(true, s.template_name, s.tenant_name, s.days, 'rebuild');
        COMMIT;
        PERFORM @extschema@._enter();
        RAISE NOTICE '%', @extschema@._progress(i, n, s.tenant_name, r);
        i := i + pg_catalog.cardinality(s.days);
        rows := rows + coalesce((r->>'rows')::bigint, 0);
    END LOOP;
    PERFORM @extschema@._progress_end();
    RAISE NOTICE 'rebuild run %: %', run.run_id, @extschema@._rebuild_finish(run.run_id, tenant_name, template_name);
    COMMIT;
    PERFORM @extschema@._leave(prev);
END
$body$;
