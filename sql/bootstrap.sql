-- wh bootstrap: roles, configuration tables, registry, run log.
-- Runs first in CREATE EXTENSION; everything lives in @extschema@ (_wh).

-- CREATE EXTENSION runs this script as a superuser with search_path `_wh, public, pg_temp`:
-- an operator a wh_admin member planted in public (say `public.=` for oid and regclass)
-- would match `oid = '…'::regclass` exactly and run as the superuser, and a view would stay
-- bound to it. Pinned for the rest of the script (SET LOCAL ends with it): wh's own schema,
-- which only this script writes, then pg_catalog, then this session's temporary schema.
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- Nothing but a superuser may own the schema this script writes into first, nor have
-- made _wh_data or _wh_scope (which survive DROP EXTENSION) for it to find: a schema another
-- role made before the install (or between an adoption's rename of the seeds' _wh and it)
-- could hold an operator that matches below. Every operator here is pg_catalog's, named.
DO $owners$
DECLARE
    bad pg_catalog.text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.format('%s (owner %s)', n.nspname, r.rolname), ', ') INTO bad
    FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) n.nspowner
    WHERE (n.nspname OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.name AND NOT r.rolsuper)
       OR (n.nspname OPERATOR(pg_catalog.=) '_wh_scope'::pg_catalog.name AND NOT r.rolsuper)
       OR (n.nspname OPERATOR(pg_catalog.=) '_wh_data'::pg_catalog.name AND r.rolname OPERATOR(pg_catalog.<>) 'wh_admin'::pg_catalog.name);
    IF bad IS NOT NULL THEN
        RAISE EXCEPTION 'wh: schema % was not made by wh''s install: drop or rename it first (a superuser must own @extschema@ and _wh_scope, wh_admin _wh_data)', bad
            USING ERRCODE = 'invalid_schema_definition';
    END IF;
END
$owners$;

-- Group roles (cluster-wide, so they survive DROP EXTENSION and are only created when missing).
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'wh_admin') THEN
        CREATE ROLE wh_admin NOLOGIN;
        COMMENT ON ROLE wh_admin IS 'wh operators: run wh functions, own tenant schemas and slices';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'wh_reader') THEN
        CREATE ROLE wh_reader NOLOGIN;
        COMMENT ON ROLE wh_reader IS 'wh readers (BI tools): SELECT on tenant relations and public views, nothing in _wh';
    END IF;
END
$roles$;

-- The schema every partition of public.<template> lives in: wh_admin owns it, readers
-- have no rights on it (reads through public.<template> need none), so a BI tool browsing
-- public sees one relation per template.
-- It is not a member of the extension: DROP EXTENSION wh leaves it and the partitions in it
-- (README, "Removing wh"), and a later CREATE EXTENSION finds it again.
DO $data$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = '_wh_data') THEN
        CREATE SCHEMA _wh_data AUTHORIZATION wh_admin;
        ALTER EXTENSION wh DROP SCHEMA _wh_data;
        COMMENT ON SCHEMA _wh_data IS 'wh partitions of public.<template>: read them through public.<template>';
    END IF;
END
$data$;
REVOKE ALL ON SCHEMA _wh_data FROM PUBLIC;

-- Which tenants each tenant-scoped reader role reads, by role oid: the tables' policy
-- "wh:scoped" reads it with each statement, and row-level security here shows each role
-- only its own rows (readers may read it: USAGE and SELECT for PUBLIC). wh keeps it from
-- _wh.tenant_readers with DML only (wh_admin: SELECT, INSERT, DELETE through its policy),
-- so granting or revoking a reader changes no policy and never waits for a reader's lock.
-- The schema and table belong to the installing superuser, so no operator can attach
-- code to them. Like _wh_data, not a member of the extension: plain DROP EXTENSION wh
-- leaves scoped readers reading what they read.
DO $scope$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) '_wh_scope'::pg_catalog.name) THEN
        CREATE SCHEMA _wh_scope;
        ALTER EXTENSION wh DROP SCHEMA _wh_scope;
        COMMENT ON SCHEMA _wh_scope IS 'wh: which tenants each tenant-scoped reader reads';
    END IF;
    IF pg_catalog.to_regclass('_wh_scope.readers') IS NULL THEN
        CREATE TABLE _wh_scope.readers (
            role_oid    oid NOT NULL,
            tenant_name text NOT NULL,
            PRIMARY KEY (role_oid, tenant_name)
        );
        ALTER EXTENSION wh DROP TABLE _wh_scope.readers;
        ALTER TABLE _wh_scope.readers ENABLE ROW LEVEL SECURITY;
        CREATE POLICY "wh:own" ON _wh_scope.readers AS PERMISSIVE FOR SELECT TO PUBLIC
            USING (pg_catalog.pg_has_role(role_oid, 'USAGE'));
        CREATE POLICY "wh:admin" ON _wh_scope.readers AS PERMISSIVE FOR ALL TO wh_admin
            USING (true) WITH CHECK (true);
        COMMENT ON TABLE _wh_scope.readers IS 'wh: the tenants a scoped reader role reads (each role sees its own rows); kept by _wh.grant_tenant_reader';
    END IF;
