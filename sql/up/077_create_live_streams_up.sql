-- Live streams: scheduled and running live sets, with an optional recording.
CREATE TYPE live_stream_status AS ENUM ('scheduled', 'live', 'ended', 'canceled');

CREATE TABLE live_streams (
    id                 bigserial PRIMARY KEY,
    host_id            bigint             NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title              varchar(200)       NOT NULL,
    description        text,
    status             live_stream_status NOT NULL DEFAULT 'scheduled',
    stream_key_hash    varchar(128)       NOT NULL UNIQUE,
    playback_url       varchar(512),
    scheduled_for      timestamptz,
    started_at         timestamptz,
    ended_at           timestamptz,
    peak_viewers       integer            NOT NULL DEFAULT 0,
    recording_track_id bigint             REFERENCES tracks (id) ON DELETE SET NULL,
    created_at         timestamptz        NOT NULL DEFAULT now(),
    updated_at         timestamptz        NOT NULL DEFAULT now(),
    CONSTRAINT live_streams_peak_viewers_check CHECK (peak_viewers >= 0),
    CONSTRAINT live_streams_times_check CHECK (ended_at IS NULL OR started_at IS NULL OR ended_at >= started_at)
);

CREATE INDEX idx_live_streams_host_id ON live_streams (host_id);
CREATE INDEX idx_live_streams_upcoming ON live_streams (scheduled_for) WHERE status IN ('scheduled', 'live');
