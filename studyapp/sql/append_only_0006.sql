-- The record of a study is append-only (issue 13, item 4). PostgreSQL refuses, whoever asks (the
-- admin, a shell, a cascade from a deleted annotator or round):
--   * deleting a vote, a trial or an annotator: the items' assigned/completed counters count
--     trials, so a deleted trial or vote would leave them disagreeing with the record;
--   * changing an annotator's pseudonym or round (the pseudonym is the key of every export);
--   * deleting or rewriting a staff exclusion (who excluded whom, when, why).
-- Only BEFORE DELETE and column-specific BEFORE UPDATE triggers: the annotator hot path
-- (annotate_0005.sql) inserts trials and votes and updates answers and counters, none of which
-- fires them, so it costs nothing per request. TRUNCATE (test database flushes) is not a
-- row-level event and is unaffected.

CREATE OR REPLACE FUNCTION studyapp_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'studyapp: % rows are part of the study record and cannot be deleted (id %)', TG_TABLE_NAME, OLD.id
        USING ERRCODE = 'integrity_constraint_violation',
              HINT = 'Exclude the annotator from the analysis instead (admin: Annotators -> "Exclude from the analysis").';
END;
$$;

CREATE OR REPLACE FUNCTION studyapp_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'studyapp: % row % is part of the study record; % cannot be changed', TG_TABLE_NAME, OLD.id, TG_ARGV[0]
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER studyapp_vote_no_delete BEFORE DELETE ON studyapp_vote
    FOR EACH ROW EXECUTE FUNCTION studyapp_refuse_delete();
CREATE TRIGGER studyapp_trial_no_delete BEFORE DELETE ON studyapp_trial
    FOR EACH ROW EXECUTE FUNCTION studyapp_refuse_delete();
CREATE TRIGGER studyapp_annotator_no_delete BEFORE DELETE ON studyapp_annotator
    FOR EACH ROW EXECUTE FUNCTION studyapp_refuse_delete();
CREATE TRIGGER studyapp_annotatorexclusion_no_delete BEFORE DELETE ON studyapp_annotatorexclusion
    FOR EACH ROW EXECUTE FUNCTION studyapp_refuse_delete();

CREATE TRIGGER studyapp_annotator_identity_fixed BEFORE UPDATE OF pseudonym, round_id ON studyapp_annotator
    FOR EACH ROW WHEN (OLD.pseudonym IS DISTINCT FROM NEW.pseudonym OR OLD.round_id IS DISTINCT FROM NEW.round_id)
    EXECUTE FUNCTION studyapp_refuse_update('pseudonym and round');
CREATE TRIGGER studyapp_annotatorexclusion_fixed BEFORE UPDATE OF annotator_id, reason, excluded_by_name, created_at
    ON studyapp_annotatorexclusion
    FOR EACH ROW WHEN (OLD.annotator_id IS DISTINCT FROM NEW.annotator_id OR OLD.reason IS DISTINCT FROM NEW.reason
                       OR OLD.excluded_by_name IS DISTINCT FROM NEW.excluded_by_name
                       OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION studyapp_refuse_update('annotator, reason, author and time');
