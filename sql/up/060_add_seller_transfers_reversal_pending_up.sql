-- Flag payouts whose order was refunded and whose transfer must be reversed.
-- (Added nullable by oversight; 983 makes it NOT NULL.)
ALTER TABLE seller_transfers ADD COLUMN reversal_pending boolean DEFAULT false;
