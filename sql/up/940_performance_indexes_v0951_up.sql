-- Performance indexes for v0.9.51: grouped notifications, editorial shelf, follow lists, token cleanup.
-- Built CONCURRENTLY on live tables; after a failure drop any INVALID index before re-running.
-- vezamig:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_notifications_user_group ON notifications (user_id, group_key, created_at DESC) WHERE group_key IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_playlists_editorial ON playlists (editorial_position) WHERE is_editorial;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_follows_follower_created_at ON follows (follower_id, created_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_sessions_expires_at ON sessions (expires_at) WHERE revoked_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_refresh_tokens_user_active ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
