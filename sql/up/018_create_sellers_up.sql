-- Sellers: marketplace seller accounts, paid out through Stripe Connect.
CREATE TABLE sellers (
    id                bigserial PRIMARY KEY,
    user_id           bigint       NOT NULL UNIQUE REFERENCES users (id) ON DELETE RESTRICT,
    display_name      varchar(100) NOT NULL,
    country           char(2)      NOT NULL,
    payout_currency   char(3)      NOT NULL DEFAULT 'EUR',
    stripe_account_id varchar(255) UNIQUE,
    status            varchar(16)  NOT NULL DEFAULT 'pending',
    created_at        timestamptz  NOT NULL DEFAULT now(),
    updated_at        timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT sellers_status_check CHECK (status IN ('pending', 'active', 'suspended'))
);
