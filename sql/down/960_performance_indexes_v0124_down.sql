-- Roll back 960: drop its indexes without blocking writes. Indexes only: no guard.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_analytics_events_user_occurred;
DROP INDEX CONCURRENTLY IF EXISTS idx_subscriptions_plan_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_order_items_license_id;
DROP INDEX CONCURRENTLY IF EXISTS idx_course_enrollments_user;
DROP INDEX CONCURRENTLY IF EXISTS idx_track_distributions_pending;
DROP INDEX CONCURRENTLY IF EXISTS idx_content_reports_assignee_open;
