-- Sessions: one row per signed-in browser or app.
CREATE TABLE sessions (
    id           bigserial PRIMARY KEY,
    user_id      bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   varchar(128) NOT NULL UNIQUE,
    ip_address   inet,
    user_agent   text,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    last_seen_at timestamptz  NOT NULL DEFAULT now(),
    expires_at   timestamptz  NOT NULL,
    revoked_at   timestamptz,
    CONSTRAINT sessions_expiry_check CHECK (expires_at > created_at)
);

CREATE INDEX idx_sessions_user_id ON sessions (user_id);
