-- Roll back 945: drop the overview view, the refresh function and track_daily_stats.
-- Raw track_plays are pruned after the retention window, after which the rollups are the only
-- copy of older statistics, so refuse while any rollup row exists.
-- vezamig:lock track_daily_stats
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM track_daily_stats)
DROP VIEW IF EXISTS creator_track_overview;
DROP FUNCTION IF EXISTS refresh_track_daily_stats(date);
DROP TABLE IF EXISTS track_daily_stats;
