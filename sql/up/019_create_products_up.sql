-- Products: what sellers list on the marketplace (beats, packs, presets, merch).
CREATE TABLE products (
    id           bigserial PRIMARY KEY,
    seller_id    bigint       NOT NULL REFERENCES sellers (id) ON DELETE CASCADE,
    track_id     bigint       REFERENCES tracks (id) ON DELETE SET NULL,
    product_type varchar(16)  NOT NULL,
    title        varchar(200) NOT NULL,
    description  text,
    price_cents  integer      NOT NULL,
    currency     char(3)      NOT NULL DEFAULT 'EUR',
    is_published boolean      NOT NULL DEFAULT false,
    metadata     jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    updated_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT products_product_type_check CHECK (product_type IN ('beat', 'sample_pack', 'preset', 'stem_pack', 'merch')),
    CONSTRAINT products_price_check CHECK (price_cents >= 0)
);

CREATE INDEX idx_products_seller_id ON products (seller_id);
