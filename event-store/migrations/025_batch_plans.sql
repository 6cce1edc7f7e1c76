-- The two functions of an orchestrator batch (022, 024) plan their statements once per
-- session (plan_cache_mode = force_generic_plan) instead of at every call. Their statements'
-- estimates never depend on the values passed (set-returning functions over the batch's
-- arrays and documents are estimated at 100 rows whatever they hold), so a custom plan is
-- the generic plan made again: with the events table partitioned (018), planning the version
-- lookup cost ~0.4 ms a call against ~0.1 ms to run it, and a batch start ~1.7 ms of server
-- time against ~0.3 ms of statements (pg_stat_statements, linear3 at 40 tasks/s).
--
-- The deletes of published outbox rows take the ids as one array (an index scan on the
-- primary key), not as a semi-join with the set (hashed, against a sequential scan of the
-- outbox and the dead rows its deletes leave until a vacuum: ~0.6 ms a call under load).
--
-- A batch's events are joined with `streams` (their streams' opening times, the partition
-- key). The set of them, from jsonb_array_elements, is estimated at 100 rows whatever the
-- batch holds, and against 100 index probes a hash join over a sequential scan of `streams`
-- looks cheaper until the table has ~40,000 rows: every batch read every stream ever opened
-- (7.9 ms a batch at 30,000 streams, against 0.1 ms through the primary key). The hash join
-- also emitted a stream's events of one batch in reverse, so their log positions ran against
-- their versions (nothing reads a stream by position, but the log's order is the order
-- decided). Each event now looks its stream up by itself, in the batch's order (OFFSET 0
-- keeps the planner from turning the lookup back into a join): one index probe per event,
-- 23 µs for a two-event batch against 110 µs for the hash join at 900 streams, and the same
-- at any size.
ALTER FUNCTION tasksaga_begin_batch(text[], text, text[])
    SET plan_cache_mode = force_generic_plan;

CREATE OR REPLACE FUNCTION tasksaga_write_batch(batch jsonb, OUT appended integer,
                                                OUT outbox_ids bigint[])
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    appended := 0;
    outbox_ids := '{}';
    IF batch ? 'opened' THEN
        INSERT INTO streams (stream_id, opened_at)
        SELECT o->>0, (o->>1)::timestamptz FROM jsonb_array_elements(batch->'opened') o;
    END IF;
    IF batch ? 'events' THEN
        INSERT INTO events (stream_id, stream_opened_at, version, event_type, message_id, payload)
        SELECT s.stream_id, s.opened_at, (e->>1)::integer, e->>2, e->>3,
               decode(e->>4, 'base64')
          FROM jsonb_array_elements(batch->'events') e,
               LATERAL (SELECT stream_id, opened_at FROM streams
                         WHERE stream_id = e->>0 OFFSET 0) s;
        GET DIAGNOSTICS appended = ROW_COUNT;
        PERFORM pg_notify('tasksaga_events', '');
    END IF;
    IF batch ? 'outbox' THEN
        WITH inserted AS (
            INSERT INTO outbox (topic, key, value, headers)
            SELECT r.value->>0, decode(r.value->>1, 'base64'), decode(r.value->>2, 'base64'),
                   r.value->3
              FROM jsonb_array_elements(batch->'outbox') WITH ORDINALITY AS r(value, n)
             ORDER BY r.n RETURNING id)
        SELECT array_agg(id ORDER BY id) INTO outbox_ids FROM inserted;
        IF (batch->>'notify_outbox')::boolean THEN
            PERFORM pg_notify('tasksaga_outbox', '');
        END IF;
    END IF;
    IF batch ? 'timers' THEN
        INSERT INTO timers (task_id, kind, step, attempt, fire_at_ms, task_type)
        SELECT t->>0, t->>1, t->>2, (t->>3)::integer, (t->>4)::bigint, t->>5
          FROM jsonb_array_elements(batch->'timers') t
        ON CONFLICT (task_id, kind, step, attempt) DO UPDATE SET fire_at_ms = EXCLUDED.fire_at_ms;
    END IF;
    IF batch ? 'gone' THEN
        DELETE FROM timers t
         USING jsonb_array_elements(batch->'gone') g
         WHERE (t.task_id, t.kind, t.step, t.attempt)
             = (g->>0, g->>1, g->>2, (g->>3)::integer);
    END IF;
    IF batch ? 'progress' THEN
        INSERT INTO step_progress (task_id, step, attempt, progress, message)
        SELECT p->>0, p->>1, (p->>2)::integer, (p->>3)::float8, p->>4
          FROM jsonb_array_elements(batch->'progress') p
        ON CONFLICT (task_id, step) DO UPDATE SET attempt = EXCLUDED.attempt,
            progress = EXCLUDED.progress, message = EXCLUDED.message, reported_at = now();
    END IF;
    IF batch ? 'published' THEN
        DELETE FROM outbox
         WHERE id = ANY (ARRAY(SELECT p::bigint
                                 FROM jsonb_array_elements_text(batch->'published') p));
    END IF;
END
$$;
