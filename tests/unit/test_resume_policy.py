"""Resume policy without a disk: decisions, reasons, save cadence, pruning."""

from ups.resume.plan import CONTINUE, DISABLED, RUN, SKIP, StageFacts, changed_keys, decide, fingerprint
from ups.resume.policy import SavePolicy, states_to_prune


def facts(**kw):
    base = dict(name="operator", epochs=5, status="completed", recorded_fingerprint="fp", recorded_config={"a": 1},
                config={"a": 1}, fingerprint="fp")
    base.update(kw)
    return StageFacts(**base)


def test_verified_completed_stage_is_skipped():
    d = decide(facts(), auto_resume=True)
    assert d.action == SKIP and "verified" in d.reason


def test_without_auto_resume_every_enabled_stage_runs():
    assert decide(facts(), auto_resume=False).action == RUN
    assert decide(facts(epochs=0), auto_resume=False).action == DISABLED


def test_altered_output_reruns_with_the_reason():
    d = decide(facts(output_problems=("operator.pt was altered (sha256 differs)",)), auto_resume=True)
    assert d.action == RUN and "operator.pt was altered" in d.reason


def test_completed_without_digests_whose_files_check_is_skipped_and_its_digests_recorded():
    d = decide(facts(has_digests=False, recorded_fingerprint=None), auto_resume=True)
    assert d.action == SKIP and d.record_digests and "recording their digests" in d.warnings[0]


def test_completed_without_digests_whose_files_do_not_load_reruns():
    d = decide(facts(has_digests=False, recorded_fingerprint=None,
                     output_problems=("operator.pt does not load (truncated)",)), auto_resume=True)
    assert d.action == RUN and "operator.pt does not load" in d.reason


def test_changed_config_reruns_and_names_the_keys():
    d = decide(facts(config={"a": 2}, fingerprint="new"), auto_resume=True)
    assert d.action == RUN and "a: 1 → 2" in d.reason


def test_changed_upstream_digests_rerun_the_stage():
    d = decide(facts(fingerprint="new"), auto_resume=True)
    assert d.action == RUN and "upstream outputs changed" in d.reason


def test_pending_upstream_reruns_downstream():
    d = decide(facts(pending_upstream=("operator",), fingerprint=None), auto_resume=True)
    assert d.action == RUN and "'operator'" in d.reason


def test_interrupted_stage_continues_from_its_saved_step():
    d = decide(facts(status="in_progress", saved_step=120), auto_resume=True)
    assert (d.action, d.from_step) == (CONTINUE, 120) and "step 120" in d.reason


def test_failed_stage_continues_and_quotes_the_error():
    d = decide(facts(status="failed", saved_step=8, error_message="RuntimeError: OOM"), auto_resume=True)
    assert d.action == CONTINUE and "RuntimeError: OOM" in d.reason


def test_interrupted_stage_with_stale_state_starts_over():
    d = decide(facts(status="in_progress", saved_step=8, config={"a": 3}, fingerprint="x"), auto_resume=True)
    assert d.action == RUN and "stale" in d.reason and "a: 1 → 3" in d.reason


def test_interrupted_before_any_save_starts_over():
    assert decide(facts(status="in_progress", saved_step=None), auto_resume=True).action == RUN


def test_changed_keys_lists_added_removed_and_changed():
    assert changed_keys({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b: 2 → 3", "c: '<unset>' → 4"]
    assert changed_keys(None, {"a": 1}) == []


def test_fingerprint_is_pinned():
    # Golden value: changing how fingerprints are computed makes every finished stage
    # stale for every user; it must be a deliberate change (update this and say so).
    assert fingerprint({"stages.operator.lr": 0.001}, {}) == (
        "a9d0633c1e809e860f2f941a7e26a6a1792b7619db0463a86746e90cf5a55dd6"
    )


def test_fingerprint_depends_on_config_and_upstream():
    base = fingerprint({"k": 1}, {"operator": {"operator.pt": "aa"}})
    assert base != fingerprint({"k": 2}, {"operator": {"operator.pt": "aa"}})
    assert base != fingerprint({"k": 1}, {"operator": {"operator.pt": "bb"}})
    assert base == fingerprint({"k": 1}, {"operator": {"operator.pt": "aa"}})


def test_step_saves_land_on_multiples_so_resumed_runs_save_at_the_same_steps():
    p = SavePolicy(every_steps=4)
    assert [s for s in range(1, 13) if p.should_save(s, last_saved_step=0, seconds_since_save=0)] == [4, 8, 12]
    assert not p.should_save(8, last_saved_step=8, seconds_since_save=999)


def test_time_based_saves():
    p = SavePolicy(every_seconds=60)
    assert not p.should_save(3, 0, 59.0)
    assert p.should_save(3, 0, 60.0)


def test_pruning_keeps_newest_and_the_one_the_status_names():
    assert states_to_prune([4, 8, 12, 16], keep=2) == [4, 8]
    assert states_to_prune([4, 8, 12, 16], keep=2, protect=4) == [8]
    assert states_to_prune([4], keep=2) == []
