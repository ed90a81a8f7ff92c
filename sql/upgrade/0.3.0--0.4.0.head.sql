-- wh 0.3.0 -> 0.4.0: progress of running operations (_wh.progress), missing days
-- (_wh.gaps, counted by health()), rename_tenant, hints for the seeds' argument order.
\echo Use "ALTER EXTENSION wh UPDATE" to load this file. \quit

-- Run as a superuser: search_path pinned for this script (SET LOCAL ends with it), so an
-- operator or function planted in public never matches a comparison below (0.6.0).
SET LOCAL search_path = @extschema@, pg_catalog, pg_temp;

-- DROP EXTENSION wh leaves the warehouse's data readable: the partitions' schema is no
-- longer a member of the extension.
ALTER EXTENSION wh DROP SCHEMA _wh_data;

-- The audit records renames.
ALTER TABLE @extschema@.connection_audit DROP CONSTRAINT connection_audit_action_check,
    ADD CONSTRAINT connection_audit_action_check CHECK (action IN ('create', 'update', 'remove', 'pause', 'resume', 'rename'));

-- The last findings of _wh.verify (see sql/bootstrap.sql).
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

-- Every 0.3.0 view and routine is dropped here and created below
-- exactly as a fresh 0.4.0 install creates it (the upgrade test compares the catalogs).
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

-- ---------------------------------------------------------------- 0.4.0 routines, views, grants
