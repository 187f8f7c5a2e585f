-- 009: reserved for another phase-B branch (17a: 008, 17b: 009). Placeholder so 010 applies on this
-- branch alone; the coordinator drops this file when the real one is merged.
SELECT 1;
