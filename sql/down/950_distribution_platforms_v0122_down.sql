-- Roll back 950: drop track_distributions and distribution_platforms.
-- Delivery state (external ids, live dates) is the only link to the tracks on the platforms, so
-- refuse while any exists. The six platform rows were seeded by the up and are recreated by it;
-- refuse only if someone added a platform or disabled one since.
-- vezamig:lock track_distributions, distribution_platforms
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM track_distributions)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM distribution_platforms WHERE NOT is_enabled OR code NOT IN ('spotify', 'apple_music', 'deezer', 'tidal', 'amazon_music', 'youtube_music'))
DROP TABLE IF EXISTS track_distributions;
DROP TABLE IF EXISTS distribution_platforms;
