-- Roll back 981: drop seller_transfers.stripe_reversal_id.
-- The id is the only link between a reversed payout and Stripe's reversal object; losing it
-- makes reconciliation manual, so refuse while any transfer carries one.
-- vezamig:lock seller_transfers
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM seller_transfers WHERE stripe_reversal_id IS NOT NULL)
ALTER TABLE seller_transfers
    DROP CONSTRAINT IF EXISTS seller_transfers_stripe_reversal_id_check,
    DROP COLUMN IF EXISTS stripe_reversal_id;
