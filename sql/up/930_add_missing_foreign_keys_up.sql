-- Foreign keys the foundation left out.
-- Dangling analytics references (plays and notifications of deleted users, replies to purged
-- comments) are cleared first; order_items and payments are NOT cleaned: a dangling reference
-- there is a money bug, and the constraint failing is the right outcome.
UPDATE track_plays tp SET user_id = NULL
WHERE tp.user_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = tp.user_id);

UPDATE notifications n SET actor_id = NULL
WHERE n.actor_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = n.actor_id);

UPDATE comments c SET parent_id = NULL
WHERE c.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM comments p WHERE p.id = c.parent_id);

ALTER TABLE track_plays
    ADD CONSTRAINT track_plays_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;

ALTER TABLE notifications
    ADD CONSTRAINT notifications_actor_id_fkey FOREIGN KEY (actor_id) REFERENCES users (id) ON DELETE SET NULL;

ALTER TABLE comments
    ADD CONSTRAINT comments_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES comments (id) ON DELETE CASCADE;

ALTER TABLE order_items
    ADD CONSTRAINT order_items_product_id_fkey FOREIGN KEY (product_id) REFERENCES products (id) ON DELETE RESTRICT;

ALTER TABLE payments
    ADD CONSTRAINT payments_order_id_fkey FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE RESTRICT;
