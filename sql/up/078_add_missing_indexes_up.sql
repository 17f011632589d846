-- Indexes the foundation forgot on foreign keys and hot lookups.
-- Built CONCURRENTLY so writes continue on these live tables.
-- If a statement fails it can leave an INVALID index behind: drop that index before re-running,
-- because IF NOT EXISTS would otherwise skip it.
-- vezamig:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_track_tags_tag_id ON track_tags (tag_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_playlist_tracks_track_id ON playlist_tracks (track_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_follows_followee_id ON follows (followee_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_track_likes_track_id ON track_likes (track_id);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_comments_track_id_created_at ON comments (track_id, created_at);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_notifications_user_unread ON notifications (user_id, created_at DESC) WHERE read_at IS NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tracks_user_id ON tracks (user_id);
