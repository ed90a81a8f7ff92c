
-- ---------------------------------------------------------------- 0.13.0 routines, views, grants
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.12.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- Every pair's figures, from the registry as it stands. (The triggers on _wh.slices exist
-- from here on: a later script drops them before the routines, _note_pair_changes() being one.)
SELECT @extschema@._settle_pairs(true);
