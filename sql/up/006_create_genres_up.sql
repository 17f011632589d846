-- Genres: a small curated tree (house > deep house).
CREATE TABLE genres (
    id        serial PRIMARY KEY,
    slug      varchar(64)  NOT NULL UNIQUE,
    name      varchar(100) NOT NULL,
    parent_id integer      REFERENCES genres (id) ON DELETE SET NULL,
    CONSTRAINT genres_slug_format_check CHECK (slug ~ '^[a-z0-9-]+$'),
    CONSTRAINT genres_not_own_parent_check CHECK (parent_id IS NULL OR parent_id <> id)
);
