-- Monitoring: plain views and functions a DBA can query from psql or a dashboard.

-- Overrides of wh's defaults (empty at install, so a restored dump never collides):
--   run_log_retention  how long _wh.prune_run_log() keeps run_log rows      (default 30 days)
--   stale_after        freshness threshold when a template sets none        (default 8 hours,
--                      2x the default 4-hour schedule)
CREATE TABLE @extschema@.settings (
    key         text PRIMARY KEY CHECK (key IN ('run_log_retention', 'stale_after')),
    value       text NOT NULL CHECK (value::interval > '0'::interval),
    description text
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.settings', '');

-- The figures of the pairs named (templates[i], tenants[i]), from their registry rows. The
-- days missing between a pair's first and last day: its span less the days it holds (a
-- registry row per day: the primary key).
CREATE FUNCTION @extschema@._pair_figures(p_templates text[], p_tenants text[])
RETURNS TABLE (template_name text, tenant_name text, slices bigint, rows bigint, oldest_day date,
               newest_day date, newest_end date, last_refreshed_at timestamptz, missing_days bigint)
LANGUAGE sql STABLE AS $body$
SELECT p.template_name, p.tenant_name, f.slices, f.rows, f.oldest_day, f.newest_day, f.newest_end,
       f.last_refreshed_at, coalesce(f.last_day - f.first_day + 1 - f.days, 0)
FROM (SELECT DISTINCT u.template_name, u.tenant_name
      FROM unnest(p_templates, p_tenants) AS u(template_name, tenant_name)) p
CROSS JOIN LATERAL (
    SELECT count(*) AS slices, sum(s.row_count)::bigint AS rows, min(s.range_start) AS oldest_day,
           max(s.range_start) AS newest_day, max(s.range_end) AS newest_end,
           max(s.refreshed_at) FILTER (WHERE s.kind = 'day') AS last_refreshed_at,
           min(s.range_start) FILTER (WHERE s.kind = 'day') AS first_day,
           max(s.range_start) FILTER (WHERE s.kind = 'day') AS last_day,
           count(*) FILTER (WHERE s.kind = 'day') AS days
    FROM @extschema@.slices s
    WHERE s.tenant_name = p.tenant_name AND s.template_name = p.template_name
) f
WHERE f.slices > 0
$body$;

-- What keeps _wh.pair_changes (sql/bootstrap.sql): the pairs a statement on _wh.slices touched.
CREATE FUNCTION @extschema@._note_pair_changes() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO @extschema@.pair_changes SELECT DISTINCT n.template_name, n.tenant_name FROM changed_new n;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO @extschema@.pair_changes SELECT DISTINCT o.template_name, o.tenant_name FROM changed_old o;
    ELSE
        INSERT INTO @extschema@.pair_changes
        SELECT n.template_name, n.tenant_name FROM changed_new n
        UNION SELECT o.template_name, o.tenant_name FROM changed_old o;
    END IF;
    RETURN NULL;
END
$body$;
CREATE TRIGGER wh_pair_changes_insert AFTER INSERT ON @extschema@.slices
    REFERENCING NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();
CREATE TRIGGER wh_pair_changes_update AFTER UPDATE ON @extschema@.slices
    REFERENCING OLD TABLE AS changed_old NEW TABLE AS changed_new
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();
CREATE TRIGGER wh_pair_changes_delete AFTER DELETE ON @extschema@.slices
    REFERENCING OLD TABLE AS changed_old
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._note_pair_changes();

-- Every tenant x template pair's figures now: the kept ones (_wh.pair_stats) of the pairs
-- unchanged since they were settled, and the changed pairs' computed from the registry.
CREATE VIEW @extschema@._pairs AS
WITH changed AS MATERIALIZED (
    SELECT DISTINCT c.template_name, c.tenant_name FROM @extschema@.pair_changes c
)
SELECT p.template_name, p.tenant_name, p.slices, p.rows, p.oldest_day, p.newest_day, p.newest_end,
       p.last_refreshed_at, p.missing_days
FROM @extschema@.pair_stats p
WHERE NOT EXISTS (SELECT 1 FROM changed c WHERE c.template_name = p.template_name AND c.tenant_name = p.tenant_name)
UNION ALL
SELECT f.template_name, f.tenant_name, f.slices, f.rows, f.oldest_day, f.newest_day, f.newest_end,
       f.last_refreshed_at, f.missing_days
FROM (SELECT pg_catalog.array_agg(c.template_name) AS templates, pg_catalog.array_agg(c.tenant_name) AS tenants
      FROM changed c) c
CROSS JOIN LATERAL @extschema@._pair_figures(c.templates, c.tenants) f;

