-- 004: coverage search. Every spelling of a canonical coverage (its canonical names, each insurer's
-- own names from the mapping workbook and the proposal cards) with its vector from
-- core.search_vectors.embed, written by the audited load in its own transaction like every other
-- table. Search reads it (core/search.py); it never changes a mapping.
CREATE TABLE coverage_alias (
    alias_id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    coverage_code    text NOT NULL REFERENCES coverage_canonical,
    -- exactly as printed (spacing, brackets, line breaks); the vector carries the normalised form
    alias_text       text NOT NULL CHECK (btrim(alias_text) <> ''),
    source           text NOT NULL CHECK (source IN ('canonical', 'workbook', 'card')),
    insurer_key      text REFERENCES insurer (insurer_key),
    -- core.search_vectors.FEATURE_VERSION the vector was built with: a query vector of another
    -- version is not comparable, so search refuses rather than rank by noise
    feature_version  text NOT NULL CHECK (feature_version <> ''),
    embedding        vector(1024) NOT NULL,
    -- canonical names belong to no insurer; an insurer's own name always names its insurer
    CONSTRAINT coverage_alias_insurer_iff_not_canonical CHECK ((source = 'canonical') = (insurer_key IS NULL)),
    CONSTRAINT coverage_alias_natural_key UNIQUE NULLS NOT DISTINCT (coverage_code, alias_text, insurer_key)
);

-- Cosine distance (`<=>`) ranks the names; the planner prefers a sequential scan while the table
-- is small (hundreds of rows) and this index once it is large. The hashed vectors are sparse, so many
-- pairs are exactly orthogonal and the default graph (m 16, ef_construction 64) strands rare names:
-- at 50 000 names it agreed with an exact scan on the first code for 80-88 % of real queries, these
-- settings for 98-99.6 % (bench/search_index_plan.py, docs/search.md).
CREATE INDEX coverage_alias_embedding_idx ON coverage_alias
    USING hnsw (embedding vector_cosine_ops) WITH (m = 32, ef_construction = 128);

-- The same lock as the tables of 002: only the audited load's own transaction may write.
CREATE TRIGGER coverage_alias_lock BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON coverage_alias
    FOR EACH STATEMENT EXECUTE FUNCTION inca_refuse_unaudited_write();

-- 003's default privileges only cover tables created by the role that ran 003; grant explicitly so a
-- migration run by another owner role still leaves the table readable.
GRANT SELECT ON coverage_alias TO inca_read;
