-- Albums: releases that group an artist's tracks.
CREATE TABLE albums (
    id           bigserial PRIMARY KEY,
    artist_id    bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title        varchar(200) NOT NULL,
    slug         varchar(200) NOT NULL,
    album_type   varchar(16)  NOT NULL DEFAULT 'album',
    release_date date,
    cover_url    varchar(512),
    created_at   timestamptz  NOT NULL DEFAULT now(),
    updated_at   timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT albums_album_type_check CHECK (album_type IN ('album', 'ep', 'single', 'compilation')),
    CONSTRAINT albums_artist_slug_key UNIQUE (artist_id, slug)
);
