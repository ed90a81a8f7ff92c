-- wh 0.10.0 -> 0.11.0: a backfill, a rebuild or a rollup's build that fills a month (a
-- period of the template's grain) with no partition yet builds it aside and attaches it
-- (issue 24, "months loaded in bulk"). The three committing procedures no longer make each
-- chunk's partitions in a transaction of their own first (_wh._prepare_days stays, no
-- longer called by them); _wh.health() computes each figure once (issue 25: it took 16 s at
-- 1,000 tenants x 2 templates x 365 days). No table changes.
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

CREATE OR REPLACE FUNCTION @extschema@.health() RETURNS jsonb
LANGUAGE sql STABLE AS $body$
-- Each figure computed once (the CTEs are materialized): freshness read once for its three
-- counts, the registry scanned once for its totals, the templates it names found by a
-- walk of its primary key rather than a check per registry row.
WITH RECURSIVE fr AS MATERIALIZED (
    SELECT x.stale, x.never_built, x.paused, x.data_present FROM @extschema@.freshness x
), reg AS MATERIALIZED (
    SELECT count(*) AS slices, coalesce(sum(s.row_count), 0) AS registry_rows,
           min(s.range_start) AS oldest_data, max(s.range_end) - 1 AS newest_data
    FROM @extschema@.slices s
), named(template_name) AS (
    (SELECT s.template_name FROM @extschema@.slices s ORDER BY s.template_name LIMIT 1)
    UNION ALL
    SELECT (SELECT s.template_name FROM @extschema@.slices s WHERE s.template_name > n.template_name
            ORDER BY s.template_name LIMIT 1)
    FROM named n WHERE n.template_name IS NOT NULL
), f AS MATERIALIZED (
    SELECT (SELECT count(*) FROM fr WHERE stale AND NOT never_built) AS stale,
           (SELECT count(*) FROM fr WHERE never_built AND NOT paused) AS never_built,
           (SELECT count(*) FROM fr WHERE data_present IS NOT TRUE AND NOT never_built
              AND data_present IS NOT NULL) AS data_missing,
           (SELECT count(*) FROM named n WHERE n.template_name IS NOT NULL
               AND (pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', n.template_name)) IS NULL
                    OR pg_catalog.to_regclass(pg_catalog.format('public.%I', n.template_name)) IS NULL)) AS tables_missing,
           (SELECT count(*) FROM @extschema@.failures WHERE NOT resolved) AS unresolved,
           (SELECT count(*) FROM @extschema@.failures
             WHERE started_at > pg_catalog.now() - interval '24 hours') AS failures_24h,
           (SELECT coalesce(sum(days), 0) FROM @extschema@.gaps) AS missing_days,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'drifted') AS drifted,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'unverifiable') AS unverifiable,
           @extschema@._lost_jobs() AS jobs_missing
)
SELECT pg_catalog.jsonb_build_object(
    'status', CASE WHEN pg_catalog.cardinality(p.problems) = 0 THEN 'ok' ELSE 'degraded' END,
    'problems', pg_catalog.to_jsonb(p.problems),
    'tenants', (SELECT count(*) FROM @extschema@.tenant_connections),
    'templates', (SELECT count(*) FROM @extschema@.mv_templates),
    'slices', reg.slices,
    'registry_rows', reg.registry_rows,
    'stale', f.stale,
    'never_built', f.never_built,
    'data_missing', f.data_missing,
    'tables_missing', f.tables_missing,
    'unresolved_failures', f.unresolved,
    'failures_24h', f.failures_24h,
    'missing_days', f.missing_days,
    'rollup_days_to_build', (SELECT coalesce(sum(days_to_build), 0) FROM @extschema@.rollups),
    'drifted_days', f.drifted,
    'unverifiable_days', f.unverifiable,
    'jobs_missing', f.jobs_missing,
    'oldest_data', reg.oldest_data,
    'newest_data', reg.newest_data,
    'connections_in_use', (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database()),
    'max_connections', pg_catalog.current_setting('max_connections')::int,
    'cache_hit_ratio', (SELECT round(sum(blks_hit)::numeric / nullif(sum(blks_hit + blks_read), 0), 4)
                        FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()),
    'pg_cron', EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'),
    'checked_at', pg_catalog.now())
FROM f CROSS JOIN reg
CROSS JOIN LATERAL (
    SELECT pg_catalog.array_remove(ARRAY[
        CASE WHEN f.unresolved > 0 THEN pg_catalog.format('%s failure(s) not mended by a later run: SELECT * FROM _wh.failures WHERE NOT resolved', f.unresolved) END,
        CASE WHEN f.stale > 0 THEN pg_catalog.format('%s tenant x template pair(s) stale: SELECT * FROM _wh.freshness WHERE stale', f.stale) END,
        CASE WHEN f.never_built > 0 THEN pg_catalog.format('%s tenant x template pair(s) never built: SELECT * FROM _wh.freshness WHERE never_built', f.never_built) END,
        CASE WHEN f.data_missing > 0 THEN pg_catalog.format('%s pair(s) whose newest day the registry lists but the table does not hold (a restored registry?): CALL _wh.rebuild_warehouse()', f.data_missing) END,
        CASE WHEN f.tables_missing > 0 THEN pg_catalog.format('%s template table(s) missing behind registry rows: CALL _wh.rebuild_warehouse()', f.tables_missing) END,
        CASE WHEN f.missing_days > 0 THEN pg_catalog.format('%s day(s) missing between built days: SELECT * FROM _wh.gaps', f.missing_days) END,
        CASE WHEN f.drifted > 0 THEN pg_catalog.format('%s day(s) differ from their source: SELECT * FROM _wh.drift', f.drifted) END,
        CASE WHEN f.unverifiable > 0 THEN pg_catalog.format('%s day(s) could not be verified: SELECT * FROM _wh.drift', f.unverifiable) END,
        CASE WHEN f.jobs_missing > 0 THEN pg_catalog.format('%s pg_cron job(s) wh made are gone (a restore?): SELECT _wh.finish_restore()', f.jobs_missing) END
    ], NULL) AS problems
) p
$body$;
