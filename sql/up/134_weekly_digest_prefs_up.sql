-- Weekly digest preferences: opt-out flag, delivery weekday (0 = Sunday) and last send time.
ALTER TABLE notification_preferences
    ADD COLUMN weekly_digest_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN weekly_digest_day smallint NOT NULL DEFAULT 1,
    ADD COLUMN weekly_digest_last_sent_at timestamptz,
    ADD CONSTRAINT notification_preferences_weekly_digest_day_check CHECK (weekly_digest_day BETWEEN 0 AND 6);