-- Citus: each distributed relation of _wh_data (a template's table and each partition),
-- its shards and their bytes on the workers with their indexes, from one citus_shard_sizes()
-- (a query per worker, as wh_admin); the coordinator keeps only empty shells of them.
-- Nothing without Citus.
CREATE FUNCTION @extschema@._distributed_sizes() RETURNS TABLE (relid oid, shards integer, bytes bigint)
LANGUAGE plpgsql STABLE AS $body$
DECLARE
    any_distributed boolean;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname OPERATOR(pg_catalog.=) 'citus'::pg_catalog.name) THEN
        RETURN;
    END IF;
    -- No wh table distributed: nothing to ask the workers (one may be down).
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.logicalrelid '
            'WHERE c.relnamespace OPERATOR(pg_catalog.=) ''_wh_data''::pg_catalog.regnamespace)' INTO any_distributed;
    IF NOT any_distributed THEN
        RETURN;
    END IF;
    -- bytes: every placement's (what the disks hold); shards: each once.
    RETURN QUERY EXECUTE
        'SELECT s.logicalrelid::pg_catalog.oid, pg_catalog.count(DISTINCT s.shardid)::pg_catalog.int4, '
        '       coalesce(pg_catalog.sum(z.size), 0)::pg_catalog.int8 '
        'FROM pg_catalog.pg_dist_shard s '
        'JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.logicalrelid '
        'LEFT JOIN pg_catalog.citus_shard_sizes() z ON z.shard_id OPERATOR(pg_catalog.=) s.shardid '
        'WHERE c.relnamespace OPERATOR(pg_catalog.=) ''_wh_data''::pg_catalog.regnamespace GROUP BY 1';
END
$body$;

-- Per tenant x template: days held, rows, oldest/newest day, and an estimate of the bytes
-- its rows take (the template's table bytes, shared out by row count: tenants share
-- partitions; a distributed table's counted on the workers).
CREATE VIEW @extschema@.storage AS
WITH dist AS MATERIALIZED (
    SELECT d.relid, d.bytes FROM @extschema@._distributed_sizes() d
), tbl AS (
    SELECT m.template_name,
           coalesce(sum(coalesce(d.bytes, pg_catalog.pg_total_relation_size(i.inhrelid))), 0)::bigint AS bytes
    FROM @extschema@.mv_templates m
    LEFT JOIN pg_catalog.pg_inherits i
           ON i.inhparent = pg_catalog.to_regclass(pg_catalog.quote_ident('_wh_data') OPERATOR(pg_catalog.||) '.'
                                                   OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.template_name))
    LEFT JOIN dist d ON d.relid = i.inhrelid
    GROUP BY m.template_name
), pairs AS MATERIALIZED (
    SELECT * FROM @extschema@._pairs
), tot AS (
    SELECT p.template_name, sum(p.rows) AS rows FROM pairs p GROUP BY p.template_name
)
SELECT p.tenant_name, p.template_name,
       p.slices AS days,
       p.rows,
       (tbl.bytes::numeric OPERATOR(pg_catalog.*) p.rows OPERATOR(pg_catalog./) NULLIF(tot.rows, 0))::bigint AS est_bytes,
       pg_catalog.pg_size_pretty((tbl.bytes::numeric OPERATOR(pg_catalog.*) p.rows OPERATOR(pg_catalog./) NULLIF(tot.rows, 0))::bigint) AS est_size,
       p.oldest_day,
       p.newest_day
FROM pairs p
JOIN tbl ON tbl.template_name = p.template_name
JOIN tot ON tot.template_name = p.template_name;

-- Missing days: for each tenant x template, every run of days with no slice between its
-- oldest and newest built day (a day built empty is not missing), with the call that
-- fills it. health() counts them. (Only the pairs whose figures count a missing day are read.)
CREATE VIEW @extschema@.gaps AS
SELECT g.tenant_name, g.template_name,
       (d.day OPERATOR(pg_catalog.+) 1) AS first_missing,
       (d.next_day OPERATOR(pg_catalog.-) 1) AS last_missing,
       ((d.next_day OPERATOR(pg_catalog.-) d.day) OPERATOR(pg_catalog.-) 1) AS days,
       pg_catalog.format('SELECT _wh.update_mv_window(%L, %L, %L, %L);', g.template_name, g.tenant_name,
                         (d.day OPERATOR(pg_catalog.+) 1), (d.next_day OPERATOR(pg_catalog.-) 1)) AS fill_with
FROM (SELECT p.template_name, p.tenant_name FROM @extschema@._pairs p WHERE p.missing_days > 0) g
CROSS JOIN LATERAL (
    SELECT s.range_start AS day, pg_catalog.lead(s.range_start) OVER (ORDER BY s.range_start) AS next_day
    FROM @extschema@.slices s
    WHERE s.tenant_name = g.tenant_name AND s.template_name = g.template_name AND s.kind = 'day'
) d
WHERE d.next_day OPERATOR(pg_catalog.>) (d.day OPERATOR(pg_catalog.+) 1);

-- The days a rollup's base holds and the rollup does not, within the rollup's own retention:
-- what _wh.build_rollup builds (through _wh._rollup_todo) and _wh.rollups counts.
CREATE FUNCTION @extschema@._rollup_missing_days(p_rollup text)
RETURNS TABLE (tenant_name text, day date) LANGUAGE sql STABLE AS $body$
    SELECT b.tenant_name, b.range_start
    FROM @extschema@.mv_templates m
    JOIN @extschema@.slices b ON b.template_name = m.base_template AND b.kind = 'day' AND b.checksum IS NOT NULL
    WHERE m.template_name = p_rollup
      AND (m.retention IS NULL OR b.range_start >= (@extschema@.current_date_utc() - m.retention)::date)
      AND NOT EXISTS (SELECT 1 FROM @extschema@.slices r
                      WHERE r.template_name = m.template_name AND r.tenant_name = b.tenant_name
                        AND r.kind = 'day' AND r.range_start = b.range_start AND r.checksum IS NOT NULL)
