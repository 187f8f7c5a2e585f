-- 010: evidence findings (issue 13). A CONFIRMED fact whose value_text is not a complete amount in its
-- own proposal snippet (core/evidence_consistency.py: `000만원` inside `1,⏎000만원`) gets one row per
-- kind of disagreement. Written by the audited load in its own transaction, from the rows it has just
-- written (core/ops/findings_load.py), or for a database loaded earlier by `python -m core upgrade`
-- (same function, same rows). A finding never changes a value or a status: it tells the reader to look
-- at the 원문. Locked like every table of 002: a finding changed by hand is tampering.
CREATE TABLE evidence_finding (
    finding_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    amount_id    uuid NOT NULL REFERENCES amount_fact,
    instance_id  uuid NOT NULL REFERENCES coverage_instance,
    evidence_id  uuid NOT NULL REFERENCES evidence_ref,
    kind         text NOT NULL CHECK (kind IN ('digit_before', 'digit_after', 'inside_longer_amount',
                                               'different_amount', 'not_in_snippet')),
    -- the locked value exactly as stored (a copy, so the finding reads alone); never edited
    value_text   text NOT NULL CHECK (btrim(value_text) <> ''),
    -- verbatim snippet text around the value (or the coverage's row), never summarised
    context      text NOT NULL CHECK (btrim(context) <> ''),
    detail       text NOT NULL CHECK (btrim(detail) <> ''),
    -- check_fact reports each kind at most once per fact
    CONSTRAINT evidence_finding_natural_key UNIQUE (amount_id, kind)
);
CREATE INDEX evidence_finding_instance_idx ON evidence_finding (instance_id);

CREATE TRIGGER evidence_finding_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON evidence_finding
    FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write();

-- A digest of the findings by content (natural key first, never UUIDs or physical order), recorded by
-- the load or the upgrade that wrote them: the status compares it with the live one. Separate from
-- inca_amount_fact_fingerprint(), which stays exactly as it was (findings are about extraction).
CREATE FUNCTION inca_evidence_finding_digest() RETURNS text
LANGUAGE sql STABLE AS $$
    WITH lines AS (
        SELECT jsonb_build_array(i.insurer_key, p.product_key, v.variant_key, ci.coverage_code, ci.coverage_name_raw,
                                 f.kind, f.value_text, f.context, f.detail, e.doc_type, e.page)::text AS line
        FROM evidence_finding f
        JOIN coverage_instance ci ON ci.instance_id = f.instance_id
        JOIN insurer i ON i.insurer_id = ci.insurer_id
        JOIN product p ON p.product_id = ci.product_id
        LEFT JOIN product_variant v ON v.variant_id = ci.variant_id
        JOIN evidence_ref e ON e.evidence_id = f.evidence_id
    )
    SELECT encode(sha256(coalesce(string_agg(sha256(convert_to(line, 'UTF8')), ''::bytea
                                             ORDER BY line COLLATE "C"), ''::bytea)), 'hex')
    FROM lines
$$;

-- The run that wrote the findings records their digest. `upgrade` runs add derived data to a database
-- loaded by an earlier version. The kind CHECK is dropped and re-added by name so other migrations may
-- widen it the same way.
ALTER TABLE audit_runs ADD COLUMN evidence_findings_sha256 text
    CHECK (evidence_findings_sha256 ~ '^[0-9a-f]{64}$');
ALTER TABLE audit_runs DROP CONSTRAINT IF EXISTS audit_runs_kind_check;
ALTER TABLE audit_runs ADD CONSTRAINT audit_runs_kind_check CHECK (kind IN ('original', 'load', 'upgrade'));

GRANT SELECT ON evidence_finding TO inca_read;
GRANT EXECUTE ON FUNCTION inca_evidence_finding_digest() TO inca_read;
