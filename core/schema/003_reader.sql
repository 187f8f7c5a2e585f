-- 003: the reading side. `inca_read` is a NOLOGIN group holding SELECT only; login roles for the
-- dashboard and API (embedded: inca_reader; production: see docker/create-reader.sql) join it.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'inca_read') THEN
        CREATE ROLE inca_read NOLOGIN;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'inca_reader') THEN
        GRANT inca_read TO inca_reader;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'inca: no CREATEROLE privilege; create role inca_read with docker/create-reader.sql';
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO inca_read;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO inca_read;
GRANT EXECUTE ON FUNCTION inca_amount_fact_fingerprint() TO inca_read;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO inca_read;
