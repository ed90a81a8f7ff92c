-- The seeds' foodlogstats template: 20 columns of food-waste log entries, one row per
-- logged item, joined to the store and station it was logged at. Run as a wh_admin member:
--   psql -f sql/templates/foodlogstats.sql
SELECT _wh.set_template(
    template_name      => 'foodlogstats',
    description        => 'Food log entries with store, station and region (seeds: phood_foodlogsum)',
    query_template     => $q$
SELECT f.id, l.store, s.station, f.validation_status, l.region, f.action_taken_id, f.action_taken,
       f.name, f.quantity, f.average_weight, f.weight, f.client, f.food_category, f.cost_per_lb,
       f.target_weight, f.price_per_lb, f.action_reason, f.client_id, f.logged_time, f.flags
FROM phood_foodlogsum f
JOIN stations s ON s.station_id = f.station_id
JOIN locations l ON l.location_id = s.location_id
WHERE f.logged_time >= '{TARGET_DATE}'::date
  AND f.logged_time <  '{TARGET_DATE}'::date + 1
$q$,
    column_definitions => 'id bigint, store text, station text, validation_status text, region text, '
                          'action_taken_id integer, action_taken text, name text, quantity integer, '
                          'average_weight numeric(10,3), weight numeric(12,3), client text, food_category text, '
                          'cost_per_lb numeric(10,2), target_weight numeric(10,3), price_per_lb numeric(10,2), '
                          'action_reason text, client_id integer, logged_time timestamptz, flags text[]',
    time_column        => 'logged_time',
    unique_key         => 'id',
    indexes            => ARRAY['unique (id)', '(logged_time)', '(store)'],
    lookback_days      => 1
);
