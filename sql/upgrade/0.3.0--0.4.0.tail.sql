
-- ---------------------------------------------------------------- 0.4.0: per template
-- The seeds' update_<template>(…) and create_<template>_mv(…) for every template already set
-- (a fresh install makes them when a template is set).
SELECT @extschema@._seed_functions(template_name) FROM @extschema@.mv_templates ORDER BY 1;
