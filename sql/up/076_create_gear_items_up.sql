-- Gear items: the instruments and studio gear artists list on their profile.
CREATE TABLE gear_items (
    id          bigserial PRIMARY KEY,
    user_id     bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        varchar(120) NOT NULL,
    brand       varchar(80),
    model       varchar(80),
    category    varchar(32)  NOT NULL,
    description text,
    image_url   varchar(512),
    position    integer      NOT NULL DEFAULT 0,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT gear_items_category_check CHECK (category IN (
        'instrument', 'synth', 'drum_machine', 'microphone', 'interface', 'monitor',
        'headphones', 'controller', 'effect', 'software', 'other')),
    CONSTRAINT gear_items_position_check CHECK (position >= 0)
);

CREATE INDEX idx_gear_items_user_position ON gear_items (user_id, position);
