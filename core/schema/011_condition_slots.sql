-- 011: condition slots (대기기간·면책, 감액, 지급 횟수·한도, 갱신, 가입나이) in the documents' own words.
-- Derived by the audited load (core/ops/conditions_load.py) from the locked raw names and snippets,
-- inside its transaction; locked like the amounts. One row per instance x slot holds the status; its
-- phrases are verbatim spans of the raw name (evidence_id NULL) or of one of the instance's snippets.
CREATE TABLE condition_slot (
    instance_id  uuid NOT NULL REFERENCES coverage_instance,
    slot         text NOT NULL CHECK (slot IN ('waiting_period', 'reduction', 'payout_limit', 'renewal', 'entry_age')),
    status       text NOT NULL CHECK (status IN ('FOUND', 'CONFLICT', 'NOT_FOUND')),
    PRIMARY KEY (instance_id, slot)
);

CREATE TABLE condition_phrase (
    instance_id  uuid NOT NULL,
    slot         text NOT NULL,
    ordinal      smallint NOT NULL CHECK (ordinal >= 0),
    evidence_id  uuid REFERENCES evidence_ref,
    source_kind  text NOT NULL CHECK (source_kind IN ('raw_name', 'evidence')),
    doc_type     text CHECK (doc_type IN ('가입설계서', '약관', '사업방법서', '상품요약서')),
    page         integer CHECK (page > 0),
    start_pos    integer NOT NULL CHECK (start_pos >= 0),
    end_pos      integer NOT NULL,
    phrase       text NOT NULL CHECK (btrim(phrase) <> ''),
    PRIMARY KEY (instance_id, slot, ordinal),
    FOREIGN KEY (instance_id, slot) REFERENCES condition_slot,
    CONSTRAINT condition_phrase_span CHECK (start_pos < end_pos AND char_length(phrase) = end_pos - start_pos),
    -- a phrase of the raw name cites no snippet; a phrase of a snippet cites it and its document type
    CONSTRAINT condition_phrase_source CHECK (
        (source_kind = 'raw_name' AND evidence_id IS NULL AND doc_type IS NULL AND page IS NULL)
        OR (source_kind = 'evidence' AND evidence_id IS NOT NULL AND doc_type IS NOT NULL))
);
CREATE INDEX condition_phrase_evidence_idx ON condition_phrase (evidence_id);

-- Locked like the amounts (schema 008): the lock trigger, SELECT for inca_read, and a place in the
-- lock's registry, so every row and column is in the recorded digests.
SELECT inca_lock_relation('condition_slot');
SELECT inca_lock_relation('condition_phrase');
