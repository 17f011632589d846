-- Roll back 125: drop the follow-count trigger, its function and the two counters.
-- No guard: the counters are derived from follows and the up recomputes them, so nothing is lost.
DROP TRIGGER IF EXISTS trg_follows_counts ON follows;
DROP FUNCTION IF EXISTS follows_update_counts();
ALTER TABLE users
    DROP CONSTRAINT IF EXISTS users_follow_counts_check,
    DROP COLUMN IF EXISTS followers_count,
    DROP COLUMN IF EXISTS following_count;
