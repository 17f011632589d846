-- Roll back 940: drop its indexes without blocking writes. Indexes only: no guard.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_refresh_tokens_user_active;
DROP INDEX CONCURRENTLY IF EXISTS idx_sessions_expires_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_follows_follower_created_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_playlists_editorial;
DROP INDEX CONCURRENTLY IF EXISTS idx_notifications_user_group;
