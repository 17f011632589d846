-- Roll back 972: drop the KYC columns on sellers and seller_kyc_documents.
-- Verification results and identity documents are regulated records (and payouts depend on
-- them); refuse while any seller has started KYC or any document is stored.
-- vezamig:lock sellers, seller_kyc_documents
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM sellers WHERE kyc_status <> 'not_started' OR kyc_provider_ref IS NOT NULL OR kyc_verified_at IS NOT NULL)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM seller_kyc_documents)
DROP TABLE IF EXISTS seller_kyc_documents;
ALTER TABLE sellers
    DROP CONSTRAINT IF EXISTS sellers_kyc_verified_check,
    DROP CONSTRAINT IF EXISTS sellers_kyc_status_check,
    DROP COLUMN IF EXISTS kyc_status,
    DROP COLUMN IF EXISTS kyc_provider_ref,
    DROP COLUMN IF EXISTS kyc_verified_at;
