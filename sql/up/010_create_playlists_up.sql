-- Playlists: user-made ordered lists of tracks.
CREATE TABLE playlists (
    id          bigserial PRIMARY KEY,
    owner_id    bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       varchar(200) NOT NULL,
    description text,
    visibility  varchar(16)  NOT NULL DEFAULT 'public',
    cover_url   varchar(512),
    created_at  timestamptz  NOT NULL DEFAULT now(),
    updated_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT playlists_visibility_check CHECK (visibility IN ('public', 'unlisted', 'private'))
);

CREATE INDEX idx_playlists_owner_id ON playlists (owner_id);
