-- The annotator hot path as PostgreSQL functions: one round trip per trial fetch and per answer.
--
-- Created by migration 0005; a later change goes in a new file and a new migration (CREATE OR
-- REPLACE), so a database migrated from scratch gets every version in order. The Python services
-- in studyapp/services/allocation.py and votes.py are the only callers: they draw every random
-- choice (left/right, image tokens, the gold and decoy renders of known-answer trials) from the
-- system CSPRNG and pass it in, and they turn the result codes into the messages annotators see.
--
-- Each function runs as one statement, so in one transaction (autocommit) or inside the
-- caller's. In READ COMMITTED every statement in a VOLATILE PL/pgSQL function takes a fresh
-- snapshot, so what is read after the annotator's row lock includes everything a previous
-- request of that annotator committed while this one waited for the lock.
--
-- Lock order, everywhere: annotator row -> trial rows -> item rows (allocation.py explains why).

-- Lock the annotator's row, by id or by pseudonym and round token (the cookie), then read it
-- with its round. Every write of an annotator's trials starts here, so one annotator's
-- concurrent requests (double clicks, two tabs) take turns. The read is a statement of its own,
-- after the lock, so it sees the row as the last request left it. refusal: 'no_annotator'
-- (nothing else set), 'round_closed' or 'round_not_open', else NULL.
CREATE OR REPLACE FUNCTION studyapp_annotator_locked(p_annotator_id bigint, p_pseudonym text, p_round_token text)
RETURNS TABLE (annotator_id bigint, status text, round_id bigint, config jsonb, refusal text)
LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_round_status text;
BEGIN
    IF p_annotator_id IS NOT NULL THEN
        SELECT an.id INTO v_id FROM studyapp_annotator an WHERE an.id = p_annotator_id FOR UPDATE;
    ELSE
        SELECT an.id INTO v_id
          FROM studyapp_annotator an JOIN studyapp_studyround r ON r.id = an.round_id
         WHERE an.pseudonym = p_pseudonym AND r.token = p_round_token
           FOR UPDATE OF an;
    END IF;
    SELECT an.id, an.status, an.round_id, r.config, r.status
      INTO annotator_id, status, round_id, config, v_round_status
      FROM studyapp_annotator an JOIN studyapp_studyround r ON r.id = an.round_id
     WHERE an.id = v_id;
    refusal := CASE WHEN NOT FOUND THEN 'no_annotator'
                    WHEN v_round_status = 'closed' THEN 'round_closed'
                    WHEN v_round_status <> 'open' THEN 'round_not_open' END;
    RETURN NEXT;
END $$;

-- (checks passed, checks answered) -> qc_status, stored when it changed; returns it.
CREATE OR REPLACE FUNCTION studyapp_annotator_qc(p_annotator_id bigint) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_total int;
    v_correct int;
    v_threshold float8;
    v_qc text;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE v.choice = t.expected_side)
      INTO v_total, v_correct
      FROM studyapp_vote v JOIN studyapp_trial t ON t.id = v.trial_id
     WHERE t.annotator_id = p_annotator_id AND t.kind = 'attention' AND v.criterion = t.check_criterion;
    IF v_total = 0 THEN
        v_qc := 'pending';
    ELSE
        SELECT (r.config -> 'exclusions' ->> 'min_attention_accuracy')::float8 INTO v_threshold
          FROM studyapp_annotator a JOIN studyapp_studyround r ON r.id = a.round_id WHERE a.id = p_annotator_id;
        v_qc := CASE WHEN v_correct::float8 / v_total >= v_threshold THEN 'pass' ELSE 'fail' END;
    END IF;
    UPDATE studyapp_annotator SET qc_status = v_qc WHERE id = p_annotator_id AND qc_status <> v_qc;
    RETURN v_qc;
END $$;

