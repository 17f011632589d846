-- Roll back 946: drop the skip-rate function and analytics_events.
-- Client events are collected once and cannot be replayed, so refuse while any event is stored.
-- vezamig:lock analytics_events
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM analytics_events)
DROP FUNCTION IF EXISTS track_skip_rate(bigint, timestamptz);
DROP TABLE IF EXISTS analytics_events;
