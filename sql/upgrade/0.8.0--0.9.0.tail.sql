-- The seeds' update_<template>(…) and create_<template>_mv(…) were dropped with the 0.8.0
-- routines above: made again for every template set (as a fresh install makes them).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;
