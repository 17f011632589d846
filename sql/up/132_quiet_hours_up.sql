-- Quiet hours: users can mute push notifications for a daily window in their time zone.
ALTER TABLE notification_preferences
    ADD COLUMN quiet_hours_enabled boolean NOT NULL DEFAULT false,
    ADD COLUMN quiet_hours_start time,
    ADD COLUMN quiet_hours_end time,
    ADD COLUMN quiet_hours_timezone varchar(64) NOT NULL DEFAULT 'UTC',
    ADD CONSTRAINT notification_preferences_quiet_hours_check CHECK (
        NOT quiet_hours_enabled
        OR (quiet_hours_start IS NOT NULL AND quiet_hours_end IS NOT NULL AND quiet_hours_start <> quiet_hours_end));
