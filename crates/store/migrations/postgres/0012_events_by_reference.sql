-- Events written before events were stored by reference carried whole messages, cases,
-- customers and users (text, addresses, names) and providers' failure texts. Rewrite them to
-- the reference form the store writes now, so that erasing a message, customer or user from
-- its own table erases it everywhere (readers render the current object at read time).
-- Idempotent: each statement only touches rows still in the old shape; a cheap text match
-- (`LIKE`) keeps rows already in the new shape from being parsed at all. Payloads were always
-- written as JSON objects by the store; `LIKE '{%'` keeps anything else out of the cast.

-- message.received, message.created, message.recorded, note.added: {"message": {...}}
UPDATE events SET payload = jsonb_build_object(
        'message_id', payload::jsonb -> 'message' -> 'id',
        'case_id', payload::jsonb -> 'message' -> 'case_id',
        'customer_id', payload::jsonb -> 'message' -> 'customer_id',
        'channel', payload::jsonb -> 'message' -> 'channel',
        'direction', payload::jsonb -> 'message' -> 'direction',
        'internal', COALESCE(payload::jsonb -> 'message' -> 'internal', 'false'::jsonb))::text
    WHERE kind IN ('message.received', 'message.created', 'message.recorded', 'note.added')
      AND payload LIKE '%"message":{%' AND jsonb_typeof(payload::jsonb -> 'message') = 'object';

-- case.created: {"case": {...}} (the subject is personal data)
UPDATE events SET payload = jsonb_build_object(
        'case_id', payload::jsonb -> 'case' -> 'id',
        'customer_id', payload::jsonb -> 'case' -> 'customer_id',
        'channel', payload::jsonb -> 'case' -> 'channel',
        'status', payload::jsonb -> 'case' -> 'status',
        'priority', payload::jsonb -> 'case' -> 'priority')::text
    WHERE kind = 'case.created' AND payload LIKE '%"case":{%' AND jsonb_typeof(payload::jsonb -> 'case') = 'object';

-- customer.created: {"customer": {...}}
UPDATE events SET payload = jsonb_build_object(
        'customer_id', payload::jsonb -> 'customer' -> 'id',
        'identity_id', payload::jsonb -> 'customer' -> 'identities' -> 0 -> 'id')::text
    WHERE kind = 'customer.created' AND payload LIKE '%"customer":{%' AND jsonb_typeof(payload::jsonb -> 'customer') = 'object';

-- customer.updated: {"customer": after, "before": {name, language}}, or {"customer": ...}
-- alone when an identity was added
UPDATE events SET payload = jsonb_strip_nulls(jsonb_build_object(
        'customer_id', payload::jsonb -> 'customer' -> 'id',
        'identity_id', CASE WHEN payload::jsonb -> 'before' IS NULL
            THEN payload::jsonb -> 'customer' -> 'identities' -> -1 -> 'id' END,
        'changed', CASE
            WHEN payload::jsonb -> 'before' IS NULL THEN '["identities"]'::jsonb
            ELSE (SELECT COALESCE(jsonb_agg(f ORDER BY o), '[]'::jsonb)
                  FROM (VALUES ('name', 1), ('language', 2)) AS fields(f, o)
                  WHERE (payload::jsonb -> 'customer' -> f) IS DISTINCT FROM (payload::jsonb -> 'before' -> f))
            END))::text
    WHERE kind = 'customer.updated' AND payload LIKE '%"customer":{%' AND jsonb_typeof(payload::jsonb -> 'customer') = 'object';

-- customer.merged: {"customer": merged, "merged_customer_id", "moved_cases"}
UPDATE events SET payload = jsonb_build_object(
        'customer_id', payload::jsonb -> 'customer' -> 'id',
        'merged_customer_id', payload::jsonb -> 'merged_customer_id',
        'moved_cases', payload::jsonb -> 'moved_cases')::text
    WHERE kind = 'customer.merged' AND payload LIKE '%"customer":{%' AND jsonb_typeof(payload::jsonb -> 'customer') = 'object';

-- user.created: {"user": {...}} (e-mail address and name)
UPDATE events SET payload = jsonb_build_object(
        'user_id', payload::jsonb -> 'user' -> 'id',
        'role', payload::jsonb -> 'user' -> 'role')::text
    WHERE kind = 'user.created' AND payload LIKE '%"user":{%' AND jsonb_typeof(payload::jsonb -> 'user') = 'object';

-- user.updated: {"user": after, "before": before}
UPDATE events SET payload = jsonb_build_object(
        'user_id', payload::jsonb -> 'user' -> 'id',
        'role', payload::jsonb -> 'user' -> 'role',
        'active', COALESCE(payload::jsonb -> 'user' -> 'active', 'true'::jsonb),
        'changed', CASE
            WHEN payload::jsonb -> 'before' IS NULL THEN '[]'::jsonb
            ELSE (SELECT COALESCE(jsonb_agg(f ORDER BY o), '[]'::jsonb)
                  FROM (VALUES ('name', 1), ('role', 2), ('active', 3)) AS fields(f, o)
                  WHERE (payload::jsonb -> 'user' -> f) IS DISTINCT FROM (payload::jsonb -> 'before' -> f))
            END,
        'before', jsonb_build_object(
            'role', payload::jsonb -> 'before' -> 'role',
            'active', COALESCE(payload::jsonb -> 'before' -> 'active', 'true'::jsonb)))::text
    WHERE kind = 'user.updated' AND payload LIKE '%"user":{%' AND jsonb_typeof(payload::jsonb -> 'user') = 'object';

-- message.delivery: the provider's reason (it often names the recipient) stays in the message
UPDATE events SET payload = (payload::jsonb - 'error')::text
    WHERE kind = 'message.delivery' AND payload LIKE '%"error":%' AND payload::jsonb ? 'error';

-- case.updated: {"case_id", "changes": {..., "subject": "…"}} (the subject may be the
-- customer's words): readers get the case's current subject when `subject_changed` is set
UPDATE events SET payload = jsonb_set(payload::jsonb #- '{changes,subject}', '{subject_changed}', 'true'::jsonb)::text
    WHERE kind = 'case.updated' AND payload LIKE '%"subject":%'
      AND (payload::jsonb -> 'changes') ? 'subject';
