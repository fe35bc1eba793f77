-- Known-answer trials from images the annotator has not seen (issue 11, item 5). Replaces the
-- two allocation functions of annotate_0005.sql: instead of one gold/decoy draw, the caller
-- passes a random sample of the round's finished renders (ids and prompt ids, same order), and
-- the function, which reads the annotator's trials under the row lock anyway, takes the first
-- candidate the annotator was never shown as the gold render and the next unseen one of another
-- prompt as the decoy. Still one round trip per fetch.

DROP FUNCTION IF EXISTS studyapp_trial_next(bigint, text, text, timestamptz, int[], boolean, text, text, bigint, bigint,
                                            bigint, text, text, int, float8);
DROP FUNCTION IF EXISTS studyapp_trial_next_id(bigint, text, text, timestamptz, int[], boolean, text, text, bigint, bigint,
                                               bigint, text, text, int, float8);

-- (gold render, its prompt, decoy render) from the candidates: the first not in p_seen, and
-- the next not in p_seen made for another prompt (decoy NULL when none: the trial then tests
-- realism). p_strict false (practice): with every candidate seen, the first one anyway.
CREATE OR REPLACE FUNCTION studyapp_gold_pick(p_renders bigint[], p_prompts bigint[], p_seen bigint[], p_strict boolean)
RETURNS TABLE (gold bigint, gold_prompt bigint, decoy bigint)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n int := coalesce(cardinality(p_renders), 0);
    g int;
BEGIN
    FOR i IN 1 .. n LOOP
        IF NOT p_renders[i] = ANY(p_seen) THEN g := i; EXIT; END IF;
    END LOOP;
    IF g IS NULL THEN
        IF p_strict OR n = 0 THEN RETURN NEXT; RETURN; END IF;
        g := 1;
    END IF;
    gold := p_renders[g]; gold_prompt := p_prompts[g];
    FOR i IN 1 .. n LOOP
        IF i <> g AND p_prompts[i] <> gold_prompt AND NOT p_renders[i] = ANY(p_seen) THEN
            decoy := p_renders[i]; EXIT;
        END IF;
    END LOOP;
    RETURN NEXT;
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
    p_cand_renders bigint[], p_cand_prompts bigint[],  -- known-answer candidates, in random order
    p_gold_side text, p_attention_criterion text,
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
    v_seen_renders bigint[];
    g record;
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
           coalesce(array_agg(t.id ORDER BY t.position) FILTER (WHERE t.answered_at IS NULL AND t.lease_expires_at IS NOT NULL), '{}'),
           coalesce(array_agg(t.left_render_id) || array_agg(t.right_render_id), '{}')
      INTO v_max_position, v_main_live, v_practice_live, v_seen, v_open, v_seen_renders
      FROM studyapp_trial t WHERE t.annotator_id = a.annotator_id;

    IF a.status = 'practice' THEN
        phase := 'practice'; total := v_practice;
        IF cardinality(v_open) > 0 THEN
            code := 'trial'; trial_id := v_open[1]; number := v_practice_live; RETURN NEXT; RETURN;
        END IF;
        IF v_practice_live < v_practice THEN
            SELECT * INTO g FROM studyapp_gold_pick(p_cand_renders, p_cand_prompts, v_seen_renders, false);
            IF g.gold IS NULL THEN code := 'no_images'; RETURN NEXT; RETURN; END IF;
            trial_id := studyapp_gold_trial(a.annotator_id, 'practice', (ARRAY['realism', 'alignment'])[v_practice_live % 2 + 1],
                                            v_max_position + 1, p_now, v_lease, g.gold, g.gold_prompt,
                                            g.decoy, p_gold_side, p_left_token, p_right_token);
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
        -- Only images this annotator has never been shown (practice included), so a check
        -- cannot be learnt; with none left unseen the slot becomes a regular trial.
        SELECT * INTO g FROM studyapp_gold_pick(p_cand_renders, p_cand_prompts, v_seen_renders, true);
        IF g.gold IS NOT NULL THEN
            trial_id := studyapp_gold_trial(a.annotator_id, 'attention', p_attention_criterion, v_max_position + 1, p_now,
                                            v_lease, g.gold, g.gold_prompt, g.decoy, p_gold_side,
                                            p_left_token, p_right_token);
            code := 'trial'; RETURN NEXT; RETURN;
        END IF;
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
    p_cand_renders bigint[], p_cand_prompts bigint[],  -- known-answer candidates, in random order
    p_gold_side text, p_attention_criterion text, p_pick_retries int, p_pick_retry_s float8
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
        p_cand_renders, p_cand_prompts, p_gold_side, p_attention_criterion, p_pick_retries, p_pick_retry_s);
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