END
$scope$;
REVOKE ALL ON SCHEMA _wh_scope FROM PUBLIC;
GRANT USAGE ON SCHEMA _wh_scope TO PUBLIC;
-- Whether the current role reads every tenant: a member of wh_reader or wh_admin (or a
-- superuser). Each tenant view is two branches, one for such readers (the table's rows with
-- its owner's rights: no row-level security, so BI tools' cross-type bounds on a timestamp
-- column are planned with the statistics) and one for everyone else (the table under
-- row-level security). IMMUTABLE on purpose, so the planner folds it to a constant and
-- removes the other branch before it estimates anything: a tenant-scoped reader's own
-- operators are never estimated on the owner's statistics (which sample every tenant). A
-- plan that folded it is re-planned when the role changes (the view holds a table under
-- row-level security, so its plans depend on the role) and when a grant on the relations
-- changes; without SELECT on them a stale plan fails. Not a member of the extension: the
-- tenant views use it, and they outlive DROP EXTENSION.
DO $reads$
BEGIN
    IF pg_catalog.to_regprocedure('_wh_scope.reads_every_tenant()') IS NULL THEN
        CREATE FUNCTION _wh_scope.reads_every_tenant() RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $fn$ SELECT pg_catalog.pg_has_role(CURRENT_USER, 'wh_reader', 'USAGE')
                    OR pg_catalog.pg_has_role(CURRENT_USER, 'wh_admin', 'USAGE') $fn$;
        ALTER EXTENSION wh DROP FUNCTION _wh_scope.reads_every_tenant();
        COMMENT ON FUNCTION _wh_scope.reads_every_tenant() IS 'wh: does the current role read every tenant (wh_reader, wh_admin)? Folded at planning by the tenant views';
    END IF;
END
$reads$;
REVOKE ALL ON FUNCTION _wh_scope.reads_every_tenant() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _wh_scope.reads_every_tenant() TO PUBLIC;

