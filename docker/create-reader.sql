-- The login role the dashboard and the API read with: inca_app, a member of the SELECT-only
-- group inca_read (core/schema/003_reader.sql), with read-only transactions by default.
--
-- Run as the database owner (POSTGRES_USER), before or after `python -m core load`: the script
-- creates inca_read when the load has not yet, and the load's migration 003 grants it SELECT.
-- Idempotent: running it again only resets the password and settings.
--
--   PGPASSWORD=... psql -h HOST -U OWNER -d inca -v ON_ERROR_STOP=1 \
--       -v app_password="$INCA_APP_PASSWORD" -f docker/create-reader.sql
--
-- docker/compose.yml runs it as the one-shot service `reader`. Never add -e/-a (echo) to that
-- command: psql would print the ALTER ROLE statement with the password in it.

\set ON_ERROR_STOP on

-- psql does not substitute variables inside dollar-quoted blocks, so the checks use \if and the
-- conditional creations use \gexec.
\if :{?app_password}
\else
    \echo 'create-reader.sql: pass the password with -v app_password=... (e.g. from INCA_APP_PASSWORD)'
    DO $$ BEGIN RAISE EXCEPTION 'create-reader.sql: -v app_password=... is required'; END $$;
\endif
SELECT length(:'app_password') > 0 AS has_password \gset
\if :has_password
\else
    DO $$ BEGIN RAISE EXCEPTION 'create-reader.sql: app_password is empty; set INCA_APP_PASSWORD'; END $$;
\endif

SELECT 'CREATE ROLE inca_read NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'inca_read') \gexec
SELECT 'CREATE ROLE inca_app LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'inca_app') \gexec

-- No extra powers, whatever an earlier version of the role had.
ALTER ROLE inca_app WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
ALTER ROLE inca_app WITH PASSWORD :'app_password';
-- Every session starts read-only (core's reading connection asks for it too: belt and braces).
ALTER ROLE inca_app SET default_transaction_read_only = on;
GRANT inca_read TO inca_app;
-- A reader can still ask for a read-write transaction: leave it nothing to write, not even a
-- temporary table (PostgreSQL grants TEMP to PUBLIC by default; schema 009 revokes it too).
SELECT format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC, inca_read', current_database()) \gexec

SELECT rolname AS role, rolcanlogin AS login, rolconfig AS settings,
       pg_has_role('inca_app', 'inca_read', 'MEMBER') AS member_of_inca_read
FROM pg_roles WHERE rolname = 'inca_app';
