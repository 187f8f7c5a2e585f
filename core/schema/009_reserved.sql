-- 009: reserved for a parallel branch (phase B) so 011 keeps the versions gap-free on this branch.
-- The coordinator replaces this file with that branch's migration at merge.
SELECT 1;
