-- One call writes what an orchestrator batch kept back (StoreTransaction.flush): the streams
-- it opens, its events, outbox records, timers scheduled and deleted, step progress, and the
-- deletes of rows whose records Kafka acknowledged. The statements are those the client sent
-- one by one (one per table, so the projection trigger of 008 still queues each stream once);
-- run here, they cost the client one statement instead of up to eight. ``appended`` counts
-- the events written (fewer than given: a stream never opened); ``outbox_ids`` are the new
-- rows' ids in the order given.
CREATE OR REPLACE FUNCTION tasksaga_write_batch(
    opened_ids text[], opened_at timestamptz[],
    event_streams text[], event_versions integer[], event_types text[], event_ids text[],
    event_payloads bytea[],
    outbox_topics text[], outbox_keys bytea[], outbox_values bytea[], outbox_headers text[],
    timer_tasks text[], timer_kinds text[], timer_steps text[], timer_attempts integer[],
    timer_fire_at bigint[], timer_types text[],
    gone_tasks text[], gone_kinds text[], gone_steps text[], gone_attempts integer[],
    progress_tasks text[], progress_steps text[], progress_attempts integer[],
    progress_values float8[], progress_messages text[],
    published bigint[], notify_outbox boolean,
    OUT appended integer, OUT outbox_ids bigint[])
LANGUAGE plpgsql AS $$
BEGIN
    appended := 0;
    outbox_ids := '{}';
    IF cardinality(opened_ids) > 0 THEN
        INSERT INTO streams (stream_id, opened_at) SELECT * FROM unnest(opened_ids, opened_at);
    END IF;
    IF cardinality(event_streams) > 0 THEN
        INSERT INTO events (stream_id, stream_opened_at, version, event_type, message_id, payload)
        SELECT s.stream_id, s.opened_at, u.version, u.event_type, u.message_id, u.payload
          FROM unnest(event_streams, event_versions, event_types, event_ids, event_payloads)
               AS u(stream_id, version, event_type, message_id, payload)
          JOIN streams s USING (stream_id);
        GET DIAGNOSTICS appended = ROW_COUNT;
        PERFORM pg_notify('tasksaga_events', '');
    END IF;
    IF cardinality(outbox_topics) > 0 THEN
        WITH inserted AS (
            INSERT INTO outbox (topic, key, value, headers)
            SELECT u.topic, u.key, u.value, u.headers::jsonb
              FROM unnest(outbox_topics, outbox_keys, outbox_values, outbox_headers)
                   WITH ORDINALITY AS u(topic, key, value, headers, n)
             ORDER BY u.n RETURNING id)
        SELECT array_agg(id ORDER BY id) INTO outbox_ids FROM inserted;
        IF notify_outbox THEN
            PERFORM pg_notify('tasksaga_outbox', '');
        END IF;
    END IF;
    IF cardinality(timer_tasks) > 0 THEN
        INSERT INTO timers (task_id, kind, step, attempt, fire_at_ms, task_type)
        SELECT * FROM unnest(timer_tasks, timer_kinds, timer_steps, timer_attempts,
                             timer_fire_at, timer_types)
        ON CONFLICT (task_id, kind, step, attempt) DO UPDATE SET fire_at_ms = EXCLUDED.fire_at_ms;
    END IF;
    IF cardinality(gone_tasks) > 0 THEN
        DELETE FROM timers t
         USING unnest(gone_tasks, gone_kinds, gone_steps, gone_attempts)
               AS u(task_id, kind, step, attempt)
         WHERE (t.task_id, t.kind, t.step, t.attempt) = (u.task_id, u.kind, u.step, u.attempt);
    END IF;
    IF cardinality(progress_tasks) > 0 THEN
        INSERT INTO step_progress (task_id, step, attempt, progress, message)
        SELECT * FROM unnest(progress_tasks, progress_steps, progress_attempts, progress_values,
                             progress_messages)
        ON CONFLICT (task_id, step) DO UPDATE SET attempt = EXCLUDED.attempt,
            progress = EXCLUDED.progress, message = EXCLUDED.message, reported_at = now();
    END IF;
    IF cardinality(published) > 0 THEN
        DELETE FROM outbox WHERE id = ANY(published);
    END IF;
END
$$;
