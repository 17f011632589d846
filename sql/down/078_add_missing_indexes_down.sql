-- Roll back 078: drop the indexes it added, without blocking writes. Indexes only: no guard.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_tracks_user_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_notifications_user_unread;
DROP INDEX CONCURRENTLY IF EXISTS idx_comments_track_id_created_at;
DROP INDEX CONCURRENTLY IF EXISTS idx_track_likes_track_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_follows_followee_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_playlist_tracks_track_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_track_tags_tag_id;
