-- Roll back 982: drop the reversal worker's index without blocking writes. Index only: no guard.
-- vezamig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS idx_seller_transfers_reversal_pending;
