-- PL/pgSQL where PostgreSQL forces it: lock waits that give up and retry, a secret kept
-- out of an error, and procedures that COMMIT after each chunk. Each calls into Rust;
-- loops over days, and the subtransaction around each run of days, live in Rust.

-- Store a tenant's login in its server's user mapping. The DDL carries the password: if it
-- fails (cancelled, a concurrent change), the error is caught here and raised again
-- without the statement, so no log line ever holds the password.
CREATE FUNCTION @extschema@._set_user_mapping(server text, username text, password text, exists_already boolean)
RETURNS void LANGUAGE plpgsql AS $body$
DECLARE
    st text;
    msg text;
BEGIN
    BEGIN
        IF exists_already THEN
            EXECUTE pg_catalog.format('ALTER USER MAPPING FOR PUBLIC SERVER %I OPTIONS (SET user %L, SET password %L)',
                                      server, username, password);
        ELSE
            EXECUTE pg_catalog.format('CREATE USER MAPPING FOR PUBLIC SERVER %I OPTIONS (user %L, password %L)',
                                      server, username, password);
        END IF;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        RAISE EXCEPTION 'wh: could not store the login of server %: %', server,
            pg_catalog.replace(msg, password, '***') USING ERRCODE = st;
    END;
END
$body$;

-- DDL on a relation readers use: each try waits at most lock_ms for its locks (so a slow
-- reader delays wh, and the readers queued behind wh wait at most that long), then rolls
-- back and retries after a short sleep.
-- Returns the number of tries it took; with give_up, 0 when it never got the locks.
CREATE FUNCTION @extschema@._ddl(stmts text[], lock_ms integer DEFAULT 200, tries integer DEFAULT 40, give_up boolean DEFAULT false)
RETURNS integer LANGUAGE plpgsql AS $body$
DECLARE
    attempt integer := 0;
    s text;
    before text := pg_catalog.current_setting('lock_timeout');
BEGIN
    LOOP
        attempt := attempt + 1;
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', pg_catalog.format('%sms', lock_ms), true);
            FOREACH s IN ARRAY stmts LOOP
                EXECUTE s;
            END LOOP;
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
            RETURN attempt;
        EXCEPTION WHEN lock_not_available THEN
            IF attempt >= tries AND give_up THEN
                RETURN 0;
            ELSIF attempt >= tries THEN
                RAISE EXCEPTION 'wh: gave up after % tries of % ms waiting for a lock (readers or another wh run hold it): %',
                    attempt, lock_ms, SQLERRM USING ERRCODE = 'lock_not_available';
            END IF;
        END;
        PERFORM pg_catalog.pg_sleep(LEAST(0.05 * attempt, 1.0));
    END LOOP;
END
$body$;

-- Claim days of one tenant and template: the template's row FOR KEY SHARE (a fold holds
-- it FOR UPDATE), then one row of _wh.slices per day FOR UPDATE (inserted as a
-- placeholder when the day is new). Returns the days this transaction now holds; without
-- wait, days another session holds are left out (the caller reports them busy).
CREATE FUNCTION @extschema@._claim_days(p_template text, p_tenant text, p_days date[], p_wait boolean)
RETURNS date[] LANGUAGE plpgsql AS $body$
DECLARE
    got date[];
    d date;
    before text := pg_catalog.current_setting('lock_timeout');
    -- Waiting (wait_for_lock) is bounded too: the caller's lock_timeout, at most 10 s.
    short text := CASE WHEN NOT p_wait THEN '100ms'
                       WHEN before::interval = '0'::interval OR before::interval > '10s'::interval THEN '10s'
                       ELSE before END;
