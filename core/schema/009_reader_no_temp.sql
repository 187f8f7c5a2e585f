-- 009: the reading roles may not create temporary tables. A reader can still say
-- `SET TRANSACTION READ WRITE` (a session setting, not a privilege), so what it may write must be
-- nothing at all: no table privilege (003) and, here, no TEMP on the database. PostgreSQL grants
-- TEMP to PUBLIC by default, so it is revoked from PUBLIC and from inca_read; the owner keeps it.
DO $$
BEGIN
    EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'inca_read') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM inca_read', current_database());
    END IF;
END
$$;
