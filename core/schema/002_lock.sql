-- 002: the lock. The locked tables refuse every write except inside the audited load's own
-- transaction, and the fingerprint lets anyone prove the amounts are still what was audited.

-- Canonical serialisation of amount_fact: one JSON array per fact, natural key first, so the
-- digest depends on content only (never on UUIDs or physical order). Rows are hashed one by one
-- and the digests concatenated, which keeps memory bounded at millions of facts.
CREATE FUNCTION inca_amount_fact_fingerprint() RETURNS text
LANGUAGE sql STABLE AS $$
    WITH lines AS (
        SELECT jsonb_build_array(
                   i.insurer_key, p.product_key, v.variant_key, ci.coverage_code, ci.coverage_name_raw,
                   af.status, af.value_text, af.source_doc_type, af.source_priority,
                   e.doc_type, e.page, e.snippet, af.notes)::text AS line
        FROM amount_fact af
        JOIN coverage_instance ci ON ci.instance_id = af.instance_id
        JOIN insurer i ON i.insurer_id = ci.insurer_id
        JOIN product p ON p.product_id = ci.product_id
        LEFT JOIN product_variant v ON v.variant_id = ci.variant_id
        LEFT JOIN evidence_ref e ON e.evidence_id = af.evidence_id
    )
    SELECT encode(sha256(coalesce(string_agg(sha256(convert_to(line, 'UTF8')), ''::bytea
                                             ORDER BY line COLLATE "C"), ''::bytea)), 'hex')
    FROM lines
$$;

-- Opens the current transaction (and only it) for writing the locked tables.
CREATE FUNCTION inca_open_audited_load() RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('inca.audited_load', pg_current_xact_id()::text, true)
$$;
REVOKE ALL ON FUNCTION inca_open_audited_load() FROM PUBLIC;

CREATE FUNCTION inca_refuse_unaudited_write() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('inca.audited_load', true) IS DISTINCT FROM pg_current_xact_id()::text THEN
        RAISE EXCEPTION 'inca lock: % on % refused; the table is locked and only the audited load may write it',
                        TG_OP, TG_TABLE_NAME
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'Data changes go through `python -m core load` (a new audited dataset), never by hand.';
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    locked_table text;
BEGIN
    FOREACH locked_table IN ARRAY ARRAY['insurer', 'product', 'product_variant', 'document', 'coverage_canonical',
                                       'coverage_instance', 'evidence_ref', 'amount_fact', 'audit_runs'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write()',
                       locked_table || '_lock', locked_table);
    END LOOP;
END
$$;
