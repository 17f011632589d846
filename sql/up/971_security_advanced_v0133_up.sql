-- Advanced account security for v0.13.3: TOTP two-factor, recovery codes, trusted devices, lockout.
ALTER TABLE users
    ADD COLUMN mfa_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN mfa_secret_encrypted bytea,
    ADD COLUMN mfa_enabled_at timestamptz,
    ADD COLUMN failed_login_count integer NOT NULL DEFAULT 0,
    ADD COLUMN locked_until timestamptz,
    ADD CONSTRAINT users_mfa_secret_check CHECK (NOT mfa_enabled OR mfa_secret_encrypted IS NOT NULL),
    ADD CONSTRAINT users_failed_login_count_check CHECK (failed_login_count >= 0);

CREATE TABLE user_recovery_codes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  varchar(128) NOT NULL,
    used_at    timestamptz,
    created_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT user_recovery_codes_user_code_key UNIQUE (user_id, code_hash)
);

CREATE TABLE trusted_devices (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_fingerprint varchar(128) NOT NULL,
    name               varchar(100),
    last_ip_address    inet,
    last_seen_at       timestamptz  NOT NULL DEFAULT now(),
    expires_at         timestamptz  NOT NULL,
    created_at         timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT trusted_devices_user_fingerprint_key UNIQUE (user_id, device_fingerprint)
);
