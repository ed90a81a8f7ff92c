
-- ---------------------------------------------------------------- 0.15.0 routines, views, grants
-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.14.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;

-- Every pair's figures again (changes between the drop of the triggers and here: none, this
-- script holds the extension; computed anyway, as 0.14.0's script did).
SELECT @extschema@._settle_pairs(true);
