-- wh 0.9.0 -> 0.10.0: no SQL object changes. 0.10.0's library fetches tenant days over
-- its own libpq connections (COPY streamed into the staging table, the template's caps
-- counted as rows arrive) instead of dblink's functions, and adds the setting
-- wh.max_source_connections (default 16). Tenants' foreign servers (dblink_fdw) and user
-- mappings are read as before; dblink stays required for them.
SELECT 1;
