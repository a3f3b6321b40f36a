-- Events written before events were stored by reference carried whole messages, cases,
-- customers and users (text, addresses, names) and providers' failure texts. Rewrite them to
-- the reference form the store writes now, so that erasing a message, customer or user from
-- its own table erases it everywhere (readers render the current object at read time).
-- Idempotent: each statement only touches rows still in the old shape; a cheap text match
-- (`LIKE`) keeps rows already in the new shape from being parsed at all.

-- message.received, message.created, message.recorded, note.added: {"message": {...}}
UPDATE events SET payload = json_object(
        'message_id', json_extract(payload, '$.message.id'),
        'case_id', json_extract(payload, '$.message.case_id'),
        'customer_id', json_extract(payload, '$.message.customer_id'),
        'channel', json_extract(payload, '$.message.channel'),
        'direction', json_extract(payload, '$.message.direction'),
        'internal', json(CASE WHEN json_extract(payload, '$.message.internal') THEN 'true' ELSE 'false' END))
    WHERE kind IN ('message.received', 'message.created', 'message.recorded', 'note.added')
      AND payload LIKE '%"message":{%' AND json_valid(payload) AND json_type(payload, '$.message') = 'object';

-- case.created: {"case": {...}} (the subject is personal data)
UPDATE events SET payload = json_object(
        'case_id', json_extract(payload, '$.case.id'),
        'customer_id', json_extract(payload, '$.case.customer_id'),
        'channel', json_extract(payload, '$.case.channel'),
        'status', json_extract(payload, '$.case.status'),
        'priority', json_extract(payload, '$.case.priority'))
    WHERE kind = 'case.created' AND payload LIKE '%"case":{%' AND json_valid(payload) AND json_type(payload, '$.case') = 'object';

-- customer.created: {"customer": {...}}
UPDATE events SET payload = json_object(
        'customer_id', json_extract(payload, '$.customer.id'),
        'identity_id', json_extract(payload, '$.customer.identities[0].id'))
    WHERE kind = 'customer.created' AND payload LIKE '%"customer":{%' AND json_valid(payload) AND json_type(payload, '$.customer') = 'object';

-- customer.updated: {"customer": after, "before": {name, language}}, or {"customer": ...}
-- alone when an identity was added
UPDATE events SET payload = json_object(
        'customer_id', json_extract(payload, '$.customer.id'),
        'identity_id', CASE WHEN json_type(payload, '$.before') IS NULL
            THEN json_extract(payload, '$.customer.identities[#-1].id') END,
        'changed', json(CASE
            WHEN json_type(payload, '$.before') IS NULL THEN '["identities"]'
            WHEN json_extract(payload, '$.customer.name') IS NOT json_extract(payload, '$.before.name')
                 AND json_extract(payload, '$.customer.language') IS NOT json_extract(payload, '$.before.language')
                THEN '["name","language"]'
            WHEN json_extract(payload, '$.customer.name') IS NOT json_extract(payload, '$.before.name') THEN '["name"]'
            WHEN json_extract(payload, '$.customer.language') IS NOT json_extract(payload, '$.before.language')
                THEN '["language"]'
            ELSE '[]' END))
    WHERE kind = 'customer.updated' AND payload LIKE '%"customer":{%' AND json_valid(payload) AND json_type(payload, '$.customer') = 'object';

-- customer.merged: {"customer": merged, "merged_customer_id", "moved_cases"}
UPDATE events SET payload = json_object(
        'customer_id', json_extract(payload, '$.customer.id'),
        'merged_customer_id', json_extract(payload, '$.merged_customer_id'),
        'moved_cases', json_extract(payload, '$.moved_cases'))
    WHERE kind = 'customer.merged' AND payload LIKE '%"customer":{%' AND json_valid(payload) AND json_type(payload, '$.customer') = 'object';

-- user.created: {"user": {...}} (e-mail address and name)
UPDATE events SET payload = json_object(
        'user_id', json_extract(payload, '$.user.id'),
        'role', json_extract(payload, '$.user.role'))
    WHERE kind = 'user.created' AND payload LIKE '%"user":{%' AND json_valid(payload) AND json_type(payload, '$.user') = 'object';

-- user.updated: {"user": after, "before": before}
UPDATE events SET payload = json_object(
        'user_id', json_extract(payload, '$.user.id'),
        'role', json_extract(payload, '$.user.role'),
        'active', json(CASE WHEN json_extract(payload, '$.user.active') = 0 THEN 'false' ELSE 'true' END),
        'changed', json(CASE
            WHEN json_type(payload, '$.before') IS NULL THEN '[]'
            ELSE '[' || trim(
                CASE WHEN json_extract(payload, '$.user.name') IS NOT json_extract(payload, '$.before.name')
                     THEN '"name",' ELSE '' END ||
                CASE WHEN json_extract(payload, '$.user.role') IS NOT json_extract(payload, '$.before.role')
                     THEN '"role",' ELSE '' END ||
                CASE WHEN json_extract(payload, '$.user.active') IS NOT json_extract(payload, '$.before.active')
                     THEN '"active",' ELSE '' END, ',') || ']' END),
        'before', json_object(
            'role', json_extract(payload, '$.before.role'),
            'active', json(CASE WHEN json_extract(payload, '$.before.active') = 0 THEN 'false' ELSE 'true' END)))
    WHERE kind = 'user.updated' AND payload LIKE '%"user":{%' AND json_valid(payload) AND json_type(payload, '$.user') = 'object';

-- message.delivery: the provider's reason (it often names the recipient) stays in the message
UPDATE events SET payload = json_remove(payload, '$.error')
    WHERE kind = 'message.delivery' AND payload LIKE '%"error":%' AND json_valid(payload) AND json_type(payload, '$.error') IS NOT NULL;

-- case.updated: {"case_id", "changes": {..., "subject": "…"}} (the subject may be the
-- customer's words): readers get the case's current subject when `subject_changed` is set
UPDATE events SET payload = json_set(json_remove(payload, '$.changes.subject'), '$.subject_changed', json('true'))
    WHERE kind = 'case.updated' AND payload LIKE '%"subject":%' AND json_valid(payload)
      AND json_type(payload, '$.changes.subject') IS NOT NULL;

-- the identity id is left out where it was not known (SQLite's json_object keeps a NULL)
UPDATE events SET payload = json_remove(payload, '$.identity_id')
    WHERE kind = 'customer.updated' AND payload LIKE '%"identity_id":null%' AND json_valid(payload);
