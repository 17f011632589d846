-- Roll back 920: drop its indexes without blocking writes. Indexes only: no guard.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_subscriptions_period_end;
DROP INDEX CONCURRENTLY IF EXISTS idx_products_published;
DROP INDEX CONCURRENTLY IF EXISTS idx_orders_buyer_created_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_track_plays_user_played_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_track_plays_track_played_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_tracks_public_created_at;
