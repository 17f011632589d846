-- Advanced analytics for v0.11.1: a client event stream (skips, seeks, shares) and a skip-rate function.
CREATE TABLE analytics_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint      REFERENCES users (id) ON DELETE SET NULL,
    anonymous_id    uuid,
    session_id      uuid,
    event_type      varchar(32) NOT NULL,
    track_id        bigint      REFERENCES tracks (id) ON DELETE SET NULL,
    properties      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    client_platform varchar(16),
    occurred_at     timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT analytics_events_event_type_check CHECK (event_type IN (
        'play_start', 'play_complete', 'skip', 'seek', 'like', 'share',
        'add_to_playlist', 'follow', 'purchase', 'search')),
    CONSTRAINT analytics_events_client_platform_check CHECK (client_platform IN ('web', 'ios', 'android', 'desktop', 'embed')),
    CONSTRAINT analytics_events_identity_check CHECK (user_id IS NOT NULL OR anonymous_id IS NOT NULL),
    CONSTRAINT analytics_events_properties_object_check CHECK (jsonb_typeof(properties) = 'object')
);

CREATE INDEX idx_analytics_events_track_occurred ON analytics_events (track_id, occurred_at) WHERE track_id IS NOT NULL;
CREATE INDEX idx_analytics_events_properties ON analytics_events USING gin (properties jsonb_path_ops);

CREATE FUNCTION track_skip_rate(p_track_id bigint, p_since timestamptz) RETURNS numeric
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN count(*) FILTER (WHERE event_type = 'play_start') = 0 THEN NULL
                ELSE round(count(*) FILTER (WHERE event_type = 'skip')::numeric
                           / count(*) FILTER (WHERE event_type = 'play_start'), 4)
           END
    FROM analytics_events
    WHERE track_id = p_track_id AND occurred_at >= p_since;
$$;
