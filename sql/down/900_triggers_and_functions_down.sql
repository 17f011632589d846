-- Roll back 900: drop the updated_at triggers, the play counter trigger and their functions.
-- No guard: triggers and functions hold no data.
DROP TRIGGER IF EXISTS trg_live_streams_updated_at ON live_streams;
DROP TRIGGER IF EXISTS trg_gear_items_updated_at ON gear_items;
DROP TRIGGER IF EXISTS trg_content_reports_updated_at ON content_reports;
DROP TRIGGER IF EXISTS trg_webhook_endpoints_updated_at ON webhook_endpoints;
DROP TRIGGER IF EXISTS trg_payments_updated_at ON payments;
DROP TRIGGER IF EXISTS trg_subscriptions_updated_at ON subscriptions;
DROP TRIGGER IF EXISTS trg_seller_transfers_updated_at ON seller_transfers;
DROP TRIGGER IF EXISTS trg_orders_updated_at ON orders;
DROP TRIGGER IF EXISTS trg_products_updated_at ON products;
DROP TRIGGER IF EXISTS trg_sellers_updated_at ON sellers;
DROP TRIGGER IF EXISTS trg_notification_preferences_updated_at ON notification_preferences;
DROP TRIGGER IF EXISTS trg_comments_updated_at ON comments;
DROP TRIGGER IF EXISTS trg_playlists_updated_at ON playlists;
DROP TRIGGER IF EXISTS trg_tracks_updated_at ON tracks;
DROP TRIGGER IF EXISTS trg_albums_updated_at ON albums;
DROP TRIGGER IF EXISTS trg_user_profiles_updated_at ON user_profiles;
DROP TRIGGER IF EXISTS trg_users_updated_at ON users;
DROP TRIGGER IF EXISTS trg_track_plays_bump_count ON track_plays;
DROP FUNCTION IF EXISTS track_plays_bump_count();
DROP FUNCTION IF EXISTS set_updated_at();
