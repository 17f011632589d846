-- Roll back 949: drop subscriptions.plan_id and subscription_plans.
-- Plans carry prices and provider price ids that billing depends on; refuse while any plan exists
-- (a subscription can only reference a plan that exists, so this also covers plan_id).
-- vezamig:lock subscription_plans, subscriptions
-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM subscription_plans)
ALTER TABLE subscriptions
    DROP CONSTRAINT IF EXISTS subscriptions_plan_id_fkey,
    DROP COLUMN IF EXISTS plan_id;
DROP TABLE IF EXISTS subscription_plans;
