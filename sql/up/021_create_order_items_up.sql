-- Order items: one line per product bought.
CREATE TABLE order_items (
    id               bigserial PRIMARY KEY,
    order_id         bigint      NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id       bigint      NOT NULL,
    seller_id        bigint      NOT NULL REFERENCES sellers (id) ON DELETE RESTRICT,
    unit_price_cents integer     NOT NULL,
    quantity         integer     NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_items_unit_price_check CHECK (unit_price_cents >= 0),
    CONSTRAINT order_items_quantity_check CHECK (quantity > 0)
);

CREATE INDEX idx_order_items_order_id ON order_items (order_id);