-- The tenants the current role reads (its rows of _wh_scope.readers, under that table's
-- row-level security), for the tenant-scoped readers' policy of a table Citus distributes:
-- Citus copies a policy onto every shard, where a subquery is refused. IMMUTABLE on purpose:
-- each node folds it into a constant array when it plans a statement (no call per row),
-- from its own copy of _wh_scope.readers (wh keeps the workers' equal to the coordinator's,
-- by role name), and re-plans when the role changes; a revocation also re-grants the
-- table, which invalidates cached plans. Not a member of the extension (the policies
-- outlive DROP EXTENSION).
DO $tenants$
BEGIN
    IF pg_catalog.to_regprocedure('_wh_scope.tenants_of_current_role()') IS NULL THEN
        CREATE FUNCTION _wh_scope.tenants_of_current_role() RETURNS text[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp
        AS $fn$ SELECT pg_catalog.array_agg(s.tenant_name ORDER BY s.tenant_name) FROM _wh_scope.readers s $fn$;
        ALTER EXTENSION wh DROP FUNCTION _wh_scope.tenants_of_current_role();
        COMMENT ON FUNCTION _wh_scope.tenants_of_current_role() IS 'wh: the tenants the current role reads (the scoped readers'' policy on a distributed table; folded at planning)';
    END IF;
END
$tenants$;
REVOKE ALL ON FUNCTION _wh_scope.tenants_of_current_role() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION _wh_scope.tenants_of_current_role() TO PUBLIC;

REVOKE ALL ON _wh_scope.readers FROM PUBLIC;
GRANT SELECT ON _wh_scope.readers TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON _wh_scope.readers TO wh_admin;

-- One row per tenant source. The password is NOT here: it lives in the user mapping of
-- the dblink_fdw foreign server named in server_name.
CREATE TABLE @extschema@.tenant_connections (
    tenant_name     text PRIMARY KEY CHECK (tenant_name ~ '^[a-z_][a-z0-9_]*$'),
    host            text NOT NULL CHECK (host <> ''),
    port            integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
    dbname          text NOT NULL CHECK (dbname <> ''),
    username        text NOT NULL CHECK (username <> ''),
    sslmode         text NOT NULL DEFAULT 'require'
                    CHECK (sslmode IN ('disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full')),
    -- The CA file (on the warehouse server) for verify-ca/verify-full, kept and dumped with
    -- the rest, so a rotation or a restore keeps it.
    sslrootcert     text,
    -- 'require' unless relaxed explicitly for this tenant (see SECURITY.md).
    channel_binding text NOT NULL DEFAULT 'require' CHECK (channel_binding IN ('require', 'prefer', 'disable')),
    remote_timeout  interval NOT NULL DEFAULT '30 min' CHECK (remote_timeout > '0'::interval),
    server_name     text NOT NULL UNIQUE,
    -- Set by _wh.pause_tenant: scheduled and fan-out refreshes skip the tenant.
    paused_at       timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.tenant_connections IS 'wh tenant sources; secrets live in the foreign server user mapping, never here';

-- Who changed which connection and which fields. Never a secret: a password change is
-- recorded as the field name "password" only.
CREATE TABLE @extschema@.connection_audit (
    audit_id        bigserial PRIMARY KEY,
    tenant_name     text NOT NULL,
    action          text NOT NULL CHECK (action IN ('create', 'update', 'remove', 'pause', 'resume', 'rename')),
    changed_fields  text[] NOT NULL DEFAULT '{}',
    changed_by      name NOT NULL DEFAULT session_user,
    session_user_name name NOT NULL DEFAULT session_user,
    changed_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON @extschema@.connection_audit (tenant_name, changed_at);

-- One row per warehouse table type.
CREATE TABLE @extschema@.mv_templates (
    template_name       text PRIMARY KEY CHECK (template_name ~ '^[a-z_][a-z0-9_]*$'),
    description         text,
    query_template      text NOT NULL,
    column_definitions  text NOT NULL,
    time_column         text NOT NULL,
    unique_key          text,
    indexes             text[] NOT NULL DEFAULT '{}',
    lookback_days       integer NOT NULL DEFAULT 1 CHECK (lookback_days BETWEEN 0 AND 31),
    -- How public.<template> is partitioned on time_column: a partition per month or per year.
    partition_grain     text NOT NULL DEFAULT 'month' CHECK (partition_grain IN ('month', 'year')),
    -- Policy (set with _wh.set_template_policy): how long slices are kept, where folded
    -- years live, and when a tenant's data counts as stale.
    retention           interval CHECK (retention > '0'::interval),
    year_tablespace     name,
    stale_after         interval CHECK (stale_after > '0'::interval),
    -- Caps on what one tenant's source may send (set with _wh.set_template_limits).
    max_rows_per_day    bigint NOT NULL DEFAULT 10000000 CHECK (max_rows_per_day > 0),
    max_bytes_per_day   bigint NOT NULL DEFAULT 268435456 CHECK (max_bytes_per_day > 0),
    max_row_bytes       bigint NOT NULL DEFAULT 8388608 CHECK (max_row_bytes > 0),
    -- How much of a stored day a refresh may take away (percent; 100 lets it empty a day).
    max_shrink_percent  integer NOT NULL DEFAULT 50 CHECK (max_shrink_percent BETWEEN 0 AND 100),
    -- Set when a column is first appended to a template with days: how many leading
    -- columns a row's checksum hashes as one record (the appended ones hash on their own).
    hashed_columns      integer CHECK (hashed_columns > 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    -- A rollup (_wh.set_rollup): computed here from base_template's stored rows, one
    -- tenant-day at a time, as SELECT rollup_select ... GROUP BY rollup_group_by.
    base_template       text CONSTRAINT mv_templates_base_template_fkey REFERENCES @extschema@.mv_templates (template_name),
    rollup_select       text,
    rollup_group_by     text,
    -- How the yearly fold stores a finished year (set with _wh.set_template_policy): heap, or
    -- columnar (citus_columnar: several times smaller, read by column; a late change to it
    -- rewrites the year as heap until the nightly maintenance compresses it again).
    fold_storage        text NOT NULL DEFAULT 'heap' CHECK (fold_storage IN ('heap', 'columnar')),
    -- Citus: the number of shards the template's table is distributed into by tenant
    -- (_wh.distribute); 0: it was, and was undistributed by hand (kept on the coordinator);
    -- NULL: it never was (it follows the warehouse: distributed when made if another wh table
    -- is). A table made again (a rebuild onto a cluster) is distributed again as recorded.
    distributed_shards  integer CHECK (distributed_shards >= 0),
    CONSTRAINT mv_templates_rollup_check CHECK ((base_template IS NULL) = (rollup_select IS NULL)
                                                AND (base_template IS NULL) = (rollup_group_by IS NULL))
);

-- A tenant whose source differs: its own query for a template (same output columns,
-- validated like a template's); every other tenant keeps the template's query.
CREATE TABLE @extschema@.tenant_queries (
    template_name   text NOT NULL REFERENCES @extschema@.mv_templates ON DELETE CASCADE,
    tenant_name     text NOT NULL REFERENCES @extschema@.tenant_connections ON DELETE CASCADE,
    query_template  text NOT NULL,
    reason          text,
    set_by          name NOT NULL DEFAULT session_user,
    set_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_name, tenant_name)
);

-- Registry of every tenant-day the warehouse holds (a logical unit: one tenant's rows of
-- one day, not a table): rows, a checksum over every column, when it was built and last
-- refreshed. Its rows are also the day locks (FOR UPDATE; only wh_admin may take them).
-- kind is always 'day' from 0.2.0 on ('year' rows of 0.1.0 are split by migrate_storage).
CREATE TABLE @extschema@.slices (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL,
    schema_name     text NOT NULL,
    slice_name      text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('day', 'year')),
    range_start     date NOT NULL,
    range_end       date NOT NULL,
    row_count       bigint NOT NULL DEFAULT 0 CHECK (row_count >= 0),
    checksum        text,
    built_at        timestamptz NOT NULL DEFAULT now(),
    refreshed_at    timestamptz NOT NULL DEFAULT now(),
    build_ms        double precision,
    -- How many of the template's columns the day was fetched with (NULL: all of them, as
    -- before 0.7.0): a column appended later is NULL in it, and verify compares it so.
    columns         smallint,
    PRIMARY KEY (template_name, tenant_name, kind, range_start),
    UNIQUE (schema_name, slice_name),
    CHECK (range_end > range_start)
);
CREATE INDEX ON @extschema@.slices (tenant_name, template_name, range_start);
-- A pair's last refresh, found by one index probe (_wh.freshness at 1,000 tenants).
CREATE INDEX slices_refreshed_idx ON @extschema@.slices (tenant_name, template_name, refreshed_at);

-- Each tenant x template pair's figures of the registry (days, rows, first and last day, last
-- refresh, the days missing between them), kept so that _wh.storage, _wh.gaps and _wh.health()
-- read a row per pair rather than every day (730,000 registry rows at 1,000 tenants x 2
-- templates x a year). _wh.pair_changes lists every pair whose days changed since (a
-- statement trigger on _wh.slices appends to it; no key, so a writer never waits on
-- another), the views compute those pairs from the registry, and _wh._settle_pairs() folds
-- them in (the pool's workers after each tenant, the committing procedures after each
-- commit, the nightly wh:maintenance job and finish_restore() all of them again). Both are
-- dumped with the registry (one snapshot: a restore, even with triggers disabled, shows the
-- same figures).
CREATE TABLE @extschema@.pair_stats (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL,
    slices          bigint NOT NULL,
    rows            bigint NOT NULL,
    oldest_day      date NOT NULL,
    newest_day      date NOT NULL,
    newest_end      date NOT NULL,
    last_refreshed_at timestamptz,
    missing_days    bigint NOT NULL,
    PRIMARY KEY (template_name, tenant_name)
);
CREATE TABLE @extschema@.pair_changes (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL
);

-- Each folded year and the storage it was folded to: a rebuild from the sources (from a
-- configuration dump) folds the same years again as they were, and the nightly maintenance
-- compresses again a columnar year that a late change rewrote as heap. Dumped.
CREATE TABLE @extschema@.folded_years (
    template_name   text NOT NULL REFERENCES @extschema@.mv_templates ON DELETE CASCADE,
    year            integer NOT NULL CHECK (year BETWEEN 1 AND 9999),
    storage         text NOT NULL CHECK (storage IN ('heap', 'columnar')),
    folded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template_name, year)
);

