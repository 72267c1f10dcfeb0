"""The pure parts of running under torchrun: sharding, batch checks, notices, seeds, save timing."""

import pytest
import torch

from ups.errors import ConfigError
from ups.resume.policy import SavePolicy
from ups.parallel import Group, Solo, world_change_notice


def rank(r, world):
    return Group(torch.device("cpu"), rank=r, world_size=world, control=None, store=None)


@pytest.mark.parametrize("world", [2, 4])
def test_the_ranks_slices_make_up_exactly_the_global_batch(world):
    batch = torch.randperm(64)[:32]
    slices = [rank(r, world).shard(batch) for r in range(world)]
    assert torch.equal(torch.cat(slices), batch)
    assert {len(s) for s in slices} == {32 // world}


def test_alone_the_batch_is_untouched():
    batch = torch.arange(10)
    assert Solo(torch.device("cpu")).shard(batch) is batch


def test_a_batch_that_does_not_split_over_the_processes_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as err:
        rank(0, 4).check_batch("operator", 30, 1000)
    assert "batch_size 30 does not split evenly over 4 processes" in str(err.value)
    assert "--set training.batch_size=32" in str(err.value)
    rank(0, 4).check_batch("operator", 32, 1000)


def test_too_little_data_for_the_processes_is_refused():
    with pytest.raises(ConfigError, match="3 training items cannot feed 4 processes"):
        rank(0, 4).check_batch("operator", 8, 3)


def test_rank_zero_keeps_the_single_process_noise_seed_and_the_others_differ():
    seeds = [rank(r, 4).rank_seed(12345) for r in range(4)]
    assert seeds[0] == 12345 == Solo(torch.device("cpu")).rank_seed(12345)
    assert len(set(seeds)) == 4


def test_a_state_from_the_same_number_of_processes_needs_no_notice():
    assert world_change_notice("operator", 8, 2, 2, 32) is None


def test_a_state_from_another_number_of_processes_is_continued_with_a_notice_naming_both():
    text = world_change_notice("operator", 8, 2, 4, 32)
    assert "written by 2 process(es); continuing with 4" in text
    assert "each process now takes 8 items per step" in text
    assert "Resume with 2 process(es)" in text


def test_each_rank_restores_its_own_streams_and_a_new_rank_none():
    state = {"ranks": [{"generator": "g0"}, {"generator": "g1"}]}
    assert rank(1, 2).own_state(state) == {"generator": "g1"}
    assert rank(2, 4).own_state(state) is None
    assert rank(1, 2).own_state({}) is None  # a single-process state


@pytest.mark.parametrize("step, last, secs", [(8, 4, 0.0), (9, 8, 100.0), (9, 4, 1.0), (8, 8, 100.0), (3, 0, 0.0)])
def test_save_policy_halves_add_up_to_the_whole(step, last, secs):
    p = SavePolicy(every_steps=4, every_seconds=60)
    assert p.should_save(step, last, secs) == (p.is_step_due(step, last) or p.is_time_due(step, last, secs))
