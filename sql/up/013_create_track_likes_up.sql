-- Track likes: a user's hearts on tracks.
CREATE TABLE track_likes (
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    track_id   bigint      NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, track_id)
);
