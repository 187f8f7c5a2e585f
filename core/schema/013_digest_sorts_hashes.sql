-- 013: the lock's digest (schema 008) hashes rows in parallel workers and sorts only the hashes.
--
-- Same digest, byte for byte: every row's SHA-256 over the same canonical JSON, sorted as bytes, and
-- the SHA-256 of their concatenation. Records written by 008's function stay valid.
--
-- 008's query let the planner flatten the hashing subquery into the aggregate: at a million facts it
-- sorted evidence_ref's 3.7 M rows with their columns (1.7 GB on disk) and hashed each row in the
-- sort's key, on one core, without parallel workers. Here the subquery hashes and sorts the hashes
-- (32 bytes a row; 512 MB keeps about four million of them in memory, PostgreSQL counting ~126 bytes
-- per sorted hash), and the aggregate's ORDER BY is met by that sorted input, so the order stays
-- declared rather than assumed. Free parallel setup and tuples let the planner hash and sort in the
-- server's parallel workers (max_parallel_workers_per_gather, sized per machine: core/server_sizing.py)
-- and merge their sorted hashes: 12 s against 28 s for evidence_ref and 6 s against 14 s for
-- condition_slot at a million facts, with one worker on this two-core machine. A server without
-- workers runs the same plan serially, with the same digest.
CREATE OR REPLACE FUNCTION inca_relation_digest(rel regclass, OUT row_count bigint, OUT digest text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 1
SET work_mem = '512MB' SET parallel_setup_cost = 0 SET parallel_tuple_cost = 0
AS $$
DECLARE
    columns text;
BEGIN
    -- every live column in column order; a vector (4 KB) enters as the SHA-256 of its binary form
    SELECT string_agg(CASE WHEN t.typname = 'vector' THEN format('encode(sha256(vector_send(r.%I)), %L)', a.attname, 'hex')
                           ELSE format('r.%I', a.attname) END, ', ' ORDER BY a.attnum)
    INTO columns
    FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped;
    -- row hashes sorted as bytes: deterministic without any collation, and cheap to sort
    EXECUTE format('SELECT count(*), encode(sha256(coalesce(string_agg(h, %L::bytea ORDER BY h), %L::bytea)), %L) '
                   'FROM (SELECT sha256(convert_to(json_build_array(%s)::text, %L)) AS h FROM %s r ORDER BY h) s',
                   '', '', 'hex', columns, 'UTF8', rel)
    INTO row_count, digest;
END
$$;
