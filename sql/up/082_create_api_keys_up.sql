-- API keys: long-lived keys for the public API, stored hashed, with scopes.
CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    user_id      bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         varchar(100) NOT NULL,
    key_prefix   varchar(12)  NOT NULL,
    key_hash     varchar(128) NOT NULL UNIQUE,
    scopes       text[]       NOT NULL DEFAULT '{}',
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT api_keys_scopes_check CHECK (scopes <@ ARRAY['read', 'write', 'upload', 'analytics', 'marketplace']::text[])
);

CREATE INDEX idx_api_keys_user_active ON api_keys (user_id) WHERE revoked_at IS NULL;
