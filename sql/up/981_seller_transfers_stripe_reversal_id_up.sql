-- Record the Stripe transfer reversal id (trr_...) when a seller payout is reversed after a refund.
ALTER TABLE seller_transfers
    ADD COLUMN stripe_reversal_id varchar(255),
    ADD CONSTRAINT seller_transfers_stripe_reversal_id_check
        CHECK (stripe_reversal_id IS NULL OR stripe_reversal_id LIKE 'trr\_%');
