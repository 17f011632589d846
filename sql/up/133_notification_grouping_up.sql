-- Notification grouping: "Ana and 11 others liked your track" is one row with a group key and a count.
-- The lookup index on (user_id, group_key) is built concurrently in 940.
ALTER TABLE notifications
    ADD COLUMN group_key varchar(128),
    ADD COLUMN group_count integer NOT NULL DEFAULT 1,
    ADD COLUMN last_grouped_at timestamptz,
    ADD CONSTRAINT notifications_group_count_check CHECK (group_count >= 1),
    ADD CONSTRAINT notifications_group_key_check CHECK (group_key IS NOT NULL OR group_count = 1);
