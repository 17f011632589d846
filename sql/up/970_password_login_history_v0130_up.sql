-- Password and login history for v0.13.0: block password reuse, show users their recent sign-ins.
CREATE TABLE password_history (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash varchar(255) NOT NULL,
    created_at    timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX idx_password_history_user_created ON password_history (user_id, created_at DESC);

CREATE TABLE login_history (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint       REFERENCES users (id) ON DELETE CASCADE,
    email_attempted varchar(255),
    success         boolean      NOT NULL,
    failure_reason  varchar(16),
    ip_address      inet,
    user_agent      text,
    created_at      timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT login_history_failure_reason_check CHECK (failure_reason IN ('bad_password', 'unknown_user', 'locked', 'mfa_failed', 'disabled')),
    CONSTRAINT login_history_outcome_check CHECK (success = (failure_reason IS NULL)),
    CONSTRAINT login_history_who_check CHECK (user_id IS NOT NULL OR email_attempted IS NOT NULL)
);

CREATE INDEX idx_login_history_user_created ON login_history (user_id, created_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX idx_login_history_ip_failed ON login_history (ip_address, created_at DESC) WHERE NOT success;
