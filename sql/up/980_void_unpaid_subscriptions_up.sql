-- Data migration: void subscriptions that never received a successful payment after 30 days.
-- Each voided row is stamped in metadata with its previous status and canceled_at, so the
-- down can put exactly these rows back.
UPDATE subscriptions s
SET status = 'voided',
    canceled_at = coalesce(s.canceled_at, now()),
    metadata = s.metadata || jsonb_build_object(
        'voided_by_migration', 980,
        'status_before_void', s.status,
        'canceled_at_before_void', s.canceled_at)
WHERE s.status IN ('incomplete', 'unpaid')
  AND s.created_at < now() - interval '30 days'
  AND NOT EXISTS (
        SELECT 1 FROM payments p
        WHERE p.subscription_id = s.id AND p.status = 'succeeded');
