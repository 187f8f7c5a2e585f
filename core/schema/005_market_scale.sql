-- 005: market scale (issue 8; measurements and plans in docs/performance.md, "Market scale").
--
-- The fingerprint (002) hashes one line per amount fact, so it reads and sorts the whole market:
-- ~20 s per million facts on two cores. Its body is left exactly as it is (a different query could
-- change the digest of a database loaded before this file), only how it runs is pinned:
-- * work_mem: with the default 4 MB every hash join spilled to disk (a NULL-heavy join key, the
--   UNCONFIRMED facts without evidence, made one of them grow from 32 to 2,048 batches) and the sort
--   of ~450 MB of lines ran on disk; 64 MB keeps the joins in memory (1 M facts: 28.6 s -> 20.5 s).
--   The setting lasts only while the function runs.
-- * no parallel workers: a parallel plan of the same query (Parallel Hash Right Join) ran for more
--   than 12 minutes and grew one backend to 5.4 GB before it was cancelled; the serial plan is the
--   one measured above.
-- Page views do not run it at all (core/lock.py reuses a proof while the tables are unwritten).
ALTER FUNCTION inca_amount_fact_fingerprint() SET work_mem = '64MB';
ALTER FUNCTION inca_amount_fact_fingerprint() SET max_parallel_workers_per_gather = 0;
