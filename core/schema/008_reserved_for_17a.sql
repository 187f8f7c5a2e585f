-- 008: placeholder so that 009 applies on this branch (versions must be 1..N without gaps).
-- Migration 008 belongs to helper 17a (the lock); DELETE THIS FILE when 17a's 008_*.sql is merged.
SELECT 1;
