-- Roll back 947: drop moderation_actions, its action type, and the report assignment columns.
-- Moderator actions (suspensions, bans) and report resolutions are the record that justifies
-- sanctions against users, so refuse while any exists.
-- vezamig:lock moderation_actions, content_reports
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM moderation_actions)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM content_reports WHERE assigned_moderator_id IS NOT NULL OR resolution IS NOT NULL OR resolved_at IS NOT NULL)
ALTER TABLE content_reports
    DROP CONSTRAINT IF EXISTS content_reports_resolution_check,
    DROP CONSTRAINT IF EXISTS content_reports_assigned_moderator_id_fkey,
    DROP COLUMN IF EXISTS assigned_moderator_id,
    DROP COLUMN IF EXISTS resolution,
    DROP COLUMN IF EXISTS resolved_at;
DROP TABLE IF EXISTS moderation_actions;
DROP TYPE IF EXISTS moderation_action_type;
