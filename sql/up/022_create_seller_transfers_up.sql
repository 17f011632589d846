-- Seller transfers: payouts to sellers' Stripe Connect accounts.
CREATE TABLE seller_transfers (
    id                 bigserial PRIMARY KEY,
    seller_id          bigint       NOT NULL REFERENCES sellers (id) ON DELETE RESTRICT,
    order_id           bigint       NOT NULL REFERENCES orders (id) ON DELETE RESTRICT,
    amount_cents       integer      NOT NULL,
    currency           char(3)      NOT NULL DEFAULT 'EUR',
    status             varchar(16)  NOT NULL DEFAULT 'pending',
    stripe_transfer_id varchar(255) UNIQUE,
    failure_reason     text,
    created_at         timestamptz  NOT NULL DEFAULT now(),
    updated_at         timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT seller_transfers_amount_check CHECK (amount_cents > 0),
    CONSTRAINT seller_transfers_status_check CHECK (status IN ('pending', 'paid', 'failed', 'reversed'))
);

CREATE INDEX idx_seller_transfers_seller_id ON seller_transfers (seller_id);
