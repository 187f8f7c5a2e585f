-- 012: the comparison table's cells, one row per coverage instance (issue 16).
--
-- compare(..., include_evidence=False) assembled every cell from six index probes per instance
-- (coverage_instance, amount_fact, the proposal snippet's evidence_ref row, a count of evidence_ref,
-- the condition slots' string_agg and the phrases' json_agg): ~26 ms for a 10 x 50 grid at a million
-- facts, ~50-80 ms on a cold server. The locked tables only change in the audited load, so the load
-- materializes exactly what that read returns, once, in its own transaction (core/ops/loader.py
-- refreshes it after the condition slots are derived): a 10 x 50 selection then reads ~600 rows from a
-- few hundred contiguous pages (~2 ms warm).
--
-- The columns are the cells-only read's, under the names compare reads (core/comparison.py,
-- _VIEW_CELLS_SQL): the instance's product key, code, raw name, variant; its amount (status,
-- value_text, source document type and priority) exactly as stored; where its printed amount stands
-- (the proposal snippet's document type, page and file: a CONFIRMED amount's own snippet, as the load's
-- audit guarantees) without the snippet text; how many snippets it has; and its condition slots as the
-- two text columns of core/condition_slots.SLOT_SELECT without the cited texts (the statuses as
-- `slot:status,...` in slot order, the phrases as a JSON array in (slot, ordinal) order). Snippet text
-- stays in evidence_ref, read when an analyst opens a coverage's 원문 (compare's full read and
-- evidence() do not use this view).
--
-- Rows are written in (product key, code) order and indexed so: one product's instances share a few
-- pages. Aggregated in three grouped passes joined by hash rather than three probes per instance (15 s
-- against 30 s at a million facts).
--
-- Read-only at run time, enforced by the database, like schema 006: a materialized view refuses
-- INSERT, UPDATE, DELETE and TRUNCATE from everyone, only its owner may REFRESH it (the reading group
-- gets SELECT only), and a REFRESH can only recompute the same query over the locked tables. Locked
-- like them (schema 008): registered below, so the load's (or the upgrade's) lock record digests every
-- row and column and any other content reads as BROKEN.
--
-- Created WITH DATA: a database loaded before this file gets its cells when it is migrated, from its
-- own locked rows; `python -m core upgrade` then records it in the lock (and refreshes it after any
-- derivation step it runs, e.g. condition slots for a database loaded before schema 011).
CREATE MATERIALIZED VIEW comparison_cell AS
SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text, af.source_doc_type,
       af.source_priority, pe.doc_type AS proposal_doc_type, pe.page AS proposal_page,
       pe.source_file AS proposal_source_file, coalesce(n.snippet_count, 0) AS snippet_count,
       ci.variant_id::text AS variant, s.slot_statuses, ph.slot_phrases
FROM product p
JOIN coverage_instance ci ON ci.product_id = p.product_id
JOIN amount_fact af ON af.instance_id = ci.instance_id
LEFT JOIN evidence_ref pe ON pe.evidence_id = af.evidence_id AND af.status = 'CONFIRMED'
                         AND pe.instance_id = ci.instance_id
LEFT JOIN (SELECT instance_id, count(*) AS snippet_count FROM evidence_ref GROUP BY instance_id) AS n
       ON n.instance_id = ci.instance_id
LEFT JOIN (SELECT instance_id, string_agg(slot || ':' || status, ',' ORDER BY slot) AS slot_statuses
           FROM condition_slot GROUP BY instance_id) AS s
       ON s.instance_id = ci.instance_id
LEFT JOIN (SELECT instance_id,
                  json_agg(json_build_array(slot, phrase, source_kind, doc_type, page, start_pos, end_pos)
                           ORDER BY slot, ordinal)::text AS slot_phrases
           FROM condition_phrase GROUP BY instance_id) AS ph
       ON ph.instance_id = ci.instance_id
ORDER BY p.product_key, ci.coverage_code
WITH DATA;

-- What compare asks: some products' instances under some codes (or all codes, or none: the uncoded).
CREATE INDEX comparison_cell_product_code_idx ON comparison_cell (product_key, coverage_code);

-- Locked (schema 008): SELECT for inca_read and a place in the lock's registry.
SELECT inca_lock_relation('comparison_cell');