$body$;

-- Rollups (_wh.set_rollup): what each is computed from, the days it holds, and the days
-- its base holds that it does not yet, within its own retention (built by the call in
-- build_with). health() counts them.
CREATE VIEW @extschema@.rollups AS
SELECT m.template_name AS rollup_name, m.base_template, m.rollup_select AS select_list, m.rollup_group_by AS group_by,
       (SELECT count(*) FROM @extschema@.slices r
        WHERE r.template_name = m.template_name AND r.kind = 'day' AND r.checksum IS NOT NULL) AS days,
       (SELECT count(*) FROM @extschema@.slices b
        WHERE b.template_name = m.base_template AND b.kind = 'day' AND b.checksum IS NOT NULL) AS base_days,
       (SELECT count(*) FROM @extschema@._rollup_missing_days(m.template_name)) AS days_to_build,
       pg_catalog.format('CALL _wh.build_rollup(%L);', m.template_name) AS build_with
FROM @extschema@.mv_templates m
WHERE m.base_template IS NOT NULL;

-- Every wh operation running now, from any session, like pg_stat_progress_*: operation,
-- template, tenant, units done of total (days, or tenants for a fan-out), what it works on,
-- rows stored so far, elapsed and an estimate of the time left. A running operation keeps
-- its progress ahead of its statement in pg_stat_activity.query (see src/progress.rs), so
-- a single-transaction call shows it too; like pg_stat_activity, a session sees the
-- operations of its own login (all of them as a superuser or pg_read_all_stats member).
CREATE VIEW @extschema@.progress AS
SELECT a.pid, a.usename::text AS run_by,
       p.j OPERATOR(pg_catalog.->>) 'operation' AS operation,
       p.j OPERATOR(pg_catalog.->>) 'template' AS template_name,
       p.j OPERATOR(pg_catalog.->>) 'tenant' AS tenant_name,
       p.j OPERATOR(pg_catalog.->>) 'unit' AS unit,
       (p.j OPERATOR(pg_catalog.->>) 'done')::bigint AS done,
       (p.j OPERATOR(pg_catalog.->>) 'total')::bigint AS total,
       p.j OPERATOR(pg_catalog.->>) 'current' AS working_on,
       (p.j OPERATOR(pg_catalog.->>) 'rows')::bigint AS rows_so_far,
       e.elapsed,
       CASE WHEN (p.j OPERATOR(pg_catalog.->>) 'done')::bigint OPERATOR(pg_catalog.>) 0 THEN
           e.elapsed OPERATOR(pg_catalog.*)
           (((p.j OPERATOR(pg_catalog.->>) 'total')::float8 OPERATOR(pg_catalog.-) (p.j OPERATOR(pg_catalog.->>) 'done')::float8)
            OPERATOR(pg_catalog./) (p.j OPERATOR(pg_catalog.->>) 'done')::float8)
       END AS time_left,
       a.query_start
FROM pg_catalog.pg_stat_activity a
-- Only what wh wrote (any other text, even one starting with the marker, gives NULL),
-- and only in the sessions of wh_admin members.
CROSS JOIN LATERAL (SELECT @extschema@._progress_row(a.query) AS j) p
CROSS JOIN LATERAL (
    SELECT pg_catalog.clock_timestamp() OPERATOR(pg_catalog.-)
           pg_catalog.to_timestamp((p.j OPERATOR(pg_catalog.->>) 'started')::float8) AS elapsed
) e
WHERE a.state OPERATOR(pg_catalog.=) 'active'
  AND p.j IS NOT NULL
  AND pg_catalog.pg_has_role(a.usesysid, 'wh_admin', 'MEMBER');

-- What the last _wh.verify of each tenant-day found not in order: drifted days with the
-- source's and the warehouse's figures, and unverifiable days with the error. health()
-- counts them; `_wh.verify(…, repair => true)` refreshes the drifted days.
CREATE VIEW @extschema@.drift AS
SELECT f.template_name, f.tenant_name, f.day, f.status,
       f.source_rows, f.warehouse_rows, f.source_checksum, f.warehouse_checksum, f.error,
       f.repair_tried, f.checked_at, f.checked_by
FROM @extschema@.verify_findings f;

-- Every partition of every template's table: bounds, estimated rows, bytes, tablespace,
-- storage (heap, or columnar for a year folded so).
CREATE VIEW @extschema@.partitions AS
WITH dist AS MATERIALIZED (
    SELECT d.relid, d.shards, d.bytes FROM @extschema@._distributed_sizes() d
)
SELECT m.template_name, c.relname::text AS partition_name,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bounds,
       -- the coordinator's estimate; NULL for a distributed partition (its rows are on the workers)
       CASE WHEN d.relid IS NULL THEN c.reltuples::bigint END AS est_rows,
       coalesce(d.bytes, pg_catalog.pg_total_relation_size(c.oid)) AS bytes,
       pg_catalog.pg_size_pretty(coalesce(d.bytes, pg_catalog.pg_total_relation_size(c.oid))) AS size,
       coalesce(ts.spcname, 'pg_default')::text AS tablespace,
       am.amname::text AS storage,
       d.shards
