-- Content reports: users flag tracks, comments, users or playlists for moderation.
CREATE TABLE content_reports (
    id          bigserial PRIMARY KEY,
    reporter_id bigint      REFERENCES users (id) ON DELETE SET NULL,
    target_type varchar(16) NOT NULL,
    target_id   bigint      NOT NULL,
    reason      varchar(16) NOT NULL,
    details     text,
    status      varchar(16) NOT NULL DEFAULT 'open',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT content_reports_target_type_check CHECK (target_type IN ('track', 'comment', 'user', 'playlist')),
    CONSTRAINT content_reports_reason_check CHECK (reason IN ('spam', 'copyright', 'abuse', 'explicit', 'other')),
    CONSTRAINT content_reports_status_check CHECK (status IN ('open', 'reviewing', 'resolved', 'dismissed'))
);

CREATE INDEX idx_content_reports_target ON content_reports (target_type, target_id);
