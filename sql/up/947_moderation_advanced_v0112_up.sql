-- Advanced moderation for v0.11.2: recorded moderator actions and report assignment/resolution.
CREATE TYPE moderation_action_type AS ENUM (
    'warn', 'hide_content', 'remove_content', 'suspend_user', 'ban_user', 'restore');

CREATE TABLE moderation_actions (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    moderator_id bigint                 REFERENCES users (id) ON DELETE SET NULL,
    report_id    bigint                 REFERENCES content_reports (id) ON DELETE SET NULL,
    action       moderation_action_type NOT NULL,
    target_type  varchar(16)            NOT NULL,
    target_id    bigint                 NOT NULL,
    reason       text                   NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz            NOT NULL DEFAULT now(),
    CONSTRAINT moderation_actions_target_type_check CHECK (target_type IN ('track', 'comment', 'user', 'playlist')),
    CONSTRAINT moderation_actions_expiry_check CHECK (expires_at IS NULL OR action IN ('suspend_user', 'hide_content'))
);

CREATE INDEX idx_moderation_actions_target ON moderation_actions (target_type, target_id, created_at DESC);
CREATE INDEX idx_moderation_actions_report_id ON moderation_actions (report_id) WHERE report_id IS NOT NULL;

ALTER TABLE content_reports
    ADD COLUMN assigned_moderator_id bigint
        CONSTRAINT content_reports_assigned_moderator_id_fkey REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN resolution varchar(24),
    ADD COLUMN resolved_at timestamptz,
    ADD CONSTRAINT content_reports_resolution_check CHECK (resolution IN (
        'no_action', 'content_removed', 'user_warned', 'user_suspended', 'user_banned'));
