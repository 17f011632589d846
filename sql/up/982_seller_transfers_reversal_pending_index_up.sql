-- Partial index for the reversal worker: transfers waiting to be reversed, oldest first.
-- Built CONCURRENTLY so payouts keep flowing; after a failure drop the INVALID index before re-running.
-- vezamig:no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_seller_transfers_reversal_pending ON seller_transfers (created_at) WHERE reversal_pending;
