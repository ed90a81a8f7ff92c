-- PL/pgSQL where PostgreSQL forces it: a real subtransaction per day (an exception
-- block), and a procedure that COMMITs after each day. Each calls into Rust.

-- Run one day's operation; on any error, roll back just that day and record the failure.
CREATE FUNCTION @extschema@.run_isolated(
    op text, template_name text, tenant_name text, target_date date, options jsonb DEFAULT '{}'
) RETURNS jsonb LANGUAGE plpgsql AS $body$
DECLARE
    st text;
    msg text;
BEGIN
    BEGIN
        RETURN @extschema@._run_op(op, template_name, tenant_name, target_date, options);
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
        -- A remote statement timeout fails this day; a local cancel (statement_timeout,
        -- pg_cancel_backend, Ctrl-C) still stops the whole call.
        IF st = '57014' AND msg NOT LIKE 'wh: tenant %' THEN
            RAISE;
        END IF;
    END;
    RETURN @extschema@._record_failure(op, template_name, tenant_name, target_date, st, msg, options);
END
$body$;
COMMENT ON FUNCTION @extschema@.run_isolated(text, text, text, date, jsonb) IS
    'wh internal: one day''s operation in its own subtransaction; failures are logged and returned, not raised';

-- Build every day of [start_date, end_date], committing after each one and printing
-- progress. A rerun skips days already built (unless force_recreate), so it resumes.
CREATE PROCEDURE @extschema@.backfill(
    template_name text, tenant_name text, start_date date, end_date date,
    force_recreate boolean DEFAULT false, max_days integer DEFAULT 3660
) LANGUAGE plpgsql AS $body$
DECLARE
    n integer;
    i integer := 0;
    d date;
    r jsonb;
    ok integer := 0;
    skipped integer := 0;
    failed integer := 0;
    total bigint := 0;
BEGIN
    n := @extschema@._plan_window(template_name, tenant_name, start_date, end_date, max_days);
    d := start_date;
    WHILE d <= end_date LOOP
        i := i + 1;
        r := @extschema@.run_isolated(CASE WHEN force_recreate THEN 'refresh' ELSE 'create' END,
                                      template_name, tenant_name, d, '{"operation": "backfill"}');
        COMMIT;  -- the day is durable before its progress line is printed
        RAISE NOTICE '%', @extschema@._progress(i, n, r);
        CASE r->>'status'
            WHEN 'succeeded' THEN ok := ok + 1; total := total + coalesce((r->>'rows')::bigint, 0);
            WHEN 'skipped' THEN skipped := skipped + 1;
            ELSE failed := failed + 1;
        END CASE;
        d := d + 1;
    END LOOP;
    RAISE NOTICE 'backfill % %: % built, % skipped, % failed, % rows', template_name, tenant_name,
        ok, skipped, failed, total;
    IF failed > 0 THEN
        RAISE WARNING 'backfill % %: % day(s) failed; see _wh.run_log; a rerun retries them',
            template_name, tenant_name, failed;
    END IF;
END
$body$;
COMMENT ON PROCEDURE @extschema@.backfill(text, text, date, date, boolean, integer) IS
    'Build a date range one day per transaction; resumable (skips built days unless force_recreate)';

-- Disaster recovery for big warehouses: recreate every slice of _wh.slices (in scope),
-- committing after each one. A rerun resumes the unfinished run of the same scope,
-- skipping slices it already rebuilt.
CREATE PROCEDURE @extschema@.rebuild_warehouse(tenant_name text DEFAULT NULL, template_name text DEFAULT NULL)
LANGUAGE plpgsql AS $body$
DECLARE
    run record;
    s record;
    n integer;
    i integer := 0;
    r jsonb;
BEGIN
    SELECT * INTO run FROM @extschema@._rebuild_begin(tenant_name, template_name);
    COMMIT;
    SELECT count(*) INTO n FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since);
    RAISE NOTICE 'rebuild run %: % slice(s) to rebuild%', run.run_id, n,
        CASE WHEN run.resumed THEN ' (resuming)' ELSE '' END;
    FOR s IN SELECT * FROM @extschema@._rebuild_todo(tenant_name, template_name, run.since) LOOP
        i := i + 1;
        r := @extschema@.run_isolated(CASE s.kind WHEN 'year' THEN 'rebuild_year' ELSE 'refresh' END,
                                      s.template_name, s.tenant_name, s.range_start, '{"operation": "rebuild"}');
        COMMIT;
        RAISE NOTICE '%', @extschema@._progress(i, n, r);
    END LOOP;
    RAISE NOTICE 'rebuild run %: %', run.run_id, @extschema@._rebuild_finish(run.run_id, tenant_name, template_name);
    COMMIT;
END
$body$;

-- What pg_cron runs (PL/pgSQL, so the COMMIT inside is allowed). The run log is committed first, then the job fails if any day failed,
-- so a failed refresh shows as failed in both _wh.run_log and cron.job_run_details.
CREATE PROCEDURE @extschema@._run_scheduled(kind text, template_name text, tenant_name text)
LANGUAGE plpgsql AS $body$
DECLARE
    r jsonb;
BEGIN
    r := @extschema@._scheduled(kind, template_name, tenant_name);
    COMMIT;
    PERFORM @extschema@._raise_if_failed(r);
END
$body$;

-- One tenant: today and the template's lookback days.
CREATE PROCEDURE @extschema@.run_scheduled(template_name text, tenant_name text)
LANGUAGE plpgsql AS $body$ BEGIN CALL @extschema@._run_scheduled('tenant', template_name, tenant_name); END $body$;

-- Every tenant of the template at once (update_all_tenants).
CREATE PROCEDURE @extschema@.run_scheduled_all(template_name text)
LANGUAGE plpgsql AS $body$ BEGIN CALL @extschema@._run_scheduled('all', template_name, NULL); END $body$;

-- Last year folded for every tenant that has its days.
CREATE PROCEDURE @extschema@.run_scheduled_fold(template_name text)
LANGUAGE plpgsql AS $body$ BEGIN CALL @extschema@._run_scheduled('fold', template_name, NULL); END $body$;
