-- Comments: timed comments on tracks, with one level of replies.
CREATE TABLE comments (
    id                bigserial PRIMARY KEY,
    track_id          bigint      NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    user_id           bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id         bigint,
    body              text        NOT NULL,
    timestamp_seconds integer,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CONSTRAINT comments_body_length_check CHECK (char_length(body) BETWEEN 1 AND 4000),
    CONSTRAINT comments_timestamp_check CHECK (timestamp_seconds IS NULL OR timestamp_seconds >= 0)
);