BEGIN
    -- The template first: while a fold or a partition drop holds it, every day is busy.
    BEGIN
        PERFORM pg_catalog.set_config('lock_timeout', short, true);
        PERFORM 1 FROM @extschema@.mv_templates m WHERE m.template_name = p_template FOR KEY SHARE;
        PERFORM pg_catalog.set_config('lock_timeout', before, true);
    EXCEPTION WHEN lock_not_available THEN
        RETURN '{}';
    END;
    BEGIN
        PERFORM pg_catalog.set_config('lock_timeout', short, true);
        INSERT INTO @extschema@.slices AS s (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count)
        SELECT p_template, p_tenant, p_tenant, p_template || '_' || pg_catalog.to_char(x.d, 'YYYY_MM_DD'), 'day', x.d, x.d + 1, 0
        FROM pg_catalog.unnest(p_days) AS x(d)
        ON CONFLICT DO NOTHING;
        PERFORM pg_catalog.set_config('lock_timeout', before, true);
    EXCEPTION WHEN lock_not_available THEN
        -- Another session is creating one of these days: try the days one by one (those
        -- still held stay out).
        FOREACH d IN ARRAY p_days LOOP
            BEGIN
                PERFORM pg_catalog.set_config('lock_timeout', short, true);
                INSERT INTO @extschema@.slices AS s (template_name, tenant_name, schema_name, slice_name, kind, range_start, range_end, row_count)
                VALUES (p_template, p_tenant, p_tenant, p_template || '_' || pg_catalog.to_char(d, 'YYYY_MM_DD'), 'day', d, d + 1, 0)
                ON CONFLICT DO NOTHING;
                PERFORM pg_catalog.set_config('lock_timeout', before, true);
            EXCEPTION WHEN lock_not_available THEN
                NULL;
            END;
        END LOOP;
    END;
    IF p_wait THEN
        BEGIN
            PERFORM pg_catalog.set_config('lock_timeout', short, true);
            SELECT pg_catalog.array_agg(q.range_start ORDER BY q.range_start) INTO got FROM (
                SELECT s.range_start FROM @extschema@.slices s
                WHERE s.template_name = p_template AND s.tenant_name = p_tenant AND s.kind = 'day' AND s.range_start = ANY (p_days)
                ORDER BY s.range_start FOR UPDATE OF s) q;
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
        EXCEPTION WHEN lock_not_available THEN
            PERFORM pg_catalog.set_config('lock_timeout', before, true);
            RETURN '{}';  -- still held after the bounded wait: every day is busy
        END;
    ELSE
        SELECT pg_catalog.array_agg(q.range_start ORDER BY q.range_start) INTO got FROM (
            SELECT s.range_start FROM @extschema@.slices s
            WHERE s.template_name = p_template AND s.tenant_name = p_tenant AND s.kind = 'day' AND s.range_start = ANY (p_days)
            ORDER BY s.range_start FOR UPDATE OF s SKIP LOCKED) q;
    END IF;
    RETURN coalesce(got, '{}');
END
$body$;

-- Take a scheduled run's lock (a row of _wh.run_locks) for this transaction, or say it is
-- busy. Never waits longer than 100 ms (a first run of the same job inserting the row).
CREATE FUNCTION @extschema@._try_run_lock(p_key text) RETURNS boolean
LANGUAGE plpgsql AS $body$
DECLARE
    before text := pg_catalog.current_setting('lock_timeout');
    got boolean;
BEGIN
    PERFORM pg_catalog.set_config('lock_timeout', '100ms', true);
    INSERT INTO @extschema@.run_locks AS l (lock_key) VALUES (p_key) ON CONFLICT DO NOTHING;
    UPDATE @extschema@.run_locks AS l SET taken_by = session_user, taken_at = pg_catalog.now()
    WHERE l.lock_key = (SELECT x.lock_key FROM @extschema@.run_locks x WHERE x.lock_key = p_key FOR UPDATE SKIP LOCKED)
    RETURNING true INTO got;
    PERFORM pg_catalog.set_config('lock_timeout', before, true);
    RETURN coalesce(got, false);
EXCEPTION WHEN lock_not_available THEN
    PERFORM pg_catalog.set_config('lock_timeout', before, true);
    RETURN false;
END
$body$;

-- The pairs listed in _wh.pair_changes folded into _wh.pair_stats (with `everything`, every
-- pair of the registry computed again: the nightly maintenance job, and after a restore).
-- Called last in a writer's transaction, it never waits: while another session settles
-- (or at REPEATABLE READ, a settle committed since this snapshot), it does nothing, and its
-- pairs stay listed: the views compute them from the registry until the next settle. A
-- change not committed yet stays listed too. The pairs settled.
CREATE FUNCTION @extschema@._settle_pairs(everything boolean DEFAULT false) RETURNS bigint
LANGUAGE plpgsql AS $body$
DECLARE
    templates text[];
    tenants text[];
