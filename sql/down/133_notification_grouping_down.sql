-- Roll back 133: drop the grouping columns from notifications.
-- A grouped row stands for several events; dropping its count would silently turn
-- "and 11 others" into one event, so refuse while any notification is grouped.
-- vezamig:lock notifications
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM notifications WHERE group_key IS NOT NULL OR group_count <> 1)
ALTER TABLE notifications
    DROP CONSTRAINT IF EXISTS notifications_group_key_check,
    DROP CONSTRAINT IF EXISTS notifications_group_count_check,
    DROP COLUMN IF EXISTS group_key,
    DROP COLUMN IF EXISTS group_count,
    DROP COLUMN IF EXISTS last_grouped_at;