FROM @extschema@.mv_templates m
JOIN pg_catalog.pg_inherits i
  ON i.inhparent = pg_catalog.to_regclass(pg_catalog.quote_ident('_wh_data') OPERATOR(pg_catalog.||) '.'
                                          OPERATOR(pg_catalog.||) pg_catalog.quote_ident(m.template_name))
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
LEFT JOIN dist d ON d.relid = c.oid
LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace;

-- Does the table hold any of the tenant's rows of `day`? (One probe of the table's
-- (schema_name, time) index.) NULL when the template's table does not exist, and NULL in
-- a session wh refuses to work in (a superuser's: reading wh_admin's table there would run
-- whatever a wh_admin member attached to it, a policy or a view, in that session).
-- Monitoring reads the data here, not only the registry: after a restore of the registry
-- alone, the registry lists days the tables do not hold.
CREATE FUNCTION @extschema@._holds_rows(p_template text, p_tenant text, p_day date) RETURNS boolean
LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' AS $body$
DECLARE
    tc text;
    any_distributed boolean;
BEGIN
    IF @extschema@._caller_refused() IS NOT NULL THEN
        RETURN NULL;
    END IF;
    SELECT m.time_column INTO tc FROM @extschema@.mv_templates m WHERE m.template_name = p_template;
    IF tc IS NULL OR pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', p_template)) IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE pg_catalog.format('SELECT EXISTS (SELECT 1 FROM _wh_data.%1$I WHERE schema_name = $1 AND %2$I >= $2 AND %2$I < $2 + 1)',
                              p_template, tc)
        INTO found USING p_tenant, p_day;
    RETURN found;
END
$body$;

-- The same for every tenant of a template at once: each tenant's newest registered day
-- whose registry says it has rows, and whether the table holds any of them (one probe of
-- the registry's and one of the table's index per tenant, in one query). No rows when the
-- template's table does not exist, or in a session wh refuses to work in.
CREATE FUNCTION @extschema@._newest_held(p_template text) RETURNS TABLE (tenant_name text, held boolean)
LANGUAGE plpgsql STABLE SET TimeZone = 'UTC' AS $body$
DECLARE
    tc text;
    distributed boolean := false;
    newest record;
BEGIN
    IF @extschema@._caller_refused() IS NOT NULL THEN
        RETURN;
    END IF;
    SELECT m.time_column INTO tc FROM @extschema@.mv_templates m WHERE m.template_name = p_template;
    IF tc IS NULL OR pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', p_template)) IS NULL THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'citus') THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1) AND p.partmethod OPERATOR(pg_catalog.=) ''h'')'
            INTO distributed USING pg_catalog.format('_wh_data.%I', p_template);
    END IF;
    IF distributed THEN
        -- Citus plans no subquery correlated with a distributed table: one probe per tenant,
        -- each routed to the one shard holding the tenant.
        FOR newest IN
            SELECT c.tenant_name, s.range_start FROM @extschema@.tenant_connections c
            CROSS JOIN LATERAL (SELECT x.range_start, x.row_count FROM @extschema@.slices x
                WHERE x.template_name OPERATOR(pg_catalog.=) p_template AND x.tenant_name OPERATOR(pg_catalog.=) c.tenant_name
                  AND x.kind OPERATOR(pg_catalog.=) 'day' ORDER BY x.range_start DESC LIMIT 1) s
            WHERE s.row_count OPERATOR(pg_catalog.>) 0
        LOOP
            tenant_name := newest.tenant_name;
            EXECUTE pg_catalog.format(
                'SELECT EXISTS (SELECT 1 FROM _wh_data.%1$I d WHERE d.schema_name OPERATOR(pg_catalog.=) $1 '
                '    AND d.%2$I OPERATOR(pg_catalog.>=) $2 AND d.%2$I OPERATOR(pg_catalog.<) ($2 OPERATOR(pg_catalog.+) 1))',
                p_template, tc) INTO held USING newest.tenant_name, newest.range_start;
            RETURN NEXT;
        END LOOP;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE pg_catalog.format(
        'SELECT c.tenant_name, EXISTS (SELECT 1 FROM _wh_data.%1$I d WHERE d.schema_name OPERATOR(pg_catalog.=) c.tenant_name '
        '    AND d.%2$I OPERATOR(pg_catalog.>=) s.range_start AND d.%2$I OPERATOR(pg_catalog.<) (s.range_start OPERATOR(pg_catalog.+) 1)) '
        'FROM @extschema@.tenant_connections c '
        'CROSS JOIN LATERAL (SELECT x.range_start, x.row_count FROM @extschema@.slices x '
        '    WHERE x.template_name OPERATOR(pg_catalog.=) $1 AND x.tenant_name OPERATOR(pg_catalog.=) c.tenant_name '
        '      AND x.kind OPERATOR(pg_catalog.=) ''day'' ORDER BY x.range_start DESC LIMIT 1) s '
        'WHERE s.row_count OPERATOR(pg_catalog.>) 0', p_template, tc) USING p_template;
END
$body$;