-- One row per operation, failures included.
CREATE TABLE @extschema@.run_log (
    run_id          bigserial PRIMARY KEY,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    operation       text NOT NULL,
    template_name   text,
    tenant_name     text,
    target_date     date,
    status          text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    rows            bigint,
    duration_ms     double precision,
    sqlstate        text,
    error           text,
    details         jsonb NOT NULL DEFAULT '{}',
    run_by          name NOT NULL DEFAULT session_user
);
CREATE INDEX ON @extschema@.run_log (started_at);
CREATE INDEX ON @extschema@.run_log (template_name, tenant_name, started_at);
CREATE INDEX ON @extschema@.run_log (status, started_at) WHERE status = 'failed';
-- The runs skipped (as busy, paused, …) of the last days, found without a scan (_wh.failures).
CREATE INDEX run_log_skipped_idx ON @extschema@.run_log (started_at) WHERE status = 'skipped';

-- Tenant-scoped readers: roles that may read one tenant (its schema, and its rows of the
-- public views, whose branches filter on this table). By role name and oid: a grant holds
-- only for the role it was given to, never for a new role that took a dropped one's name
-- (after a restore into another warehouse, _wh.finish_restore() grants the readers again
-- by name: only the rows made_in that other warehouse, never a row of this one).
CREATE TABLE @extschema@.tenant_readers (
    tenant_name     text NOT NULL,
    role_name       name NOT NULL,
    role_oid        oid NOT NULL,
    granted_by      name NOT NULL DEFAULT session_user,
    granted_at      timestamptz NOT NULL DEFAULT now(),
    made_in         text NOT NULL,  -- DEFAULT _wh._here(), set once it exists (privileges.sql)
    PRIMARY KEY (tenant_name, role_name)
);