BEGIN
    IF NOT @extschema@._try_run_lock('wh:pair_stats') THEN
        RETURN 0;
    END IF;
    -- (A statement of its own, so the figures below are read after every change it takes.)
    WITH gone AS (DELETE FROM @extschema@.pair_changes c RETURNING c.template_name, c.tenant_name)
    SELECT pg_catalog.array_agg(g.template_name), pg_catalog.array_agg(g.tenant_name) INTO templates, tenants
    FROM (SELECT DISTINCT gone.template_name, gone.tenant_name FROM gone) g;
    IF everything THEN
        DELETE FROM @extschema@.pair_stats;
        SELECT pg_catalog.array_agg(p.template_name), pg_catalog.array_agg(p.tenant_name) INTO templates, tenants
        FROM (SELECT DISTINCT s.template_name, s.tenant_name FROM @extschema@.slices s) p;
    ELSE
        DELETE FROM @extschema@.pair_stats p
        USING unnest(templates, tenants) AS u(template_name, tenant_name)
        WHERE p.template_name = u.template_name AND p.tenant_name = u.tenant_name;
    END IF;
    INSERT INTO @extschema@.pair_stats SELECT * FROM @extschema@._pair_figures(templates, tenants);
    RETURN coalesce(pg_catalog.cardinality(templates), 0);
