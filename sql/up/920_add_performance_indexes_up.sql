-- Performance indexes for the discover feed, play statistics and order history.
-- Built CONCURRENTLY on live tables; after a failure drop any INVALID index before re-running.
-- vezamig:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tracks_public_created_at ON tracks (created_at DESC) WHERE visibility = 'public' AND status = 'ready' AND deleted_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_track_plays_track_played_at ON track_plays (track_id, played_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_track_plays_user_played_at ON track_plays (user_id, played_at DESC) WHERE user_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_buyer_created_at ON orders (buyer_id, created_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_products_published ON products (product_type, created_at DESC) WHERE is_published;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_subscriptions_period_end ON subscriptions (current_period_end) WHERE status IN ('active', 'trialing', 'past_due');
