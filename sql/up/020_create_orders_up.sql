-- Orders: a buyer's checkout.
CREATE TABLE orders (
    id          bigserial PRIMARY KEY,
    buyer_id    bigint      NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
    status      varchar(16) NOT NULL DEFAULT 'pending',
    total_cents integer     NOT NULL,
    currency    char(3)     NOT NULL DEFAULT 'EUR',
    paid_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_status_check CHECK (status IN ('pending', 'paid', 'failed', 'refunded', 'canceled')),
    CONSTRAINT orders_total_check CHECK (total_cents >= 0),
    CONSTRAINT orders_paid_at_check CHECK (status <> 'paid' OR paid_at IS NOT NULL)
);