EXCEPTION WHEN serialization_failure OR deadlock_detected THEN
    RETURN 0;  -- (rolled back to its start: the writer's own work stands)
END
$body$;

-- Build every day of [start_date, end_date], a chunk of days (at most a month) per remote
-- query, committing after each chunk and printing its progress. A rerun skips days
-- already built (unless force_recreate), so it resumes.
CREATE PROCEDURE @extschema@.backfill(
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
        PERFORM @extschema@._settle_pairs();
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
COMMENT ON PROCEDURE @extschema@.backfill(text, text, date, date, boolean, integer, integer) IS
    'Build a date range a chunk of days per remote query and per transaction; resumable (skips built days unless force_recreate)';

-- A rollup declared after its base holds days: compute every day the base holds and the
-- rollup does not, a chunk of one tenant's days per transaction, from the stored base rows
-- (no source is asked). Resumable: a rerun builds what is left.
CREATE PROCEDURE @extschema@.build_rollup(rollup_name text, chunk_days integer DEFAULT 31)
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
        PERFORM @extschema@._settle_pairs();
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
COMMENT ON PROCEDURE @extschema@.build_rollup(text, integer) IS
    'Build a rollup for every day its base holds and it does not, from the stored base rows, a chunk per transaction; resumable';

-- Disaster recovery for big warehouses: fetch every tenant-day of _wh.slices (in scope)
-- again, a chunk per remote query, committing after each chunk. A rerun resumes the
-- unfinished run of the same scope, skipping days it already refreshed.
CREATE PROCEDURE @extschema@.rebuild_warehouse(tenant_name text DEFAULT NULL, template_name text DEFAULT NULL)
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
        PERFORM @extschema@._settle_pairs();
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

-- Storage 0.1.0 -> 0.2.0, after ALTER EXTENSION wh UPDATE: every tenant's day and year
-- partitions move into public.<template>, a tenant per transaction, verified per day
-- before the old tables are dropped. Rerunnable: it continues with what is left.
CREATE PROCEDURE @extschema@.migrate_storage()
LANGUAGE plpgsql AS $body$
DECLARE
    p record;
    r jsonb;
    prepared text[] := '{}';
    n integer := 0;
    prev text[] := @extschema@._enter();
BEGIN
    FOR p IN SELECT * FROM @extschema@._migrate_plan() LOOP
        IF NOT p.template_name = ANY (prepared) THEN
            RAISE NOTICE 'migrate %: %', p.template_name, @extschema@._migrate_prepare(p.template_name);
            COMMIT;
            PERFORM @extschema@._enter();
            prepared := prepared || p.template_name;
        END IF;
        r := @extschema@._migrate_tenant(p.template_name, p.tenant_name);
        COMMIT;
        PERFORM @extschema@._enter();
        n := n + 1;
        RAISE NOTICE 'migrate % %: % rows, % days, verified', p.template_name, p.tenant_name, r->>'rows', r->'details'->>'days';
    END LOOP;
    RAISE NOTICE 'migrate_storage: % tenant table(s) moved', n;
    PERFORM @extschema@._leave(prev);
END
$body$;

-- What pg_cron runs (PL/pgSQL, so the COMMIT inside is allowed). The run log is committed
-- first, then the job fails if any day failed, so a failed refresh shows as failed in both
-- _wh.run_log and cron.job_run_details.
-- One tenant: today and the template's lookback days.
CREATE PROCEDURE @extschema@.run_scheduled(template_name text, tenant_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    prev text[] := @extschema@._enter();
BEGIN
    r := @extschema@._scheduled_tenant(template_name, tenant_name);
    PERFORM @extschema@._settle_pairs();
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- Every tenant of the template at once, each tenant's days committed as soon as its answer
-- is stored, so a hung source never holds the other tenants' rows (or their days' locks)
-- until its deadline: a fan-out begun, stepped a transaction at a time, ended. With `job`
-- (the wh:<template>:all job), each transaction first takes the job's lock.
CREATE PROCEDURE @extschema@._fanout_committing(template_name text, target_date date, job boolean, INOUT result jsonb)
LANGUAGE plpgsql AS $body$
DECLARE
    prev text[] := @extschema@._enter();
BEGIN
    result := @extschema@._fanout_begin(template_name, target_date, job);
    IF result IS NULL THEN
        COMMIT;
        PERFORM @extschema@._enter();
        WHILE @extschema@._fanout_step(template_name, job) LOOP
            PERFORM @extschema@._settle_pairs();
            COMMIT;
            PERFORM @extschema@._enter();
        END LOOP;
        result := @extschema@._fanout_end();
    END IF;
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
END
$body$;

-- update_all_tenants, committing each tenant as it answers:
-- CALL _wh.refresh_all_tenants('foodlogstats');  (the result comes back as a row)
CREATE PROCEDURE @extschema@.refresh_all_tenants(template_name text, target_date date DEFAULT @extschema@.current_date_utc(),
                                                 INOUT result jsonb DEFAULT NULL)
LANGUAGE plpgsql AS $body$
BEGIN
    CALL @extschema@._fanout_committing(template_name, target_date, false, result);
END
$body$;
COMMENT ON PROCEDURE @extschema@.refresh_all_tenants(text, date, jsonb) IS
    'wh: today + lookback for every tenant, remote queries overlapped, each tenant committed as its answer is stored';

-- The wh:<template>:all job: the same, under the job's lock; fails the job if a day failed.
CREATE PROCEDURE @extschema@.run_scheduled_all(template_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
BEGIN
    CALL @extschema@._fanout_committing(template_name, @extschema@.current_date_utc(), true, r);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- Last year folded for every tenant that has its days.
-- The wh:<template>:verify job: every tenant not paused, its last `lookback` up to
-- yesterday, a tenant per transaction (findings in _wh.drift).
CREATE PROCEDURE @extschema@.run_scheduled_verify(template_name text, lookback interval DEFAULT '35 days', repair boolean DEFAULT false)
LANGUAGE plpgsql AS $body$
DECLARE
    t record;
    d date;
    prev text[] := @extschema@._enter();
BEGIN
    d := @extschema@.current_date_utc();
    FOR t IN SELECT c.tenant_name FROM @extschema@.tenant_connections c WHERE c.paused_at IS NULL ORDER BY 1 LOOP
        PERFORM @extschema@.verify(template_name, t.tenant_name, (d - lookback)::date, d - 1, repair);
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
    END LOOP;
    PERFORM @extschema@._leave(prev);
END
$body$;

CREATE PROCEDURE @extschema@.run_scheduled_fold(template_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    prev text[] := @extschema@._enter();
BEGIN
    r := @extschema@._scheduled_fold(template_name);
    PERFORM @extschema@._settle_pairs();
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- A worker of the refresh pool (the wh:pool:<n> job): the most overdue tenant of the
-- queue refreshed and committed, then the next, until none is due or none has room (a
-- place among wh.max_source_connections and on its source server). Fails the job at the
-- end if a tenant's day failed (each is in _wh.run_log as it happened).
CREATE PROCEDURE @extschema@.run_pool(worker integer DEFAULT 1)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
    failed jsonb := '[]';
    prev text[] := @extschema@._enter();
BEGIN
    PERFORM @extschema@._pool_sync();
    COMMIT;
    PERFORM @extschema@._enter();
    LOOP
        r := @extschema@._pool_next(worker);
        EXIT WHEN r IS NULL;
        IF r->>'status' IN ('failed', 'partial') THEN
            -- A tenant's days, or the tenant's run itself when it failed as a whole.
            failed := failed || CASE WHEN r ? 'results' THEN r->'results' ELSE pg_catalog.jsonb_build_array(r) END;
        END IF;
        -- The tenant's figures for the monitoring views, in the same transaction.
        PERFORM @extschema@._settle_pairs();
        COMMIT;
        PERFORM @extschema@._enter();
    END LOOP;
    COMMIT;
    PERFORM @extschema@._enter();
    PERFORM @extschema@._leave(prev);
    IF pg_catalog.jsonb_array_length(failed) > 0 THEN
        PERFORM @extschema@._raise_if_failed(pg_catalog.jsonb_build_object('status', 'partial', 'results', failed));
    END IF;
END
$body$;
COMMENT ON PROCEDURE @extschema@.run_pool(integer) IS
    'wh: a worker of the refresh pool: every due tenant it can take, the most overdue first, each committed';
