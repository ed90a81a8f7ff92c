-- wh grants: runs last in CREATE EXTENSION, after every function exists.
-- PUBLIC and wh_reader get nothing in _wh; wh_admin gets what operators need.
-- Functions run as the caller (SECURITY INVOKER), so wh_admin needs DML on the config tables.

REVOKE ALL ON SCHEMA @extschema@ FROM PUBLIC;
GRANT USAGE ON SCHEMA @extschema@ TO wh_admin;

REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA @extschema@ FROM PUBLIC;

GRANT SELECT ON ALL TABLES IN SCHEMA @extschema@ TO wh_admin;   -- tables and monitoring views
GRANT INSERT, UPDATE, DELETE ON
    @extschema@.tenant_connections, @extschema@.mv_templates,
    @extschema@.slices, @extschema@.run_log, @extschema@.settings, @extschema@.tenant_readers
    TO wh_admin;
-- The audit trail is append-only for operators.
GRANT INSERT ON @extschema@.connection_audit TO wh_admin;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA @extschema@ TO wh_admin;
GRANT EXECUTE ON ALL ROUTINES IN SCHEMA @extschema@ TO wh_admin;

-- Operators create the per-tenant foreign servers, the tenant schemas and the
-- cross-tenant views public.<template>.
GRANT CREATE ON SCHEMA public TO wh_admin;
GRANT USAGE ON FOREIGN DATA WRAPPER dblink_fdw TO wh_admin;
DO $grant_db$
BEGIN
    EXECUTE pg_catalog.format('GRANT CREATE ON DATABASE %I TO wh_admin', pg_catalog.current_database());
END
$grant_db$;
