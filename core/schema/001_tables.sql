-- 001: the tables and the constraints that make a bad fact impossible to store.
CREATE EXTENSION IF NOT EXISTS vector;
-- pgcrypto where the server ships it (pgvector/pgvector images do; the embedded build does not).
-- Nothing here depends on it: gen_random_uuid() and sha256() are built into PostgreSQL 13+.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pgcrypto') THEN
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
    END IF;
END
$$;

CREATE TABLE insurer (
    insurer_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    insurer_key   text NOT NULL UNIQUE CHECK (insurer_key ~ '^[a-z][a-z0-9_]*$'),
    mapping_code  text UNIQUE,
    name_ko       text NOT NULL CHECK (btrim(name_ko) <> ''),
    name_en       text,
    insurer_type  text NOT NULL CHECK (insurer_type IN ('손해', '생명'))
);

CREATE TABLE product (
    product_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    insurer_id      uuid NOT NULL REFERENCES insurer,
    product_key     text NOT NULL UNIQUE,
    product_name    text NOT NULL CHECK (btrim(product_name) <> ''),
    product_code    text,
    version         text,
    effective_date  date
);
CREATE INDEX product_insurer_idx ON product (insurer_id);

CREATE TABLE product_variant (
    variant_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id    uuid NOT NULL REFERENCES product,
    variant_key   text NOT NULL UNIQUE,
    variant_name  text NOT NULL,
    attributes    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX product_variant_product_idx ON product_variant (product_id);

CREATE TABLE document (
    document_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    product_id    uuid NOT NULL REFERENCES product,
    variant_id    uuid REFERENCES product_variant,
    document_key  text NOT NULL UNIQUE,
    doc_type      text NOT NULL CHECK (doc_type IN ('가입설계서', '약관', '사업방법서', '상품요약서')),
    title         text NOT NULL,
    file_name     text NOT NULL
);
CREATE INDEX document_product_idx ON document (product_id, doc_type);

CREATE TABLE coverage_canonical (
    coverage_code   text PRIMARY KEY CHECK (coverage_code ~ '^[A-Z]\d{4}(_\d+)?$'),
    canonical_name  text NOT NULL CHECK (btrim(canonical_name) <> ''),
    -- the workbook spells a few codes two ways; the first spelling is the name, the rest are kept
    other_names     text[] NOT NULL DEFAULT '{}'
);

CREATE TABLE coverage_instance (
    instance_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    insurer_id         uuid NOT NULL REFERENCES insurer,
    product_id         uuid NOT NULL REFERENCES product,
    variant_id         uuid REFERENCES product_variant,
    coverage_code      text REFERENCES coverage_canonical,
    coverage_name_raw  text NOT NULL CHECK (btrim(coverage_name_raw) <> ''),
    mapping_status     text NOT NULL CHECK (mapping_status IN ('matched', 'unmatched')),
    CHECK ((mapping_status = 'matched') = (coverage_code IS NOT NULL)),
    -- One insurer may map several raw coverages to one code: the raw name is part of the key.
    CONSTRAINT coverage_instance_natural_key
        UNIQUE NULLS NOT DISTINCT (insurer_id, product_id, variant_id, coverage_code, coverage_name_raw)
);
-- The comparison looks instances up by (product, code); unmatched ones by product.
CREATE INDEX coverage_instance_product_code_idx ON coverage_instance (product_id, coverage_code);

CREATE TABLE evidence_ref (
    evidence_id    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    instance_id    uuid NOT NULL REFERENCES coverage_instance,
    document_id    uuid REFERENCES document,
    doc_type       text NOT NULL CHECK (doc_type IN ('가입설계서', '약관', '사업방법서', '상품요약서')),
    page           integer CHECK (page > 0),
    snippet        text NOT NULL CHECK (btrim(snippet) <> ''),
    match_keyword  text,
    source_file    text,
    ordinal        smallint NOT NULL DEFAULT 0
);
CREATE INDEX evidence_ref_instance_idx ON evidence_ref (instance_id, doc_type, ordinal);

CREATE TABLE amount_fact (
    amount_id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    instance_id      uuid NOT NULL UNIQUE REFERENCES coverage_instance,
    status           text NOT NULL CHECK (status IN ('CONFIRMED', 'UNCONFIRMED')),
    value_text       text,
    source_doc_type  text,
    source_priority  text,
    evidence_id      uuid REFERENCES evidence_ref,
    notes            jsonb NOT NULL DEFAULT '[]',
    -- CONFIRMED: printed in the proposal, with its evidence. UNCONFIRMED: no amount, no evidence.
    CONSTRAINT amount_fact_confirmed_has_value CHECK (
        status <> 'CONFIRMED'
        OR (value_text IS NOT NULL AND btrim(value_text) <> '' AND evidence_id IS NOT NULL
            AND source_doc_type = '가입설계서')),
    CONSTRAINT amount_fact_unconfirmed_has_no_value CHECK (
        status <> 'UNCONFIRMED' OR (value_text IS NULL AND evidence_id IS NULL)),
    CONSTRAINT amount_fact_primary_from_proposal CHECK (
        source_priority IS DISTINCT FROM 'PRIMARY' OR source_doc_type = '가입설계서')
);

CREATE TABLE audit_runs (
    audit_run_id      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind              text NOT NULL CHECK (kind IN ('original', 'load')),
    audit_name        text NOT NULL,
    status            text NOT NULL CHECK (status IN ('PASS', 'FAIL')),
    freeze_tag        text NOT NULL,
    git_commit        text NOT NULL,
    generated_at      timestamptz NOT NULL,
    rows_audited      integer NOT NULL CHECK (rows_audited >= 0),
    value_mismatches  integer NOT NULL DEFAULT 0,
    type_mismatches   integer NOT NULL DEFAULT 0,
    insurers          text[] NOT NULL DEFAULT '{}',
    counts            jsonb NOT NULL DEFAULT '{}',
    fingerprint       text CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    dataset_sha256    text,
    based_on          uuid REFERENCES audit_runs,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
