-- Webhook endpoints: developer URLs that receive platform events.
CREATE TABLE webhook_endpoints (
    id         bigserial PRIMARY KEY,
    user_id    bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url        text         NOT NULL,
    secret     varchar(128) NOT NULL,
    events     text[]       NOT NULL DEFAULT '{}',
    is_active  boolean      NOT NULL DEFAULT true,
    created_at timestamptz  NOT NULL DEFAULT now(),
    updated_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT webhook_endpoints_https_check CHECK (url LIKE 'https://%')
);

CREATE INDEX idx_webhook_endpoints_user_id ON webhook_endpoints (user_id);
