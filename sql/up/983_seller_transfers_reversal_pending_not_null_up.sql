-- seller_transfers.reversal_pending becomes NOT NULL: a NULL never meant anything but false.
UPDATE seller_transfers SET reversal_pending = false WHERE reversal_pending IS NULL;

ALTER TABLE seller_transfers ALTER COLUMN reversal_pending SET NOT NULL;