-- The last findings of _wh.verify for tenant-days not in order: drifted (the source's
-- rows or checksum differ from the warehouse's) or unverifiable (the source did not
-- answer). A later verify of the same days replaces them. Derived, not dumped.
CREATE TABLE @extschema@.verify_findings (
    template_name       text NOT NULL,
    tenant_name         text NOT NULL,
    day                 date NOT NULL,
    status              text NOT NULL CHECK (status IN ('drifted', 'unverifiable')),
    source_rows         bigint,
    source_checksum     text,
    warehouse_rows      bigint,
    warehouse_checksum  text,
    error               text,
    repair_tried        boolean NOT NULL DEFAULT false,
    checked_at          timestamptz NOT NULL DEFAULT now(),
    checked_by          name NOT NULL DEFAULT session_user,
    PRIMARY KEY (template_name, tenant_name, day)
);

-- The scheduled-run locks: a job's row is taken FOR UPDATE SKIP LOCKED for the one
-- transaction a scheduled run takes, so a run that fires while the previous one is still
-- going skips at once, no login but wh_admin can take it (an advisory key any login
-- could hold), and it can never outlive the call.
CREATE TABLE @extschema@.run_locks (
    lock_key        text PRIMARY KEY,
    taken_by        name,
    taken_at        timestamptz
);

-- The pg_cron jobs wh made, by id and owner, recorded by _wh._cron_register when made.
-- wh stops, restarts or removes only these (never a job found by its name), and only
-- while the job still belongs to the login that made it and is still the job recorded
-- (name and command). Operators read it, never write it. Dumped with the registry: after
-- a restore, _wh.finish_restore() schedules again the jobs a fresh cluster lacks.
CREATE TABLE @extschema@.cron_jobs (
    jobid           bigint NOT NULL,
    username        name NOT NULL,
    made_at         timestamptz NOT NULL DEFAULT pg_catalog.now(),
    jobname         text NOT NULL,
    schedule        text NOT NULL,
    command         text NOT NULL,
    active          boolean NOT NULL DEFAULT true,
    -- Where it was made (_wh._here(): the cluster's system identifier and the database's
    -- oid): a row restored from a dump of another warehouse names a job this pg_cron lacks
    -- (and its jobid may be the id of another job here).
    made_in         text NOT NULL,
    PRIMARY KEY (made_in, jobid)
);

