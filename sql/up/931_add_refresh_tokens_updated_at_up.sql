-- refresh_tokens.updated_at, maintained by set_updated_at() like every other table.
ALTER TABLE refresh_tokens ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now();

CREATE TRIGGER trg_refresh_tokens_updated_at
    BEFORE UPDATE ON refresh_tokens
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
