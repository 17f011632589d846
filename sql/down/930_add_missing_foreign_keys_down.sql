-- Roll back 930: drop the foreign keys it added.
-- No guard: dropping a constraint loses no rows. The dangling ids the up cleared to NULL are not
-- restored; they pointed at nothing.
ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_order_id_fkey;
ALTER TABLE order_items DROP CONSTRAINT IF EXISTS order_items_product_id_fkey;
ALTER TABLE comments DROP CONSTRAINT IF EXISTS comments_parent_id_fkey;
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_actor_id_fkey;
ALTER TABLE track_plays DROP CONSTRAINT IF EXISTS track_plays_user_id_fkey;
