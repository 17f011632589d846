-- Roll back 948: drop order_items.license_id, product_reviews and product_licenses.
-- Licenses are sellers' price lists (and what buyers' order lines point at); reviews are buyers'
-- content. Refuse while either table holds a row (an order line can only carry a license if one exists).
-- vezamig:lock product_licenses, product_reviews
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM product_licenses)
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM product_reviews)
ALTER TABLE order_items
    DROP CONSTRAINT IF EXISTS order_items_license_id_fkey,
    DROP COLUMN IF EXISTS license_id;
DROP TABLE IF EXISTS product_reviews;
DROP TABLE IF EXISTS product_licenses;
