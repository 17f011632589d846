-- Roll back 983: allow NULL in seller_transfers.reversal_pending again (the default stays false).
-- No guard: dropping NOT NULL loses nothing. The NULLs the up turned into false are not put back;
-- they meant false, and nothing could tell them apart.
ALTER TABLE seller_transfers ALTER COLUMN reversal_pending DROP NOT NULL;
