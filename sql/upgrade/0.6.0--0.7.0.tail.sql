-- ---------------------------------------------------------------- 0.7.0: per template, jobs
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.6.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- The jobs and reader grants recorded so far were made here; a job is known by where it
-- was made and its id (a restored row's id may be another job's here).
UPDATE @extschema@.cron_jobs SET made_in = @extschema@._here() WHERE made_in IS NULL;
ALTER TABLE @extschema@.cron_jobs ALTER COLUMN made_in SET NOT NULL;
ALTER TABLE @extschema@.cron_jobs DROP CONSTRAINT cron_jobs_pkey;
ALTER TABLE @extschema@.cron_jobs ADD PRIMARY KEY (made_in, jobid);
UPDATE @extschema@.tenant_readers SET made_in = @extschema@._here() WHERE made_in IS NULL;
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN made_in SET NOT NULL;
