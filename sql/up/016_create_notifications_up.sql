-- Notifications: the in-app notification feed.
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    actor_id    bigint,
    type        varchar(40) NOT NULL,
    entity_type varchar(32),
    entity_id   bigint,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    read_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_type_check CHECK (type IN (
        'new_follower', 'track_like', 'comment', 'comment_reply', 'new_release',
        'playlist_add', 'order_paid', 'payout_sent', 'system'))
);
