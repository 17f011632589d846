-- Track plays: raw play events (pruned after the retention window).
CREATE TABLE track_plays (
    id                      bigserial PRIMARY KEY,
    track_id                bigint      NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    user_id                 bigint,
    played_at               timestamptz NOT NULL DEFAULT now(),
    duration_played_seconds integer     NOT NULL DEFAULT 0,
    source                  varchar(16) NOT NULL DEFAULT 'other',
    country                 char(2),
    CONSTRAINT track_plays_duration_check CHECK (duration_played_seconds >= 0),
    CONSTRAINT track_plays_source_check CHECK (source IN ('search', 'playlist', 'profile', 'radio', 'embed', 'other'))
);