-- The refresh pool (_wh.schedule_refresh, src/ops/pool.rs): how fresh every tenant of a
-- template must be. The pool's workers (pg_cron jobs wh:pool:<n>) refresh each tenant when
-- it is due: today and the template's lookback days, as a tenant job would.
CREATE TABLE @extschema@.refresh_schedules (
    template_name   text PRIMARY KEY REFERENCES @extschema@.mv_templates ON DELETE CASCADE,
    every           interval NOT NULL CHECK (every >= '1 minute'::interval),
    set_by          name NOT NULL DEFAULT session_user,
    set_at          timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The pool's queue: one row per template and tenant it refreshes (every tenant of a
-- template with a schedule; a tenant scheduled on its own, with its own period), due at
-- next_due. A worker takes the most overdue row FOR UPDATE SKIP LOCKED and holds it through
-- the refresh, so no two workers refresh one tenant and a worker killed mid-refresh leaves
-- it due. No foreign keys: a removal never waits for a running refresh, and a worker's
-- insert never waits on a template row a fold holds (rows of tenants or templates gone are
-- deleted at once, or by the next run of the pool when a worker holds them).
CREATE TABLE @extschema@.pool_items (
    template_name   text NOT NULL,
    tenant_name     text NOT NULL,
    -- This tenant's own period (schedule_tenant); NULL: the template's schedule.
    every           interval CHECK (every >= '1 minute'::interval),
    next_due        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_started_at timestamptz,
    last_ms         double precision,
    last_status     text,
    last_worker     integer,
    refreshes       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (template_name, tenant_name)
);
CREATE INDEX pool_items_next_due_idx ON @extschema@.pool_items (next_due);

-- The seeds' objects that scripts/adopt.sh (sql/adopt/prepare.sql, a superuser) set aside,
-- by oid: _wh.seed_leftovers() offers to drop these and nothing else. Operators read it.
CREATE TABLE @extschema@.seed_objects (
    object_oid      oid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('schema', 'view')),
    name            text NOT NULL,
    tenant_name     text,
    template_name   text,
    moved_at        timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (kind, object_oid)
);

-- Who did it is the login (session_user), stamped by the server: wh's functions run as
-- wh_admin, and an operator cannot write someone else's name or another time.
CREATE FUNCTION @extschema@._stamp_session_user() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $body$
BEGIN
    IF TG_TABLE_NAME = 'connection_audit' THEN
        NEW.changed_by := session_user;
        NEW.session_user_name := session_user;
        NEW.changed_at := pg_catalog.now();
    ELSIF TG_TABLE_NAME = 'run_log' THEN
        IF TG_OP = 'INSERT' THEN
            NEW.run_by := session_user;
        ELSE
            NEW.run_by := OLD.run_by;
            NEW.started_at := OLD.started_at;
        END IF;
    ELSIF TG_TABLE_NAME = 'tenant_readers' THEN
        NEW.granted_by := session_user;
        NEW.granted_at := pg_catalog.now();
    ELSIF TG_TABLE_NAME = 'tenant_queries' THEN
        NEW.set_by := session_user;
        NEW.set_at := pg_catalog.now();
    END IF;
    RETURN NEW;
END
$body$;
CREATE TRIGGER wh_stamp BEFORE INSERT OR UPDATE ON @extschema@.connection_audit
    FOR EACH ROW EXECUTE FUNCTION @extschema@._stamp_session_user();
CREATE TRIGGER wh_stamp BEFORE INSERT OR UPDATE ON @extschema@.run_log
    FOR EACH ROW EXECUTE FUNCTION @extschema@._stamp_session_user();
CREATE TRIGGER wh_stamp BEFORE INSERT OR UPDATE ON @extschema@.tenant_readers
    FOR EACH ROW EXECUTE FUNCTION @extschema@._stamp_session_user();
CREATE TRIGGER wh_stamp BEFORE INSERT OR UPDATE ON @extschema@.tenant_queries
    FOR EACH ROW EXECUTE FUNCTION @extschema@._stamp_session_user();

-- pg_dump keeps the rows of these configuration tables (and their sequences).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tenant_connections', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connection_audit', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.connection_audit_audit_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.mv_templates', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.slices', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.run_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tenant_readers', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.tenant_queries', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.run_log_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.cron_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.refresh_schedules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pool_items', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pair_stats', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pair_changes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.folded_years', '');

-- The warehouse's notion of "today": the UTC calendar day, whatever the session TimeZone.
CREATE FUNCTION @extschema@.current_date_utc() RETURNS date
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN (pg_catalog.now() AT TIME ZONE 'UTC')::date;
