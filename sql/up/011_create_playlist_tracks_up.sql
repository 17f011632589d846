-- Playlist tracks: the ordered content of a playlist.
CREATE TABLE playlist_tracks (
    playlist_id bigint      NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
    track_id    bigint      NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    position    integer     NOT NULL,
    added_by    bigint      REFERENCES users (id) ON DELETE SET NULL,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (playlist_id, track_id),
    CONSTRAINT playlist_tracks_position_check CHECK (position >= 0),
    CONSTRAINT playlist_tracks_position_key UNIQUE (playlist_id, position) DEFERRABLE INITIALLY DEFERRED
);
