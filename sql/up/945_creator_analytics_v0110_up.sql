-- Creator analytics for v0.11.0: daily per-track rollups, a refresh function and a 30-day overview view.
CREATE TABLE track_daily_stats (
    track_id         bigint  NOT NULL REFERENCES tracks (id) ON DELETE CASCADE,
    day              date    NOT NULL,
    plays            integer NOT NULL DEFAULT 0,
    unique_listeners integer NOT NULL DEFAULT 0,
    play_seconds     bigint  NOT NULL DEFAULT 0,
    likes            integer NOT NULL DEFAULT 0,
    PRIMARY KEY (track_id, day),
    CONSTRAINT track_daily_stats_nonnegative_check CHECK (plays >= 0 AND unique_listeners >= 0 AND play_seconds >= 0 AND likes >= 0)
);

CREATE FUNCTION refresh_track_daily_stats(p_day date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    affected integer;
BEGIN
    INSERT INTO track_daily_stats AS s (track_id, day, plays, unique_listeners, play_seconds, likes)
    SELECT p.track_id, p_day, count(*), count(DISTINCT p.user_id), sum(p.duration_played_seconds),
           (SELECT count(*) FROM track_likes l
             WHERE l.track_id = p.track_id AND l.created_at >= p_day AND l.created_at < p_day + 1)
    FROM track_plays p
    WHERE p.played_at >= p_day AND p.played_at < p_day + 1
    GROUP BY p.track_id
    ON CONFLICT (track_id, day) DO UPDATE
        SET plays = EXCLUDED.plays,
            unique_listeners = EXCLUDED.unique_listeners,
            play_seconds = EXCLUDED.play_seconds,
            likes = EXCLUDED.likes;
    GET DIAGNOSTICS affected = ROW_COUNT;
    RETURN affected;
END;
$$;

CREATE VIEW creator_track_overview AS
SELECT t.user_id AS creator_id,
       t.id AS track_id,
       t.title,
       coalesce(sum(s.plays), 0) AS plays_30d,
       coalesce(sum(s.unique_listeners), 0) AS listeners_30d,
       coalesce(sum(s.likes), 0) AS likes_30d
FROM tracks t
LEFT JOIN track_daily_stats s ON s.track_id = t.id AND s.day >= current_date - 30
WHERE t.deleted_at IS NULL
GROUP BY t.user_id, t.id, t.title;