-- Per tenant x template (every registered tenant with every template: a pair never built
-- shows, never_built): newest day held, whether the table really holds its rows, last
-- refresh, stale flag (a paused tenant is not stale: it is paused), paused. What
-- _wh.freshness shows and _wh.health() counts, from each pair's figures (_wh._pairs).
CREATE VIEW @extschema@._pair_freshness AS
WITH held AS MATERIALIZED (
    SELECT m.template_name, h.tenant_name, h.held
    FROM @extschema@.mv_templates m CROSS JOIN LATERAL @extschema@._newest_held(m.template_name) h
), pairs AS MATERIALIZED (  -- (once, then hashed: never evaluated per tenant x template)
    SELECT p.template_name, p.tenant_name, p.newest_day, p.last_refreshed_at FROM @extschema@._pairs p
)
SELECT t.tenant_name, m.template_name,
       p.newest_day,
       p.newest_day IS NULL AS never_built,
       -- (A hashed lookup in the held pairs, those whose newest day has rows, computed only
       -- when data_present is read: reader_freshness, a SECURITY DEFINER function, never
       -- reads it.)
       CASE WHEN (m.template_name, t.tenant_name) IN (SELECT h.template_name, h.tenant_name FROM held h WHERE h.held) THEN true
            WHEN (m.template_name, t.tenant_name) IN (SELECT h.template_name, h.tenant_name FROM held h WHERE NOT h.held) THEN false
       END AS data_present,
       p.last_refreshed_at,
       th.threshold AS stale_after,
       (t.paused_at IS NULL AND (p.last_refreshed_at IS NULL OR pg_catalog.now() - p.last_refreshed_at > th.threshold)) AS stale,
       t.paused_at IS NOT NULL AS paused,
       t.paused_at
FROM @extschema@.tenant_connections t
CROSS JOIN @extschema@.mv_templates m
CROSS JOIN LATERAL (
    SELECT coalesce(m.stale_after,
                    (SELECT value::interval FROM @extschema@.settings WHERE key = 'stale_after'),
                    '8 hours'::interval) AS threshold
) th
LEFT JOIN pairs p ON p.template_name = m.template_name AND p.tenant_name = t.tenant_name;

-- Per tenant x template: the above, with the age of the last refresh, the last run of a day
-- (one index probe per pair) and when the refresh pool next takes the pair.
CREATE VIEW @extschema@.freshness AS
SELECT f.tenant_name, f.template_name, f.newest_day, f.never_built, f.data_present, f.last_refreshed_at,
       pg_catalog.now() - f.last_refreshed_at AS age,
       lr.status AS last_run_status,
       lr.started_at AS last_run_at,
       lr.error AS last_error,
       f.stale_after, f.stale, f.paused, f.paused_at,
       q.next_due
FROM @extschema@._pair_freshness f
LEFT JOIN LATERAL (
    SELECT r.status, r.started_at, r.error FROM @extschema@.run_log r
    WHERE r.tenant_name = f.tenant_name AND r.template_name = f.template_name AND r.target_date IS NOT NULL
    ORDER BY r.started_at DESC, r.run_id DESC LIMIT 1
) lr ON true
LEFT JOIN @extschema@.pool_items q ON q.template_name = f.template_name AND q.tenant_name = f.tenant_name;

