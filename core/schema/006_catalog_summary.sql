-- 006: catalog summaries (issue 8, market scale; measurements in docs/performance.md, "Market scale").
--
-- The catalog page needs, per canonical code and insurer, each DISTINCT raw name with its stored status;
-- the status page, per insurer, how many coverages are CONFIRMED / UNCONFIRMED / without a code. Both were
-- aggregated from every coverage instance on each call (~730,000 instances at a million facts). The
-- locked tables only change in the audited load, so the aggregates are materialized once, by the load,
-- in its own transaction (core/loader.py REFRESHes them after the data is in and audited).
--
-- Still read-only at run time, enforced by the database: a materialized view refuses INSERT, UPDATE,
-- DELETE and TRUNCATE from everyone, and only its owner may REFRESH it (the reading group gets SELECT
-- only, no MAINTAIN); a REFRESH can only recompute the same query over the locked tables.
-- Created WITH DATA: a database loaded before this file gets correct summaries when it is migrated.

-- One row per (code, insurer, raw name, stored status): how many products carry it and how many
-- instances (a product's variants each have their own). Unmatched names (coverage_code NULL) are kept
-- for the per-insurer counts below. LEFT JOIN amount_fact: an instance without a fact (the schema
-- allows it) is still counted, with a NULL status. Two hash aggregates instead of count(DISTINCT), which
-- would sort a million rows.
CREATE MATERIALIZED VIEW catalog_raw_name AS
SELECT s.coverage_code, i.insurer_key, i.name_ko AS insurer_name, s.coverage_name_raw, s.status,
       s.products, s.instances
FROM (
    SELECT coverage_code, insurer_id, coverage_name_raw, status,
           count(*) AS products, sum(instances)::bigint AS instances
    FROM (
        SELECT ci.coverage_code, ci.insurer_id, ci.coverage_name_raw, af.status, ci.product_id, count(*) AS instances
        FROM coverage_instance ci
        LEFT JOIN amount_fact af ON af.instance_id = ci.instance_id
        GROUP BY ci.coverage_code, ci.insurer_id, ci.coverage_name_raw, af.status, ci.product_id
    ) AS per_product
    GROUP BY coverage_code, insurer_id, coverage_name_raw, status
) AS s
JOIN insurer i ON i.insurer_id = s.insurer_id;

-- The grouping key, in the order the catalog reads it (code, insurer key, raw name): coverage_table()
-- merges it with coverage_canonical and raw_names(code) reads one code's range, both without a sort.
CREATE UNIQUE INDEX catalog_raw_name_key ON catalog_raw_name
    (coverage_code, insurer_key, coverage_name_raw, status) NULLS NOT DISTINCT;

-- Per insurer (every insurer, also one without coverages): the three counts partition its instances.
-- Built from catalog_raw_name (tens of thousands of rows at a million facts), so REFRESH it after that.
CREATE MATERIALIZED VIEW insurer_status_count AS
SELECT i.insurer_key, i.name_ko AS insurer_name,
       coalesce(sum(r.instances) FILTER (WHERE r.coverage_code IS NOT NULL AND r.status = 'CONFIRMED'), 0)::bigint
           AS confirmed,
       coalesce(sum(r.instances) FILTER (WHERE r.coverage_code IS NOT NULL AND r.status = 'UNCONFIRMED'), 0)::bigint
           AS unconfirmed,
       coalesce(sum(r.instances) FILTER (WHERE r.coverage_code IS NULL), 0)::bigint AS unmatched
FROM insurer i
LEFT JOIN catalog_raw_name r ON r.insurer_key = i.insurer_key
GROUP BY i.insurer_key, i.name_ko;

CREATE UNIQUE INDEX insurer_status_count_key ON insurer_status_count (insurer_key);

-- As in 004: explicit, so a migration run by another owner role still leaves them readable. SELECT only.
GRANT SELECT ON catalog_raw_name, insurer_status_count TO inca_read;
