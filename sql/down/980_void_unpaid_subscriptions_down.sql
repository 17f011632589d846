-- Roll back 980: un-void the subscriptions 980 voided, from the stamp it left in metadata.
-- Restoring a row makes it live again (incomplete or unpaid), and a user may hold only one live
-- subscription: refuse if any such user has started a new live subscription since.
-- The schema is untouched by 980, so this down only restores data, and only what can be restored.
-- vezamig:lock subscriptions
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM subscriptions v JOIN subscriptions s ON s.user_id = v.user_id AND s.id <> v.id AND s.status IN ('incomplete', 'trialing', 'active', 'past_due', 'unpaid') WHERE v.status = 'voided' AND v.metadata->>'voided_by_migration' = '980')
UPDATE subscriptions
SET status = metadata->>'status_before_void',
    canceled_at = (metadata->>'canceled_at_before_void')::timestamptz,
    metadata = metadata - 'voided_by_migration' - 'status_before_void' - 'canceled_at_before_void'
WHERE status = 'voided'
  AND metadata->>'voided_by_migration' = '980';

-- Rows that left the voided state since keep their current state; only the stamp goes.
UPDATE subscriptions
SET metadata = metadata - 'voided_by_migration' - 'status_before_void' - 'canceled_at_before_void'
WHERE metadata->>'voided_by_migration' = '980';