-- "Data as of" for dashboards: freshness of what the calling login may read, and nothing
-- else (a member of wh_reader or wh_admin: every tenant; a tenant-scoped reader: its
-- tenants; anyone else: no row). No error text, no connection detail. SECURITY DEFINER
-- (the installing superuser's, a fixed query, no argument): readers have no access to _wh;
-- each row is filtered on the login (session_user) that asks.
CREATE FUNCTION @extschema@.reader_freshness()
RETURNS TABLE (tenant_name text, template_name text, newest_day date, last_refreshed_at timestamptz,
               stale boolean, paused boolean)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
SELECT f.tenant_name, f.template_name, f.newest_day, f.last_refreshed_at, f.stale, f.paused
FROM @extschema@.freshness f
WHERE pg_catalog.pg_has_role(session_user, 'wh_reader', 'USAGE')
   OR pg_catalog.pg_has_role(session_user, 'wh_admin', 'USAGE')
   OR f.tenant_name IN (SELECT r.tenant_name FROM _wh_scope.readers r
                        WHERE pg_catalog.pg_has_role(session_user, r.role_oid, 'USAGE'))
ORDER BY 1, 2
$body$;
CREATE VIEW _wh_scope.freshness AS SELECT * FROM @extschema@.reader_freshness();
COMMENT ON VIEW _wh_scope.freshness IS
    'wh: data as of, per tenant and template, for what the calling login may read';

-- Recent failures (7 days), newest first; and every tenant-day (of a template) whose last
-- three runs, whatever the operation, all reported "skipped: busy" (something holds its
-- lock again and again: a stuck session, or a schedule tighter than a run takes), as
-- SQLSTATE 55P03. `resolved`: a later run of the same tenant-day (of the same operation,
-- for a failure that names no day; a connection test, by a later tested connection)
-- succeeded; health() counts only the unresolved.
CREATE VIEW @extschema@.failures AS
SELECT * FROM (
    SELECT r.run_id, r.started_at, r.operation, r.tenant_name, r.template_name, r.target_date AS day,
           r.sqlstate, r.error AS message, r.run_by,
           EXISTS (SELECT 1 FROM @extschema@.run_log s
                   WHERE s.template_name IS NOT DISTINCT FROM r.template_name AND s.tenant_name IS NOT DISTINCT FROM r.tenant_name
                     AND s.run_id > r.run_id AND s.status = 'succeeded'
                     AND CASE WHEN r.target_date IS NOT NULL THEN s.target_date = r.target_date
                              -- a connection that failed its test works once a later test (or a tested change) succeeds
                              WHEN r.operation = 'test_tenant_connection'
                                  THEN s.operation IN ('test_tenant_connection', 'set_tenant_connection')
                                       AND s.details->>'tested' IS DISTINCT FROM 'false'
                              ELSE s.operation = r.operation AND s.target_date IS NULL END) AS resolved
    FROM @extschema@.run_log r
    WHERE r.status = 'failed' AND r.started_at > pg_catalog.now() - interval '7 days'
    UNION ALL
    SELECT b.run_id, b.started_at, b.operation, b.tenant_name, b.template_name, b.target_date,
           '55P03', pg_catalog.format('skipped as busy %s times in a row since %s', k.busy_runs, k.first_busy), b.run_by,
           false
    FROM (
        -- The tenant-days (and jobs) whose last busy skip is recent: few, found by an index.
        SELECT DISTINCT ON (x.template_name, x.tenant_name, x.target_date) x.*
        FROM @extschema@.run_log x
        WHERE x.status = 'skipped' AND x.started_at > pg_catalog.now() - interval '7 days'
          AND x.details->>'reason' = 'busy'
        ORDER BY x.template_name, x.tenant_name, x.target_date, x.run_id DESC
    ) b
    -- Its last three runs, whatever the operation (the tenant's runs of its template, by index).
    CROSS JOIN LATERAL (
        SELECT pg_catalog.count(*) FILTER (WHERE y.busy) AS busy_runs, pg_catalog.min(y.started_at) AS first_busy,
               pg_catalog.bool_and(y.busy) AS all_busy, pg_catalog.max(y.run_id) AS last_run
        FROM (
            SELECT z.run_id, z.started_at, z.status = 'skipped' AND z.details->>'reason' = 'busy' AS busy
            FROM @extschema@.run_log z
            WHERE z.template_name = b.template_name
              AND (z.tenant_name = b.tenant_name OR (b.tenant_name IS NULL AND z.tenant_name IS NULL))
              AND z.target_date IS NOT DISTINCT FROM b.target_date
              AND z.started_at > pg_catalog.now() - interval '7 days' AND z.status IN ('succeeded', 'failed', 'skipped')
            ORDER BY z.run_id DESC LIMIT 3
        ) y
    ) k
    WHERE k.all_busy AND k.busy_runs >= 3 AND k.last_run = b.run_id
) f
ORDER BY f.run_id DESC;

-- wh's pg_cron jobs with their schedules and last runs, every operator's (empty without
-- pg_cron; _wh.job_rows() is in sql/privileges.sql).
CREATE VIEW @extschema@.jobs AS SELECT * FROM @extschema@.job_rows();

-- The refresh pool (_wh.schedule_refresh), per template: its period, the tenants it
-- refreshes (own_periods: with a period of their own), the queue (due_now: due and not
-- paused; oldest_due: the most overdue), the next due, throughput (tenants refreshed in the
-- last hour, and how many of those runs failed or partly failed) and the last run's median time.
CREATE VIEW @extschema@.pool AS
SELECT i.template_name, s.every,
       count(*) AS tenants,
       count(*) FILTER (WHERE i.every IS NOT NULL) AS own_periods,
       count(*) FILTER (WHERE c.paused_at IS NOT NULL) AS paused,
       count(*) FILTER (WHERE i.next_due <= pg_catalog.now() AND c.paused_at IS NULL) AS due_now,
       min(i.next_due) FILTER (WHERE i.next_due <= pg_catalog.now() AND c.paused_at IS NULL) AS oldest_due,
       min(i.next_due) FILTER (WHERE c.paused_at IS NULL) AS next_due,
       count(*) FILTER (WHERE i.last_started_at > pg_catalog.now() - interval '1 hour') AS refreshed_last_hour,
       count(*) FILTER (WHERE i.last_started_at > pg_catalog.now() - interval '1 hour'
                          AND i.last_status IN ('failed', 'partial')) AS failed_last_hour,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY i.last_ms) AS median_ms
FROM @extschema@.pool_items i
LEFT JOIN @extschema@.refresh_schedules s ON s.template_name = i.template_name
LEFT JOIN @extschema@.tenant_connections c ON c.tenant_name = i.tenant_name
GROUP BY i.template_name, s.every;

-- The pool's workers (pg_cron jobs wh:pool:<n>): what each refreshes now (from
-- _wh.progress: seen from sessions of the login that runs them), since when, and how many
-- tenants it refreshed in the last hour.
CREATE VIEW @extschema@.pool_workers AS
SELECT j.jobname AS worker, j.jobid, j.username, j.active,
       p.pid, p.template_name, p.tenant_name, p.elapsed AS working_for,
       (SELECT count(*) FROM @extschema@.pool_items i
        WHERE i.last_worker OPERATOR(pg_catalog.=) pg_catalog.split_part(j.jobname, ':', 3)::integer
          AND i.last_started_at > pg_catalog.now() - interval '1 hour') AS refreshed_last_hour,
       j.last_start, j.last_status, j.last_message
