-- Roll back 134: drop the weekly digest preferences.
-- An opt-out or a chosen weekday is the user's decision; after a rollback and re-apply everyone
-- would be opted back in, so refuse while any user changed the defaults.
-- (weekly_digest_last_sent_at is send bookkeeping only and is not guarded.)
-- vezamig:lock notification_preferences
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM notification_preferences WHERE NOT weekly_digest_enabled OR weekly_digest_day <> 1)
ALTER TABLE notification_preferences
    DROP CONSTRAINT IF EXISTS notification_preferences_weekly_digest_day_check,
    DROP COLUMN IF EXISTS weekly_digest_enabled,
    DROP COLUMN IF EXISTS weekly_digest_day,
    DROP COLUMN IF EXISTS weekly_digest_last_sent_at;
