-- Refresh tokens: rotating tokens that renew a session's access token.
CREATE TABLE refresh_tokens (
    id             bigserial PRIMARY KEY,
    user_id        bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    session_id     bigint       NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash     varchar(128) NOT NULL UNIQUE,
    replaced_by_id bigint       REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    expires_at     timestamptz  NOT NULL,
    revoked_at     timestamptz,
    created_at     timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX idx_refresh_tokens_session_id ON refresh_tokens (session_id);
