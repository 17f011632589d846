-- Roll back 973: drop the support ticket tables and the priority type.
-- Tickets are conversations with users (some about money); messages need a ticket, so refuse
-- while any ticket exists.
-- vezamig:lock support_tickets
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM support_tickets)
DROP TABLE IF EXISTS support_ticket_messages;
DROP TABLE IF EXISTS support_tickets;
DROP TYPE IF EXISTS support_ticket_priority;
