-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.11.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- Tenant jobs into the refresh pool: each job wh:<template>:<tenant> whose schedule fires at
-- a fixed period ('10 */4 * * *': every 4 hours at minute 10) becomes the tenant's own
-- period in the pool, due next when the job would have fired, and the job is unscheduled;
-- a job of uneven times ('0 9 * * 1-5') stays as it is. The pool's workers are made as the
-- login that owned the jobs moved (pg_cron runs a job as its owner; this script runs as a
-- superuser, and wh's jobs never run as one).
DO $adopt$
DECLARE
    r jsonb;
    k integer;
    id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'pg_cron') THEN
        RETURN;
    END IF;
    r := @extschema@._pool_adopt_jobs();
    -- The owner is checked again now (it may have changed since its jobs were made): an
    -- operator login, never a superuser. Else no worker is made, and the update says so.
    IF r->>'owner' IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_catalog.pg_roles o
        WHERE o.rolname OPERATOR(pg_catalog.=) (r->>'owner')::name AND o.rolcanlogin AND NOT o.rolsuper
          AND pg_catalog.pg_has_role(o.oid, 'wh_admin', 'MEMBER')) THEN
        RAISE NOTICE 'wh 0.12.0: the pool''s workers were not made: % (the owner of the jobs moved) is no longer an operator login; an operator makes them with SELECT _wh.schedule_refresh(…, tenant_name => …) or any schedule_refresh call',
            r->>'owner';
    ELSIF r->>'owner' IS NOT NULL THEN
        FOR k IN 1 .. (r->>'workers')::integer LOOP
            id := cron.schedule_in_database('wh:pool:' OPERATOR(pg_catalog.||) k, '* * * * *',
                                            'CALL _wh.run_pool(' OPERATOR(pg_catalog.||) k OPERATOR(pg_catalog.||) ')',
                                            pg_catalog.current_database(), r->>'owner', true);
            INSERT INTO @extschema@.cron_jobs (jobid, username, jobname, schedule, command, active, made_in)
            SELECT j.jobid, j.username::name, j.jobname, j.schedule, j.command, j.active, @extschema@._here()
            FROM cron.job j WHERE j.jobid OPERATOR(pg_catalog.=) id;
        END LOOP;
    END IF;
    RAISE NOTICE 'wh 0.12.0: % tenant job(s) moved into the refresh pool, % kept as jobs (uneven times, or stopped): %',
        pg_catalog.jsonb_array_length(r->'moved'), pg_catalog.jsonb_array_length(r->'kept'), r;
END
$adopt$;
