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

-- Locked like the amounts (schema 008): the lock trigger, SELECT for inca_read, and a place in the
-- lock's registry, so a finding changed behind the triggers makes the lock BROKEN.
SELECT inca_lock_relation('evidence_finding');

-- `upgrade` runs add derived data to a database loaded by an earlier version. The kind CHECK is dropped
-- and re-added by name so other migrations may widen it the same way.
ALTER TABLE audit_runs DROP CONSTRAINT IF EXISTS audit_runs_kind_check;
ALTER TABLE audit_runs ADD CONSTRAINT audit_runs_kind_check CHECK (kind IN ('original', 'load', 'upgrade'));

GRANT SELECT ON evidence_finding TO inca_read;
