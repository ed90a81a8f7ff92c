-- ---------------------------------------------------------------- 0.7.0: per template, jobs
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.6.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- The jobs recorded so far were made here.
UPDATE @extschema@.cron_jobs SET made_in = @extschema@._here() WHERE made_in IS NULL;
ALTER TABLE @extschema@.cron_jobs ALTER COLUMN made_in SET NOT NULL;
