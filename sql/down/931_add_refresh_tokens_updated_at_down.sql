-- Roll back 931: drop refresh_tokens.updated_at and its trigger.
-- No guard: the column is row bookkeeping written by a trigger, not user data.
DROP TRIGGER IF EXISTS trg_refresh_tokens_updated_at ON refresh_tokens;
ALTER TABLE refresh_tokens DROP COLUMN IF EXISTS updated_at;