-- Mark a (locked) annotator completed with the round's completion code; then their QC status.
CREATE OR REPLACE FUNCTION studyapp_annotator_complete(p_annotator_id bigint, p_now timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE studyapp_annotator a
       SET status = 'completed', completion_code = r.completion_code, completed_at = p_now
      FROM studyapp_studyround r
     WHERE a.id = p_annotator_id AND r.id = a.round_id AND a.status <> 'completed';
    PERFORM studyapp_annotator_qc(p_annotator_id);
END $$;

-- A known-answer trial (practice or attention check) from the caller's gold draw. Realism: the
-- gold render against a degraded copy of itself. Alignment: the gold render against the decoy,
-- made for another prompt (realism when there is no decoy: a single-prompt round).
CREATE OR REPLACE FUNCTION studyapp_gold_trial(
    p_annotator_id bigint, p_kind text, p_criterion text, p_position int, p_now timestamptz, p_lease_s int,
    p_gold_render bigint, p_gold_prompt bigint, p_decoy_render bigint, p_gold_side text,
    p_left_token text, p_right_token text
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_criterion text := p_criterion;
    v_left bigint;
    v_right bigint;
    v_left_variant text := 'plain';
    v_right_variant text := 'plain';
    v_id bigint;
BEGIN
    IF v_criterion = 'alignment' AND p_decoy_render IS NULL THEN
        v_criterion := 'realism';
    END IF;
    IF v_criterion = 'realism' THEN
        v_left := p_gold_render;
        v_right := p_gold_render;
        IF p_gold_side = 'left' THEN v_right_variant := 'degraded'; ELSE v_left_variant := 'degraded'; END IF;
    ELSIF p_gold_side = 'left' THEN
        v_left := p_gold_render;
        v_right := p_decoy_render;
    ELSE
        v_left := p_decoy_render;
        v_right := p_gold_render;
    END IF;
    INSERT INTO studyapp_trial (annotator_id, item_id, kind, position, prompt_id, left_render_id, right_render_id,
                                left_variant, right_variant, left_token, right_token, check_criterion, expected_side,
                                served_at, lease_expires_at, answered_at)
    VALUES (p_annotator_id, NULL, p_kind, p_position, p_gold_prompt, v_left, v_right,
            v_left_variant, v_right_variant, p_left_token, p_right_token, v_criterion, p_gold_side,
            p_now, p_now + make_interval(secs => p_lease_s), NULL)
    RETURNING id INTO v_id;
    RETURN v_id;
END $$;

-- The annotator's current trial: the open one if its lease holds, else a newly allocated one.
-- code: 'trial' (trial_id set), 'done' (quota reached or no work left: the annotator is
-- completed), or a refusal: 'no_annotator', 'round_closed', 'round_not_open', 'not_started',
-- 'no_images', 'busy'. studyapp_trial_next below adds the trial's row.
CREATE OR REPLACE FUNCTION studyapp_trial_next_id(
    p_annotator_id bigint, p_pseudonym text, p_round_token text, p_now timestamptz,
    p_attention_slots int[],          -- 0-based main-block positions of attention checks
    p_swap boolean,                   -- regular trial: render_b on the left
    p_left_token text, p_right_token text,
    p_gold_render bigint, p_gold_prompt bigint, p_decoy_render bigint, p_gold_side text,
    p_attention_criterion text,
    p_pick_retries int, p_pick_retry_s float8
) RETURNS TABLE (code text, status text, round_id bigint, config text, trial_id bigint,
                 phase text, number int, total int)
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    v_practice int;
    v_quota int;
    v_lease int;
    v_max_position int;
    v_main_live int;
    v_practice_live int;
    v_seen bigint[];
    v_open bigint[];
    o record;
    v_main int;
    v_pick record;
    v_any boolean;
    v_id bigint;
BEGIN
    SELECT * INTO a FROM studyapp_annotator_locked(p_annotator_id, p_pseudonym, p_round_token);
    code := a.refusal; status := a.status; round_id := a.round_id; config := a.config::text;
    IF code IS NOT NULL THEN
        RETURN NEXT; RETURN;
    END IF;
    IF a.status IN ('completed', 'screened_out') THEN
        code := 'done'; RETURN NEXT; RETURN;
    END IF;
    IF a.status IN ('new', 'consented') THEN
        code := 'not_started'; RETURN NEXT; RETURN;
    END IF;
    v_practice := (a.config ->> 'practice_trials')::int;
    v_quota := (a.config ->> 'trials_per_annotator')::int;
    v_lease := (a.config ->> 'assignment_timeout_s')::int;

    -- "Live" trials are answered or leased; voided ones (both NULL) only count as seen items.
    SELECT coalesce(max(t.position), 0),
           count(*) FILTER (WHERE t.kind <> 'practice' AND (t.answered_at IS NOT NULL OR t.lease_expires_at IS NOT NULL)),
           count(*) FILTER (WHERE t.kind = 'practice' AND (t.answered_at IS NOT NULL OR t.lease_expires_at IS NOT NULL)),
           coalesce(array_agg(t.item_id) FILTER (WHERE t.item_id IS NOT NULL), '{}'),
           coalesce(array_agg(t.id ORDER BY t.position) FILTER (WHERE t.answered_at IS NULL AND t.lease_expires_at IS NOT NULL), '{}')
      INTO v_max_position, v_main_live, v_practice_live, v_seen, v_open
      FROM studyapp_trial t WHERE t.annotator_id = a.annotator_id;

    IF a.status = 'practice' THEN
        phase := 'practice'; total := v_practice;
        IF cardinality(v_open) > 0 THEN
            code := 'trial'; trial_id := v_open[1]; number := v_practice_live; RETURN NEXT; RETURN;
        END IF;
        IF v_practice_live < v_practice THEN
            IF p_gold_render IS NULL THEN code := 'no_images'; RETURN NEXT; RETURN; END IF;
            trial_id := studyapp_gold_trial(a.annotator_id, 'practice', (ARRAY['realism', 'alignment'])[v_practice_live % 2 + 1],
                                            v_max_position + 1, p_now, v_lease, p_gold_render, p_gold_prompt,
                                            p_decoy_render, p_gold_side, p_left_token, p_right_token);
            code := 'trial'; number := v_practice_live + 1; RETURN NEXT; RETURN;
        END IF;
        -- Practice finished (normally set when the last one is answered).
        UPDATE studyapp_annotator SET status = 'active' WHERE id = a.annotator_id;
        status := 'active';
    END IF;

    phase := 'main'; total := v_quota;
    v_main := v_main_live;
    FOR o IN SELECT t.id, t.kind, t.item_id, t.lease_expires_at FROM studyapp_trial t
              WHERE t.id = ANY(v_open) ORDER BY t.position LOOP
        IF o.kind = 'regular' AND o.lease_expires_at <= p_now THEN
            -- Expired: void it and give the slot back (unless the sweep already did).
            UPDATE studyapp_trial SET lease_expires_at = NULL
             WHERE id = o.id AND answered_at IS NULL AND lease_expires_at IS NOT NULL;
            IF FOUND THEN
                UPDATE studyapp_comparisonitem SET assigned = assigned - 1 WHERE id = o.item_id;
            END IF;
            v_main := v_main - 1;
            CONTINUE;
        END IF;
        IF o.kind IN ('regular', 'attention') THEN
            code := 'trial'; trial_id := o.id; number := v_main; RETURN NEXT; RETURN;
        END IF;
    END LOOP;

    IF v_main >= v_quota THEN
        PERFORM studyapp_annotator_complete(a.annotator_id, p_now);
        code := 'done'; status := 'completed'; RETURN NEXT; RETURN;
    END IF;
    number := v_main + 1;
    IF v_main = ANY(p_attention_slots) THEN
        IF p_gold_render IS NULL THEN code := 'no_images'; RETURN NEXT; RETURN; END IF;
        trial_id := studyapp_gold_trial(a.annotator_id, 'attention', p_attention_criterion, v_max_position + 1, p_now, v_lease,
                                        p_gold_render, p_gold_prompt, p_decoy_render, p_gold_side,
                                        p_left_token, p_right_token);
        code := 'trial'; RETURN NEXT; RETURN;
    END IF;

    -- The least-covered item this annotator has not seen, skipping items other transactions
    -- hold (never a blocking FOR UPDATE in arbitrary order: two of those can deadlock).
    FOR attempt IN 1 .. p_pick_retries LOOP
        WITH pick AS (
            SELECT ci.id, ci.prompt_id, ci.render_a_id, ci.render_b_id
              FROM studyapp_comparisonitem ci
             WHERE ci.round_id = a.round_id AND ci.assigned < ci.target_votes AND ci.id <> ALL(v_seen)
             ORDER BY ci.assigned, ci.shuffle
             LIMIT 1
               FOR UPDATE OF ci SKIP LOCKED
        ), taken AS (
            UPDATE studyapp_comparisonitem ci SET assigned = ci.assigned + 1 FROM pick WHERE ci.id = pick.id
            RETURNING ci.id
        )
        SELECT pick.* INTO v_pick FROM pick JOIN taken ON taken.id = pick.id;
        IF FOUND THEN
            INSERT INTO studyapp_trial (annotator_id, item_id, kind, position, prompt_id, left_render_id, right_render_id,
                                        left_variant, right_variant, left_token, right_token, check_criterion,
                                        expected_side, served_at, lease_expires_at, answered_at)
            VALUES (a.annotator_id, v_pick.id, 'regular', v_max_position + 1, v_pick.prompt_id,
                    CASE WHEN p_swap THEN v_pick.render_b_id ELSE v_pick.render_a_id END,
                    CASE WHEN p_swap THEN v_pick.render_a_id ELSE v_pick.render_b_id END,
                    'plain', 'plain', p_left_token, p_right_token, '', '', p_now,
                    p_now + make_interval(secs => v_lease), NULL)
            RETURNING id INTO v_id;
            code := 'trial'; trial_id := v_id; RETURN NEXT; RETURN;
        END IF;
        -- None free: every candidate is held by a concurrent allocation for a moment (wait a
        -- little and retry), or there is no work left for this annotator.
        SELECT EXISTS (SELECT 1 FROM studyapp_comparisonitem ci
                        WHERE ci.round_id = a.round_id AND ci.assigned < ci.target_votes AND ci.id <> ALL(v_seen))
          INTO v_any;
        IF NOT v_any THEN
            PERFORM studyapp_annotator_complete(a.annotator_id, p_now);
            code := 'done'; status := 'completed'; number := NULL; RETURN NEXT; RETURN;
        END IF;
        PERFORM pg_sleep(p_pick_retry_s * (0.5 + random()));
    END LOOP;
    code := 'busy'; number := NULL; RETURN NEXT; RETURN;
END $$;

-- studyapp_trial_next_id, plus the trial's columns and its prompt's text: all the page needs.
-- (A statement of its own, after the allocation: it sees the row the allocation inserted.)
CREATE OR REPLACE FUNCTION studyapp_trial_next(
    p_annotator_id bigint, p_pseudonym text, p_round_token text, p_now timestamptz,
    p_attention_slots int[], p_swap boolean, p_left_token text, p_right_token text,
    p_gold_render bigint, p_gold_prompt bigint, p_decoy_render bigint, p_gold_side text,
    p_attention_criterion text, p_pick_retries int, p_pick_retry_s float8
) RETURNS TABLE (code text, status text, round_id bigint, config text, phase text, number int, total int,
                 t_id bigint, t_annotator_id bigint, t_item_id bigint, t_kind text, t_position int, t_prompt_id bigint,
                 t_left_render_id bigint, t_right_render_id bigint, t_left_variant text, t_right_variant text,
                 t_left_token text, t_right_token text, t_check_criterion text, t_expected_side text,
                 t_served_at timestamptz, t_lease_expires_at timestamptz, t_answered_at timestamptz, prompt_text text)
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM studyapp_trial_next_id(
        p_annotator_id, p_pseudonym, p_round_token, p_now, p_attention_slots, p_swap, p_left_token, p_right_token,
        p_gold_render, p_gold_prompt, p_decoy_render, p_gold_side, p_attention_criterion, p_pick_retries, p_pick_retry_s);
    RETURN QUERY
        SELECT r.code, r.status, r.round_id, r.config, r.phase, r.number, r.total,
               t.id, t.annotator_id, t.item_id, t.kind::text, t.position::int, t.prompt_id,
               t.left_render_id, t.right_render_id, t.left_variant::text, t.right_variant::text,
               t.left_token::text, t.right_token::text, t.check_criterion::text, t.expected_side::text,
               t.served_at, t.lease_expires_at, t.answered_at, p.text::text
          FROM (SELECT 1) AS one
          LEFT JOIN studyapp_trial t ON t.id = r.trial_id
          LEFT JOIN studyapp_prompt p ON p.id = t.prompt_id;
END $$;

-- Record both answers of a first-time answer to the annotator's trial at p_position.
-- code: 'recorded', or 'answered' (the trial already has votes: the caller's re-answer path),
-- or a refusal: 'no_annotator', 'round_closed', 'round_not_open', 'no_such_trial',
-- 'trial_expired', 'too_fast'. The winner is resolved here from the stored sides.
CREATE OR REPLACE FUNCTION studyapp_trial_answer(
    p_annotator_id bigint, p_pseudonym text, p_round_token text, p_position int, p_now timestamptz,
    p_realism text, p_alignment text, p_rt_realism int, p_rt_alignment int,
    p_min_view_slack_ms int, p_max_response_ms int
) RETURNS TABLE (code text, status text, round_id bigint, config text, kind text,
                 check_criterion text, expected_side text)
LANGUAGE plpgsql AS $$
DECLARE
    a record;
    t record;
    v_min_view int;
    v_server_ms int;
    v_main_done int;
    v_practice_done int;
BEGIN
    SELECT * INTO a FROM studyapp_annotator_locked(p_annotator_id, p_pseudonym, p_round_token);
    code := a.refusal; status := a.status; round_id := a.round_id; config := a.config::text;
    IF code IS NOT NULL THEN
        RETURN NEXT; RETURN;
    END IF;
    SELECT tr.id, tr.item_id, tr.kind, tr.check_criterion, tr.expected_side, tr.served_at, tr.lease_expires_at,
           tr.answered_at, lr.objective AS left_objective, rr.objective AS right_objective
      INTO t
      FROM studyapp_trial tr
      JOIN studyapp_render lr ON lr.id = tr.left_render_id
      JOIN studyapp_render rr ON rr.id = tr.right_render_id
     WHERE tr.annotator_id = a.annotator_id AND tr.position = p_position
       FOR UPDATE OF tr;
    IF NOT FOUND THEN
        code := 'no_such_trial'; RETURN NEXT; RETURN;
    END IF;
    kind := t.kind; check_criterion := t.check_criterion; expected_side := t.expected_side;
    IF t.answered_at IS NOT NULL THEN
        code := 'answered'; RETURN NEXT; RETURN;
    END IF;
    IF t.lease_expires_at IS NULL THEN
        code := 'trial_expired'; RETURN NEXT; RETURN;
    END IF;
    v_min_view := (a.config ->> 'min_view_ms')::int;
    IF v_min_view > 0 AND p_now - t.served_at < make_interval(secs => (v_min_view - p_min_view_slack_ms) / 1000.0) THEN
        code := 'too_fast'; RETURN NEXT; RETURN;
    END IF;

    v_server_ms := greatest(0, least(floor(extract(epoch FROM p_now - t.served_at) * 1000)::bigint, p_max_response_ms));
    -- Both votes in one statement; the unique (trial, criterion) constraint backs the row lock.
    INSERT INTO studyapp_vote (trial_id, criterion, choice, winner, response_ms, created_at)
    VALUES (t.id, 'realism', p_realism,
            CASE p_realism WHEN 'tie' THEN 'tie' WHEN 'left' THEN t.left_objective ELSE t.right_objective END,
            coalesce(p_rt_realism, v_server_ms), p_now),
           (t.id, 'alignment', p_alignment,
            CASE p_alignment WHEN 'tie' THEN 'tie' WHEN 'left' THEN t.left_objective ELSE t.right_objective END,
            coalesce(p_rt_alignment, v_server_ms), p_now);
    -- The trial and its item's ``completed`` counter move together.
    UPDATE studyapp_trial SET answered_at = p_now WHERE id = t.id;
    IF t.item_id IS NOT NULL THEN
        UPDATE studyapp_comparisonitem SET completed = completed + 1 WHERE id = t.item_id;
    END IF;

    code := 'recorded';
    IF t.kind = 'practice' THEN
        SELECT count(*) INTO v_practice_done FROM studyapp_trial x
         WHERE x.annotator_id = a.annotator_id AND x.answered_at IS NOT NULL AND x.kind = 'practice';
        IF v_practice_done >= (a.config ->> 'practice_trials')::int AND a.status = 'practice' THEN
            UPDATE studyapp_annotator SET status = 'active' WHERE id = a.annotator_id;
            status := 'active';
        END IF;
    ELSE
        IF t.kind = 'attention' THEN
            PERFORM studyapp_annotator_qc(a.annotator_id);
        END IF;
        SELECT count(*) INTO v_main_done FROM studyapp_trial x
         WHERE x.annotator_id = a.annotator_id AND x.answered_at IS NOT NULL AND x.kind <> 'practice';
        IF v_main_done >= (a.config ->> 'trials_per_annotator')::int THEN
            PERFORM studyapp_annotator_complete(a.annotator_id, p_now);
            status := 'completed';
        END IF;
    END IF;
    RETURN NEXT;
END $$;
