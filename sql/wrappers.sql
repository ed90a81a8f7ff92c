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
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
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
        RAISE NOTICE '%', @extschema@._progress(i, n, r);
        CASE r->>'status'
            WHEN 'succeeded' THEN ok := ok + 1; total := total + coalesce((r->>'rows')::bigint, 0);
            WHEN 'skipped' THEN skipped := skipped + 1;
            ELSE failed := failed + 1;
        END CASE;
        COMMIT;
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