FROM @extschema@.job_rows() j
LEFT JOIN @extschema@.progress p ON p.operation OPERATOR(pg_catalog.=) ('pool worker ' OPERATOR(pg_catalog.||) pg_catalog.split_part(j.jobname, ':', 3))
WHERE j.jobname OPERATOR(pg_catalog.~) '^wh:pool:[0-9]+$';

-- pg_cron's run history of the jobs wh made (_wh.cron_jobs) next to what wh recorded in its run log meanwhile.
CREATE FUNCTION @extschema@.job_history_rows()
RETURNS TABLE (jobid bigint, runid bigint, jobname text, cron_status text, cron_message text,
               start_time timestamptz, end_time timestamptz,
               wh_runs bigint, wh_succeeded bigint, wh_failed bigint, wh_skipped bigint, wh_rows bigint, wh_errors text[])
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron') THEN
        RETURN;
    END IF;
    RETURN QUERY EXECUTE $q$
        SELECT d.jobid, d.runid, j.jobname::text, d.status, d.return_message, d.start_time, d.end_time,
               count(r.run_id), count(r.run_id) FILTER (WHERE r.status = 'succeeded'),
               count(r.run_id) FILTER (WHERE r.status = 'failed'),
               count(r.run_id) FILTER (WHERE r.status = 'skipped'),
               coalesce(sum(r.rows), 0)::bigint,
               pg_catalog.array_remove(pg_catalog.array_agg(r.error ORDER BY r.run_id), NULL)
        FROM cron.job_run_details d
        JOIN cron.job j ON j.jobid = d.jobid
        JOIN @extschema@.cron_jobs w ON w.jobid = j.jobid AND w.username = j.username::name
                                     AND w.jobname = j.jobname AND w.command = j.command AND w.made_in = @extschema@._here()
        LEFT JOIN @extschema@.run_log r
               -- pg_cron stamps start_time after it has sent the command: a run that skips
               -- at once can log a few milliseconds before it.
               ON r.run_by = d.username AND r.started_at >= d.start_time - interval '1 second'
              AND r.started_at <= coalesce(d.end_time, now())
              -- a pool worker: every run of its login meanwhile (its fellow workers' too)
              AND (j.jobname ~ '^wh:pool:[0-9]+$' OR pg_catalog.split_part(j.jobname::text, ':'::text, 3) IN ('all', 'fold')
                   OR r.tenant_name = pg_catalog.split_part(j.jobname::text, ':'::text, 3))
              AND (j.jobname = 'wh:maintenance' OR j.jobname ~ '^wh:pool:[0-9]+$'
                   OR r.template_name = pg_catalog.split_part(j.jobname::text, ':'::text, 2))
        GROUP BY d.jobid, d.runid, j.jobname, d.status, d.return_message, d.start_time, d.end_time
        ORDER BY d.runid DESC $q$;
END
$body$;
CREATE VIEW @extschema@.job_history AS SELECT * FROM @extschema@.job_history_rows();

-- Delete run log rows older than the retention (argument, or the run_log_retention setting).
CREATE FUNCTION @extschema@.prune_run_log(keep interval DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $body$
DECLARE
    horizon interval := coalesce(keep, (SELECT value::interval FROM @extschema@.settings WHERE key = 'run_log_retention'), '30 days');
    n bigint;
BEGIN
    DELETE FROM @extschema@.run_log WHERE started_at < pg_catalog.now() - horizon AND status <> 'running';
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO @extschema@.run_log (finished_at, operation, status, rows, details)
    VALUES (pg_catalog.clock_timestamp(), 'prune_run_log', 'succeeded', n,
            pg_catalog.jsonb_build_object('kept', horizon::text));
    RETURN n;
END
$body$;

-- The jobs _wh.cron_jobs records as made in another warehouse (a restored dump): this
-- pg_cron never had them; _wh.finish_restore() schedules them again. (A job made here and
-- removed since with cron.unschedule is not lost: it was removed.)
CREATE FUNCTION @extschema@._lost_jobs() RETURNS bigint
LANGUAGE sql STABLE AS $body$
SELECT count(*) FROM @extschema@.cron_jobs w
WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron')
  AND w.made_in <> @extschema@._here()
$body$;

-- One jsonb summary you can alert on: status 'ok' only when nothing is wrong now, else
-- 'degraded' with one line per problem in `problems` (what, how many, where to look). A
-- failure that a later run of the same day has mended no longer counts; the data are
-- checked, not only the registry (a pair whose newest day the table does not hold).
CREATE FUNCTION @extschema@.health() RETURNS jsonb
LANGUAGE sql STABLE AS $body$
-- Each figure computed once (the CTEs are materialized): freshness (without the last runs)
-- read once for its three counts, the registry's totals, missing days and templates from each pair's figures
-- (_wh._pairs: a row per pair, not per day).
WITH fr AS MATERIALIZED (
    SELECT x.stale, x.never_built, x.paused, x.data_present FROM @extschema@._pair_freshness x
), pairs AS MATERIALIZED (
    SELECT * FROM @extschema@._pairs
), reg AS MATERIALIZED (
    SELECT coalesce(sum(p.slices), 0) AS slices, coalesce(sum(p.rows), 0) AS registry_rows,
           min(p.oldest_day) AS oldest_data, max(p.newest_end) - 1 AS newest_data,
           coalesce(sum(p.missing_days), 0) AS missing_days
    FROM pairs p
), named AS MATERIALIZED (
    SELECT DISTINCT p.template_name FROM pairs p
), f AS MATERIALIZED (
    SELECT (SELECT count(*) FROM fr WHERE stale AND NOT never_built) AS stale,
           (SELECT count(*) FROM fr WHERE never_built AND NOT paused) AS never_built,
           (SELECT count(*) FROM fr WHERE data_present IS NOT TRUE AND NOT never_built
              AND data_present IS NOT NULL) AS data_missing,
           (SELECT count(*) FROM named n WHERE (pg_catalog.to_regclass(pg_catalog.format('_wh_data.%I', n.template_name)) IS NULL
                    OR pg_catalog.to_regclass(pg_catalog.format('public.%I', n.template_name)) IS NULL)) AS tables_missing,
           (SELECT count(*) FROM @extschema@.failures WHERE NOT resolved) AS unresolved,
           (SELECT count(*) FROM @extschema@.failures
             WHERE started_at > pg_catalog.now() - interval '24 hours') AS failures_24h,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'drifted') AS drifted,
           (SELECT count(*) FROM @extschema@.verify_findings WHERE status = 'unverifiable') AS unverifiable,
           @extschema@._lost_jobs() AS jobs_missing
)
SELECT pg_catalog.jsonb_build_object(
    'status', CASE WHEN pg_catalog.cardinality(p.problems) = 0 THEN 'ok' ELSE 'degraded' END,
    'problems', pg_catalog.to_jsonb(p.problems),
    'tenants', (SELECT count(*) FROM @extschema@.tenant_connections),
    'templates', (SELECT count(*) FROM @extschema@.mv_templates),
    'slices', reg.slices,
    'registry_rows', reg.registry_rows,
    'stale', f.stale,
    'never_built', f.never_built,
    'data_missing', f.data_missing,
    'tables_missing', f.tables_missing,
    'unresolved_failures', f.unresolved,
    'failures_24h', f.failures_24h,
    'missing_days', reg.missing_days,
    'rollup_days_to_build', (SELECT coalesce(sum(days_to_build), 0) FROM @extschema@.rollups),
    'drifted_days', f.drifted,
    'unverifiable_days', f.unverifiable,
    'jobs_missing', f.jobs_missing,
    'oldest_data', reg.oldest_data,
    'newest_data', reg.newest_data,
    'connections_in_use', (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database()),
    'max_connections', pg_catalog.current_setting('max_connections')::int,
    'cache_hit_ratio', (SELECT round(sum(blks_hit)::numeric / nullif(sum(blks_hit + blks_read), 0), 4)
                        FROM pg_catalog.pg_stat_database WHERE datname = pg_catalog.current_database()),
    'pg_cron', EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'pg_cron'),
    'checked_at', pg_catalog.now())
