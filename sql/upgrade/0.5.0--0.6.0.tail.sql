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
              AND j.command OPERATOR(pg_catalog.~) '^(CALL|SELECT) _wh\.[a-z_]+\('::text
            ON CONFLICT DO NOTHING $q$;
    END IF;
END
$jobs$;
