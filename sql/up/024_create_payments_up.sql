-- Payments: every charge, for a subscription period or a marketplace order.
CREATE TABLE payments (
    id                  bigserial PRIMARY KEY,
    user_id             bigint       NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    subscription_id     bigint       REFERENCES subscriptions (id) ON DELETE RESTRICT,
    order_id            bigint,
    amount_cents        integer      NOT NULL,
    currency            char(3)      NOT NULL DEFAULT 'EUR',
    status              varchar(16)  NOT NULL DEFAULT 'pending',
    provider            varchar(16)  NOT NULL DEFAULT 'stripe',
    provider_payment_id varchar(255),
    failure_code        varchar(64),
    created_at          timestamptz  NOT NULL DEFAULT now(),
    updated_at          timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT payments_amount_check CHECK (amount_cents >= 0),
    CONSTRAINT payments_status_check CHECK (status IN ('pending', 'succeeded', 'failed', 'refunded')),
    CONSTRAINT payments_target_check CHECK (subscription_id IS NOT NULL OR order_id IS NOT NULL),
    CONSTRAINT payments_provider_payment_key UNIQUE (provider, provider_payment_id)
);

CREATE INDEX idx_payments_subscription_id ON payments (subscription_id) WHERE subscription_id IS NOT NULL;
