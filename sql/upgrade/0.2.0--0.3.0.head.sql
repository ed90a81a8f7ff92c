-- wh 0.2.0 -> 0.3.0: every call works with wh_admin's privileges and a pinned search_path;
-- tenant schemas only through wh's own path; local deadlines for sources; limits on what a
-- source sends; channel binding by default; locks only wh_admin can take; stamped audit.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below (0.6.0).
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- Tables keep their rows; they gain what 0.3.0 records.
ALTER TABLE @extschema@.tenant_connections
    ADD COLUMN channel_binding text NOT NULL DEFAULT 'require' CHECK (channel_binding IN ('require', 'prefer', 'disable')),
    ADD COLUMN paused_at timestamptz;
ALTER TABLE @extschema@.connection_audit DROP CONSTRAINT connection_audit_action_check,
    ADD CONSTRAINT connection_audit_action_check CHECK (action IN ('create', 'update', 'remove', 'pause', 'resume'));
ALTER TABLE @extschema@.mv_templates
    ADD COLUMN max_rows_per_day bigint NOT NULL DEFAULT 10000000 CHECK (max_rows_per_day > 0),
    ADD COLUMN max_bytes_per_day bigint NOT NULL DEFAULT 268435456 CHECK (max_bytes_per_day > 0),
    ADD COLUMN max_row_bytes bigint NOT NULL DEFAULT 8388608 CHECK (max_row_bytes > 0);
ALTER TABLE @extschema@.connection_audit ALTER COLUMN changed_by SET DEFAULT session_user;
ALTER TABLE @extschema@.run_log ALTER COLUMN run_by SET DEFAULT session_user;
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN granted_by SET DEFAULT session_user;
-- Reader grants are bound to the role they were given to (its oid). A grant whose role is
-- gone is dropped: it can no longer pass to a new role of the same name.
ALTER TABLE @extschema@.tenant_readers ADD COLUMN role_oid oid;
UPDATE @extschema@.tenant_readers t SET role_oid = r.oid FROM pg_catalog.pg_roles r WHERE r.rolname = t.role_name;
DELETE FROM @extschema@.tenant_readers WHERE role_oid IS NULL;
ALTER TABLE @extschema@.tenant_readers ALTER COLUMN role_oid SET NOT NULL;

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

SELECT pg_catalog.pg_extension_config_dump('@extschema@.tenant_queries', '');

CREATE TABLE @extschema@.run_locks (
    lock_key        text PRIMARY KEY,
    taken_by        name,
    taken_at        timestamptz
);

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

-- Every tenant's server: channel binding required (relax per tenant with
-- set_tenant_connection(..., channel_binding => 'prefer')), remote messages kept out of
-- the warehouse's log.
DO $servers$
DECLARE
    t record;
    ms bigint;
BEGIN
    FOR t IN SELECT * FROM @extschema@.tenant_connections LOOP
        ms := (extract(epoch FROM t.remote_timeout) * 1000::numeric)::int8;
        EXECUTE pg_catalog.format(
            'ALTER SERVER %I OPTIONS (ADD channel_binding %L, SET options %L)', t.server_name, 'require',
            pg_catalog.format('-c statement_timeout=%s -c idle_in_transaction_session_timeout=%s -c TimeZone=UTC -c default_transaction_read_only=on -c client_min_messages=error', ms, ms));
    END LOOP;
END
$servers$;

-- Every 0.2.0 view and routine is dropped here and created below exactly as a fresh 0.3.0
-- install creates it (the upgrade test compares the two catalogs).
DROP VIEW @extschema@.job_history, @extschema@.jobs, @extschema@.failures, @extschema@.freshness,
    @extschema@.storage, @extschema@.partitions;
DO $drop$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT p.oid::regprocedure AS sig, p.prokind
        FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
        JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'wh'
        WHERE p.proname NOT IN ('current_date_utc', '_stamp_session_user')
    LOOP
        EXECUTE pg_catalog.format('DROP %s %s', CASE r.prokind WHEN 'p' THEN 'PROCEDURE' ELSE 'FUNCTION' END, r.sig);
    END LOOP;
END
$drop$;

-- ---------------------------------------------------------------- 0.3.0 routines, views, grants
