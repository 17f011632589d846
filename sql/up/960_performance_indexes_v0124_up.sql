-- Performance indexes for v0.12.4: moderation queue, distribution worker, enrollments, license and plan lookups.
-- Built CONCURRENTLY on live tables; after a failure drop any INVALID index before re-running.
-- vezamig:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_content_reports_assignee_open ON content_reports (assigned_moderator_id, created_at) WHERE status IN ('open', 'reviewing');
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_track_distributions_pending ON track_distributions (platform_id, submitted_at) WHERE status IN ('pending', 'submitted');
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_course_enrollments_user ON course_enrollments (user_id, enrolled_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_order_items_license_id ON order_items (license_id) WHERE license_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_subscriptions_plan_id ON subscriptions (plan_id) WHERE plan_id IS NOT NULL;
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_analytics_events_user_occurred ON analytics_events (user_id, occurred_at DESC) WHERE user_id IS NOT NULL;
