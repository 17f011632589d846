-- Roll back 076: drop gear_items.
-- Artists' gear lists are user content that nothing else holds, so refuse while any exist.
-- vezamig:lock gear_items
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM gear_items)
DROP TABLE IF EXISTS gear_items;
