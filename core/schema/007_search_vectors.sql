-- 007: coverage search at market scale (issue 8; measurements in docs/search.md, "Market scale").
--
-- At a million facts coverage_alias holds 39,495 names but only 1,871 distinct vectors: the same
-- spellings recur under 50 insurers (up to 85 rows share one vector), and a vector(1024) is 4 KB,
-- stored out of line (TOAST). An exact scan of the table (the recheck of a weak match) read every
-- vector through the TOAST index: ~500 ms, 132,000 buffers. The HNSW graph over so many identical
-- points is also a poor graph. So search ranks DISTINCT vectors, each carrying every name that has it:
--
-- * one row per (feature version, vector), grouped by a SHA-256 of the vector's binary form (comparing
--   4 KB values in a sort detoasts them again and again: 15 s against 1.6 s);
-- * the names as parallel arrays: each code's best name (what find_coverages ranks: all names of one
--   vector are equally near a query, so the best per code is known in advance), and every name (for
--   the quality bench, which leaves single names out): ranking needs no join back to coverage_alias;
-- * the vector stored inline (STORAGE PLAIN, one 4 KB row per page): an exact scan reads pages, not
--   TOAST chunks (1,871 vectors: ~4 ms).
--
-- Still read-only at run time, enforced by the database, like schema 006: a materialized view refuses
-- INSERT, UPDATE, DELETE and TRUNCATE from everyone, only its owner may REFRESH it (the reading group
-- gets SELECT only), and a REFRESH can only recompute the same query over the locked table. The load
-- refreshes it in its own transaction (core/loader.py) after coverage_alias is written; REFRESH builds
-- the HNSW index after the rows, in bulk.
CREATE MATERIALIZED VIEW coverage_alias_vector AS
WITH named AS (
    SELECT alias_id, feature_version, coverage_code, alias_text, insurer_key, source,
           sha256(vector_send(embedding)) AS vector_key
    FROM coverage_alias
), ranked AS (
    -- each code's best name among those of one vector (they are all equally near any query)
    SELECT named.*, row_number() OVER (PARTITION BY feature_version, vector_key, coverage_code
                                       ORDER BY source, alias_text, insurer_key NULLS FIRST) = 1 AS best
    FROM named
)
SELECT g.feature_version, a.embedding,
       g.best_coverage_codes, g.best_alias_texts, g.best_insurer_keys, g.best_sources,
       g.coverage_codes, g.alias_texts, g.insurer_keys, g.sources
FROM (
    SELECT feature_version,
           (array_agg(alias_id))[1] AS first_alias_id,
           -- what find_coverages ranks: one name per code (1-3 per vector instead of up to 85)
           array_agg(coverage_code ORDER BY coverage_code) FILTER (WHERE best) AS best_coverage_codes,
           array_agg(alias_text ORDER BY coverage_code) FILTER (WHERE best) AS best_alias_texts,
           array_agg(insurer_key ORDER BY coverage_code) FILTER (WHERE best) AS best_insurer_keys,
           array_agg(source ORDER BY coverage_code) FILTER (WHERE best) AS best_sources,
           -- every name, for the quality bench's filters that leave single names out
           array_agg(coverage_code ORDER BY coverage_code, source, alias_text, insurer_key NULLS FIRST) AS coverage_codes,
           array_agg(alias_text ORDER BY coverage_code, source, alias_text, insurer_key NULLS FIRST) AS alias_texts,
           array_agg(insurer_key ORDER BY coverage_code, source, alias_text, insurer_key NULLS FIRST) AS insurer_keys,
           array_agg(source ORDER BY coverage_code, source, alias_text, insurer_key NULLS FIRST) AS sources
    FROM ranked
    GROUP BY feature_version, vector_key
) AS g
JOIN coverage_alias a ON a.alias_id = g.first_alias_id
WITH NO DATA;

-- Before any row is written: REFRESH writes a new heap with the same column storage.
ALTER MATERIALIZED VIEW coverage_alias_vector ALTER COLUMN embedding SET STORAGE PLAIN;

-- As schema 004's index on coverage_alias (the same graph settings), now over distinct vectors.
CREATE INDEX coverage_alias_vector_embedding_idx ON coverage_alias_vector
    USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 128);

-- A database loaded before this file gets its vectors now, from its own locked names.
REFRESH MATERIALIZED VIEW coverage_alias_vector;

-- Search no longer ranks coverage_alias itself: its graph (13.7 s of the 1 M load) goes.
DROP INDEX IF EXISTS coverage_alias_embedding_idx;

-- As in 004 and 006: explicit, so a migration run by another owner role still leaves it readable.
GRANT SELECT ON coverage_alias_vector TO inca_read;