FROM f CROSS JOIN reg
CROSS JOIN LATERAL (
    SELECT pg_catalog.array_remove(ARRAY[
        CASE WHEN f.unresolved > 0 THEN pg_catalog.format('%s failure(s) not mended by a later run: SELECT * FROM _wh.failures WHERE NOT resolved', f.unresolved) END,
        CASE WHEN f.stale > 0 THEN pg_catalog.format('%s tenant x template pair(s) stale: SELECT * FROM _wh.freshness WHERE stale', f.stale) END,
        CASE WHEN f.never_built > 0 THEN pg_catalog.format('%s tenant x template pair(s) never built: SELECT * FROM _wh.freshness WHERE never_built', f.never_built) END,
        CASE WHEN f.data_missing > 0 THEN pg_catalog.format('%s pair(s) whose newest day the registry lists but the table does not hold (a restored registry?): CALL _wh.rebuild_warehouse()', f.data_missing) END,
        CASE WHEN f.tables_missing > 0 THEN pg_catalog.format('%s template table(s) missing behind registry rows: CALL _wh.rebuild_warehouse()', f.tables_missing) END,
        CASE WHEN reg.missing_days > 0 THEN pg_catalog.format('%s day(s) missing between built days: SELECT * FROM _wh.gaps', reg.missing_days) END,
        CASE WHEN f.drifted > 0 THEN pg_catalog.format('%s day(s) differ from their source: SELECT * FROM _wh.drift', f.drifted) END,
        CASE WHEN f.unverifiable > 0 THEN pg_catalog.format('%s day(s) could not be verified: SELECT * FROM _wh.drift', f.unverifiable) END,
        CASE WHEN f.jobs_missing > 0 THEN pg_catalog.format('%s pg_cron job(s) wh made are gone (a restore?): SELECT _wh.finish_restore()', f.jobs_missing) END
    ], NULL) AS problems
) p
$body$;
