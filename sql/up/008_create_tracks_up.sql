-- Tracks: uploaded audio with its metadata and processing state.
CREATE TABLE tracks (
    id               bigserial PRIMARY KEY,
    user_id          bigint       NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    album_id         bigint       REFERENCES albums (id) ON DELETE SET NULL,
    genre_id         integer      REFERENCES genres (id) ON DELETE SET NULL,
    title            varchar(200) NOT NULL,
    slug             varchar(200) NOT NULL,
    description      text,
    duration_seconds integer,
    file_path        varchar(512) NOT NULL,
    file_size_bytes  bigint,
    mime_type        varchar(64)  NOT NULL DEFAULT 'audio/mpeg',
    bpm              smallint,
    musical_key      varchar(8),
    is_explicit      boolean      NOT NULL DEFAULT false,
    visibility       varchar(16)  NOT NULL DEFAULT 'public',
    status           varchar(16)  NOT NULL DEFAULT 'processing',
    play_count       bigint       NOT NULL DEFAULT 0,
    created_at       timestamptz  NOT NULL DEFAULT now(),
    updated_at       timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT tracks_duration_check CHECK (duration_seconds IS NULL OR duration_seconds > 0),
    CONSTRAINT tracks_bpm_check CHECK (bpm IS NULL OR bpm BETWEEN 20 AND 400),
    CONSTRAINT tracks_visibility_check CHECK (visibility IN ('public', 'unlisted', 'private')),
    CONSTRAINT tracks_status_check CHECK (status IN ('uploading', 'processing', 'ready', 'failed')),
    CONSTRAINT tracks_user_slug_key UNIQUE (user_id, slug)
);

CREATE INDEX idx_tracks_album_id ON tracks (album_id) WHERE album_id IS NOT NULL;
