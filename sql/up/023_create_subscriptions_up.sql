-- Subscriptions: premium and pro plans billed by the payment provider.
CREATE TABLE subscriptions (
    id                       bigserial PRIMARY KEY,
    user_id                  bigint       NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    plan                     varchar(16)  NOT NULL,
    status                   varchar(24)  NOT NULL DEFAULT 'incomplete',
    provider                 varchar(16)  NOT NULL DEFAULT 'stripe',
    provider_subscription_id varchar(255) UNIQUE,
    current_period_start     timestamptz,
    current_period_end       timestamptz,
    cancel_at_period_end     boolean      NOT NULL DEFAULT false,
    canceled_at              timestamptz,
    metadata                 jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at               timestamptz  NOT NULL DEFAULT now(),
    updated_at               timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_plan_check CHECK (plan IN ('premium', 'pro')),
    CONSTRAINT subscriptions_status_check CHECK (status IN (
        'incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'canceled', 'voided')),
    CONSTRAINT subscriptions_period_check CHECK (current_period_end IS NULL OR current_period_end > current_period_start)
);

-- A user has at most one subscription that is still live (billable or about to be).
CREATE UNIQUE INDEX uq_subscriptions_one_live_per_user ON subscriptions (user_id)
    WHERE status IN ('incomplete', 'trialing', 'active', 'past_due', 'unpaid');
