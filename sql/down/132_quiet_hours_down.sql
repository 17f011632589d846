-- Roll back 132: drop the quiet-hours settings.
-- They are users' own choices; losing them would wake people up at night, so refuse while anyone set them.
-- vezamig:lock notification_preferences
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM notification_preferences WHERE quiet_hours_enabled OR quiet_hours_start IS NOT NULL OR quiet_hours_end IS NOT NULL OR quiet_hours_timezone <> 'UTC')
ALTER TABLE notification_preferences
    DROP CONSTRAINT IF EXISTS notification_preferences_quiet_hours_check,
    DROP COLUMN IF EXISTS quiet_hours_enabled,
    DROP COLUMN IF EXISTS quiet_hours_start,
    DROP COLUMN IF EXISTS quiet_hours_end,
    DROP COLUMN IF EXISTS quiet_hours_timezone;
